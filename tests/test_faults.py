"""Faults that happen on shared training boxes: killed builds, concurrent loads, mutated sources."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, as_source_rows, generate_source
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import claudesidian_synthetic as cs
from benchmarks import benchmark


def _python(code: str, cache, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HOME": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets"),
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


@pytest.mark.slow
def test_build_killed_midway_leaves_no_half_dataset(tmp_path):
    source = tmp_path / "big.jsonl"
    generate_source(source, 100_000)
    cache = tmp_path / "hf"
    code = f"import claudesidian_synthetic as cs\ncs.load('balanced_custom', source={str(source)!r})"
    process = _python(code, cache)
    deadline = time.monotonic() + 240
    while not any(path.name.endswith(".incomplete") for path in cache.rglob("*")):  # generation has begun
        assert process.poll() is None and time.monotonic() < deadline, "the build ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    check = (
        f"import json, claudesidian_synthetic as cs\n"
        f"d = cs.load('balanced_custom', split='train', source={str(source)!r})\n"
        f"print(json.dumps([len(d), list(d['label'])]))"
    )
    result = _python(check, cache)
    out, err = result.communicate(timeout=300)
    assert result.returncode == 0, err
    rows, labels = json.loads(out)
    scan = cs.scan_source(str(source))
    minority = min(int(scan.labels.sum()), int((~scan.labels).sum()))
    assert rows == 2 * minority
    config = cs.ClaudesidianSyntheticConfig(name="balanced_custom")
    assert labels == scan.labels[cs.plan_rows(scan, config).splits["train"]].tolist()


def test_two_processes_loading_into_one_empty_cache(tmp_path, source_path, published_rows):
    code = (
        "import json, claudesidian_synthetic as cs\n"
        f"d = cs.load('balanced_254', split='train', source={source_path!r})\n"
        "print(json.dumps([{'conversations': r['prompt'] + r['completion'], 'label': r['label'], "
        "'context': r['context']} for r in d]))"
    )
    first, second = _python(code, tmp_path / "hf"), _python(code, tmp_path / "hf")
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    assert first.returncode == second.returncode == 0, outputs
    assert json.loads(outputs[0][0]) == json.loads(outputs[1][0]) == published_rows


MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 2000)),
    st.tuples(st.just("insert"), st.integers(0, 2000), st.binary(min_size=1, max_size=3)),
    st.tuples(st.just("label"), st.sampled_from(["true", "false", '"true"', "1", "0", "null", "[]", "{}"])),
    st.tuples(st.just("drop_key"), st.sampled_from(["conversations", "label", "context"])),
    st.tuples(st.just("whitespace"), st.sampled_from([" ", "\t", "\r", "\x0b", "\x0c"])),
)


def _mutate(line: bytes, mutation) -> bytes:
    kind = mutation[0]
    if kind == "truncate":
        return line[: mutation[1] % (len(line) + 1)]
    if kind == "insert":
        at = mutation[1] % (len(line) + 1)
        return line[:at] + mutation[2] + line[at:]
    row = json.loads(line)
    if kind == "label":
        row["label"] = json.loads(mutation[1])
    elif kind == "drop_key":
        row.pop(mutation[1], None)
    else:
        return mutation[1].encode() + line + mutation[1].encode()
    return json.dumps(row).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, 59), mutation=MUTATIONS)
def test_mutated_source_gives_the_exact_rows_or_a_named_line(tmp_path, source_path, index, mutation):
    with open(source_path, "rb") as file:
        lines = [file.readline().rstrip(b"\n") for _ in range(60)]
    mutated = list(lines)
    mutated[index] = _mutate(lines[index], mutation)
    path = tmp_path / "mutated.jsonl"
    path.write_bytes(b"\n".join(mutated) + b"\n")
    try:
        scan = cs.scan_source(str(path))
    except cs.ClaudesidianError as error:
        assert isinstance(error, cs.SourceError) and error.line == index + 1, error
        return
    blank = not mutated[index].strip()
    assert len(scan.labels) == 60 - blank  # only a line mutated into a blank one may vanish
    expected = [json.loads(line)["label"] for line in mutated if line.strip()]
    assert scan.labels.tolist() == expected


BENIGN = st.sampled_from(["keys reversed", "spaces", "crlf", "ascii escapes", "null context", "as is"])


def _rewrite(line: bytes, how: str) -> bytes:
    """The same row written another way JSON allows."""
    row = json.loads(line)
    if how == "keys reversed":
        return json.dumps(dict(reversed(list(row.items())))).encode()
    if how == "spaces":
        return b" \t" + json.dumps(row, indent=1).replace("\n", " ").encode() + b"  "
    if how == "crlf":
        return line + b"\r"
    if how == "ascii escapes":
        return json.dumps(row, ensure_ascii=True).encode()
    if how == "null context":
        return json.dumps({**row, "context": row.get("context")}).encode()
    return line


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picked=st.lists(st.tuples(st.integers(0, 999), BENIGN), min_size=2, max_size=40))
def test_rows_written_any_way_json_allows_are_read_back_exactly(tmp_path, source_rows, source_path, picked):
    """Any sample of source lines, each rewritten the way JSON allows, builds exactly the parsed rows."""
    with open(source_path, "rb") as file:
        lines = file.read().splitlines()
    path = tmp_path / "sample.jsonl"
    path.write_bytes(b"\n".join(_rewrite(lines[index], how) for index, how in picked) + b"\n")
    expected = [{**source_rows[index], "context": source_rows[index].get("context")} for index, _ in picked]
    labels = [row["label"] for row in expected]
    if all(labels) or not any(labels):
        return  # a balanced config needs both labels (tested elsewhere)
    dataset = cs.load("balanced_custom", split="train", source=str(path), order="source",
                      desirable=sum(labels), undesirable=len(labels) - sum(labels))
    assert as_source_rows(dataset) == expected


def _run_at_10k_rows(script: str, tmp_path, *options: str) -> dict:
    """Run one benchmarks/ script once on a 10k-row source and return the JSON it writes, the only file
    it writes: the tracked results stay as they are."""
    out = tmp_path / "out.json"
    tracked = {path: path.read_bytes() for path in (REPO / "benchmarks").glob("*.json")}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--rows", "10000", "--repeats", "1", *options,
         "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert {path: path.read_bytes() for path in (REPO / "benchmarks").glob("*.json")} == tracked
    assert [path.name for path in tmp_path.iterdir()] == ["out.json"]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_benchmark_smoke_at_10k_rows(tmp_path):
    report = _run_at_10k_rows("benchmark.py", tmp_path, "--runs", "2")
    assert report["rows_scale"] == 10_000 and len(report["ratios"]) == 7 and len(report["runs"]) == 2
    for index, row in enumerate(report["ratios"]):
        in_runs = [run["ratios"][index] for run in report["runs"]]
        assert row["medians"] == [ratio["median"] for ratio in in_runs]
        assert row["spreads"] == [[ratio["lowest"], ratio["highest"]] for ratio in in_runs]
        assert all(0 < ratio["lowest"] <= ratio["median"] <= ratio["highest"] for ratio in in_runs)
        assert row["met"] == all(median <= row["target_at_most"] for median in row["medians"])
    rounds = report["runs"][0]["rounds"]
    assert set(rounds) >= {"small_fresh_builder", "small_fresh_json", "scale_fresh_naive"}
    assert {len(run["wall_s"]) for name, run in rounds.items() if name.startswith("small")} == {3}
    assert {len(run["wall_s"]) for name, run in rounds.items() if name.startswith("scale")} == {1}


@pytest.mark.slow
def test_benchmarks_write_only_where_asked(tmp_path):
    assert benchmark.parse_args([]).out is None and benchmark.parse_args([]).runs == 3
    tracked = {path: path.read_bytes() for path in (REPO / "benchmarks").glob("*.json")}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "phases.py"), "--rows", "500", "--repeats", "1"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "total load()" in result.stdout and "wrote" not in result.stdout
    assert {path: path.read_bytes() for path in (REPO / "benchmarks").glob("*.json")} == tracked
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script", ["benchmark.py", "phases.py", "against.py"])
def test_benchmarks_without_the_package_say_what_to_run(script, tmp_path):
    # -S: this Python without its site-packages, like a system python3 beside the project's .venv
    result = subprocess.run([sys.executable, "-S", str(REPO / "benchmarks" / script)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("benchmarks need the package installed: .venv/bin/pip install -e . then "
                                    f".venv/bin/python benchmarks/{script} (")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "said"), [
    (["{missing}"], "not a folder"),
    (["{here}", "--repeats", "0"], "--repeats: 0: give 1 or more"),
    (["{here}", "--python", "{missing}"], "does not exist; give the other checkout's interpreter"),
    (["{here}", "--python", "{here}/README.md"], "README.md cannot be run (Permission denied)"),
    (["{here}", "--python", "{bare}"], "cannot import the package in"),
    (["{here}", "--out", "{missing}/x.json"], "its folder does not exist"),
])
def test_the_comparison_with_another_checkout_refuses_bad_input_in_one_line(args, said, tmp_path):
    bare = tmp_path / "bare-python"  # a Python without the package, as far as the script can tell
    bare.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'datasets'\" >&2\nexit 1\n")
    bare.chmod(0o755)
    args = [arg.format(missing=tmp_path / "nothing", here=REPO, bare=bare) for arg in args]
    (tmp_path / "cwd").mkdir()
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "against.py"), *args], cwd=tmp_path / "cwd",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert said in last and "Traceback" not in result.stderr, result.stderr
    assert list((tmp_path / "cwd").iterdir()) == []


def _quoted_run(cell: str) -> list:
    """'1.103x (1.021-1.215)' -> [1.103, 1.021, 1.215]"""
    median, spread = cell.split("x (")
    return [float(median), *map(float, spread.rstrip(")").split("-"))]


def test_readme_quotes_the_committed_benchmark_results():
    """The README's table is the committed results file: every run's median and spread, in order, and
    the target met (in every run) or missed."""
    committed = json.loads((REPO / "benchmarks" / "results.json").read_text(encoding="utf-8"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| comparison | run 1 |") :].split("\n\n")[0].splitlines()
    assert table[0].count("| run ") == len(committed["runs"]) == 3
    quoted, expected = [], []
    assert len(table[2:]) == len(committed["ratios"]) == 7
    for line, row in zip(table[2:], committed["ratios"]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        quoted.append(([_quoted_run(cell) for cell in cells[1:-1]], cells[-1]))
        met = "met in every run" if row["met"] else "missed"
        assert len(row["medians"]) == len(row["spreads"])
        expected.append(([[median, *spread] for median, spread in zip(row["medians"], row["spreads"])],
                         f"<= {row['target_at_most']:g} ({met})"))
    assert quoted == expected


def test_readme_quotes_the_committed_million_row_results():
    """The README's 1M-row table is the committed results file, figure for figure."""
    million = json.loads((REPO / "benchmarks" / "results.json").read_text(encoding="utf-8"))["million_rows"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| 1M-row case |") :].split("\n\n")[0].splitlines()[2:]
    assert len(table) == 3
    for line, case in zip(table, ("build", "export", "stream")):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        small, large = million["medians"][f"{case}_100000"], million["medians"][f"{case}_1000000"]
        assert cells[1:5] == [f"{small['wall_s']:.1f} s", f"{small['peak_rss_mib']:.0f} MiB",
                              f"{large['wall_s']:.1f} s", f"{large['peak_rss_mib']:.0f} MiB"]
        ratio = million["ratios"][f"{case}: 1M / 100k peak_rss_mib"]
        assert cells[5].startswith(f"{ratio:.3f}x")
        target = benchmark.million_targets(million["ratios"]).get(case)
        assert million["targets"].get(case) == target
        if target:
            met = "met" if target["met"] else "missed"
            assert cells[5].startswith(f"{ratio:.3f}x (target <= {target['peak_rss_1m_over_100k_at_most']}, {met})")
    # The 1M build against the json loader on the same file, in each run.
    compared = million["build_vs_json_1m"]
    [line] = readme[readme.index("| 1M-row comparison |") :].split("\n\n")[0].splitlines()[2:]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert [_quoted_run(cell) for cell in cells[1:4]] == [[median, *spread] for median, spread in
                                                          zip(compared["medians"], compared["spreads"])]
    assert cells[4] == f"<= {compared['target_at_most']:g} ({'met in every run' if compared['met'] else 'missed'})"
    assert compared["met"] == all(median <= benchmark.BUILD_VS_JSON_1M for median in compared["medians"])


def test_readme_quotes_the_committed_comparison_with_the_code_before():
    """The README's table of this checkout against the code before is the committed file, figure for figure."""
    against = json.loads((REPO / "benchmarks" / "against.json").read_text(encoding="utf-8"))["results"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| case | rows | wall time, this / before |") :].split("\n\n")[0].splitlines()[2:]
    names = {"build": "`balanced_custom` build", "build_with_test": "the same with `test_size=0.1`",
             "export": "sharded export"}
    expected = [(names[case], f"{int(size):,}", figures) for size, cases in against.items()
                for case, figures in cases.items()]
    assert len(table) == len(expected) == 5
    for line, (name, size, figures) in zip(table, expected):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[:2] == [name, size] and len(cells) == 4
        for cell, key, unit in zip(cells[2:], ("wall_s", "peak_rss_mib"), ("s", "MiB")):
            figure = figures[key]
            spread = f"{figure['ratio_lowest']:.3f}-{figure['ratio_highest']:.3f}"
            assert cell == (f"{figure['this_median']:g} {unit} / {figure['other_median']:g} {unit}: "
                            f"{figure['ratio_median']:.3f}x ({spread})")
    runs = json.loads((REPO / "benchmarks" / "against.json").read_text(encoding="utf-8"))["runs"]
    exports = [run["100000"]["export"]["wall_s"] for run in runs]
    met = "met" if all(ratio <= 0.8 for ratio in exports) else "missed"
    said = " ".join(readme.split())
    assert (f"The sharded 100k export, this over 304f452 in each run: {', '.join(f'{ratio:.3f}x' for ratio in exports)}"
            f" (target at most 0.8x: {met})") in said


def test_readme_quotes_the_committed_phase_profile():
    """Each phase the README names is quoted with the committed profile's median."""
    median = json.loads((REPO / "benchmarks" / "phases.json").read_text(encoding="utf-8"))["median_s"]
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    for words, phase in (("the digest of the source that keys the cache", "builder init (source digest for the "
                                                                          "cache key)"),
                         ("the strict scan of every line", "scan: check every line"),
                         ("reading and decoding the selected lines", "selected lines: read+decode"),
                         ("`datasets`' Arrow writer", "datasets writer"), ("total", "total load()"),
                         ("decodes every line in", "json.loads of every line"),
                         ("typed rows in", "msgspec typed decode of every line"),
                         ("reads the file in", "pyarrow.json.read_json (threads)")):
        assert f"{words} {median[phase]:g}" in readme, phase


@pytest.mark.slow
def test_phase_profile_smoke_at_10k_rows(tmp_path):
    median = _run_at_10k_rows("phases.py", tmp_path)["median_s"]
    phases = ("builder init (source digest for the cache key)", "scan: check every line",
              "selected lines: read+decode", "datasets writer")
    assert median["rows"] % 2 == 0 and 0 < median["rows"] < 10_000  # a balanced subset of the source
    assert 0 < sum(median[phase] for phase in phases) <= median["total load()"] + 0.01
    assert 0 <= median["python gc pauses (within the above)"] < median["total load()"]
    assert median["msgspec typed decode of every line"] > 0 and median["json.loads of every line"] > 0


def _source_with_text_of(path, extra_bytes: int, rows: int = 2000) -> int:
    """`rows` rows, 3 desirable per undesirable, each reply padded with `extra_bytes` of text; returns
    the number of desirable rows."""
    with open(path, "w", encoding="utf-8") as file:
        for index in range(rows):
            reply = f"answer {index} " + "tool_call " * (extra_bytes // 10)
            row = {"conversations": [{"role": "user", "content": f"question {index}"},
                                     {"role": "assistant", "content": reply}], "label": index % 4 != 0}
            file.write(json.dumps(row) + "\n")
    return sum(index % 4 != 0 for index in range(rows))


@pytest.mark.slow
def test_memory_follows_selected_rows_not_the_text_of_the_others(tmp_path):
    # The same 2,000 rows twice; in `long` every reply carries 25 KB more text, about 50 MB in all.
    paths = {name: tmp_path / f"{name}.jsonl" for name in ("short", "long")}
    desirable = {name: _source_with_text_of(path, 25_000 if name == "long" else 0) for name, path in paths.items()}
    assert paths["long"].stat().st_size > 50_000_000
    few = "desirable=20, undesirable=20"
    peaks = {}
    for name, path in paths.items():
        every_row_streamed = f"desirable={desirable[name]}, undesirable={2000 - desirable[name]}, order='source'"
        built = f"d = cs.load('balanced_custom', split='train', source={str(path)!r}, {few})\nassert len(d) == 40"
        streamed = (f"d = cs.load('balanced_custom', split='train', source={str(path)!r}, {every_row_streamed}, "
                    f"streaming=True)\nassert sum(1 for _ in d) == 2000")
        for case, code in (("40 of 2000 rows", built), ("all 2000 rows streamed", streamed)):
            _, peaks[case, name] = benchmark.measure(f"import claudesidian_synthetic as cs\n{code}", tmp_path / name)
    for case in ("40 of 2000 rows", "all 2000 rows streamed"):
        grew = peaks[case, "long"] - peaks[case, "short"]
        assert grew < 15, f"{case}: peak RSS grew {grew:.1f} MiB with 50 MB more unselected/streamed text"
