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
# # 00 · Getting started: MNIST with the course library
#
# This notebook is the tour of the course kit. It loads MNIST as an in-memory tensor,
# looks at the data, trains a small CNN with the library's `fit`, and evaluates it the
# honest way: every choice (the number of epochs, early stopping) is made on a
# **validation split** carved out of the training set; the **test set is used once**,
# at the end.
#
# Everything reusable lives in `course_lib`; this notebook only tells the story.
# Run it top to bottom, or headless: `course run 00 --profile smoke`.

# %% tags=["parameters"]
PROFILE = "quick"      # smoke | quick | full
INTERACTIVE = True     # False under papermill / grading: no widgets
SEED = 0
EPOCHS = None          # None: use the profile setting
DATASET = "mnist"      # mnist | fashion-mnist | digits

# %%
# NBVAL_IGNORE_OUTPUT
import time

import matplotlib.pyplot as plt
import torch

from course_lib import augment as A
from course_lib.data import few_label_subset, load_dataset, stratified_split
from course_lib.loader import TensorLoader
from course_lib.metrics import binomial_ci, confusion_matrix, per_class_accuracy, topk_accuracy
from course_lib.models import SmallCNN
from course_lib.models.summary import format_layer_table, layer_table
from course_lib import plots
from course_lib.profiles import from_env, resolve
from course_lib.results import save_results
from course_lib.train import EarlyStopping, fit, get_device, predict, seed_everything

PROFILE, INTERACTIVE = from_env(PROFILE, INTERACTIVE)  # $COURSE_PROFILE / $COURSE_INTERACTIVE win (nbval)
cfg = resolve(PROFILE, {
    "smoke": {"epochs": 1, "n_per_class": 100, "batch_size": 128},
    "quick": {"epochs": 3, "n_per_class": None, "batch_size": 128},
    "full":  {"epochs": 20, "n_per_class": None, "batch_size": 128},
}, epochs=EPOCHS)
device = get_device()
seed_everything(SEED)
print(f"profile={PROFILE} device={device} settings={cfg}")

# %% [markdown]
# ## The data
# `load_dataset` returns uint8 tensors `(N, C, H, W)`, int64 labels and class names. The
# first call converts the raw files into a cached tensor file; later calls take well
# under a second. Without the files it downloads them through torchvision, and offline
# it says exactly which files it expected and where.

