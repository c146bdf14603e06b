"""Time this checkout against another one (say the commit before a change), in paired fresh processes.

Both checkouts run the same cases on the same generated sources, one fresh process each with its own
`datasets` cache; in every round each case runs once per checkout, the order alternating between
rounds, and every figure is this checkout's over the other's within a round: per case, the median
over the rounds and the lowest and highest round. Nothing is written unless `--out FILE` says where.

    git worktree add ../before 304f452 && (cd ../before && python -m venv .venv && .venv/bin/pip install -e .)
    python benchmarks/against.py ../before                 # 100k and 1M rows (about 15 minutes)
    python benchmarks/against.py ../before --rows 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import sys
import tempfile

from benchmark import MILLION_CASES, REPO, generate_source, measure, require_the_package

# The million-row cases, and at 100k rows a build with a held-out test split (the split that needs
# every row's digest, which the scan keeps now and a second parse read before).
CASES = {**MILLION_CASES, "build_with_test": MILLION_CASES["build"].replace(
    "source={source!r})", "source={source!r}, test_size=0.1)")}
CASES_AT = {100_000: ("build", "build_with_test", "export"), 1_000_000: ("build", "export")}


def compare(other: pathlib.Path, python: str, rows: int, repeats: int, workdir: pathlib.Path) -> dict:
    """Per case: this checkout's wall time and peak RSS over the other's, round by round."""
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


def main() -> None:
    require_the_package("against.py")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=pathlib.Path, help="the other checkout (its package installed in its .venv)")
    parser.add_argument("--python", help="the other checkout's Python (default: OTHER/.venv/bin/python)")
    parser.add_argument("--rows", type=int, nargs="+", choices=sorted(CASES_AT), default=sorted(CASES_AT))
    parser.add_argument("--repeats", type=int, default=3, help="paired rounds per size")
    parser.add_argument("--out", help="write the results (JSON) to this file")
    args = parser.parse_args()
    other = args.other.resolve()
    python = args.python or str(other / ".venv" / "bin" / "python")
    if not pathlib.Path(python).is_file():
        parser.error(f"{python} does not exist: install the other checkout (see the top of this file) or pass --python")
    results = {}
    with tempfile.TemporaryDirectory() as temp:
        for rows in args.rows:
            results[str(rows)] = compare(other, python, rows, args.repeats, pathlib.Path(temp))
            for case, figures in results[str(rows)].items():
                for key, figure in figures.items():
                    print(f"{rows:>9} rows  {case:<16} {key:<13} this {figure['this_median']:>8}  other "
                          f"{figure['other_median']:>8}  {figure['ratio_median']:.3f}x "
                          f"({figure['ratio_lowest']:.3f}-{figure['ratio_highest']:.3f})")
    if args.out:
        report = {"other": str(other), "repeats": args.repeats, "ratio_is": "this / other within each round",
                  "results": results}
        pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
