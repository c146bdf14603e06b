"""`claudesidian-synthetic`: build, inspect, export, push and verify the configs, all through the one builder.

The config options come from the builder's declarations (`claudesidian_synthetic.OPTIONS`): their
flags, types, choices, help and defaults are written once, there. Errors are worded here in flags
(`cli_voice`), where the builder words them as Python keywords."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import json
import logging
import os
import re
import sys
import typing
from collections.abc import Sequence

import datasets
import huggingface_hub

import claudesidian_synthetic as cs
from claudesidian_tools import interrupts
from claudesidian_tools.interrupts import interrupt_deferred
from claudesidian_tools.replace import process_running


def _flag_words(said: cs.Mention) -> str:
    """A mention in the command line's words: `--batch-size 4`, `the config full`."""
    if said.option == "name":
        return f"the config {said.value}"
    return flag(said.option) if said.bare or said.value is True else f"{flag(said.option)} {said.value}"


cli_voice = cs.voice(_flag_words, " ")


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


class _OnceFlag(argparse.Action):
    """A flag that may be given once: `--private --private` is a slip of the keyboard, said so."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None):
            parser.error(f"{option_string} given twice; give it once")
        setattr(namespace, self.dest, True)


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def option_default_text(option: str) -> str:
    """An option's default, and where a config sets its own: read from the declaration and the configs table."""
    field = next(field for field in cs.OPTIONS if field.name == option)
    base = cs.OPTION_DEFAULTS[option]
    text = field.metadata["shown"] or ("none" if base is None else "off" if base is False else str(base))
    by_value = {}
    for named in cs.CONFIGS.values():
        value = named.option_defaults()[option]
        if value != base:
            by_value.setdefault(value, []).append(named.name)
    for value, names in by_value.items():
        text += f"; {value} for {', '.join(names)}"
    return f"(default: {text})"


def add_option(parser: argparse.ArgumentParser, option: str) -> None:
    """One config option on the command line, as the builder declares it (its type says how to read it)."""
    field = next(field for field in cs.OPTIONS if field.name == option)
    rule, help_text = field.metadata["rule"], field.metadata["help"]
    help_text = f"{help_text} {option_default_text(option)}"
    kinds = {kind for kind in typing.get_args(field.type) or (field.type,) if kind is not type(None)}
    if kinds == {bool}:
        parser.add_argument(flag(option), action=_OnceFlag, nargs=0, default=None, help=help_text)
        return
    read = _number if float in kinds else int if kinds == {int} else str
    parser.add_argument(flag(option), type=_typed(read, rule, option), choices=rule.choices or None, action=_Once,
                        help=help_text.replace("%", "%%"), metavar=option.upper() if not rule.choices else None)


def _number(text: str) -> int | float:
    """A number as written: `2` stays a whole number (a row count, a ratio echoed as given), `0.1` a fraction."""
    try:
        return int(text)
    except ValueError:
        return float(text)


class _Unread(str):
    """A value its option's type cannot read: refused after parsing in one line, as a value out of range is
    (argparse would print the whole usage before its own line)."""


def _refuse_unread(args: argparse.Namespace) -> None:
    for option in cs.OPTIONS:
        value = getattr(args, option.name, None)
        if isinstance(value, _Unread):
            raise cs.OptionError("{given}: must be " + option.metadata["rule"].states,
                                 given=cs.Mention(option.name, cs.Placeholder(value)))


def _typed(read, rule: cs.Rule, option: str):
    def parse(text: str):
        try:
            return read(text)
        except ValueError:
            return _Unread(text)

    parse.__name__ = option  # argparse names the type in its error message
    return parse


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    add_option(parser, "source")
    add_option(parser, "revision")


def _add_config_options(parser: argparse.ArgumentParser, several: bool = False) -> None:
    parser.add_argument("config", choices=list(cs.CONFIGS), nargs="+" if several else None,
                        help="which subset" + ("s (their test splits' prompts are checked against each other's "
                                              "train splits)" if several else "") + " (`configs` lists them)")
    for field in cs.OPTIONS:
        add_option(parser, field.name)


def _add_length_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", action=_Once, metavar="NAME_OR_PATH",
                        help="count tokens with this tokenizer's chat template, as TRL applies it (needs the kto "
                        "extra; default: characters only)")
    parser.add_argument("--max-length", type=int, action=_Once, metavar="N",
                        help="the max_length to count truncated and dropped rows at (default: TRL's, 1024)")


def _config_options(args: argparse.Namespace) -> dict:
    """The builder options given on the command line, exactly: the builder refuses what has no effect."""
    return {option: getattr(args, option) for option in cs.OPTION_DEFAULTS if getattr(args, option, None) is not None}


