"""Time this checkout against another one (say the commit before a change), in paired fresh processes.

Both checkouts run the same cases on the same generated sources, one fresh process each with its own
`datasets` cache; in every round each case runs once per checkout, the order alternating between
rounds, and every figure is this checkout's over the other's within a round: per case, the median
over the rounds and the lowest and highest round. `--runs` repeats the whole comparison (each run's
medians are kept; the figures pool every round). Nothing is written unless `--out FILE` says where.
Both checkouts draw the export's figures, so both need matplotlib (the `plots` extra).

    git worktree add ../before 304f452 && (cd ../before && python -m venv .venv && .venv/bin/pip install -e ".[plots]")
    python benchmarks/against.py ../before                 # 100k and 1M rows (about 15 minutes)
    python benchmarks/against.py ../before --rows 100000 --repeats 3 --runs 3
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

from benchmark import MILLION_CASES, REPO, generate_source, measure, require_the_package

# The million-row cases, and at 100k rows a build with a held-out test split (the split that needs
# every row's digest, which the scan keeps now and a second parse read before).
CASES = {**MILLION_CASES, "build_with_test": MILLION_CASES["build"].replace(
    "source={source!r})", "source={source!r}, test_size=0.1)")}
CASES_AT = {100_000: ("build", "build_with_test", "export"), 1_000_000: ("build", "export")}


def compare(other: pathlib.Path, python: str, rows: int, repeats: int, workdir: pathlib.Path) -> dict:
    """Per case and checkout: the (wall time, peak RSS) of each round."""
    source = workdir / f"rows{rows}.jsonl"
    generate_source(source, rows)
    with open(source, "rb") as file:
        desirable = sum(b'"label": true' in line for line in file)
    checkouts = {"this": (sys.executable, REPO), "other": (python, other)}
    measured = {case: {name: [] for name in checkouts} for case in CASES_AT[rows]}
    for round_index in range(repeats):
        order = list(checkouts) if round_index % 2 == 0 else list(reversed(checkouts))
        for case in CASES_AT[rows]:
            for name in order:
                folder = workdir / f"export-{name}"
                code = CASES[case].format(source=str(source), desirable=desirable,
                                          undesirable=rows - desirable, folder=str(folder))
                cache = pathlib.Path(tempfile.mkdtemp(dir=workdir))
                executable, cwd = checkouts[name]
                measured[case][name].append(measure(code, cache, python=executable, cwd=cwd))
                for leftover in (cache, folder):
                    if leftover.exists():
                        shutil.rmtree(leftover)
    source.unlink()
    return measured


def figures(measured: dict) -> dict:
    """Per case: this checkout's wall time and peak RSS over the other's, round by round: the medians and
    the median, lowest and highest ratio."""
    report = {}
    for case, runs in measured.items():
        report[case] = {}
        for index, key in enumerate(("wall_s", "peak_rss_mib")):
            paired = [this[index] / other[index] for this, other in zip(runs["this"], runs["other"])]
            report[case][key] = {
                "this_median": round(statistics.median(run[index] for run in runs["this"]), 2),
                "other_median": round(statistics.median(run[index] for run in runs["other"]), 2),
                "ratio_median": round(statistics.median(paired), 3),
                "ratio_lowest": round(min(paired), 3), "ratio_highest": round(max(paired), 3)}
    return report


def at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give 1 or more")
    return value


def check_other(parser: argparse.ArgumentParser, other: pathlib.Path, python: str) -> str:
    """The other checkout's commit, once its Python is known to import its package; one line and exit 2 if not."""
    if not other.is_dir():
        parser.error(f"{other}: not a folder; give the other checkout (see the top of benchmarks/against.py)")
    if not pathlib.Path(python).is_file():
        if python != str(other / ".venv" / "bin" / "python"):
            parser.error(f"--python {python} does not exist; give the other checkout's interpreter")
        parser.error(f"{python} does not exist: make the other checkout's .venv (see the top of "
                     "benchmarks/against.py) or pass --python its interpreter")
    try:
        probe = subprocess.run([python, "-c", "import claudesidian_synthetic, datasets"], cwd=other,
                               capture_output=True, text=True)
    except OSError as error:
        parser.error(f"{python} cannot be run ({error.strerror}); give the other checkout's interpreter")
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["exit code " + str(probe.returncode)])[-1]
        parser.error(f"{python} cannot import the package in {other} ({last}); install it there: "
                     f"{python} -m pip install -e {other}")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=other, capture_output=True, text=True)
    return head.stdout.strip() if head.returncode == 0 else "unknown"


def main() -> None:
    require_the_package("against.py")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=pathlib.Path, help="the other checkout (its package installed in its .venv)")
    parser.add_argument("--python", help="the other checkout's Python (default: OTHER/.venv/bin/python)")
    parser.add_argument("--rows", type=int, nargs="+", choices=sorted(CASES_AT), default=sorted(CASES_AT))
    parser.add_argument("--repeats", type=at_least_one, default=3, help="paired rounds per size")
    parser.add_argument("--runs", type=at_least_one, default=1, help="whole comparisons, each run's medians kept")
    parser.add_argument("--out", help="write the results (JSON) to this file")
    args = parser.parse_args()
    other = args.other.resolve()
    python = args.python or str(other / ".venv" / "bin" / "python")
    if args.out and not pathlib.Path(args.out).resolve().parent.is_dir():
        parser.error(f"--out {args.out}: its folder does not exist; create it or choose another file")
    commit = check_other(parser, other, python)
    print(f"{'':<5} {'rows':>9}  {'case':<16} {'measure':<13} this checkout / the other: median ratio over the rounds "
          "(lowest-highest)", flush=True)
    pooled, runs = {}, []
    with tempfile.TemporaryDirectory() as temp:
        for run in range(args.runs):
            runs.append({})
            for rows in args.rows:
                measured = compare(other, python, rows, args.repeats, pathlib.Path(temp))
                for case, rounds in measured.items():
                    for name, values in rounds.items():
                        pooled.setdefault(str(rows), {}).setdefault(case, {}).setdefault(name, []).extend(values)
                runs[-1][str(rows)] = {case: {key: figure["ratio_median"] for key, figure in each.items()}
                                       for case, each in figures(measured).items()}
                for case, each in figures(measured).items():
                    for key, figure in each.items():
                        unit = "s" if key == "wall_s" else "MiB"
                        print(f"run {run + 1} {rows:>9}  {case:<16} {key:<13} {figure['this_median']:g} {unit} / "
                              f"{figure['other_median']:g} {unit}: {figure['ratio_median']:.3f}x "
                              f"({figure['ratio_lowest']:.3f}-{figure['ratio_highest']:.3f})", flush=True)
    results = {rows: figures(measured) for rows, measured in pooled.items()}
    if args.out:
        report = {"other": other.name, "other_commit": commit, "repeats": args.repeats, "runs": runs,
                  "ratio_is": "per case, the median over the rounds of (this / other within the round); results "
                              "pool the rounds of every run, runs hold each run's medians",
                  "results": results}
        pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
