"""Interactive hyperparameter panels for the notebooks (ipywidgets).

Each ``*_panel`` function builds one panel and returns it; display it as the last
expression of a cell.  The panels are UI only: what they compute comes from the pure
functions in ``course_lib.interactive`` (``short_training_run``,
``augmentation_preview``, ``few_label_accuracy``, ``tsne_embedding``,
``mae_reconstruction``), so the logic is tested without a browser.

- ``training_panel``      learning rate, batch size, epochs, subset size, dropout and
                          augmentation strength -> a short run with a live learning curve
- ``augmentation_panel``  every transform of ``course_lib.augment`` with a strength slider
- ``knn_panel``           kNN / linear-probe accuracy on precomputed features
- ``tsne_panel``          t-SNE perplexity -> a 2-D map of at most 2000 points
- ``model_choice_panel``  model and epochs -> validation accuracy and training time
- ``mask_ratio_panel``    MAE mask ratio -> masked input / reconstruction / original

How they behave:

- Anything that trains has a **Run** button; it runs in a background thread, so the
  kernel stays free, and **Stop** ends it within one batch, keeping the model and
  history so far in ``panel.result``.  Cheap views (augmentations, MAE masks) update
  as the sliders move.
- Invalid settings (say a batch larger than the training subset) show a message in
  the panel's status line instead of a traceback.
- Panels are for people: notebooks build them only when ``INTERACTIVE`` is True, and
  headless runs (papermill, grading) set it to False.  Nothing here blocks execution.

Outside a kernel (tests, scripts) Run works synchronously, so ``button.click()``
returns when the work is done; pass ``background=True`` to test the threaded path and
``panel.wait()`` to join it.

One cell per notebook, for example::

    if INTERACTIVE:  # 00, 01, 04: a short training run
        display(training_panel(train, val, lambda dropout=0.0: FashionCNN(dropout=dropout)))
    if INTERACTIVE:  # 01, 04: every augmentation (PCA lighting for RGB images)
        display(augmentation_panel(train, strengths={"PCA lighting": 0.5, "crop": 0.5}))
    if INTERACTIVE:  # 02, 03: one feature set per pre-training setting
        display(knn_panel({"tau=0.07": f1_train, "tau=0.2": f2_train}, y_train,
                          {"tau=0.07": f1_test, "tau=0.2": f2_test}, y_test))
    if INTERACTIVE:  # 03
        display(tsne_panel({"tau=0.99": f1_test, "tau=0.996": f2_test}, y_test, class_names=test.classes))
    if INTERACTIVE:  # 05
        display(model_choice_panel(train, val, {"SmallCNN": SmallCNN, "ReportCNN": ReportCNN}))
    if INTERACTIVE:  # 06
        display(mask_ratio_panel(mae, test.images[:6]))
"""

from __future__ import annotations

import html
import io
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as W
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from torch import Tensor, nn

from . import interactive as I

__all__ = [
    "Panel",
    "augmentation_panel",
    "knn_panel",
    "mask_ratio_panel",
    "model_choice_panel",
    "training_panel",
    "tsne_panel",
]

_DPI = 80
_STYLE = {"description_width": "140px"}


def _wide() -> W.Layout:
    return W.Layout(width="420px")  # a fresh Layout per widget: hiding one must not hide all


def _in_kernel() -> bool:
    """True inside a running IPython kernel (where a blocking callback would freeze the UI)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def _png(fig: Figure) -> bytes:
    """Render a (pyplot-free) matplotlib figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


# --------------------------------------------------------------------------- the panel shell


