"""Materialize configs into a Hub-ready folder: Parquet shards, dataset card, TRL recipes, figures,
`dataset_infos.json`, the loading script and a manifest of what was written.

Rows stream from the builder (`claudesidian_synthetic`) straight into Parquet, a row group at a time,
and every figure of the card is counted in the same pass, so memory follows the row group, not the
split. Nothing is written into the folder until every config is built; then the new files replace
those the last export wrote (its manifest lists them) and every other file stays as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet
from datasets.info import DatasetInfosDict

import claudesidian_synthetic as cs
from claudesidian_tools.card import recipe_max_length, render_texts
from claudesidian_tools.infos import dataset_info, portable_info, portable_layout, write_infos
from claudesidian_tools.interrupts import interrupt_deferred
from claudesidian_tools.lengths import check_max_length, load_tokenizer
from claudesidian_tools.manifest import (
    MANIFEST,
    MANIFEST_FORMAT,
    SCHEMAS_COPY,
    SCRIPT_PATH,
    ExportError,
    config_names,
    read_manifest,
)
from claudesidian_tools.plots import INSTALL_PLOTS, draw_figure
from claudesidian_tools.replace import make_staging, one_at_a_time, pending, recover, replace_files
from claudesidian_tools.stats import SplitStats, held_out_leaks, schemas_option, shared_between, stats_batch_sizes

# Rows held in memory at once and written as one Parquet row group (a shard's rows stay whole).
ROWS_PER_ROW_GROUP = 10_000
# Rows per Arrow chunk, as `datasets`' writer makes them.
ROWS_PER_CHUNK = datasets.config.DEFAULT_MAX_BATCH_SIZE
DEFAULT_EXPORTS = tuple(name for name, named in cs.CONFIGS.items() if named.exported)
# Options given once for the whole export, not per config.
EXPORT_WIDE = ("source", "revision", "tool_schemas")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclasses.dataclass
class ConfigSpec:
    """One exported config: its name in the folder, the builder config it comes from, and options."""

    export_name: str
    config_name: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    text: str = ""  # as the user wrote it, for messages


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_config_spec(spec: str) -> ConfigSpec:
    """`[EXPORT_NAME=]CONFIG[:option=value,...]`, e.g. `mixed4=full:order=mixed,batch_size=4`."""
    head, _, option_text = spec.partition(":")
    export_name, named, config_name = head.rpartition("=")
    config_name, export_name = config_name.strip(), export_name.strip()
    if named and not export_name:
        raise cs.OptionError(f"--config {spec}: the name before '=' is empty; give NAME=CONFIG, or CONFIG alone")
    options = {}
    for item in filter(None, (part.strip() for part in option_text.split(","))):
        key, equals, value = item.partition("=")
        if not equals:
            raise cs.OptionError(f"--config {spec}: option {item!r} needs the form option=value")
        if key.strip() in options:
            raise cs.OptionError(f"--config {spec}: {key.strip()} is given twice; give it once")
        options[key.strip()] = _parse_value(value.strip())
    if not export_name and options:
        export_name = config_name + "_" + "_".join(
            (k if v else f"no_{k}") if isinstance(v, bool) else f"{k}{v}" for k, v in sorted(options.items()))
    return ConfigSpec(export_name or config_name, config_name, options, spec)


def check_specs(specs: Sequence[ConfigSpec]) -> list[ConfigSpec]:
    """Refuse, before anything is read or written, a name that `datasets` or a path cannot hold, a
    name given twice, an unknown config or option, and options that cannot work together."""
    seen = {}
    for spec in specs:
        where = f"--config {spec.text or spec.export_name}"
        name = spec.export_name
        if not _NAME.fullmatch(name) or ".." in name or len(name) > 100:
            raise cs.OptionError(
                f"{where}: {name!r} cannot name an exported config: use up to 100 letters, digits, '_', '-' and '.' "
                "(starting with a letter or digit), as `datasets` config names and folder names allow"
            )
        datasets.BuilderConfig(name=name)  # `datasets`' own check of a config name
        if name.lower() in seen:
            raise cs.OptionError(f"{where}: the name {name} is given twice (also --config {seen[name.lower()]}; "
                                 "names that differ only in case are one folder on macOS and Windows); give each "
                                 "exported config its own name, e.g. NAME=CONFIG:OPTIONS")
        seen[name.lower()] = spec.text or name
        if spec.config_name not in cs.CONFIGS:
            raise cs.OptionError(f"{where}: unknown config {spec.config_name!r}; choose one of {', '.join(cs.CONFIGS)}")
        unknown = sorted(set(spec.options) - set(cs.OPTION_DEFAULTS) | set(spec.options) & set(EXPORT_WIDE))
        if unknown:
            allowed = sorted(set(cs.OPTION_DEFAULTS) - set(EXPORT_WIDE))
            close = difflib.get_close_matches(unknown[0].replace("-", "_"), allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close and close[0] != unknown[0] else ""
            raise cs.OptionError(f"{where}: unknown option(s) {', '.join(unknown)}{hint}; the options are "
                                 f"{', '.join(allowed)} (the source and the tool schemas are one for the whole "
                                 "export: --source, --revision, --tool-schemas)")
        try:
            resolved_config(spec)
        except cs.OptionError as error:
            raise _in_spec(error, spec) from None
    return list(specs)


def _spec_words(said: cs.Mention) -> str:
    """A mention in the words of an export's `--config` spec: `batch_size=4`, a config by its name."""
    if said.option == "name":
        return str(said.value)
    return said.option if said.bare else f"{said.option}={said.value}"