def _check_out(path: str | None) -> None:
    if path in (None, "-"):
        return
    if not path.strip():
        raise cs.OptionError("{out} is empty: give a file path, such as data.jsonl, or leave it out for stdout",
                             out=cs.Mention("out"))
    if os.path.isdir(path):
        raise cs.OptionError("{out} is a folder: give a file path, such as " + os.path.join(path, "data.jsonl"),
                             out=cs.Mention("out", path))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise cs.OptionError("{out}: the folder " + folder + " does not exist; create it, or choose another {flag}",
                             out=cs.Mention("out", path), flag=cs.Mention("out"))


def _write_atomically(path: str, lines) -> None:
    """Write beside `path`, then rename, so a failed run leaves no half file; the umask sets the mode.
    Temporary files that killed runs left beside `path` (their process no longer runs) go first."""
    folder = os.path.dirname(os.path.abspath(path))
    _remove_stale_partials(folder, os.path.basename(path))
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.partial")
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise cs.OptionError(
            "{out}: cannot write in " + f"{folder} ({error.strerror}); choose a folder you can write to",
            out=cs.Mention("out", path),
        ) from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.writelines(lines)
        with interrupt_deferred(f"{path} was written before the interrupt"):
            os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if error.errno != errno.ENOSPC:
            raise
        raise cs.OptionError("{out}: the disk is full (no space left on the device of " + cs.escaped(folder)
                             + "); free some space or choose another {flag}; " + cs.escaped(path)
                             + " was not written", out=cs.Mention("out", path), flag=cs.Mention("out")) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):  # renamed already: the file is whole
            os.unlink(temporary)
        raise


def _remove_stale_partials(folder: str, name: str) -> None:
    """Remove `.NAME.<pid>.partial` files of builds that were killed (their process no longer runs)."""
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+)\.partial")
    for entry in os.listdir(folder):
        match = pattern.fullmatch(entry)
        full = os.path.join(folder, entry)
        if match and not process_running(int(match[1]), os.stat(full).st_mtime):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(full)
                print(f"removed {full}, left by a build that was killed (process {match[1]})", file=sys.stderr)


def jsonl_lines(dataset: datasets.Dataset):
    """The dataset as JSONL, its columns in order (the `conversations` layout gives the published bytes)."""
    progress = datasets.utils.tqdm(total=len(dataset), unit=" rows", desc="Writing", leave=False)
    with progress:
        for batch in dataset.iter(batch_size=1000):
            columns = list(batch)
            for values in zip(*batch.values()):
                yield json.dumps(dict(zip(columns, values))) + "\n"
            progress.update(len(batch[columns[0]]))


def command_build(args: argparse.Namespace) -> None:
    _check_out(args.out)
    if args.source and args.out not in (None, "-") and os.path.exists(args.out) and os.path.exists(args.source) \
            and os.path.samefile(args.out, args.source):
        raise cs.OptionError(f"--out {args.out} is the source file itself (--source {args.source}); writing it would "
                             "replace the data it is built from: choose another --out")
    options = _config_options(args)
    args.interrupted = f"{args.out} was not written" if args.out not in (None, "-") else "nothing was written"
    dataset_dict = cs.load(args.config, **options)
    if args.split not in dataset_dict:
        hint = "; add --test-size for a test split" if args.split == "test" and args.test_size is None else ""
        raise cs.OptionError(f"--split {args.split}: the config {args.config} has the split(s) "
                             f"{', '.join(dataset_dict)}{hint}")
    dataset = dataset_dict[args.split]
    for note in cs.build_notes(dataset.info):  # said again when the cache serves the build
        print(note, file=sys.stderr)
    lines = jsonl_lines(dataset)
    if args.out in (None, "-"):
        sys.stdout.writelines(lines)
    else:
        _write_atomically(args.out, lines)
    where = args.out if args.out not in (None, "-") else "stdout"
    others = [split for split in dataset_dict if split != args.split]
    note = f"; the config also has {', '.join(others)} (--split)" if others else ""
    labels = dataset["label"] if "label" in dataset.column_names else None
    mix = f" ({sum(labels)} desirable, {len(labels) - sum(labels)} undesirable)" if labels is not None else ""
    print(f"wrote {len(dataset)} {args.split} rows{mix} to {where}{note}", file=sys.stderr)


