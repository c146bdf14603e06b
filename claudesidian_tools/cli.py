"""`claudesidian-synthetic`: build, inspect, export and push the configs, all through the one builder."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import datasets
import huggingface_hub

import claudesidian_synthetic as cs

CONFIG_NAMES = list(cs.ClaudesidianSynthetic.builder_configs)


class _HelpFormatter(argparse.HelpFormatter):
    """Show each option's default where it has one (None means "see the help text")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, argparse.SUPPRESS, False) and "%(default)" not in text
        if shown and action.option_strings:
            text += " (default: %(default)s)"
        return text


class _Once(argparse.Action):
    """Store an option's value, refusing a second one: `--batch-size 8 --batch-size 4` is a mistake."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) not in (None, self.default):
            parser.error(f"{option_string} given twice ({getattr(namespace, self.dest)} and {values}); give it once")
        setattr(namespace, self.dest, values)


def _test_size(text: str) -> float | int:
    """`0.1` is a fraction of the source, `100` a row count."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither a fraction (0.1) nor a row count (100)") from None


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", action=_Once,
                        help=f"local path or URL of {cs.SOURCE_FILENAME} (default: the Hub file, cached)")
    parser.add_argument("--revision", action=_Once, help="Hub revision (branch, tag or commit) of the default source "
                        "(default: main)")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", choices=CONFIG_NAMES, help="which subset")
    _add_source_options(parser)
    parser.add_argument("--desirable", type=int, action=_Once, help="balanced_custom: number of desirable (True) rows")
    parser.add_argument("--undesirable", type=int, action=_Once,
                        help="balanced_custom: number of undesirable (False) rows")
    parser.add_argument("--ratio", type=float, action=_Once, help="balanced_custom: desirable rows per undesirable row")
    parser.add_argument("--seed", type=int, action=_Once,
                        help=f"random seed of sampling, shuffling and the test split (default: {cs.PUBLISHED_SEED}, "
                        "the published one)")
    parser.add_argument("--replacement", action="store_true", default=None,
                        help="balanced_custom: sample with replacement (default: off)")
    parser.add_argument("--dedupe", action="store_true", default=None, help="drop exact duplicate lines first "
                        "(default: off)")
    parser.add_argument("--order", choices=cs.ORDERS, action=_Once,
                        help="row order (default: source for full, shuffle otherwise)")
    parser.add_argument("--batch-size", type=int, action=_Once,
                        help="with --order mixed: rows per batch, your per_device_train_batch_size")
    parser.add_argument("--test-size", type=_test_size, action=_Once,
                        help="full, balanced_custom: hold out a prompt-disjoint, stratified test split: a fraction "
                        "(0.1) or a row count (100) (default: no test split)")
    parser.add_argument("--layout", choices=cs.LAYOUTS, action=_Once,
                        help="columns: kto (prompt, completion, label, context) or conversations (the published "
                        "file's) (default: kto)")


def _config_options(args: argparse.Namespace) -> dict:
    """The builder options given on the command line, exactly: the builder refuses what has no effect."""
    return {option: getattr(args, option) for option in cs.OPTION_DEFAULTS if getattr(args, option, None) is not None}


def _check_out(path: str | None) -> None:
    folder = os.path.dirname(os.path.abspath(path or "."))
    if path not in (None, "-") and not os.path.isdir(folder):
        raise cs.OptionError(f"--out {path}: the folder {folder} does not exist; create it, or choose another --out")


def _write_atomically(path: str, lines) -> None:
    """Write beside `path`, then rename, so a failed run leaves no half file; the umask sets the mode."""
    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.partial")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.writelines(lines)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def jsonl_lines(dataset: datasets.Dataset):
    """The dataset as JSONL, its columns in order (the `conversations` layout gives the published bytes)."""
    progress = datasets.utils.tqdm(total=len(dataset), unit=" rows", desc="Writing", leave=False)
    with progress:
        for batch in dataset.iter(batch_size=1000):
            columns = list(batch)
            for values in zip(*batch.values()):
                yield json.dumps(dict(zip(columns, values))) + "\n"
            progress.update(len(batch["label"]))


def command_build(args: argparse.Namespace) -> None:
    _check_out(args.out)
    options = _config_options(args)
    if args.format is not None:
        layout = {"kto": "kto", "raw": "conversations"}[args.format]
        if options.setdefault("layout", layout) != layout:
            raise cs.OptionError(f"--format {args.format} and --layout {args.layout} disagree; give one of them")
    dataset_dict = cs.load(args.config, **options)
    if args.split not in dataset_dict:
        raise cs.OptionError(
            f"--split {args.split}: this config has the split(s) {', '.join(dataset_dict)}; "
            "a test split needs --test-size"
        )
    dataset = dataset_dict[args.split]
    lines = jsonl_lines(dataset)
    if args.out in (None, "-"):
        sys.stdout.writelines(lines)
    else:
        _write_atomically(args.out, lines)
    desirable = sum(dataset["label"])
    where = args.out if args.out not in (None, "-") else "stdout"
    others = [split for split in dataset_dict if split != args.split]
    note = f"; the config also has {', '.join(others)} (--split)" if others else ""
    print(
        f"wrote {len(dataset)} {args.split} rows ({desirable} desirable, {len(dataset) - desirable} undesirable) "
        f"to {where}{note}",
        file=sys.stderr,
    )


