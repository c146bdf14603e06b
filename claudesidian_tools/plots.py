"""One figure per config: completion lengths by label, rows per split, and the labels of the first batches.

The figure draws numbers it is given (from `claudesidian_tools.lengths.completion_histogram` and the
stats), never recomputes them, so the card's figure and its JSON stats cannot disagree. matplotlib
is the optional [plots] extra, imported only when drawing: without it `plot_config` raises
`PlotsUnavailable`, whose message is the one line a caller prints (what to install: `INSTALL_PLOTS`).

Rendering uses the Agg canvas directly (no pyplot, no display), matplotlib's default style, a fixed
size and DPI and no software/date metadata, so the same input gives the same PNG bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import claudesidian_synthetic as cs

# What to do without matplotlib, in the one wording every message uses.
INSTALL_PLOTS = cs.install_hint("plots")
FIGURE_SIZE = (15.0, 4.8)  # inches
DPI = 100
LABEL_NAMES = cs.LABEL_NAMES
# Okabe-Ito blue and vermillion: told apart with the common colour-vision deficiencies.
COLORS = dict(zip(LABEL_NAMES, ("#0072B2", "#D55E00")))
PNG_METADATA = {"Software": None}  # matplotlib writes its version here by default; the bytes must not depend on it


class PlotsUnavailable(cs.ClaudesidianError, ImportError):
    """matplotlib is not installed: the figures are skipped; str() is the one line to show."""

    def __init__(self) -> None:
        super().__init__(f"figures skipped: {INSTALL_PLOTS}")


def _matplotlib() -> tuple:
    """(matplotlib, Figure, FigureCanvasAgg), or PlotsUnavailable without the extra."""
    try:
        import matplotlib
        import matplotlib.colors
        import matplotlib.patches
        import matplotlib.style
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlotsUnavailable() from error
    return matplotlib, Figure, FigureCanvasAgg


def plots_available() -> bool:
    """Whether `plot_config` can draw (the [plots] extra is installed)."""
    try:
        _matplotlib()
    except PlotsUnavailable:
        return False
    return True


# --- input checks ----------------------------------------------------------------------------------


def _check_histogram(histogram: Mapping) -> None:
    edges = histogram.get("edges")
    counts = [histogram.get(name) for name in LABEL_NAMES]
    if edges is None or any(count is None for count in counts):
        raise cs.OptionError("histogram: expected the dict of lengths.completion_histogram (edges, desirable, "
                             "undesirable); pass its result as it is")
    if any(len(count) != max(len(edges) - 1, 0) for count in counts):
        raise cs.OptionError(f"histogram: {len(edges)} edges need {max(len(edges) - 1, 0)} counts per label, got "
                             f"{[len(count) for count in counts]}; pass lengths.completion_histogram's result as it is")


def _check_first_labels(first_labels: Sequence[bool], batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise cs.OptionError(f"batch_size={batch_size!r}: must be a whole number >= 1 (your per-device batch size)")
    if any(not isinstance(label, (bool, np.bool_)) for label in first_labels):
        raise cs.OptionError("first_labels: must be booleans (True = desirable), in the dataset's order")


# --- panels -------------------------------------------------------------------------------------


def _log1p_ticks(low: float, high: float) -> list:
    """0 (when in range) and the powers of ten between the histogram's ends."""
    ticks = [0.0] if low <= 0 else []
    ticks += [10.0**power for power in range(0, int(math.log10(max(high, 1))) + 1) if low <= 10.0**power <= high]
    return ticks


def _draw_histogram(ax, histogram: Mapping, names: Mapping[str, str]) -> dict:
    """Side-by-side bars per bin (desirable left half, undesirable right half) on a log(1 + x) axis."""
    edges = np.asarray(histogram["edges"], dtype=float)
    drawn = {"edges": [float(edge) for edge in edges]}
    ax.set_xlabel("completion length (characters, log scale)")
    ax.set_ylabel("rows")
    ax.set_title("Completion length by label")
    if edges.size < 2:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
        return {**drawn, "desirable": [], "undesirable": []}
    middles = np.expm1((np.log1p(edges[:-1]) + np.log1p(edges[1:])) / 2)
    halves = dict(zip(LABEL_NAMES, ((edges[:-1], middles), (middles, edges[1:]))))
    for name in LABEL_NAMES:
        left, right = halves[name]
        counts = histogram[name]
        if not sum(counts) and name not in names:
            continue  # a label the config does not hold (SFT: desirable only)
        bars = ax.bar(left, counts, width=right - left, align="edge", color=COLORS[name],
                      label=f"{names.get(name, name)} ({sum(counts)} rows)")
        drawn[name] = [_plain(patch.get_height()) for patch in bars.patches]
    for name in LABEL_NAMES:
        drawn.setdefault(name, [0] * len(histogram[name]))
    ax.set_xscale("function", functions=(np.log1p, np.expm1))
    ax.set_xlim(edges[0], edges[-1])
    ticks = _log1p_ticks(edges[0], edges[-1])
    ax.set_xticks(ticks, [f"{tick:,.0f}" for tick in ticks])
    ax.legend(loc="upper left", frameon=False)
    return drawn


