"""The `claudesidian-synthetic` command, run as users run it (a subprocess)."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
from conftest import PUBLISHED_SHA256, REPO


def run_cli(*args, cache=None, env=None):
    environment = {**os.environ, **(env or {})}
    if cache:
        environment["HF_HOME"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "claudesidian_tools.cli", *args],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("command", [[], ["build"], ["stats"], ["export"], ["push"], ["infos"]])
def test_help(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0 and "usage: claudesidian-synthetic" in result.stdout


def test_build_raw_balanced_254_is_byte_identical_to_the_published_file(source_path, tmp_path):
    out = tmp_path / "balanced.jsonl"
    result = run_cli("build", "balanced_254", "--source", source_path, "--format", "raw", "--out", str(out),
                     cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == PUBLISHED_SHA256
    assert "wrote 508 rows (254 desirable, 254 undesirable)" in result.stderr


def test_build_kto_format_to_stdout(source_path, tmp_path):
    result = run_cli("build", "balanced_custom", "--source", source_path, "--desirable", "30", "--undesirable", "20",
                     "--seed", "7", cache=tmp_path / "hf")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 50 and sum(row["label"] for row in rows) == 30
    assert set(rows[0]) == {"prompt", "completion", "label", "context"}


def test_stats_json_of_balanced_254_reproduces_the_published_figures(source_path, tmp_path):
    result = run_cli("stats", "balanced_254", "--source", source_path, "--json", cache=tmp_path / "hf")
    stats = json.loads(result.stdout)
    assert (stats["rows"], stats["desirable"], stats["undesirable"]) == (508, 254, 254)
    assert stats["first_50"] == {"desirable": 26, "undesirable": 24}
    assert stats["homogeneous_batches"]["4"] == 17  # 17 of 127 batches of 4 hold a single label
    assert stats["kto_weights"] == {"desirable_weight": 1.0, "undesirable_weight": 1.0}


def test_stats_full_mixed_has_no_single_label_batch_of_4(source_path, tmp_path):
    result = run_cli("stats", "--json", "full", "--order", "mixed", "--batch-size", "4", "--source", source_path,
                     cache=tmp_path / "hf")
    stats = json.loads(result.stdout)
    assert stats["homogeneous_batches"]["4"] == 0 and stats["rows"] == 1000 and stats["duplicates"] == 19
    assert stats["homogeneous_batches"]["8"] == 0


def test_stats_text(source_path, tmp_path):
    result = run_cli("stats", "full", "--source", source_path, "--batch-size", "16", cache=tmp_path / "hf")
    assert "rows                 1000" in result.stdout and "16: " in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "full", "--source", "/nonexistent.jsonl"], "no such file"),
        (["build", "balanced_custom", "--ratio", "-1"], "ratio=-1.0: must be a number above 0"),
        (["stats", "full", "--order", "mixed", "--batch-size", "3"], "smallest batch size that works is 4"),
        (["build", "balanced_254", "--seed", "3"], "use name='balanced_custom'"),
    ],
)
def test_errors_are_one_line_and_exit_2(source_path, tmp_path, args, message):
    if "--source" not in args:
        args = [*args, "--source", source_path]
    result = run_cli(*args, cache=tmp_path / "hf")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("claudesidian-synthetic: error: ") and message in last
    assert "Traceback" not in result.stderr


def test_bad_line_error_names_file_and_line(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"conversations": [], "label": true}\n', encoding="utf-8")
    result = run_cli("build", "balanced_custom", "--source", str(source), cache=tmp_path / "hf")
    assert result.returncode == 2 and f"{source}, line 1: " in result.stderr and "Traceback" not in result.stderr


def test_failed_build_leaves_no_output_file(tmp_path):
    out = tmp_path / "out.jsonl"
    result = run_cli("build", "full", "--source", "/nonexistent.jsonl", "--out", str(out))
    assert result.returncode == 2 and not out.exists()