spec_voice = cs.voice(_spec_words, ", ")


def _in_spec(error: cs.ClaudesidianError, spec: ConfigSpec) -> cs.ClaudesidianError:
    """An option error said in the words of the `--config` spec the user wrote."""
    if not isinstance(error, cs.OptionError) or not spec.text:
        return error
    return error.about(f"--config {spec.text}: ", voice=spec_voice)


def resolved_config(spec: ConfigSpec) -> cs.ClaudesidianSyntheticConfig:
    """The builder config of a spec, every option resolved (the config's defaults, then the spec's)."""
    named = cs.CONFIGS[spec.config_name]
    return cs.ClaudesidianSyntheticConfig(name=spec.config_name, **{**named.option_defaults(), **spec.options})


@dataclasses.dataclass
class ExportedConfig:
    spec: ConfigSpec
    config: cs.ClaudesidianSyntheticConfig  # the builder config, every option resolved
    data_files: dict[str, list[str]]  # split -> its shards' paths, relative to the folder
    stats: dict[str, dict]  # split -> its figures (claudesidian_tools.stats)
    info: datasets.DatasetInfo
    prompts: dict[str, np.ndarray]  # split -> its distinct prompt digests (not written anywhere)
    figure: str | None = None
    notes: dict[str, dict] = dataclasses.field(default_factory=dict)  # split -> what the gate and dedupe did

    @property
    def trainer(self) -> str | None:
        """The TRL command that trains on this config's layout; None for the published columns."""
        return cs.LAYOUTS[self.config.layout].trainer

    @property
    def recipe_path(self) -> str | None:
        return f"recipes/{self.trainer}_{self.spec.export_name}.yaml" if self.trainer else None