class Panel(W.VBox):
    """A titled box of controls, Run / Stop buttons, a progress bar, a status line,
    a figure and a table of tries.

    Attributes useful from code and tests: ``controls`` (name -> widget),
    ``run_button``, ``stop_button``, ``progress``, ``status`` (HTML), ``figure``
    (PNG ``Image``), ``table`` (HTML), ``result`` (the last outcome), ``results``
    (all outcomes, oldest first), ``error`` (the last message shown, or None).
    """

    def __init__(self, title: str, controls: Mapping[str, W.Widget], *, run: Callable[["Panel"], None] | None = None,
                 refresh: Callable[["Panel"], None] | None = None, stoppable: bool = True,
                 background: bool | None = None, note: str = "", columns: int = 1) -> None:
        self.controls = dict(controls)
        self.result: Any = None
        self.results: list[Any] = []
        self.error: str | None = None
        self.last_exception: BaseException | None = None
        self.background = _in_kernel() if background is None else background
        self._run, self._refresh = run, refresh
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

        self.status = W.HTML(value="")
        self.figure = W.Image(format="png", value=b"")
        self.table = W.HTML(value="")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="300px"))
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        for widget, cls in ((self.status, "course-status"), (self.figure, "course-figure"),
                            (self.run_button, "course-run"), (self.stop_button, "course-stop"),
                            (self.progress, "course-progress"), (self.table, "course-table")):
            widget.add_class(cls)

        header = W.HTML(f"<b>{html.escape(title)}</b>" + (f"<br><small>{html.escape(note)}</small>" if note else ""))
        if columns > 1:
            box: W.Widget = W.GridBox(list(self.controls.values()),
                                      layout=W.Layout(grid_template_columns=f"repeat({columns}, 430px)"))
        else:
            box = W.VBox(list(self.controls.values()))
        children: list[W.Widget] = [header, box]
        if run is not None:
            self.run_button.on_click(lambda _: self.start())
            self.stop_button.on_click(lambda _: self.stop())
            buttons = [self.run_button] + ([self.stop_button] if stoppable else []) + [self.progress]
            children.append(W.HBox(buttons))
        if refresh is not None:
            for widget in self.controls.values():
                if hasattr(widget, "value"):
                    widget.observe(lambda _: self.update(), names="value")
        children += [self.status, self.figure, self.table]
        super().__init__(children=children)
        self.add_class("course-panel")

    # ---- messages

    def set_status(self, text: str) -> None:
        """Show a plain-text status line (and clear the error)."""
        self.error = None
        self.status.value = f"<span>{html.escape(text)}</span>"

    def show_error(self, message: str) -> None:
        """Show ``message`` in red in the status line (instead of raising)."""
        self.error = message
        self.status.value = f"<span style='color:#b00020'>&#9888; {html.escape(message)}</span>"

    def show_figure(self, fig: Figure) -> None:
        self.figure.value = _png(fig)

    def set_progress(self, step: int, total: int) -> None:
        if self.progress.max != total:
            self.progress.max = max(1, total)
        self.progress.value = step

    def _guarded(self, fn: Callable[["Panel"], None]) -> None:
        try:
            fn(self)
        except (ValueError, TypeError) as exc:
            self.last_exception = exc
            self.show_error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a panel reports, it never raises into the notebook
            self.last_exception = exc
            self.show_error(f"{type(exc).__name__}: {exc}")

    # ---- live panels

    def update(self) -> None:
        """Recompute the view from the current control values (live panels)."""
        if self._refresh is not None:
            self._guarded(self._refresh)

    # ---- Run / Stop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop_requested(self) -> bool:
        """True once Stop was pressed (checked between batches by the work)."""
        return self._stop.is_set()

    def start(self) -> None:
        """What the Run button does: run the panel's work (in a thread inside a kernel)."""
        if self._run is None:
            return
        with self._lock:
            if self.running:
                return
            self._stop.clear()
            self.run_button.disabled, self.stop_button.disabled = True, False
            self.progress.value = 0
            if self.background:
                self._thread = threading.Thread(target=self._work, name="course-panel", daemon=True)
                self._thread.start()
                return
        self._work()

    def _work(self) -> None:
        try:
            self._guarded(self._run)  # type: ignore[arg-type]
        finally:
            self.run_button.disabled, self.stop_button.disabled = False, True

    def stop(self) -> None:
        """What the Stop button does: ask the running work to end after the current batch."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for background work to finish; True if nothing is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running


# --------------------------------------------------------------------------- helpers


def _slider_float(description: str, value: float, lo: float, hi: float, step: float, fmt: str = ".2f",
                  tooltip: str = "") -> W.FloatSlider:
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=description, readout_format=fmt,
                         continuous_update=False, style=_STYLE, layout=_wide(), tooltip=tooltip)


def _slider_log(description: str, value: float, lo_exp: float, hi_exp: float) -> W.FloatLogSlider:
    return W.FloatLogSlider(value=value, base=10, min=lo_exp, max=hi_exp, step=0.25, description=description,
                            readout_format=".1e", continuous_update=False, style=_STYLE, layout=_wide())


def _slider_int(description: str, value: int, lo: int, hi: int, step: int = 1) -> W.IntSlider:
    return W.IntSlider(value=min(max(value, lo), hi), min=lo, max=hi, step=step, description=description,
                       continuous_update=False, style=_STYLE, layout=_wide())


def _dropdown(description: str, options: Sequence[Any], value: Any) -> W.Dropdown:
    return W.Dropdown(options=options, value=value, description=description, style=_STYLE, layout=_wide())


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], last: int = 10) -> str:
    """A small HTML table of the newest ``last`` rows (newest first)."""
    head = "".join(f"<th style='padding:0 8px;text-align:left'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:0 8px'>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in list(rows)[::-1][:last])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _show_image(ax: Any, img: Tensor) -> None:
    img = img.detach().cpu().float().clamp(0, 1)
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def _gallery_figure(rows: Sequence[tuple[str, Tensor]], scale: float = 1.0) -> Figure:
    """One row per (name, batch) pair; the name on the left."""
    n = len(rows[0][1])
    fig = Figure(figsize=(scale * n + 1.4, scale * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, batch) in enumerate(rows):
        for c in range(n):
            _show_image(axes[r, c], batch[c])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    return fig


def _feature_sets(train: Tensor | Mapping[str, Tensor], test: Tensor | Mapping[str, Tensor] | None = None
                  ) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Normalise a tensor or a {name: tensor} mapping (e.g. one per MoCo temperature) to a dict."""
    if isinstance(train, Tensor):
        if test is not None and not isinstance(test, Tensor):
            raise TypeError("pass train and test features both as tensors or both as {name: tensor} mappings")
        return {"features": train}, (None if test is None else {"features": test})
    if not isinstance(train, Mapping) or not train:
        raise TypeError(f"features must be a tensor (N, D) or a non-empty {{name: tensor}} mapping, "
                        f"got {type(train).__name__}")
    if test is not None:
        if not isinstance(test, Mapping) or set(test) != set(train):
            raise ValueError("train and test feature mappings must have the same names; "
                             f"got {sorted(train)} and {sorted(test) if isinstance(test, Mapping) else test!r}")
        return dict(train), dict(test)
    return dict(train), None


