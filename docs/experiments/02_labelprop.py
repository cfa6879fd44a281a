"""Validation runs behind notebook 02's label-propagation protocol (100 labels + the unlabelled pool).

The notebook spreads each draw's 100 labels over the kNN graph of the unlabelled pool's
frozen features (``course_lib.labelprop``) and classifies the test images by a weighted
kNN vote (k = 20, T = 0.07, the kNN monitor's settings) of the pseudo-labelled pool.  Its settings (k, the similarity power, alpha, iterations) were fixed here,
on the *validation* split (the same stratified 10 % of the training set, seed 0) with
five *other* label draws (seeds 100-104) from the notebook's pool, so the test set plays no
part in them.  Run from the repository root, e.g.

    COURSE_DATA=../shared/data .venv/bin/python docs/experiments/02_labelprop.py moco-k10 pixels-k10 --threads 2

Settings are ``<features>-k<k>``: features ``moco`` (the shipped ``checkpoints/moco-<dataset>.pt``),
``byol`` (notebook 03's ``checkpoints/byol-mnist.pt``, MNIST only), ``random`` (a random-init encoder
of the same shape), ``pixels`` (raw pixels projected on their top 50 principal axes) or ``hog`` (HOG
descriptors, ``course_lib.hog``, projected the same way); k neighbours per image in the graph.
``moco+hog-k10`` and the like propagate over several views at once (one graph each, class scores and
votes averaged).  ``--dataset fashion-mnist`` runs the same on Fashion-MNIST.  Each prints the
pseudo-labels' accuracy on the pool and the validation accuracy of the kNN vote over them, mean ±
std over the five draws; the plain 100-label probe is printed once per feature set for comparison.

Measured on the 2-core course machine (``--threads 2``), MNIST, validation accuracy over the five draws:

    feature set   plain 100-label probe   pseudo-labels on the pool (k=10)   kNN on them (k=10)
    moco          89.05 ± 0.86 %          97.09 ± 0.33 %                     96.95 ± 0.21 %
    pixels        62.76 ± 1.73 % (PCA 50) 94.57 ± 0.75 %                     94.54 ± 0.63 %
    random        54.40 ± 2.66 %          76.26 ± 2.32 %                     75.74 ± 2.35 %

    byol          84.86 ± 2.25 %          86.78 ± 1.88 %                     87.32 ± 1.81 %

    moco-k5 96.67 ± 0.30 %, moco-k20 96.92 ± 0.24 % (kNN on the pseudo-labels): k = 10 is kept.
    BYOL's neighbourhoods are too mixed for the graph to help much, so notebook 03 has no such section.

The views, both datasets (``moco-k10 pixels-k10 hog-k10 moco+pixels-k10 moco+hog-k10
moco+pixels+hog-k10 --dataset <dataset> --threads 1``, two such runs sharing the machine; the
MoCo references as shipped on 2026-12-05):

    dataset         features          plain 100-label probe   pseudo-labels on the pool   kNN on them
    mnist           moco              89.05 ± 0.86 %          97.09 ± 0.33 %              96.95 ± 0.21 %
    mnist           pixels            62.76 ± 1.73 %          94.57 ± 0.75 %              94.54 ± 0.63 %
    mnist           hog               79.49 ± 2.16 %          94.36 ± 0.89 %              94.21 ± 0.92 %
    mnist           moco+pixels                               97.58 ± 0.23 %              97.43 ± 0.08 %
    mnist           moco+hog                                  97.68 ± 0.20 %              97.60 ± 0.20 %
    mnist           moco+pixels+hog                           97.62 ± 0.18 %              97.43 ± 0.19 %
    fashion-mnist   moco              71.81 ± 1.59 %          73.71 ± 2.21 %              73.83 ± 2.03 %
    fashion-mnist   pixels            63.02 ± 1.59 %          72.73 ± 1.50 %              72.68 ± 1.36 %
    fashion-mnist   hog               67.94 ± 0.83 %          77.05 ± 0.66 %              77.29 ± 0.98 %
    fashion-mnist   moco+pixels                               76.26 ± 1.90 %              76.91 ± 1.69 %
    fashion-mnist   moco+hog                                  78.63 ± 0.75 %              79.31 ± 0.86 %
    fashion-mnist   moco+pixels+hog                           78.22 ± 1.32 %              78.74 ± 1.04 %

(the probes on pixels and HOG run on their 50 principal axes).  Notebook 02 propagates over
MoCo + HOG.  On Fashion-MNIST HOG alone labels the pool better than MoCo's features, and MoCo adds
1.6 points to it; on MNIST it is the other way round.  HOG's settings (4 px cells, 9 bins, 2 x 2
blocks) are Dalal and Triggs'; a quick check outside this script (7 px cells, 12 bins, 100 axes)
found nothing clearly better, so they stay.

The test images are classified by a kNN vote of the pseudo-labelled pool rather than by a
probe trained on the pseudo-labels: one neighbour search then serves every draw.
"""

