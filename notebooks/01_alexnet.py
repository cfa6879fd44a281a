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
# # 01 · AlexNet on small images
#
# **What the student report set out to do.** Replicate Krizhevsky, Sutskever & Hinton
# (2012), *ImageNet Classification with Deep Convolutional Neural Networks*, on a laptop.
#
# **What it got.** It first tried ImageNet downsampled to 16 × 16 px and hit layers whose
# outputs "zeroed out" (the spatial size fell below one pixel). It fell back to CIFAR-10
# with a Keras model of about 59 M parameters, almost all of them in the first dense
# layer. It never got the PCA colour augmentation working, and it reported top-3, top-4
# and top-5 accuracy (91 %, 95 %, 97 %) but not top-1.
#
# **This notebook** teaches the architecture and its training recipe, shows exactly where
# the spatial size of the original network goes below zero on small images, builds an
# AlexNet scaled to the input size (2.5 M parameters on CIFAR-10), evaluates it with
# top-1 to top-5, per-class accuracy and a confusion matrix, and measures which of the
# paper's ingredients matter, over several seeds. Every choice is made on a validation
# split; the test set is used once, at the end.

# %% tags=["parameters"]
PROFILE = "quick"      # smoke | quick | full
INTERACTIVE = True     # False under papermill / grading: no widgets
SEED = 0
DATASET = "cifar10"    # cifar10 | cifar100 | imagenet16 | imagenet32
RETRAIN = None         # None = the profile's default; True = train the headline model here instead of loading it
ABLATION_EPOCHS = None     # None = the profile's default
ABLATION_PER_CLASS = None  # training images per class in each ablation run (None = the profile's default)
ABLATION_SEEDS = None      # e.g. [0, 1, 2]
ABLATION_WIDTH = None      # channel multiplier of the ablation's AlexNet (None = the profile's default)
LRN_LR_GRID = None         # e.g. [0.03, 0.01, 0.003]: choose the LRN arm's learning rate again, on validation

# %%
import time
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from course_lib import augment as A
from course_lib import plots
from course_lib.ablation import ablation_metrics, ablation_rows, format_ablation, run_ablation
from course_lib.checkpoints import load_or_train
from course_lib.data import channel_stats, few_label_subset, load_dataset, stratified_split
from course_lib.loader import TensorLoader
from course_lib.metrics import confusion_matrix, format_mean_std, per_class_accuracy, topk_accuracy
from course_lib.models import (ORIGINAL, PAPER_227, TORCHVISION, AlexNet, alexnet_plan, alexnet_shape_walk, count_params,
                               first_invalid_layer, format_layer_table, format_shape_walk, layer_table)
from course_lib.profiles import from_env, resolve
from course_lib.recipes import (ALEXNET_CIFAR10, alexnet_config, alexnet_for, alexnet_run, alexnet_transform,
                               evaluate_topk, train_classifier)
from course_lib.results import save_results
from course_lib.train import History, get_device, predict, seed_everything
from course_lib.tta import FlipAverage

PROFILE, INTERACTIVE = from_env(PROFILE, INTERACTIVE)  # $COURSE_PROFILE / $COURSE_INTERACTIVE win (nbval)
cfg = resolve(PROFILE, {
    # smoke: seconds; tiny subsets, the shipped checkpoint (or a 1-epoch model), a 1-epoch ablation
    "smoke": {"retrain": False, "headline_epochs": 1, "subset_per_class": 20,
              "ablation_epochs": 1, "ablation_per_class": 20, "ablation_seeds": [0, 1, 2], "ablation_width": 0.25},
    # quick: real data; the headline model comes from checkpoints/, the ablation is shortened
    # (a half-width net, 3x cheaper per image, on 8000 images for 4 epochs)
    "quick": {"retrain": False, "headline_epochs": ALEXNET_CIFAR10.epochs, "subset_per_class": None,
              "ablation_epochs": 4, "ablation_per_class": 800, "ablation_seeds": [0, 1, 2], "ablation_width": 0.25},
    # full: for a GPU; retrain the headline model and run the ablation on all 45 k images
    "full": {"retrain": True, "headline_epochs": 60, "subset_per_class": None,
             "ablation_epochs": 30, "ablation_per_class": None, "ablation_seeds": [0, 1, 2, 3, 4],
             "ablation_width": alexnet_config()["width"]},
}, retrain=RETRAIN, ablation_epochs=ABLATION_EPOCHS, ablation_per_class=ABLATION_PER_CLASS,
   ablation_seeds=ABLATION_SEEDS, ablation_width=ABLATION_WIDTH)
device = get_device()
seed_everything(SEED)
notebook_t0 = time.perf_counter()
print(f"profile={PROFILE} dataset={DATASET} device={device} settings={cfg}")

# %% [markdown]
# ## The architecture in one page
#
# AlexNet is **5 convolutional layers followed by 3 fully connected (FC) layers**:
#
# | layer | paper (224 px ImageNet) | why |
# |---|---|---|
# | conv1 | 96 filters 11 × 11, stride 4 | a strided stem throws resolution away early: cheap |
# | pool1, pool2, pool5 | max-pool 3 × 3, stride 2 (*overlapping*: z = 3 > s = 2) | the paper reports overlapping pools overfit slightly less |
# | conv2 | 256 filters 5 × 5 | |
# | conv3-5 | 384, 384, 256 filters 3 × 3 | |
# | after conv1 and conv2 | ReLU, then **local response normalisation** (LRN: each activation divided by the energy of its 5 neighbouring channels) | ReLUs are unbounded; LRN made them compete. Today BatchNorm does this job |
# | fc6, fc7 | 4096 units each, ReLU, **dropout 0.5** before each | the FC layers hold most parameters and overfit without dropout |
# | fc8 | 1000 units, softmax | |
#
# **Training** (section 5 of the paper): SGD with momentum 0.9, weight decay 5e-4, batch
# 128, learning rate 0.01 divided by 10 whenever the validation error stopped improving
# (three times in 90 epochs). **Augmentation**: random 224 px crops of the 256 px images
# with horizontal flips, and **PCA lighting** ("fancy PCA"): compute the 3 × 3 covariance
# of the RGB values of all training pixels and its eigenvectors $p_i$ and eigenvalues
# $\lambda_i$; for each image draw $\alpha_i \sim N(0, 0.1)$ and add
# $[p_1, p_2, p_3]\,[\alpha_1\lambda_1, \alpha_2\lambda_2, \alpha_3\lambda_3]^T$ to every
# pixel. At test time the paper averaged the softmax over 10 views (4 corner crops, the
# centre and their mirror images).
#
# `course_lib.models.AlexNet` builds this network for any input size and width.