# %%
train_full = load_dataset(DATASET, "train")
test = load_dataset(DATASET, "test")
if cfg["n_per_class"]:  # smoke profile: a small class-balanced subset
    train_full = train_full.subset(few_label_subset(train_full.labels, cfg["n_per_class"], seed=SEED))
    test = test.subset(few_label_subset(test.labels, cfg["n_per_class"] // 2, seed=SEED))
print(f"train {tuple(train_full.images.shape)} {train_full.images.dtype}, test {tuple(test.images.shape)}")

# %%
# NBVAL_CHECK_OUTPUT
print("classes:", train_full.classes)

# %%
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.bar(range(len(train_full.classes)), torch.bincount(train_full.labels).tolist())
ax.set_xticks(range(len(train_full.classes)), train_full.classes)
ax.set_title("training images per class")
plt.show()
plots.image_grid(train_full.images[:32], train_full.labels[:32], train_full.classes, ncols=16, title="first training images")
plt.show()

# %% [markdown]
# ## A validation split
# The report this course started from (notebook 05) tuned its models on the test set,
# so its test numbers are optimistic. We hold out 10 % of the training images,
# stratified by class, and never look at the test set until the end.

# %%
train_idx, val_idx = stratified_split(train_full.labels, val_fraction=0.1, seed=SEED)
train, val = train_full.subset(train_idx), train_full.subset(val_idx)
print(f"train {len(train)} · validation {len(val)} · test {len(test)}")

# %% [markdown]
# ### Exercise 1 (2 points): a stratified split, by hand
# A plain random 10 % split keeps the class proportions only on average; on a small or
# imbalanced data set a rare class can all but vanish from validation. A *stratified*
# split holds out the same fraction of every class. Write
# `my_stratified_split(labels, val_fraction, generator)`: for each class, shuffle the
# indices of its examples with `torch.randperm(n, generator=generator)` and send the
# first `round(n * val_fraction)` of them to validation, the rest to training. Return
# `(train_idx, val_idx)`, each a sorted 1-D int64 tensor. The cell after the tests
# compares your split with the library's `stratified_split`.

# %% grade_id="split_solution" solution=true
def my_stratified_split(labels, val_fraction, generator=None):
    """Indices (train, val): round(n_c * val_fraction) examples of each class c go to val."""
    ### BEGIN SOLUTION
    train_parts, val_parts = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = round(len(idx) * val_fraction)
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values
    ### END SOLUTION

# %% grade_id="split_tests" points=2 tags=["graded"]
toy_labels = torch.tensor([0] * 10 + [1] * 20 + [2] * 30)
toy_train, toy_val = my_stratified_split(toy_labels, 0.1, torch.Generator().manual_seed(0))
assert len(toy_train) + len(toy_val) == len(toy_labels), "train and validation together hold every example"
assert set(toy_train.tolist()).isdisjoint(toy_val.tolist()), "an example is in train or in validation, never both"
assert torch.bincount(toy_labels[toy_val], minlength=3).tolist() == [1, 2, 3], "10 % of each class goes to validation"
### BEGIN HIDDEN TESTS
assert toy_train.dtype == torch.int64 and toy_val.dtype == torch.int64, "return int64 index tensors"
assert torch.equal(torch.cat([toy_train, toy_val]).sort().values, torch.arange(60)), "every index exactly once"
assert torch.equal(toy_val, toy_val.sort().values) and torch.equal(toy_train, toy_train.sort().values), "return sorted indices"
again = my_stratified_split(toy_labels, 0.1, torch.Generator().manual_seed(0))[1]
assert torch.equal(again, toy_val), "the same generator seed must give the same split"
picks = {tuple(my_stratified_split(toy_labels, 0.5, torch.Generator().manual_seed(s))[1].tolist()) for s in range(5)}
assert len(picks) > 1, "shuffle each class with the generator: different seeds should give different splits"
mixed = toy_labels[torch.randperm(60, generator=torch.Generator().manual_seed(1))]  # classes interleaved
mixed_val = my_stratified_split(mixed, 0.2, torch.Generator().manual_seed(2))[1]
assert torch.bincount(mixed[mixed_val], minlength=3).tolist() == [2, 4, 6], "count per class, wherever its examples sit"
### END HIDDEN TESTS

# %%
mine_train, mine_val = my_stratified_split(train_full.labels, 0.1, torch.Generator().manual_seed(SEED))
print("validation images per class, yours:  ", torch.bincount(train_full.labels[mine_val]).tolist())
print("validation images per class, library:", torch.bincount(train_full.labels[val_idx]).tolist())

# %% [markdown]
# ## Batched augmentation and the in-memory loader
# Each image in a batch gets its own random rotation and shift, computed for the whole
# batch at once with `affine_grid` + `grid_sample` (no PIL, no worker processes).

# %%
augment = A.RandomAffine(degrees=10, translate=(0.1, 0.1))
mean, std = [0.1307], [0.3081]
train_loader = TensorLoader(train.images, train.labels, cfg["batch_size"], shuffle=True,
                            transform=augment, normalize=(mean, std), device=device, seed=SEED)
val_loader = TensorLoader(val.images, val.labels, 1024, normalize=(mean, std), device=device)
test_loader = TensorLoader(test.images, test.labels, 1024, normalize=(mean, std), device=device)
plots.augmentation_gallery(train.images[:8], {"affine ±10°, ±10 %": augment},
                           generator=torch.Generator().manual_seed(SEED))
plt.show()

# %% [markdown]
# ### Exercise 2 (2 points): a batched random flip, one coin per image
# The library's transforms work on a whole batch `(N, C, H, W)` at once yet draw random
# parameters *per image*. Write `random_hflip(x, p, generator)` the same way: draw one
# uniform number per image with `torch.rand(N, generator=generator)`, mirror left-right
# (`x.flip(-1)`) the images whose number is below `p`, keep the others, and return a new
# tensor — no Python loop over the images (`torch.where` helps). Mirroring changes what
# a digit means, so this notebook does not train with it; notebooks 01 and 04 do, on
# CIFAR-10 and Fashion-MNIST. The gallery after the tests shows what it does to digits.

# %% grade_id="flip_solution" solution=true
def random_hflip(x, p=0.5, generator=None):
    """Mirror each image of the batch x left-right with probability p, each on its own coin."""
    ### BEGIN SOLUTION
    flip = torch.rand(x.shape[0], generator=generator).to(x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    ### END SOLUTION

# %% grade_id="flip_tests" points=2 tags=["graded"]
batch = train.images[:16].float() / 255
assert random_hflip(batch, 0.0, torch.Generator().manual_seed(0)).shape == batch.shape
assert torch.equal(random_hflip(batch, 0.0, torch.Generator().manual_seed(0)), batch), "p=0 must flip nothing"
assert torch.equal(random_hflip(batch, 1.0, torch.Generator().manual_seed(0)), batch.flip(-1)), "p=1 must flip every image"
### BEGIN HIDDEN TESTS
probe = torch.rand(64, 3, 5, 7, generator=torch.Generator().manual_seed(3))
before = probe.clone()
out = random_hflip(probe, 0.5, torch.Generator().manual_seed(4))
assert torch.equal(probe, before), "return a new tensor; do not change the input"
flipped = (out == probe.flip(-1)).flatten(1).all(1)
kept = (out == probe).flatten(1).all(1)
assert bool((flipped | kept).all()), "each image is either mirrored whole or kept whole"
assert 10 < int(flipped.sum()) < 54, "each image needs its own coin: about half of 64 should flip at p=0.5"
assert torch.equal(out, random_hflip(probe, 0.5, torch.Generator().manual_seed(4))), "draw the coins from the generator"
### END HIDDEN TESTS

# %%
plots.augmentation_gallery(train.images[:8], {"your flip, p=0.5": lambda x, generator=None: random_hflip(x, 0.5, generator),
                                              "library, p=0.5": A.RandomHorizontalFlip(0.5)},
                           generator=torch.Generator().manual_seed(SEED))
plt.show()

# %% [markdown]
# ## Train
# A small CNN, Adam with a one-cycle learning-rate schedule, and early stopping on
# validation accuracy that restores the best weights. Interrupting the cell keeps the
# history and the best weights so far.

# %%
# NBVAL_CHECK_OUTPUT
model = SmallCNN(in_channels=1, num_classes=len(train.classes))
print(format_layer_table(layer_table(model, tuple(train.images.shape[1:])), model))

# %%
# NBVAL_IGNORE_OUTPUT
t0 = time.perf_counter()
history = fit(model, train_loader, val_loader, epochs=cfg["epochs"], lr=1e-2, weight_decay=1e-4,
              scheduler="onecycle", callbacks=[EarlyStopping("val_acc", patience=3)], device=device)
train_seconds = time.perf_counter() - t0
best = history.best("val_acc")
print(f"trained {len(history)} epochs in {train_seconds:.0f} s; best validation accuracy "
      f"{best['val_acc']:.4f} at epoch {best['epoch']}")

# %%
plots.learning_curves(history, title="small CNN on " + DATASET)
plt.show()

# %% [markdown]
# ## Try it: learning rate, batch size, epochs
# Move the sliders and press **Run**: each run trains a fresh small CNN on a subset of the
# training split for a few seconds and draws its learning curves live; the previous runs
# stay on the plot in grey. Try a learning rate of 1e-5 and one of 0.3, a batch size of
# 16 against 256, or a batch larger than the subset (the panel tells you what is wrong).
# **Stop** ends a run after the current batch; `panel.result.model` and
# `panel.result.history` keep what it learned so far. The panel is built only when
# `INTERACTIVE` is True, so headless runs (papermill, grading) skip this cell.

# %%
# NBVAL_SKIP
if INTERACTIVE:
    from course_lib.widgets import training_panel

    panel = training_panel(train, val, lambda: SmallCNN(in_channels=train.images.shape[1], num_classes=len(train.classes)),
                           lr=3e-3, batch_size=32, epochs=3, n_train=min(1000, len(train)), device=device)
    display(panel)

# %% [markdown]
# ## Test, once
# Top-1 and top-3 accuracy, a 95 % confidence interval (Wilson), per-class accuracy,
# the confusion matrix, and the mistakes.

# %%
logits, labels = predict(model, test_loader)
preds = logits.argmax(1)
test_acc = (preds == labels).float().mean().item()
top = topk_accuracy(logits, labels, ks=(1, 3))
lo, hi = binomial_ci(int((preds == labels).sum()), len(labels))
print(f"test accuracy {test_acc:.4f} (95 % CI {lo:.4f}–{hi:.4f}), top-3 {top[3]:.4f}")

# %% [markdown]
# ### Exercise 3 (1 point): top-k accuracy
# A prediction is *top-k correct* when the true class is among the k classes with the
# largest logits; top-1 is the usual accuracy. Write `my_topk_accuracy(logits, labels, k)`
# for logits `(N, K)` and labels `(N,)`, returning a Python float (`logits.topk(k, dim=1)`
# gives the k best classes of every row). The cell after the tests compares it with the
# library's `topk_accuracy` (scikit-learn) on the test predictions.

# %% grade_id="topk_solution" solution=true
def my_topk_accuracy(logits, labels, k):
    """Fraction of rows whose true label is among the k largest logits."""
    ### BEGIN SOLUTION
    best = logits.topk(k, dim=1).indices
    return (best == labels[:, None]).any(dim=1).float().mean().item()
    ### END SOLUTION

# %% grade_id="topk_tests" points=1 tags=["graded"]
toy_logits = torch.tensor([[0.1, 0.5, 0.4, 0.0], [0.7, 0.2, 0.1, 0.0], [0.2, 0.3, 0.5, 0.0]])
toy_y = torch.tensor([2, 0, 3])
assert abs(my_topk_accuracy(toy_logits, toy_y, 1) - 1 / 3) < 1e-6, "top-1: only the second row is right"
assert abs(my_topk_accuracy(toy_logits, toy_y, 2) - 2 / 3) < 1e-6, "top-2: the first row's class 2 is second best"
### BEGIN HIDDEN TESTS
assert isinstance(my_topk_accuracy(toy_logits, toy_y, 1), float), "return a Python float (.item())"
assert my_topk_accuracy(toy_logits, toy_y, 4) == 1.0, "with k = number of classes every row is right"
for kk in (1, 2, 3):
    assert abs(my_topk_accuracy(logits, labels, kk) - topk_accuracy(logits, labels, ks=(kk,))[kk]) <= 1 / len(labels), kk
### END HIDDEN TESTS

# %%
print(f"top-3 accuracy on the test set: yours {my_topk_accuracy(logits, labels, 3):.4f}, library {top[3]:.4f}")

# %% [markdown]
# ### Exercise 4 (2 points): the confusion matrix from predictions
# Entry `(i, j)` of the confusion matrix counts the images of true class `i` predicted as
# class `j`. Write `my_confusion_matrix(labels, preds, num_classes)` returning an int64
# tensor `(K, K)` without a Python loop over the images: the pair `(i, j)` maps to the
# single number `i * K + j`, and `torch.bincount(..., minlength=K * K)` counts them all at
# once. The cell after the tests checks yours against the library's on the test set and
# reads the test accuracy off its diagonal.

# %% grade_id="confusion_solution" solution=true
def my_confusion_matrix(labels, preds, num_classes):
    """(K, K) int64 counts: rows are true classes, columns predicted classes."""
    ### BEGIN SOLUTION
    pairs = labels.long() * num_classes + preds.long()
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    ### END SOLUTION

# %% grade_id="confusion_tests" points=2 tags=["graded"]
toy_cm = my_confusion_matrix(torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2]), 3)
assert toy_cm.shape == (3, 3)
assert toy_cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]], f"rows = true class, columns = prediction; got {toy_cm.tolist()}"
### BEGIN HIDDEN TESTS
assert toy_cm.dtype == torch.int64, "counts are int64"
sparse_cm = my_confusion_matrix(torch.tensor([1, 1]), torch.tensor([1, 0]), 4)
assert sparse_cm.shape == (4, 4), "K x K even when some classes never occur (use minlength)"
assert sparse_cm.tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
g7 = torch.Generator().manual_seed(5)
y7, p7 = torch.randint(0, 7, (500,), generator=g7), torch.randint(0, 7, (500,), generator=g7)
assert torch.equal(my_confusion_matrix(y7, p7, 7), torch.as_tensor(confusion_matrix(y7, p7, 7))), "differs from scikit-learn's"
assert torch.equal(my_confusion_matrix(labels, preds, len(test.classes)),
                   torch.as_tensor(confusion_matrix(labels, preds, len(test.classes)))), "differs on the test set"
