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
# # 05 · Model comparison on MNIST: CNN, ResNet-18, LSTM, attention, ViT
#
# **What the student report set out to do.** Compare four kinds of model on MNIST: a
# small CNN (**99.03 %** test accuracy), ResNet-50 with frozen ImageNet weights on digits
# upscaled to 32 px (**94.15 %**), an LSTM reading the image row by row (**98.37 %**) and
# a one-attention-layer "Transformer" (**97.64 %**), with seconds per epoch for each, and
# two sweeps of the CNN: 5 vs 10 epochs, and filter widths 16-32-32 vs 64-128-128.
#
# **What was wrong with it.** It used the test set as its validation set (so every choice
# leaked into the test numbers), each number came from one run (so differences smaller
# than the seed-to-seed spread mean nothing), the timings came from different runs, and
# the transfer-learning baseline was a frozen network -- a setting that says little about
# what a pretrained ResNet can do.
#
# Here all models go through the same code in one run on one machine: a validation
# split for every choice, the test set once per model at the end, seeds for every
# comparison, one table with accuracy, loss, size, training time and inference speed.
# A ResNet-18 is **fine-tuned** (from ImageNet weights if they can be downloaded,
# otherwise from a ResNet-18 the course trained on Fashion-MNIST) and also used
# **frozen**, to show where the report's 94 % came from; a real Vision Transformer joins
# the comparison.

# %% tags=["parameters"]
PROFILE = "quick"          # smoke | quick | full
INTERACTIVE = True         # False under papermill / grading: no widgets
SEED = 0
RESNET_WEIGHTS = "auto"    # auto (ImageNet if downloadable, else the course checkpoint) | imagenet | course | None
THREADS = None             # torch CPU threads; None = the profile default (smoke 1, else torch default)

# %%
import os
import time

import matplotlib.pyplot as plt
import torch

from course_lib import augment as A
from course_lib import plots
from course_lib.ablation import ablation_metrics, ablation_rows, format_ablation
from course_lib.comparison import (accuracy_vs_time, comparison_rows, evaluate_on_test, format_comparison,
                                   misclassified_by_model, run_seed_arms, train_model)
from course_lib.data import few_label_subset, load_dataset, stratified_split
from course_lib.loader import TensorLoader
from course_lib.metrics import format_mean_std
from course_lib.models import ReportCNN, RowLSTM, SingleAttention, ViT, pretrained_source
from course_lib.profiles import from_env, resolve
from course_lib.results import save_results
from course_lib.train import get_device, seed_everything
from course_lib.transfer import FrozenFeatures, build_resnet18

MODELS = ("CNN", "ResNet-18", "LSTM", "attention", "ViT")
PROFILE, INTERACTIVE = from_env(PROFILE, INTERACTIVE)  # $COURSE_PROFILE / $COURSE_INTERACTIVE win (nbval)
cfg = resolve(PROFILE, {
    # epochs: headline run (1 seed, whole training split), the CNN's by the width the sweep picks;
    # seed_sweep: model -> (images per class, epochs, batch size); sweep_*: the report's CNN sweeps (batch 128),
    # which are also the CNN's seed sweep
    "smoke": {"threads": 1, "n_per_class": 30, "test_per_class": 20, "speed_images": 64, "seeds": (0, 1, 2),
              "epochs": {**dict.fromkeys(MODELS, 1), "CNN": {(16, 32, 32): 1, (64, 128, 128): 1}},
              "frozen_per_class": 20, "seed_sweep": dict.fromkeys(MODELS[1:], (10, 1, 32)),
              "sweep_per_class": 10, "sweep_epochs": (1, 2)},
    "quick": {"threads": None, "n_per_class": None, "test_per_class": None, "speed_images": 500, "seeds": (0, 1, 2),
              "epochs": {"CNN": {(16, 32, 32): 8, (64, 128, 128): 3}, "ResNet-18": 1, "LSTM": 8, "attention": 6, "ViT": 6},
              "frozen_per_class": 500, "seed_sweep": {"ResNet-18": (200, 1, 32), "LSTM": (500, 3, 64),
                                                      "attention": (500, 3, 64), "ViT": (500, 3, 64)},
              "sweep_per_class": 200, "sweep_epochs": (5, 10)},
    "full":  {"threads": None, "n_per_class": None, "test_per_class": None, "speed_images": 1000, "seeds": (0, 1, 2, 3, 4),
              "epochs": {"CNN": {(16, 32, 32): 20, (64, 128, 128): 15}, "ResNet-18": 5, "LSTM": 20, "attention": 20,
                         "ViT": 40},
              "frozen_per_class": None, "seed_sweep": dict.fromkeys(MODELS[1:], (None, 10, 128)),
              "sweep_per_class": None, "sweep_epochs": (5, 10)},
}, threads=THREADS)
if cfg["threads"]:  # tiny smoke batches gain nothing from a 2nd thread, and on a busy machine threads wait on each other
    torch.set_num_threads(cfg["threads"])