def export(
    folder: str,
    specs: Sequence[ConfigSpec] = (),
    *,
    source: str | None = None,
    revision: str | None = None,
    num_shards: int | None = None,
    max_shard_size: int | str | None = None,
    tokenizer: str | None = None,
    max_length: int | None = None,
    replace_existing: bool = False,
    tool_schemas: str | None = None,
) -> list[ExportedConfig]:
    """Write every config of `specs` (the DEFAULT_EXPORTS when there are none) into `folder`, ready to
    upload, and return what was exported.

    Each split is written as `num_shards` Parquet files, or as many as keep each under `max_shard_size`
    (default: `datasets`' own for `push_to_hub`); a mixed config's shards hold whole batches. With a
    `tokenizer` the stats count tokens too and each recipe's `max_length` covers the config's longest
    row (or is `max_length`, with what it truncates counted). Everything is built beside the folder and
    moved in under a journal (`claudesidian_tools.replace`), so a crash at any moment leaves the last
    export or this one whole; the next export (or verify) finishes or undoes an interrupted one.
    `replace_existing` lets it replace files at the paths it writes that it did not write itself (a
    fresh clone's README.md); every other file stays. Every config's tool calls are counted against
    `tool_schemas` (default: the pinned copy), and configs that gate or use a tools layout build with it."""
    if not str(folder).strip():
        raise ExportError("the folder to export into is empty: name one, e.g. kto-data")
    named_by_user = bool(specs)
    specs = check_specs(specs or [parse_config_spec(name) for name in DEFAULT_EXPORTS])
    max_bytes = _shard_limit(num_shards, max_shard_size)
    target = os.path.abspath(folder)
    with contextlib.ExitStack() as held:  # only taking the lock is said as a lock's failure
        try:
            held.enter_context(one_at_a_time(target))
        except BlockingIOError:
            raise ExportError(f"{target}: another export into it is running; wait for it to finish, then export "
                              "again") from None
        except OSError as error:
            raise ExportError(_cannot_write(target, error)) from None
        return _export(folder, target, specs, named_by_user, source=source, revision=revision, num_shards=num_shards,
                       max_bytes=max_bytes, tokenizer=tokenizer, max_length=max_length,
                       replace_existing=replace_existing, tool_schemas=tool_schemas)


def _export(folder: str, target: str, specs: list[ConfigSpec], named_by_user: bool, *, source, revision, num_shards,
            max_bytes, tokenizer, max_length, replace_existing, tool_schemas) -> list[ExportedConfig]:
    """The export itself, while it holds the folder (see `export`)."""
    _check_sources(source, specs, named_by_user)
    _recover(target)  # before the last export is read: an interrupted one is finished or undone first
    previous = _previous_files(target, replace_existing)
    before = config_names(read_manifest(target)) if previous else []
    loaded_tokenizer = _tokenizer(tokenizer, max_length)
    schemas = cs.load_tool_schemas(tool_schemas)
    _check_writable(folder, target)
    try:
        staging = make_staging(target)
    except OSError as error:
        raise ExportError(_cannot_write(folder, error)) from None
    try:
        os.chmod(staging, 0o777 & ~_umask())
        exported = [
            _write_config(staging, spec, source=source, revision=revision, num_shards=num_shards, max_bytes=max_bytes,
                          tokenizer=loaded_tokenizer, max_length=max_length, defaults=not named_by_user,
                          tool_schemas=tool_schemas, schemas=schemas)
            for spec in specs
        ]
        figures_skipped = _write_figures(staging, exported)
        manifest = _manifest(exported, source=source, revision=revision, tokenizer=tokenizer, max_length=max_length,
                             schemas=schemas)
        manifest["figures_skipped"] = figures_skipped
        write_infos(DatasetInfosDict({item.spec.export_name: item.info for item in exported
                                      if portable_layout(item.config.layout)}), staging)
        _copy_script(staging)
        if not manifest["tool_schemas"]["pinned"]:
            shutil.copyfile(schemas.path, os.path.join(staging, SCHEMAS_COPY))
        for path, text in render_texts(manifest, location=os.path.basename(target)).items():
            _write_text(staging, path, text)
        # Every file the export wrote, with its sha256: the next export replaces those, and only while
        # they are as written (the manifest itself, rewritten each time, has none).
        manifest["files"] = {**{path: cs.file_sha256(os.path.join(staging, path)) for path in _files_under(staging)},
                             MANIFEST: None}
        _write_text(staging, MANIFEST, json.dumps(manifest, indent=1) + "\n")
        _move_in(staging, target, previous, replace_existing)
    except OSError as error:  # the disk filled up, a permission changed: the folder is as it was
        raise ExportError(_cannot_write(folder, error)) from None
    finally:
        if not pending(target):  # else the old files set aside there are the journal's: recover() decides
            shutil.rmtree(staging, ignore_errors=True)
    if manifest["figures_skipped"]:
        print(f"figures skipped: {INSTALL_PLOTS}, and export again to add them to the card", file=sys.stderr)
    gone = [name for name in before if name not in {item.spec.export_name for item in exported}]
    if gone:
        print(f"removed the last export's {', '.join(gone)}, which this export does not hold (name every config "
              "to keep with --config)", file=sys.stderr)
    return exported