# %% [markdown]
# ## The shape walk: where the original goes below zero
#
# Each convolution or pooling window maps a side of $n$ pixels to
# $\lfloor (n + 2p - k)/s \rfloor + 1$. `alexnet_shape_walk` applies this formula to the
# original layers without building a network. At 224 px the sizes are the paper's
# 55 → 27 → 13 → 6; at 32 px and 16 px they run out.

# %%
# NBVAL_CHECK_OUTPUT
for size in (224, 32, 16):
    print(f"\n=== the original AlexNet (torchvision padding) on {size} x {size} inputs ===")
    print(format_shape_walk(alexnet_shape_walk(size, ORIGINAL)))
print("\n=== the same layers with Keras 'valid' padding everywhere, on 16 x 16 inputs ===")
print(format_shape_walk(alexnet_shape_walk(16, PAPER_227)))

# %% [markdown]
# On 16 px images the 11 × 11 stride-4 stem leaves a 3 × 3 map (2 × 2 with Keras' `valid`
# padding), and the next 3 × 3 pooling window no longer fits: the "zeroed out" layers of
# the report. On 32 px the network survives until pool5.
#
# ### Exercise 1 (2 points): the shape walk, by hand
# Write `shape_walk(input_size, layers)`. `layers` is a list of `(name, kernel, stride,
# padding)` tuples, the convolution and pooling layers in order (the cell below builds
# them from the library's layer lists). Starting from a side of `input_size` pixels, apply
# $\lfloor (n + 2p - k)/s \rfloor + 1$ layer after layer and return `(sides, first_bad)`:
# `sides` is the list of output sides, one Python `int` per layer (keep computing after a
# side drops below 1, as the arithmetic would), and `first_bad` is the name of the first
# layer whose output side is `<= 0`, or `None` if every layer keeps at least 1 × 1.
# Mind the floor: $\lfloor -0.5 \rfloor = -1$, so use Python's floor division `//`;
# `int(a / b)` rounds towards zero and would let a 3 × 3 window "fit" on a 2 × 2 map.
# The cell after the tests uses your function to find the smallest input the original
# network accepts, and the layer where the report's 16 px network breaks.

# %%
def as_tuples(layer_specs):
    """(name, kernel, stride, padding) of the conv and pooling layers of a library layer list."""
    return [(l.name, l.kernel, l.stride, l.padding) for l in layer_specs if l.kind in ("conv", "pool")]


KERAS_VALID = as_tuples(PAPER_227)   # the report's Keras model: padding 'valid' everywhere
PAPER = as_tuples(ORIGINAL)          # the paper's sizes (conv1 padding 2)
print("Keras 'valid' layers:", KERAS_VALID)

# %% grade_id="alexnet_walk_solution" solution=true
def shape_walk(input_size, layers):
    """Output side after each (name, kernel, stride, padding) layer, and the first layer whose side is <= 0."""
    ### BEGIN SOLUTION
    sides, first_bad, n = [], None, int(input_size)
    for name, kernel, stride, padding in layers:
        n = (n + 2 * padding - kernel) // stride + 1
        sides.append(n)
        if first_bad is None and n <= 0:
            first_bad = name
    return sides, first_bad
    ### END SOLUTION

# %% grade_id="alexnet_walk_tests" points=2 tags=["graded"]
sides224, bad224 = shape_walk(224, PAPER)
assert sides224 == [55, 27, 27, 13, 13, 13, 13, 6], f"the paper's 224 px sizes are 55, 27, 27, 13, 13, 13, 13, 6; got {sides224}"
assert bad224 is None, "at 224 px every layer keeps at least 1 x 1: first_bad must be None"
sides16, bad16 = shape_walk(16, KERAS_VALID)
assert sides16[:2] == [2, 0], (f"16 px, Keras 'valid': conv1 gives (16 - 11) // 4 + 1 = 2, pool1 (2 - 3) // 2 + 1 = 0; "
                               f"got {sides16[:2]} (floor division: -1 // 2 is -1)")
assert bad16 == "pool1", f"the 16 px Keras network breaks at pool1, got {bad16!r}"
### BEGIN HIDDEN TESTS
assert len(sides16) == len(KERAS_VALID), "one side per layer, also after the walk has become invalid"
assert sides16 == [2, 0, 0, -1, -1, -1, -1, -1], f"keep applying the formula after the first bad layer; got {sides16}"
assert all(type(v) is int for v in sides16), "return plain Python ints"
assert shape_walk(5, [("c", 5, 1, 0)]) == ([1], None), "a 5 x 5 window on a 5 x 5 input leaves 1 x 1, which is still valid"
assert shape_walk(4, [("c", 5, 1, 0)]) == ([0], "c"), "a side of 0 is already invalid (<= 0)"
assert shape_walk(2, [("p", 3, 2, 0), ("q", 3, 2, 0)]) == ([0, -1], "p"), "report the FIRST bad layer, not the last"
assert shape_walk(7, [("a", 3, 2, 1), ("b", 3, 2, 1)]) == ([4, 2], None), "padding counts on both sides: n + 2p"
assert shape_walk(9, []) == ([], None), "no layers: no sides, nothing invalid"
for specs in (ORIGINAL, PAPER_227, TORCHVISION):
    for px in (1, 15, 16, 31, 32, 62, 63, 64, 66, 67, 100, 224, 227):
        lib_walk = alexnet_shape_walk(px, specs)
        got = shape_walk(px, as_tuples(specs))
        assert got[0] == [r["out_size"] for r in lib_walk if r["kind"] in ("conv", "pool")], f"{px} px: sides differ"
        assert got[1] == first_invalid_layer(lib_walk), f"{px} px: the first bad layer differs"
### END HIDDEN TESTS

