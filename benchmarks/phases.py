"""Where a 100k-row `balanced_custom` build spends its time, phase by phase, next to the json loader's engine.

One process, `--repeats` fresh caches, medians in seconds. The builder's phases are timed by wrapping
its public methods (nothing else changes): the source digest that keys the cache (`__init__`), the strict
scan of every line (`plan_splits`), reading and decoding the selected lines (`iter_examples`), and
`datasets`' writer (the rest of the build).
Python's garbage-collector pauses are counted too (they happen inside those phases, mostly while
examples wait in the writer's batch). The floors are the same decoding without the builder: Python's
`json` on every line, msgspec decoding every line into the typed rows the scan checks them as (the
checks are that decoding), and pyarrow's multithreaded JSON reader, which `load_dataset("json")` uses.

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
import msgspec  # noqa: E402
import pyarrow.json  # noqa: E402

import claudesidian_synthetic as cs  # noqa: E402


def timed_build(source: str, cache: str) -> dict:
    """Seconds per phase of one `load("balanced_custom")` into an empty cache."""
    phases = ("builder init (source digest for the cache key)", "scan: check every line",
              "selected lines: read+decode", "datasets writer")
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

    patches = {"__init__": wrap("__init__", "builder init (source digest for the cache key)"),
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


def floors(source: str) -> dict:
    """The same file without the builder: Python's json on every line, msgspec decoding every line into the
    scan's typed rows, and pyarrow's reader."""
    figures = {}
    for name, decode in (("json.loads of every line", json.loads),
                         ("msgspec typed decode of every line", msgspec.json.Decoder(cs._Row).decode)):
        start = time.perf_counter()
        with open(source, "rb") as file:
            for line in file:
                decode(line)
        figures[name] = time.perf_counter() - start
    start = time.perf_counter()
    pyarrow.json.read_json(source)
    figures["pyarrow.json.read_json (threads)"] = time.perf_counter() - start
    return figures


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
