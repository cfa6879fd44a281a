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
from course_lib.tta import FlipAverage, ShiftAverage

PROFILE, INTERACTIVE = from_env(PROFILE, INTERACTIVE)  # $COURSE_PROFILE / $COURSE_INTERACTIVE win (nbval)
cfg = resolve(PROFILE, {
    "smoke": {"n_per_class": 40, "mlp_epochs": 1, "best_epochs": 1, "sweep_epochs": 1, "sweep_per_class": 10,
              "n_seeds": 2, "tsne_points": 200},
    "quick": {"n_per_class": None, "mlp_epochs": 8, "best_epochs": 12, "sweep_epochs": 3, "sweep_per_class": 300,
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
# ### Exercise 1 (2 points): Gaussian noise with the standard deviation it claims
# The report's noise function multiplied its random numbers by std², so every noise
# level it reported was the square of the one it used. Write
# `add_gaussian_noise(x, std, generator=None)` for a float batch `x` of shape
# `(N, C, H, W)` with pixels in [0, 1]:
#
# - draw the noise in one call, `torch.randn(x.shape, generator=generator)`: every pixel
#   of every image gets its own number, and the same generator seed gives the same noise;
# - multiply it by `std` -- the standard deviation itself, not its square. `std` is
#   either a number (one level for the whole batch) or a tensor of shape `(N,)`, one
#   level per image (reshape it with `.view(-1, 1, 1, 1)` so that it broadcasts);
# - add it to `x` and clamp the result to [0, 1] (`.clamp(0, 1)`): a pixel darker than
#   black is not an image the data contain.
#
# Return a new tensor of `x`'s shape and dtype; do not change `x`. The cell after the
# tests compares your noise with the library's `GaussianNoise` and the report's, and
# shows one noise level per image.

# %% grade_id="fmnist_noise_solution" solution=true
def add_gaussian_noise(x, std, generator=None):
    """x + std * standard normal noise, clamped to [0, 1]; std a number or one value per image (N,)."""
    ### BEGIN SOLUTION
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    if std.ndim == 1:
        std = std.view(-1, 1, 1, 1)
    noise = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    return (x + std * noise).clamp(0, 1)
    ### END SOLUTION

# %% grade_id="fmnist_noise_tests" points=2 tags=["graded"]
grey = torch.full((64, 1, 28, 28), 0.5)  # mid-grey images: the clamp at 0 and 1 (almost) never acts
noisy = add_gaussian_noise(grey, 0.1, torch.Generator().manual_seed(0))
assert noisy.shape == grey.shape, f"keep the batch's shape {tuple(grey.shape)}, got {tuple(noisy.shape)}"
assert bool((grey == 0.5).all()), "x changed: return a new tensor (x + noise), do not add in place (x += ...)"
measured = (noisy - 0.5).std().item()
assert abs(measured - 0.01) > 0.002, f"the noise's standard deviation is {measured:.4f} = std²: multiply by std, not std**2"
assert abs(measured - 0.1) < 0.005, f"with std=0.1 the added noise should have standard deviation 0.1, got {measured:.4f}"
assert torch.equal(add_gaussian_noise(grey, 0.0, torch.Generator().manual_seed(0)), grey), "std=0 must change nothing"
loud = add_gaussian_noise(grey, 2.0, torch.Generator().manual_seed(0))
assert loud.min() >= 0 and loud.max() <= 1, "clamp the result to [0, 1]"
try:
    pair = add_gaussian_noise(grey[:2], torch.tensor([0.0, 0.1]), torch.Generator().manual_seed(0))
except RuntimeError as err:
    raise AssertionError(f"a std tensor of shape (N,) gives each image its own level: .view(-1, 1, 1, 1) it ({err})")
assert torch.equal(pair[0], grey[0]) and not torch.equal(pair[1], grey[1]), "std [0, 0.1]: only the second image changes"
### BEGIN HIDDEN TESTS
assert noisy.dtype == torch.float32, f"keep the dtype float32, got {noisy.dtype}"
imgs = train.images[:16].float() / 255
before = imgs.clone()
mine = add_gaussian_noise(imgs, 0.1, torch.Generator().manual_seed(3))
assert torch.equal(imgs, before), "return a new tensor; do not change the input"
lib = A.GaussianNoise(0.1)(imgs.clone(), generator=torch.Generator().manual_seed(3))
assert torch.allclose(mine, lib, atol=1e-6), "draw torch.randn(x.shape, generator=generator) once, scale by std, add, clamp"
assert torch.equal(mine, add_gaussian_noise(imgs, 0.1, torch.Generator().manual_seed(3))), "draw from the generator"
assert not torch.equal(mine, add_gaussian_noise(imgs, 0.1, torch.Generator().manual_seed(4))), "a new seed, new noise"
twins = add_gaussian_noise(grey[:2], 0.1, torch.Generator().manual_seed(5))
assert not torch.equal(twins[0], twins[1]), "two identical images must get different noise"
levels = torch.tensor([0.0, 0.05, 0.1, 0.2])
per_image = add_gaussian_noise(torch.full((4, 1, 64, 64), 0.5), levels, torch.Generator().manual_seed(6))
assert per_image.shape == (4, 1, 64, 64), "a (N,) std gives one level per image, not a bigger tensor"
got = (per_image - 0.5).flatten(1).std(1)
assert torch.equal(per_image[0], torch.full((1, 64, 64), 0.5)), "image 0 has std 0: it must stay unchanged"
assert torch.allclose(got[1:], levels[1:], rtol=0.1), f"per-image levels {levels.tolist()}, measured {got.tolist()}"
assert add_gaussian_noise(torch.ones(8, 1, 4, 4), 0.5, torch.Generator().manual_seed(7)).max() == 1, "clamp at 1"
### END HIDDEN TESTS

# %%
few = train.images[show[::4]].float() / 255  # one image of each class
mine = add_gaussian_noise(few, 0.1, torch.Generator().manual_seed(SEED))
lib = AUGMENTATIONS["noise std 0.1"](few.clone(), generator=torch.Generator().manual_seed(SEED))
rep = AUGMENTATIONS["report's noise (0.1² = 0.01)"](few.clone(), generator=torch.Generator().manual_seed(SEED))
flat = torch.full((1, 1, 100, 100), 0.5)
print(f"'std 0.1' noise, standard deviation of the change: yours {(mine - few).std():.4f}, library's "
      f"{(lib - few).std():.4f} (the same noise: {torch.allclose(mine, lib, atol=1e-6)}), report's {(rep - few).std():.4f}")
print(f"on a mid-grey image, where clamping never acts: yours "
      f"{(add_gaussian_noise(flat, 0.1, torch.Generator().manual_seed(SEED)) - 0.5).std():.4f}; "
      "on clothes the clamp at 0 swallows half the noise of the black background")
levels = torch.linspace(0, 0.4, len(few))
plots.augmentation_gallery(few, {"yours, std 0.1": lambda x, generator=None: add_gaussian_noise(x, 0.1, generator),
                                 "yours, std 0.01": lambda x, generator=None: add_gaussian_noise(x, 0.01, generator),
                                 "std 0 → 0.4 per image": lambda x, generator=None: add_gaussian_noise(x, levels, generator)},
                           generator=torch.Generator().manual_seed(SEED))
plt.show()

# %% [markdown]
# ## Try it: the strength of every transform
# One slider per transform of `course_lib.augment` (0 turns it off; hover a slider for
# what 1 means); the gallery shows the same ten images, one per class, under each active
# transform and under all of them together, and updates as you move a slider. Try
# Gaussian noise at 0.05 (std 0.015, near the report's 0.01) and at 0.35 (std 0.105,
# near the 0.1 it meant); rotation at 1 (±90°) and vertical flip at 1 on the sandal,
# sneaker and ankle boot (images 6, 8 and 10): would the test set ever show such a
# shoe? And how much cutout or erasing can a trouser take before it no longer looks
# like one? **random draw** changes the random parameters. Headless runs (papermill,
# grading) skip this cell.

# %%
# NBVAL_SKIP
if INTERACTIVE:
    from course_lib.widgets import augmentation_panel

    panel = augmentation_panel(train.images[show[::4]], n_images=10,
                               strengths={"gaussian noise": 0.35, "crop": 0.3}, seed=SEED)
    display(panel)

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

# %% [markdown]
# ### Exercise 2 (2 points): the L1 / L2 penalty term
# Write `weight_penalty(model, l1=0.0, l2=0.0)` returning `l1 · Σ|w| + l2 · Σw²`, the
# sums running over the `weight` of every `nn.Linear` and `nn.Conv2d` module of the
# model (`model.modules()` walks through nested blocks; `isinstance` picks the layers).
# Biases are left alone: a bias only shifts a unit's output and shrinking it towards
# zero does not make the function simpler; so are BatchNorm's scales (they are
# *also* called `weight`, which is why filtering `named_parameters()` by name is
# wrong). Return a 0-d tensor that stays connected to the weights, so that
# `(loss + weight_penalty(model, l2=1e-4)).backward()` pulls them towards zero; with both
# coefficients 0 the result is 0. The cell after the tests measures the two terms of
# the ablation's +L2 and +L1 arms against the cross-entropy at initialisation.

# %% grade_id="fmnist_penalty_solution" solution=true
def weight_penalty(model, l1=0.0, l2=0.0):
    """l1 * sum|w| + l2 * sum w**2 over the weights of the Linear and Conv2d layers (no biases, no norm layers)."""
    ### BEGIN SOLUTION
    total = torch.zeros(())
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            w = module.weight
            total = total + l1 * w.abs().sum() + l2 * w.pow(2).sum()
    return total
    ### END SOLUTION

# %% grade_id="fmnist_penalty_tests" points=2 tags=["graded"]
tiny = torch.nn.Linear(2, 2)
with torch.no_grad():
    tiny.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, -4.0]]))
    tiny.bias.fill_(10.0)
