"""The config figure (claudesidian_tools.plots): a valid, deterministic PNG of exactly the numbers it is given."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, char_columns

import claudesidian_synthetic as cs
from claudesidian_tools.kto import homogeneous_batches
from claudesidian_tools.lengths import completion_histogram
from claudesidian_tools.plots import PlotsUnavailable, plot_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTOGRAM = {"scale": "log1p", "edges": [5.0, 50.0, 500.0, 5000.0], "desirable": [1, 4, 9], "undesirable": [2, 7, 3]}
SPLITS = {"train": {"desirable": 14, "undesirable": 9}, "test": {"desirable": 2, "undesirable": 3}}
FIRST_LABELS = [True, False, True, True, False, False, True]


def need_matplotlib() -> None:
    """Skip without the [plots] extra; in CI, which installs it, fail instead."""
    if importlib.util.find_spec("matplotlib") is None:
        if os.environ.get("CI"):
            pytest.fail("the figure tests need the [plots] extra (matplotlib)")
        pytest.skip("the figure tests need the [plots] extra (matplotlib)")


def _plot(path, **changes):
    need_matplotlib()
    options = {"title": "test figure", "histogram": HISTOGRAM, "splits": SPLITS, "first_labels": FIRST_LABELS,
               "batch_size": 3, **changes}
    return plot_config(path, **options)


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_png_is_valid_and_matplotlib_reads_it_back(tmp_path):
    _plot(tmp_path / "figure.png")
    data = (tmp_path / "figure.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and b"IEND" in data[-12:]
    import matplotlib.image

    pixels = matplotlib.image.imread(tmp_path / "figure.png")
    assert pixels.shape == (480, 1500, 4)  # 15 x 4.8 inches at 100 DPI, RGBA
    assert pixels[..., :3].std() > 0.05  # something was drawn


def test_two_renders_are_byte_identical(tmp_path):
    """Twice in this process and once in a fresh one (no state, font cache or clock in the bytes)."""
    _plot(tmp_path / "a.png")
    _plot(tmp_path / "b.png")
    result = _run_python(f"""
from claudesidian_tools import plots
plots.plot_config({str(tmp_path / "c.png")!r}, title="test figure", histogram={HISTOGRAM!r}, splits={SPLITS!r},
                  first_labels={FIRST_LABELS!r}, batch_size=3)
""")
    assert result.returncode == 0, result.stderr
    data = (tmp_path / "a.png").read_bytes()
    assert data == (tmp_path / "b.png").read_bytes() == (tmp_path / "c.png").read_bytes()
    assert b"matplotlib" not in data.lower()  # no Software / version metadata in the bytes


def test_the_bars_drawn_are_the_numbers_given(tmp_path):
    drawn = _plot(tmp_path / "figure.png")
    assert drawn["histogram"] == {"edges": HISTOGRAM["edges"], "desirable": [1, 4, 9], "undesirable": [2, 7, 3]}
    assert drawn["splits"] == SPLITS
    assert drawn["first_labels"] == {"cells": [[True, False, True], [True, False, False], [True, None, None]],
                                     "one_label_batches": []}
    assert drawn["path"] == str(tmp_path / "figure.png")
    assert json.loads(json.dumps(drawn)) == drawn


def test_the_figure_of_a_real_config_shows_its_histogram(tmp_path, source_path):
    dataset = cs.load("balanced_254", split="train", source=source_path)
    labels, _, reply_chars = char_columns(dataset)
    labels = labels.tolist()
    histogram = completion_histogram(labels, reply_chars)
    drawn = _plot(tmp_path / "balanced_254.png", title="balanced_254", histogram=histogram,
                  splits={"train": {"desirable": 254, "undesirable": 254}}, first_labels=labels[:48], batch_size=4)
    assert drawn["histogram"] == {key: histogram[key] for key in ("edges", "desirable", "undesirable")}
    assert [label for batch in drawn["first_labels"]["cells"] for label in batch] == labels[:48]
    marked = drawn["first_labels"]["one_label_batches"]
    assert len(marked) == homogeneous_batches(labels[:48], 4) >= 1  # balanced_254's 6th batch holds one label
    assert all(len(set(labels[4 * index : 4 * index + 4])) == 1 for index in marked)


def test_only_complete_batches_are_marked_as_one_label(tmp_path):
    # Batch 1 holds one label; the last line (one row shown of a batch of 3) is not a whole batch.
    drawn = _plot(tmp_path / "figure.png", first_labels=[True, True, True, True, False, False, True])
    assert drawn["first_labels"]["one_label_batches"] == [0]


def test_an_empty_histogram_still_draws(tmp_path):
    drawn = _plot(tmp_path / "empty.png", histogram=completion_histogram([], []), first_labels=[])
    assert drawn["histogram"] == {"edges": [], "desirable": [], "undesirable": []}
    assert (tmp_path / "empty.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"histogram": {**HISTOGRAM, "desirable": [1, 2]}}, "4 edges need 3 counts per label"),
        ({"histogram": {"edges": [1, 2]}}, "lengths.completion_histogram"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"first_labels": [1, 0]}, "first_labels: must be booleans"),
    ],
)
def test_inputs_that_do_not_fit_are_one_option_error(tmp_path, changes, match):
    with pytest.raises(cs.OptionError, match=match):
        _plot(tmp_path / "figure.png", **changes)
    assert not (tmp_path / "figure.png").exists()


def test_without_matplotlib_one_error_says_how_to_get_the_figures(tmp_path):
    target = tmp_path / "figure.png"
    code = f"""
import sys
sys.modules["matplotlib"] = None  # as if the [plots] extra were not installed
from claudesidian_tools import plots
assert plots.plots_available() is False
try:
    plots.plot_config({str(target)!r}, title="t", histogram={HISTOGRAM!r}, splits={{}}, first_labels=[],
                      batch_size=4)
except plots.PlotsUnavailable as error:
    assert isinstance(error, ImportError) and isinstance(error, ValueError)
    print(error)
"""
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "figures skipped: install the plots extra (in the repository's clone: pip install '.[plots]')"
    )
    assert not target.exists()
    assert issubclass(PlotsUnavailable, cs.ClaudesidianError)  # the CLI prints it as its one error line


def test_drawing_never_touches_pyplot_or_a_display(tmp_path):
    need_matplotlib()
    code = f"""
import sys
from claudesidian_tools import plots
plots.plot_config({str(tmp_path / "figure.png")!r}, title="t", histogram={HISTOGRAM!r}, splits={SPLITS!r},
                  first_labels={FIRST_LABELS!r}, batch_size=3)
print("matplotlib.pyplot" in sys.modules)
"""
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
