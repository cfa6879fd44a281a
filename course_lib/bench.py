"""``course bench``: how much faster is the in-memory engine than the tutorial pipeline?

Two ways to feed the same small CNN with the same augmentation (random rotation
±15° plus ±10 % translation) on MNIST:

- **tutorial**: a Dataset that returns PIL images (exactly what
  ``torchvision.datasets.MNIST.__getitem__`` does), per-sample torchvision v1
  transforms, ``DataLoader(batch_size=64, shuffle=True, num_workers=2)``;
- **engine**: ``TensorLoader`` over the uint8 tensor, the whole batch augmented at
  once by ``course_lib.augment.RandomAffine`` (each image its own parameters), in
  the NCHW layout and in the channels-last layout that ``fit`` uses for conv nets;
- **ceiling**: the same model trained on one fixed batch, no data pipeline at all.
  No loader can beat it, so ``ceiling / tutorial`` bounds the speed-up any data
  pipeline can give on this machine: beyond it only the model's own cost matters.

Rounds alternate A/B in one process so that machine load hits both alike; we
print the medians, their ratio with min–max over rounds, and the load average.
Then ``time to 99 %``: the engine's small-CNN recipe trained until the validation
accuracy reaches 99.0 %, its training seconds and its test accuracy (measured once).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Iterable

import torch
from torch import nn

from .augment import RandomAffine
from .data import load_dataset, stratified_split
from .loader import TensorLoader
from .models import ReportCNN, SmallCNN
from .train import Callback, EarlyStopping, evaluate, fit, seed_everything

MEAN, STD = 0.1307, 0.3081


class PILDataset(torch.utils.data.Dataset):
    """What torchvision's MNIST dataset does per item: tensor -> PIL image -> transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images[:, 0].numpy(), labels.tolist(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode="L")), self.labels[i]


def tutorial_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64, workers: int = 2):
    from torchvision import transforms as T

    tf = T.Compose([T.RandomAffine(15, translate=(0.1, 0.1)), T.ToTensor(), T.Normalize((MEAN,), (STD,))])
    return torch.utils.data.DataLoader(PILDataset(images, labels, tf), batch_size=batch_size, shuffle=True,
                                       num_workers=workers, persistent_workers=workers > 0)


def engine_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int):
    return TensorLoader(images, labels, batch_size, shuffle=True, transform=RandomAffine(15, translate=(0.1, 0.1)),
                        normalize=([MEAN], [STD]))


def train_throughput(model: nn.Module, loader: Iterable, n_images: int, channels_last: bool = False) -> float:
    """Train ``model`` on batches from ``loader`` until ``n_images`` are seen; images/second.

    ``channels_last`` trains in the NHWC layout, as ``fit`` does for conv nets on CPU.
    """
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    seen, t0 = 0, time.perf_counter()
    while seen < n_images:
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
            if seen >= n_images:
                break
    return seen / (time.perf_counter() - t0)


class StopAt(Callback):
    """Stop as soon as validation accuracy reaches ``target``."""

    def __init__(self, target: float):
        self.target = target

    def on_epoch_end(self, state) -> None:
        state.stop = state.stop or state.history.records[-1]["val_acc"] >= self.target