# --------------------------------------------------------------------------- training


def _curves_figure(history: Any, title: str, previous: Sequence[tuple[str, Any]] = ()) -> Figure:
    """Loss (log scale: a too-high learning rate blows it up by orders of magnitude) and
    accuracy against epochs; earlier runs' validation curves in grey, named in the legend."""
    fig = Figure(figsize=(9.5, 3.6))
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.14, top=0.9, wspace=0.2)  # fixed: one draw per frame
    axes = fig.subplots(1, 2)
    styles = (":", "--", "-.")
    for (label, old), style, shade in zip(previous, styles, ("0.75", "0.6", "0.45")):
        for ax, key in zip(axes, ("val_loss", "val_acc")):
            ax.plot(old["epoch"], old[key], style, color=shade, linewidth=1.2, label=f"earlier: {label}")
    ep = history["epoch"]
    for ax, key, name in zip(axes, ("loss", "acc"), ("loss", "accuracy")):
        ax.plot(ep, history[f"train_{key}"], "o-", color="C0", markersize=3, label="train")
        ax.plot(ep, history[f"val_{key}"], "o-", color="C1", markersize=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 2, 30 rather than 5x10^-1
    axes[0].yaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if v > 0 and f"{v:.0e}"[0] in "25" else ""))  # label only 2 and 5 between decades
    axes[0].legend(*[x[-2:] for x in axes[0].get_legend_handles_labels()], fontsize=8)
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def training_panel(
    train_ds: Any,
    val_ds: Any,
    make_model: Callable[..., nn.Module],
    *,
    lr: float = 1e-3,
    batch_size: int = 64,
    epochs: int = 3,
    n_train: int = 1000,
    max_epochs: int = 20,
    batch_sizes: Sequence[int] = (16, 32, 64, 128, 256, 512),
    optimizer: str = "adam",
    augment: Callable[[float, Sequence[int]], Any] | None = I.strength_augment,
    normalize: Any = "auto",
    n_val: int = 1000,
    evals_per_epoch: int = 2,
    device: torch.device | str | None = None,
    seed: int = 0,
    background: bool | None = None,
    redraw_seconds: float = 0.5,
    title: str = "Short training run",
) -> Panel:
    """Learning rate (log slider), batch size, epochs, training-subset size, optimizer,
    dropout (if ``make_model`` takes ``dropout=``) and augmentation strength (if
    ``augment`` is given) -> a short run of ``short_training_run`` with a live learning curve.

    ``train_ds`` / ``val_ds`` are ``ImageDataset``s or ``(images, labels)`` pairs;
    ``make_model()`` builds a fresh model per run (the same initial weights for a given
    ``seed``).  The curve is redrawn as records arrive (at most every ``redraw_seconds``)
    and the last three runs' validation curves stay on the plot in grey for comparison.  After a run (finished or stopped), ``panel.result`` is the
    ``ShortRun`` with ``model`` and ``history``.
    """
    train_x, _ = I.as_images_labels(train_ds)
    I.as_images_labels(val_ds)
    n_avail = len(train_x)
    c: dict[str, W.Widget] = {
        "optimizer": _dropdown("optimizer", I.OPTIMIZERS, optimizer),
        "lr": _slider_log("learning rate", lr, -5, 0),
        "batch_size": _dropdown("batch size", list(batch_sizes), batch_size),
        "epochs": _slider_int("epochs", epochs, 1, max_epochs),
        "n_train": _slider_int("training images", min(n_train, n_avail), min(10, n_avail), n_avail,
                               step=10 if n_avail >= 100 else 1),
    }
    if I.accepts_dropout(make_model):
        c["dropout"] = _slider_float("dropout", 0.0, 0.0, 0.8, 0.05)
    if augment is not None:
        c["augment"] = _slider_float("augmentation", 0.0, 0.0, 1.0, 0.1, fmt=".1f")

    def settings() -> I.TrainSettings:
        return I.TrainSettings(lr=float(c["lr"].value), batch_size=int(c["batch_size"].value),
                               epochs=int(c["epochs"].value), n_train=int(c["n_train"].value),
                               optimizer=c["optimizer"].value,
                               dropout=float(c["dropout"].value) if "dropout" in c else None,
                               augment_strength=float(c["augment"].value) if "augment" in c else 0.0, seed=seed)

    def run(panel: Panel) -> None:
        s = settings()
        previous = [(r.settings.describe(), r.history) for r in panel.results[-3:] if r.history.records]
        panel.set_status(f"training: {s.describe()} ...")
        last_draw = [0.0]

        def redraw(history: Any) -> None:  # live curve, at most every redraw_seconds (drawing costs ~0.1 s)
            if time.monotonic() - last_draw[0] >= redraw_seconds:
                panel.show_figure(_curves_figure(history, s.describe(), previous))
                last_draw[0] = time.monotonic()

        result = I.short_training_run(
            train_ds, val_ds, make_model, s, augment=augment, normalize=normalize, n_val=n_val,
            evals_per_epoch=evals_per_epoch, device=device, on_record=redraw,
            on_progress=panel.set_progress, should_stop=panel.stop_requested)
        panel.result = result
        panel.results.append(result)
        if result.history.records:
            panel.show_figure(_curves_figure(result.history, s.describe(), previous))
        panel.set_status(result.summary())
        panel.table.value = _html_table(
            ["run", "settings", "val acc %", "val loss", "steps", "train s", "ended"],
            [(i + 1, r.settings.describe(), f"{100 * r.val_acc:.1f}", f"{r.last.get('val_loss', float('nan')):.3f}",
              r.steps, f"{r.train_seconds:.1f}", "stopped" if r.stopped else "diverged" if r.diverged else "done")
             for i, r in enumerate(panel.results)])

    return Panel(title, c, run=run, background=background,
                 note=f"{n_avail} training images available; each run trains a fresh model on a subset.")


