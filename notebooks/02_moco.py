# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,grade_id,points,solution,deletable,editable,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · MoCo on MNIST with 100 labels
#
# **What the report set out to do.** Classify MNIST digits knowing the labels of only
# **100 images**. It split the 100 labelled images 75/25, trained two MLPs and a CNN
# on them with an *offline* ×10 augmentation (the CNN reached **91 %** test accuracy),
# then tried self-supervised pretraining with **MoCo**: a ResNet-50 on 28 px digits
# blown up to 224 px, a queue of K = 4096 negatives, 15 epochs (2 h on a GPU). Its
# linear probe reached **34 %** top-1 (top-2…5: 61 / 61 / 70 / 77 %), after Optuna
# tuned the hyperparameters *on the test set*.
#
# **What this notebook does.** The same 100-label problem, measured honestly:
# baselines on 5 class-balanced draws of 100 labels, MoCo v2 with an encoder sized
# for 28 px and a correct queue, its loss curve and kNN monitor, then linear probe,
# kNN and fine-tuning with 100 labels, label propagation over the unlabelled images
# (a semi-supervised protocol, with raw pixels as its control), clusters found without
# labels by SCAN and named by the 100 labels, the encoder refined by SCAN's
# self-labelling (still no labels) and probed again, then fine-tuned on the pool's
# pseudo-labels (self-training), and a label-efficiency
# curve (10 / 100 / 1,000 / all labels) against a supervised CNN and a randomly
# initialised encoder. No
# number is tuned on the test set: settings are fixed in advance or chosen by
# cross-validation *inside* the labelled images.
#
# Pretraining the reference took about two hours of one CPU core (36 epochs), so the
# `quick` profile loads the course's reference checkpoints (`checkpoints/moco-mnist.pt`,
# made by `course pretrain moco-mnist`, and its SCAN refinement `moco-scan-mnist.pt`);
# set `TRAIN = True` to train them yourself.

# %% tags=["parameters"]
PROFILE = "quick"      # smoke | quick | full
INTERACTIVE = True     # False under papermill / grading: no widgets
SEED = 0
DATASET = "mnist"      # mnist | fashion-mnist
TRAIN = False          # True: pretrain MoCo (and refine it with SCAN) here instead of loading the references
DRAWS = None           # label draws per setting; None: use the profile setting
PRETRAIN_EPOCHS = None # None: use the profile setting (only used when training)

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import plots
from course_lib.checkpoints import load_or_train, tensor_checksum
from course_lib.data import load_dataset, stratified_split
from course_lib.evaluation import (class_balanced_indices, extract_features, few_label_protocol, finetune,
                                   knn_classify, linear_probe, topk_accuracy)
from course_lib.fewlabel import (FEW_LABEL_AUGMENTATION, accuracy_and_logits, cv_probe_accuracy, label_efficiency,
                                 offline_augment, train_supervised)
from course_lib.clustering import kmeans, matched_accuracy
from course_lib.hog import hog_features
from course_lib.labelprop import label_propagation_accuracy, pca_project
from course_lib.metrics import confusion_matrix, format_mean_std, mean_std
from course_lib.models import MLP, SmallCNN
from course_lib.profiles import from_env, resolve
from course_lib.results import save_results
from course_lib.scan import scan_clusters
from course_lib.selftrain import self_train
from course_lib.ssl.recipes import MOCO_CONFIGS, build_moco, moco_views, pretrain_moco
from course_lib.ssl.scan_recipe import SCAN_CONFIGS, load_or_self_label
from course_lib.ssl.trainer import KNNMonitor
from course_lib.train import get_device, seed_everything

PROFILE, INTERACTIVE = from_env(PROFILE, INTERACTIVE)  # $COURSE_PROFILE / $COURSE_INTERACTIVE win (nbval)
cfg = resolve(PROFILE, {
    "smoke": {"pool": 2000, "n_test": 500, "draws": 2, "mlp_steps": 10, "sup_steps": 10, "ft_steps": 5, "pretrain_epochs": 1,
              "pretrain_max_steps": 3, "curve_sizes": [1], "curve_draws": {1: 2}, "full_steps": 10,
              "Cs": (0.1, 1.0), "scan_epochs": 3, "self_label_epochs": 1, "selftrain_rounds": 1, "train": True},
    "quick": {"pool": None, "n_test": None, "draws": 5, "mlp_steps": 300, "sup_steps": 500, "ft_steps": 150, "pretrain_epochs": 5,
              "pretrain_max_steps": None, "curve_sizes": [1, 100, None], "curve_draws": {1: 3, 100: 2},
              "full_steps": 600, "Cs": (0.01, 0.1, 1.0, 10.0), "scan_epochs": 30, "self_label_epochs": SCAN_CONFIGS[DATASET].epochs, "selftrain_rounds": 1, "train": False},
    "full":  {"pool": None, "n_test": None, "draws": 10, "mlp_steps": 1000, "sup_steps": 2000, "ft_steps": 300, "pretrain_epochs": 50,
              "pretrain_max_steps": None, "curve_sizes": [1, 100, None], "curve_draws": {1: 10, 100: 5},
              "full_steps": 10000, "Cs": (0.01, 0.1, 1.0, 10.0), "scan_epochs": 30, "self_label_epochs": SCAN_CONFIGS[DATASET].epochs, "selftrain_rounds": 1, "train": True},
}, draws=DRAWS, pretrain_epochs=PRETRAIN_EPOCHS)
device = get_device()
seed_everything(SEED)
DRAW_SEEDS = range(cfg["draws"])
print(f"profile={PROFILE} dataset={DATASET} device={device} settings={cfg}")

# %% [markdown]
# ## The data and the 100 labels
# The unlabelled *pool* is the training split minus a 10 % validation split (used
# only by the kNN monitor during pretraining). From the pool we draw 10 labelled
# images per class, 5 times with different seeds, and report mean ± std over the
# draws: one draw of 100 labels is a noisy sample (the spread below shows how noisy).
# The report instead kept 25 of its 100 labels aside as a validation set, which both
# wastes a quarter of the labels and gives a validation accuracy whose 95 % interval
# is ±18 points wide on 25 images.

