"""The ``course pretrain <method>-scan-<dataset>`` recipes: a pretrained encoder refined by SCAN, still without labels.

SCAN (Van Gansbeke et al., 2020) has three stages; the MoCo (or BYOL) checkpoint is the
first (pretext features).  This recipe runs the other two from ``course_lib.scan`` on the
same unlabelled pool:

1. mine each image's ``k`` nearest neighbours in the encoder's feature space and train
   linear cluster heads on the frozen features with the SCAN loss; keep the lowest-loss head;
2. self-labelling: the images that head is confident about become pseudo-labelled
   training data for the encoder (plus a new linear head), with the method's own
   augmentation.

No label is read until the evaluation on the validation split.  Notebook 02 loads the
result as ``checkpoints/moco-scan-<dataset>.pt``, notebook 03 as ``byol-scan-mnist.pt``
(the same recipe on the BYOL encoder, whose neighbourhoods, since the lr-0.2
checkpoint, are as pure as MoCo's); when they retrain (``TRAIN = True``) they run
stage 2 with ``course_lib.scan.scan_clusters`` and stage 3 with
``load_or_self_label``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ..augment import Transform
from ..evaluation import extract_features
from ..scan import fit_scan_heads, mine_neighbours, self_label
from .byol_recipe import BYOL_CONFIGS, byol_views
from .pretraining import load_base_checkpoint, prepare_pretraining
from .recipes import MOCO_CONFIGS, encoder_val_metrics, moco_views


@dataclass(frozen=True)
class ScanConfig:
    """SCAN's settings on top of a MoCo or BYOL checkpoint (chosen on validation, ``docs/experiments/02_scan.py``).

    ``k`` neighbours per image, ``heads`` cluster heads trained ``scan_epochs`` epochs
    with ``entropy_weight``; then ``epochs`` of self-labelling (Adam, ``lr`` with a
    cosine decay, batch ``batch_size``) on the images whose cluster probability
    reaches ``threshold``.
    """

    num_clusters: int = 10
    k: int = 20
    heads: int = 10
    scan_epochs: int = 30
    entropy_weight: float = 2.0
    epochs: int = 6
    threshold: float = 0.0  # every pool image; 0.99 (the paper's) left out the hard ones: 95.3 % vs 96.3 %
    lr: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 128

    def to_dict(self) -> dict:
        return asdict(self)

    def self_label_settings(self) -> dict:
        """The keyword arguments of ``course_lib.scan.self_label`` this config fixes."""
        return {"threshold": self.threshold, "lr": self.lr, "weight_decay": self.weight_decay,
                "batch_size": self.batch_size}


SCAN_CONFIGS: dict[str, ScanConfig] = {"mnist": ScanConfig(), "fashion-mnist": ScanConfig()}


def _views(method: str, dataset: str) -> Transform:
    """The method's own view augmentation (one view), which self-labelling trains with."""
    if method == "moco":
        return moco_views(MOCO_CONFIGS[dataset]).t1
    return byol_views(BYOL_CONFIGS[dataset]).t1


#: which pretrained encoders SCAN can refine: method -> the datasets with a pretraining config
SCAN_BASES = {"moco": ("mnist", "fashion-mnist"), "byol": ("mnist",)}


def _check_base(method: str, dataset: str) -> None:
    if dataset not in SCAN_CONFIGS or dataset not in SCAN_BASES.get(method, ()):
        raise ValueError(f"no SCAN config for {method!r} on {dataset!r}; known: "
                         f"{sorted(f'{m}-{d}' for m, ds in SCAN_BASES.items() for d in ds)}")


def self_label_trainer(
    base: nn.Module,
    cluster_head: nn.Module,
    images: Tensor,
    method: str,
    dataset: str,
    *,
    epochs: int | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    max_steps_per_epoch: int | None = None,
) -> Callable[[nn.Module], dict]:
    """The ``train_fn`` a notebook gives ``load_or_train("<method>-scan-<dataset>", ...)``: SCAN's stage 3.

    The returned function copies ``base``'s weights into the fresh encoder it is given,
    self-labels it on ``images`` with ``cluster_head`` (from ``scan_clusters``), the
    method's own views and ``SCAN_CONFIGS[dataset]`` (``epochs`` overrides the config's),
    and returns the checkpoint metadata.  ``scan_recipe`` below does the same from the command line.
    """
    _check_base(method, dataset)
    cfg, augment = SCAN_CONFIGS[dataset], _views(method, dataset)
    epochs = epochs or cfg.epochs

    def train(encoder: nn.Module) -> dict:
        encoder.load_state_dict(base.state_dict())
        dev = torch.device(device) if device is not None else next(encoder.parameters()).device
        sl = self_label(encoder.to(dev), cluster_head.to(dev), images, augment, cfg.num_clusters, epochs=epochs,
                        **cfg.self_label_settings(), device=dev, seed=seed, max_steps_per_epoch=max_steps_per_epoch)
        return {"epochs": epochs, "dataset": dataset, "history": sl.history.to_dict(), "model_config": encoder.config(),
                "scan_config": cfg.to_dict(), "views": repr(augment), "confident_fraction": sl.confident_fraction,
                "cluster_sizes": sl.cluster_sizes, "metrics": {"confident_fraction": sl.confident_fraction}}

    return train