def _check_sources(source: str | None, specs: list[ConfigSpec], named_by_user: bool) -> None:
    """Before any work: `source` gives every config the files it reads (a family config reads three)."""
    given = None if source is None else cs.absolute_source(source)
    for spec in specs:
        try:
            cs.member_sources(given, cs.CONFIGS[spec.config_name].members)
        except cs.SourceError:
            family = [each.export_name for each in specs if cs.CONFIGS[each.config_name].family]
            if named_by_user or not family or not os.path.isfile(str(given)):
                raise
            if cs.file_sha256(given) != cs.SOURCE_SHA256:  # not claude's v1.0.0 file: what the pinned ones say
                raise _another_version(given, next(each.config_name for each in specs
                                                   if cs.CONFIGS[each.config_name].pinned)) from None
            raise cs.OptionError(
                f"{given} is one file, and the default export's {', '.join(family)} read the family's three: give "
                "--source the folder that holds them ("
                + ", ".join(member.file for member in cs.MEMBERS.values()) + "), or name the configs to export with "
                "--config (the others read this file alone)") from None


def _another_version(path: str, name: str) -> cs.OptionError:
    """A default export of a file that is not claude's v1.0.0: name the configs that work on it."""
    works = [each for each, named in cs.CONFIGS.items() if not named.pinned and not named.family]
    return cs.OptionError(
        f"{path}: it is not the v1.0.0 source, which {name} of the default export ({', '.join(DEFAULT_EXPORTS)}) "
        "promises; for another version of the source name what to export, e.g. --config mine=balanced_custom ("
        + ", ".join(works) + " work on it)")


def source_record(source: str | None, revision: str | None, exported: list) -> dict:
    """What the manifest records of the source: claude's file (its name, sha256, revision, whether from the
    Hub) and, when a family config is exported, every member's file and sha256."""
    given = None if source is None else cs.absolute_source(source)
    members = sorted({member for item in exported for member in cs.CONFIGS[item.spec.config_name].members},
                     key=list(cs.MEMBERS).index)
    paths = cs.member_sources(given, members)

    def sha256(member: str) -> str | None:
        path = paths.get(member)
        return cs.MEMBERS[member].sha256 if path is None else None if cs.is_url(path) else cs.file_sha256(path)

    claude = paths.get("claude") if "claude" in paths else (given if given and os.path.isfile(given) else None)
    record = {"file": os.path.basename(claude) if claude else cs.SOURCE_FILENAME,
              "sha256": sha256("claude") if "claude" in paths else None,
              "revision": revision or ("main" if source is None else None), "from_hub": source is None}
    if any(cs.CONFIGS[item.spec.config_name].family for item in exported):
        record["members"] = {member: {"file": cs.MEMBERS[member].file, "sha256": sha256(member)}
                             for member in members}
    return record


def _recover(target: str) -> None:
    """Finish or undo an export into `target` that a crash interrupted, saying so in one line."""
    try:
        said = recover(target)
    except (OSError, ValueError) as error:
        raise ExportError(f"{target}: an interrupted export could not be finished or undone ({error})") from None
    if said:
        print(said, file=sys.stderr)


def _check_writable(folder: str, target: str) -> None:
    """Before any work: an existing folder must take new files (a read-only mount, an immutable folder), since
    the export is built beside it and only then moved in."""
    if not os.path.isdir(target):
        return  # the staging folder, made next, checks its parent
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".write-check.", dir=target)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:  # mkstemp names no file: the folder is where it failed
        raise ExportError(_cannot_write(folder, OSError(error.errno, error.strerror, target))) from None