def model_choice_panel(
    train_ds: Any,
    val_ds: Any,
    models: Mapping[str, Callable[[], nn.Module]],
    *,
    epochs: int = 2,
    max_epochs: int = 10,
    lr: float | Mapping[str, float] = 1e-3,
    batch_size: int = 64,
    n_train: int = 1000,
    optimizer: str = "adam",
    n_val: int = 1000,
    device: torch.device | str | None = None,
    seed: int = 0,
    background: bool | None = None,
    title: str = "Which model? Accuracy against training time",
) -> Panel:
    """Model name and epochs -> validation accuracy, parameter count and training time.

    ``models`` maps a name to a factory of a fresh model; ``lr`` is one learning rate or
    one per name.  Every run adds a point to an accuracy-against-time plot and a row to
    the table, so models can be compared at equal training budget.
    """
    if not models:
        raise ValueError("models is empty; pass {name: factory}, e.g. {'SmallCNN': lambda: SmallCNN()}")
    if isinstance(lr, Mapping):
        missing = sorted(set(models) - set(lr))
        if missing:
            raise ValueError(f"lr has no learning rate for {missing}; give one per model or a single number")
    train_x, _ = I.as_images_labels(train_ds)
    n_avail = len(train_x)
    names = list(models)
    c: dict[str, W.Widget] = {
        "model": _dropdown("model", names, names[0]),
        "epochs": _slider_int("epochs", epochs, 1, max_epochs),
        "n_train": _slider_int("training images", min(n_train, n_avail), min(10, n_avail), n_avail,
                               step=10 if n_avail >= 100 else 1),
    }

    def figure(results: Sequence[tuple[str, I.ShortRun]]) -> Figure:
        fig = Figure(figsize=(6.5, 3.4), layout="constrained")
        ax = fig.subplots()
        colours = {n: f"C{i % 10}" for i, n in enumerate(names)}
        for name, r in results:
            ax.scatter(r.train_seconds, 100 * r.val_acc, color=colours[name], s=40)
            ax.annotate(f"{name}, {r.last.get('epoch', 0):g} ep", (r.train_seconds, 100 * r.val_acc), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.margins(0.2)
        ax.set_xlabel("training time (s, without evaluation)")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        return fig

    def run(panel: Panel) -> None:
        name = c["model"].value
        rate = float(lr[name]) if isinstance(lr, Mapping) else float(lr)
        s = I.TrainSettings(lr=rate, batch_size=batch_size, epochs=int(c["epochs"].value),
                            n_train=int(c["n_train"].value), optimizer=optimizer, seed=seed)
        panel.set_status(f"training {name}: {s.describe()} ...")
        result = I.short_training_run(train_ds, val_ds, models[name], s, augment=None, n_val=n_val,
                                      evals_per_epoch=1, device=device, on_progress=panel.set_progress,
                                      should_stop=panel.stop_requested)
        panel.result = (name, result)
        panel.results.append((name, result))
        done = [(n, r) for n, r in panel.results if r.history.records]
        if done:
            panel.show_figure(figure(done))
        panel.set_status(f"{name}: {result.num_params:,} parameters; " + result.summary())
        panel.table.value = _html_table(
            ["run", "model", "params", "epochs", "train s", "val acc %"],
            [(i + 1, n, f"{r.num_params:,}", f"{r.last.get('epoch', 0):g}", f"{r.train_seconds:.1f}",
              f"{100 * r.val_acc:.1f}") for i, (n, r) in enumerate(panel.results)])

    return Panel(title, c, run=run, background=background,
                 note="Each run trains the chosen model from scratch on the same subset.")


# --------------------------------------------------------------------------- augmentation


def augmentation_panel(
    images: Any,
    *,
    n_images: int = 8,
    strengths: Mapping[str, float] | None = None,
    seed: int = 0,
    pca: tuple[Tensor, Tensor] | str | None = "auto",
    title: str = "Augmentation strength",
) -> Panel:
    """One strength slider per transform of ``course_lib.augment`` -> a gallery of the
    first ``n_images`` images under each active transform (and all of them together).

    ``images`` is an ``ImageDataset``, ``(images, labels)`` or a tensor ``(N, C, H, W)``.
    Colour-only transforms (saturation, grayscale, PCA lighting) appear for RGB images;
    ``pca="auto"`` computes PCA lighting's eigen-decomposition from ``images``.  The
    status line shows each transform with its actual parameters.  Updates live.
    """
    from .augment import pca_lighting_from_data

    x = images if isinstance(images, Tensor) else I.as_images_labels(images)[0]
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"images must be a non-empty batch (N, C, H, W), got shape {tuple(x.shape)}")
    if pca == "auto":
        pca = pca_lighting_from_data(x) if x.shape[1] == 3 else None
    batch = x[:n_images]
    names = I.augmentations_for(int(x.shape[1]), pca is not None)
    if strengths is None:
        strengths = {"crop": 0.5, "horizontal flip": 0.5} if x.shape[1] == 3 else {"affine": 0.5}
    c: dict[str, W.Widget] = {}
    for name in names:
        spec = I.AUGMENTATIONS[name]
        c[name] = _slider_float(name, float(strengths.get(name, 0.0)), 0.0, 1.0, 0.05, tooltip=spec.meaning)
    c["seed"] = _slider_int("random draw", seed, 0, 20)

    def refresh(panel: Panel) -> None:
        chosen = {n: float(c[n].value) for n in names}
        rows = I.augmentation_preview(batch, chosen, seed=int(c["seed"].value), pca=pca)  # type: ignore[arg-type]
        panel.result = rows
        panel.show_figure(_gallery_figure(rows, scale=1.0))
        built = I.build_augmentations(chosen, batch.shape[1:], pca)  # type: ignore[arg-type]
        panel.set_status("; ".join(repr(t) for t in built.values()) or "no augmentation: move a slider")

    panel = Panel(title, c, refresh=refresh, columns=2,
                  note="Strength 0 turns a transform off; hover a slider for what strength 1 means.")
    panel.update()
    return panel


