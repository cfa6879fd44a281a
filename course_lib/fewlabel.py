"""Learning from few labels: supervised baselines, probes with honest C, label-efficiency curves.

With 100 labelled images there is no room for a validation set, so every setting
here is fixed in advance (a number of optimiser *steps*, since "epochs" of 100
images mean nothing) or chosen by cross-validation inside the labelled draw.
Accuracies are reported over several class-balanced draws
(``course_lib.evaluation.class_balanced_indices``), never one lucky split.

- ``offline_augment``: the report's "x10 augmentation": a fixed set of augmented
  copies made once, before training (compare with online augmentation, where every
  step sees fresh random copies).
- ``train_supervised``: a classifier trained from scratch on a few labelled images.
- ``accuracy_and_logits``: evaluate a classifier once, batched, without gradients.
- ``cv_probe`` / ``cv_probe_accuracy``: linear probe on frozen features with ``C``
  chosen by CV inside the labelled set (fixed when there is one label per class).
- ``label_efficiency``: accuracy vs number of labels for several methods.
- ``FEW_LABEL_AUGMENTATION``: notebook 02's online augmentation for the 100-label CNN
  per dataset (name, transform), shared by the notebook and its validation experiments.
"""

from __future__ import annotations

import contextlib
import statistics
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import augment as A
from .evaluation import ProbeResult, class_balanced_indices, cv_select_C, linear_probe
from .train import wants_channels_last

Transform = Callable[..., Tensor]
FitFn = Callable[[Tensor, Tensor, Tensor, Tensor], float]

#: Per dataset, the augmentation a CNN trained on 100 labels gets (and self-training's student),
#: chosen on the validation split with other label draws (``docs/experiments/02_supervised100.py``):
#: Simard's elastic distortion for digits, a mirror flip and a 2 px padded crop for garments.
FEW_LABEL_AUGMENTATION: dict[str, tuple[str, A.Transform]] = {
    "mnist": ("elastic", A.ElasticDistortion(alpha=34, sigma=4)),
    "fashion-mnist": ("flip / padded crop", A.Compose([A.RandomHorizontalFlip(), A.RandomCrop(28, padding=2)])),
}


def _float(x: Tensor) -> Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def offline_augment(images: Tensor, labels: Tensor, copies: int, transform: Transform,
                    seed: int = 0, keep_original: bool = True) -> tuple[Tensor, Tensor]:
    """Return ``copies`` augmented versions of every image, made once (uint8 in, uint8 out).

    With ``keep_original`` the originals come first, then ``copies - 1`` augmented
    sets, so ``copies=10`` turns 100 images into 1,000 (the report's "x10").  The
    result is a *fixed* dataset: the network sees the same 10 versions every epoch,
    unlike online augmentation, which draws new ones at every step.
    """
    if copies < 1:
        raise ValueError(f"copies must be >= 1 (copies=10 makes 10 versions of each image), got {copies}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    gen = torch.Generator().manual_seed(seed)
    x = _float(images)
    out = [x] if keep_original else []
    while len(out) < copies:
        out.append(transform(x.clone(), generator=gen))
    aug = torch.cat(out)
    if images.dtype == torch.uint8:
        aug = aug.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    return aug, labels.repeat(copies)


def train_supervised(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    steps: int = 300,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    transform: Transform | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    channels_last: bool | None = None,
) -> nn.Module:
    """Train ``model`` from scratch on a few labelled images for a fixed number of steps.

    AdamW with a cosine learning-rate decay; each step draws ``batch_size`` images
    (with replacement of the order every pass) and, if ``transform`` is given,
    augments them online with fresh random parameters.  Returns the model in eval
    mode.  The number of steps is fixed in advance: with 100 labels there is no
    validation set to stop early on.  ``channels_last`` as in ``course_lib.train.fit``
    (``None``: NHWC for conv nets on CPU and CUDA).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images (and at least one); got {len(images)} and {len(labels)}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if channels_last is None:
        channels_last = wants_channels_last(model, dev)
    model.to(dev, memory_format=torch.channels_last if channels_last else torch.preserve_format).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed)
    bs = min(batch_size, len(images))
    order, pos = torch.randperm(len(images), generator=gen), 0
    for _ in range(steps):
        if pos + bs > len(order):
            order, pos = torch.randperm(len(images), generator=gen), 0
        idx = order[pos:pos + bs]
        pos += bs
        x = _float(images[idx].to(dev))
        if transform is not None:
            x = transform(x, generator=gen)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), labels[idx].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def accuracy_and_logits(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000,
                        device: torch.device | str | None = None) -> tuple[float, Tensor]:
    """Top-1 accuracy and the logits ``(N, classes)`` (CPU) of ``model`` in eval mode."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits = torch.cat([model(_float(images[i:i + batch_size].to(dev))).float().cpu()
                        for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return float((logits.argmax(1) == labels.cpu()).float().mean()), logits


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count after.

    A probe on 100 labelled feature vectors is thousands of tiny operations; with
    several threads each pays a synchronisation cost that dominates, and on a busy
    CPU (other jobs on the cores) it can be 20-50x slower than one thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cv_probe(train_features: Tensor, train_labels: Tensor, test_features: Tensor | None = None,
             test_labels: Tensor | None = None, Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0), fixed_C: float = 0.1,
             cv_max: int = 5000, large_C: float = 1.0, seed: int = 0) -> ProbeResult:
    """Linear probe with ``C`` chosen by cross-validation inside the labelled set.

    Two cases have ``C`` fixed in advance instead: a single example of some class
    (nothing to cross-validate; ``fixed_C``, strong regularisation) and more than
    ``cv_max`` labelled examples (CV would cost minutes and regularisation barely
    matters with that much data; ``large_C``).  Returns ``linear_probe``'s result
    (its ``C`` is the one used, ``test_accuracy`` is set when test data is given).
    """
    counts = torch.bincount(train_labels.cpu().long())
    if int(counts[counts > 0].min()) < 2:
        C = fixed_C
    elif len(train_labels) > cv_max:
        C = large_C
    else:
        with torch_threads(1):  # many tiny L-BFGS fits: one thread is fastest
            C, _ = cv_select_C(train_features, train_labels, Cs=Cs, seed=seed)
    with torch_threads(1) if len(train_labels) <= cv_max else contextlib.nullcontext():
        return linear_probe(train_features, train_labels, test_features, test_labels, C=C)