# %%
train_full = load_dataset(DATASET, "train")
test = load_dataset(DATASET, "test")
pool_idx, val_idx = stratified_split(train_full.labels, val_fraction=0.1, seed=0)
pool, val = train_full.subset(pool_idx), train_full.subset(val_idx)
if cfg["pool"]:  # smoke: small class-balanced subsets
    pool = pool.subset(class_balanced_indices(pool.labels, cfg["pool"] // 10, SEED))
    test = test.subset(class_balanced_indices(test.labels, cfg["n_test"] // 10, SEED))
    val = val.subset(class_balanced_indices(val.labels, 20, SEED))
draws = [class_balanced_indices(pool.labels, 10, s) for s in DRAW_SEEDS]
print(f"pool {len(pool)} unlabelled · validation {len(val)} · test {len(test)} · "
      f"{len(draws)} draws of {len(draws[0])} labels")
plots.image_grid(pool.images[draws[0]][:50], pool.labels[draws[0]][:50], pool.classes, ncols=25,
                 title="the first draw of labelled images (10 per class)")
plt.show()

# %% [markdown]
# ## Baselines on the same 100 labels
# Four supervised models, each trained from scratch on each draw for a fixed number
# of steps (there is no validation set to stop on, so nothing is tuned per draw):
#
# - **MLP1 / MLP2**: one and two hidden layers, no augmentation;
# - **CNN, offline ×10**: the report's augmentation: 9 augmented copies of each image
#   made *once*, then trained on the fixed 1,000 images;
# - **CNN, online aug**: the library's batched augmentation draws a new random
#   distortion for every image at every step. On MNIST that is an *elastic*
#   distortion (Simard et al. 2003: a smoothed random displacement field, alpha 34 px,
#   sigma 4 px), which bends strokes the way handwriting varies between writers.
#   It was chosen on the validation split with five other label draws
#   (`docs/experiments/02_supervised100.py`): 92.8 ± 1.2 % against 89.3 ± 1.3 % for
#   random rotation / shift / scale / shear, and stacking both was worse (85.1 %).
#   On Fashion-MNIST (`DATASET="fashion-mnist"`) it is a mirror flip plus a crop
#   of the image padded by 2 px: clothes are not bent like pen strokes. Chosen the
#   same way (67.9 ± 0.9 % on validation against 66.7 ± 0.9 % for flips, shifts and
#   zooms and 66.3 ± 0.6 % for none): on Fashion-MNIST augmentation moves the
#   100-label CNN by about a point.
#
# A step is one batch of 100 images (the whole draw). The MLPs' number of steps was
# checked on the *validation* split with five other label draws (100, 300 and 1,000
# steps gave the same accuracy within 0.1 point), never on the test set. The CNNs get
# `sup_steps` steps, fixed in advance; in the `quick` profile that is 500 steps to fit
# the time budget (the `full` profile trains 2,000), so the CNN numbers here are, if
# anything, slight underestimates. The CNNs train in the channels-last memory layout,
# which is faster on CPU and computes the same thing.

# %%
SUP_AUG_NAME, SUP_AUG = FEW_LABEL_AUGMENTATION[DATASET]  # the two augmentations described above


def supervised_accs(make_model, images, labels, steps, transform=None, offline_copies=0):
    """Train a fresh model on each draw (images[d], labels[d]) for a fixed number of steps; test each once."""
    accs = []
    for x, y in zip(images, labels):
        if offline_copies:
            x, y = offline_augment(x, y, offline_copies, SUP_AUG, seed=SEED)
        torch.manual_seed(SEED)
        model = make_model()
        model = train_supervised(model, x, y, steps=steps, batch_size=100, lr=3e-3, transform=transform,
                                 device=device, seed=SEED)
        accs.append(accuracy_and_logits(model, test.images, test.labels)[0])
    return accs


xs, ys = [pool.images[i] for i in draws], [pool.labels[i] for i in draws]
baselines = {
    "MLP1": dict(make_model=lambda: MLP(784, (256,), 10), steps=cfg["mlp_steps"]),
    "MLP2": dict(make_model=lambda: MLP(784, (256, 128), 10), steps=cfg["mlp_steps"]),
    "CNN, offline ×10": dict(make_model=lambda: SmallCNN(1, 10), steps=cfg["sup_steps"], offline_copies=10),
    "CNN, online aug": dict(make_model=lambda: SmallCNN(1, 10), steps=cfg["sup_steps"], transform=SUP_AUG),
}
t0 = time.perf_counter()
baseline_acc = {name: supervised_accs(images=xs, labels=ys, **kw) for name, kw in baselines.items()}
for name, accs in baseline_acc.items():
    print(f"{name:<18} {format_mean_std(accs)} %  ({baselines[name]['steps']} steps)")
print(f"({time.perf_counter() - t0:.0f} s)")
plots.bar_with_errors(list(baseline_acc), *zip(*(mean_std(a) for a in baseline_acc.values())),
                      title=f"supervised baselines, 100 labels, {len(draws)} draws")
plt.show()

# %% [markdown]
# ## MoCo, done right
# What went wrong in the report's MoCo, and the line of `course_lib` that fixes each
# problem:
#
# | the report | why it fails | the fix (where) |
# |---|---|---|
# | ResNet-50 on 28 px digits resized to 224 px | 23 M parameters and 64× the pixels for images with almost no texture: 15 epochs cost 2 GPU-hours and barely train | `ConvEncoder((32, 64, 128, 256))`: 388 k parameters at 28 px (`course_lib/ssl/encoders.py`) |
# | the queue created with the wrong shape | negatives must be unit-norm *columns* `(dim, K)` so that `q @ queue` gives the `(N, K)` negative logits; with `(K, dim)` the product is either an error or, when `dim` and `K` happen to match, silently meaningless | `register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))` (`MoCo.__init__`) |
# | the queue grown by `torch.cat` | a queue that only grows is not a queue: memory grows every step, the negatives pile up keys from ever older encoders, and the number of negatives (hence the loss) changes during training | a fixed ring buffer: `queue[:, (ptr + arange(n)) % K] = keys` (`MoCo.dequeue_and_enqueue`) |
# | keys enqueued before the loss | each query then meets its own positive among its negatives | loss against the *current* queue, enqueue afterwards (`MoCo.forward`) |
# | BatchNorm shared by queries and keys on one device | the network can match batch statistics instead of content | split BatchNorm + shuffled key batch (`shuffle="split_bn"`) |
# | Optuna on the test set, a 75/25 split of the 100 labels | the reported test number is tuned to the test set; 25 validation images decide nothing | settings fixed in advance; the probe's `C` by cross-validation inside each labelled draw (`cv_probe_accuracy`) |
#
# The three exercises below write, in plain torch, the three pieces the report got
# wrong or left out — the loss, the queue and the momentum update of the key encoder —
# each compared with the library's version; the cell after them checks the fixes on a
# real `MoCo` object. The settings they use are those of the reference checkpoint:

# %%
moco_cfg = MOCO_CONFIGS[DATASET]
print(f"queue K = {moco_cfg.K} keys of dim {moco_cfg.dim}, temperature T = {moco_cfg.T}, "
      f"momentum m = {moco_cfg.m}, batch {moco_cfg.batch_size}")

# %% [markdown]
# ### Exercise 1 (2 points): the InfoNCE loss, positive at index 0
# MoCo turns "is this key the other view of my image?" into a classification with
# `1 + K` classes. For each query `q_i` the candidates are its own key `k_i` (the
# positive) and the `K` keys in the queue (the negatives). Write
# `my_info_nce(q, k, queue, T)` for unit-norm queries and keys `q`, `k` of shape
# `(N, D)` (row `i` of `k` is the positive of row `i` of `q`) and a queue `(D, K)` whose
# *columns* are unit-norm keys:
#
# - positive logits `l_pos = (q * k).sum(dim=1, keepdim=True)`, shape `(N, 1)`;
# - negative logits `l_neg = q @ queue`, shape `(N, K)`;
# - `logits = torch.cat([l_pos, l_neg], dim=1) / T`, shape `(N, 1 + K)`: the positive
#   sits in column 0 of every row, so the target class is 0 for every query and the
#   loss is `F.cross_entropy(logits, torch.zeros(N, dtype=torch.long))`;
# - keys come from the momentum encoder and receive no gradient: use `k.detach()` and
#   `queue.detach()`, so that only `q` gets a gradient.
#
# Return `(loss, logits)`. Write it with torch operations (do not call the library's
# `info_nce`; the cell after the tests compares yours with it). A check worth
# knowing: with random unit vectors and `T = 1` every logit is close to 0, the softmax
# over the `1 + K` candidates is nearly uniform and the loss is close to `ln(K + 1)`,
# the "chance" line of the loss curve further down.

# %% grade_id="infonce_solution" solution=true
def my_info_nce(q, k, queue, T):
    """InfoNCE of queries q (N, D) against positive keys k (N, D) and negatives queue (D, K).

    Returns (loss, logits) with logits (N, 1 + K) = [q.k, q @ queue] / T, the positive in column 0.
    """
    ### BEGIN SOLUTION
    k = k.detach()
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ queue.detach()
    logits = torch.cat([l_pos, l_neg], dim=1) / T
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target), logits
    ### END SOLUTION

# %% grade_id="infonce_tests" points=2 tags=["graded"]
gen = torch.Generator().manual_seed(0)
q_t = F.normalize(torch.randn(8, 16, generator=gen), dim=1)
k_t = F.normalize(torch.randn(8, 16, generator=gen), dim=1)
queue_t = F.normalize(torch.randn(16, 32, generator=gen), dim=0)
loss_t, logits_t = my_info_nce(q_t, k_t, queue_t, 0.5)
assert logits_t.shape == (8, 33), f"logits are (N, 1 + K) = (8, 33): the positive, then the K negatives; got {tuple(logits_t.shape)}"
assert torch.allclose(logits_t[:, 0], (q_t * k_t).sum(1) / 0.5, atol=1e-5), "column 0 holds q·k / T (the positive)"
assert torch.allclose(logits_t[:, 1:], q_t @ queue_t / 0.5, atol=1e-5), "columns 1..K hold q @ queue / T (the negatives)"
assert torch.allclose(loss_t, F.cross_entropy(logits_t, torch.zeros(8, dtype=torch.long))), \
    "the loss is the cross-entropy of the logits with target class 0 for every row"
q_r = F.normalize(torch.randn(256, 128, generator=gen), dim=1)
k_r = F.normalize(torch.randn(256, 128, generator=gen), dim=1)
queue_r = F.normalize(torch.randn(128, 4096, generator=gen), dim=0)
chance = float(my_info_nce(q_r, k_r, queue_r, 1.0)[0])
assert abs(chance - math.log(4097)) < 0.05, f"random unit vectors at T=1 should give about ln(K+1) = {math.log(4097):.3f}, got {chance:.3f}"
### BEGIN HIDDEN TESTS
assert loss_t.dim() == 0 and loss_t.dtype == torch.float32, "return the loss as a scalar (0-d) float tensor, the mean over the batch"
e = torch.eye(4)
perfect = float(my_info_nce(e[:1], e[:1], e[:, 1:], 0.1)[0])  # q = k, negatives orthogonal to q
assert abs(perfect - math.log(1 + 3 * math.exp(-10))) < 1e-6, f"q = k with orthogonal negatives at T=0.1: expected {math.log(1 + 3 * math.exp(-10)):.3g}, got {perfect:.3g}"
worst = float(my_info_nce(e[:1], -e[:1], e[:, :1], 1.0)[0])  # the positive points away, the negative is q itself
assert abs(worst - math.log(1 + math.exp(2))) < 1e-5, "the positive must be column 0 (target 0), the queue columns 1..K"
qg, kg = q_t.clone().requires_grad_(True), k_t.clone().requires_grad_(True)
queue_g = queue_t.clone().requires_grad_(True)
my_info_nce(qg, kg, queue_g, 0.2)[0].backward()
assert qg.grad is not None and qg.grad.abs().sum() > 0, "the loss must be differentiable with respect to q"
assert kg.grad is None, "keys get no gradient in MoCo: use k.detach()"
assert queue_g.grad is None, "the queue gets no gradient: use queue.detach()"
from course_lib.ssl.moco import info_nce as info_nce_lib
before = (q_t.clone(), k_t.clone(), queue_t.clone())
lib_loss, lib_logits = info_nce_lib(q_t, k_t, queue_t, 0.2)
mine_loss, mine_logits = my_info_nce(q_t, k_t, queue_t, 0.2)
assert all(torch.equal(a, b) for a, b in zip(before, (q_t, k_t, queue_t))), "do not modify q, k or the queue"
assert torch.allclose(mine_logits, lib_logits, atol=1e-5) and torch.allclose(mine_loss, lib_loss, atol=1e-5), "differs from the library's info_nce"
assert not any("info_nce" in name for name in my_info_nce.__code__.co_names), "write the loss with torch operations, not with the library's info_nce"
### END HIDDEN TESTS

# %% [markdown]
# Why MoCo uses a small temperature: at `T = 1` the logits are cosines in [−1, 1], so
# even a *perfect* match (`k = q`, logit 1 against 4,096 logits near 0) barely lowers
# the loss below chance; dividing by `T = 0.1` stretches the cosines tenfold and a
# perfect match then wins the softmax outright. (With random keys a small T pushes the
# loss slightly *above* chance: the softmax then bets on whichever random candidate
# happens to be closest.)

# %%
from course_lib.ssl.moco import info_nce as info_nce_lib  # the library's version, to compare

gen = torch.Generator().manual_seed(SEED)
q_demo = F.normalize(torch.randn(256, moco_cfg.dim, generator=gen), dim=1)
queue_demo = F.normalize(torch.randn(moco_cfg.dim, moco_cfg.K, generator=gen), dim=0)
positives = {"random keys": F.normalize(torch.randn(256, moco_cfg.dim, generator=gen), dim=1), "k = q (perfect)": q_demo}
print(f"ln(K + 1) = {math.log(moco_cfg.K + 1):.3f} (chance among {moco_cfg.K + 1} candidates)")
for name, k_demo in positives.items():
    for T in (1.0, moco_cfg.T):
        mine = float(my_info_nce(q_demo, k_demo, queue_demo, T)[0])
        lib = float(info_nce_lib(q_demo, k_demo, queue_demo, T)[0])
        print(f"{name:<16} T = {T:<4}  loss: yours {mine:6.3f}  library {lib:6.3f}")

# %% [markdown]
# ### Exercise 2 (3 points): the queue, a fixed-size ring buffer
# The report created its queue with the wrong shape and grew it with `torch.cat` at
# every step. Write the two pieces right:
#
# - `new_queue(dim, K, generator=None)`: a float tensor of shape `(dim, K)` whose
#   **columns** are random unit vectors (`torch.randn(dim, K, generator=generator)`,
#   then `F.normalize(..., dim=0)`), so that `q @ queue` gives the `(N, K)` negative
#   logits of Exercise 1;
# - `enqueue(queue, ptr, keys)`: write the `N` keys (`(N, dim)`, one per row) as
#   columns of `queue` at positions `ptr, ptr + 1, …, ptr + N − 1`, wrapping around
#   modulo `K` (`(ptr + torch.arange(N)) % K` gives the columns), **in place** (the
#   queue is a buffer of the model: its size never changes), and return the new pointer
#   `(ptr + N) % K` as a Python `int`. The oldest keys are the ones overwritten. Store
#   `keys.detach()` (the queue holds no gradients), and raise a `ValueError` if
#   `N > K` (the batch would overwrite its own keys).
#
# Do not call the library's `MoCo.dequeue_and_enqueue`; the cell after the tests runs
# yours side by side with it and with the report's `torch.cat`.

# %% grade_id="queue_solution" solution=true
def new_queue(dim, K, generator=None):
    """A (dim, K) queue of random unit-norm columns."""
    ### BEGIN SOLUTION
    return F.normalize(torch.randn(dim, K, generator=generator), dim=0)
    ### END SOLUTION


def enqueue(queue, ptr, keys):
    """Write keys (N, dim) as columns of queue (dim, K) at ptr, ptr+1, ... modulo K, in place.

    Returns the new pointer (ptr + N) % K as an int.
    """
    ### BEGIN SOLUTION
    n, K = keys.shape[0], queue.shape[1]
    if n > K:
        raise ValueError(f"a batch of {n} keys does not fit in a queue of K={K}")
    cols = (ptr + torch.arange(n, device=queue.device)) % K
    queue[:, cols] = keys.detach().T.to(queue.dtype)
    return int((ptr + n) % K)
    ### END SOLUTION

# %% grade_id="queue_tests" points=3 tags=["graded"]
qu = new_queue(4, 6, torch.Generator().manual_seed(0))
assert qu.shape == (4, 6), f"the queue is (dim, K) = (4, 6): one key per column; got {tuple(qu.shape)}"
assert torch.allclose(qu.norm(dim=0), torch.ones(6)), "each column (one key) must have unit norm: normalise along dim=0"
keys_t = torch.eye(4)[:3]  # three keys of dim 4
ptr_t = enqueue(qu, 0, keys_t)
assert ptr_t == 3, f"after writing 3 keys at 0 the pointer is 3, got {ptr_t}"
assert torch.equal(qu[:, :3], keys_t.T), "key i goes to column ptr + i"
ptr_t = enqueue(qu, 5, keys_t)
assert qu.shape == (4, 6), "the queue must keep its size K (write in place, never torch.cat)"
assert ptr_t == 2 and torch.equal(qu[:, [5, 0, 1]], keys_t.T), "writing 3 keys at 5 in a queue of 6 fills columns 5, 0, 1 and the pointer wraps to 2"
### BEGIN HIDDEN TESTS
assert qu.dtype == torch.float32, "the queue holds float32 keys"
again = new_queue(4, 6, torch.Generator().manual_seed(0))
assert torch.equal(again, new_queue(4, 6, torch.Generator().manual_seed(0))), "draw the queue from the generator"
assert not torch.equal(again, new_queue(4, 6, torch.Generator().manual_seed(1))), "different seeds give different queues"
wide = new_queue(3, 50, torch.Generator().manual_seed(2))
assert wide.shape == (3, 50) and torch.allclose(wide.norm(dim=0), torch.ones(50)), "columns, not rows, have unit norm"
assert isinstance(enqueue(new_queue(4, 6), 0, keys_t), int), "return the pointer as a Python int"
buf = new_queue(5, 10, torch.Generator().manual_seed(3))
start, address = buf.clone(), buf.data_ptr()
g_keys = F.normalize(torch.randn(4, 5, generator=torch.Generator().manual_seed(4)), dim=1)
g_keys_copy = g_keys.clone()
p = enqueue(buf, 8, g_keys)
assert buf.data_ptr() == address and buf.shape == (5, 10), "write into the queue in place"
assert torch.equal(g_keys, g_keys_copy), "do not modify the keys"
assert torch.equal(buf[:, 2:8], start[:, 2:8]), "columns outside ptr..ptr+N-1 (mod K) must be left alone"
assert p == 2 and torch.allclose(buf[:, [8, 9, 0, 1]], g_keys.T)
full = new_queue(3, 4, torch.Generator().manual_seed(5))
assert enqueue(full, 1, torch.eye(3, 3)[[0, 1, 2, 0]]) == 1, "N = K fills the whole queue and the pointer comes back"
try:
    enqueue(full, 0, torch.zeros(5, 3))
except ValueError:
    pass
else:
    raise AssertionError("a batch larger than K must raise ValueError")
ring, ptr_r, history = new_queue(2, 10), 0, []
for step in range(7):  # 7 batches of 3 into K = 10: the queue holds the 10 newest keys
    b = torch.randn(3, 2, generator=torch.Generator().manual_seed(10 + step))
    history.append(b)
    ptr_r = enqueue(ring, ptr_r, b)
newest = torch.cat(history)[-10:]
expected = torch.empty(2, 10)
expected[:, (torch.arange(11, 21)) % 10] = newest.T
assert ptr_r == 1 and torch.equal(ring, expected), "after many steps the queue must hold the K newest keys at their ring positions"
leaf = torch.randn(3, 2, requires_grad=True)
enqueue(ring, 0, leaf)
assert not ring.requires_grad, "store keys.detach(): the queue holds no gradients"
assert not any("enqueue" in name for name in enqueue.__code__.co_names), "write enqueue with torch indexing, not with the library's MoCo"
### END HIDDEN TESTS

# %% [markdown]
# Your queue, the library's `MoCo` buffer and the report's `torch.cat` queue, fed the
# same batches of keys for 40 steps (10,240 keys, 2.5 times around a queue of 4,096):

# %%
torch.manual_seed(SEED)
lib_moco = build_moco(moco_cfg.encoder(1), moco_cfg)
mine_q, mine_ptr = new_queue(moco_cfg.dim, moco_cfg.K, torch.Generator().manual_seed(SEED)), 0
lib_moco.queue.copy_(mine_q)
report_q = mine_q.clone()
gen = torch.Generator().manual_seed(SEED)
n_neg = []
for step in range(40):
    batch_keys = F.normalize(torch.randn(moco_cfg.batch_size, moco_cfg.dim, generator=gen), dim=1)
    mine_ptr = enqueue(mine_q, mine_ptr, batch_keys)
    lib_moco.dequeue_and_enqueue(batch_keys)
    report_q = torch.cat([report_q, batch_keys.T], dim=1)
    n_neg.append((mine_q.shape[1], report_q.shape[1]))
print(f"yours:   {tuple(mine_q.shape)}, pointer {mine_ptr}; same keys as the library's buffer: "
      f"{torch.allclose(mine_q, lib_moco.queue, atol=1e-6)} (library pointer {int(lib_moco.queue_ptr)})")
print(f"report:  {tuple(report_q.shape)}, {report_q.numel() * 4 / 2**20:.1f} MiB and growing "
      f"({mine_q.numel() * 4 / 2**20:.1f} MiB for the ring buffer)")
fig, ax = plt.subplots(figsize=(5, 2.8))
ax.plot(range(1, 41), [a for a, _ in n_neg], label="ring buffer (yours)")
ax.plot(range(1, 41), [b for _, b in n_neg], label="torch.cat (the report)")
ax.set(xlabel="training step", ylabel="negatives per query", title="the queue over 40 steps")
ax.legend()
plt.show()
del lib_moco, report_q

# %% [markdown]
# ### Exercise 3 (2 points): the momentum update of the key encoder
# The keys in the queue were computed by the key encoder at earlier steps. If the key
# encoder were a plain copy of the query encoder (which changes at every optimiser
# step), old and new keys would come from different networks and the comparison would
# be meaningless. MoCo makes the key encoder a slowly moving average of the query
# encoder instead: after each step, for every parameter,
#
# `θ_key ← τ · θ_key + (1 − τ) · θ_query`   (MoCo's `m`, here τ = 0.99).
#
# Write `momentum_step(online, target, tau)` for two modules of the same architecture
# (`online` is the query encoder, `target` the key encoder): walk over
# `zip(online.parameters(), target.parameters())` and update each target parameter
# **in place** (`p_t.mul_(tau).add_(p_o, alpha=1 - tau)`, or `p_t.copy_(...)`), inside
# `with torch.no_grad():` so that the update is not recorded by autograd. `tau = 1`
# leaves the target unchanged, `tau = 0` makes it an exact copy of the online module;
# the online module is never changed. Return nothing. (Buffers such as BatchNorm
# running statistics are not part of this exercise; do not call the library's
# `momentum_update`, which the cell after the tests compares with yours.)

# %% grade_id="momentum_solution" solution=true
def momentum_step(online, target, tau):
    """In place: target = tau * target + (1 - tau) * online, for every parameter."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        for p_o, p_t in zip(online.parameters(), target.parameters()):
            p_t.mul_(tau).add_(p_o, alpha=1 - tau)
    ### END SOLUTION

# %% grade_id="momentum_tests" points=2 tags=["graded"]
torch.manual_seed(0)
online_t, target_t = nn.Linear(5, 3), nn.Linear(5, 3)
w_o, w_t = online_t.weight.detach().clone(), target_t.weight.detach().clone()
try:
    momentum_step(online_t, target_t, 0.9)
except NotImplementedError:
    raise
except RuntimeError as err:  # in-place changes of parameters that require grad
    raise AssertionError(f"update the parameters inside `with torch.no_grad():` ({err})") from None
assert torch.allclose(target_t.weight, 0.9 * w_t + 0.1 * w_o), "target = tau * target + (1 - tau) * online"
assert torch.equal(online_t.weight, w_o), "the online (query) module must not change"
before = [p.detach().clone() for p in target_t.parameters()]
momentum_step(online_t, target_t, 1.0)
assert all(torch.equal(p, b) for p, b in zip(target_t.parameters(), before)), "tau = 1 leaves the target unchanged"
momentum_step(online_t, target_t, 0.0)
assert all(torch.equal(p, o) for p, o in zip(target_t.parameters(), online_t.parameters())), "tau = 0 copies the online module"
### BEGIN HIDDEN TESTS
from course_lib.ssl.common import copy_as_target, momentum_update

torch.manual_seed(1)
online_h = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
target_h = copy_as_target(online_h)
for p in online_h.parameters():
    p.data.add_(torch.randn_like(p))
ids = [id(p) for p in target_h.parameters()]
ref_h = copy_as_target(target_h)
momentum_step(online_h, target_h, 0.99)
momentum_update(online_h, ref_h, 0.99)
assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(target_h.parameters(), ref_h.parameters())), "differs from the library's momentum update"
assert [id(p) for p in target_h.parameters()] == ids, "update the target's parameters in place; do not replace them"
assert all(p.grad_fn is None and not p.requires_grad for p in target_h.parameters()), \
    "the update was recorded by autograd: wrap it in `with torch.no_grad():`"
grad_target = nn.Linear(5, 3)  # its parameters require grad: in-place updates need torch.no_grad()
try:
    momentum_step(online_t, grad_target, 0.5)
except RuntimeError as err:
    raise AssertionError(f"wrap the update in `with torch.no_grad():` ({err})") from None
assert all(p.is_leaf and p.grad_fn is None for p in grad_target.parameters()), "wrap the update in `with torch.no_grad():`"
assert momentum_step(online_t, grad_target, 0.5) is None, "momentum_step updates in place and returns None"
bad = [n for n in momentum_step.__code__.co_names if "momentum_update" in n or "update_key_encoder" in n]
assert not bad, "write the update with torch operations, not with the library's momentum_update"
### END HIDDEN TESTS

# %% [markdown]
# How far behind does the key encoder lag? Below, a query "encoder" (one weight vector)
# moves by the same step at every training step and a key encoder follows it with your
# `momentum_step`. With `τ = 0` it is a copy (no lag); with `τ` close to 1 it lags
# τ / (1 − τ) steps behind: about 99 steps for MoCo's 0.99. Since the queue holds the
# keys of the last K / batch = 16 steps, with τ = 0.99 the encoders that made them
# differ by a small fraction of that lag: old and new keys stay comparable. The MoCo
# paper reports that training fails outright with τ = 0 and works best at 0.99–0.999.

# %%
from course_lib.ssl.common import copy_as_target, momentum_update  # the library's version, to compare

fig, ax = plt.subplots(figsize=(6, 3))
for tau in (0.0, 0.9, 0.99, 0.999):
    query_enc = nn.Linear(8, 1, bias=False)
    nn.init.zeros_(query_enc.weight)
    key_enc = copy_as_target(query_enc)
    lib_key = copy_as_target(query_enc)
    lag = []
    for step in range(400):
        with torch.no_grad():
            query_enc.weight.add_(1.0)  # one optimiser step: every weight moves by 1
        momentum_step(query_enc, key_enc, tau)
        momentum_update(query_enc, lib_key, tau)
        lag.append(float((query_enc.weight - key_enc.weight).detach().mean()))
    same = torch.allclose(key_enc.weight, lib_key.weight)
    ax.plot(lag, label=f"τ = {tau}")
    print(f"τ = {tau:<5}  lag after 400 steps: {lag[-1]:6.1f} steps (τ/(1−τ) = "
          f"{tau / (1 - tau):.0f}); same as the library's update: {same}")
ax.set(xlabel="training step", ylabel="key encoder lag (steps)", title="momentum encoder: how far behind")
ax.legend()
plt.show()

# %% [markdown]
# ### The fixes on a real `MoCo` object
# The library's `MoCo` holds all three pieces (`info_nce`, `dequeue_and_enqueue`,
# `update_key_encoder`). The next cell checks the encoder size, the queue shape and
# the pointer after two training steps, and that the key encoder is not in the optimiser.

# %%
# NBVAL_CHECK_OUTPUT
demo = moco_cfg.encoder(1)
print(f"encoder: {sum(p.numel() for p in demo.parameters()):,} parameters, features {demo(torch.zeros(2, 1, 28, 28)).shape[1]}-d")
moco = build_moco(demo, moco_cfg)
x = torch.rand(32, 1, 28, 28)
shape_before = tuple(moco.queue.shape)
moco(x, x)
moco(x, x)
print(f"queue {shape_before} -> {tuple(moco.queue.shape)} after two steps (pointer at {int(moco.queue_ptr)}); "
      f"column norms {moco.queue.norm(dim=0).min():.3f}–{moco.queue.norm(dim=0).max():.3f}")
trainable = {id(p) for p in moco.trainable_parameters()}
print("key encoder parameters in the optimiser:", any(id(p) in trainable for p in moco.encoder_k.parameters()))
assert tuple(moco.queue.shape) == (moco_cfg.dim, moco_cfg.K)
del moco, demo

# %% [markdown]
# ## Pretraining (or loading the reference checkpoint)
# The two views of each image come from the same batched augmentation. On MNIST: a
# random resized crop keeping 50–100 % of the digit, a small rotation and shear, and
# a small erased patch. An elastic distortion (the 100-label baseline's) instead of the
# rotation and shear looked better after three epochs of pretraining (100-label
# validation probe 87.9 % against 85.5 %, `docs/experiments/02_moco_recipe.py`), but
# not after 32: 89.6 % against this checkpoint's 89.5 %, kNN 97.4 % against 97.9 %.
# Short runs can mislead. Fashion-MNIST gets crops of 20–100 %, horizontal flips,
# erasing, and a random brightness and contrast for 80 % of the views, so that two
# views of a garment cannot be matched by their grey levels alone. The first Fashion
# reference (crops of 30–100 %, no jitter, 30 epochs) reached a validation kNN
# accuracy of 83.5 % and a 100-label probe of 70.2 %; this one (25 epochs) 86.4 % and
# 72.0 %. Crops and jitter changed together, so the run does not say which of the two
# made the difference. With `TRAIN = False` (the `quick` profile) the course's checkpoint is
# loaded and its metadata says exactly which command, commit and data made it; the
# `smoke` profile trains a few steps so that the training code runs too.

# %%
plots.augmentation_gallery(pool.images[:10], {"view 1": moco_views(moco_cfg).t1, "view 2": moco_views(moco_cfg).t2},
                           generator=torch.Generator().manual_seed(SEED))
plt.show()


def train_moco(encoder):
    mem = torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))[:5000]
    monitor = KNNMonitor(pool.images[mem], pool.labels[mem], val.images[:2000], val.labels[:2000])
    hist = pretrain_moco(encoder.to(device), pool.images, moco_cfg, epochs=cfg["pretrain_epochs"], monitor=monitor,
                         device=device, seed=SEED, max_steps_per_epoch=cfg["pretrain_max_steps"])
    return {"epochs": cfg["pretrain_epochs"], "dataset": DATASET, "history": hist.to_dict(),
            "dataset_checksum": tensor_checksum(train_full.images, train_full.labels),
            "model_config": encoder.config(), "metrics": {"final_knn_val": hist.records[-1].get("knn_acc")}}


torch.manual_seed(SEED)
encoder, meta = load_or_train(f"moco-{DATASET}", moco_cfg.encoder(1), train_moco, profile=PROFILE,
                              retrain=TRAIN or cfg["train"])
encoder = encoder.to(device).eval()
pretrain_epochs, pretrain_wall_s = int(meta["epochs"]), float(meta["wall_time_s"])
print(f"pretraining: {pretrain_epochs} epochs, {pretrain_wall_s / 60:.1f} min ({meta.get('threads', '?')} thread(s), "
      f"on {meta['machine']['platform']})")

# %% [markdown]
# ### Loss curve and kNN monitor
# For the first K / batch = 16 steps the queue still holds random vectors, which are
# easy to tell apart from the positive key, so the loss is low; once the queue is full
# of real keys it jumps to near ln(K + 1) (chance among 4,097 candidates) and falls.
# The kNN monitor (5,000 labelled pool images as memory, 2,000 validation images)
# shows the features becoming more class-aware epoch after epoch, without any
# classifier being trained. The loss alone cannot say that: it is measured against
# a queue that keeps changing.

# %%
hist = meta["history"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
steps = [i * hist["step_stride"] for i in range(len(hist["step_losses"]))]
ax1.plot(steps, hist["step_losses"], lw=0.8)
ax1.axhline(torch.log(torch.tensor(moco_cfg.K + 1.0)).item(), ls="--", c="grey", label="ln(K+1): chance")
ax1.set(xlabel="step", ylabel="InfoNCE loss", title="MoCo loss")
ax1.legend()
knn = [(r["epoch"], r["knn_acc"]) for r in hist["records"] if "knn_acc" in r]
ax2.plot(*zip(*knn), "o-")
ax2.set(xlabel="epoch", ylabel="kNN accuracy (validation)", title="kNN monitor")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Evaluating the representation with 100 labels
# Features of the whole pool and of the test set are extracted **once** (frozen
# encoder, eval mode, no gradients) and reused by every probe. The same is done for
# an encoder of the same architecture with random weights: what does pretraining add
# over the architecture alone?

# %%
t0 = time.perf_counter()
torch.manual_seed(SEED)
random_encoder = moco_cfg.encoder(1).to(device)
feats = {}
for name, enc in {"MoCo": encoder, "random init": random_encoder}.items():
    feats[name] = (extract_features(enc, pool.images, device=device), extract_features(enc, test.images, device=device))
print(f"features {tuple(feats['MoCo'][0].shape)} + {tuple(feats['MoCo'][1].shape)} per encoder "
      f"({time.perf_counter() - t0:.0f} s)")


def probe_fit(x, y, xte, yte):
    return cv_probe_accuracy(x, y, xte, yte, Cs=cfg["Cs"], seed=SEED)[0]


def knn_fit(x, y, xte, yte):
    return float((knn_classify(x, y, xte, k=10) == yte).float().mean())


probe100 = {name: few_label_protocol(f[0], pool.labels, f[1], test.labels, 10, fit_fn=probe_fit, indices=draws)["per_seed"]
            for name, f in feats.items()}
knn100 = few_label_protocol(feats["MoCo"][0], pool.labels, feats["MoCo"][1], test.labels, 10, fit_fn=knn_fit,
                            indices=draws)["per_seed"]
for name, accs in probe100.items():
    print(f"linear probe, {name:<12} {format_mean_std(accs)} %")
print(f"kNN (k=10), MoCo          {format_mean_std(knn100)} %")

# %% [markdown]
# ## Try it: kNN on the frozen features
# The panel classifies the test images by a vote of their nearest *labelled* pool images
# in feature space, using the features extracted above: no network runs, so one answer
# takes about a second. Each of the `k` nearest neighbours votes for its class with
# weight `exp(cos / T)`. Set the sliders, press **Run**; each run is added to the plot
# and the table (mean ± std over the label draws). Try:
#
# - **labels per class** 1, 10 and 100 with the MoCo features, then the same with
#   *random init* (the `features` dropdown): how many labels does the random encoder
#   need to match what MoCo does with 10 per class?
# - **k** = 1, 20 and 200 at 10 labels per class (k larger than the number of labelled
#   images is clamped; the status line says so);
# - **temperature** T = 0.01 against T = 1 with a large k: a low T lets the few nearest
#   neighbours decide, a high T turns the vote into a plain count over all k neighbours.
#   Which one degrades more as k grows?
# - the **linear probe** (classifier dropdown) at the same number of labels.
#
# Look at the std as well as the mean: with 1 label per class the spread between draws
# is large, and a difference smaller than that spread is not a difference.

# %%
# NBVAL_SKIP
if INTERACTIVE:
    from course_lib.widgets import knn_panel

    panel = knn_panel({name: f[0] for name, f in feats.items()}, pool.labels,
                      {name: f[1] for name, f in feats.items()}, test.labels,
                      n_per_class=10, k=20, T=moco_cfg.T, draws=3, max_train=10000, max_test=2000, seed=SEED)
    display(panel)

# %% [markdown]
# ### Fine-tuning
# The pretrained encoder plus a linear head, all layers trained on the 100 labels
# with the same online augmentation as the supervised CNN; the encoder gets a
# 10× smaller learning rate than the new head so that its features are adjusted,
# not overwritten. Settings fixed in advance: AdamW, `ft_steps` steps of the whole
# labelled draw.

# %%
def finetune_fit(x, y, xte, yte, start=None):
    """Fine-tune a copy of ``start`` (default: the MoCo encoder) plus a new linear head on one draw."""
    torch.manual_seed(SEED)
    backbone = moco_cfg.encoder(1)
    backbone.load_state_dict((start or encoder).state_dict())
    res = finetune(backbone, nn.Linear(backbone.feature_dim, 10).to(device), x, y, epochs=cfg["ft_steps"],
                   lr=3e-3, backbone_lr=3e-4, weight_decay=1e-4, batch_size=128, train_transform=SUP_AUG,
                   device=device, seed=SEED)
    return accuracy_and_logits(res.model, xte, yte)[0]


t0 = time.perf_counter()
finetune100 = few_label_protocol(pool.images, pool.labels, test.images, test.labels, 10, fit_fn=finetune_fit,
                                 indices=draws)["per_seed"]
print(f"fine-tuned MoCo encoder   {format_mean_std(finetune100)} %  ({time.perf_counter() - t0:.0f} s)")

# %%
names = ["MLP1", "CNN, online aug", "random init, probe", "MoCo kNN", "MoCo probe", "MoCo fine-tune"]
table = [baseline_acc["MLP1"], baseline_acc["CNN, online aug"], probe100["random init"], knn100, probe100["MoCo"],
         finetune100]
plots.bar_with_errors(names, *zip(*(mean_std(a) for a in table)), title=f"{DATASET}, 100 labels, {len(draws)} draws")
plt.show()

# %% [markdown]
# ### 100 labels *and* the unlabelled pool: label propagation
# The probe above learns from 100 labelled images; the pool's other 53,900 images were
# seen in pretraining but play no part in the classifier. Label propagation
# (`course_lib.labelprop`, Zhou et al. 2004) puts them to work: each pool image is
# linked to its 10 nearest neighbours in feature space, the 100 labels spread along
# those links, and every pool image gets a pseudo-label; a test image then takes the
# weighted kNN vote of the pseudo-labelled pool. The test images are not in the graph,
# and every setting (10 neighbours, α = 0.99, 20 steps, the vote's k = 20 and T = 0.07)
# was fixed on the validation split with other label draws
# (`docs/experiments/02_labelprop.py`).
#
# This is *semi-supervised* evaluation, a different protocol from the linear probe: it
# asks what 100 labels buy while the unlabelled images are still at hand. The same
# propagation on raw pixels (projected onto their top 50 principal axes) is the control
# that separates what the graph does from what MoCo's features do.
#
# A third view is hand-engineered: histograms of oriented gradients (HOG, Dalal and
# Triggs 2005; `course_lib.hog`), which describe an image by the directions of its
# edges in each 4 × 4 pixel cell, normalised so that brightness and contrast do not
# count. Two sandals can be neighbours under HOG because their straps run the same way,
# even where their pixels differ. It is the classic answer to "what could a
# neighbour graph use without any learning?", and so the fair yardstick for MoCo's
# features; the cell also prints HOG's own 100-label linear probe.
#
# Different graphs link different images, so they make different mistakes. The
# last two rows use two *views* at once: the labels spread over each graph, every pool
# image's class scores (normalised to sum to 1) are averaged over the two, and so are
# the test images' votes. Which pair to use was chosen on the validation split with
# five other draws (`docs/experiments/02_labelprop.py`, pseudo-labels right on the
# pool):
#
# | views | MNIST | Fashion-MNIST |
# |---|---|---|
# | MoCo | 97.09 ± 0.33 % | 73.71 ± 2.21 % |
# | pixels | 94.57 ± 0.75 % | 72.73 ± 1.50 % |
# | HOG | 94.36 ± 0.89 % | 77.05 ± 0.66 % |
# | MoCo + pixels | 97.58 ± 0.23 % | 76.26 ± 1.90 % |
# | MoCo + HOG (**adopted**) | **97.68 ± 0.20 %** | **78.63 ± 0.75 %** |
# | MoCo + pixels + HOG | 97.62 ± 0.18 % | 78.22 ± 1.32 % |
#
# The HOG settings are Dalal and Triggs' (9 orientation bins, blocks of 2 × 2 cells)
# with 4-pixel cells for 28 px images (a quick check of 7-pixel cells, 12 bins and 100
# axes found nothing clearly better); like the pixels, the descriptors are
# projected onto their top 50 principal axes before the neighbour search.

# %%
t0 = time.perf_counter()
hog_pool, hog_test = hog_features(pool.images), hog_features(test.images)
hog_probe100 = few_label_protocol(hog_pool, pool.labels, hog_test, test.labels, 10, fit_fn=probe_fit,
                                  indices=draws)["per_seed"]
views = {"MoCo": feats["MoCo"], "pixels": pca_project(pool.images, test.images, dim=50),
         "HOG": pca_project(hog_pool, hog_test, dim=50)}
TEACHER = "MoCo + HOG"  # the pseudo-labels that teach self-training below
labelprop, graphs = {}, {}  # each view's graph is built once and shared by the rows that use it
for name in ("MoCo", "pixels", "HOG", "MoCo + pixels", TEACHER):
    pool_views, test_views = zip(*(views[v] for v in name.split(" + ")))
    labelprop[name] = label_propagation_accuracy(list(pool_views), pool.labels, list(test_views), test.labels, draws,
                                                 keep_pseudo_labels=name == TEACHER, cache=graphs)
    print(f"label propagation, {name:<14} pseudo-labels right on the pool "
          f"{format_mean_std(labelprop[name]['pseudo_label_acc'])} %, test {format_mean_std(labelprop[name]['test_acc'])} %")
print(f"HOG + logistic regression on the 100 labels alone: {format_mean_std(hog_probe100)} %   "
      f"(MoCo probe {format_mean_std(probe100['MoCo'])} %)")
print(f"({time.perf_counter() - t0:.0f} s)")

# %% [markdown]
# ### Neighbourhoods are not clusters: SCAN on the frozen features
# Label propagation needs good *neighbourhoods*: an image's nearest pool images should
# be of its class. That is not the same as having *clusters* that k-means would find.
# SCAN's clustering step (Van Gansbeke et al., 2020; `course_lib.scan`) turns the one
# into the other without a single label: a linear head on the frozen features is
# trained to put every pool image in the same of 10 clusters as a random one of its 20
# nearest neighbours, while an entropy term keeps all 10 clusters in use. Its loss has
# poor local optima (two classes merged, one split), so ten heads start from different
# random weights and the one with the lowest loss on the pool is kept, again without
# labels. The 100 labels then only *name* the clusters (a one-to-one match of clusters
# to classes on the labelled images).
#
# The result is a linear classifier of the same frozen features as the probe above,
# fitted on the unlabelled pool: semi-supervised, like label propagation, not a
# linear probe. It can only be as good as the neighbourhoods it starts from, so the
# cell prints how many of the 20 neighbours share the image's class (a diagnostic that
# reads the pool's labels; SCAN itself never sees them). The settings (20
# neighbours, entropy weight 2, ten heads, 30 epochs) were fixed on MNIST's validation
# split (`docs/experiments/02_scan.py`).

# %%
t0 = time.perf_counter()
kmeans_acc = matched_accuracy(test.labels, kmeans(feats["MoCo"][1], 10, seed=SEED, standardize=True))
sc = scan_clusters(feats["MoCo"][0], pool.labels, feats["MoCo"][1], test.labels, draws, 10, k=20, heads=10,
                   epochs=cfg["scan_epochs"], seed=SEED)
scan, same_class, scan100 = sc.scan, sc.neighbour_purity, sc.named_acc
print(f"20 nearest pool neighbours of the same class: {100 * same_class:.1f} %")
print(f"k-means (10 clusters) on the test features: matched accuracy {100 * kmeans_acc:.2f} %")
print(f"SCAN heads' losses {[round(v, 3) for v in scan.losses]}; kept head {scan.chosen}")
print(f"SCAN clusters on the test set, no labels: matched accuracy {100 * sc.cluster_acc:.2f} %")
print(f"SCAN clusters named by the 100 labels:     {format_mean_std(scan100)} %  ({time.perf_counter() - t0:.0f} s)")

# %% [markdown]
# ### SCAN's last step: teaching the encoder its own clusters
# SCAN's clusters live in a head on top of the frozen features; the encoder itself is
# still MoCo's, and its linear probe is still short of labels. SCAN's third step,
# *self-labelling*, moves the clusters into the encoder: the head's cluster of every
# pool image becomes its pseudo-label, and the encoder plus a new linear head learn
# those pseudo-labels with cross-entropy on MoCo's augmented views (clusters weighted by
# their inverse size, so a large one cannot swallow a small one; `course_lib.scan.self_label`).
# The pool's labels are still not used. Afterwards the plain 100-label linear probe, the
# same logistic regression as above, runs on the refined encoder.
#
# The settings were chosen on MNIST's validation split (`docs/experiments/02_scan.py`):
# every pool image pseudo-labelled (keeping only the head's confident images, as the
# SCAN paper does, left out the hard ones and gave a point less), Adam with a cosine
# decay, 6 epochs. Like the MoCo encoder, the refined one is a reference checkpoint
# (`checkpoints/moco-scan-mnist.pt`, made by `course pretrain moco-scan-mnist` from
# `moco-mnist.pt`); `TRAIN = True` refines it here from the encoder and the SCAN head above.

# %%
t0 = time.perf_counter()
scan_encoder, scan_meta = load_or_self_label(encoder, scan.head, pool.images, "moco", DATASET, profile=PROFILE,
                                             retrain=TRAIN or cfg["train"], epochs=cfg["self_label_epochs"],
                                             device=device, seed=SEED, max_steps_per_epoch=cfg["pretrain_max_steps"])
f_scan = (extract_features(scan_encoder, pool.images, device=device),
          extract_features(scan_encoder, test.images, device=device))
scan_probe100 = few_label_protocol(f_scan[0], pool.labels, f_scan[1], test.labels, 10, fit_fn=probe_fit,
                                   indices=draws)["per_seed"]
scan_knn100 = few_label_protocol(f_scan[0], pool.labels, f_scan[1], test.labels, 10, fit_fn=knn_fit,
                                 indices=draws)["per_seed"]
scan_finetune100 = few_label_protocol(pool.images, pool.labels, test.images, test.labels, 10, indices=draws,
                                      fit_fn=lambda *a: finetune_fit(*a, start=scan_encoder))["per_seed"]
print(f"self-labelling: {scan_meta['epochs']} epochs on {100 * scan_meta['confident_fraction']:.0f} % of the pool, "
      f"{scan_meta['wall_time_s'] / 60:.1f} min")
print(f"MoCo + SCAN encoder, linear probe  {format_mean_std(scan_probe100)} %   (MoCo alone {format_mean_std(probe100['MoCo'])} %)")
print(f"MoCo + SCAN encoder, kNN (k=10)    {format_mean_std(scan_knn100)} %   (MoCo alone {format_mean_std(knn100)} %)")
print(f"MoCo + SCAN encoder, fine-tuned    {format_mean_std(scan_finetune100)} %   (MoCo alone {format_mean_std(finetune100)} %)")
print(f"({time.perf_counter() - t0:.0f} s)")

# %% [markdown]
# ### Fine-tuning with the pool: self-training
# Fine-tuning on the 100 labelled images alone gains little over the frozen probe: 100
# images are few to adjust 388 k weights with. The pool helps here too. SimCLRv2
# (Chen et al., 2020) ends with *self-training*: a *teacher* labels every pool image,
# and a *student*, which starts as a copy of the refined encoder with its 100-label
# probe as the head, is fine-tuned (every layer) on those pseudo-labels plus the 100
# true ones, with the supervised CNN's augmentation (`course_lib.selftrain.self_train`).
# The student sees the whole pool, augmented, where the probe saw 100 images, and where
# the teacher's mistakes are scattered the student overrules many of them. No pool
# label is read.
#
# The teacher is label propagation on two views, MoCo's features and HOG, from the
# section above (its pseudo-labels are already computed). SimCLRv2's teacher is the
# fine-tuned model; the first version of this section took the 100-label probe. On the
# validation split (`docs/experiments/02_selftrain.py`, three draws) the students were:
#
# | teacher | MNIST | Fashion-MNIST |
# |---|---|---|
# | 100-label probe | 97.63 % | 70.83 % |
# | label propagation, MoCo's graph | 97.66 % | 74.51 % |
# | label propagation, MoCo + pixels | 97.69 % | 76.55 % |
# | label propagation, MoCo + HOG (**adopted**) | 97.85 % | 79.57 % |
#
# The settings (one pass over the pool, AdamW with a cosine decay, head
# lr 1e-3, encoder lr 3e-4) were fixed the same way.

# %%
t0 = time.perf_counter()
selftrain100 = []
for idx, pseudo in zip(draws, labelprop[TEACHER]["pseudo_labels"]):
    student = self_train(scan_encoder, pool.images[idx], pool.labels[idx], pool.images, Cs=cfg["Cs"], epochs=1,
                         rounds=cfg["selftrain_rounds"], transform=SUP_AUG, pseudo_labels=pseudo, device=device,
                         seed=SEED).model
    selftrain100.append(accuracy_and_logits(student, test.images, test.labels)[0])
print(f"self-trained student   {format_mean_std(selftrain100)} %   (its teacher, label propagation on {TEACHER}: "
      f"{format_mean_std(labelprop[TEACHER]['test_acc'])} %; the MoCo + SCAN probe: "
      f"{format_mean_std(scan_probe100)} %; fine-tuned on the 100 labels alone: {format_mean_std(scan_finetune100)} %)")
print(f"({len(pool)} pool images, {time.perf_counter() - t0:.0f} s)")

# %% [markdown]
# ### Top-1…5 and the confusion matrix of the MoCo probe (first draw)
# The report quoted top-2…5 accuracies because its top-1 was low. With a working
# representation the top-k numbers add little: nearly every mistake has the right
# class second.

# %%
idx = draws[0]
f_tr, f_te = feats["MoCo"]
acc0, C0 = cv_probe_accuracy(f_tr[idx], pool.labels[idx], f_te, test.labels, Cs=cfg["Cs"], seed=SEED)
clf = linear_probe(f_tr[idx], pool.labels[idx], C=C0).classifier
logits = clf(f_te)
topk = topk_accuracy(logits, test.labels, ks=(1, 2, 3, 4, 5))
print(f"C chosen by 5-fold CV inside the 100 labels: {C0}")
print("  ".join(f"top-{k} {100 * v:.2f} %" for k, v in topk.items()))
plots.confusion_matrix(confusion_matrix(test.labels, logits.argmax(1), 10), test.classes,
                       title="MoCo linear probe, 100 labels (first draw)")
plt.show()

# %% [markdown]
# ## Label efficiency
# Accuracy against the number of labels: 1 / 10 / 100 per class and all of them. The
# supervised CNN is trained from scratch on each draw (`sup_steps` steps; with all
# 54 k labels `full_steps` steps of 100 images, about one epoch in the `quick`
# profile to fit the time budget, so that point is an underestimate); the probes reuse the
# extracted features (MoCo's, the SCAN-refined encoder's, the random encoder's), and the
# 100-label points are the runs above. With one label per
# class there is nothing to cross-validate, so `C` is fixed in advance (0.1); with
# all 54 k labels it is fixed at 1 (regularisation hardly matters there). Fewer draws
# are used for the other label counts than for the 100-label headline (the log says
# how many), so their error bars are rougher.

# %%
def sup_fit(x, y, xte, yte):
    """The supervised CNN on one draw (same settings as the baseline above)."""
    steps = cfg["full_steps"] if len(y) > 5000 else cfg["sup_steps"]
    return supervised_accs(lambda: SmallCNN(1, 10), [x], [y], steps, transform=SUP_AUG)[0]


t0 = time.perf_counter()
curve = label_efficiency(
    {"supervised CNN": sup_fit, "MoCo probe": probe_fit, "MoCo + SCAN probe": probe_fit, "random-init probe": probe_fit},
    {"supervised CNN": pool.images, "MoCo probe": feats["MoCo"][0], "MoCo + SCAN probe": f_scan[0],
     "random-init probe": feats["random init"][0]},
    pool.labels,
    {"supervised CNN": test.images, "MoCo probe": feats["MoCo"][1], "MoCo + SCAN probe": f_scan[1],
     "random-init probe": feats["random init"][1]},
    test.labels, sizes=cfg["curve_sizes"], draws=cfg["curve_draws"])
n100 = len(draws[0])  # 100 labels: reuse the runs above (same draws, same settings)
for name, accs in {"supervised CNN": baseline_acc["CNN, online aug"], "MoCo probe": probe100["MoCo"],
                   "MoCo + SCAN probe": scan_probe100, "random-init probe": probe100["random init"]}.items():
    curve[name][n100] = {"mean": mean_std(accs)[0], "std": mean_std(accs)[1], "per_draw": accs}
print(f"({time.perf_counter() - t0:.0f} s)")
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, res in curve.items():
    ns = sorted(res)
    ax.errorbar(ns, [res[n]["mean"] for n in ns], yerr=[res[n]["std"] for n in ns], marker="o", capsize=3, label=name)
ax.set(xscale="log", xlabel="labelled images", ylabel="test accuracy", title=f"label efficiency on {DATASET}")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## What the report got wrong, and why it matters
# The report's numbers: supervised CNN **91 %**, MoCo linear probe **34 %** top-1
# (top-5 77 %), tuned on the test set.

# %%
sup_m, sup_s = mean_std(baseline_acc["CNN, online aug"])
off_m, _ = mean_std(baseline_acc["CNN, offline ×10"])
probe_m, probe_s = mean_std(probe100["MoCo"])
rand_m, _ = mean_std(probe100["random init"])
ft_m, ft_s = mean_std(finetune100)
knn_m, _ = mean_std(knn100)
lp_m, lp_s = mean_std(labelprop["MoCo"]["test_acc"])
lp_px_m, lp_px_s = mean_std(labelprop["pixels"]["test_acc"])
lp_hog_m, lp_hog_s = mean_std(labelprop["HOG"]["test_acc"])
lp_mp_m, lp_mp_s = mean_std(labelprop["MoCo + pixels"]["test_acc"])
lp2_m, lp2_s = mean_std(labelprop[TEACHER]["test_acc"])
hog_m, hog_s = mean_std(hog_probe100)
scan_m, scan_s = mean_std(scan100)
sprobe_m, sprobe_s = mean_std(scan_probe100)
sft_m, sft_s = mean_std(scan_finetune100)
n_few = min(curve["MoCo + SCAN probe"])  # the label-efficiency curve's smallest number of labels
gap_rand, gap_sup = probe_m - rand_m, probe_m - sup_m
print(f"1. The report's MoCo setup was broken, not MoCo: with an encoder sized for 28 px, a fixed-size queue of "
      f"unit-norm columns and {pretrain_epochs} epochs ({pretrain_wall_s / 60:.0f} CPU-minutes instead of 2 GPU-hours) "
      f"the 100-label linear probe reaches {100 * probe_m:.1f} ± {100 * probe_s:.1f} % on {DATASET} "
      f"(report, on MNIST: 34 %).")
print(f"2. What pretraining adds: the same encoder with random weights gives {100 * rand_m:.1f} % "
      f"({100 * gap_rand:+.1f} points for MoCo); kNN on MoCo features {100 * knn_m:.1f} %; fine-tuning the MoCo "
      f"encoder {100 * ft_m:.1f} ± {100 * ft_s:.1f} %.")
print(f"3. Against the supervised CNN ({100 * sup_m:.1f} ± {100 * sup_s:.1f} % with online augmentation, "
      f"{100 * off_m:.1f} % with the report's offline x10) the MoCo probe is {100 * gap_sup:+.1f} points: "
      + ("self-supervision pays off at 100 labels." if gap_sup > sup_s else
         "with this short pretraining it does not beat a well-augmented supervised CNN; the label-efficiency "
         "curve shows where it stands at other label counts.")
      + f" The other yardstick is hand-engineered: the same probe on HOG descriptors gives {100 * hog_m:.1f} ± "
      f"{100 * hog_s:.1f} %, "
      + (f"above MoCo's. After {pretrain_epochs} epochs of pretraining on a CPU, MoCo's features are not yet better "
         "than a 2005 descriptor for a 100-label linear probe"
         + (" (their neighbourhoods still add to HOG's, see 5)." if lp2_m > lp_hog_m else ".")
         if hog_m > probe_m + probe_s else
         "level with MoCo's." if hog_m > probe_m - probe_s else "below MoCo's."))
print(f"4. Draw-to-draw spread: {100 * sup_s:.1f} points (supervised) and {100 * probe_s:.1f} (probe) over "
      f"{len(draws)} draws; a single 75/25 split of one draw, as in the report, cannot resolve differences that small.")
print(f"5. What the unlabelled pool adds at 100 labels: spreading the labels over "
      f"the pool's kNN graph gives {100 * lp_m:.1f} ± {100 * lp_s:.1f} % on MoCo features, {100 * lp_px_m:.1f} ± "
      f"{100 * lp_px_s:.1f} % on raw pixels and {100 * lp_hog_m:.1f} ± {100 * lp_hog_s:.1f} % on HOG descriptors; "
      f"on two graphs at once {100 * lp_mp_m:.1f} ± {100 * lp_mp_s:.1f} % (MoCo + pixels) and {100 * lp2_m:.1f} ± "
      f"{100 * lp2_s:.1f} % (MoCo + HOG), against {100 * probe_m:.1f} % for the MoCo probe on the 100 labels alone "
      f"({100 * hog_m:.1f} % for the same probe on HOG). "
      + (f"MoCo's features are worth having: they add {100 * (lp2_m - lp_hog_m):+.1f} points to the HOG graph alone. "
         if lp2_m - lp_hog_m > lp2_s else
         f"MoCo's features add little to HOG here ({100 * (lp2_m - lp_hog_m):+.1f} points): a hand-engineered "
         "descriptor is the baseline a short self-supervised pretraining has to beat. ")
      + "Naming SCAN's label-free clusters "
      "with the same labels gives "
      f"{100 * scan_m:.1f} ± {100 * scan_s:.1f} % (k-means on the same features finds {100 * kmeans_acc:.1f} %). Both "
      "are semi-supervised protocols, not linear probes; report which one a number comes from. "
      + ("SCAN's head is itself linear in the frozen features, so the probe's gap to it is a shortage of labels, "
         "not of information." if scan_m > probe_m + probe_s else
         f"Here SCAN does not beat the probe: only {100 * same_class:.0f} % of the mined neighbours share the image's "
         "class, and clusters grown from such neighbourhoods mix classes."))
print(f"6. SCAN's self-labelling refines the encoder without labels; the plain 100-label linear probe on it gives "
      f"{100 * sprobe_m:.1f} ± {100 * sprobe_s:.1f} % and fine-tuning {100 * sft_m:.1f} ± {100 * sft_s:.1f} % (MoCo "
      f"alone: {100 * probe_m:.1f} and {100 * ft_m:.1f} %); with {n_few} labels, one per class, the probe gives "
      f"{100 * curve['MoCo + SCAN probe'][n_few]['mean']:.1f} % (MoCo alone {100 * curve['MoCo probe'][n_few]['mean']:.1f} %). "
      + ("Pretraining that ends in class-shaped clusters is what a 100-label linear probe needs; the report's question "
         "(how good is a linear probe on 100 labels?) is mostly a question about the pretraining objective."
         if sprobe_m > probe_m + probe_s else
         "Here it does not help the probe: the encoder learned the clusters SCAN found, and those mix classes."))
st_m, st_s = mean_std(selftrain100)
print(f"7. Fine-tuning with 100 labels: on the 100 images alone it gives {100 * sft_m:.1f} ± {100 * sft_s:.1f} % from "
      f"the refined encoder; self-trained on the pool's pseudo-labels (label propagation on {TEACHER} as the "
      f"teacher) the same encoder gives {100 * st_m:.1f} ± {100 * st_s:.1f} % ({100 * (st_m - lp2_m):+.1f} points "
      f"against its teacher, {100 * (st_m - sprobe_m):+.1f} against the probe). "
      + ("Fine-tuning needs the pool as much as the probe does: the student learns from every image, and the "
         "teacher's scattered mistakes are outvoted." if st_m > max(sft_m, sprobe_m, lp2_m) + st_s else
         f"The student beats its teacher, but not by much: the teacher gets "
         f"{100 * mean_std(labelprop[TEACHER]['pseudo_label_acc'])[0]:.0f} % of the pool's pseudo-labels "
         "right (a diagnostic that reads the pool's labels), and a likely reason (not tested here) is that its mistakes are "
         "not scattered but whole groups of similar images labelled alike, which no student can outvote."
         if st_m > lp2_m else
         "Here the student does not beat its teacher. The teacher's vote looks at each test image through two views "
         f"({TEACHER}), the student through one network; and a student can only outvote the "
         "teacher's mistakes where they are scattered, not where whole groups of images are mislabelled (a likely "
         "reason, not tested here)."))
print("8. Every number here was measured once on the test set with settings fixed in advance or chosen by "
      "cross-validation inside the labelled draw; the report's Optuna-on-test numbers are optimistic by construction.")

# %%
metrics = {
    "supervised100_acc": sup_m, "supervised100_acc_std": sup_s,
    "supervised100_offline_acc": off_m,
    "mlp1_100_acc": mean_std(baseline_acc["MLP1"])[0], "mlp2_100_acc": mean_std(baseline_acc["MLP2"])[0],
    "moco_probe100_acc": probe_m, "moco_probe100_acc_std": probe_s,
    "moco_probe100_top5": topk[5],
    "moco_knn100_acc": knn_m,
    "moco_finetune100_acc": ft_m, "moco_finetune100_acc_std": ft_s,
    "random_init_probe100_acc": rand_m,
    "moco_labelprop100_acc": lp_m, "moco_labelprop100_acc_std": lp_s,
    "pixels_labelprop100_acc": lp_px_m, "pixels_labelprop100_acc_std": lp_px_s,
    "hog_labelprop100_acc": lp_hog_m, "hog_labelprop100_acc_std": lp_hog_s,
    "moco_pixels_labelprop100_acc": lp_mp_m, "moco_pixels_labelprop100_acc_std": lp_mp_s,
    "moco_hog_labelprop100_acc": lp2_m, "moco_hog_labelprop100_acc_std": lp2_s,
    "hog_probe100_acc": hog_m, "hog_probe100_acc_std": hog_s,
    "moco_scan100_acc": scan_m, "moco_scan100_acc_std": scan_s, "moco_scan_cluster_acc": sc.cluster_acc,
    "moco_kmeans_cluster_acc": kmeans_acc,
    "moco_scan_encoder_probe100_acc": sprobe_m, "moco_scan_encoder_probe100_acc_std": sprobe_s,
    "moco_scan_encoder_knn100_acc": mean_std(scan_knn100)[0],
    "moco_probe10_acc": curve["MoCo probe"][n_few]["mean"],
    "moco_scan_encoder_probe10_acc": curve["MoCo + SCAN probe"][n_few]["mean"],
    "moco_scan_encoder_finetune100_acc": sft_m, "moco_scan_encoder_finetune100_acc_std": sft_s,
    "moco_selftrain100_acc": st_m, "moco_selftrain100_acc_std": st_s,
    "pretrain_epochs": pretrain_epochs, "pretrain_wall_s": pretrain_wall_s,
}
note = f"{DATASET}, {len(draws)} class-balanced draws of 10 labels per class, test set once"
# the report's numbers are for MNIST; on Fashion-MNIST there is nothing to compare with
REPORT = {"supervised100_acc": 0.91, "moco_probe100_acc": 0.34, "moco_probe100_top5": 0.77}
save_results("02_moco", PROFILE, metrics, report=REPORT if DATASET == "mnist" else {},
             notes={"supervised100_acc": f"SmallCNN, online {SUP_AUG_NAME} augmentation, {cfg['sup_steps']} steps of 100 images; {note}",
                    "moco_probe100_acc": f"logistic regression, C by 5-fold CV inside each draw; {note}",
                    "moco_probe100_top5": "first draw only",
                    "moco_labelprop100_acc": "100 labels spread over the unlabelled pool's MoCo-feature kNN graph "
                                             f"(label propagation), test images by a kNN vote of the pseudo-labelled "
                                             f"pool; semi-supervised, not a linear probe; {note}",
                    "pixels_labelprop100_acc": f"the same on raw pixels projected onto 50 principal axes; {note}",
                    "hog_labelprop100_acc": f"the same on HOG descriptors projected onto 50 principal axes; {note}",
                    "moco_pixels_labelprop100_acc": "the same on two graphs (MoCo features and pixels), class scores "
                                                    f"and votes averaged; {note}",
                    "moco_hog_labelprop100_acc": "the same on two graphs (MoCo features and HOG), class scores and "
                                                 f"votes averaged; {note}",
                    "hog_probe100_acc": f"logistic regression on HOG descriptors, C by 5-fold CV inside each draw; {note}",
                    "moco_scan100_acc": "SCAN's linear cluster head on the frozen MoCo features (fitted on the unlabelled "
                                        f"pool), clusters named by the 100 labels; semi-supervised; {note}",
                    "moco_scan_cluster_acc": "SCAN clusters on the test set, best one-to-one match, no labels",
                    "moco_kmeans_cluster_acc": "k-means (10 clusters) on the standardised test features, best match",
                    "moco_scan_encoder_probe100_acc": "the same 100-label linear probe on the MoCo encoder refined by "
                                                      f"SCAN's self-labelling (no labels used to refine it); {note}",
                    "moco_probe10_acc": "10 labels (one per class), C fixed at 0.1; label-efficiency curve's draws",
                    "moco_scan_encoder_probe10_acc": "the same on the SCAN-refined encoder",
                    "moco_scan_encoder_finetune100_acc": f"fine-tuning as moco_finetune100_acc, from the refined encoder; {note}",
                    "moco_selftrain100_acc": "every layer of the refined encoder fine-tuned on the pool's pseudo-labels "
                                             f"from label propagation on {TEACHER} plus the 100 labels (self-training, "
                                             f"{cfg['selftrain_rounds']} round(s) of one pass); {note}",
                    "moco_finetune100_acc": f"all layers, {cfg['ft_steps']} steps, encoder lr 10x lower; {note}",
                    "pretrain_wall_s": f"from checkpoint metadata ({meta.get('threads', '?')} thread(s), shared CPU)"
                    if not (TRAIN or cfg["train"]) else "trained in this run"})