# --------------------------------------------------------------------------- frozen features


def knn_panel(
    train_feats: Tensor | Mapping[str, Tensor],
    train_labels: Tensor,
    test_feats: Tensor | Mapping[str, Tensor],
    test_labels: Tensor,
    *,
    n_per_class: int = 10,
    k: int = 20,
    T: float = 0.07,
    draws: int = 3,
    max_train: int = 10000,
    max_test: int = 2000,
    seed: int = 0,
    background: bool | None = None,
    title: str = "Few labels: kNN and linear probe on frozen features",
) -> Panel:
    """Labels per class, classifier (kNN with ``k`` and temperature ``T``, or a linear
    probe with ``C``) and number of draws -> test accuracy as mean +- std.

    Features are precomputed (``extract_features``).  Pass ``{name: features}``
    mappings (same names for train and test) to compare encoders, e.g. one per MoCo
    temperature or queue size, or per BYOL tau: a dropdown then picks the set.  At most
    ``max_train`` / ``max_test`` rows are used so that one answer takes about a second.
    """
    train_sets, test_sets = _feature_sets(train_feats, test_feats)
    assert test_sets is not None
    y_tr, y_te = train_labels.cpu().long(), test_labels.cpu().long()
    pools = {}
    for name in train_sets:
        if len(train_sets[name]) != len(y_tr) or len(test_sets[name]) != len(y_te):
            raise ValueError(f"features {name!r}: {len(train_sets[name])}/{len(test_sets[name])} rows but "
                             f"{len(y_tr)}/{len(y_te)} train/test labels; they must match")
        pools[name] = (*I.subsample(train_sets[name].float().cpu(), y_tr, max_train, seed),
                       *I.subsample(test_sets[name].float().cpu(), y_te, max_test, seed))
    most = I.smallest_class_count(next(iter(pools.values()))[1])
    c: dict[str, W.Widget] = {}
    if len(pools) > 1:
        c["features"] = _dropdown("features", list(pools), next(iter(pools)))
    c["method"] = _dropdown("classifier", [("kNN", "knn"), ("linear probe", "probe")], "knn")
    c["n_per_class"] = _slider_int("labels per class", min(n_per_class, most), 1, most)
    c["k"] = _slider_int("k (neighbours)", k, 1, 200)
    c["T"] = _slider_log("kNN temperature", T, -2, 0)
    c["C"] = _slider_log("probe C", 1.0, -3, 3)
    c["draws"] = _slider_int("draws", draws, 1, 10)

    def show_method(_: Any = None) -> None:
        knn = c["method"].value == "knn"
        c["k"].layout.display = c["T"].layout.display = None if knn else "none"
        c["C"].layout.display = "none" if knn else None

    c["method"].observe(show_method, names="value")
    show_method()

    def describe(setting: dict[str, Any]) -> str:
        what = (f"kNN k={setting['k']} T={setting['T']:.2g}" if setting["method"] == "knn"
                else f"probe C={setting['C']:.2g}")
        return (f"{setting['features']}: " if len(pools) > 1 else "") + f"{what}, {setting['n_per_class']}/class"

    def figure(results: Sequence[dict[str, Any]]) -> Figure:
        shown = list(results)[-8:]
        fig = Figure(figsize=(7, 0.45 * len(shown) + 1.0), layout="constrained")
        ax = fig.subplots()
        ax.barh(range(len(shown)), [100 * r["mean"] for r in shown], xerr=[100 * r["std"] for r in shown],
                color=["C1" if i == len(shown) - 1 else "C0" for i in range(len(shown))], capsize=3)
        ax.set_yticks(range(len(shown)), [r["label"] for r in shown], fontsize=8)
        ax.set_xlabel("test accuracy (%), mean +- std over draws")
        ax.set_xlim(0, 100)
        ax.grid(axis="x", alpha=0.3)
        return fig

    def run(panel: Panel) -> None:
        name = c["features"].value if "features" in c else next(iter(pools))
        xtr, ytr, xte, yte = pools[name]
        setting = {"features": name, "method": c["method"].value, "n_per_class": int(c["n_per_class"].value),
                   "k": int(c["k"].value), "T": float(c["T"].value), "C": float(c["C"].value)}
        panel.set_status(f"evaluating {describe(setting)} ...")
        res = I.few_label_accuracy(xtr, ytr, xte, yte, setting["n_per_class"], method=setting["method"],
                                   k=setting["k"], T=setting["T"], C=setting["C"], draws=int(c["draws"].value),
                                   seed=seed)
        res.update(setting, label=describe(setting))
        panel.result = res
        panel.results.append(res)
        panel.show_figure(figure(panel.results))
        note = f" (k clamped to {res['k_used']} labelled examples)" if setting["method"] == "knn" and res["k_used"] < setting["k"] else ""
        panel.set_status(f"{describe(setting)}: test accuracy {100 * res['mean']:.1f} +- {100 * res['std']:.1f} % "
                         f"over {len(res['per_seed'])} draw(s), {res['n_labelled']} labelled, {len(yte)} test{note}")
        panel.table.value = _html_table(["try", "setting", "mean %", "std %"],
                                        [(i + 1, r["label"], f"{100 * r['mean']:.1f}", f"{100 * r['std']:.1f}")
                                         for i, r in enumerate(panel.results)])

    return Panel(title, c, run=run, stoppable=False, background=background,
                 note=f"pool: {len(next(iter(pools.values()))[1])} training and "
                      f"{len(next(iter(pools.values()))[3])} test feature vectors")