def time_to_accuracy(target: float = 0.99, max_epochs: int = 4, seed: int = 0, root=None, batch_size: int = 256,
                     lr: float = 1e-2, degrees: float = 10.0,
                     model_fn: Callable[[], nn.Module] | None = None) -> dict[str, float]:
    """The engine's fastest MNIST recipe, stopped once validation accuracy reaches ``target``.

    The recipe (chosen on the validation split): the report's 33 k-parameter CNN
    (``ReportCNN(16, 32, 32)``: no BatchNorm, which is slow on CPU), batch 256, AdamW with
    a one-cycle schedule peaking at ``lr`` over ``max_epochs``, rotation ±10° and ±10 %
    translation.  Training stops after the first epoch whose validation accuracy is
    ``>= target``; the test accuracy is then measured once.
    """
    seed_everything(seed)
    train_full, test = load_dataset("mnist", "train", root), load_dataset("mnist", "test", root)
    tr, va = stratified_split(train_full.labels, 0.1, seed)
    norm = ([MEAN], [STD])
    train = TensorLoader(train_full.images[tr], train_full.labels[tr], batch_size, shuffle=True, seed=seed,
                         transform=RandomAffine(degrees, translate=(0.1, 0.1)), normalize=norm)
    val = TensorLoader(train_full.images[va], train_full.labels[va], 1024, normalize=norm)
    model = model_fn() if model_fn is not None else ReportCNN((16, 32, 32))
    h = fit(model, train, val, epochs=max_epochs, lr=lr, weight_decay=1e-4, scheduler="onecycle", device="cpu",
            callbacks=[StopAt(target), EarlyStopping("val_acc", patience=max_epochs)], progress=False)
    test_acc = evaluate(model, TensorLoader(test.images, test.labels, 1024, normalize=norm))["acc"]
    val_acc = h.best("val_acc")["val_acc"]
    return {"train_seconds": h.seconds, "epochs": len(h), "val_acc": val_acc, "reached": val_acc >= target,
            "test_acc": test_acc, "params": sum(p.numel() for p in model.parameters())}


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="course bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="A/B rounds (default 5)")
    ap.add_argument("--images", type=int, default=6400, help="training images per pipeline per round")
    ap.add_argument("--skip-time-to-acc", action="store_true")
    ap.add_argument("--epochs", type=int, default=4, help="length of the one-cycle schedule for time-to-99 %%")
    ap.add_argument("--seeds", type=int, default=3, help="seeds for time-to-99 %% (default 3)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--root", default=None, help="data directory (default $COURSE_DATA)")
    args = ap.parse_args(argv)

    if not args.skip_throughput:
        throughput_rounds(args)
    if not args.skip_time_to_acc:
        print(f"\ntime to 99.0 % validation accuracy (ReportCNN 16-32-32, one-cycle over {args.epochs} epochs):")
        runs = [time_to_accuracy(max_epochs=args.epochs, seed=s, root=args.root) for s in range(args.seeds)]
        for s, r in enumerate(runs):
            status = "reached" if r["reached"] else f"NOT reached (best {r['val_acc'] * 100:.2f} %)"
            print(f"  seed {s}: {status} after {r['train_seconds']:.1f} s of training, {r['epochs']} epochs; "
                  f"test accuracy (measured once) {r['test_acc'] * 100:.2f} %", flush=True)
        print(f"  median {statistics.median(r['train_seconds'] for r in runs):.1f} s; "
              f"{sum(r['reached'] for r in runs)}/{len(runs)} seeds reached 99.0 %; {runs[0]['params']:,} parameters")
    return 0


def throughput_rounds(args: argparse.Namespace) -> None:
    """Alternate the pipelines for ``args.rounds`` rounds and print medians and ratios."""
    train = load_dataset("mnist", "train", args.root)
    images, labels = train.images[:20000], train.labels[:20000]
    # name -> (loader, channels_last); the last arm feeds one fixed, pre-augmented batch:
    # no data pipeline at all, so it is the ceiling any loader can reach with this model.
    fixed = next(iter(engine_loader(images, labels, 128)))
    arms = {
        "tutorial (PIL, per-sample v1, DataLoader bs=64, 2 workers)": (tutorial_loader(images, labels), False),
        "engine (TensorLoader, batched affine, bs=64, NCHW)": (engine_loader(images, labels, 64), False),
        "engine (TensorLoader, batched affine, bs=128, channels_last)": (engine_loader(images, labels, 128), True),
        "ceiling: model only, one fixed batch, bs=128, channels_last": ([fixed], True),
    }
    speeds: dict[str, list[float]] = {k: [] for k in arms}
    load_before = os.getloadavg()
    for r in range(args.rounds):
        for name, (loader, channels_last) in arms.items():
            torch.manual_seed(r)
            speeds[name].append(train_throughput(SmallCNN(1, 10), loader, args.images, channels_last))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{v[-1]:.0f}" for v in speeds.values()) + " img/s", flush=True)
    load_after = os.getloadavg()
    base = list(speeds)[0]
    print(f"\ntraining throughput, median over {args.rounds} alternating rounds of {args.images} images "
          f"(torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs):")
    for name, v in speeds.items():
        ratios = [a / b for a, b in zip(v, speeds[base])]
        extra = "" if name == base else (f"   ratio {statistics.median(ratios):.1f}x "
                                         f"(min {min(ratios):.1f}x, max {max(ratios):.1f}x)")
        print(f"  {name:<62} {statistics.median(v):7.0f} img/s{extra}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