assert abs(float(weight_penalty(tiny, l1=1.0)) - 10.0) < 1e-5, "L1: |1| + |-2| + |3| + |-4| = 10 (biases excluded)"
assert abs(float(weight_penalty(tiny, l2=1.0)) - 30.0) < 1e-5, "L2: 1 + 4 + 9 + 16 = 30 (squares, biases excluded)"
assert abs(float(weight_penalty(tiny, l1=0.5, l2=0.1)) - 8.0) < 1e-5, "both: 0.5 * 10 + 0.1 * 30 = 8"
assert float(weight_penalty(tiny)) == 0.0, "with both coefficients 0 the penalty is 0"
### BEGIN HIDDEN TESTS
from course_lib.models import FashionCNN, l1_penalty, l2_penalty

out = weight_penalty(tiny, l1=0.5, l2=0.1)
assert isinstance(out, torch.Tensor) and out.ndim == 0, "return a 0-d tensor (not a float): it is added to the loss"
assert out.requires_grad, "the penalty must stay connected to the weights (no .item(), no torch.tensor(...), no no_grad)"
out.backward()
assert torch.allclose(tiny.weight.grad, 0.5 * tiny.weight.detach().sign() + 0.2 * tiny.weight.detach()), "gradient"
assert tiny.bias.grad is None or not tiny.bias.grad.any(), "biases are not penalised"
torch.manual_seed(0)
net = FashionCNN(1, 10, 28, widths=(4, 8), hidden=16, batchnorm=True)
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.weight.fill_(5.0)
            m.bias.fill_(5.0)
