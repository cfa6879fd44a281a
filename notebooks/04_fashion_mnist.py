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
# # 04 · Fashion-MNIST: augmentation and regularisation
#
# **What the student report set out to do.** Classify Fashion-MNIST's ten kinds of
# clothing, understand the mistakes, and find out which ingredients help: it trained an
# MLP baseline (**88.5 %** test accuracy), looked at its hidden layer with TensorBoard's
# t-SNE projector, studied per-class accuracy and the confusion matrix (shirts against
# T-shirts), regrouped the classes into three imbalanced superclasses (Top / Bottom /
# Accessories), built an augmentation pipeline (random crop, cutout, Gaussian noise,
# rotations up to 90°, horizontal and vertical flips), and compared seven models --
# baseline, +augmentation, +conv, +BatchNorm, +dropout, +L2, +L1 -- **one run each**,
# the best reaching **91.33 %**.
#
# **What was wrong with it.** Its noise function used std² as the standard deviation
# (so "std 0.1" was 0.01), some of its augmentations produce images that never occur in
# the data, and its conclusions rest on single runs whose differences are within the
# seed-to-seed noise.
#
# This notebook redoes the whole flow honestly: every choice on a validation split, every
# comparison over several seeds with a test of whether the difference exceeds the noise,
# and the test set touched once, at the end.

# %% tags=["parameters"]
PROFILE = "quick"      # smoke | quick | full
INTERACTIVE = True     # False under papermill / grading: no widgets
SEED = 0
BEST_EPOCHS = None     # None = the profile's default; epochs of the final (best) model
SWEEP_EPOCHS = None    # epochs of each seed-sweep run
N_SEEDS = None         # seeds per arm of the sweeps

# %%
import dataclasses
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib import augment as A
from course_lib import plots
from course_lib.ablation import ablation_metrics, ablation_rows, format_ablation, run_seeds
from course_lib.data import channel_stats, few_label_subset, load_dataset, stratified_split
from course_lib.embeddings import penultimate_features, plot_embedding, tsne_2d
from course_lib.invariance import accuracy_under_transforms
from course_lib.loader import TensorLoader
from course_lib.metrics import binomial_ci, confusion_matrix, format_mean_std, per_class_accuracy
from course_lib.profiles import from_env, resolve
from course_lib.regularization import Setting, train_setting
from course_lib.results import save_results
from course_lib.significance import compare_pairs, format_comparisons
from course_lib.superclasses import (FASHION_SUPERCLASSES, balanced_accuracy, balanced_class_weights, group_index,
                                     superclass_logits)
from course_lib.train import get_device, predict, seed_everything
from course_lib.tta import FlipAverage

PROFILE, INTERACTIVE = from_env(PROFILE, INTERACTIVE)  # $COURSE_PROFILE / $COURSE_INTERACTIVE win (nbval)
cfg = resolve(PROFILE, {
    "smoke": {"n_per_class": 40, "mlp_epochs": 1, "best_epochs": 1, "sweep_epochs": 1, "sweep_per_class": 10,
              "n_seeds": 2, "tsne_points": 200},
    "quick": {"n_per_class": None, "mlp_epochs": 8, "best_epochs": 10, "sweep_epochs": 3, "sweep_per_class": 300,
              "n_seeds": 3, "tsne_points": 2000},
    "full":  {"n_per_class": None, "mlp_epochs": 30, "best_epochs": 30, "sweep_epochs": 15, "sweep_per_class": None,
              "n_seeds": 5, "tsne_points": 5000},
}, best_epochs=BEST_EPOCHS, sweep_epochs=SWEEP_EPOCHS, n_seeds=N_SEEDS)
device = get_device()
seed_everything(SEED)
SEEDS = [SEED + i for i in range(cfg["n_seeds"])]
print(f"profile={PROFILE} device={device} seeds={SEEDS} settings={cfg}")

# %% [markdown]
# ## The data
# 60,000 training and 10,000 test images, 28×28 grey, ten classes of 6,000 / 1,000
# each. We hold out 10 % of the training images (stratified) for every decision below.

