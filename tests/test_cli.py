"""The `claudesidian-synthetic` command, run as users run it (a subprocess)."""

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest
from conftest import PUBLISHED_SHA256, REPO

import claudesidian_synthetic as cs


def run_cli(*args, cache=None, env=None):
    environment = {**os.environ, **(env or {})}
    if cache:
        environment["HF_HOME"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "claudesidian_tools.cli", *args],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=300,
    )


def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("command", [[], ["build"], ["stats"], ["export"], ["push"], ["infos"]])
def test_help(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0 and "usage: claudesidian-synthetic" in result.stdout


def test_help_shows_the_defaults():
    text = " ".join(run_cli("build", "--help").stdout.split())
    for default in ("(default: 42, the published one)", "(default: main)", "(default: train)", "(default: kto)",
                    "(default: source for full, shuffle otherwise)", "(default: stdout)"):
        assert default in text


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"claudesidian-synthetic {cs.__version__}"


@pytest.mark.parametrize("layout", [["--format", "raw"], ["--layout", "conversations"]])
def test_build_balanced_254_in_the_published_layout_is_byte_identical_to_the_published_file(
    source_path, tmp_path, layout
):
    out = tmp_path / "balanced.jsonl"
    result = run_cli("build", "balanced_254", "--source", source_path, *layout, "--out", str(out),
                     cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == PUBLISHED_SHA256
    assert "wrote 508 train rows (254 desirable, 254 undesirable)" in result.stderr


def test_out_file_mode_follows_the_umask(source_path, tmp_path):
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "b.jsonl"
    code = ("import os, sys; os.umask(0o027); from claudesidian_tools.cli import main; "
            f"sys.exit(main(['build', 'balanced_254', '--source', {source_path!r}, '--out', {str(out)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert os.listdir(tmp_path / "out") == ["b.jsonl"]  # no temporary file left beside it


def test_build_kto_format_to_stdout(source_path, tmp_path):
    result = run_cli("build", "balanced_custom", "--source", source_path, "--desirable", "30", "--undesirable", "20",
                     "--seed", "7", cache=tmp_path / "hf")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 50 and sum(row["label"] for row in rows) == 30
    assert list(rows[0]) == ["prompt", "completion", "label", "context"]


def test_build_the_test_split(source_path, tmp_path):
    result = run_cli("build", "full", "--source", source_path, "--test-size", "0.1", "--split", "test",
                     cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 100 and "wrote 100 test rows" in result.stderr


def test_stats_json_of_balanced_254_reproduces_the_published_figures(source_path, tmp_path):
    result = run_cli("stats", "balanced_254", "--source", source_path, "--json", cache=tmp_path / "hf")
    stats = json.loads(result.stdout)
    assert list(stats) == ["train"]
    train = stats["train"]
    assert (train["rows"], train["desirable"], train["undesirable"]) == (508, 254, 254)
    assert train["first_50"] == {"desirable": 26, "undesirable": 24}  # the seed README's figure
    assert train["homogeneous_batches"]["4"] == 17  # 17 of 127 batches of 4 hold a single label
    assert train["kto_weights"] == {"desirable_weight": 1.0, "undesirable_weight": 1.0}


def test_stats_full_mixed_has_no_single_label_batch_of_4(source_path, tmp_path):
    result = run_cli("stats", "--json", "full", "--order", "mixed", "--batch-size", "4", "--source", source_path,
                     cache=tmp_path / "hf")
    train = json.loads(result.stdout)["train"]
    assert train["homogeneous_batches"]["4"] == 0 and train["rows"] == 1000 and train["duplicates"] == 19
    assert train["homogeneous_batches"]["8"] == 0


def test_stats_reports_each_split_and_the_prompts_they_share(source_path, tmp_path):
    result = run_cli("stats", "full", "--test-size", "0.1", "--source", source_path, "--json", cache=tmp_path / "hf")
    stats = json.loads(result.stdout)
    assert stats["shared_prompts"] == 0
    assert stats["train"]["rows"] + stats["test"]["rows"] == 1000
    text = run_cli("stats", "full", "--test-size", "0.1", "--source", source_path, cache=tmp_path / "hf").stdout
    assert "[train]" in text and "[test]" in text and "prompts shared by splits 0" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "full", "--source", "/nonexistent.jsonl"], "no such file"),
        (["build", "balanced_custom", "--ratio", "-1"], "ratio=-1.0: must be a number above 0"),
        (["stats", "full", "--order", "mixed", "--batch-size", "3"], "smallest batch size that works is 4"),
        (["build", "balanced_254", "--seed", "3"], "use name='balanced_custom'"),
        (["build", "full", "--batch-size", "4"], "batch_size only applies to order='mixed'"),
        (["build", "full", "--seed", "7"], "seed=7 has no effect on 'full' in source order"),
        (["build", "full", "--test-size", "0"], "test_size=0: give a fraction"),
        (["build", "full", "--test-size", "1.0"], "test_size=1.0: give a fraction"),
        (["build", "full", "--test-size", "-3"], "test_size=-3: give a fraction"),
        (["build", "full", "--test-size", "1000"], "asks for 1000 of the 1000 source rows"),
        (["build", "full", "--test-size", "1"], "leaves the test split with one label"),
        (["build", "balanced_254", "--test-size", "0.1"], "it is the published file"),
        (["build", "full", "--split", "test"], "a test split needs --test-size"),
        (["build", "full", "--format", "raw", "--layout", "kto"], "disagree"),
        (["build", "full", "--out", "/nonexistent-folder/x.jsonl"], "the folder /nonexistent-folder does not exist"),
    ],
)
def test_errors_are_one_line_and_exit_2(source_path, tmp_path, args, message):
    if "--source" not in args:
        args = [*args, "--source", source_path]
    result = run_cli(*args, cache=tmp_path / "hf")
    assert result.returncode == 2
    assert last_line(result).startswith("claudesidian-synthetic: error: ") and message in last_line(result)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "full", "--order", "mixed", "--batch-size", "8", "--batch-size", "4"], "--batch-size given twice"),
        (["build", "full", "--layout", "chatml"], "invalid choice: 'chatml'"),
        (["build", "full", "--test-size", "a tenth"], "neither a fraction"),
    ],
)
def test_usage_errors_exit_2(source_path, tmp_path, args, message):
    result = run_cli(*args, "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 2 and message in last_line(result)


def test_a_folder_as_source_says_so(tmp_path):
    result = run_cli("build", "full", "--source", str(tmp_path), cache=tmp_path / "hf")
    assert result.returncode == 2 and "is a folder, not a file" in last_line(result)


def test_bad_line_error_names_file_and_line(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"conversations": [], "label": true}\n', encoding="utf-8")
    result = run_cli("build", "balanced_custom", "--source", str(source), cache=tmp_path / "hf")
    assert result.returncode == 2 and f"{source}, line 1: " in result.stderr and "Traceback" not in result.stderr


def test_failed_build_leaves_no_output_file(tmp_path):
    out = tmp_path / "out.jsonl"
    result = run_cli("build", "full", "--source", "/nonexistent.jsonl", "--out", str(out))
    assert result.returncode == 2 and not out.exists()