device = get_device()
seed_everything(SEED)
T0, CPU0 = time.perf_counter(), time.process_time()
print(f"profile={PROFILE} device={device} torch threads={torch.get_num_threads()}")
print(f"settings: {cfg}")

# %% [markdown]
# ## The data, and a validation split
# 10 % of the training images, stratified by class, are held out for every choice made in
# this notebook (filter widths, epochs, the regularisation of the frozen probe). The test
# set is touched once per model, at the very end.

# %%
full_train = load_dataset("mnist", "train")
test = load_dataset("mnist", "test")
train_idx, val_idx = stratified_split(full_train.labels, val_fraction=0.1, seed=SEED)
train, val = full_train.subset(train_idx), full_train.subset(val_idx)
if cfg["n_per_class"]:  # smoke: tiny class-balanced subsets
    train = train.subset(few_label_subset(train.labels, cfg["n_per_class"], seed=SEED))
    val = val.subset(few_label_subset(val.labels, cfg["n_per_class"], seed=SEED))
if cfg["test_per_class"]:
    test = test.subset(few_label_subset(test.labels, cfg["test_per_class"], seed=SEED))
N_TRAIN = len(train)
print(f"train {len(train)} · validation {len(val)} · test {len(test)}")

MEAN, STD = [0.1307], [0.3081]
AUGMENT = A.RandomAffine(degrees=10, translate=(0.1, 0.1))
val_loader = TensorLoader(val.images, val.labels, 1000, normalize=(MEAN, STD), device=device)
test_loader = TensorLoader(test.images, test.labels, 1000, normalize=(MEAN, STD), device=device)
speed_batch = ((test.images[:cfg["speed_images"]].float() / 255 - MEAN[0]) / STD[0]).to(device)  # for images/s


def subset(ds, per_class, seed):
    """A class-balanced subset of ``per_class`` images per class (None = all)."""
    return ds if per_class is None else ds.subset(few_label_subset(ds.labels, per_class, seed=seed))

# %% [markdown]
# ## The models and how each is trained
# All use AdamW with a one-cycle learning-rate schedule, batch 128. The convolutional
# models and the ViT see small random rotations and shifts (batched, per image); the row
# readers (LSTM, attention) see the plain images, because a shifted image is a different
# sequence of rows for them. Learning rates, weight decay, dropout (none: with it the CNN
# reached a lower validation accuracy in 8 epochs) and the ViT's patch size (7 px patches learned more
# per CPU-second than 4 px ones) were picked on the validation split.
#
# - **CNN**: the report's `ReportCNN` (3 'valid' 3x3 convs, two max-pools, dense 64);
#   its filter widths come from the sweep below.
# - **ResNet-18**: torchvision's architecture with its ImageNet stem on 1-channel 28 px
#   images, fine-tuned end to end from pretrained weights (see which below).
# - **LSTM**: one layer, 128 units, over the 28 rows; **attention**: the report's single
#   self-attention layer over the rows.
# - **ViT**: 7x7 patches (16 tokens + CLS), learned position embeddings, 4 pre-norm
#   Transformer blocks of width 64.

# %%
_, RESNET_USED = build_resnet18(RESNET_WEIGHTS)  # resolve "auto" once: which weights ResNet-18 starts from
print(f"ResNet-18 starts from: {RESNET_USED}")

SPECS = {  # name: (builder, lr, weight decay, augment)
    "CNN": (lambda: ReportCNN(filters=CNN_FILTERS), 3e-3, 1e-4, True),
    "ResNet-18": (lambda: build_resnet18(RESNET_USED)[0], 1e-3, 1e-4, True),
    "LSTM": (lambda: RowLSTM(hidden=128), 3e-3, 0.0, False),
    "attention": (lambda: SingleAttention(d_model=64, heads=4), 3e-3, 0.0, False),
    "ViT": (lambda: ViT(patch_size=7, dim=64, depth=4, heads=4), 2e-3, 0.05, True),
}


