"""``course pretrain NAME``: train one of the reference checkpoints the notebooks load.

Each name maps to a recipe function in :mod:`course_lib.recipes` that trains the
model, evaluates it on a validation split and writes ``checkpoints/<name>.pt`` with
metadata (command, commit, data checksum, wall time).  To add a checkpoint, write
its recipe and add one line to ``RECIPES``.

    course pretrain --list
    course pretrain alexnet-cifar10 [--epochs N] [--seed S] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import torch

from . import recipes, transfer
from .ssl import recipes as ssl_recipes
from .ssl.byol_recipe import byol_recipe
from .ssl.finetune_recipe import finetune_all_recipe
from .ssl.mae_recipe import mae_recipe
from .ssl.scan_recipe import moco_scan_recipe, scan_recipe

#: name -> (recipe function, one-line description).  A recipe takes ``out``, ``epochs``,
#: ``seed``, ``root`` and ``device`` keyword arguments and returns the checkpoint path.
RECIPES: dict[str, tuple[Callable[..., Any], str]] = {
    "alexnet-cifar10": (recipes.alexnet_cifar10,
                        "notebook 01: AlexNet (width 0.5, 2.5 M params) on CIFAR-10, one-cycle SGD"),
    "moco-mnist": (ssl_recipes.moco_recipe("mnist"),
                   "notebook 02: MoCo v2, 28 px ConvEncoder (388 k params) on unlabelled MNIST"),
    "moco-fashion-mnist": (ssl_recipes.moco_recipe("fashion-mnist"),
                           "notebook 02: MoCo v2, 28 px ConvEncoder on unlabelled Fashion-MNIST"),
    "moco-scan-mnist": (moco_scan_recipe("mnist"),
                        "notebook 02: moco-mnist refined by SCAN (cluster heads + self-labelling), no labels"),
    "moco-scan-fashion-mnist": (moco_scan_recipe("fashion-mnist"),
                                "notebook 02: moco-fashion-mnist refined by SCAN, no labels"),
    "byol-mnist": (byol_recipe("mnist"),
                   "notebook 03: BYOL, the same 28 px ConvEncoder (388 k params) on unlabelled MNIST, cosine tau"),
    "byol-fashion-mnist": (byol_recipe("fashion-mnist"),
                           "not shipped: BYOL with moco-fashion-mnist's views, to compare (see BYOL_CONFIGS)"),
    "byol-mnist-finetuned": (finetune_all_recipe("byol", "mnist"),
                             "notebook 03: every layer of byol-mnist fine-tuned with every label, random-shift augmentation"),
    "byol-scan-mnist": (scan_recipe("byol", "mnist"),
                        "notebook 03: byol-mnist refined by SCAN (cluster heads + self-labelling), no labels"),
    "mae-cifar10": (mae_recipe("cifar10"),
                    "notebook 06: masked autoencoder, 0.9 M-param ViT on 4x4 patches, unlabelled CIFAR-10"),
    "mae-cifar100": (mae_recipe("cifar100"),
                     "notebook 06: the same MAE on unlabelled CIFAR-100 (needs the CIFAR-100 download)"),
    "resnet18-fashion-mnist": (transfer.resnet18_fashion_mnist,
                               "notebook 05: ResNet-18 (ImageNet stem) on Fashion-MNIST, fp16 backbone for MNIST transfer"),
}


def cli(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (without the leading ``pretrain``) and run the named recipe."""
    ap = argparse.ArgumentParser(prog="course pretrain", description=__doc__.split("\n\n")[0])
    ap.add_argument("name", nargs="?", help="which checkpoint to train (see --list)")
    ap.add_argument("--list", action="store_true", help="list the known checkpoints and exit")
    ap.add_argument("--out", default=None, help="output file (default checkpoints/<name>.pt)")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (trials only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", default=None, help="data directory (default $COURSE_DATA)")
    ap.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (default: torch's own choice). On a machine shared with other "
                         "jobs use --threads 1: torch with several threads slows down badly when cores are busy")
    ap.add_argument("--limit", type=int, default=None,
                    help="train on only the first N images (a quick check of the code path; recipes that support it)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if args.list or not args.name:
        for name, (_, doc) in RECIPES.items():
            print(f"{name:<{max(map(len, RECIPES))}}  {doc}")
        return 0 if args.list else 2
    if args.name not in RECIPES:
        print(f"course pretrain: unknown checkpoint {args.name!r}; known: {', '.join(RECIPES)} "
              "(add a recipe to course_lib/recipes.py and register it in course_lib/pretrain.py RECIPES)",
              file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print(f"course pretrain: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    fn, _ = RECIPES[args.name]
    extra = {"limit": args.limit} if args.limit is not None else {}
    fn(out=args.out, epochs=args.epochs, seed=args.seed, root=args.root, device=args.device, **extra)
    return 0