params_before = [p.detach().clone() for p in net.parameters()]
want = 1e-3 * l1_penalty(net) + 1e-2 * l2_penalty(net)
got = weight_penalty(net, l1=1e-3, l2=1e-2)
assert torch.allclose(got, want, rtol=1e-5), f"nested CNN with BatchNorm: expected {want.item():.6f}, got {float(got):.6f} " \
    "(conv and linear weights only; BatchNorm's weight is not penalised)"
assert all(torch.equal(a, b) for a, b in zip(params_before, net.parameters())), "do not change the model"
conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten())
assert torch.allclose(weight_penalty(conv, l2=1.0), conv[0].weight.pow(2).sum()), "conv kernels are weights too"
### END HIDDEN TESTS

# %%
from course_lib.regularization import build_model, penalty

L2_COEF, L1_COEF = 1e-4, 1e-5  # the +L2 and +L1 arms below
seed_everything(SEED)
dropout = Setting("cnn", augment=True, batchnorm=True, dropout=0.25)
fresh = build_model(dropout).eval()  # the +dropout arm's network, untrained
xb = (train.images[:256].float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
with torch.no_grad():
    ce = torch.nn.functional.cross_entropy(fresh(xb), train.labels[:256]).item()
    for name, kw in (("+L2", {"l2": L2_COEF}), ("+L1", {"l1": L1_COEF})):
        yours = float(weight_penalty(fresh, **kw))
        library = float(penalty(dataclasses.replace(dropout, **kw))(fresh))
        print(f"{name}: penalty {yours:.4f} (library's, what train_setting adds: {library:.4f}) = "
              f"{100 * yours / ce:.1f} % of the initial cross-entropy {ce:.3f}")
print(f"{sum(m.weight.numel() for m in fresh.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))} "
      "penalised weights; the penalties grow as the weights do, while the cross-entropy falls")

# %%
ARMS = {
    "baseline MLP": Setting("mlp"),
    "+augmentation": Setting("mlp", augment=True),
    "+conv": Setting("cnn", augment=True),
    "+BN": Setting("cnn", augment=True, batchnorm=True),
    "+dropout": dropout,
    "+L2": dataclasses.replace(dropout, l2=L2_COEF),
    "+L1": dataclasses.replace(dropout, l1=L1_COEF),
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
# ## Try it: dropout, augmentation and the learning rate, one short run at a time
# Each **Run** trains a fresh BatchNorm CNN (the `+BN` arm's network) on a few hundred
# training images for a few epochs -- seconds on a laptop CPU -- and draws its training
# and validation curves live; the last runs stay on the plot in grey. Try dropout 0
# against 0.5 on 300 images: does the gap between the training and validation curves
# shrink? Then the augmentation slider (random rotation, shift and zoom) at 0 and at 1,
# and a learning rate of 1e-4 against 0.1. Every run starts from the same initial
# weights, so the differences you see come from the settings you changed. Headless runs
# (papermill, grading) skip this cell.

# %%
# NBVAL_SKIP
if INTERACTIVE:
    from course_lib.widgets import training_panel

    panel = training_panel(train, val, lambda dropout=0.0: build_model(dataclasses.replace(cnn_bn, dropout=dropout)),
                           lr=3e-3, batch_size=64, epochs=3, n_train=min(300, len(train)), max_epochs=10,
                           n_val=500, device=device, seed=SEED)
    display(panel)

# %% [markdown]
# ## The best model, trained once at full length
# The arm with the highest validation mean is retrained on the whole training split for
# longer (`best_epochs` of the profile: in `quick`, 12 epochs, about as many as fit the
# course's budget of 5 minutes of training on a 2-core CPU).
# Whether to average its predictions over several views of each image (test-time
# augmentation: the image and its mirror, or the image and four copies shifted by one
# pixel -- the test-time twin of the random-crop augmentation) is decided on validation
# accuracy too. Then, once, the test set.

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
TTA = {"plain": best.model, "flip-averaged": FlipAverage(best.model), "shift-averaged": ShiftAverage(best.model)}
val_tta = {name: (predict(m, val_loader)[0].argmax(1) == val.labels).float().mean().item() for name, m in TTA.items()}
use_tta = max(val_tta, key=lambda name: (val_tta[name], name == "plain"))  # ties: no test-time augmentation
final_model = TTA[use_tta]
print("validation accuracy: " + ", ".join(f"{name} {acc:.4f}" for name, acc in val_tta.items()) + f" -> {use_tta}")

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
#
# The regrouping itself is one tensor: `mapping[k]` is the superclass of class `k`.

# %%
# NBVAL_CHECK_OUTPUT
mapping, SUPER = group_index(FASHION_SUPERCLASSES, CLASSES)
print("mapping =", mapping.tolist())
for k, c in enumerate(CLASSES):
    print(f"  {k} {c:<12} -> {int(mapping[k])} {SUPER[int(mapping[k])]}")

# %% [markdown]
# ### Exercise 3 (2 points): superclass labels and the balanced accuracy
# Write two functions.
#
# - `to_superclasses(labels, mapping)`: the superclass of every example, for class
#   labels `(N,)` and the `mapping` above -- one indexing operation, no loop, no dict.
#   It works for predicted classes just as well as for true ones.
# - `my_balanced_accuracy(labels, preds)`: for every class that occurs in `labels`
#   (`labels.unique()`), its *recall* -- the fraction of its examples that `preds` gets
#   right; return the mean of these recalls as a Python float. A class that occurs only
#   in `preds` has no recall and does not count. A loop over the classes (three here) is
#   fine.
#
# With superclasses of sizes 5 : 1 : 4 the plain accuracy rewards ignoring the small
# class; the balanced accuracy gives each superclass the same say. The cell after the
# tests regroups the best model's ten-class test predictions with your functions and
# shows what a model that never answers "Bottom" scores on each measure.

# %% grade_id="fmnist_superclass_solution" solution=true
def to_superclasses(labels, mapping):
    """Superclass index of every label: mapping[k] is the superclass of class k."""
    ### BEGIN SOLUTION
    return mapping[labels.long()]
    ### END SOLUTION


def my_balanced_accuracy(labels, preds):
    """Mean over the classes present in labels of the fraction of their examples predicted right."""
    ### BEGIN SOLUTION
    recalls = [(preds[labels == c] == c).float().mean() for c in labels.unique()]
    return torch.stack(recalls).mean().item()
    ### END SOLUTION

# %% grade_id="fmnist_superclass_tests" points=2 tags=["graded"]
assert to_superclasses(torch.tensor([0, 1, 5, 9]), mapping).tolist() == [0, 1, 2, 2], \
    "T-shirt/top -> Top (0), Trouser -> Bottom (1), Sandal and Ankle boot -> Accessories (2)"
toy_true, toy_pred = torch.tensor([0, 0, 0, 0, 1, 2, 2]), torch.tensor([0, 0, 0, 0, 0, 2, 0])
assert abs(my_balanced_accuracy(toy_true, toy_pred) - 0.5) < 1e-6, "recalls 4/4, 0/1 and 1/2: their mean is 0.5"
sizes = torch.tensor([0] * 50 + [1] * 10 + [2] * 40)  # the superclasses' 5 : 1 : 4
assert abs(my_balanced_accuracy(sizes, torch.zeros(100, dtype=torch.long)) - 1 / 3) < 1e-6, \
    "always answering 'Top' is right on half the examples but recalls one class in three: 1/3"
### BEGIN HIDDEN TESTS
from course_lib.superclasses import regroup_labels

before = train.labels.clone()
mine = to_superclasses(train.labels, mapping)
assert torch.equal(train.labels, before), "do not change the labels"
assert mine.dtype == torch.int64 and mine.shape == train.labels.shape, "int64 superclass labels, one per example"
assert torch.equal(mine, regroup_labels(train.labels, FASHION_SUPERCLASSES, CLASSES)[0]), "differs from the library's"
assert isinstance(my_balanced_accuracy(toy_true, toy_pred), float), "return a Python float (.item())"
assert my_balanced_accuracy(toy_true, toy_true) == 1.0, "perfect predictions: balanced accuracy 1"
assert abs(my_balanced_accuracy(torch.tensor([0, 7, 7, 7]), torch.tensor([0, 7, 0, 3])) - (1 + 1 / 3) / 2) < 1e-6, \
    "only the classes present in labels count (here 0 and 7), whatever their numbers"
gen = torch.Generator().manual_seed(8)
for trial in range(5):
    y = torch.multinomial(torch.tensor([0.6, 0.05, 0.35, 0.0]), 300, replacement=True, generator=gen)
    p = torch.where(torch.rand(300, generator=gen) < 0.7, y, torch.randint(0, 4, (300,), generator=gen))
    assert abs(my_balanced_accuracy(y, p) - balanced_accuracy(y, p)) < 1e-6, \
        f"differs from scikit-learn's balanced accuracy (trial {trial}; class 3 occurs only in preds)"
### END HIDDEN TESTS

# %%
s_true, s_fine = to_superclasses(labels, mapping), to_superclasses(best_preds, mapping)
never_bottom = s_fine.masked_fill(s_fine == SUPER.index("Bottom"), SUPER.index("Top"))
print(f"test images per superclass: {dict(zip(SUPER, torch.bincount(s_true, minlength=3).tolist()))}")
for name, p in ((f"{best_name}, 10-class prediction regrouped", s_fine), ("the same, but never 'Bottom'", never_bottom)):
    print(f"{name:<44} accuracy {(p == s_true).float().mean():.4f}  balanced: yours {my_balanced_accuracy(s_true, p):.4f}"
          f", library {balanced_accuracy(s_true, p):.4f}")

# %%
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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
    "best_uses_flip_tta": use_tta == "flip-averaged",
    "best_uses_shift_tta": use_tta == "shift-averaged",
    "best_val_acc_tta": val_tta[use_tta],
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
                     f"test-time augmentation: {use_tta}; everything chosen on validation",
    "best_train_seconds": f"wall time of the best model's training; load average {os.getloadavg()[0]:.1f}",
    "best_train_idle_estimate_seconds": "CPU seconds of the training / torch threads",
    "superclass_balanced_acc": "best model's penultimate features + class-weighted logistic regression head",
    "ablation_baseline_mlp_mean": f"validation accuracy; {SWEEP}",
    "aug_none_mean": f"BatchNorm CNN, validation accuracy; {SWEEP}",
})
