"""Comparing different models on one dataset: every model measured the same way, in one run.

A comparison is only fair when each number is taken the same way: the same data
split, the same clocks on the same machine, the test set touched once per model
after every choice was made on validation data.  Here each model goes through

- ``train_model`` -- ``fit`` on the training loader, validation accuracy per epoch,
  training time (wall and CPU) and the number of images it trained on;
- ``evaluate_on_test`` -- test accuracy and loss, its predictions, and inference speed;

which both fill one ``ModelRun``.  ``run_seed_arms`` repeats training over seeds (on
top of :mod:`course_lib.ablation`), ``comparison_rows`` / ``format_comparison`` turn
the runs into the table, and ``accuracy_vs_time`` / ``misclassified_by_model`` draw
the two figures.

Training time is reported as *seconds per epoch over the full training split*: a
run on a subset is scaled by ``n_full / n_trained`` (its measured seconds per image
times the split size), so models trained on different amounts of data stay comparable.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ablation import ArmResult, run_ablation
from .metrics import mean_std, throughput
from .models import count_params
from .train import History, evaluate, fit, predict

__all__ = [
    "ModelRun",
    "accuracy_vs_time",
    "cheapest_within_one_se",
    "comparison_rows",
    "format_comparison",
    "misclassified_by_model",
    "run_seed_arms",
    "evaluate_on_test",
    "train_model",
]


@dataclass
class ModelRun:
    """Everything measured about one trained model.

    ``train_seconds`` is wall time, ``train_cpu_seconds`` the process CPU time (a
    better guide than wall time on a busy shared machine); ``train_images`` the images
    per epoch; ``model`` the trained model (for ``evaluate_on_test``); ``info`` free-form notes
    (e.g. which pretrained weights).  Test fields stay NaN / None until ``evaluate_on_test``.
    """

    name: str
    params: int
    trainable_params: int
    epochs: int
    train_images: int
    train_seconds: float
    train_cpu_seconds: float
    val_acc: float
    history: History | None = None
    model: nn.Module | None = field(default=None, repr=False)
    info: dict[str, Any] = field(default_factory=dict)
    test_acc: float = math.nan
    test_loss: float = math.nan
    images_per_second: float = math.nan
    test_preds: Tensor | None = field(default=None, repr=False)

    def seconds_per_epoch(self, n_images: int | None = None) -> float:
        """Training wall seconds per epoch over ``n_images`` images (default: the images it trained on)."""
        n = self.train_images if n_images is None else n_images
        return self.train_seconds / max(1, self.epochs) / max(1, self.train_images) * n


def _check_epochs(epochs: int) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")


def train_model(
    name: str,
    model: nn.Module,
    train_loader: Any,
    val_loader: Any,
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    scheduler: str | None = "onecycle",
    device: torch.device | str | None = None,
    progress: bool = False,
    val_every_epoch: bool = True,
    **fit_kwargs: Any,
) -> ModelRun:
    """Train ``model`` in place with ``fit`` (AdamW, one-cycle by default) and measure it.

    The model keeps its final weights; ``val_acc`` is the final epoch's validation
    accuracy (the epochs are a choice made beforehand, on validation runs, not by
    picking the best epoch afterwards).  Parameters are counted before training, so a
    partly frozen model reports its trainable part correctly.

    ``val_every_epoch=False`` evaluates the validation split once, after the last
    epoch, instead of after every epoch: the same ``val_acc`` for less time, which
    matters for short runs on small subsets (seed sweeps), where evaluating a few
    thousand validation images each epoch can cost more than the training.  The
    history then has no per-epoch validation columns, and ``train_seconds`` excludes
    the final evaluation.
    """
    _check_epochs(epochs)
    if val_loader is None:
        raise ValueError(f"{name}: train_model needs a val_loader; every choice in a comparison is made on validation data")
    total, trainable = count_params(model), count_params(model, trainable_only=True)
    if trainable == 0:
        raise ValueError(f"{name}: the model has no trainable parameters; unfreeze at least the head (requires_grad_(True))")
    t0, c0 = time.perf_counter(), time.process_time()
    history = fit(model, train_loader, val_loader if val_every_epoch else None, epochs=epochs, lr=lr,
                  weight_decay=weight_decay, scheduler=scheduler, device=device, progress=progress, **fit_kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    images = len(getattr(train_loader, "images", [])) or sum(len(y) for _, y in train_loader)
    val_acc = history.records[-1]["val_acc"] if val_every_epoch else evaluate(model, val_loader)["acc"]
    return ModelRun(name, total, trainable, len(history), images, wall, cpu, val_acc, history, model)


def evaluate_on_test(run: ModelRun, test_loader: Iterable[tuple[Tensor, Tensor]], speed_batch: Tensor | None = None,
              keep_preds: bool = True) -> ModelRun:
    """Evaluate ``run.model`` on the test loader; fill ``run``'s test accuracy, loss, predictions and speed.

    ``speed_batch`` (a float batch already on the model's device, e.g. 1000 normalised
    test images) is used to time inference (``metrics.throughput``, median of 5).
    Returns ``run`` for chaining.  Calling it twice for the same run is refused: the
    test set is evaluated once per model.
    """
    if not math.isnan(run.test_acc):
        raise RuntimeError(f"{run.name} was already evaluated on the test set; the test set is used once per model")
    if run.model is None:
        raise ValueError(f"{run.name} holds no model (ModelRun.model is None); train it with train_model")
    model = run.model
    logits, labels = predict(model, test_loader)
    run.test_loss = F.cross_entropy(logits, labels).item()
    preds = logits.argmax(1)
    run.test_acc = (preds == labels).float().mean().item()
    run.test_preds = preds if keep_preds else None
    if speed_batch is not None:
        run.images_per_second = throughput(model, speed_batch)
    return run


def run_seed_arms(
    arms: Mapping[str, Callable[[int], ModelRun]],
    seeds: Sequence[int],
    *,
    score: str = "val_acc",
    verbose: bool = True,
) -> tuple[dict[str, ArmResult], dict[str, list[ModelRun]]]:
    """Run each arm ``run(seed) -> ModelRun`` for every seed.

    Returns ``(results, runs)``: ``results`` are :class:`course_lib.ablation.ArmResult`
    scored by the ``score`` attribute (validation accuracy by default, because choices
    between arms are made on it), ready for ``ablation_rows`` / ``format_ablation``;
    ``runs`` keeps every ``ModelRun`` (for test accuracy, timing, ...).
    """
    if not arms:
        raise ValueError("arms is empty; pass {'name': lambda seed: ModelRun, ...}")
    if score not in ModelRun.__dataclass_fields__:
        raise ValueError(f"score must be a ModelRun field such as 'val_acc' or 'test_acc'; got {score!r}")
    runs: dict[str, list[ModelRun]] = {name: [] for name in arms}

    def scored(name: str, fn: Callable[[int], ModelRun]) -> Callable[[int], float]:
        def run(seed: int) -> float:
            result = fn(seed)
            if not isinstance(result, ModelRun):
                raise TypeError(f"arm {name!r}: run(seed) must return a ModelRun (from train_model), "
                                f"got {type(result).__name__}")
            runs[name].append(result)
            return getattr(result, score)
        return run

    results = run_ablation({name: scored(name, fn) for name, fn in arms.items()}, seeds, verbose=verbose)
    return results, runs


def cheapest_within_one_se(results: Mapping[str, ArmResult], cost: Mapping[str, float] | None = None) -> str:
    """The one-standard-error rule: the cheapest arm whose mean is within one standard error of the best mean.

    The best arm (highest mean score, e.g. validation accuracy over seeds) has a
    standard error ``std / sqrt(n)``; every arm whose mean is at least ``best mean -
    that standard error`` is, on this evidence, as good, and among those the one
    with the lowest ``cost`` wins (default: the arm's measured wall seconds,
    ``ArmResult.seconds``).  This is the usual guard against paying for a
    difference the seeds cannot resolve (Hastie, Tibshirani & Friedman, *The
    Elements of Statistical Learning*, 7.10).
    """
    if not results:
        raise ValueError("results is empty; pass {arm name: ArmResult} from run_seed_arms")
    if cost is not None and set(cost) != set(results):
        raise KeyError(f"cost must give a number for every arm {sorted(results)}; got {sorted(cost)}")
    best = max(results.values(), key=lambda r: r.mean)
    se = best.std / math.sqrt(len(best.values)) if len(best.values) > 1 else 0.0
    near = [name for name, r in results.items() if r.mean >= best.mean - se - 1e-12]
    return min(near, key=lambda name: cost[name] if cost is not None else results[name].seconds)


def comparison_rows(
    headline: Mapping[str, ModelRun],
    seed_runs: Mapping[str, Sequence[ModelRun]] | None = None,
    n_full: int | None = None,
) -> list[dict[str, Any]]:
    """One row per headline model: size, time, speed, test numbers, and the seed sweep's mean ± std.

    ``n_full`` is the size of the full training split (seconds per epoch are scaled to
    it); default each run's own training-set size.  ``seed_runs[name]`` (optional) are
    the same model's runs over seeds, usually on a shorter schedule; their test
    accuracies give ``seed_mean`` / ``seed_std`` / ``seed_n``.
    """
    seed_runs = seed_runs or {}
    unknown = sorted(set(seed_runs) - set(headline))
    if unknown:
        raise KeyError(f"seed runs for {unknown} have no headline run; headline models are {list(headline)}")
    rows = []
    for name, run in headline.items():
        if math.isnan(run.test_acc):
            raise ValueError(f"{name} has no test accuracy yet; call evaluate_on_test(run, test_loader) first")
        row = {"model": name, "params": run.params, "trainable_params": run.trainable_params, "epochs": run.epochs,
               "train_images": run.train_images, "s_per_epoch": run.seconds_per_epoch(n_full),
               "train_seconds": run.train_seconds, "train_cpu_seconds": run.train_cpu_seconds,
               "images_per_second": run.images_per_second, "val_acc": run.val_acc, "test_acc": run.test_acc,
               "test_loss": run.test_loss, "seed_mean": math.nan, "seed_std": math.nan, "seed_n": 0}
        seeds = [r.test_acc for r in seed_runs.get(name, ())]
        if any(math.isnan(a) for a in seeds):
            raise ValueError(f"some seed runs of {name} were not evaluated on the test set (evaluate_on_test)")
        if seeds:
            row["seed_mean"], row["seed_std"] = mean_std(seeds)
            row["seed_n"] = len(seeds)
        rows.append(row)
    return rows


def _human(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e3:
        return f"{n / 1e3:.0f} k"
    return f"{n:.0f}"


def format_comparison(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a text table (accuracies in percent)."""
    head = (f"{'model':<22} {'params':>9} {'trainable':>9} {'epochs':>6} {'s/epoch':>8} {'infer img/s':>11} "
            f"{'val acc':>8} {'test acc':>8} {'test loss':>9} {'seeds: test acc':>22}")
    lines = [head, "-" * len(head)]
    for r in rows:
        seeds = (f"{r['seed_mean'] * 100:.2f} ± {r['seed_std'] * 100:.2f} (n={r['seed_n']})" if r["seed_n"] else "-")
        speed = "-" if math.isnan(r["images_per_second"]) else f"{r['images_per_second']:,.0f}"
        trained = _human(r["trainable_params"]) if r["trainable_params"] != r["params"] else "all"
        lines.append(f"{r['model']:<22} {_human(r['params']):>9} {trained:>9} {r['epochs']:>6} {r['s_per_epoch']:>8.1f} "
                     f"{speed:>11} {r['val_acc'] * 100:>7.2f}% {r['test_acc'] * 100:>7.2f}% {r['test_loss']:>9.4f} "
                     f"{seeds:>22}")
    return "\n".join(lines)


