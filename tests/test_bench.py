"""The benchmark's two pipelines feed the same thing: checked on tiny data, not timed."""

from __future__ import annotations

import torch

from course_lib.bench import PILDataset, engine_loader, time_to_accuracy, train_throughput, tutorial_loader
from course_lib.models import SmallCNN


def test_both_pipelines_yield_normalised_augmented_batches():
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(40) % 10
    tut = tutorial_loader(images, labels, batch_size=8, workers=0)
    eng = engine_loader(images, labels, 8)
    (xt, yt), (xe, ye) = next(iter(tut)), next(iter(eng))
    assert xt.shape == xe.shape == (8, 1, 28, 28) and xt.dtype == xe.dtype == torch.float32
    assert yt.dtype == ye.dtype == torch.int64
    # both normalised with MNIST statistics: values span roughly [-0.42, 2.8]
    for x in (xt, xe):
        assert x.min() >= -0.43 and x.max() <= 2.83
    assert len(PILDataset(images, labels, lambda im: im)) == 40


def test_train_throughput_counts_images():
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(64) % 10
    assert train_throughput(SmallCNN(1, 10), engine_loader(images, labels, 16), n_images=48) > 0


def test_train_throughput_in_channels_last_trains_the_same_model():
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(64) % 10
    torch.manual_seed(0)
    model = SmallCNN(1, 10)
    before = [p.detach().clone() for p in model.parameters()]
    assert train_throughput(model, engine_loader(images, labels, 16), n_images=32, channels_last=True) > 0
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))  # it did train


def test_time_to_accuracy_stops_at_the_target_and_reports_it(tmp_path):
    from data_fixtures import write_mnist

    write_mnist(tmp_path, n={"train": 200, "test": 50})
    reached = time_to_accuracy(target=0.0, max_epochs=3, root=tmp_path, batch_size=32)
    assert reached["reached"] and reached["epochs"] == 1  # stopped after the first epoch
    missed = time_to_accuracy(target=1.01, max_epochs=2, root=tmp_path, batch_size=32)
    assert not missed["reached"] and missed["epochs"] == 2
    assert 0.0 <= missed["test_acc"] <= 1.0 and missed["params"] == 33194
