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
# kNN and fine-tuning with 100 labels, and a label-efficiency curve (10 / 100 / 1,000
# / all labels) against a supervised CNN and a randomly initialised encoder. No
# number is tuned on the test set: settings are fixed in advance or chosen by
# cross-validation *inside* the labelled images.
#
# Pretraining takes ~10 minutes of one CPU core, so the `quick` profile loads the course's
# reference checkpoint (`checkpoints/moco-mnist.pt`, made by
# `course pretrain moco-mnist`); set `TRAIN = True` to pretrain it yourself.

# %% tags=["parameters"]
PROFILE = "quick"      # smoke | quick | full
INTERACTIVE = True     # False under papermill / grading: no widgets
SEED = 0
DATASET = "mnist"      # mnist | fashion-mnist
TRAIN = False          # True: pretrain MoCo here instead of loading the reference checkpoint
DRAWS = None           # label draws per setting; None: use the profile setting
PRETRAIN_EPOCHS = None # None: use the profile setting (only used when training)

# %%
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

from course_lib import augment as A
from course_lib import plots
from course_lib.checkpoints import load_or_train, tensor_checksum
from course_lib.data import load_dataset, stratified_split
from course_lib.evaluation import (class_balanced_indices, extract_features, few_label_protocol, finetune,
                                   knn_classify, linear_probe, topk_accuracy)
from course_lib.fewlabel import (accuracy_and_logits, cv_probe_accuracy, label_efficiency, offline_augment,
                                 train_supervised)
from course_lib.metrics import confusion_matrix, format_mean_std, mean_std
from course_lib.models import MLP, SmallCNN
from course_lib.profiles import from_env, resolve
from course_lib.results import save_results
from course_lib.ssl.recipes import MOCO_CONFIGS, build_moco, moco_views, pretrain_moco
from course_lib.ssl.trainer import KNNMonitor
from course_lib.train import get_device, seed_everything

PROFILE, INTERACTIVE = from_env(PROFILE, INTERACTIVE)  # $COURSE_PROFILE / $COURSE_INTERACTIVE win (nbval)
cfg = resolve(PROFILE, {
    "smoke": {"pool": 2000, "n_test": 500, "draws": 2, "sup_steps": 10, "ft_steps": 5, "pretrain_epochs": 1,
              "pretrain_max_steps": 3, "curve_sizes": [1], "curve_draws": {1: 2}, "full_steps": 10,
              "Cs": (0.1, 1.0), "train": True},
    "quick": {"pool": None, "n_test": None, "draws": 5, "sup_steps": 1000, "ft_steps": 150, "pretrain_epochs": 5,
              "pretrain_max_steps": None, "curve_sizes": [1, 100, None], "curve_draws": {1: 3, 100: 2},
              "full_steps": 2000, "Cs": (0.01, 0.1, 1.0, 10.0), "train": False},
    "full":  {"pool": None, "n_test": None, "draws": 10, "sup_steps": 2000, "ft_steps": 300, "pretrain_epochs": 50,
              "pretrain_max_steps": None, "curve_sizes": [1, 100, None], "curve_draws": {1: 10, 100: 5},
              "full_steps": 10000, "Cs": (0.01, 0.1, 1.0, 10.0), "train": True},
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
# - **CNN, online**: the library's batched augmentation draws a new random
#   rotation / shift / scale / shear for every image at every step.

# %%
SUP_AUG = {
    "mnist": A.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.85, 1.15), shear=10),
    "fashion-mnist": A.Compose([A.RandomHorizontalFlip(), A.RandomAffine(translate=(0.1, 0.1), scale=(0.9, 1.1))]),
}[DATASET]


def supervised_fit(make_model, transform=None, offline_copies=0, steps=cfg["sup_steps"]):
    """A few_label_protocol fit function: train from scratch on the draw, test once."""
    def fit(x, y, xte, yte):
        torch.manual_seed(SEED)
        if offline_copies:
            x, y = offline_augment(x, y, offline_copies, SUP_AUG, seed=SEED)
        model = train_supervised(make_model(), x, y, steps=steps, batch_size=100, lr=3e-3,
                                 transform=transform, device=device, seed=SEED)
        return accuracy_and_logits(model, xte, yte)[0]
    return fit


baselines = {
    "MLP1": supervised_fit(lambda: MLP(784, (256,), 10)),
    "MLP2": supervised_fit(lambda: MLP(784, (256, 128), 10)),
    "CNN, offline ×10": supervised_fit(lambda: SmallCNN(1, 10), offline_copies=10),
    "CNN, online aug": supervised_fit(lambda: SmallCNN(1, 10), transform=SUP_AUG),
}
t0 = time.perf_counter()
baseline_acc = {name: few_label_protocol(pool.images, pool.labels, test.images, test.labels, 10, fit_fn=fit,
                                         indices=draws)["per_seed"] for name, fit in baselines.items()}
for name, accs in baseline_acc.items():
    print(f"{name:<18} {format_mean_std(accs)} %")
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
# The next cell checks the first three fixes on a real `MoCo` object.

