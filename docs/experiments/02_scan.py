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
    byol      92.6 %                         71.01 %                68.99 ± 2.08 %   (BYOL checkpoint of fc63e6e, SGD lr 0.06)
    byol      96.2 %                         96.53 %                96.53 ± 0.00 %   (BYOL checkpoint of c9591d1, SGD lr 0.2; 100 s)

With MoCo's neighbourhoods the clusters are the digits, and every draw of 100 labels names
them the same way; the entropy weight hardly matters.  The first BYOL checkpoint's
neighbourhoods were less pure and SCAN's best head merged and split digits (far below its own
100-label probe, 86 %); the retrained one (lr 0.2) has neighbourhoods as pure as MoCo's and
SCAN finds its digits too.  Notebook 03 does not use SCAN yet.

A single head can end in a poor optimum (two digits merged, one split) with a visibly higher
loss, which is why ten heads are trained and the lowest-loss one kept.

``moco-joint`` adds SCAN's second stage: the encoder and the kept head trained together with
the SCAN loss on MoCo's augmented views (2 epochs, Adam lr 1e-4, batch 128), then the same
scores.  It is there to test whether the *encoder's* features (and so the plain 100-label
linear probe, 89.5 % on validation for this checkpoint) get better:

    moco-joint   clusters 95.53 %, named 95.53 ± 0.00 %; 100-label probe on the encoder 89.50 %
                 (1 thread beside another job, 414 s)

The joint stage leaves the plain probe where it was and loses a point of cluster accuracy, so
the notebook does not use it.

``moco-selflabel*`` add SCAN's third stage instead (``course_lib.scan.self_label``): the kept
head's cluster of each pool image is its pseudo-label, and the encoder plus a new linear head
learn them with class-weighted cross-entropy on MoCo's augmented views (Adam, cosine decay,
batch 128).  The SCAN paper keeps only the images the head is confident about (softmax >= 0.99);
``-t0.9`` / ``-t0`` lower that threshold (``-t0``: every pool image).  Then the plain 100-label
linear probe on the encoder, validation, 5 draws:

    setting                     pseudo-labelled   100-label probe on the encoder
    (MoCo alone)                                  89.52 %
    moco-selflabel6             77.5 %            95.31 %   (362 s, 2 threads)
    moco-selflabel6-t0.9        92.2 %            96.30 %   (490 s, 1 thread beside other jobs)
    moco-selflabel6-t0          100 %             96.31 %   (292 s, 2 threads)
    moco-selflabel6-t0-lr1e-3   100 %             96.38 %   (564 s, 1 thread beside another job)
    moco-selflabel10-t0         100 %             96.25 %   (826 s, 1 thread beside other jobs)

The pseudo-labels can only be as right as the head's clusters (96.8 % on validation, above), and
the probe ends half a point below that; the confident-only set leaves out exactly the hard
images the probe later meets.  Learning rate and epochs hardly matter.  ``course pretrain moco-scan-mnist`` uses ``-t0``'s
settings (``course_lib.ssl.scan_recipe.SCAN_CONFIGS``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from course_lib.checkpoints import load_checkpoint
from course_lib.clustering import matched_accuracy
from course_lib.evaluation import class_balanced_indices, extract_features
from course_lib.paths import checkpoints_dir
from course_lib.scan import fit_scan_heads, mine_neighbours, name_clusters, scan_loss, self_label
from course_lib.ssl.encoders import ConvEncoder
from course_lib.ssl.recipes import MOCO_CONFIGS, encoder_val_metrics, moco_views

from _common import parse_settings, train_val_split  # the module beside this script

@dataclass(frozen=True)
class Setting:
    checkpoint: str = "moco-mnist"
    entropy_weight: float = 2.0
    joint_epochs: int = 0        # SCAN's second stage (encoder + head on the SCAN loss)
    self_label_epochs: int = 0   # SCAN's third stage (course_lib.scan.self_label)
    self_label_lr: float = 3e-4
    threshold: float = 0.99


SETTINGS = {"moco": Setting(), "moco-w5": Setting(entropy_weight=5.0), "byol": Setting("byol-mnist"),
            "moco-joint": Setting(joint_epochs=2),
            "moco-selflabel6": Setting(self_label_epochs=6),
            "moco-selflabel6-t0.9": Setting(self_label_epochs=6, threshold=0.9),
            "moco-selflabel6-t0": Setting(self_label_epochs=6, threshold=0.0),
            "moco-selflabel10-t0": Setting(self_label_epochs=10, threshold=0.0),
            "moco-selflabel6-t0-lr1e-3": Setting(self_label_epochs=6, threshold=0.0, self_label_lr=1e-3)}


def finetune_with_scan(encoder: ConvEncoder, head: nn.Module, images: Tensor, neighbours: Tensor, epochs: int,
                       weight: float, lr: float = 1e-4, batch_size: int = 128) -> None:
    """SCAN's second stage: encoder and head trained together on augmented (anchor, neighbour) pairs (Adam)."""
    views = moco_views(MOCO_CONFIGS["mnist"]).t1
    head.requires_grad_(True)
    params = list(encoder.parameters()) + list(head.linear.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=1e-4)
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(images), generator=gen)
        encoder.train()
        for i in range(0, len(images) - batch_size + 1, batch_size):
            idx = order[i:i + batch_size]
            partner = neighbours[idx, torch.randint(0, neighbours.shape[1], (batch_size,), generator=gen)]
            x = torch.cat([views(images[idx].float() / 255, generator=gen),
                           views(images[partner].float() / 255, generator=gen)])
            loss = scan_loss(*head(encoder(x)).split(batch_size), entropy_weight=weight).total
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    encoder.eval()
    head.eval().requires_grad_(False)


def main() -> None:
    args = parse_settings(__doc__, SETTINGS)
    pool, val = train_val_split()
    for name in args.settings:
        st = SETTINGS[name]
        ckpt, weight, joint_epochs = st.checkpoint, st.entropy_weight, st.joint_epochs
        t0 = time.perf_counter()
        path = checkpoints_dir() / f"{ckpt}.pt"
        encoder = ConvEncoder(**load_checkpoint(path)[1]["model_config"])
        load_checkpoint(path, encoder)
        f_pool, f_val = extract_features(encoder, pool.images), extract_features(encoder, val.images)
        neighbours = mine_neighbours(f_pool, k=20)
        purity = float((pool.labels[neighbours] == pool.labels[:, None]).float().mean())
        res = fit_scan_heads(f_pool, neighbours, 10, entropy_weight=weight)
        if st.self_label_epochs:
            sl = self_label(encoder, res.head, pool.images, moco_views(MOCO_CONFIGS["mnist"]).t1, 10,
                            epochs=st.self_label_epochs, lr=st.self_label_lr, threshold=st.threshold, log=None)
            print(f"{name:<8} {100 * sl.confident_fraction:.1f} % of the pool pseudo-labelled; after "
                  f"{st.self_label_epochs} epochs of self-labelling: 100-label probe on the encoder "
                  f"{100 * encoder_val_metrics(encoder, pool, val)[0]['val_probe100_acc_mean']:.2f} % "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        if joint_epochs:
            finetune_with_scan(encoder, res.head, pool.images, neighbours, joint_epochs, weight)
            f_pool, f_val = extract_features(encoder, pool.images), extract_features(encoder, val.images)
            print(f"{name:<8} after {joint_epochs} epochs of joint training: 100-label probe on the encoder "
                  f"{100 * encoder_val_metrics(encoder, pool, val)[0]['val_probe100_acc_mean']:.2f} %", flush=True)
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
