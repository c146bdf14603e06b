"""Benchmark `claudesidian_synthetic.load` and `stats` against `datasets.load_dataset("json")` and a naive recipe.

Every measurement is a fresh Python process (whole-process wall time and peak RSS, imports included),
the cases take turns in each of `--repeats` rounds (three times as many for the 1k-row cases: they
take 2 s, most of it `import datasets`, so the machine's noise weighs more), and every figure is a
ratio against a baseline measured in the same round, because the machine is shared and noisy: per
ratio its median over the rounds and its spread (the lowest and the highest round). `--runs` repeats
the whole benchmark; a target counts as met when the median meets it in every run.

    python benchmarks/benchmark.py                       # 3 runs of 21 + 7 rounds, printed only
    python benchmarks/benchmark.py --out benchmarks/results.json    # the committed results
    python benchmarks/benchmark.py --rows 10000 --repeats 1 --runs 1 --out /tmp/smoke.json   # a smoke
    python benchmarks/benchmark.py --million     # adds the 1M-row figures (minutes, 1.6 GB of disk)

Nothing is written unless `--out FILE` names where. The 1M-row case (in each run) compares fresh processes
at 100k and at 1M rows: a `balanced_custom` build (wall time against the json loader's on the same 1M-row
file, target at most 1.2x; peak RSS, target at most 1.5x the 100k build's), a sharded export of every row
in mixed order (peak RSS, target at most 1.5x the 100k export's), and streaming every row. `full` promises
the v1.0.0 bytes, so on a generated source "every row" is `balanced_custom` with both classes kept whole.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(os.environ.get("CLAUDESIDIAN_DATA", REPO.parent / "shared" / "data"))
SOURCE = DATA / "syngen_toolset_v1.0.0_claude.jsonl"
PUBLISHED = DATA / "syngen_toolset_v1.0.0_claude_balanced_254.jsonl"

CASES = {
    "builder": "import claudesidian_synthetic as cs\nd = cs.load({config!r}, split='train', source={source!r})",
    "json": "import datasets\nd = datasets.load_dataset('json', data_files={data!r}, split='train')",
    "naive": (
        "import json, random, datasets\n"
        "rows = [json.loads(line) for line in open({source!r}, encoding='utf-8')]\n"
        "pos = [r for r in rows if r['label']]; neg = [r for r in rows if not r['label']]\n"
        "rng = random.Random(42); picked = rng.sample(pos, len(neg)) + neg; rng.shuffle(picked)\n"
        "d = datasets.Dataset.from_list([{{'prompt': r['conversations'][:-1], 'completion': r['conversations'][-1:],"
        " 'label': r['label'], 'context': r.get('context')}} for r in picked])"
    ),
    # `claudesidian-synthetic stats CONFIG --source FILE`: the plan, every row counted, the tool-call funnel.
    "stats": "from claudesidian_tools.cli import main\nraise SystemExit(main(['stats', {config!r}, '--source', "
             "{source!r}]))",
}


def generate_source(path: pathlib.Path, rows: int, seed: int = 0) -> None:
    """A source with the real schema: about 3 desirable per undesirable, varied text, some context."""
    rng = random.Random(seed)
    words = "note vault tag folder search read write append daily project meeting link file".split()
    with open(path, "w", encoding="utf-8") as file:
        for index in range(rows):
            text = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
            row = {
                "conversations": [
                    {"role": "user", "content": f"{index}: {text(rng.randint(8, 40))}"},
                    {"role": "assistant",
                     "content": f"tool_call: vault_{rng.choice(words)}\n{text(rng.randint(80, 300))}"},
                ],
                "label": rng.random() < 0.75,
            }
            if rng.random() < 0.05:
                row["context"] = {"sessionId": f"s{index}", "workspaceId": "ws", "primaryGoal": text(6)}
            file.write(json.dumps(row) + "\n")


def measure(code: str, cache: pathlib.Path, python: str = sys.executable,
            cwd: pathlib.Path = REPO) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh `python` process running `code` with its own HF cache."""
    # HF_DATASETS_CACHE, when set, would win over HF_HOME: every case gets its own cache either way.
    env = {**os.environ, "HF_HOME": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets"),
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    start = time.perf_counter()
    process = subprocess.Popen([python, "-c", code], cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"benchmark process failed (exit code {os.waitstatus_to_exitcode(status)}): {code}")
    return wall, usage.ru_maxrss / 1024


def run_cases(codes: dict, repeats: int, warm: bool, workdir: pathlib.Path) -> dict:
    """Wall time and peak RSS of every run of every case. The cases take turns in every round, so
    that drift in the machine's load hits the runs of one round alike."""
    runs = {name: {"wall_s": [], "peak_rss_mib": []} for name in codes}
    caches = {name: workdir / f"warm-{name}" for name in codes}
    if warm:
        for name, code in codes.items():
            measure(code, caches[name])  # fill each cache once, not timed
    for _ in range(repeats):
        for name, code in codes.items():
            cache = caches[name] if warm else pathlib.Path(tempfile.mkdtemp(dir=workdir))
            wall, peak = measure(code, cache)
            runs[name]["wall_s"].append(round(wall, 4))
            runs[name]["peak_rss_mib"].append(round(peak, 1))
            if not warm:
                shutil.rmtree(cache)
    return runs


MILLION_CASES = {
    "build": "import claudesidian_synthetic as cs\nd = cs.load('balanced_custom', split='train', source={source!r})",
    "export": (
        "from claudesidian_tools import export as e\n"
        "e.export({folder!r}, [e.parse_config_spec('every_row=balanced_custom:desirable={desirable},"
        "undesirable={undesirable},order=mixed,batch_size=8')], source={source!r}, num_shards=8)"
    ),
    "stream": (
        "import claudesidian_synthetic as cs\n"
        "n = sum(1 for _ in cs.load('balanced_custom', split='train', source={source!r}, streaming=True,"
        " desirable={desirable}, undesirable={undesirable}))\nassert n == {desirable} + {undesirable}"
    ),
    "json": CASES["json"].replace("{data!r}", "{source!r}"),  # the baseline of the 1M build's wall time
}


def million_sources(workdir: pathlib.Path) -> dict:
    """The 100k- and 1M-row sources, generated once for every run: {rows: the fields of MILLION_CASES}."""
    sources = {}
    for rows in (100_000, 1_000_000):
        source = workdir / f"rows{rows}.jsonl"
        generate_source(source, rows)
        with open(source, "rb") as file:  # line by line: a child forked from a big parent inherits its peak RSS
            desirable = sum(b'"label": true' in line for line in file)
        sources[rows] = {"source": str(source), "desirable": desirable, "undesirable": rows - desirable,
                         "folder": str(workdir / f"export{rows}")}
    return sources


def million_run(sources: dict, repeats: int, workdir: pathlib.Path) -> dict:
    """One run of the 1M-row case: wall time and peak RSS of every case at 100k and at 1M rows."""
    runs = {}
    for rows, fields in sources.items():
        codes = {f"{name}_{rows}": code.format(**fields) for name, code in MILLION_CASES.items()}
        runs.update(run_cases(codes, repeats, False, workdir))
        shutil.rmtree(fields["folder"], ignore_errors=True)
    return runs


def million_case(runs: list) -> dict:
    """The 1M-row figures of every run: per case the median over all rounds, the 1M / 100k ratios of
    those, and per run the 1M build's wall time over the json loader's (paired rounds)."""
    pooled = {name: {key: [value for run in runs for value in run[name][key]] for key in runs[0][name]}
              for name in runs[0]}
    medians = {name: {key: round(statistics.median(values), 3) for key, values in measured.items()}
               for name, measured in pooled.items()}
    ratios = {
        f"{name}: 1M / 100k {key}": round(medians[f"{name}_1000000"][key] / medians[f"{name}_100000"][key], 3)
        for name in MILLION_CASES if name != "json" for key in ("wall_s", "peak_rss_mib")
    }
    paired = [paired_ratios(run, "build_1000000", "json_1000000", "wall_s") for run in runs]
    build_vs_json = {"what": "1M-row balanced_custom build vs json loader: wall", "target_at_most": BUILD_VS_JSON_1M,
                     "medians": [round(statistics.median(each), 3) for each in paired],
                     "spreads": [[round(min(each), 3), round(max(each), 3)] for each in paired]}
    build_vs_json["met"] = all(median <= BUILD_VS_JSON_1M for median in build_vs_json["medians"])
    return {"medians": medians, "ratios": ratios, "targets": million_targets(ratios), "build_vs_json_1m": build_vs_json,
            "rounds": runs}


MILLION_TARGETS = {"build": 1.5, "export": 1.5}  # peak RSS at 1M rows over the peak at 100k, at most
BUILD_VS_JSON_1M = 1.2  # the 1M build's wall time over the json loader's on the same file, at most


def million_targets(ratios: dict) -> dict:
    """Per case with a target: the target and whether the 1M / 100k peak RSS ratio meets it."""
    return {case: {"peak_rss_1m_over_100k_at_most": target,
                   "met": ratios[f"{case}: 1M / 100k peak_rss_mib"] <= target}
            for case, target in MILLION_TARGETS.items()}


def paired_ratios(runs: dict, name: str, baseline: str, key: str) -> list:
    """case / baseline within each round: pairing cancels the machine's drift between rounds."""
    return [a / b for a, b in zip(runs[name][key], runs[baseline][key])]


# (what, case, baseline, measure, target: the ratio at most)
COMPARISONS = [
    ("1. balanced_254 vs json loader, fresh cache: wall", "small_fresh_builder", "small_fresh_json", "wall_s", 1.0),
    ("2. balanced_254 vs json loader, warm cache: wall", "small_warm_builder", "small_warm_json", "wall_s", 1.05),
    ("3a. scale: balanced_custom vs json loader: wall", "scale_fresh_builder", "scale_fresh_json", "wall_s", 1.0),
    ("3b. scale: balanced_custom vs json loader: peak RSS", "scale_fresh_builder", "scale_fresh_json",
     "peak_rss_mib", 0.65),
    ("3c. scale: balanced_custom vs naive recipe: wall", "scale_fresh_builder", "scale_fresh_naive", "wall_s", 0.55),
    ("3d. scale: balanced_custom vs naive recipe: peak RSS", "scale_fresh_builder", "scale_fresh_naive",
     "peak_rss_mib", 1 / 1.5),
    ("4. scale: stats balanced_custom vs json loader: wall", "scale_fresh_stats", "scale_fresh_json", "wall_s", 1.5),
]


def one_run(rows: int, repeats: int) -> dict:
    """Every case in paired rounds on a fresh `rows`-row source; each ratio's median and spread, and the
    machine's load average (1 minute) before and after, which says how shared it was."""
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as temp:
        workdir = pathlib.Path(temp)
        scale_source = workdir / "scale.jsonl"
        generate_source(scale_source, rows)
        small = {"config": "balanced_254", "source": str(SOURCE), "data": str(PUBLISHED)}
        scale = {"config": "balanced_custom", "source": str(scale_source), "data": str(scale_source)}
        runs = {}
        for warm in (False, True):
            label = "warm" if warm else "fresh"
            codes = {f"small_{label}_{case}": CASES[case].format(**small) for case in ("builder", "json")}
            runs.update(run_cases(codes, 3 * repeats, warm, workdir))
        codes = {f"scale_fresh_{case}": CASES[case].format(**scale) for case in ("builder", "json", "naive", "stats")}
        runs.update(run_cases(codes, repeats, False, workdir))
    ratios = []
    for what, name, baseline, key, target in COMPARISONS:
        paired = paired_ratios(runs, name, baseline, key)
        median = round(statistics.median(paired), 3)
        ratios.append({"what": what, "median": median, "lowest": round(min(paired), 3),
                       "highest": round(max(paired), 3), "rounds": len(paired), "target_at_most": round(target, 3),
                       "met": median <= target})
    return {
        "ratios": ratios,
        "load_average_before_after": [load_before, round(os.getloadavg()[0], 2)],
        "median_per_case": {
            name: {key: round(statistics.median(values), 4) for key, values in measured.items()}
            for name, measured in runs.items()
        },
        "rounds": runs,
    }


def require_the_package(script: str) -> None:
    """One line and exit code 2 where this Python lacks the package's dependencies: every case would fail."""
    missing = [name for name in ("datasets", "yaml") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"benchmarks need the package installed: .venv/bin/pip install -e . then .venv/bin/python "
              f"benchmarks/{script} ({sys.executable} has no {', '.join(missing)})", file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the generated scale source")
    parser.add_argument("--repeats", type=int, default=7, help="rounds at 100k rows (x3 at 1k rows)")
    parser.add_argument("--runs", type=int, default=3, help="whole runs; a target is met when every run's median is")
    parser.add_argument("--out", help="write the results (JSON) to this file; without it they are only printed")
    parser.add_argument("--million", action="store_true", help="also run the 1M-row case in each run (not in CI)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    require_the_package("benchmark.py")
    runs, million_runs = [], []
    with tempfile.TemporaryDirectory() as temp:
        sources = million_sources(pathlib.Path(temp)) if args.million else {}
        for run in range(args.runs):
            runs.append(one_run(args.rows, args.repeats))
            print(f"run {run + 1} of {args.runs}:")
            for row in runs[-1]["ratios"]:
                print(f"  {row['what']:<56} {row['median']:>6.3f}x ({row['lowest']:.3f}-{row['highest']:.3f})  "
                      f"target <= {row['target_at_most']}  {'met' if row['met'] else 'MISSED'}")
            if args.million:
                million_runs.append(million_run(sources, 2, pathlib.Path(temp)))
                paired = paired_ratios(million_runs[-1], "build_1000000", "json_1000000", "wall_s")
                print(f"  1M build vs json loader: wall {statistics.median(paired):.3f}x")
    report = {
        "rows_scale": args.rows,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "ratio_is": "per run: median over paired rounds of (case / baseline) measured in the same round, and the "
                    "lowest and highest round; met: the median meets the target in every run",
        "ratios": [
            {"what": what, "target_at_most": round(target, 3),
             "medians": [run["ratios"][index]["median"] for run in runs],
             "spreads": [[run["ratios"][index]["lowest"], run["ratios"][index]["highest"]] for run in runs],
             "met": all(run["ratios"][index]["met"] for run in runs)}
            for index, (what, _, _, _, target) in enumerate(COMPARISONS)
        ],
        "runs": runs,
    }
    if args.million:
        report["million_rows"] = million_case(million_runs)
        for what, ratio in report["million_rows"]["ratios"].items():
            print(f"{what:<58} {ratio:>7.3f}x")
    print(f"in every one of {args.runs} run(s): " + ", ".join(
        f"{row['what'].split('.')[0]} {'met' if row['met'] else 'MISSED'}" for row in report["ratios"]))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