def load_or_self_label(
    base: nn.Module,
    cluster_head: nn.Module,
    images: Tensor,
    method: str,
    dataset: str,
    *,
    profile: str,
    retrain: bool = False,
    epochs: int | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    max_steps_per_epoch: int | None = None,
) -> tuple[nn.Module, dict]:
    """The SCAN-refined encoder ``<method>-scan-<dataset>`` for a notebook: loaded, or self-labelled here.

    ``checkpoints.load_or_train`` with ``self_label_trainer``: the reference checkpoint
    unless ``retrain`` (or the ``full`` profile), else ``base`` refined on ``images``
    with ``cluster_head``.  Returns the encoder (in eval mode, on ``device``) and its metadata.
    """
    from ..checkpoints import load_or_train

    torch.manual_seed(seed)
    train = self_label_trainer(base, cluster_head, images, method, dataset, epochs=epochs, device=device, seed=seed,
                               max_steps_per_epoch=max_steps_per_epoch)
    encoder, meta = load_or_train(f"{method}-scan-{dataset}", copy.deepcopy(base).cpu(), train, profile=profile,
                                  retrain=retrain)
    return encoder.to(device if device is not None else next(base.parameters()).device).eval(), meta


def scan_recipe(method: str, dataset: str) -> Callable[..., Path]:
    """The ``course pretrain <method>-scan-<dataset>`` recipe: SCAN on ``checkpoints/<method>-<dataset>.pt``."""
    _check_base(method, dataset)
    name, base_name = f"{method}-scan-{dataset}", f"{method}-{dataset}"

    def recipe(*, out: str | Path | None = None, epochs: int | None = None, seed: int = 0, root: str | None = None,
               device: str | None = None, limit: int | None = None, fresh: bool = False,
               log: Callable[[str], None] = print, base: str | Path | None = None) -> Path:
        base_ckpt = load_base_checkpoint(base, needed_by=name, base_name=base_name)
        t_all = time.perf_counter()
        cfg = SCAN_CONFIGS[dataset]
        augment = _views(method, dataset)
        setup = prepare_pretraining(name, dataset, (cfg, base_ckpt.sha256),
                                    epochs=epochs or cfg.epochs, seed=seed, root=root, device=device, limit=limit,
                                    fresh=fresh, log=log)
        dev, train, val = setup.device, setup.train, setup.val
        encoder = base_ckpt.encoder.to(dev).eval()

        t0 = time.perf_counter()
        features = extract_features(encoder, setup.images)
        scan = fit_scan_heads(features, mine_neighbours(features, k=cfg.k), cfg.num_clusters, heads=cfg.heads,
                              epochs=cfg.scan_epochs, entropy_weight=cfg.entropy_weight, seed=seed)
        log(f"SCAN heads ({time.perf_counter() - t0:.0f} s): losses {[round(v, 3) for v in scan.losses]}, "
            f"kept head {scan.chosen}")
        sl = self_label(encoder, scan.head.to(dev), setup.images, augment, cfg.num_clusters, epochs=setup.epochs,
                        **cfg.self_label_settings(), monitor=setup.monitor, checkpoint=setup.resume, device=dev,
                        seed=seed, log=log)
        setup.raise_if_interrupted(sl.history)
        log(f"self-labelling used {100 * sl.confident_fraction:.1f} % of the pool; cluster sizes {sl.cluster_sizes}")

        t0 = time.perf_counter()
        metrics, _ = encoder_val_metrics(encoder, train, val)
        metrics["final_loss"] = sl.history.records[-1]["loss"]
        log(f"evaluation on the validation split ({time.perf_counter() - t0:.0f} s): {metrics}")
        out = setup.save(out, encoder, sl.history, metrics, total_wall_time_s=time.perf_counter() - t_all,
                         model_config=encoder.config(), scan_config=cfg.to_dict(),
                         views=repr(augment),
                         base_checkpoint=base_ckpt.provenance(),
                         scan_losses=scan.losses, scan_chosen=scan.chosen,
                         confident_fraction=sl.confident_fraction, cluster_sizes=sl.cluster_sizes)
        log(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB)")
        return out

    recipe.__doc__ = (f"SCAN (cluster heads + self-labelling) on the {method} encoder of {dataset}, "
                      f"checkpoint checkpoints/{name}.pt")
    return recipe


def moco_scan_recipe(dataset: str) -> Callable[..., Path]:
    """``scan_recipe("moco", dataset)``: notebook 02's refined MoCo encoder."""
    return scan_recipe("moco", dataset)