def _cannot_write(folder: str, error: OSError) -> str:
    """One line for a file-system failure while exporting: the folder, the cause, what to do."""
    target = os.path.abspath(folder)
    where = error.filename if isinstance(error.filename, str) else ""
    # The folder itself when the failing path is in it, else its parent (where the export is built first).
    parent = target if where == target or where.startswith(target + os.sep) else os.path.dirname(target)
    if error.errno == errno.ENOSPC or "No space left" in str(error):
        return (f"{folder}: the disk is full (no space left on the device of {parent}), so the export could not be "
                f"written; free some space or export to another disk; {folder} is as it was")
    cause = error.strerror or " ".join(str(error).split())
    return f"{folder}: cannot write in {parent} ({cause}); choose a folder you can write to; {folder} is as it was"


def _tokenizer(name: str | None, max_length: int | None):
    if max_length is not None:
        check_max_length(max_length)
    return None if name is None else load_tokenizer(name)


def _shard_limit(num_shards: int | None, max_shard_size: int | str | None) -> int:
    """Check the sharding options; return the byte limit per shard (used when `num_shards` is None)."""
    if num_shards is not None and max_shard_size is not None:
        raise cs.OptionError("{shards} and {size}: give one (a count, or a size per shard)",
                             shards=cs.Mention("num_shards", num_shards), size=cs.Mention("max_shard_size",
                                                                                          max_shard_size))
    if num_shards is not None and (isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1):
        raise cs.OptionError("{given}: must be a positive whole number", given=cs.Mention("num_shards", num_shards))
    size = max_shard_size or datasets.config.MAX_SHARD_SIZE
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)  # a number of bytes, as the Python keyword takes it
    if isinstance(size, str) and size.endswith("b") and not size.upper().endswith("IB"):  # datasets: 100kb is bits
        raise cs.OptionError("{given}: a lower-case b means bits to datasets (8 times the shards); write "
                             + size[:-2] + size[-2:-1].upper() + "B for bytes",
                             given=cs.Mention("max_shard_size", max_shard_size))
    try:
        limit = datasets.utils.py_utils.convert_file_size_to_int(size)
    except ValueError:
        limit = 0
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise cs.OptionError("{given}: give a whole number of bytes, or of a unit, such as 500MB, 1GB or 1500KB (no "
                             "decimals)", given=cs.Mention("max_shard_size", max_shard_size))
    return limit