# %%
for name, layers, specs in (("paper, conv1 padding 2", PAPER, ORIGINAL), ("Keras 'valid'", KERAS_VALID, PAPER_227)):
    smallest = next(px for px in range(1, 512) if shape_walk(px, layers)[1] is None)
    print(f"{name}: the smallest input that survives is {smallest} x {smallest} px "
          f"(sides {shape_walk(smallest, layers)[0]})")
    for px in (16, 32):
        print(f"  {px} px breaks at {shape_walk(px, layers)[1]} (library: {first_invalid_layer(alexnet_shape_walk(px, specs))})")

# %% [markdown]
# **Where the 59 M parameters came from.** The first FC layer has
# $C_5 \cdot S^2 \cdot 4096$ weights, where $S$ is the side of the last feature map. The
# report does not list its layers, but the full-size network with a 10-way output (the
# paper's layers, $S = 6$) lands at the report's size:

# %%
# NBVAL_CHECK_OUTPUT
walk10 = alexnet_shape_walk(224, ORIGINAL, num_classes=10)
total10 = sum(r["params"] for r in walk10)
fc6_10 = next(r["params"] for r in walk10 if r["layer"] == "fc6")
print(f"full-size AlexNet, 10 classes: {total10 / 1e6:.1f} M parameters; fc6 alone {fc6_10 / 1e6:.1f} M "
      f"({100 * fc6_10 / total10:.0f} %), all conv layers {sum(r['params'] for r in walk10 if r['kind'] == 'conv') / 1e6:.1f} M")
for side in (1, 2, 4, 6, 8):
    print(f"  last map {side} x {side} x 256 -> fc6 with 4096 units: {(256 * side * side * 4096 + 4096) / 1e6:5.1f} M weights")

# %% [markdown]
# ## The scaled design
#
# `AlexNet(input_size=...)` keeps the layer sequence and changes only what the input size
# forces: below 128 px the stem is 5 × 5 with stride 1 (< 32 px), 2 (32-63 px) or 4, and
# every pool gets padding 1, so a pool halves the side (rounding up) and never drops it
# below 1. The final map is 2 × 2, so the first FC layer stays small. `width` scales all
# channels; the headline model uses width 0.5 (48-128-192-192-128 channels, FC 1024),
# BatchNorm instead of LRN and no dropout (the ablation below measures both choices).

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for size, classes, kw in ((224, 1000, {"width": 1.0, "norm": "lrn"}), (32, 10, {}), (32, 1000, {}), (16, 1000, {})):
    kw = {**alexnet_config(size), **kw}
    net = AlexNet(num_classes=classes, **kw)
    fc6 = net.classifier.fc6.weight.numel() + net.classifier.fc6.bias.numel()
    sides = " -> ".join(str(r["out_size"]) for r in alexnet_plan(size, net.stem) if r["layer"] not in ("conv4", "conv5"))
    rows.append((size, classes, net.stem, kw["width"], sides, count_params(net), fc6))
print(f"{'input':>5} {'classes':>7} {'stem':>8} {'width':>5}  {'sides after conv1 pool1 conv2 pool2 conv3/5 pool5':<52}"
      f"{'params':>12} {'fc6 share':>9}")
for size, classes, stem, width, sides, n, fc6 in rows:
    print(f"{size:>5} {classes:>7} {stem:>8} {width:>5}  {sides:<52}{n:>12,} {100 * fc6 / n:>8.0f}%")

# %%
# NBVAL_CHECK_OUTPUT
train_full = load_dataset(DATASET, "train")
test = load_dataset(DATASET, "test")
num_classes, size = len(train_full.classes), train_full.images.shape[-1]
model = alexnet_for(train_full)
print(format_layer_table(layer_table(model, tuple(train_full.images.shape[1:])), model))

# %% [markdown]
# ## The data and a validation split
#
# 10 % of the training images, stratified by class, are held out for every decision
# (split seed 0, the split the reference checkpoint was trained with, so its validation
# images were never trained on).

# %%
train_idx, val_idx = stratified_split(train_full.labels, val_fraction=0.1, seed=0)
train, val = train_full.subset(train_idx), train_full.subset(val_idx)
if cfg["subset_per_class"]:  # smoke: small class-balanced subsets
    n = cfg["subset_per_class"]
    train = train.subset(few_label_subset(train.labels, n, seed=SEED))
    val = val.subset(few_label_subset(val.labels, n, seed=SEED))
    test = test.subset(few_label_subset(test.labels, n, seed=SEED))
mean, std = channel_stats(train)
normalize = (mean.tolist(), std.tolist())
print(f"{DATASET}: train {len(train)} · validation {len(val)} · test {len(test)} · {num_classes} classes · {size} px")
plots.image_grid(train.images[:16], train.labels[:16], train.classes, ncols=16, title="training images")
plt.show()

# %% [markdown]
# ## Fancy PCA, working
#
# The eigen-decomposition of the RGB covariance of the training pixels (in [0, 1] units).
# For natural images the first eigenvector weights R, G and B about equally: moving along
# it changes the brightness; the others shift the colour balance. With the paper's
# $\sigma = 0.1$ the shift is small (printed below), so the gallery also shows
# $\sigma = 0.5$ to make it visible.