def tsne_panel(
    feats: Tensor | Mapping[str, Tensor],
    labels: Tensor,
    *,
    class_names: Sequence[str] | None = None,
    perplexity: float = 30,
    n_points: int = 1000,
    max_points: int = I.MAX_TSNE_POINTS,
    seed: int = 0,
    background: bool | None = None,
    title: str = "t-SNE of the features",
) -> Panel:
    """Perplexity and number of points (at most 2000) -> a t-SNE scatter coloured by
    class, with leave-one-out 5-NN accuracy in the map and in the feature space.

    Pass ``{name: features}`` to compare encoders (e.g. BYOL with different tau).
    t-SNE cannot be interrupted, so there is no Stop; 1000 points take a few seconds.
    """
    sets, _ = _feature_sets(feats)
    y = labels.cpu().long()
    for name, f in sets.items():
        if len(f) != len(y):
            raise ValueError(f"features {name!r} have {len(f)} rows but there are {len(y)} labels")
    n_max = min(max_points, I.MAX_TSNE_POINTS, len(y))
    c: dict[str, W.Widget] = {}
    if len(sets) > 1:
        c["features"] = _dropdown("features", list(sets), next(iter(sets)))
    c["perplexity"] = _slider_int("perplexity", int(perplexity), 2, 100)
    c["n_points"] = _slider_int("points", min(n_points, n_max), min(50, n_max), n_max, step=50 if n_max >= 500 else 1)

    def figure(res: I.TsneResult, label: str) -> Figure:
        fig = Figure(figsize=(6.5, 5), layout="constrained")
        ax = fig.subplots()
        xy = res.xy.numpy()
        for cls in torch.unique(res.labels).tolist():
            pts = xy[(res.labels == cls).numpy()]
            name = class_names[cls] if class_names is not None and cls < len(class_names) else str(cls)
            ax.scatter(pts[:, 0], pts[:, 1], s=6, color=f"C{cls % 10}", label=name)
        ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=10)
        return fig

    def run(panel: Panel) -> None:
        name = c["features"].value if "features" in c else next(iter(sets))
        perp, n = float(c["perplexity"].value), int(c["n_points"].value)
        label = (f"{name}: " if len(sets) > 1 else "") + f"perplexity {perp:g}, {n} points"
        panel.set_status(f"computing t-SNE ({label}) ...")
        panel.set_progress(0, 1)
        res = I.tsne_embedding(sets[name], y, perplexity=perp, n_points=n, seed=seed)
        panel.set_progress(1, 1)
        res.extra["label"] = label
        panel.result = res
        panel.results.append(res)
        panel.show_figure(figure(res, label))
        panel.set_status(f"{label}: 5-NN accuracy {100 * res.knn_acc_map:.1f} % in the map, "
                         f"{100 * res.knn_acc_features:.1f} % in the feature space ({res.seconds:.1f} s)")
        panel.table.value = _html_table(["try", "setting", "5-NN map %", "5-NN features %", "s"],
                                        [(i + 1, r.extra["label"], f"{100 * r.knn_acc_map:.1f}",
                                          f"{100 * r.knn_acc_features:.1f}", f"{r.seconds:.1f}")
                                         for i, r in enumerate(panel.results)])

    return Panel(title, c, run=run, stoppable=False, background=background,
                 note="Distances between clusters in a t-SNE map mean little; compare neighbourhoods.")