def shard_bounds(rows: int, num_shards: int, batch_size: int | None = None, where: str = "") -> list[int]:
    """Row boundaries of `num_shards` contiguous shards as equal as possible; with a mixed order's
    `batch_size`, every boundary falls between batches, so no aligned batch spans two shards.

    >>> shard_bounds(10, 3)
    [0, 3, 6, 10]
    >>> shard_bounds(10, 2, batch_size=4)
    [0, 4, 10]
    """
    unit = batch_size or 1
    units = math.ceil(rows / unit)
    num_shards = max(1, num_shards)
    if num_shards > units:
        what = f"batches of {unit}" if batch_size else "rows"
        raise cs.OptionError(
            f"{where}: {num_shards} shards asked for, but it has only {units} {what}; every shard needs one: "
            f"ask for at most {units} shards"
        )
    return [min(rows, units * index // num_shards * unit) for index in range(num_shards + 1)]


# --- building and writing one config ------------------------------------------------------------


def _write_config(folder: str, spec: ConfigSpec, *, source, revision, num_shards, max_bytes, tokenizer,
                  max_length, defaults: bool, tool_schemas: str | None, schemas: cs.ToolSchemas) -> ExportedConfig:
    """Stream one config's splits from the builder into Parquet shards, counting its stats."""
    config = resolved_config(spec)
    try:
        built = cs.builder(spec.config_name, source=source, revision=revision, **spec.options,
                           **schemas_option(spec.config_name, spec.options, tool_schemas))
        plans = built.plan_splits(writes_to=folder, tool_schemas=schemas)
    except cs.SourceError as error:
        if defaults and cs.CONFIGS[spec.config_name].pinned and "is not the v1.0.0 source" in str(error):
            raise _another_version(error.path, spec.config_name) from None
        raise
    except cs.OptionError as error:
        raise _in_spec(error, spec) from None
    features = built.info.features
    # A tools layout's files carry their features (`datasets`' own schema metadata): they are in no card's
    # `dataset_info:` (see infos.portable_layout), and its Json values must not be read back as plain text.
    schema = features.arrow_schema if not cs.LAYOUTS[config.layout].plain else features.arrow_schema.remove_metadata()
    data_files, counted, sizes, notes = {}, {}, {}, {}
    os.makedirs(os.path.join(folder, "data", spec.export_name), exist_ok=True)
    for split, plan in plans.items():
        rows = len(plan)
        estimate = int(plan.lengths.sum()) + 64 * rows
        shards = num_shards or math.ceil(estimate / max_bytes)
        where = f"{spec.export_name}/{split}"
        units = math.ceil(rows / (config.batch_size or 1))
        what = (cs.plural(units, f"batch of {config.batch_size}", f"batches of {config.batch_size}")
                if config.batch_size else cs.plural(units, "row"))
        if shards > units and num_shards:  # a small split (a test split) cannot be cut finer than its units
            print(f"{where}: {what}, so {cs.plural(units, 'shard')} of the {num_shards} asked (every shard holds "
                  "one at least)", file=sys.stderr)
            shards = units
        elif shards > units:
            raise cs.OptionError(f"{where}: {shards} shards of at most {max_bytes:,} bytes are needed, more than its "
                                 f"{what}: give a larger --max-shard-size")
        writer = _ShardWriter(folder, where, shard_bounds(rows, shards, config.batch_size, where), schema)
        counted[split], notes[split] = SplitStats(config.layout, tokenizer, schemas, plan.checks), plan.notes
        tables, pending = [], 0
        for batch in built.iter_batches(plan, min(ROWS_PER_CHUNK, ROWS_PER_ROW_GROUP)):
            counted[split].add(batch)
            tables.append(_arrow_table(batch, features, schema))
            pending += tables[-1].num_rows
            if pending >= ROWS_PER_ROW_GROUP:
                writer.write(pa.concat_tables(tables))
                tables, pending = [], 0
        if tables:
            writer.write(pa.concat_tables(tables))
        data_files[split] = writer.close()
        sizes[split] = writer.nbytes
    # The stats come once the builder's per-row arrays are gone: the peak then follows the split's
    # per-row numbers alone, not both at once.
    del built, plans, plan
    stats = {split: each.result(stats_batch_sizes(config.batch_size), max_length) for split, each in counted.items()}
    prompts = {split: each.prompts() for split, each in counted.items()}
    download_size = sum(os.path.getsize(os.path.join(folder, path)) for paths in data_files.values() for path in paths)
    info = dataset_info(features, spec.export_name, {split: (stats[split]["rows"], sizes[split]) for split in stats},
                        download_size)
    return ExportedConfig(spec, config, data_files, stats, info, prompts, notes=notes)


def _arrow_table(batch: dict, features: datasets.Features, schema: pa.Schema) -> pa.Table:
    """A columnar batch as Arrow in the features' schema. The examples of a plain layout are stored as
    they are; a tools layout's `Json` values are written as exact JSON text first, then cast."""
    if cs.layout_of(list(batch)).plain:
        return pa.Table.from_pydict(batch, schema=schema)
    return pa.Table.from_pydict(cs.json_text(batch, features)).cast(schema)


class _ShardWriter:
    """Writes a split's rows, in order, into the shards `bounds` delimit; each write is a row group
    (cut where a shard ends). Files: `data/<config>/<split>-0000k-of-0000N.parquet`."""

    def __init__(self, folder: str, where: str, bounds: list[int], schema: pa.Schema):
        config, split = where.split("/")
        count = len(bounds) - 1
        self.paths = [f"data/{config}/{split}-{index:05d}-of-{count:05d}.parquet" for index in range(count)]
        self.folder, self.bounds, self.schema = folder, bounds, schema
        self.written, self.shard, self.nbytes, self._file = 0, 0, 0, None

    def write(self, table: pa.Table) -> None:
        self.nbytes += table.nbytes
        while table.num_rows:
            room = self.bounds[self.shard + 1] - self.written
            if room == 0:
                self._close_shard()
                continue
            piece, table = table.slice(0, room), table.slice(room)
            if self._file is None:
                self._file = pyarrow.parquet.ParquetWriter(os.path.join(self.folder, self.paths[self.shard]),
                                                           self.schema)
            self._file.write_table(piece, row_group_size=piece.num_rows)
            self.written += piece.num_rows

    def _close_shard(self) -> None:
        if self._file is None:  # an empty shard still is a file
            pyarrow.parquet.write_table(self.schema.empty_table(), os.path.join(self.folder, self.paths[self.shard]))
        else:
            self._file.close()
        self._file, self.shard = None, self.shard + 1

    def close(self) -> list[str]:
        while self.shard < len(self.paths):
            self._close_shard()
        return self.paths


def _copy_script(folder: str) -> None:
    """The loading script, and beside it the pinned tool schemas (its default) with their licence."""
    path = os.path.join(folder, SCRIPT_PATH)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(cs.__file__, path)
    pinned = cs.load_tool_schemas().path
    for shipped in (pinned, os.path.splitext(pinned)[0] + ".LICENSE"):
        shutil.copyfile(shipped, os.path.join(os.path.dirname(path), os.path.basename(shipped)))


def _write_figures(folder: str, exported: list[ExportedConfig]) -> bool:
    """One figure per config (`figures/<config>.png`); True when matplotlib is missing and none was drawn."""
    os.makedirs(os.path.join(folder, "figures"), exist_ok=True)
    for item in exported:
        item.figure = f"figures/{item.spec.export_name}.png"
        if not draw_figure(os.path.join(folder, item.figure), item.spec.export_name, item.stats,
                           cs.LAYOUTS[item.config.layout], item.config.batch_size):
            for each in exported:
                each.figure = None
            shutil.rmtree(os.path.join(folder, "figures"))
            return True
    return False


# --- the manifest: what the export wrote, and everything its card says --------------------------


def _manifest(exported: list[ExportedConfig], *, source, revision, tokenizer, max_length,
              schemas: cs.ToolSchemas) -> dict:
    """What the export recorded: the source, each config's options, files and figures, and the
    prompts shared across configs. The card and recipes are rendered from this (again by `push`)."""
    entries = []
    for item in exported:
        given = {key: value for key, value in item.spec.options.items()}
        entries.append({
            "name": item.spec.export_name,
            "config": item.spec.config_name,
            "options": given,
            "resolved": {option: getattr(item.config, option) for option in cs.OPTION_DEFAULTS
                         if option not in ("source", "revision")},
            "layout": item.config.layout,
            "trainer": item.trainer,
            "recipe": item.recipe_path,
            "figure": item.figure,
            "data_files": item.data_files,
            "stats": item.stats,
            "notes": item.notes,
            "shared_prompts": shared_between(item.prompts) if len(item.prompts) > 1 else 0,
            "max_length": recipe_max_length(item.stats, tokenizer=tokenizer, max_length=max_length,
                                            tools=cs.LAYOUTS[item.config.layout].tools, trainer=item.trainer),
            "info": portable_info(item.info),
        })
    return {
        "format": MANIFEST_FORMAT,
        "package_version": cs.__version__,
        "source": source_record(source, revision, exported),
        "tokenizer": tokenizer,
        "tool_schemas": {"file": os.path.basename(schemas.path), "sha256": schemas.sha256,
                         "pinned": schemas.sha256 == cs.TOOL_SCHEMAS_SHA256,
                         **({} if schemas.sha256 == cs.TOOL_SCHEMAS_SHA256 else {"copy": SCHEMAS_COPY})},
        "configs": entries,
        "held_out_leaks": held_out_leaks({item.spec.export_name: item.prompts for item in exported}),
    }


# --- moving the new export in: nothing else is touched ------------------------------------------


def _files_under(folder: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(top, name), folder).replace(os.sep, "/")
        for top, _, names in os.walk(folder) for name in names
    )


def _previous_files(target: str, replace_existing: bool = False) -> list[str]:
    """The files an earlier export wrote into `target`, which this one replaces. Refused: a file where
    the folder should be, a folder of other files (hidden ones, such as `.git`, are let be) unless
    `replace_existing`, and a file the export wrote that was changed since (an edited recipe is the
    user's now)."""
    if os.path.exists(target) and not os.path.isdir(target):
        raise ExportError(f"{target} is a file; export writes a folder: choose a new folder name")
    if not os.path.isdir(target):
        return []
    manifest = read_manifest(target)
    if manifest is None:
        present = sorted(name for name in os.listdir(target) if not name.startswith("."))
        if present and not replace_existing:
            raise ExportError(
                cs.escaped(f"{target} holds files that export did not write ({', '.join(present[:5])}) and no "
                           f"{MANIFEST}; ") + "choose a new or empty folder, or, for a clone of a Hub repository, "
                "give {replace} to let export replace the files it needs (it names them; every other file stays)",
                replace=cs.Mention("replace_existing", True),
            )
        return []
    written = {path: sha256 for path, sha256 in manifest["files"].items() if _inside(target, path)}
    changed = [path for path, sha256 in written.items() if sha256 is not None
               and os.path.isfile(os.path.join(target, path)) and cs.file_sha256(os.path.join(target, path)) != sha256]
    them = "it" if len(changed) == 1 else "them"
    if changed and not replace_existing:
        raise ExportError(
            cs.escaped(f"{target}: {', '.join(changed[:5])} changed since the last export wrote {them}, "
                       f"and an export would replace or remove {them}: ")
            + "copy your changes elsewhere and give {replace} (or export into another folder)",
            replace=cs.Mention("replace_existing", True),
        )
    if changed:
        print(f"replacing {', '.join(changed)}, changed since the last export wrote {them} "
              "(--replace-existing)",
              file=sys.stderr)
    return list(written)


def _inside(target: str, relative: str) -> bool:
    path = os.path.normpath(os.path.join(target, relative))
    return path.startswith(target + os.sep) and not os.path.isabs(relative)


def _move_in(staging: str, target: str, previous: list[str], replace_existing: bool) -> None:
    """Replace the earlier export's files by the new ones and leave every other file as it was, under
    the journal of `replace_files`. A path the new export needs that holds a file no export wrote is
    refused before anything moves (or, with `replace_existing`, replaced and named). Ctrl-C waits until
    the moves are done, so the folder is never half of two exports."""
    new = _files_under(staging)
    in_the_way = [path for path in new if path not in previous and os.path.lexists(os.path.join(target, path))]
    if in_the_way and not replace_existing:
        raise ExportError(
            cs.escaped(f"{target} holds {', '.join(in_the_way[:5])}, which export did not write but would replace; ")
            + "move it away, export into another folder, or give {replace} to let export replace it",
            replace=cs.Mention("replace_existing", True),
        )
    with interrupt_deferred(f"{target} holds the new export"):
        replace_files(target, staging, new, [path for path in previous if _inside(target, path)])
    if in_the_way:
        print(f"replaced {', '.join(in_the_way)}, which export did not write ({len(in_the_way)} "
              f"{'file' if len(in_the_way) == 1 else 'files'}; every other file stays)", file=sys.stderr)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_text(folder: str, relative: str, text: str) -> None:
    path = os.path.join(folder, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