def command_stats(args: argparse.Namespace) -> None:
    from claudesidian_tools.kto import DEFAULT_STATS_BATCH_SIZES, dataset_stats, shared_prompts

    dataset_dict = cs.load(args.config, **_config_options(args))
    sizes = [*DEFAULT_STATS_BATCH_SIZES, *([args.batch_size] if args.batch_size else [])]
    stats = {split: dataset_stats(dataset, batch_sizes=sizes) for split, dataset in dataset_dict.items()}
    if len(dataset_dict) > 1:
        stats["shared_prompts"] = shared_prompts(dataset_dict)
    if args.json:
        print(json.dumps(stats))
        return
    print(f"config               {args.config}")
    for split in dataset_dict:
        split_stats = stats[split]
        batches = ", ".join(f"{size}: {count}" for size, count in split_stats["homogeneous_batches"].items())
        weights, first = split_stats["kto_weights"], split_stats["first_50"]
        print(
            f"[{split}]\n"
            f"rows                 {split_stats['rows']}\n"
            f"desirable            {split_stats['desirable']}\n"
            f"undesirable          {split_stats['undesirable']}\n"
            f"ratio                {split_stats['ratio']}\n"
            f"exact duplicates     {split_stats['duplicates']}\n"
            f"first 50 rows        {first['desirable']} desirable, {first['undesirable']} undesirable\n"
            f"single-label batches {batches} (batch size: count)\n"
            f"KTO weights          desirable_weight={weights['desirable_weight']}, "
            f"undesirable_weight={weights['undesirable_weight']}"
        )
    if "shared_prompts" in stats:
        print(f"prompts shared by splits {stats['shared_prompts']}")


def command_export(args: argparse.Namespace) -> None:
    from claudesidian_tools.export import export, parse_config_spec

    specs = [parse_config_spec(spec) for spec in args.config or []]
    exported = export(args.folder, specs, source=args.source, revision=args.revision, num_shards=args.num_shards,
                      max_shard_size=args.max_shard_size)
    for item in exported:
        rows = ", ".join(
            f"{split} {stats['rows']} rows in {len(item.data_files[split])} shard(s)"
            for split, stats in item.stats.items()
        )
        print(f"{item.spec.export_name}: {rows} -> data/{item.spec.export_name}/", file=sys.stderr)
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
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {cs.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, run) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                                  formatter_class=_HelpFormatter)
        sub.set_defaults(run=run)
        return sub

    build = command("build", "write one split of one config as JSONL", command_build)
    _add_config_options(build)
    build.add_argument("--split", default="train", action=_Once, help="which split to write")
    build.add_argument("--format", choices=("kto", "raw"), action=_Once,
                       help="the same as --layout: kto = kto, raw = conversations (the published file's bytes)")
    build.add_argument("--out", action=_Once, help="output file (default: stdout)")

    stats = command("stats", "label counts, duplicates, batch mix and KTO weights of each split", command_stats)
    _add_config_options(stats)
    stats.add_argument("--json", action="store_true", help="print one JSON object")

    export = command("export", "write a Hub-ready folder: data, card, TRL recipes", command_export)
    export.add_argument("folder", help="output folder (replaced whole)")
    _add_source_options(export)
    export.add_argument("--config", action="append", metavar="[NAME=]CONFIG[:OPTION=VALUE,...]",
                        help="a config to export, e.g. mixed8=full:order=mixed,batch_size=8 (repeatable; "
                        "default: balanced_254, full, full_eval)")
    export.add_argument("--num-shards", type=int, action=_Once,
                        help="Parquet files per split; a multiple of your world size gives every rank whole shards "
                        "(default: as many as --max-shard-size needs)")
    export.add_argument("--max-shard-size", action=_Once,
                        help=f"largest shard, e.g. 500MB (default: {datasets.config.MAX_SHARD_SIZE}, as push_to_hub)")

    infos = command("infos", "regenerate dataset_infos.json from the builder", command_infos)
    infos.add_argument("--folder", default=".", help="where to write dataset_infos.json")
    _add_source_options(infos)

    push = command("push", "upload an exported folder to a Hub dataset repository in one commit", command_push)
    push.add_argument("folder", help="a folder written by `export`")
    push.add_argument("repo_id", help="owner/name of the dataset repository")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--commit-message", default="Upload Claudesidian synthetic dataset", help="commit message")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    # `huggingface_hub` logs each retry of an unreachable Hub; the one error line below says it all.
    huggingface_hub.utils.logging.set_verbosity_error()
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