def _draw_splits(ax, splits: Mapping[str, Mapping[str, int]], label_names: Mapping[str, str]) -> dict:
    """Stacked bars per split, desirable below; each part labelled with its count where it has room.
    A label no split holds (SFT's undesirable) is left out of the legend and the ticks."""
    names = list(splits)
    held = [label for label in LABEL_NAMES if any(int(splits[name].get(label, 0)) for name in names)] \
        or [LABEL_NAMES[0]]
    positions = np.arange(len(names))
    totals = np.array([sum(int(splits[name].get(label, 0)) for label in LABEL_NAMES) for name in names])
    top = max(int(totals.max()) if totals.size else 0, 1)
    bottom = np.zeros(len(names))
    drawn: dict = {name: {} for name in names}
    for label in LABEL_NAMES:
        counts = [int(splits[name].get(label, 0)) for name in names]
        bars = ax.bar(positions, counts, bottom=bottom, width=0.6, color=COLORS[label],
                      label=label_names.get(label, label) if label in held else None)
        room = [str(count) if count >= 0.08 * top else "" for count in counts]
        ax.bar_label(bars, labels=room, label_type="center", color="white", fontweight="bold")
        for name, patch in zip(names, bars.patches):
            drawn[name][label] = _plain(patch.get_height())
        bottom += counts
    both = len(held) == 2
    ticks = [f"{name}\n{int(total)} rows" + (f"\n{splits[name].get('desirable', 0)} / "
                                            f"{splits[name].get('undesirable', 0)}" if both else "")
             for name, total in zip(names, totals)]
    ax.set_xticks(positions, ticks)
    ax.set_xlim(-0.75, len(names) - 0.25)
    ax.set_ylim(0, top * 1.25)  # headroom for the legend
    ax.set_ylabel("rows")
    ax.set_xlabel("split (" + " / ".join(label_names.get(label, label) for label in held) + ")" if both else "split")
    ax.set_title("Rows and labels per split")
    if not names:
        ax.text(0.5, 0.5, "no splits", ha="center", va="center", transform=ax.transAxes)
    elif both:
        ax.legend(loc="upper center", ncol=2, frameon=False)
    return drawn


def _label_grid(first_labels: Sequence[bool], batch_size: int) -> np.ndarray:
    """One row per batch: 1.0 desirable, 0.0 undesirable, NaN past the last row."""
    rows = max(math.ceil(len(first_labels) / batch_size), 1)
    grid = np.full(rows * batch_size, np.nan)
    grid[: len(first_labels)] = np.asarray(first_labels, dtype=float)
    return grid.reshape(rows, batch_size)


