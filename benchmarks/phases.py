"""Where a 100k-row `balanced_custom` build spends its time, phase by phase, next to the json loader's engine.

One process, `--repeats` fresh caches, medians in seconds. The builder's phases are timed by wrapping
its public methods (nothing else changes): the source hash that keys the cache (`__init__`), the strict
scan of every line (`plan_splits`), reading and decoding the selected lines (`iter_examples`), and
`datasets`' writer (the rest of the build).
Python's garbage-collector pauses are counted too (they happen inside those phases, mostly while
examples wait in the writer's batch). The same build with the per-line checks skipped shows what the
strictness costs. The floors are the same work without the builder: `json` decoding of every line,
and pyarrow's multithreaded JSON reader, which `load_dataset("json")` uses.

    python benchmarks/phases.py                                 # 100,000 rows, 3 repeats, printed only
    python benchmarks/phases.py --out benchmarks/phases.json    # the committed profile
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from benchmarks.benchmark import generate_source, require_the_package  # noqa: E402 (the standard library only)

require_the_package("phases.py")  # a Python without the package: say what to run, not a traceback

import datasets  # noqa: E402
import pyarrow.json  # noqa: E402

import claudesidian_synthetic as cs  # noqa: E402


def timed_build(source: str, cache: str) -> dict:
    """Seconds per phase of one `load("balanced_custom")` into an empty cache."""
    phases = ("builder init (sha256 cache key)", "scan: check every line", "selected lines: read+decode",
              "datasets writer")
    spent = dict.fromkeys(phases, 0.0)
    builder_class = cs.ClaudesidianSynthetic
    originals = {name: getattr(builder_class, name) for name in ("__init__", "plan_splits", "iter_examples")}

    def wrap(name, phase):
        def timed(self, *args, **kwargs):
            start = time.perf_counter()
            result = originals[name](self, *args, **kwargs)
            spent[phase] += time.perf_counter() - start
            return result
        return timed

    def timed_generation(self, *args, **kwargs):
        rows = originals["iter_examples"](self, *args, **kwargs)
        while True:
            start = time.perf_counter()
            try:
                row = next(rows)
            except StopIteration:
                break
            finally:
                spent["selected lines: read+decode"] += time.perf_counter() - start
            yield row

    patches = {"__init__": wrap("__init__", "builder init (sha256 cache key)"),
               "plan_splits": wrap("plan_splits", "scan: check every line"),
               "iter_examples": timed_generation}
    pause_started = []

    def count_gc(phase, info):
        if phase == "start":
            pause_started.append(time.perf_counter())
        else:
            spent["python gc pauses (within the above)"] += time.perf_counter() - pause_started.pop()

    spent["python gc pauses (within the above)"] = 0.0
    with contextlib.ExitStack() as stack:
        gc.callbacks.append(count_gc)
        stack.callback(gc.callbacks.remove, count_gc)
        for name, patch in patches.items():
            setattr(builder_class, name, patch)
            stack.callback(setattr, builder_class, name, originals[name])
        start = time.perf_counter()
        rows = len(cs.load("balanced_custom", split="train", source=source, cache_dir=cache))
        spent["total load()"] = time.perf_counter() - start
    spent["datasets writer"] = spent["total load()"] - sum(spent[phase] for phase in phases[:3])
    spent["rows"] = rows
    return spent


def unchecked_build(source: str, cache: str) -> float:
    """Seconds of the same `load()` with the per-line schema checks skipped (each line only decoded):
    what the strictness costs."""
    parse_line, decoder = cs.parse_line, json.JSONDecoder()
    cs.parse_line = lambda line, path, number: decoder.raw_decode(line.decode("utf-8"))[0]
    try:
        start = time.perf_counter()
        cs.load("balanced_custom", split="train", source=source, cache_dir=cache)
        return time.perf_counter() - start
    finally:
        cs.parse_line = parse_line


def floors(source: str) -> dict:
    """The same file without the builder: Python's json on every line, and pyarrow's reader."""
    start = time.perf_counter()
    with open(source, "rb") as file:
        for line in file:
            json.loads(line)
    decoded = time.perf_counter() - start
    start = time.perf_counter()
    pyarrow.json.read_json(source)
    return {"json.loads of every line": decoded, "pyarrow.json.read_json (threads)": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="write the profile (JSON) to this file; without it it is only printed")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as temp:
        source = os.path.join(temp, "scale.jsonl")
        generate_source(pathlib.Path(source), args.rows)
        for repeat in range(args.repeats):
            runs.append({
                **timed_build(source, os.path.join(temp, f"cache-{repeat}")),
                "total load(), line checks skipped": unchecked_build(source, os.path.join(temp, f"unchecked-{repeat}")),
                **floors(source),
            })
    report = {
        "rows_source": args.rows,
        "cpus": os.cpu_count(),
        "datasets": datasets.__version__,
        "median_s": {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]},
    }
    for key, value in report["median_s"].items():
        print(f"{key:<36} {value:>8}")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