### END HIDDEN TESTS

# %%
cm = my_confusion_matrix(labels, preds, len(test.classes))
same = torch.equal(cm, torch.as_tensor(confusion_matrix(labels, preds, len(test.classes))))
print(f"yours equals the library's: {same}; diagonal / total = {int(cm.diag().sum())} / {int(cm.sum())} "
      f"= {cm.diag().sum().item() / cm.sum().item():.4f} = test accuracy {test_acc:.4f}")

# %%
k = len(test.classes)
plots.confusion_matrix(confusion_matrix(labels, preds, k), test.classes)
plt.show()
plots.per_class_bars(per_class_accuracy(labels, preds, k), test.classes)
plt.show()
wrong = (preds != labels).nonzero().flatten()[:24]
if len(wrong):
    plots.image_grid(test.images[wrong], labels[wrong], test.classes, preds=preds[wrong], title="misclassified test images")
    plt.show()

# %%
save_results("00_getting_started", PROFILE, {
    "test_acc": test_acc,
    "test_top3": top[3],
    "best_val_acc": best["val_acc"],
    "epochs": len(history),
    "train_seconds": train_seconds,
}, notes={"test_acc": f"{DATASET}, small CNN ({sum(p.numel() for p in model.parameters())} params), seed {SEED}"})