def command_stats(args: argparse.Namespace) -> None:
    from claudesidian_tools.plots import draw_figure
    from claudesidian_tools.stats import config_stats, count_config, held_out_leaks, print_stats

    if args.plot:
        _check_plot(args.plot, args.config)
    tokenizer = _tokenizer(args)
    options = _config_options(args)
    schemas = options.pop("tool_schemas", None)  # checks every config's calls; its gate, if any, with it
    counted = {}
    for name in args.config:
        counted[name], notes = count_config(name, tokenizer, schemas, **options)
        for said in (note for split in notes.values() for note in split.get("said", ())):
            print(f"{name}: {said}", file=sys.stderr)
    # Each config's own mixed batch size (the one given, or its default), as its recipe and figure count.
    sizes = {name: cs.ClaudesidianSyntheticConfig(name=name, **{**cs.CONFIGS[name].option_defaults(), **options})
             .batch_size for name in counted}
    results = {name: config_stats(splits, batch_size=sizes[name], max_length=args.max_length)
               for name, splits in counted.items()}
    layouts = {name: next(iter(splits.values())).layout for name, splits in counted.items()}
    if args.plot:
        (name, stats), = results.items()
        draw_figure(args.plot, name, stats, layouts[name], sizes[name])
        print(f"drew {args.plot}", file=sys.stderr)
    if len(results) == 1:
        (name, stats), = results.items()
        print(json.dumps(stats)) if args.json else print_stats(name, stats, layouts[name])
        return
    leaks = held_out_leaks({name: {split: each.prompts() for split, each in splits.items()}
                            for name, splits in counted.items()})
    if args.json:
        print(json.dumps({"configs": results, "held_out_leaks": leaks}))
        return
    for name, stats in results.items():
        print_stats(name, stats, layouts[name])
    for leak in leaks:
        print(f"prompts of {leak['test']}'s test split in {leak['train']}'s train split: {leak['shared']}")


def _check_plot(path: str, configs: list) -> None:
    """Before anything is built: one config, a .png file in a folder that exists, and matplotlib."""
    from claudesidian_tools.plots import INSTALL_PLOTS, plots_available

    if len(configs) > 1:
        raise cs.OptionError(f"--plot draws one config, and {len(configs)} were given; give one config")
    folder = os.path.dirname(os.path.abspath(path))
    if not path.lower().endswith(".png") or os.path.isdir(path):
        raise cs.OptionError(f"--plot {path}: give the path of a .png file (the figure is a PNG image)")
    if not os.path.isdir(folder):
        raise cs.OptionError(f"--plot {path}: the folder {folder} does not exist; create it, or choose another path")
    if not plots_available():
        raise cs.OptionError(f"--plot needs matplotlib: {INSTALL_PLOTS}")


def _tokenizer(args: argparse.Namespace):
    from claudesidian_tools.lengths import check_max_length, load_tokenizer

    if args.max_length is not None:
        check_max_length(args.max_length)
    return None if args.tokenizer is None else load_tokenizer(args.tokenizer)


def command_verify(args: argparse.Namespace) -> None:
    from claudesidian_tools.verify import verify

    for line in verify(args.target, revision=args.revision, source=args.source):
        print(line, flush=True)


def command_configs(args: argparse.Namespace) -> None:
    """The configs table, as the builder holds it."""
    for named in cs.CONFIGS.values():
        defaults = {key: value for key, value in named.option_defaults().items() if value != cs.OPTION_DEFAULTS[key]}
        options = ", ".join(f"{key}={value}" for key, value in defaults.items())
        notes = [note for note, true in (("default", named.name == cs.DEFAULT_CONFIG_NAME),
                                          ("pinned to the v1.0.0 bytes", named.pinned and not named.family),
                                          ("pinned to the family's files", named.pinned and named.family),
                                          ("in the default export", named.exported)) if true]
        print(f"{named.name:<24} {named.purpose}" + (f" [{options}]" if options else "")
              + (f" ({'; '.join(notes)})" if notes else ""))


def command_export(args: argparse.Namespace) -> None:
    from claudesidian_tools.card import no_recipe
    from claudesidian_tools.export import export, parse_config_spec

    specs = [parse_config_spec(spec) for spec in args.config or []]
    args.interrupted = f"{args.folder} is as it was"
    exported = export(args.folder, specs, source=args.source, revision=args.revision, num_shards=args.num_shards,
                      max_shard_size=args.max_shard_size, tokenizer=args.tokenizer, max_length=args.max_length,
                      replace_existing=args.replace_existing, tool_schemas=args.tool_schemas)
    args.interrupted = f"{args.folder} holds the new export"
    for item in exported:
        rows = ", ".join(
            f"{split} {cs.plural(stats['rows'], 'row')} in {cs.plural(len(item.data_files[split]), 'shard')}"
            for split, stats in item.stats.items()
        )
        print(f"{item.spec.export_name}: {rows} -> data/{item.spec.export_name}/", file=sys.stderr)
        if not item.trainer:
            print(f"{item.spec.export_name}: {no_recipe(item.spec.export_name, item.config.layout)}", file=sys.stderr)
        for said in (note for split in item.notes.values() for note in split.get("said", ())):
            print(f"{item.spec.export_name}: {said}", file=sys.stderr)
    target = os.path.abspath(args.folder)
    print(f"exported {cs.plural(len(exported), 'config')} to {args.folder}", file=sys.stderr)
    if any(item.trainer for item in exported):
        print(f"its recipes name it ./{os.path.basename(target)}: run trl from {os.path.dirname(target)}",
              file=sys.stderr)