# %%
train_full = load_dataset("fashion-mnist", "train")
test = load_dataset("fashion-mnist", "test")
if cfg["n_per_class"]:  # smoke profile: a small class-balanced subset
    train_full = train_full.subset(few_label_subset(train_full.labels, cfg["n_per_class"], seed=SEED))
    test = test.subset(few_label_subset(test.labels, cfg["n_per_class"] // 2, seed=SEED))
CLASSES = train_full.classes
train_idx, val_idx = stratified_split(train_full.labels, val_fraction=0.1, seed=SEED)
train, val = train_full.subset(train_idx), train_full.subset(val_idx)
mean, std = channel_stats(train)
NORM = (mean.tolist(), std.tolist())
print(f"train {len(train)} · validation {len(val)} · test {len(test)}; pixel mean {mean.item():.3f} std {std.item():.3f}")

fig, ax = plt.subplots(figsize=(7, 2.5))
ax.bar(range(10), torch.bincount(train.labels, minlength=10).tolist())
ax.set_xticks(range(10), CLASSES, rotation=30, ha="right")
ax.set_title("training images per class: perfectly balanced")
plt.show()
show = torch.cat([(train.labels == c).nonzero().flatten()[:4] for c in range(10)])
plots.image_grid(train.images[show], train.labels[show], CLASSES, ncols=10, title="four of each class (columns: repeat)")
plt.show()

# %% [markdown]
# ## The MLP baseline
# Flatten, two hidden ReLU layers (256, 128), no augmentation: the report's baseline.
# Adam with a one-cycle schedule for a fixed number of epochs; the learning curves show
# whether that number is sensible (validation accuracy flat at the end).

# %%
mlp_setting = Setting("mlp", lr=2e-3)
mlp = train_setting(mlp_setting, train, val, epochs=cfg["mlp_epochs"], seed=SEED, normalize=NORM, device=device,
                    progress=True)
print(f"MLP: {mlp.seconds:.0f} s of training, final validation accuracy {mlp.val_acc:.4f}")
plots.learning_curves(mlp.history, title="MLP baseline")
plt.show()

# %% [markdown]
# Its test accuracy is measured now and never used for a decision: the MLP is the
# reference the report started from.

# %%
test_loader = TensorLoader(test.images, test.labels, 1000, normalize=NORM, device=device)
logits, labels = predict(mlp.model, test_loader)
mlp_preds = logits.argmax(1)
mlp_test_acc = (mlp_preds == labels).float().mean().item()
lo, hi = binomial_ci(int((mlp_preds == labels).sum()), len(labels))
print(f"MLP test accuracy {mlp_test_acc:.4f} (95 % CI {lo:.4f}-{hi:.4f}); the report's MLP: 0.885")

# %% [markdown]
# ## What the hidden layer sees: t-SNE
# The activations entering the MLP's output layer, for a few thousand validation
# images, mapped to 2-D with t-SNE (after PCA to 50 dimensions). The output layer is
# linear, so classes it must separate with a straight line are the ones that should
# form clean islands.

# %%
val_loader = TensorLoader(val.images, val.labels, 1000, normalize=NORM, device=device)
feats, feat_labels = penultimate_features(mlp.model, val_loader, max_samples=cfg["tsne_points"])
xy = tsne_2d(feats, seed=SEED, perplexity=min(30.0, len(feats) / 4))
plot_embedding(xy, feat_labels, CLASSES, title=f"MLP penultimate layer, {len(feats)} validation images")
plt.show()

# %% [markdown]
# Trousers, bags and the three kinds of shoes form islands; T-shirt/top, pullover, coat
# and shirt overlap in one cloud. The per-class accuracy and the confusion matrix say the
# same thing in numbers.

# %%
pc = per_class_accuracy(labels, mlp_preds, 10)
plots.per_class_bars(pc, CLASSES, title="MLP: per-class test accuracy")
plt.show()
cm = confusion_matrix(labels, mlp_preds, 10)
plots.confusion_matrix(cm, CLASSES, title="MLP: confusion matrix (rows: true class)")
plt.show()
shirt, tshirt = CLASSES.index("Shirt"), CLASSES.index("T-shirt/top")
print(f"worst class: {CLASSES[int(np.argmin(pc))]} ({pc.min():.3f}); "
      f"shirts called T-shirt/top: {cm[shirt, tshirt]} of {cm[shirt].sum()}")
wrong = (mlp_preds != labels).nonzero().flatten()[:24]
plots.image_grid(test.images[wrong], labels[wrong], CLASSES, preds=mlp_preds[wrong], ncols=12,
                 title="misclassified test images (prediction, true class in red)")
plt.show()

# %% [markdown]
# ## Augmentations: a gallery
# Every transform the report used, as batched transforms (each image gets its own
# random parameters). Two rows for Gaussian noise: the report's code multiplied by
# std², so its "std 0.1" added noise of standard deviation 0.01 -- invisible.

# %%
AUGMENTATIONS = {
    "random crop (pad 2)": A.RandomCrop(28, padding=2),
    "cutout 8 px": A.Cutout(8),
    "noise std 0.1": A.GaussianNoise(0.1),
    "report's noise (0.1² = 0.01)": A.GaussianNoise(0.1**2),
    "rotation ±90°": A.RandomRotation(90),
    "horizontal flip": A.RandomHorizontalFlip(p=1.0),
    "vertical flip": A.RandomVerticalFlip(p=1.0),
}
plots.augmentation_gallery(train.images[show[::4]], AUGMENTATIONS, generator=torch.Generator().manual_seed(SEED))
plt.show()

# %% [markdown]
# ## Which augmentations match the data?
# An augmentation claims "this is another image of the same class, as the data could
# contain it". Every boot in Fashion-MNIST stands on its sole, so a vertically flipped
# (or 90°-rotated) boot is an image the test set never shows. Subtler: nearly every
# shoe also points the same way, so even a horizontal flip makes shoes the data do not
# contain. Two experiments, both judged on the validation split:
#
# 1. **Training with each pipeline**: a BatchNorm CNN trained without augmentation, with
#    small shifts only, with shifts + horizontal flips, and with the report's full
#    pipeline. Each arm runs for several seeds on a subset with a short schedule (the
#    ablation below uses the same protocol; `SWEEP` says what it is).
# 2. **Accuracy under each transform**: the CNN trained *without* augmentation is
#    evaluated on transformed validation images. Where its accuracy holds, the
#    transformed images look like the data; where it collapses, they do not.

# %%
PIPELINES = {
    "shift": A.RandomCrop(28, padding=2),
    "shift+hflip": A.Compose([A.RandomCrop(28, padding=2), A.RandomHorizontalFlip()]),
    "report's": A.Compose([A.RandomCrop(28, padding=2), A.Cutout(8, p=0.5), A.GaussianNoise(0.1**2),
                           A.RandomRotation(90), A.RandomHorizontalFlip(), A.RandomVerticalFlip()]),
}
PIPELINE_INFO = {"none": "no augmentation", "shift": "random crop, padding 2", "shift+hflip": "crop + horizontal flip",
                 "report's": "crop, cutout, noise, rot ±90°, h+v flips"}
sweep_train = train if cfg["sweep_per_class"] is None else train.subset(
    few_label_subset(train.labels, cfg["sweep_per_class"], seed=SEED))
SWEEP = (f"{len(SEEDS)} seeds x {cfg['sweep_epochs']} epochs on {len(sweep_train)} training images, "
         f"validation accuracy on {len(val)} images")
sweeps, first_models = {}, {}


def sweep(setting, pipeline=None, name=""):
    """Validation accuracies of ``setting`` over SEEDS (cached: arms shared by two experiments run once)."""
    key = (setting, pipeline)
    if key not in sweeps:
        def run(seed):
            r = train_setting(setting, sweep_train, val, epochs=cfg["sweep_epochs"], seed=seed,
                              transform=PIPELINES.get(pipeline), normalize=NORM, device=device,
                              eval_every_epoch=False)
            first_models.setdefault(key, r.model)
            return r.val_acc
        sweeps[key] = run_seeds(run, SEEDS, name=name)
    return sweeps[key]


print("sweep protocol:", SWEEP)
cnn_bn = Setting("cnn", batchnorm=True)
aug_results = {"none": sweep(cnn_bn, name="none")}
for pname in PIPELINES:
    aug_results[pname] = sweep(dataclasses.replace(cnn_bn, augment=True), pname, name=pname)

# %%
print(format_ablation(ablation_rows(aug_results, baseline="none"), labels=PIPELINE_INFO))
aug_cmp = compare_pairs(aug_results, [("none", p) for p in PIPELINES] + [("shift", "shift+hflip"),
                                                                          ("shift+hflip", "report's")])
print(format_comparisons(aug_cmp))
AUG = max(PIPELINES, key=lambda p: aug_results[p].mean)  # chosen on validation accuracy
print(f"\npipeline used from here on (highest validation mean): {AUG!r} = {PIPELINE_INFO[AUG]}")

# %%
probe = {"none": None, **{k: v for k, v in AUGMENTATIONS.items() if not k.startswith("report's noise")}}
under = accuracy_under_transforms(first_models[(cnn_bn, None)], val.images, val.labels, probe, normalize=NORM,
                                  num_classes=10, device=device, seed=SEED)
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(under), [u.acc for u in under.values()], color="tab:blue")
ax.invert_yaxis()
ax.set_xlabel("validation accuracy of the CNN trained without augmentation")
ax.set_title("accuracy on transformed images")
plt.show()
shoes = [CLASSES.index(c) for c in ("Sandal", "Sneaker", "Ankle boot")]
print(f"{'transform':<22} {'all':>6} {'shoes':>6}  worst class")
for name, u in under.items():
    print(f"{name:<22} {u.acc:>6.3f} {u.per_class[shoes].mean():>6.3f}  "
          f"{CLASSES[int(np.argmin(u.per_class))]} ({u.per_class.min():.3f})")

# %% [markdown]
# ## The seven-model ablation, with seeds
# The report's sequence, each arm adding one ingredient to the previous one (+L2 and +L1
# each add their penalty to the +dropout model). The augmentation is the pipeline chosen
# above. L2 and L1 are penalties in the loss (`l2 · Σw²`, `l1 · Σ|w|` over the
# weights of the linear and conv layers), which is what the report's "L2" was -- a
# Keras-style kernel regulariser. With Adam that is not weight decay: Adam divides each
# gradient, the penalty's included, by its running RMS, so the pull towards zero is
# weakest on exactly the weights with large gradients. AdamW's *decoupled* weight decay
# shrinks every weight by `lr · wd` per step instead (Loshchilov & Hutter, 2019).

# %%
dropout = Setting("cnn", augment=True, batchnorm=True, dropout=0.25)
ARMS = {
    "baseline MLP": Setting("mlp"),
    "+augmentation": Setting("mlp", augment=True),
    "+conv": Setting("cnn", augment=True),
    "+BN": Setting("cnn", augment=True, batchnorm=True),
    "+dropout": dropout,
    "+L2": dataclasses.replace(dropout, l2=1e-4),
    "+L1": dataclasses.replace(dropout, l1=1e-5),
}
ARM_INFO = {"baseline MLP": "MLP 256-128", "+augmentation": "MLP, trained on augmented images",
            "+conv": "2 conv blocks + dense head", "+BN": "+ BatchNorm", "+dropout": "+ dropout 0.25",
            "+L2": "+ 1e-4 * sum w^2 in the loss", "+L1": "+ 1e-5 * sum |w| in the loss"}
ablation = {name: sweep(s, AUG if s.augment else None, name=name) for name, s in ARMS.items()}
print("protocol:", SWEEP, "(arms identical to an augmentation-experiment arm reuse its runs)")
print(format_ablation(ablation_rows(ablation, baseline="baseline MLP"), labels=ARM_INFO))

# %%
names = list(ablation)
plots.bar_with_errors(names, [ablation[n].mean for n in names], [ablation[n].std for n in names],
                      ylabel="validation accuracy", title=f"mean ± std over {len(SEEDS)} seeds")
plt.show()
steps = list(zip(names[:4], names[1:5])) + [("+dropout", "+L2"), ("+dropout", "+L1")]
steps_cmp = compare_pairs(ablation, steps, holm=True)
print("Welch's t-test of each step, Holm-corrected over the", len(steps), "steps:")
print(format_comparisons(steps_cmp))
real = [f"{r['a']} -> {r['b']}" for r in steps_cmp if r["larger_than_noise"]]
print("\nlarger than the seed noise:", ", ".join(real) or "none")

# %% [markdown]
# ## The best model, trained once at full length
# The arm with the highest validation mean is retrained on the whole training split for
# longer. Whether to average its predictions over a horizontal flip (test-time
# augmentation) is decided on validation accuracy too. Then, once, the test set.

# %%
best_name = max(ablation, key=lambda n: ablation[n].mean)
best_setting = ARMS[best_name]
print(f"best arm on validation: {best_name} = {best_setting}")
best = train_setting(best_setting, train, val, epochs=cfg["best_epochs"], seed=SEED,
                     transform=PIPELINES[AUG] if best_setting.augment else None, normalize=NORM, device=device,
                     progress=True)
best_train_seconds = best.seconds
idle_estimate = best.cpu_seconds / torch.get_num_threads()
print(f"training took {best_train_seconds:.0f} s wall, {best.cpu_seconds:.0f} s CPU on {torch.get_num_threads()} threads "
      f"(idle-machine estimate {idle_estimate:.0f} s); load average {os.getloadavg()[0]:.1f}")
plots.learning_curves(best.history, title=f"best model ({best_name}), {cfg['best_epochs']} epochs")
plt.show()
val_tta = (predict(FlipAverage(best.model), val_loader)[0].argmax(1) == val.labels).float().mean().item()
use_tta = val_tta > best.val_acc
final_model = FlipAverage(best.model) if use_tta else best.model
print(f"validation: plain {best.val_acc:.4f}, flip-averaged {val_tta:.4f} -> use flip averaging: {use_tta}")

# %%
best_logits, _ = predict(final_model, test_loader)
best_preds = best_logits.argmax(1)
best_test_acc = (best_preds == labels).float().mean().item()
lo, hi = binomial_ci(int((best_preds == labels).sum()), len(labels))
print(f"best model test accuracy {best_test_acc:.4f} (95 % CI {lo:.4f}-{hi:.4f}) "
      f"after {best_train_seconds:.0f} s of training; the report's best: 0.9133")
plots.confusion_matrix(confusion_matrix(labels, best_preds, 10), CLASSES, title=f"{best_name}: confusion matrix")
plt.show()

# %% [markdown]
# ## Superclasses: Top / Bottom / Accessories
# The report's regrouping. Tops take five classes and bottoms one, so the superclasses
# are 5 : 1 : 4, and a model that never says "Bottom" still gets 90 % accuracy. Two
# remedies, both used here: **class-balanced loss weights** (each superclass weighs the
# same in total) and the **balanced accuracy** (mean per-class recall) reported next to
# the plain one.
#
# The superclass model reuses the best network: its penultimate features (learned from
# the ten fine labels, which carry more information than the three coarse ones) with a
# new 3-way logistic-regression head, fitted on the training split with and without
# class weights. The 10-class model's probabilities summed per group are a third
# yardstick. The head's regularisation is scikit-learn's default; nothing is tuned on test.

# %%
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

mapping, SUPER = group_index(FASHION_SUPERCLASSES, CLASSES)
print("superclass sizes (train):", dict(zip(SUPER, torch.bincount(mapping[train.labels]).tolist())),
      "balanced loss weights:", [round(w, 2) for w in balanced_class_weights(mapping[train.labels], 3).tolist()])
plain_train_loader = TensorLoader(train.images, train.labels, 1000, normalize=NORM, device=device)
f_train, y_train = penultimate_features(best.model, plain_train_loader)
f_test, y_test = penultimate_features(best.model, test_loader)
s_train, s_test = mapping[y_train].numpy(), mapping[y_test]
heads, s_preds = {}, {}
for weighting in ("balanced", None):
    heads[weighting] = make_pipeline(StandardScaler(), LogisticRegression(class_weight=weighting, max_iter=500))
    heads[weighting].fit(f_train.numpy(), s_train)
    s_preds[str(weighting)] = torch.as_tensor(heads[weighting].predict(f_test.numpy()))
s_preds["summed 10-class"] = superclass_logits(best_logits, mapping).argmax(1)
for name, p in s_preds.items():
    rec = per_class_accuracy(s_test, p, 3)
    print(f"{name:<16} accuracy {(p == s_test).float().mean():.4f}  balanced {balanced_accuracy(s_test, p):.4f}  "
          f"recall {dict(zip(SUPER, np.round(rec, 4).tolist()))}")
superclass_acc = (s_preds["balanced"] == s_test).float().mean().item()
superclass_balanced_acc = balanced_accuracy(s_test, s_preds["balanced"])
plots.confusion_matrix(confusion_matrix(s_test, s_preds["balanced"], 3), SUPER, normalize=False,
                       title="superclasses, class-weighted head (counts)")
plt.show()

# %% [markdown]
# ## What the report got wrong, and why it matters
# The numbers below are computed from this notebook's runs.

# %%
noise_ratio = AUGMENTATIONS["noise std 0.1"].std / AUGMENTATIONS["report's noise (0.1² = 0.01)"].std
stds = [r.std * 100 for r in ablation.values()]
print(f"1. Single runs. Over {len(SEEDS)} seeds the ablation arms' standard deviations are {min(stds):.2f} to "
      f"{max(stds):.2f} points ({SWEEP}).")
print(f"   Of the {len(steps)} steps, larger than the seed noise (Welch, Holm-corrected): {', '.join(real) or 'none'}.")
print(f"   A ranking of the rest from one run each is a ranking of seeds.")
print(f"2. Noise bug. With std² for std, the report's 'std 0.1' noise was {noise_ratio:.0f}x weaker than it said.")
print(f"3. Augmentations. Without augmentation the CNN gets {under['none'].acc:.3f} on validation images; "
      f"vertically flipped {under['vertical flip'].acc:.3f}, rotated ±90° {under['rotation ±90°'].acc:.3f}, "
      f"horizontally flipped {under['horizontal flip'].acc:.3f} (shoes: {under['horizontal flip'].per_class[shoes].mean():.3f}).")
for p in aug_results:
    print(f"   trained with {p:<12} {format_mean_std(aug_results[p].values)}  ({PIPELINE_INFO[p]})")
print(f"4. Results. MLP baseline {mlp_test_acc:.4f} test (report: 0.885); best model ({best_name}) {best_test_acc:.4f} "
      f"test (report: 0.9133) after {best_train_seconds:.0f} s of training; superclasses {superclass_balanced_acc:.4f} "
      f"balanced accuracy.")

# %%
metrics = {
    "mlp_test_acc": mlp_test_acc,
    "best_test_acc": best_test_acc,
    "best_model": best_name,
    "best_train_seconds": best_train_seconds,
    "best_train_idle_estimate_seconds": idle_estimate,
    "best_val_acc": best.val_acc,
    "best_uses_flip_tta": use_tta,
    "superclass_acc": superclass_acc,
    "superclass_balanced_acc": superclass_balanced_acc,
    "superclass_unweighted_balanced_acc": balanced_accuracy(s_test, s_preds["None"]),
    "superclass_from_10class_balanced_acc": balanced_accuracy(s_test, s_preds["summed 10-class"]),
    "aug_pipeline": AUG,
    **ablation_metrics(ablation, prefix="ablation"),
    **ablation_metrics(aug_results, prefix="aug"),
}
save_results("04_fashion_mnist", PROFILE, metrics, report={"mlp_test_acc": 0.885, "best_test_acc": 0.9133}, notes={
    "mlp_test_acc": f"MLP 256-128, {cfg['mlp_epochs']} epochs, seed {SEED}",
    "best_test_acc": f"{best_name}, {cfg['best_epochs']} epochs on {len(train)} images, seed {SEED}, "
                     f"flip TTA {use_tta}; chosen on validation",
    "best_train_seconds": f"wall time of the best model's training; load average {os.getloadavg()[0]:.1f}",
    "best_train_idle_estimate_seconds": "CPU seconds of the training / torch threads",
    "superclass_balanced_acc": "best model's penultimate features + class-weighted logistic regression head",
    "ablation_baseline_mlp_mean": f"validation accuracy; {SWEEP}",
    "aug_none_mean": f"BatchNorm CNN, validation accuracy; {SWEEP}",
})