def accuracy_vs_time(rows: Sequence[dict[str, Any]], time_key: str = "train_seconds", ax=None,
                     reference: Mapping[str, float] | None = None, title: str = ""):
    """Scatter of test accuracy against training time, one labelled point per model (log time axis).

    Error bars show the seed sweep's std where there is one.  ``reference`` maps
    model names to another accuracy (e.g. the report's) drawn as hollow markers at the
    same time, so the gap is visible.
    """
    if not rows:
        raise ValueError("accuracy_vs_time needs at least one row (from comparison_rows)")
    if time_key not in rows[0]:
        raise KeyError(f"time_key {time_key!r} is not a column; choose one of {sorted(rows[0])}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(rows):
        color = f"C{i % 10}"
        err = r["seed_std"] * 100 if r["seed_n"] > 1 else None
        ax.errorbar(r[time_key], r["test_acc"] * 100, yerr=err, fmt="o", color=color, capsize=3, label=r["model"])
        ax.annotate(r["model"], (r[time_key], r["test_acc"] * 100), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if reference and r["model"] in reference:
            ax.plot(r[time_key], reference[r["model"]] * 100, "o", mfc="none", color=color)
    ax.set_xscale("log")
    ax.set_xlabel({"train_seconds": "training time (s, wall)", "s_per_epoch": "seconds per epoch"}.get(time_key, time_key))
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title or "accuracy vs training time" + (" (hollow: the report)" if reference else ""))
    ax.figure.tight_layout()
    return ax.figure


def misclassified_by_model(images: Tensor, labels: Tensor, preds: Mapping[str, Tensor], per_model: int = 8,
                           class_names: Sequence[str] | None = None, scale: float = 1.1):
    """One row per model: its first ``per_model`` misclassified test images, titled ``pred (true)``.

    Each row's label says how many test images the model got wrong in total.
    """
    if not preds:
        raise ValueError("preds is empty; pass {model name: predicted labels (N,)}")
    for name, p in preds.items():
        if p is None or len(p) != len(labels):
            raise ValueError(f"predictions of {name} have {None if p is None else len(p)} entries, labels {len(labels)}; "
                             "pass the test predictions (ModelRun.test_preds)")
    name_of = (lambda i: class_names[int(i)]) if class_names is not None else (lambda i: str(int(i)))
    fig, axes = plt.subplots(len(preds), per_model, figsize=(scale * per_model + 1.5, scale * len(preds)), squeeze=False)
    for row, (model, p) in enumerate(preds.items()):
        wrong = (p.cpu() != labels.cpu()).nonzero().flatten()
        for col in range(per_model):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(wrong):
                i = int(wrong[col])
                img = images[i].float() / (255 if images.dtype == torch.uint8 else 1)
                ax.imshow(img[0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"{name_of(p[i])} ({name_of(labels[i])})", fontsize=7, color="red")
        axes[row, 0].set_ylabel(f"{model}\n{len(wrong)} wrong", rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("misclassified test images: predicted (true)", fontsize=9)
    fig.tight_layout()
    return fig