# %%
eigvals, eigvecs = A.pca_lighting_from_data(train.images)
print("eigenvalues:", [f"{v:.4f}" for v in eigvals.tolist()])
print("eigenvectors (columns):\n", np.array2string(eigvecs.numpy(), precision=3))
shift = (eigvecs @ (0.1 * eigvals)).abs().max().item()
print(f"a 1-sigma draw (alpha = 0.1 on every axis) shifts a channel by at most {255 * shift:.1f} grey levels")
gen = torch.Generator().manual_seed(SEED)
plots.augmentation_gallery(train.images[:8], {
    "PCA lighting σ=0.1": A.PCALighting(eigvals, eigvecs, alphastd=0.1, clip=True),
    "PCA lighting σ=0.5": A.PCALighting(eigvals, eigvecs, alphastd=0.5, clip=True),
    "crop + flip": A.Compose([A.RandomCrop(size, padding=size // 8, padding_mode="reflect"), A.RandomHorizontalFlip()]),
    "training pipeline": alexnet_transform(train.images, ALEXNET_CIFAR10),
}, generator=gen)
plt.show()

# %% [markdown]
# ### Exercise 2 (2 points): fancy PCA, by hand
# The report never got this augmentation working; here it is one matrix product. Write
# `fancy_pca(x, eigvals, eigvecs, alphastd=0.1, generator=None)` for a float batch `x` of
# shape `(N, 3, H, W)` (values in [0, 1]), the eigenvalues `eigvals` `(3,)` and the
# eigenvectors `eigvecs` `(3, 3)`, **one eigenvector per column**, as printed above:
#
# 1. draw one row of three numbers per image: `alpha = alphastd * torch.randn(N, 3, generator=generator)`
#    (on the CPU, where the generator lives; this exact call makes your draws match the library's);
# 2. the colour added to image $i$ is $[p_1, p_2, p_3]\,[\alpha_{i1}\lambda_1, \alpha_{i2}\lambda_2, \alpha_{i3}\lambda_3]^T$,
#    i.e. `eigvecs @ (alpha[i] * eigvals)`; for all images at once, `(alpha * eigvals) @ eigvecs.T`, shape `(N, 3)`;
# 3. add it to every pixel of image $i$ (reshape to `(N, 3, 1, 1)` and let broadcasting do it).
#
# Return `(out, alpha)`: a new tensor of the dtype and device of `x` (do not clip and do not
# change `x`), and the `(N, 3)` alphas you drew. The cell after the tests compares your
# batch with the library's `PCALighting` drawn from the same seed.

# %% grade_id="alexnet_pca_solution" solution=true
def fancy_pca(x, eigvals, eigvecs, alphastd=0.1, generator=None):
    """AlexNet's PCA lighting: image i gets eigvecs @ (alpha_i * eigvals) added to every pixel."""
    ### BEGIN SOLUTION
    alpha = alphastd * torch.randn(x.shape[0], 3, generator=generator)
    shift = (alpha * eigvals) @ eigvecs.T  # row i: eigvecs @ (alpha_i * eigvals)
    return x + shift.to(device=x.device, dtype=x.dtype).view(-1, 3, 1, 1), alpha
    ### END SOLUTION

# %% grade_id="alexnet_pca_tests" points=2 tags=["graded"]
batch = train.images[:8].float() / 255
out, alpha = fancy_pca(batch, eigvals, eigvecs, 0.1, torch.Generator().manual_seed(0))
assert out.shape == batch.shape and alpha.shape == (8, 3), "return (out, alpha): out like x, alpha (N, 3)"
assert torch.equal(fancy_pca(batch, eigvals, eigvecs, 0.0, torch.Generator().manual_seed(0))[0], batch), \
    "alphastd = 0 must leave the images unchanged"
unit_out, unit_alpha = fancy_pca(batch, torch.ones(3), torch.eye(3), 0.1, torch.Generator().manual_seed(1))
assert torch.allclose(unit_out - batch, unit_alpha.view(-1, 3, 1, 1).expand_as(batch), atol=1e-6), \
    ("with eigvals 1 and eigvecs = identity, image i must be shifted by alpha[i] in R, G and B, at every pixel "
     "(no clipping, and x itself must stay unchanged)")
assert torch.equal(out, fancy_pca(batch, eigvals, eigvecs, 0.1, torch.Generator().manual_seed(0))[0]), \
    "draw alpha from the generator: the same seed must give the same batch"
### BEGIN HIDDEN TESTS
g_hidden = torch.Generator().manual_seed(7)
probe = torch.rand(64, 3, 4, 5, generator=g_hidden)
before = probe.clone()
rot = torch.linalg.qr(torch.randn(3, 3, generator=g_hidden))[0]  # orthonormal and not symmetric
vals = torch.tensor([0.3, 0.05, 0.01])
got, got_alpha = fancy_pca(probe, vals, rot, 0.2, torch.Generator().manual_seed(3))
assert torch.equal(probe, before), "return a new tensor; do not change x"
assert got.dtype == probe.dtype, "keep the dtype of x"
assert torch.allclose(got_alpha, 0.2 * torch.randn(64, 3, generator=torch.Generator().manual_seed(3))), \
    "draw alpha = alphastd * torch.randn(N, 3, generator=generator)"
shift = got - probe
assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6), "every pixel of an image gets the same colour"
want = torch.stack([rot @ (a * vals) for a in got_alpha])
assert torch.allclose(shift[:, :, 0, 0], want, atol=1e-6), \
    "the shift of image i is eigvecs @ (alpha_i * eigvals): eigenvectors are the COLUMNS of eigvecs"
assert len({tuple(v) for v in got_alpha.round(decimals=4).tolist()}) == 64, "each image needs its own alpha"
lib = A.PCALighting(vals, rot, alphastd=0.2)(probe.clone(), torch.Generator().manual_seed(3))
assert torch.allclose(got, lib, atol=1e-6), "with the same seed the batch must equal the library's PCALighting"
bright = torch.ones(4, 3, 2, 2)
assert (fancy_pca(bright, torch.tensor([1.0, 1.0, 1.0]), torch.eye(3), 1.0,
                  torch.Generator().manual_seed(0))[0] > 1).any(), "do not clip the result"
many_alpha = fancy_pca(torch.zeros(4000, 3, 1, 1), vals, rot, 0.1, torch.Generator().manual_seed(5))[1]
assert abs(many_alpha.std().item() - 0.1) < 0.01 and abs(many_alpha.mean().item()) < 0.01, "alpha ~ N(0, alphastd)"
### END HIDDEN TESTS

# %%
mine, mine_alpha = fancy_pca(batch, eigvals, eigvecs, 0.1, torch.Generator().manual_seed(SEED))
library = A.PCALighting(eigvals, eigvecs, alphastd=0.1)(batch.clone(), torch.Generator().manual_seed(SEED))
print(f"your fancy PCA vs the library's PCALighting, same seed: largest difference {(mine - library).abs().max().item():.2e}")
many = fancy_pca(torch.zeros(2000, 3, 1, 1), eigvals, eigvecs, 0.1, torch.Generator().manual_seed(SEED))[0].flatten(1)
print("per-image shift over 2000 draws at sigma = 0.1, in grey levels: std of R, G, B =",
      [f"{v:.2f}" for v in (255 * many.std(0)).tolist()],
      f"; correlation R-G {torch.corrcoef(many.T)[0, 1].item():+.2f}, R-B {torch.corrcoef(many.T)[0, 2].item():+.2f}")
plots.augmentation_gallery(train.images[:8], {"your fancy PCA σ=0.5": lambda x, generator=None: fancy_pca(
    x, eigvals, eigvecs, 0.5, generator)[0].clamp(0, 1)}, generator=torch.Generator().manual_seed(SEED))
plt.show()

# %% [markdown]
# The shift is almost perfectly correlated across R, G and B: most of the variance lies on
# the first eigenvector, so fancy PCA mostly changes the brightness of an image, a little
# its colour balance, never its content.
#
# ### Exercise 3 (2 points): a batched random crop, one offset per image
# The paper cut random 224 × 224 windows out of 256 × 256 images; on 32 px images the same
# idea is *pad and crop*: pad each side by `padding` pixels, then cut an `H × W` window at a
# random offset, so the object shifts by up to `padding` pixels in each direction. Write
# `random_crop(x, padding, generator=None)` for a batch `x` `(N, C, H, W)` (any dtype):
#
# 1. pad with `F.pad(x, (padding, padding, padding, padding), mode="reflect")`;
# 2. draw `offsets = torch.randint(0, 2 * padding + 1, (N, 2), generator=generator)`: column 0 is
#    the top row, column 1 the left column of image $i$'s window in the padded image;
# 3. cut `padded[i, :, top:top + H, left:left + W]` for every image **without a Python loop
#    over the images**: build the row indices `top[:, None] + torch.arange(H)` `(N, H)` and
#    the column indices `(N, W)`, and index `padded` with four broadcastable index tensors
#    (image `(N, 1, 1, 1)`, channel `(1, C, 1, 1)`, rows `(N, 1, H, 1)`, columns `(N, 1, 1, W)`).
#
# Return `(out, offsets)`, `out` of the shape and dtype of `x`. This is how the library's
# `RandomCrop` runs on a whole batch in one indexing operation; the cell after the tests
# shows yours next to it.

# %% grade_id="alexnet_crop_solution" solution=true
def random_crop(x, padding, generator=None):
    """Reflect-pad by `padding`, then cut an H x W window at a random (top, left) per image."""
    ### BEGIN SOLUTION
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding), mode="reflect")
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    top, left = offsets[:, 0].to(x.device), offsets[:, 1].to(x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    images = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channels = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[images, channels, rows, cols], offsets
    ### END SOLUTION

# %% grade_id="alexnet_crop_tests" points=2 tags=["graded"]
batch = train.images[:8].float() / 255
cropped, offsets = random_crop(batch, 4, torch.Generator().manual_seed(0))
assert cropped.shape == batch.shape, f"the crop has the input's shape {tuple(batch.shape)}, got {tuple(cropped.shape)}"
assert offsets.shape == (8, 2) and int(offsets.min()) >= 0 and int(offsets.max()) <= 8, "offsets (N, 2) in [0, 2 * padding]"
padded = F.pad(batch, (4, 4, 4, 4), mode="reflect")
h, w = batch.shape[-2:]
for i in range(4):
    t, l = offsets[i].tolist()
    assert torch.equal(cropped[i], padded[i, :, t:t + h, l:l + w]), f"image {i}: not the window at offset {(t, l)}"
assert torch.equal(random_crop(batch, 0, torch.Generator().manual_seed(0))[0], batch), "padding 0 must give the images back"
### BEGIN HIDDEN TESTS
g_hidden = torch.Generator().manual_seed(11)
probe = torch.rand(64, 2, 6, 9, generator=g_hidden)  # not square, 2 channels
before = probe.clone()
got, got_off = random_crop(probe, 3, torch.Generator().manual_seed(2))
assert torch.equal(probe, before), "return a new tensor; do not change x"
assert got.shape == probe.shape and got.dtype == probe.dtype
assert got_off.shape == (64, 2) and got_off.dtype == torch.int64, "offsets: an int64 tensor (N, 2)"
pad_probe = F.pad(probe, (3, 3, 3, 3), mode="reflect")
for i in range(64):
    t, l = got_off[i].tolist()
    assert torch.equal(got[i], pad_probe[i, :, t:t + 6, l:l + 9]), f"image {i}: wrong window (column 0 = top, column 1 = left)"
assert len({tuple(o) for o in got_off.tolist()}) > 10, "each image needs its own offset"
again, again_off = random_crop(probe, 3, torch.Generator().manual_seed(2))
assert torch.equal(again, got) and torch.equal(again_off, got_off), "draw the offsets from the generator"
spread = random_crop(torch.zeros(500, 1, 4, 4), 2, torch.Generator().manual_seed(4))[1]
assert int(spread.min()) == 0 and int(spread.max()) == 4, "offsets range over 0 .. 2 * padding, both ends included"
assert spread[:, 0].unique().numel() == 5 and spread[:, 1].unique().numel() == 5, "draw top and left independently"
u8 = train.images[:16]
u8_out, u8_off = random_crop(u8, 2, torch.Generator().manual_seed(6))
assert u8_out.dtype == torch.uint8, "keep the dtype (uint8 images stay uint8)"
assert torch.equal(u8_out[3], F.pad(u8, (2, 2, 2, 2), mode="reflect")[3, :, u8_off[3, 0]:u8_off[3, 0] + h,
                                                                 u8_off[3, 1]:u8_off[3, 1] + w]), "uint8 windows differ"
### END HIDDEN TESTS

# %%
crop_pad = size // 8
plots.augmentation_gallery(train.images[:8], {
    f"your crop, pad {crop_pad}": lambda x, generator=None: random_crop(x, crop_pad, generator)[0],
    f"library RandomCrop, pad {crop_pad}": A.RandomCrop(size, padding=crop_pad, padding_mode="reflect"),
}, generator=torch.Generator().manual_seed(SEED))
plt.show()
_, many_offsets = random_crop(torch.zeros(4000, 1, size, size), crop_pad, torch.Generator().manual_seed(SEED))
shift_counts = torch.bincount(many_offsets[:, 1], minlength=2 * crop_pad + 1)  # left offset 0 = shifted right by crop_pad
print(f"horizontal shift of 4000 crops, -{crop_pad} .. +{crop_pad} px:", shift_counts.tolist())

# %% [markdown]
# ## The headline model
#
# The recipe (`course_lib.recipes.ALEXNET_CIFAR10`): the paper's SGD with momentum 0.9 and
# weight decay 5e-4 and its augmentation (crops, flips, PCA lighting); for a 10-minute CPU
# budget a one-cycle learning-rate schedule instead of "divide by 10 on a plateau",
# Nesterov momentum, batch 256, label smoothing 0.1, 13 epochs, and **no dropout**: on
# this short schedule the small network underfits rather than overfits (training and
# validation accuracy stay close together in the curves below), and an otherwise
# identical run with dropout 0.5 ended lower on validation; the ablation puts dropout
# back, over several seeds, to measure it. Training takes about 9.5 minutes on this
# 2-core machine (570 s with 2 threads), so the `quick` profile loads the reference checkpoint made by
# `course pretrain alexnet-cifar10`; `RETRAIN=True` (or the `full` profile, or another
# `DATASET`) trains it here.

# %%
recipe = replace(ALEXNET_CIFAR10, epochs=cfg["headline_epochs"])
trained_here = []


def train_headline(m):
    trained_here.append(True)
    return alexnet_run(m, train, val, recipe, seed=SEED, device=device, normalize=normalize)


seed_everything(SEED)
model, meta = load_or_train(
    f"alexnet-{DATASET}", alexnet_for(train), train_headline, profile=PROFILE, retrain=cfg["retrain"],
    metadata={"model_config": {"num_classes": num_classes, "in_channels": 3, **alexnet_config(size)}})
model.to(device)
from_checkpoint = not trained_here
normalize = (meta["normalize"]["mean"], meta["normalize"]["std"])  # the statistics it was trained with
train_seconds = float(meta["train_seconds"])
if from_checkpoint:
    print(f"Headline model LOADED from a checkpoint, trained by `{meta['command']}` at commit {meta['git_commit']}: "
          f"{meta['epochs']} epochs, {train_seconds:.0f} s of training with {meta.get('torch_threads')} torch thread(s) "
          f"on a {meta['machine']['cpu_count']}-CPU machine "
          f"({meta.get('cpu_time_s', float('nan')):.0f} s CPU time; load average "
          f"{meta.get('load_average_before')} -> {meta.get('load_average_after')}).")
else:
    print(f"Headline model TRAINED in this run: {meta['epochs']} epochs in {train_seconds:.0f} s.")
print(f"{count_params(model):,} parameters; validation accuracy from that training run:",
      {k: round(v, 4) for k, v in meta["metrics"].items()})

# %%
plots.learning_curves(History(meta["history"]), title=f"AlexNet on {DATASET} ({'checkpoint' if from_checkpoint else 'this run'})")
plt.show()

# %% [markdown]
# ## Test, once
#
# Whether to average the predictions over each image and its mirror image (the flip half
# of the paper's 10-view test) is decided on the **validation** accuracies recorded with
# the model; then the test set is evaluated once. Top-1 is the number the report left out.

# %%
use_flip = meta["metrics"]["val_top1_flip"] > meta["metrics"]["val_top1"]
print(f"flip averaging {'ON' if use_flip else 'OFF'} (validation top-1 {meta['metrics']['val_top1_flip']:.4f} "
      f"with, {meta['metrics']['val_top1']:.4f} without)")
test_loader = TensorLoader(test.images, test.labels, 1000, normalize=normalize, device=device)
logits, labels = predict(FlipAverage(model) if use_flip else model, test_loader)
preds = logits.argmax(1)
ks = tuple(k for k in (1, 2, 3, 4, 5) if k <= num_classes)
top = topk_accuracy(logits, labels, ks=ks)
print(f"test ({len(test)} images, {'flip-averaged' if use_flip else 'single view'}, "
      f"{'checkpoint model' if from_checkpoint else 'model trained in this run'}):")
for k in ks:
    print(f"  top-{k}: {100 * top[k]:.2f} %")

# %%
k = num_classes
acc = per_class_accuracy(labels, preds, k)
order = np.argsort(acc)
shown = order if k <= 20 else np.concatenate([order[:10], order[-10:]])  # 100+ classes: the worst and best ten
plots.per_class_bars(acc[shown], [test.classes[i] for i in shown],
                     title="per-class test accuracy" + ("" if k <= 20 else " (worst and best 10)"))
plt.show()
cm = confusion_matrix(labels, preds, k)
if k <= 20:
    plots.confusion_matrix(cm, test.classes)
    plt.show()
off = cm.astype(float).copy()
np.fill_diagonal(off, 0)
worst = np.dstack(np.unravel_index(np.argsort(off, axis=None)[::-1][:5], off.shape))[0]
print("most frequent confusions:", ", ".join(f"{test.classes[t]} -> {test.classes[p]} ({int(off[t, p])})" for t, p in worst))
g = torch.Generator().manual_seed(SEED)
pick = torch.randperm(len(test), generator=g)[:32]
plots.image_grid(test.images[pick], labels[pick], test.classes, preds=preds[pick], ncols=16,
                 title="random test images: prediction (true class in red when wrong)")
plt.show()

# %% [markdown]
# ## Ablation: which of the paper's ingredients matter?
#
# One arm per ingredient, each the headline configuration with **one** change, each
# repeated over several seeds (weight initialisation, batch order, augmentation and
# dropout draws all change with the seed), scored on the validation split. To fit the
# time budget the `quick` profile shortens it three ways (the printed settings say
# exactly how much): a class-balanced subset of the training split (8000 images), a few
# epochs (4), and a narrower network -- width 0.25 instead of the headline's 0.5, which
# costs a third of the time per image, so the same minutes train on twice the images.
# Effects on such a short schedule and a smaller net can differ from a full-length run of
# the headline model, which is what the `full` profile is for.
#
# **Where the LRN arm changes more than one thing.** The recipe's one-cycle SGD peaks
# at 0.1, a rate tuned for the BatchNorm network; without BatchNorm that rate is too
# high, so "LRN at lr 0.1" would measure the learning rate, not LRN. The LRN arm gets
# its own peak learning rate, `LRN_LR`, and, like every AlexNet without BatchNorm, He
# initialisation (see the note below the table); the table's description column says so.

# %%
ab_train = train.subset(few_label_subset(train.labels, cfg["ablation_per_class"], seed=0)) if cfg["ablation_per_class"] else train
ab_recipe = replace(ALEXNET_CIFAR10, epochs=cfg["ablation_epochs"])
ab_normalize = tuple(t.tolist() for t in channel_stats(ab_train))


def arm(model_kw, recipe_kw):
    def run(seed):
        seed_everything(seed)
        m = alexnet_for(ab_train, **{"width": cfg["ablation_width"], **model_kw})
        train_classifier(m, ab_train, None, replace(ab_recipe, **recipe_kw), seed=seed, device=device,
                         normalize=ab_normalize, progress=False)
        return evaluate_topk(m, val, ab_normalize, ks=(1,))["top1"]  # validation top-1 after the last epoch
    return run


LRN_LR = 0.01  # the LRN arm's peak learning rate: the paper's; LRN_LR_GRID chooses it on validation instead
if LRN_LR_GRID:  # choose it again: one run per rate, seed 10 (not one of the arms' seeds), validation top-1
    lrn_grid = {lr: arm({"norm": "lrn"}, {"lr": lr})(10) for lr in LRN_LR_GRID}
    LRN_LR = max(lrn_grid, key=lrn_grid.get)
    print("LRN learning rate on validation:", {lr: round(acc, 4) for lr, acc in lrn_grid.items()}, "-> lr", LRN_LR)
ARMS = {  # name: (description, AlexNet overrides, recipe overrides)
    "baseline": ("headline: BN, overlap, PCA, lr 0.1", {}, {}),
    "no_pca": ("fancy PCA off", {}, {"pca_lighting": False}),
    "dropout": ("dropout 0.5 (paper's) before fc6/7", {"dropout": 0.5}, {}),
    "no_overlap": ("2x2/2 pools instead of 3x3/2", {"overlap_pool": False}, {}),
    "lrn": (f"LRN for BN, He init, own lr {LRN_LR:g} ({'val.' if LRN_LR_GRID else 'paper'})", {"norm": "lrn"}, {"lr": LRN_LR}),
}
ablation_setting = (f"AlexNet width {cfg['ablation_width']:g} (headline {alexnet_config()['width']:g}), "
                    f"{len(ab_train)} training images ({cfg['ablation_per_class'] or 'all'} per class), "
                    f"{ab_recipe.epochs} epochs, seeds {cfg['ablation_seeds']}, one-cycle peak lr {ab_recipe.lr:g} "
                    f"(LRN arm {LRN_LR:g}), validation accuracy on {len(val)} images")
print("ablation:", ablation_setting)
t0 = time.perf_counter()
ab_results = run_ablation({name: arm(mk, rk) for name, (_, mk, rk) in ARMS.items()}, cfg["ablation_seeds"])
ablation_seconds = time.perf_counter() - t0
ab_rows = ablation_rows(ab_results, baseline="baseline")
print(f"\nValidation accuracy (%), {ablation_setting}; {ablation_seconds:.0f} s in all\n")
print(format_ablation(ab_rows, labels={name: d for name, (d, _, _) in ARMS.items()}))

# %%
plots.bar_with_errors([r["arm"] for r in ab_rows], [r["mean"] for r in ab_rows], [r["std"] for r in ab_rows],
                      ylabel="validation accuracy", title=f"ablation, mean ± std over {len(cfg['ablation_seeds'])} seeds")
plt.show()

# %% [markdown]
# **The LRN arm: initialisation first, then the learning rate.** Without BatchNorm
# nothing rescales the activations between layers, so the initialisation has to.
# PyTorch's default layer init (weight variance 1/(3·fan_in)) shrinks the signal by
# about √6 at every conv/FC + ReLU pair; after AlexNet's eight layers the logits are
# about a thousandth of the input scale, the loss sits at ln 10 = 2.303 and the
# gradients vanish. Earlier versions of this ablation used that init and the LRN arm
# stayed at chance (about 10 %) at every learning rate tried -- it measured the
# initialisation, not LRN. `AlexNet` now He-initialises every network without
# BatchNorm (variance 2/fan_in, the ReLU-preserving scale; `init="torch"` restores the
# old behaviour, and `test_alexnet_without_batchnorm_gets_he_init_and_trains` shows
# both: the default-init net's loss never leaves 2.30 on a batch the He-initialised net
# starts to fit). The paper itself used N(0, 0.01) weights and 90 epochs.
#
# The LRN arm still trains at its own peak learning rate, `LRN_LR`: by default the
# paper's 0.01, **not** tuned for this short schedule (the recipe's 0.1 was tuned for
# BatchNorm). To choose it on the validation split instead, set
# `LRN_LR_GRID=[0.03, 0.01, 0.003]`: one run per rate with seed 10 (not one of the
# arms' seeds, so the choice does not flatter the numbers in the table), and the best
# rate becomes `LRN_LR`. Read the gap to the baseline with that in mind, and with the
# schedule: in the quick profile, 124 SGD steps (4 epochs of 8000 images, batches of 256)
# reward BatchNorm's fast start. LRN also costs time: compare the table's time column
# (`course_lib`'s `LocalResponseNorm` computes the same numbers as PyTorch's about three
# times faster on a CPU, and the LRN arm is still the slowest).

# %% [markdown]
# ## Try it: learning rate, batch size, dropout, augmentation
# The panel below trains a **small** AlexNet (width 0.125: 12-32-48-48-32 channels, FC 256,
# 0.16 M parameters, the same layers as the headline model) on a subset of the training
# split with Adam and draws its learning curves live; a run on 1000 images for 10 epochs
# takes about five seconds on a laptop CPU, and the last runs stay on the plot in grey. The
# learning rate is constant, so its effect is not hidden by a schedule. The *augmentation*
# slider scales this notebook's recipe: reflect-padded random crops (up to 1/8 of the
# side), horizontal flips and fancy PCA (σ up to 0.3). Validation is measured on 500
# images, so expect a few points of noise from one evaluation to the next.
#
# Things to try, one change at a time from the starting values:
# - **augmentation 0 against 1**: without it the training loss keeps falling (towards 0.6)
#   while the validation loss stalls and then rises — 1000 images are memorised quickly.
#   With it the two losses stay close and the validation loss ends lower. This gap is what
#   the paper's augmentation was for.
# - **dropout 0.5 against 0**: dropout also keeps the training loss up, but on a run this
#   short it slows learning more than it helps validation — the reason the headline recipe
#   leaves it out (compare with the ablation's `dropout` arm above).
# - **learning rate** 1e-5 (the loss barely moves in 10 epochs) and 3e-2 or more (Adam gets
#   stuck not far above chance, 10 %); then switch the optimizer to `sgd` and try the
#   paper's 0.01.
# - **batch size** 16 against 256: the same epochs are 16 times as many steps with the small
#   batch; watch the time per run and how noisy the curves are.
# - **training images** 1000 against the maximum, at augmentation 0: more data is the other
#   cure for overfitting (and it costs time in proportion).
#
# **Stop** ends a run after the current batch; `panel.result.model` and `panel.result.history`
# keep what it learned. The panel is built only when `INTERACTIVE` is True.

# %%
# NBVAL_SKIP
if INTERACTIVE:
    from course_lib.widgets import training_panel

    def small_alexnet(dropout=0.0):
        return AlexNet(num_classes=num_classes, in_channels=train.images.shape[1],
                       **alexnet_config(size, width=0.125, dropout=dropout))

    def alexnet_augment(strength, image_shape):
        """The recipe's augmentation at `strength` in [0, 1]: crop padding up to side / 8, flips, PCA sigma up to 0.3."""
        if strength == 0:
            return None
        steps = [A.RandomCrop(image_shape[-1], padding=max(1, round(strength * image_shape[-1] / 8)),
                              padding_mode="reflect"), A.RandomHorizontalFlip()]
        if image_shape[0] == 3:
            steps.append(A.PCALighting(eigvals, eigvecs, alphastd=0.3 * strength))
        return A.Compose(steps)

    panel = training_panel(train, val, small_alexnet, lr=1e-3, batch_size=64, epochs=10, n_train=min(1000, len(train)),
                           max_epochs=20, augment=alexnet_augment, n_val=500, device=device,
                           title="Small AlexNet on " + DATASET)
    display(panel)

# %% [markdown]
# ## What the report got wrong, and why it matters
#
# - **"Zeroed-out" layers are arithmetic, not a bug to work around.** The original stem
#   (11 × 11, stride 4) and three 3 × 3/2 pools need an input of at least 63 px; the shape
#   walk shows the exact layer where 16 px and 32 px inputs drop below 1 × 1. Scaling the
#   stem and padding the pools keeps every size valid.
# - **59 M parameters on 32 px images is a layout problem.** The report's count matches
#   the full-size network with 10 outputs, two thirds of it in one dense layer; the
#   scaled network below has a small fraction of that.
# - **Fancy PCA is a few lines** once the covariance comes from the training pixels
#   (Exercise 2); the ablation measures what it is worth on this schedule.
# - **Top-3/4/5 without top-1 hides the headline number.** With 10 classes, top-5 is an
#   easy target; top-1 is what the paper's error rates and everyone else report.
# - **One run per setting cannot rank settings.** The ablation shows the seed-to-seed
#   spread next to each effect.

# %%
ab_by_name = {r["arm"]: r for r in ab_rows}
print(f"Top-1 on the test set: {100 * top[1]:.2f} % ({'flip-averaged' if use_flip else 'single view'}); "
      f"the report gave no top-1. Its top-3/4/5: 91 / 95 / 97 %; ours: "
      + " / ".join(f"{100 * top[k]:.1f}" for k in (3, 4, 5) if k in top) + " %.")
print(f"Parameters: {count_params(model):,} here vs about 59 M in the report "
      f"(the full-size net with 10 outputs has {total10:,}).")
print(f"Headline training time: {train_seconds:.0f} s ({'from the checkpoint metadata' if from_checkpoint else 'this run'}).")
goal = top[1] >= 0.82 and top.get(5, 0) >= 0.99 and train_seconds <= 600
print(f"Course goal (top-1 >= 82 %, top-5 >= 99 %, <= 600 s of training): {'MET' if goal else 'NOT met'} "
      f"(top-1 {100 * top[1]:.2f} %, top-5 {100 * top.get(5, float('nan')):.2f} %, {train_seconds:.0f} s).")
for name, r in ab_by_name.items():
    if name != "baseline":
        print(f"  {ARMS[name][0]:<34} {100 * r['delta']:+.2f} ± {100 * r['delta_se']:.2f} points vs baseline "
              f"({'larger' if abs(r['delta']) > 2 * r['delta_se'] else 'not clearly larger'} than 2 standard errors)")
print(f"Ablation setting: {ablation_setting}.")
print(f"Notebook wall time so far: {time.perf_counter() - notebook_t0:.0f} s")

# %%
metrics = {
    **{f"test_top{k}": top[k] for k in ks},
    "test_flip_averaged": use_flip,
    "train_seconds": train_seconds,
    "params": count_params(model),
    "headline_from_checkpoint": from_checkpoint,
    "val_top1": meta["metrics"]["val_top1_flip" if use_flip else "val_top1"],
    **ablation_metrics(ab_results),
    "ablation_lrn_lr": LRN_LR,
}
headline_note = (f"{DATASET} test set ({len(test)} images), AlexNet width 0.5, {meta['epochs']} epochs one-cycle SGD, seed "
                 f"{meta.get('seed')}, " + ("loaded from checkpoint made by `" + meta["command"] + "`" if from_checkpoint
                                            else "trained in this run"))
save_results("01_alexnet", PROFILE, metrics,
             report={"test_top3": 0.91, "test_top4": 0.95, "test_top5": 0.97, "params": 59e6},
             notes={**{f"test_top{k}": headline_note for k in ks},
                    "train_seconds": "wall time of the headline training run" + (" (checkpoint metadata)" if from_checkpoint else ""),
                    "params": "headline AlexNet; the report's 59 M is its Keras model",
                    **{key: f"ablation: {ablation_setting}" for key in ablation_metrics(ab_results)},
                    "ablation_lrn_lr": "one-cycle peak lr of the LRN arm (the other arms: 0.1), "
                                       + ("chosen on the validation split" if LRN_LR_GRID else "the paper's, not tuned")})