# %%
moco_cfg = MOCO_CONFIGS[DATASET]
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
# The two views of each image come from the same batched augmentation: a random
# resized crop keeping 50–100 % of the digit, a small rotation and shear, and a small
# erased patch. With `TRAIN = False` (the `quick` profile) the course's checkpoint is
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
# ### Fine-tuning
# The pretrained encoder plus a linear head, all layers trained on the 100 labels
# with the same online augmentation as the supervised CNN; the encoder gets a
# 10× smaller learning rate than the new head so that its features are adjusted,
# not overwritten. Settings fixed in advance: AdamW, `ft_steps` steps of the whole
# labelled draw.

# %%
def finetune_fit(x, y, xte, yte):
    torch.manual_seed(SEED)
    backbone = moco_cfg.encoder(1)
    backbone.load_state_dict(encoder.state_dict())
    res = finetune(backbone.to(device), nn.Linear(backbone.feature_dim, 10).to(device), x, y, epochs=cfg["ft_steps"],
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
# supervised CNN is trained from scratch on each draw (`sup_steps` steps, `full_steps`
# with all labels); the probes reuse the extracted features, and the 100-label points
# are the runs above. With one label per
# class there is nothing to cross-validate, so `C` is fixed in advance (0.1); with
# all 54 k labels it is fixed at 1 (regularisation hardly matters there). Fewer draws
# are used for the larger, slower settings.

# %%
def sup_fit(x, y, xte, yte):
    steps = cfg["full_steps"] if len(y) > 5000 else cfg["sup_steps"]
    return supervised_fit(lambda: SmallCNN(1, 10), transform=SUP_AUG, steps=steps)(x, y, xte, yte)


t0 = time.perf_counter()
curve = label_efficiency(
    {"supervised CNN": sup_fit, "MoCo probe": probe_fit, "random-init probe": probe_fit},
    {"supervised CNN": pool.images, "MoCo probe": feats["MoCo"][0], "random-init probe": feats["random init"][0]},
    pool.labels,
    {"supervised CNN": test.images, "MoCo probe": feats["MoCo"][1], "random-init probe": feats["random init"][1]},
    test.labels, sizes=cfg["curve_sizes"], draws=cfg["curve_draws"])
n100 = len(draws[0])  # 100 labels: reuse the runs above (same draws, same settings)
for name, accs in {"supervised CNN": baseline_acc["CNN, online aug"], "MoCo probe": probe100["MoCo"],
                   "random-init probe": probe100["random init"]}.items():
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
gap_rand, gap_sup = probe_m - rand_m, probe_m - sup_m
print(f"1. The report's MoCo setup was broken, not MoCo: with an encoder sized for 28 px, a fixed-size queue of "
      f"unit-norm columns and {pretrain_epochs} epochs ({pretrain_wall_s / 60:.0f} CPU-minutes instead of 2 GPU-hours) "
      f"the 100-label linear probe reaches {100 * probe_m:.1f} ± {100 * probe_s:.1f} % (report: 34 %).")
print(f"2. What pretraining adds: the same encoder with random weights gives {100 * rand_m:.1f} % "
      f"({100 * gap_rand:+.1f} points for MoCo); kNN on MoCo features {100 * knn_m:.1f} %; fine-tuning the MoCo "
      f"encoder {100 * ft_m:.1f} ± {100 * ft_s:.1f} %.")
print(f"3. Against the supervised CNN ({100 * sup_m:.1f} ± {100 * sup_s:.1f} % with online augmentation, "
      f"{100 * off_m:.1f} % with the report's offline x10) the MoCo probe is {100 * gap_sup:+.1f} points: "
      + ("self-supervision pays off at 100 labels." if gap_sup > sup_s else
         "with this short pretraining it does not beat a well-augmented supervised CNN; the label-efficiency "
         "curve shows where it stands at other label counts."))
print(f"4. Draw-to-draw spread: {100 * sup_s:.1f} points (supervised) and {100 * probe_s:.1f} (probe) over "
      f"{len(draws)} draws; a single 75/25 split of one draw, as in the report, cannot resolve differences that small.")
print("5. Every number here was measured once on the test set with settings fixed in advance or chosen by "
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
    "pretrain_epochs": pretrain_epochs, "pretrain_wall_s": pretrain_wall_s,
}
note = f"{DATASET}, {len(draws)} class-balanced draws of 10 labels per class, test set once"
save_results("02_moco", PROFILE, metrics,
             report={"supervised100_acc": 0.91, "moco_probe100_acc": 0.34, "moco_probe100_top5": 0.77},
             notes={"supervised100_acc": f"SmallCNN, online affine augmentation, {cfg['sup_steps']} steps; {note}",
                    "moco_probe100_acc": f"logistic regression, C by 5-fold CV inside each draw; {note}",
                    "moco_probe100_top5": "first draw only",
                    "moco_finetune100_acc": f"all layers, {cfg['ft_steps']} steps, encoder lr 10x lower; {note}",
                    "pretrain_wall_s": f"from checkpoint metadata ({meta.get('threads', '?')} thread(s), shared CPU)"
                    if not (TRAIN or cfg["train"]) else "trained in this run"})