from __future__ import annotations

import statistics
import time

import torch

from course_lib.checkpoints import load_checkpoint
from course_lib.evaluation import class_balanced_indices, extract_features
from course_lib.fewlabel import cv_probe_accuracy
from course_lib.hog import hog_features
from course_lib.labelprop import label_propagation_accuracy, pca_project
from course_lib.ssl.encoders import ConvEncoder
from course_lib.ssl.recipes import MOCO_CONFIGS

from _common import parse_settings, train_val_split  # the module beside this script

DRAW_SEEDS = range(100, 105)
VIEWS = ("moco", "byol", "random", "pixels", "hog")
SETTINGS = [f"{f}-k{k}" for f in VIEWS for k in (5, 10, 20, 50)] + [
    f"{views}-k10" for views in ("moco+pixels", "moco+hog", "moco+pixels+hog", "pixels+hog")]


def features(kind: str, pool, val, dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool and validation features of one view."""
    if kind == "pixels":
        return tuple(pca_project(pool.images, val.images, dim=50))
    if kind == "hog":
        return tuple(pca_project(hog_features(pool.images), hog_features(val.images), dim=50))
    if kind == "byol":  # notebook 03's reference encoder, for comparison
        if dataset != "mnist":
            raise SystemExit("byol: notebook 03's reference encoder is trained on MNIST only; use --dataset mnist")
        state, meta = load_checkpoint("checkpoints/byol-mnist.pt")
        encoder = ConvEncoder(**meta["model_config"])
        encoder.load_state_dict(state)
        return extract_features(encoder, pool.images), extract_features(encoder, val.images)
    torch.manual_seed(0)
    encoder = MOCO_CONFIGS[dataset].encoder(1)
    if kind == "moco":
        state, _ = load_checkpoint(f"checkpoints/moco-{dataset}.pt")
        encoder.load_state_dict(state)
    return extract_features(encoder, pool.images), extract_features(encoder, val.images)


def mean_std(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f} %"


def main() -> None:
    args = parse_settings(__doc__, SETTINGS, datasets=("mnist", "fashion-mnist"))
    pool, val = train_val_split(args.dataset)
    draws = [class_balanced_indices(pool.labels, 10, s) for s in DRAW_SEEDS]
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    graphs: dict = {}  # each view's graph for each k, built once and shared by the settings that use it
    for name in args.settings:
        kinds, k = name.split("-k")[0].split("+"), int(name.split("-k")[1])
        for kind in kinds:
            if kind not in cache:
                cache[kind] = features(kind, pool, val, args.dataset)
                ftr, fva = cache[kind]
                plain = [cv_probe_accuracy(ftr[i], pool.labels[i], fva, val.labels)[0] for i in draws]
                print(f"{kind:<7} plain 100-label probe: validation {mean_std(plain)}", flush=True)
        t0 = time.perf_counter()
        res = label_propagation_accuracy([cache[v][0] for v in kinds], pool.labels, [cache[v][1] for v in kinds],
                                         val.labels, draws, k=k, cache=graphs)
        print(f"{name:<10} pseudo-labels on the pool {mean_std(res['pseudo_label_acc'])}, kNN on them: validation "
              f"{mean_std(res['test_acc'])} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