def train_one(name, data, epochs, seed, build=None, batch_size=128):
    """Train model ``name`` (or ``build()``) on ``data`` for ``epochs`` with ``seed``; return its ModelRun."""
    builder, lr, wd, augment = SPECS[name]
    seed_everything(seed)
    model = (build or builder)()
    loader = TensorLoader(data.images, data.labels, batch_size, shuffle=True, transform=AUGMENT if augment else None,
                          normalize=(MEAN, STD), device=device, seed=seed)
    return train_model(name, model, loader, val_loader, epochs=epochs, lr=lr, weight_decay=wd, device=device)

# %% [markdown]
# ## The report's sweeps, with seeds: epochs and filter widths
# The report trained the CNN once per setting and read the differences off the test
# set. Here each setting runs with three seeds on a class-balanced subset of the
# training split, and the choice is made on **validation** accuracy. A difference is
# only worth believing when it is larger than its standard error (Δ ± se).

# %%
e_short, e_long = cfg["sweep_epochs"]
SWEEP = {f"16-32-32, {e_short} ep": ((16, 32, 32), e_short), f"16-32-32, {e_long} ep": ((16, 32, 32), e_long),
         f"64-128-128, {e_short} ep": ((64, 128, 128), e_short)}
n_sweep = len(subset(train, cfg["sweep_per_class"], SEED))
print(f"sweep on {n_sweep} training images (a new class-balanced draw per seed, the same for every arm), "
      f"seeds {cfg['seeds']}")
sweep_results, sweep_runs = run_seed_arms(
    {arm: (lambda s, f=f, e=e: train_one("CNN", subset(train, cfg["sweep_per_class"], s), e, s,
                                         build=lambda: ReportCNN(filters=f)))
     for arm, (f, e) in SWEEP.items()}, cfg["seeds"])
baseline = f"16-32-32, {e_short} ep"
print(format_ablation(ablation_rows(sweep_results, baseline=baseline)))

wide = f"64-128-128, {e_short} ep"
CNN_FILTERS = (64, 128, 128) if sweep_results[wide].mean > sweep_results[baseline].mean else (16, 32, 32)
print(f"chosen on validation: filters {CNN_FILTERS}")

# %% [markdown]
# ## Headline runs: every model once, at full length
# One seed per model on the whole training split (the seed sweeps come after). Each run
# records its training time; the ResNet-18 line says which pretrained weights it used.

# %%
EPOCHS = {**cfg["epochs"], "CNN": cfg["epochs"]["CNN"][CNN_FILTERS]}
runs = {}
for name in MODELS:
    print(f"training {name} for {EPOCHS[name]} epochs on {len(train)} images ...", flush=True)
    runs[name] = train_one(name, train, EPOCHS[name], SEED)
    r = runs[name]
    print(f"  {r.params:,} parameters, {r.train_seconds:.0f} s, validation accuracy {r.val_acc:.4f}")
    if name == "ResNet-18":
        r.info["weights"] = RESNET_USED
        print(f"  started from: {RESNET_USED} -- {pretrained_source(r.model)}")

# %% [markdown]
# ### The frozen variant (what the report did)
# Keep every pretrained weight fixed and fit only a logistic-regression head on the
# backbone's 512 features, choosing its regularisation on the validation split. The
# backbone was trained for another task, so whatever it does not already separate stays
# mixed.

# %%
frozen_data = subset(train, cfg["frozen_per_class"], SEED)
source_model, frozen_weights = build_resnet18(RESNET_USED)
frozen = FrozenFeatures(source_model, normalize=(MEAN, STD), device=device)
fr = runs["ResNet-18 frozen"] = frozen.probe("ResNet-18 frozen", frozen_data.images, frozen_data.labels,
                                             val.images, val.labels)
fr.info["weights"] = frozen_weights
print(f"frozen {frozen_weights} features of {len(frozen_data)} training images; validation accuracy by C: "
      f"{ {C: round(a, 4) for C, a in fr.info['val_acc_by_C'].items()} } -> C={fr.info['C']}")

# %% [markdown]
# ## Seed sweeps: how much of each number is luck?
# Three seeds per model. Running every model three times at full length does not fit
# the time budget of this profile, so the sweep uses a shorter schedule on a
# class-balanced subset, drawn anew for each seed, with smaller batches so the short
# runs still take enough optimisation steps (printed below): its accuracies are lower
# than the headline runs', and its standard deviation is the seed-to-seed spread at that
# schedule. The CNN reuses its arm of the width sweep.

# %%
def seed_arm(name, per_class, epochs, batch_size):
    return lambda s: train_one(name, subset(train, per_class, s), epochs, s, batch_size=batch_size)


