"""The training engine: the loop learns, stops, resumes and repeats itself exactly."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from course_lib.loader import TensorLoader
from course_lib.train import Callback, EarlyStopping, History, evaluate, fit, get_device, make_scheduler, seed_everything


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4))


def loaders(data, bs=32):
    x, y = data
    return TensorLoader(x[:192], y[:192], bs, shuffle=True, seed=1), TensorLoader(x[192:], y[192:], 64)


def test_loss_falls_and_history_is_complete(tiny_classification):
    seed_everything(0)
    tr, va = loaders(tiny_classification)
    h = fit(tiny_net(), tr, va, epochs=6, lr=3e-3, device="cpu")
    assert len(h) == 6 and h["epoch"] == [1, 2, 3, 4, 5, 6]
    assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
    assert h["val_acc"][-1] > 0.9
    assert all(k in h.records[0] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"))


def test_same_seed_same_numbers(tiny_classification):
    runs = []
    for _ in range(2):
        seed_everything(123, deterministic=True)
        tr, va = loaders(tiny_classification)
        m = tiny_net()
        h = fit(m, tr, va, epochs=2, device="cpu")
        runs.append((h["train_loss"], [p.clone() for p in m.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    torch.use_deterministic_algorithms(False)


class Worsen(Callback):
    """Pretend validation accuracy peaks at epoch 2 (to test early stopping)."""

    def on_epoch_end(self, state):
        state.history.records[-1]["val_acc"] = [0.5, 0.9, 0.6, 0.5, 0.4, 0.3][state.epoch]


class Snapshot(Callback):
    def __init__(self):
        self.weights = {}

    def on_epoch_end(self, state):
        self.weights[state.epoch] = {k: v.clone() for k, v in state.model.state_dict().items()}


def test_early_stopping_stops_and_restores_best(tiny_classification):
    tr, va = loaders(tiny_classification)
    m, snap = tiny_net(), Snapshot()
    h = fit(m, tr, va, epochs=6, device="cpu", callbacks=[Worsen(), snap, EarlyStopping("val_acc", patience=1)])
    assert len(h) == 4  # best at epoch 2 (index 1), then two epochs without improvement
    best = snap.weights[1]
    assert all(torch.equal(v, best[k]) for k, v in m.state_dict().items())


class Interrupt(Callback):
    def __init__(self, after: int):
        self.after = after

    def on_epoch_end(self, state):
        if state.epoch + 1 == self.after:
            raise KeyboardInterrupt


def test_interrupt_keeps_history_and_resume_matches_uninterrupted(tiny_classification, tmp_path):
    seed_everything(7)
    tr, va = loaders(tiny_classification)
    full = tiny_net()
    init = {k: v.clone() for k, v in full.state_dict().items()}
    fit(full, tr, va, epochs=4, device="cpu", scheduler="onecycle", lr=1e-2)

    seed_everything(7)
    tr, va = loaders(tiny_classification)
    part = tiny_net()
    part.load_state_dict(init)
    ckpt = tmp_path / "run.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Interrupt is listed after the checkpointing, which happens after callbacks: the
        # checkpoint of epoch 2 is not written, so the run resumes from epoch 1's checkpoint.
        h = fit(part, tr, va, epochs=4, device="cpu", scheduler="onecycle", lr=1e-2,
                checkpoint=ckpt, callbacks=[Interrupt(after=2)])
    assert h.interrupted and len(h) == 2

    torch.manual_seed(999)  # whatever happens in between must not matter
    resumed = tiny_net()
    h2 = fit(resumed, tr, va, epochs=4, device="cpu", scheduler="onecycle", lr=1e-2, checkpoint=ckpt)
    assert len(h2) == 4 and not h2.interrupted
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("name", ["onecycle", "cosine", "step", "plateau"])
def test_schedulers_change_the_learning_rate(tiny_classification, name):
    tr, va = loaders(tiny_classification)
    h = fit(tiny_net(), tr, va, epochs=4, lr=1e-2, device="cpu", scheduler=name,
            scheduler_kwargs={"step_size": 1} if name == "step" else ({"patience": 0} if name == "plateau" else None))
    lrs = h["lr"]
    if name == "plateau":  # may or may not trigger on this easy problem; only must run
        assert len(lrs) == 4
    else:
        assert len(set(lrs)) > 1


def test_unknown_scheduler_and_bad_epochs_are_clear_errors(tiny_classification):
    tr, va = loaders(tiny_classification)
    opt = torch.optim.SGD(tiny_net().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="choose onecycle"):
        make_scheduler("exponential", opt, 1, 1)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        fit(tiny_net(), tr, epochs=0, device="cpu")


def test_label_smoothing_and_extra_loss_are_applied(tiny_classification):
    tr, va = loaders(tiny_classification)
    seed_everything(0)
    plain = fit(tiny_net(), tr, epochs=1, device="cpu")["train_loss"][0]
    seed_everything(0)
    penal = fit(tiny_net(), tr, epochs=1, device="cpu", extra_loss=lambda m: torch.tensor(1.0))["train_loss"][0]
    assert penal == pytest.approx(plain + 1.0, rel=1e-4)


def test_evaluate_and_device():
    assert get_device("cpu").type == "cpu"
    model = nn.Linear(3, 2)
    x, y = torch.randn(10, 3), torch.zeros(10, dtype=torch.long)
    res = evaluate(model, [(x, y)])
    assert set(res) == {"loss", "acc"}


def test_history_best_and_roundtrip():
    h = History([{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.7}])
    assert h.best("val_acc")["epoch"] == 2
    assert History.from_dict(h.to_dict()).records == h.records


def test_loader_batches_and_errors(tiny_classification):
    x, y = tiny_classification
    ld = TensorLoader(x, y, 100, shuffle=True, normalize=([0.5], [0.5]))
    batches = list(ld)
    assert [len(b[1]) for b in batches] == [100, 100, 56] and len(ld) == 3
    assert batches[0][0].dtype == torch.float32 and batches[0][0].min() >= -1 and batches[0][0].max() <= 1
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(y.tolist())
    with pytest.raises(ValueError, match="larger than the dataset"):
        TensorLoader(x, y, 1000, drop_last=True)
    with pytest.raises(ValueError, match="labels"):
        TensorLoader(x, y[:3])
