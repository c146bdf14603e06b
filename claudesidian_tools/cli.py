"""`claudesidian-synthetic`: build, inspect, export and push the configs, all through the one builder."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence

import datasets
import huggingface_hub

import claudesidian_synthetic as cs

CONFIG_NAMES = list(cs.ClaudesidianSynthetic.builder_configs)


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help=f"local path or URL of {cs.SOURCE_FILENAME} (default: the Hub file)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of the default source")


def _add_config_options(parser: argparse.ArgumentParser, batch_size_help: str) -> None:
    parser.add_argument("config", choices=CONFIG_NAMES, help="which subset")
    _add_source_options(parser)
    parser.add_argument("--desirable", type=int, help="balanced_custom: number of desirable (True) rows")
    parser.add_argument("--undesirable", type=int, help="balanced_custom: number of undesirable (False) rows")
    parser.add_argument("--ratio", type=float, help="balanced_custom: desirable rows per undesirable row")
    parser.add_argument("--seed", type=int, help="random seed (default 42, the published one)")
    parser.add_argument("--replacement", action="store_true", default=None, help="sample with replacement")
    parser.add_argument("--dedupe", action="store_true", default=None, help="drop exact duplicate lines first")
    parser.add_argument("--order", choices=cs.ORDERS, help="row order (default: source for full, else shuffle)")
    parser.add_argument("--batch-size", type=int, action="append", help=batch_size_help)


def _config_options(args: argparse.Namespace) -> dict:
    """The builder options given on the command line; `stats` may list extra batch sizes to count."""
    options = {option: getattr(args, option) for option in cs.OPTION_DEFAULTS}
    options["batch_size"] = args.batch_size[0] if args.order == "mixed" and args.batch_size else None
    return options


def _write_atomically(path: str, lines) -> None:
    """Write to a temporary file beside `path`, then rename, so a failed run leaves no half file."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".claudesidian-", suffix=".jsonl")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.writelines(lines)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def jsonl_lines(dataset: datasets.Dataset, output_format: str):
    """The dataset as JSONL lines: TRL's columns (`kto`), or the source's shape (`raw`)."""
    progress = datasets.utils.tqdm(total=len(dataset), unit=" rows", desc="Writing", leave=False)
    with progress:
        for batch in dataset.iter(batch_size=1000):
            for prompt, completion, label, context in zip(
                batch["prompt"], batch["completion"], batch["label"], batch["context"]
            ):
                if output_format == "raw":
                    row = {"conversations": prompt + completion, "label": label, "context": context}
                else:
                    row = {"prompt": prompt, "completion": completion, "label": label, "context": context}
                yield json.dumps(row) + "\n"
            progress.update(len(batch["label"]))


def command_build(args: argparse.Namespace) -> None:
    dataset = cs.load(args.config, split="train", **_config_options(args))
    lines = jsonl_lines(dataset, args.format)
    if args.out in (None, "-"):
        sys.stdout.writelines(lines)
    else:
        _write_atomically(args.out, lines)
    desirable = sum(dataset["label"])
    where = args.out if args.out not in (None, "-") else "stdout"
    print(
        f"wrote {len(dataset)} rows ({desirable} desirable, {len(dataset) - desirable} undesirable) to {where}",
        file=sys.stderr,
    )


def command_stats(args: argparse.Namespace) -> None:
    from claudesidian_tools.kto import DEFAULT_STATS_BATCH_SIZES, dataset_stats

    dataset = cs.load(args.config, split="train", **_config_options(args))
    stats = dataset_stats(dataset, batch_sizes=[*DEFAULT_STATS_BATCH_SIZES, *(args.batch_size or [])])
    if args.json:
        print(json.dumps(stats))
        return
    batches = ", ".join(f"{size}: {count}" for size, count in stats["homogeneous_batches"].items())
    weights, first = stats["kto_weights"], stats["first_50"]
    print(
        f"config               {args.config}\n"
        f"rows                 {stats['rows']}\n"
        f"desirable            {stats['desirable']}\n"
        f"undesirable          {stats['undesirable']}\n"
        f"ratio                {stats['ratio']}\n"
        f"exact duplicates     {stats['duplicates']}\n"
        f"first 50 rows        {first['desirable']} desirable, {first['undesirable']} undesirable\n"
        f"single-label batches {batches} (batch size: count)\n"
        f"KTO weights          desirable_weight={weights['desirable_weight']}, "
        f"undesirable_weight={weights['undesirable_weight']}"
    )