def cv_probe_accuracy(train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor,
                      Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0), fixed_C: float = 0.1,
                      cv_max: int = 5000, large_C: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """``cv_probe``'s test accuracy and the ``C`` it used: ``(test accuracy, C)``."""
    res = cv_probe(train_features, train_labels, test_features, test_labels, Cs=Cs, fixed_C=fixed_C, cv_max=cv_max,
                   large_C=large_C, seed=seed)
    return float(res.test_accuracy), res.C


def label_efficiency(
    methods: Mapping[str, FitFn],
    train_inputs: Mapping[str, Tensor] | Tensor,
    train_labels: Tensor,
    test_inputs: Mapping[str, Tensor] | Tensor,
    test_labels: Tensor,
    sizes: Sequence[int | None],
    draws: Mapping[int | None, int] | int = 3,
    log: Callable[[str], None] | None = print,
) -> dict[str, dict[int, dict]]:
    """Accuracy against the number of labels, for several methods on the same draws.

    Args:
        methods: name -> ``fit_fn(train_x, train_y, test_x, test_y) -> test accuracy``.
        train_inputs / test_inputs: one tensor for all methods, or name -> tensor
            (e.g. images for a supervised model, frozen features for a probe).
        sizes: labels *per class*; ``None`` = every training label.
        draws: class-balanced draws per size (an int for all, or size -> count);
            the full set (``None``) is always one draw.
        log: a progress line per size and method.

    Every method sees the same labelled indices for a given size and draw.  Returns
    ``{method: {total labels: {"mean", "std", "per_draw"}}}``.
    """
    out: dict[str, dict[int, dict]] = {name: {} for name in methods}
    for n in sizes:
        k = 1 if n is None else (draws if isinstance(draws, int) else draws.get(n, 3))
        idxs = ([torch.arange(len(train_labels))] if n is None
                else [class_balanced_indices(train_labels, n, s) for s in range(k)])
        total = len(idxs[0])
        for name, fit in methods.items():
            xtr = train_inputs[name] if isinstance(train_inputs, Mapping) else train_inputs
            xte = test_inputs[name] if isinstance(test_inputs, Mapping) else test_inputs
            accs = [float(fit(xtr[i], train_labels[i], xte, test_labels)) for i in idxs]
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            out[name][total] = {"mean": statistics.fmean(accs), "std": std, "per_draw": accs}
            if log:
                log(f"{total:>6} labels  {name:<22} {100 * out[name][total]['mean']:.2f} ± {100 * std:.2f} % "
                    f"({len(accs)} draw{'s' if len(accs) > 1 else ''})")
    return out
