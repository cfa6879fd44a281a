"""SCAN's clustering step on frozen MoCo / BYOL features (notebook 02's and 03's checkpoints), scored on validation.

Each setting loads a shipped encoder, extracts features of notebook 02's unlabelled pool
(the MNIST training split minus its stratified 10 % validation split, seed 0), mines each
image's 20 nearest neighbours, trains 10 linear cluster heads with the SCAN loss
(``course_lib.scan.fit_scan_heads``) and keeps the head with the lowest loss: no labels
so far.  Reported on the *validation* split: the clusters' matched accuracy (best
one-to-one map, no labels), and the accuracy when 100 labelled pool images (5
class-balanced draws) name the clusters.  The test set is never touched.  Run from the
repository root, e.g.

    COURSE_DATA=../shared/data .venv/bin/python docs/experiments/02_scan.py moco moco-w5 byol --threads 1

Settings: ``moco`` (checkpoints/moco-mnist.pt, entropy weight 2), ``moco-w5`` (entropy
weight 5, SCAN's CIFAR-10 value), ``byol`` (checkpoints/byol-mnist.pt, weight 2).

Measured on the 2-core course machine, 1 thread (about 90 s per setting), validation:

    setting   neighbours of the same class   clusters (no labels)   100 labels name the clusters
    moco      95.9 %                         96.77 %                96.77 ± 0.00 %
    moco-w5   95.9 %                         96.73 %                96.73 ± 0.00 %
    byol      92.6 %                         71.01 %                68.99 ± 2.08 %

With MoCo's neighbourhoods the clusters are the digits, and every draw of 100 labels names
them the same way; the entropy weight hardly matters.  BYOL's neighbourhoods are less pure
and SCAN's best head merges and splits digits: far below BYOL's own 100-label probe (86 %),
so notebook 03 does not use it.

The heads' losses track their accuracy: single heads from other random starts ended at
84-87 % (two digits merged, one split) with visibly higher losses, which is why ten heads
are trained and the lowest-loss one kept.  Fine-tuning the encoder with the SCAN loss
afterwards (2 epochs, Adam 1e-4 or 1e-5, MoCo's views) did not help: cluster accuracy
95.7 %, the 100-label linear probe on the encoder's features unchanged (89.1 %).
"""

from __future__ import annotations

import statistics
import time

import torch

from course_lib.checkpoints import load_checkpoint
from course_lib.clustering import matched_accuracy
from course_lib.evaluation import class_balanced_indices, extract_features
from course_lib.paths import checkpoints_dir
from course_lib.scan import fit_scan_heads, mine_neighbours, name_clusters
from course_lib.ssl.encoders import ConvEncoder

from _common import mnist_train_val, parse_settings  # the module beside this script

SETTINGS = {"moco": ("moco-mnist", 2.0), "moco-w5": ("moco-mnist", 5.0), "byol": ("byol-mnist", 2.0)}


def main() -> None:
    args = parse_settings(__doc__, SETTINGS)
    pool, val = mnist_train_val()
    for name in args.settings:
        ckpt, weight = SETTINGS[name]
        t0 = time.perf_counter()
        path = checkpoints_dir() / f"{ckpt}.pt"
        encoder = ConvEncoder(**load_checkpoint(path)[1]["model_config"])
        load_checkpoint(path, encoder)
        f_pool, f_val = extract_features(encoder, pool.images), extract_features(encoder, val.images)
        neighbours = mine_neighbours(f_pool, k=20)
        purity = float((pool.labels[neighbours] == pool.labels[:, None]).float().mean())
        res = fit_scan_heads(f_pool, neighbours, 10, entropy_weight=weight)
        pred_pool, pred_val = res.head(f_pool).argmax(1), res.head(f_val).argmax(1)
        named = []
        for seed in range(5):
            idx = class_balanced_indices(pool.labels, 10, seed)
            names = name_clusters(pred_pool[idx], pool.labels[idx], 10, 10)
            named.append(float((names[pred_val] == val.labels).float().mean()))
        print(f"{name:<8} neighbours of the same class {100 * purity:.1f} %, clusters (no labels) "
              f"{100 * matched_accuracy(val.labels, pred_val):.2f} %, 100 labels name them "
              f"{100 * statistics.mean(named):.2f} ± {100 * statistics.stdev(named):.2f} % "
              f"(head {res.chosen} of {len(res.losses)}; {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