seed_runs = {"CNN": sweep_runs[f"{'-'.join(map(str, CNN_FILTERS))}, {e_short} ep"]}
SEED_SCHEDULE = {"CNN": (cfg["sweep_per_class"], e_short, 128), **cfg["seed_sweep"]}
arms = {name: seed_arm(name, *SEED_SCHEDULE[name]) for name in MODELS if name != "CNN"}
for name, (per_class, epochs, batch_size) in SEED_SCHEDULE.items():
    print(f"  {name}: {per_class if per_class else 'all'} images per class, {epochs} epochs, batch {batch_size}")
_, more = run_seed_arms(arms, cfg["seeds"])
seed_runs.update(more)
seed_runs["ResNet-18 frozen"] = [  # the probe is deterministic: its seeds draw different training images
    frozen.probe("ResNet-18 frozen", d.images, d.labels, val.images, val.labels, Cs=(fr.info["C"],))
    for d in (subset(train, SEED_SCHEDULE["ResNet-18"][0], s) for s in cfg["seeds"])]

# %% [markdown]
# ## Test, once per model
# Every choice is made; now each trained model meets the test set once. Inference speed
# is measured on the same batch of test images (1,000 outside the smoke profile) for every model.

# %%
for r in runs.values():
    evaluate_on_test(r, test_loader, speed_batch=speed_batch)
for name, rs in seed_runs.items():
    for r in rs:
        if name == "ResNet-18 frozen":  # same frozen features for every seed: computed once
            frozen.evaluate_on_test(r, test.images, test.labels)
        else:
            evaluate_on_test(r, test_loader, keep_preds=False)
rows = comparison_rows(runs, seed_runs, n_full=N_TRAIN)
print(format_comparison(rows))
print(f"\ns/epoch: training seconds per epoch over the {N_TRAIN:,}-image training split (wall clock, this machine; "
      f"the frozen probe: feature extraction + fit). 'seeds': test accuracy over {len(cfg['seeds'])} seeds on the "
      "shorter schedule of the seed sweep.")
print(f"ResNet-18 weights: {RESNET_USED}")

# %%
GOALS = {"CNN": 0.993, "ResNet-18": 0.993, "LSTM": 0.988, "ViT": 0.985}
for name, goal in GOALS.items():
    acc = runs[name].test_acc
    met = acc >= goal - 1e-6  # float32 means: 9930 / 10000 comes out as 0.99299997
    print(f"{name:<10} test {acc:.4f}  goal {goal:.3f}: {'met' if met else 'NOT met'}")

# %%
REPORT = {"CNN": 0.9903, "ResNet-18 frozen": 0.9415, "LSTM": 0.9837, "attention": 0.9764}
accuracy_vs_time(rows, reference=REPORT)
plt.show()
plots.bar_with_errors([r["model"] for r in rows], [r["seed_mean"] for r in rows], [r["seed_std"] for r in rows],
                      title=f"test accuracy over {len(cfg['seeds'])} seeds (seed-sweep schedule)")
plt.show()

# %% [markdown]
# ## What each model gets wrong
# The first misclassified test images of each model (predicted label, true label in
# brackets). Look for the digits that several models get wrong -- often ones a person
# would hesitate over too -- and for the ordinary-looking ones that only the weaker
# models (frozen ResNet-18, the row readers) miss.

# %%
misclassified_by_model(test.images, test.labels, {name: r.test_preds for name, r in runs.items()}, per_model=8)
plt.show()

# %% [markdown]
# ## What the report got wrong, and why it matters
# - **The test set was its validation set.** Every choice it made (epochs, widths,
#   architecture) was tuned on the numbers it then reported. Here the choices come from a
#   validation split; the test set was evaluated once per model.
# - **Single runs.** The report's sweeps (5 vs 10 epochs, 16-32-32 vs 64-128-128) were
#   one run each; the seed spread printed below is of the same size as many of the
#   differences it reported.
# - **"ResNet is worse than a small CNN" was a statement about frozen features.** The
#   report's ResNet-50 kept its ImageNet weights fixed (94.15 %). Fine-tuning the whole
#   network instead -- the usual way to transfer -- closes most of the gap (numbers below),
#   and the frozen variant trains only a linear head on features made for another task.
# - **Ranking models by single numbers.** Among the best models the test accuracies differ
#   by a few tenths of a percent -- set them against the seed spreads printed below before
#   calling one better. Parameters, seconds per epoch and images per second differ by
#   orders of magnitude, and are often the better basis for choosing a model.