def command_export(args: argparse.Namespace) -> None:
    from claudesidian_tools.export import export, parse_config_spec

    specs = [parse_config_spec(spec) for spec in args.config or []]
    exported = export(args.folder, specs, source=args.source, revision=args.revision)
    for item in exported:
        print(f"{item.spec.export_name}: {item.stats['rows']} rows -> {item.data_path}", file=sys.stderr)
    print(f"exported {len(exported)} configs to {args.folder}", file=sys.stderr)


def command_infos(args: argparse.Namespace) -> None:
    from claudesidian_tools.export import build_infos, write_infos

    path = write_infos(build_infos(source=args.source, revision=args.revision), args.folder)
    print(f"wrote {path}", file=sys.stderr)


def command_push(args: argparse.Namespace) -> None:
    from claudesidian_tools.export import pinned_load_lines, push

    sha = push(args.folder, args.repo_id, private=args.private, commit_message=args.commit_message)
    print(f"commit {sha}")
    for line in pinned_load_lines(args.folder, args.repo_id, sha):
        print(line)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claudesidian-synthetic",
        description="Rebuild exact, KTO-ready subsets of the Claudesidian synthetic dataset.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="write one config as JSONL", description="Write one config as JSONL.")
    _add_config_options(build, "order=mixed: rows per batch (your per_device_train_batch_size)")
    build.add_argument("--format", choices=("kto", "raw"), default="kto",
                       help="kto: prompt/completion/label/context; raw: the source's conversations/label/context")
    build.add_argument("--out", help="output file (default: stdout)")
    build.set_defaults(run=command_build)

    stats = commands.add_parser("stats", help="label counts, duplicates, batch mix, KTO weights",
                                description="Label counts, duplicates, batch mix and KTO weights of one config.")
    _add_config_options(stats, "also count single-label batches of this size (repeatable; with --order mixed "
                               "the first one is the mixed batch size)")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(run=command_stats)

    export = commands.add_parser("export", help="write a Hub-ready dataset folder",
                                 description="Write full, balanced_254 and any --config into a Hub-ready folder.")
    export.add_argument("folder", help="output folder")
    _add_source_options(export)
    export.add_argument("--config", action="append", metavar="[NAME=]CONFIG[:OPTION=VALUE,...]",
                        help="a further config, e.g. mixed4=full:order=mixed,batch_size=4 (repeatable)")
    export.set_defaults(run=command_export)

    infos = commands.add_parser("infos", help="regenerate dataset_infos.json from the builder",
                                description="Regenerate dataset_infos.json (run from the repository root).")
    infos.add_argument("--folder", default=".", help="where to write dataset_infos.json (default: .)")
    _add_source_options(infos)
    infos.set_defaults(run=command_infos)

    push = commands.add_parser("push", help="upload an exported folder to the Hub in one commit",
                               description="Upload an exported folder to a Hub dataset repository in one commit.")
    push.add_argument("folder", help="a folder written by `export`")
    push.add_argument("repo_id", help="owner/name of the dataset repository")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--commit-message", default="Upload Claudesidian synthetic dataset", help="commit message")
    push.set_defaults(run=command_push)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        args.run(args)
    except cs.ClaudesidianError as error:
        print(f"claudesidian-synthetic: error: {error}", file=sys.stderr)
        return 2
    except (OSError, huggingface_hub.errors.HfHubHTTPError) as error:
        # Network and file-system failures: one line, no traceback (the token never appears in these).
        message = " ".join(str(error).split())
        print(f"claudesidian-synthetic: error: {type(error).__name__}: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
