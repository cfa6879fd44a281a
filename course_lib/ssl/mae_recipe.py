"""Pretraining a tiny masked autoencoder on CIFAR, and using it: features, galleries, the recipe.

The report behind notebook 06 fed CIFAR-100 images to a frozen ImageNet ViT-L it
could not train itself.  Here the course pretrains its own tiny MAE (a 0.9 M
parameter ViT on 4 x 4 patches of 32 px images) with ``course pretrain mae-cifar10``
and ships the checkpoint; the notebook rebuilds the same model from ``MAE_CONFIGS``,
so loading the checkpoint and retraining with ``TRAIN=True`` run the same code.

- ``MAEConfig`` / ``MAE_CONFIGS``: model size, mask ratio, optimiser and schedule;
- ``pretrain_mae``: the training loop (``ssl.trainer.train_ssl`` with one
  augmented view per image, AdamW without weight decay on norms, biases and tokens);
- ``encoder_features``: CLS, mean-pooled and flattened-token features from *one*
  encoder pass (the expensive part of every probe);
- ``masked_reconstructions``: what the model fills in at several mask ratios;
- ``mae_recipe``: the ``course pretrain mae-<dataset>`` command.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .. import augment as A
from ..evaluation import knn_classify, linear_probe
from .mae import MAE, POOLS, unpatchify
from .pretraining import prepare_pretraining
from .trainer import KNNMonitor, SSLHistory, train_ssl


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class MAEConfig:
    """Everything that defines an MAE pretraining run on small colour images.

    The recipe follows the MAE paper (mask 75 % of the patches, per-patch normalised
    pixel targets, AdamW with betas (0.9, 0.95) and weight decay 0.05, warm-up then
    cosine decay, random-resized-crop + flip as the only augmentation), scaled down:
    a 4-block, 128-wide encoder on 4 x 4 patches (64 tokens for 32 px) and a
    2-block, 64-wide decoder, trained for tens of epochs instead of 800 - what fits
    in about half an hour of one CPU core.  The learning rate is higher than the
    paper's 1.5e-4 x batch/256 because the schedule is ~30x shorter.
    """

    image_size: int = 32
    patch_size: int = 4
    in_channels: int = 3
    enc_dim: int = 128
    enc_depth: int = 4
    enc_heads: int = 4
    dec_dim: int = 64
    dec_depth: int = 2
    dec_heads: int = 4
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    batch_size: int = 256
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    epochs: int = 25
    warmup_epochs: float = 2.0
    crop_scale: tuple[float, float] = (0.35, 1.0)
    hflip: bool = True
    dataset: str = "cifar10"

    def model_kwargs(self) -> dict:
        """Constructor arguments of ``MAE`` (stored in checkpoint metadata)."""
        keys = ("image_size", "patch_size", "in_channels", "enc_dim", "enc_depth", "enc_heads",
                "dec_dim", "dec_depth", "dec_heads", "mask_ratio", "norm_pix_loss")
        return {k: getattr(self, k) for k in keys}

    def model(self) -> MAE:
        """A fresh (randomly initialised) MAE of this configuration."""
        return MAE(**self.model_kwargs())

    def to_dict(self) -> dict:
        return asdict(self)


MAE_CONFIGS: dict[str, MAEConfig] = {
    "cifar10": MAEConfig(),
    "cifar100": MAEConfig(dataset="cifar100"),
}


class OneView:
    """``view(x, generator) -> (t(x),)``: the single augmented view MAE trains on."""

    def __init__(self, transform: Callable[..., Tensor]) -> None:
        if isinstance(transform, type) or not callable(transform):
            raise ValueError(f"OneView needs a transform object (e.g. RandomResizedCrop(32)), got {transform!r}")
        self.transform = transform

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor]:
        return (self.transform(x, generator=generator),)

    def __repr__(self) -> str:
        return f"OneView({self.transform!r})"


def mae_views(cfg: MAEConfig) -> OneView:
    """The MAE augmentation of ``cfg``: random resized crop and horizontal flip, nothing else.

    Masking is the real pretext task; MAE needs no colour jitter (the paper found it
    hurts), unlike contrastive methods.
    """
    steps: list[A.Transform] = [A.RandomResizedCrop(cfg.image_size, scale=cfg.crop_scale)]
    if cfg.hflip:
        steps.append(A.RandomHorizontalFlip())
    return OneView(A.Compose(steps))


class MAELoss(nn.Module):
    """``MAELoss(mae)(x)`` is the masked-reconstruction loss alone (what ``train_ssl`` wants).

    ``MAE.forward`` also returns the predictions and the mask for galleries; the
    training loop only needs the scalar loss.  The masks come from torch's global
    random generator, which ``train_ssl`` saves in its resume file.
    """

    def __init__(self, mae: MAE) -> None:
        super().__init__()
        self.mae = mae

    def forward(self, x: Tensor) -> Tensor:
        loss, _, _ = self.mae(x)
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on weight matrices only, not on biases, norms or tokens."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and p.shape[0] > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def pretrain_mae(
    mae: MAE,
    images: Tensor,
    cfg: MAEConfig,
    *,
    epochs: int | None = None,
    monitor: KNNMonitor | None = None,
    monitor_every: int = 5,
    checkpoint: str | Path | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    max_steps_per_epoch: int | None = None,
    log: Callable[[str], None] | None = print,
) -> SSLHistory:
    """Pretrain ``mae`` in place on unlabelled uint8 ``images`` and return the history.

    ``monitor`` (a ``KNNMonitor``) is evaluated on the mean-pooled encoder features
    every ``monitor_every`` epochs; ``checkpoint`` is a resume file written after
    every epoch (an interrupted run continues from it).
    """
    if images.dim() != 4 or tuple(images.shape[1:]) != (cfg.in_channels, cfg.image_size, cfg.image_size):
        raise ValueError(f"images must be (N, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}) for this "
                         f"MAEConfig, got {tuple(images.shape)}; use a config made for this dataset")
    if device is None:
        device = next(mae.parameters()).device
    mae.to(device)
    batch_size = min(cfg.batch_size, len(images))
    opt = torch.optim.AdamW(param_groups(mae, cfg.weight_decay), lr=cfg.lr * batch_size / cfg.batch_size,
                            betas=cfg.betas)
    return train_ssl(MAELoss(mae), images, mae_views(cfg), epochs=epochs or cfg.epochs, batch_size=batch_size,
                     optimizer=opt, warmup_epochs=cfg.warmup_epochs, backbone=mae.as_backbone("mean"),
                     monitor=monitor, monitor_every=monitor_every, checkpoint=checkpoint, device=device, seed=seed,
                     max_steps_per_epoch=max_steps_per_epoch, log=log)


# --------------------------------------------------------------------------- using the encoder


@torch.no_grad()
def encoder_features(
    mae: MAE,
    images: Tensor,
    pools: Sequence[str] = POOLS,
    batch_size: int = 500,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """``{pool: (N, D) CPU features}`` for each of ``pools`` from a single encoder pass.

    ``"cls"`` is the class token, ``"mean"`` the average of the patch tokens (both
    ``enc_dim`` wide), ``"flat"`` all patch tokens concatenated (``L * enc_dim`` wide,
    what the report did with 197 x 1024 ViT-L tokens).  Images are uint8 or float in
    [0, 1]; the encoder runs unmasked, in eval mode, without gradients.
    """
    bad = [p for p in pools if p not in POOLS]
    if bad or not pools:
        raise ValueError(f"pools must be a non-empty subset of {POOLS}, got {list(pools)}")
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    home = next(mae.parameters()).device
    dev = torch.device(device) if device is not None else home
    was_training = mae.training
    mae.to(dev).eval()
    out: dict[str, list[Tensor]] = {p: [] for p in pools}
    try:
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(dev)
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            latent, _, _ = mae.forward_encoder(x, 0.0)
            for p in pools:
                f = latent[:, 0] if p == "cls" else latent[:, 1:].mean(1) if p == "mean" else latent[:, 1:].flatten(1)
                out[p].append(f.float().cpu())
    finally:
        mae.to(home).train(was_training)
    return {p: torch.cat(v) for p, v in out.items()}


@torch.no_grad()
def masked_reconstructions(
    mae: MAE, images: Tensor, mask_ratios: Sequence[float], seed: int = 0
) -> dict[float, tuple[Tensor, Tensor]]:
    """``{ratio: (masked input, reconstruction)}``, float images in [0, 1] on the CPU.

    The masked input shows removed patches in grey; the reconstruction keeps the
    visible patches and pastes the model's predictions into the removed ones
    (de-normalised with each patch's own statistics when ``norm_pix_loss`` is on, as
    in the MAE demo).  The same seed gives the same masks.
    """
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    dev = next(mae.parameters()).device
    x = x.to(dev)
    was_training = mae.training
    mae.eval()
    result = {}
    try:
        for ratio in mask_ratios:
            g = torch.Generator(device=dev).manual_seed(seed)
            _, pred, mask = mae(x, mask_ratio=ratio, generator=g)
            m = mask.unsqueeze(-1).expand(-1, -1, mae.patch_size ** 2 * mae.in_channels)
            grey = unpatchify(m, mae.patch_size, mae.in_channels)
            masked = x * (1 - grey) + 0.5 * grey
            recon = mae.reconstruct(pred, x, mask).clamp(0, 1)
            result[float(ratio)] = (masked.cpu(), recon.cpu())
    finally:
        mae.train(was_training)
    return result


# --------------------------------------------------------------------------- the recipe


def _probe_val(train_f: Tensor, train_y: Tensor, val_f: Tensor, val_y: Tensor) -> float:
    return float(linear_probe(train_f, train_y, val_f, val_y, C=1.0).test_accuracy)


def mae_recipe(dataset: str) -> Callable[..., Path]:
    """The ``course pretrain mae-<dataset>`` recipe: pretrain, evaluate on validation, save."""
    if dataset not in MAE_CONFIGS:
        raise ValueError(f"no MAE config for {dataset!r}; known: {sorted(MAE_CONFIGS)}")

    def recipe(*, out: str | Path | None = None, epochs: int | None = None, seed: int = 0, root: str | None = None,
               device: str | None = None, limit: int | None = None, fresh: bool = False,
               log: Callable[[str], None] = print) -> Path:
        cfg = MAE_CONFIGS[dataset]
        setup = prepare_pretraining(f"mae-{dataset}", dataset, cfg, epochs=epochs or cfg.epochs, seed=seed, root=root,
                                    device=device, limit=limit, fresh=fresh, log=log)
        dev, train, val = setup.device, setup.train, setup.val
        mae = cfg.model().to(dev)
        history = pretrain_mae(mae, setup.images, cfg, epochs=setup.epochs, monitor=setup.monitor,
                               checkpoint=setup.resume, device=dev, seed=seed, log=log)
        setup.raise_if_interrupted(history)

        t0 = time.perf_counter()
        torch.manual_seed(seed)
        random_init = cfg.model().to(dev)
        metrics: dict[str, float] = {"final_loss": history.records[-1]["loss"]}
        for tag, model in (("mae", mae), ("random", random_init)):
            f_train = encoder_features(model, train.images, ("cls", "mean"))
            f_val = encoder_features(model, val.images, ("cls", "mean"))
            for pool in ("cls", "mean"):
                metrics[f"val_probe_{pool}_acc_{tag}"] = _probe_val(f_train[pool], train.labels, f_val[pool], val.labels)
            pred = knn_classify(f_train["mean"], train.labels, f_val["mean"])
            metrics[f"val_knn_mean_acc_{tag}"] = float((pred == val.labels).float().mean())
        log(f"[{time.strftime('%H:%M:%S')}] evaluation on the validation split "
            f"({time.perf_counter() - t0:.0f} s): {metrics}")
        out = setup.save(out, mae, history, metrics,
                         model_config=cfg.model_kwargs(), mae_config=cfg.to_dict(), views=repr(mae_views(cfg)),
                         metrics_note="linear probes (C=1, standardised) trained on the training split, accuracy "
                                      "on the validation split; 'random' = a randomly initialised encoder of the "
                                      "same shape")
        log(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB)")
        return out

    recipe.__doc__ = f"MAE (ViT 4x4 patches) on {dataset}, checkpoint checkpoints/mae-{dataset}.pt"
    return recipe
