"""What the validation-experiment scripts share: the command line and notebook 05's / 02's MNIST split."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable

import torch

from course_lib import augment as A
from course_lib.data import ImageDataset, load_dataset, stratified_split

ELASTIC = A.ElasticDistortion(alpha=34, sigma=4)  # Simard et al.'s values for 28 px digits, notebooks 02 and 03's choice


def parse_settings(doc: str, settings: Iterable[str], seeds: list[int] | None = None,
                   epochs: int | None = None, datasets: Iterable[str] | None = None) -> argparse.Namespace:
    """``settings`` (one or more names), ``--threads`` and, if given, ``--seeds`` / ``--epochs`` (those defaults)
    and ``--dataset`` (one of ``datasets``, the first by default).

    Sets torch's thread count when ``--threads`` is passed, so two scripts can share the machine.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("settings", nargs="+", choices=sorted(settings))
    if seeds is not None:
        parser.add_argument("--seeds", type=int, nargs="+", default=seeds)
    if epochs is not None:
        parser.add_argument("--epochs", type=int, default=epochs)
    if datasets is not None:
        datasets = list(datasets)
        parser.add_argument("--dataset", choices=datasets, default=datasets[0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def train_val_split(dataset: str = "mnist") -> tuple[ImageDataset, ImageDataset]:
    """The notebooks' training and validation splits of ``dataset`` (MNIST unless told; stratified 10 %, seed 0).

    The test set is not loaded.
    """
    full = load_dataset(dataset, "train")
    train_idx, val_idx = stratified_split(full.labels, val_fraction=0.1, seed=0)
    return full.subset(train_idx), full.subset(val_idx)


def compare_pretraining(settings: dict, names: Iterable[str], pretrain: Callable[..., object], epochs: int) -> None:
    """Pretrain a fresh encoder per named setting (``pretrain(encoder, images, cfg, epochs=, monitor=, seed=)``)
    on the MNIST pool and print its validation scores as the ``course pretrain`` recipes compute them:
    the 100-label linear probe (mean of 5 draws) and kNN with every training label."""
    from course_lib.ssl.recipes import encoder_val_metrics
    from course_lib.ssl.trainer import KNNMonitor

    pool, val = train_val_split()
    mem = torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))[:5000]
    monitor = KNNMonitor(pool.images[mem], pool.labels[mem], val.images[:2000], val.labels[:2000])
    for name in names:
        cfg, t0 = settings[name], time.perf_counter()
        torch.manual_seed(0)
        encoder = cfg.encoder(1)
        pretrain(encoder, pool.images, cfg, epochs=epochs, monitor=monitor, seed=0)
        metrics, _ = encoder_val_metrics(encoder, pool, val)
        print(f"{name:<8} {epochs} epochs: validation probe100 "
              f"{100 * statistics.mean(metrics['val_probe100_acc_per_draw']):.2f} %, kNN (all labels) "
              f"{100 * metrics['val_knn_acc_all_labels']:.2f} % ({time.perf_counter() - t0:.0f} s)", flush=True)