# --------------------------------------------------------------------------- MAE


def mask_ratio_panel(
    mae_model: nn.Module,
    images: Any,
    *,
    n_images: int = 6,
    mask_ratio: float | None = None,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    seed: int = 0,
    title: str = "MAE: how much can be masked?",
) -> Panel:
    """Mask ratio and mask draw -> masked input, reconstruction and original for the
    first ``n_images`` images, with the loss on the masked patches.  Updates live.

    ``mae_model`` is a (trained) ``course_lib.ssl.mae.MAE``; ``normalize`` is the
    ``(mean, std)`` it was trained with, if any.
    """
    x = images if isinstance(images, Tensor) else I.as_images_labels(images)[0]
    batch = x[:n_images]
    ratio = float(mae_model.mask_ratio if mask_ratio is None else mask_ratio)
    c: dict[str, W.Widget] = {
        "mask_ratio": _slider_float("mask ratio", ratio, 0.05, 0.95, 0.05),
        "seed": _slider_int("mask draw", seed, 0, 20),
    }
    L = int(mae_model.num_patches)

    def refresh(panel: Panel) -> None:
        view = I.mae_reconstruction(mae_model, batch, float(c["mask_ratio"].value), seed=int(c["seed"].value),
                                    normalize=normalize)
        panel.result = view
        panel.show_figure(_gallery_figure([("masked", view.masked), ("reconstruction", view.reconstruction),
                                           ("original", view.original)], scale=1.2))
        hidden = int(view.mask[0].sum())
        panel.set_status(f"mask ratio {view.mask_ratio:.2f}: {hidden} of {L} patches hidden per image; "
                         f"mean squared error on the masked patches {view.loss:.4f}")

    panel = Panel(title, c, refresh=refresh, note=f"{L} patches of {mae_model.patch_size}x{mae_model.patch_size} px "
                                                  "per image; MAE trains with 0.75.")
    panel.update()
    return panel