# %%
acc = {name: r.test_acc for name, r in runs.items()}
seed_stats = {r["model"]: (r["seed_mean"], r["seed_std"]) for r in rows}
print(f"CNN: report 99.03 % (test set used for tuning) -> here {acc['CNN'] * 100:.2f} % with filters {CNN_FILTERS}")
print(f"ResNet frozen: report 94.15 % (ResNet-50, ImageNet) -> here {acc['ResNet-18 frozen'] * 100:.2f} % frozen vs "
      f"{acc['ResNet-18'] * 100:.2f} % fine-tuned (ResNet-18, weights: {RESNET_USED}); "
      f"fine-tuning gains {(acc['ResNet-18'] - acc['ResNet-18 frozen']) * 100:.2f} points")
print(f"LSTM: report 98.37 % -> here {acc['LSTM'] * 100:.2f} %; attention: report 97.64 % -> here {acc['attention'] * 100:.2f} %")
print(f"ViT (not in the report): {acc['ViT'] * 100:.2f} %")
d_ep = sweep_results[f"16-32-32, {e_long} ep"].mean - sweep_results[baseline].mean
d_w = sweep_results[wide].mean - sweep_results[baseline].mean
print(f"sweeps (validation, {len(cfg['seeds'])} seeds, {n_sweep} images): {e_long} vs {e_short} epochs "
      f"{d_ep * 100:+.2f} points, 64-128-128 vs 16-32-32 {d_w * 100:+.2f} points; seed std of the baseline "
      f"{sweep_results[baseline].std * 100:.2f} points")
for name, (m, s) in seed_stats.items():
    print(f"  seed spread {name:<17} {m * 100:.2f} ± {s * 100:.2f} %")
WALL, CPU = time.perf_counter() - T0, time.process_time() - CPU0
print(f"\nthis notebook: {WALL:.0f} s wall, {CPU:.0f} s CPU, torch threads {torch.get_num_threads()}, "
      f"load average now {[round(x, 1) for x in os.getloadavg()]} (other jobs on the machine inflate wall times)")

# %%
metrics = {
    "cnn_test_acc": acc["CNN"], "resnet18_test_acc": acc["ResNet-18"], "resnet18_frozen_test_acc": acc["ResNet-18 frozen"],
    "lstm_test_acc": acc["LSTM"], "attention_test_acc": acc["attention"], "vit_test_acc": acc["ViT"],
    "resnet18_weights": RESNET_USED, "cnn_filters": "-".join(map(str, CNN_FILTERS)),
    "notebook_wall_s": WALL, "notebook_cpu_s": CPU,
}
keys = {"CNN": "cnn", "ResNet-18": "resnet18", "ResNet-18 frozen": "resnet18_frozen", "LSTM": "lstm",
        "attention": "attention", "ViT": "vit"}
for r in rows:
    k = keys[r["model"]]
    metrics.update({f"{k}_test_acc_seed_mean": r["seed_mean"], f"{k}_test_acc_std": r["seed_std"],
                    f"{k}_test_loss": r["test_loss"], f"{k}_params": r["params"], f"{k}_s_per_epoch": r["s_per_epoch"],
                    f"{k}_images_per_s": r["images_per_second"]})
metrics.update(ablation_metrics(sweep_results, prefix="cnn_sweep_val"))
sched = {name: f"{p or 'all'}/class x {e} ep, batch {b}" for name, (p, e, b) in SEED_SCHEDULE.items()}
notes = {f"{keys[n]}_test_acc": f"1 seed, {EPOCHS[n]} epochs on {N_TRAIN} images" for n in MODELS}
notes.update({f"{keys[n]}_test_acc_std": f"{len(cfg['seeds'])} seeds, {sched[n]}" for n in MODELS})
notes["resnet18_frozen_test_acc_std"] = (f"{len(cfg['seeds'])} draws of {SEED_SCHEDULE['ResNet-18'][0]}/class "
                                         "training images, C fixed")
notes["resnet18_frozen_test_acc"] = f"logistic regression on frozen {frozen_weights} features of {len(frozen_data)} images"
notes["resnet18_weights"] = "ImageNet if downloadable, else the course's Fashion-MNIST ResNet-18 (checkpoints/)"
save_results("05_model_comparison", PROFILE, metrics,
             report={"cnn_test_acc": 0.9903, "resnet18_frozen_test_acc": 0.9415, "lstm_test_acc": 0.9837,
                     "attention_test_acc": 0.9764},
             notes=notes)