def command_infos(args: argparse.Namespace) -> None:
    from claudesidian_tools.infos import build_infos, write_infos

    path = write_infos(build_infos(source=args.source, revision=args.revision), args.folder)
    print(f"wrote {path}", file=sys.stderr)


def command_push(args: argparse.Namespace) -> None:
    from claudesidian_tools.hub import pinned_load_lines, push

    args.interrupted = f"nothing was committed to {args.repo_id}"
    sha = push(args.folder, args.repo_id, private=args.private, commit_message=args.commit_message)
    print(f"commit {sha}")
    for line in pinned_load_lines(args.folder, args.repo_id, sha):
        print(line)


def command_tiny_model(args: argparse.Namespace) -> None:
    from claudesidian_tools.tiny_model import write_tiny_model

    if os.path.exists(args.folder) and (not os.path.isdir(args.folder) or os.listdir(args.folder)):
        what = "is a file" if not os.path.isdir(args.folder) else "holds files"
        raise cs.OptionError(f"{args.folder} {what}: the tiny model is written into a new or empty folder; choose "
                             "another")
    args.interrupted = f"{args.folder} may hold part of the model: delete it"
    write_tiny_model(args.folder, args.source, revision=args.revision)
    print(f"wrote a tiny random model to {args.folder}: give it to trl as --model_name_or_path {args.folder} for a "
          "dry run of a recipe (it learns nothing worth keeping)", file=sys.stderr)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claudesidian-synthetic",
        description="Rebuild exact, training-ready subsets of the Claudesidian synthetic dataset.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {cs.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, run) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                                  formatter_class=_HelpFormatter)
        sub.set_defaults(run=run)
        return sub

    command("configs", "list the configs: what each holds, its own defaults, which export by default", command_configs)

    build = command("build", "write one split of one config as JSONL", command_build)
    _add_config_options(build)
    build.add_argument("--split", default="train", action=_Once, help="which split to write")
    build.add_argument("--out", action=_Once, help="output file (default: stdout)")

    stats = command("stats", "what each split will teach: labels, duplicates, batch mix, KTO weights, lengths, "
                    "truncation", command_stats)
    _add_config_options(stats, several=True)
    _add_length_options(stats)
    stats.add_argument("--plot", action=_Once, metavar="FILE.png",
                       help="draw the reply lengths by label, the rows per split and the first batches' labels")
    stats.add_argument("--json", action="store_true", help="print one JSON object")

    export = command("export", "write a Hub-ready folder: data, card, TRL recipes", command_export)
    export.add_argument("folder", help="output folder (an earlier export there is replaced; nothing else is touched)")
    _add_source_options(export)
    add_option(export, "tool_schemas")
    export.add_argument("--config", action="append", metavar="[NAME=]CONFIG[:OPTION=VALUE,...]",
                        help="a config to export, e.g. mixed8=full:order=mixed,batch_size=8 (repeatable; "
                        "default: " + ", ".join(name for name, named in cs.CONFIGS.items() if named.exported) + ")")
    export.add_argument("--num-shards", type=int, action=_Once,
                        help="Parquet files per split; a multiple of your world size gives every rank whole shards "
                        "(default: as many as --max-shard-size needs)")
    export.add_argument("--max-shard-size", action=_Once,
                        help="largest shard in bytes, e.g. 500MB, 1GiB or 1500KB (default: "
                        f"{datasets.config.MAX_SHARD_SIZE}, as push_to_hub)")
    _add_length_options(export)
    export.add_argument("--replace-existing", action=_OnceFlag, nargs=0, default=False,
                        help="let export replace files at the paths it writes that it did not write itself (the "
                        "README.md of a fresh clone of a Hub dataset repository); it names them, and every other "
                        "file, .git and .gitattributes included, stays")

    tiny = command("tiny-model", "write a tiny random model for a dry run of the recipes, offline: Qwen2.5's chat "
                   "template, a tokenizer trained on the source (needs the kto extra)", command_tiny_model)
    tiny.add_argument("folder", help="a new or empty folder to write the model into")
    _add_source_options(tiny)

    infos = command("infos", "regenerate dataset_infos.json from the builder", command_infos)
    infos.add_argument("--folder", default=".", help="where to write dataset_infos.json")
    _add_source_options(infos)

    push = command("push", "upload an exported folder to a Hub dataset repository in one commit", command_push)
    push.add_argument("folder", help="a folder written by `export`")
    push.add_argument("repo_id", help="owner/name of the dataset repository")
    push.add_argument("--private", action=_OnceFlag, nargs=0, default=False, help="create the repository as private")
    push.add_argument("--commit-message", default="Upload Claudesidian synthetic dataset", help="commit message")

    verify = command("verify", "rebuild every config of an export and compare it row for row with its files",
                     command_verify)
    verify.add_argument("target", metavar="FOLDER_OR_REPO", help="an exported folder, or a Hub repository owner/name")
    verify.add_argument("--revision", action=_Once, help="the repository's revision to check (default: main)")
    verify.add_argument("--source", action=_Once,
                        help="a local copy of the source the export was made from, or the folder that holds the "
                        "source files (a family config's three) (default: the pinned files, downloaded)")
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, and answer an unknown option with the subcommand's usage and the closest valid option."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        close = difflib.get_close_matches(argv[0], ["--help", "--version"], n=1)
        commands = ", ".join(parser._subparsers._group_actions[0].choices)
        parser.error(f"unrecognized argument {argv[0]}" + (f" (did you mean {close[0]}?)" if close else "")
                     + f"; a command comes first: {commands}")
    args, extras = parser.parse_known_args(argv)
    if extras:
        sub = parser._subparsers._group_actions[0].choices[args.command]
        known = [option for action in sub._actions for option in action.option_strings]
        hints = []
        for extra in extras:
            close = difflib.get_close_matches(extra.split("=")[0], known, n=1)
            if extra.startswith("-") and close:
                hints.append(f"{extra} (did you mean {close[0]}?)")
            else:
                hints.append(extra)
        sub.error(f"unrecognized arguments: {' '.join(hints)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = argparse.Namespace()
    # `huggingface_hub` logs each retry of an unreachable Hub; the one error line below says it all.
    huggingface_hub.utils.logging.set_verbosity_error()
    # What a build dropped or relabelled is printed by each command, once, in its place (a cached build too).
    builder_logger = logging.getLogger(cs.__name__)
    level = builder_logger.level
    builder_logger.setLevel(logging.ERROR)
    if not sys.stderr.isatty():  # progress bars are for a person watching, not for a log
        datasets.disable_progress_bars()
    try:
        with interrupts.watching():
            return _run(argv, args)
    except KeyboardInterrupt as interrupt:  # as the command returned: what it put in place is there
        return _interrupted(interrupt, args)
    finally:
        builder_logger.setLevel(level)


def _run(argv: Sequence[str] | None, args: argparse.Namespace) -> int:
    try:
        vars(args).update(vars(_parse(make_parser(), argv)))
        _refuse_unread(args)
        args.run(args)
    except cs.ClaudesidianError as error:
        print(f"claudesidian-synthetic: error: {error.words(cli_voice)}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:  # the reader of stdout closed it (`| head`): nothing to say, as cat says nothing
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush either
        return 141  # 128 + SIGPIPE, what a shell reports for cat there
    except (OSError, huggingface_hub.errors.HfHubHTTPError) as error:
        # File-system and network failures: one line, no traceback (the token never appears in these).
        if isinstance(error, OSError) and (error.errno == errno.ENOSPC or "No space left" in str(error)):
            where = error.filename or datasets.config.HF_DATASETS_CACHE
            message = (f"{where}: the disk is full (no space left on the device); free some space, or set "
                       "HF_DATASETS_CACHE to a folder on another disk (the cache holds each build); nothing was "
                       "written")
        elif isinstance(error, OSError) and error.filename:
            message = f"{error.filename}: {error.strerror}; check the path, and that you may write there"
        else:
            message = f"{type(error).__name__}: {' '.join(str(error).split())}"
        print(f"claudesidian-synthetic: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        return _interrupted(interrupt, args)
    return 0


def _interrupted(interrupt: KeyboardInterrupt, args: argparse.Namespace) -> int:
    return interrupts.say(getattr(interrupt, "said", None) or interrupts.committed()
                          or getattr(args, "interrupted", None))
