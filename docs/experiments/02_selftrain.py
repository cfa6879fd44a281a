"""Fine-tuning with 100 labels *and* the unlabelled pool (self-training), scored on the validation split.

Notebook 02 fine-tunes the MoCo + SCAN encoder on the 100 labelled images alone (96.8 % on
test, below its own frozen probe).  Self-training (as in SimCLRv2's distillation step) uses the
pool too: the 100-label linear probe on the frozen encoder (the *teacher*, C chosen by 5-fold CV
inside the draw) labels every pool image; the 100 true labels replace its guesses on their own
images; then the encoder plus a head that starts as the teacher's classifier are fine-tuned on
the whole pseudo-labelled pool with the elastic distortion (AdamW, cosine decay).  No label of
the pool is read except the draw's 100.  Run from the repository root, e.g.

    COURSE_DATA=../shared/data .venv/bin/python docs/experiments/02_selftrain.py e1 --threads 1

Settings: ``e1`` / ``e2``: 1 / 2 passes over the pool, head lr 1e-3, encoder lr 3e-4;
``e1-lr1e-4``: encoder lr 1e-4; ``e1x2``: two rounds of ``e1``, the second on the first
student's labels of the pool, continuing from it.  The encoder is ``checkpoints/moco-scan-mnist.pt`` (or
``--base``).  Printed: teacher and student validation accuracy for each draw, and their means.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import dataclass

import torch

from course_lib.checkpoints import load_checkpoint
from course_lib.evaluation import class_balanced_indices, cv_select_C, extract_features, finetune, linear_probe
from course_lib.fewlabel import accuracy_and_logits
from course_lib.paths import checkpoints_dir
from course_lib.ssl.recipes import MOCO_CONFIGS

from _common import ELASTIC, train_val_split  # the module beside this script


@dataclass(frozen=True)
class Setting:
    epochs: int = 1
    lr: float = 1e-3
    backbone_lr: float = 3e-4
    rounds: int = 1


SETTINGS = {"e1": Setting(), "e2": Setting(epochs=2), "e1-lr1e-4": Setting(backbone_lr=1e-4),
            "e1x2": Setting(rounds=2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", choices=sorted(SETTINGS))
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--base", default=str(checkpoints_dir() / "moco-scan-mnist.pt"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pool, val = train_val_split()
    encoder = MOCO_CONFIGS["mnist"].encoder(1)
    load_checkpoint(args.base, encoder)
    encoder.eval()
    f_pool, f_val = extract_features(encoder, pool.images), extract_features(encoder, val.images)
    for name in args.settings:
        s, teacher_accs, student_accs = SETTINGS[name], [], []
        for d in args.draws:
            t0 = time.perf_counter()
            idx = class_balanced_indices(pool.labels, 10, d)
            C, _ = cv_select_C(f_pool[idx], pool.labels[idx], Cs=(0.01, 0.1, 1.0, 10.0), seed=0)
            teacher = linear_probe(f_pool[idx], pool.labels[idx], f_val, val.labels, C=C)
            with torch.no_grad():
                pseudo = teacher.classifier(f_pool).argmax(1)
            pseudo[idx] = pool.labels[idx]
            backbone, head = copy.deepcopy(encoder), copy.deepcopy(teacher.classifier)
            for r in range(s.rounds):
                if r:  # the last student labels the pool for the next round, which continues from it
                    pseudo = accuracy_and_logits(res.model, pool.images, pool.labels)[1].argmax(1)
                    pseudo[idx] = pool.labels[idx]
                torch.manual_seed(r)
                res = finetune(backbone, head, pool.images, pseudo, epochs=s.epochs, lr=s.lr,
                               backbone_lr=s.backbone_lr, weight_decay=1e-4, batch_size=128, schedule="cosine",
                               train_transform=ELASTIC, seed=r)
            acc = accuracy_and_logits(res.model, val.images, val.labels)[0]
            teacher_accs.append(teacher.test_accuracy)
            student_accs.append(acc)
            print(f"{name:<10} draw {d}: pseudo-labels right {100 * float((pseudo == pool.labels).float().mean()):.2f} %,"
                  f" teacher {100 * teacher.test_accuracy:.2f} %, student {100 * acc:.2f} % "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        print(f"{name:<10} mean teacher {100 * statistics.mean(teacher_accs):.2f} %, student "
              f"{100 * statistics.mean(student_accs):.2f} % over draws {args.draws}", flush=True)


if __name__ == "__main__":
    main()