def _draw_first_batches(ax, matplotlib, first_labels: Sequence[bool], batch_size: int, note: str | None) -> dict:
    """A grid, one line per batch, coloured by label; batches holding one label are marked on the right.
    No labels (SFT, preference pairs): the panel says why there is no batch mix to show."""
    if not first_labels:
        ax.axis("off")
        ax.text(0.5, 0.5, note or "no rows", ha="center", va="center", wrap=True, transform=ax.transAxes)
        return {"cells": [], "one_label_batches": []}
    grid = _label_grid(first_labels, batch_size)
    # False (0) takes the undesirable colour, True (1) the desirable one.
    colormap = matplotlib.colors.ListedColormap([COLORS[name] for name in reversed(LABEL_NAMES)]).with_extremes(
        bad="white")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=colormap, vmin=0, vmax=1, aspect="auto",
                      interpolation="nearest")
    # Complete batches only, as kto.homogeneous_batches counts them: the last line may be cut by the sample.
    single = [index for index, batch in enumerate(grid) if not np.isnan(batch).any() and len(set(batch)) == 1]
    for index in single:
        ax.text(batch_size - 0.4, index, "one label", va="center", ha="left", fontsize=9, fontweight="bold")
    ax.set_xlim(-0.5, batch_size + 1.4)
    ax.set_xticks(np.arange(batch_size + 1) - 0.5, minor=True)
    if len(grid) <= 60:  # cell borders while the cells are big enough to see them
        ax.set_yticks(np.arange(len(grid) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    step = max(1, math.ceil(len(grid) / 20))
    ax.set_yticks(range(0, len(grid), step), [str(index + 1) for index in range(0, len(grid), step)])
    ax.set_xticks(range(batch_size), [str(position + 1) for position in range(batch_size)])
    ax.set_xlabel("position in batch")
    ax.set_ylabel("batch (training order)")
    ax.set_title(f"Labels of the first {len(first_labels)} rows, batches of {batch_size}")
    patches = [matplotlib.patches.Patch(color=COLORS[name], label=name) for name in LABEL_NAMES]
    ax.legend(handles=patches, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    drawn = np.ma.masked_invalid(image.get_array()).astype(float)
    cells = [[None if np.ma.is_masked(value) else bool(value) for value in batch] for batch in drawn]
    return {"cells": cells, "one_label_batches": single}


def _plain(value: float) -> Any:
    """A drawn bar height as JSON would hold it: an int when whole."""
    return int(value) if float(value).is_integer() else float(value)


# --- the figure -------------------------------------------------------------------------------------


def plot_config(
    path: str | os.PathLike,
    *,
    title: str,
    histogram: Mapping,
    splits: Mapping[str, Mapping[str, int]],
    first_labels: Sequence[bool],
    batch_size: int,
    label_names: Mapping[str, str] | None = None,
    note: str | None = None,
) -> dict:
    """Write the config's figure as one PNG; return what each panel drew, read back from the artists:
    {"path", "histogram": {"edges", "desirable", "undesirable"}, "splits": {split: {label: n}},
    "first_labels": {"cells": one list per batch (None past the last row), "one_label_batches": 0-based
    indices of the complete batches marked as holding one label}}.

    `histogram`: `lengths.completion_histogram(...)`, drawn as given. `splits`: {split: {"desirable": n,
    "undesirable": n}}. `first_labels`: the labels of the first rows in training order, drawn in lines
    of `batch_size` (batches KTOTrainer forms in order; a one-label batch has no in-batch KL pairs).
    `label_names` shows the labels by other names (a preference pair's "chosen" and "rejected"), and
    `note` says why `first_labels` is empty. Raises PlotsUnavailable without matplotlib and OptionError
    for inputs that do not fit together.
    """
    label_names = dict(label_names or {})
    _check_histogram(histogram)
    _check_first_labels(first_labels, batch_size)
    matplotlib, Figure, FigureCanvasAgg = _matplotlib()

    with matplotlib.style.context("default"):
        figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(1, 3, gridspec_kw={"width_ratios": [2.2, 1, 1.2]})
        figure.suptitle(title, fontsize=14, fontweight="bold")
        drawn = {
            "path": os.fspath(path),
            "histogram": _draw_histogram(axes[0], histogram, label_names),
            "splits": _draw_splits(axes[1], splits, label_names),
            "first_labels": _draw_first_batches(axes[2], matplotlib, first_labels, batch_size, note),
        }
        figure.savefig(os.fspath(path), format="png", dpi=DPI, metadata=PNG_METADATA)
    return drawn


def draw_figure(path: str, name: str, stats: Mapping, layout: cs.Layout, batch_size: int | None = None) -> bool:
    """The figure of a config in `layout` (reply lengths by label, rows per split, the first batches'
    labels) from its stats; False when matplotlib is missing."""
    train = stats["train"]
    pairs = layout.labels == "pairs"  # a chosen and a rejected reply per row
    splits = {split: numbers for split, numbers in stats.items() if isinstance(numbers, Mapping)}
    try:
        plot_config(
            path,
            title=name,
            histogram=train["completion_histogram"],
            splits={split: {LABEL_NAMES[0]: numbers["rows"]} if pairs else
                    {name: numbers[name] for name in LABEL_NAMES} for split, numbers in splits.items()},
            first_labels=train.get("first_labels", []),
            batch_size=batch_size or 4,
            label_names=layout.label_words,
            note="preference pairs: each row holds both replies" if pairs else "one label: no batch mix to show",
        )
    except PlotsUnavailable:
        return False
    return True
