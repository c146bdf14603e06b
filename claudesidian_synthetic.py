"""Claudesidian synthetic tool-calling dataset, rebuilt into exact, training-ready subsets.

This file is both the library module (`import claudesidian_synthetic as cs; cs.load(...)`) and the
Hub loading script for `datasets<4`, so it imports only `datasets`, `numpy` and the standard library,
one import per line (the `datasets<4` script loader misreads `import a, b`).

Layout: source pin and schema; errors; the options, each declared once; the table of configs; the
builder and `load()`; reading the source; then the pure selection functions (which rows, in which
order) that the builder calls and the tests check without `datasets`.
"""

import array
import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import marshal
import math
import os
import random
import re
import signal
import struct
import sys
import warnings
from typing import Any
from typing import Callable
from typing import Optional
from typing import Sequence
from typing import Union

import datasets
import huggingface_hub
import numpy as np

__version__ = "1.1.0"

# --- source pin and schema -------------------------------------------------------------------

SOURCE_FILENAME = "syngen_toolset_v1.0.0_claude.jsonl"
SOURCE_REPO_ID = "professorsynapse/claudesidian-synthetic-dataset"
# Pinned configs promise these exact bytes (the v1.0.0 file, 1000 rows, 746 / 254).
SOURCE_SHA256 = "861a7d7d575f2f1f6108b846d4e54ca6a70b2a4316e56ffef7eaeda61a5426a4"
SOURCE_NUM_BYTES = 1_627_040
PUBLISHED_SEED = 42
# Rows per generation shard: a larger split is built by `num_proc` processes in parallel and streams
# as several shards.
ROWS_PER_SHARD = 16_384

# The seven string fields of `context`, in the order the source writes them (the raw export keeps it).
CONTEXT_FIELDS = (
    "sessionId",
    "workspaceId",
    "sessionDescription",
    "sessionMemory",
    "toolContext",
    "primaryGoal",
    "subgoal",
)
ROW_KEYS = ("conversations", "label", "context")
ORDERS = ("source", "shuffle", "mixed")
# How lines are read: a UTF-8 byte-order mark and JSON whitespace around a row change nothing
# (bytes.strip() would also take \x0b and \x0c, which JSON refuses).
_BOM = b"\xef\xbb\xbf"
_JSON_SPACE = b" \t\r\n"
_DECODER = json.JSONDecoder()
# Only a \uD800-\uDFFF escape can put half a character into a row; lines without one skip that check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD]")

_MESSAGE = {"role": datasets.Value("string"), "content": datasets.Value("string")}
_CONTEXT = {name: datasets.Value("string") for name in CONTEXT_FIELDS}
# The columns of each layout. A Python list of a struct means "list of struct" on every `datasets`
# from 3.x to 5.x.
FEATURES_BY_LAYOUT = {
    # TRL's unpaired preference format (KTO), conversational.
    "kto": datasets.Features(
        {"prompt": [_MESSAGE], "completion": [_MESSAGE], "label": datasets.Value("bool"), "context": _CONTEXT}
    ),
    # The published file's own columns, for pipelines that read `example["conversations"]`.
    "conversations": datasets.Features(
        {"conversations": [_MESSAGE], "label": datasets.Value("bool"), "context": _CONTEXT}
    ),
    # TRL's conversational language-modeling format (SFT): the whole conversation.
    "messages": datasets.Features({"messages": [_MESSAGE]}),
    # TRL's conversational preference format (DPO, ORPO): one prompt, a chosen and a rejected reply.
    "preference": datasets.Features({"prompt": [_MESSAGE], "chosen": [_MESSAGE], "rejected": [_MESSAGE]}),
}
FEATURES = FEATURES_BY_LAYOUT["kto"]
LAYOUTS = tuple(FEATURES_BY_LAYOUT)

DESCRIPTION = """\
Synthetic tool-calling conversations for the Claudesidian Obsidian agent, each labelled desirable
(true) or undesirable (false), rebuilt exactly into training-ready subsets: unpaired preference data
for TRL's KTOTrainer (prompt, completion, label, context), the desirable conversations for SFT
(messages) and the prompts with both labels as preference pairs for DPO (prompt, chosen, rejected).
"""
_HOMEPAGE = "https://huggingface.co/datasets/professorsynapse/claudesidian-synthetic-dataset"
_LICENSE = "mit"
_CITATION = """\
@misc{claudesidian_synthetic_2025,
  title  = {Claudesidian synthetic tool-calling dataset},
  author = {ProfSynapse},
  year   = {2025},
  url    = {https://huggingface.co/datasets/professorsynapse/claudesidian-synthetic-dataset}
}
"""

logger = logging.getLogger("claudesidian_synthetic")


# --- errors -----------------------------------------------------------------------------------


def _escaped(text: str) -> str:
    return str(text).replace("{", "{{").replace("}", "}}")


class ClaudesidianError(ValueError):
    """Base of this package's errors: a ValueError whose message says what, where and what to do, in
    the caller's words: `str(error)` speaks Python keywords, `error.render("cli")` command-line flags.

    The message is a template whose fields are `Mention`s of options (plain text has no fields)."""

    voice: Optional[str] = None  # set where the message must keep one voice (an export's `--config` spec)

    def __init__(self, template: str, **mentions: Any):
        self.template, self.mentions = (template if mentions else _escaped(template)), mentions
        super().__init__(self.render("python"))

    def render(self, voice: str = "python") -> str:
        voice = self.voice or voice
        words = {key: value.render(voice) if hasattr(value, "render") else value
                 for key, value in self.mentions.items()}
        return self.template.format(**words)


class SourceError(ClaudesidianError):
    """The source file is unreadable, malformed or not the promised bytes."""

    def __init__(self, path: str, problem: str, fix: str, line: Optional[int] = None, **mentions: Any):
        self.path, self.line = path, line
        where = f"{path}, line {line}" if line is not None else str(path)
        if not mentions:  # plain text: the base class escapes it once
            super().__init__(f"{where}: {problem}. {fix}")
        else:
            super().__init__(_escaped(f"{where}: {problem}. ") + fix, **mentions)


class OptionError(ClaudesidianError):
    """An option has a value that cannot work; the message names the option and the fix."""

    def about(self, prefix: str, suffix: str = "", **mentions: Any) -> "OptionError":
        """The same error, said about something (a file, a split): `prefix` + message + `suffix`."""
        return OptionError(_escaped(prefix) + self.template + suffix, **{**self.mentions, **mentions})


class _Placeholder(str):
    """A value to fill in, shown as it is (`source=PATH`, `--source PATH`)."""

    def __repr__(self) -> str:
        return str(self)


_NOTHING = object()


class Mention:
    """An option as its caller writes it: `batch_size=4` in Python, `--batch-size 4` on the command
    line, `batch_size=4` in an export's `--config` spec; a config as `name='full'` or `the config full`."""

    def __init__(self, option: str, value: Any = _NOTHING):
        self.option, self.value = option, value

    def render(self, voice: str = "python") -> str:
        if self.option == "name":
            return {"python": f"name={self.value!r}", "cli": f"the config {self.value}"}.get(voice, str(self.value))
        if voice == "cli":
            flag = "--" + self.option.replace("_", "-")
            return flag if self.value is _NOTHING or self.value is True else f"{flag} {self.value}"
        if self.value is _NOTHING:
            return self.option
        return f"{self.option}={self.value!r}" if voice == "python" else f"{self.option}={self.value}"


class _Mentions:
    """Several options, joined: `desirable=300, undesirable=200` or `--desirable 300 --undesirable 200`."""

    def __init__(self, mentions: list):
        self.mentions = mentions

    def render(self, voice: str = "python") -> str:
        return (" " if voice == "cli" else ", ").join(mention.render(voice) for mention in self.mentions)


_FIX_ROW = (
    'Fix or delete that line: each line must be one JSON object {"conversations": [{"role": ..., '
    '"content": ...}, ..., {"role": "assistant", "content": ...}], "label": true|false, '
    '"context": {...} or null}'
)


# --- options: each declared once, with its rule, default and help ----------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """The values an option takes (imbalanced-learn's `_parameter_constraints`, one per option):
    a test, the words that state it, and how the command line reads it (None: a flag)."""

    states: str
    accepts: Callable[[Any], bool]
    parse: Optional[Callable[[str], Any]] = str
    choices: tuple = ()


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_test_size(text: str) -> Union[int, float]:
    """`0.1` is a fraction of the source, `100` a row count."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _choice(*values: str) -> Rule:
    return Rule(f"one of {', '.join(values)}", lambda value: value in values, str, values)


_COUNT = Rule("a positive whole number", lambda value: _is_whole(value) and value >= 1, int)
_STRATA = Rule("a whole number of strata, at least 2 (one stratum matches nothing)",
               lambda value: _is_whole(value) and value >= 2, int)
_WHOLE = Rule("a whole number", _is_whole, int)
_POSITIVE = Rule(
    "a finite number above 0",
    lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf,
    float,
)
_FLAG = Rule("True or False", lambda value: isinstance(value, bool), None)
_TEXT = Rule("text", lambda value: isinstance(value, str))
_TEST_SIZE = Rule(
    "a fraction of the source between 0 and 1 (e.g. 0.1), a whole number of rows (at least 1), or 0 for no test "
    "split",
    lambda value: (_is_whole(value) and value >= 0) or (isinstance(value, float) and 0 <= value < 1),
    _parse_test_size,
)


def _option(default: Any, rule: Rule, help: str, shown: Optional[str] = None) -> Any:
    """One option: its default, its rule, its help, and how `--help` shows a default of None."""
    return dataclasses.field(default=default, metadata={"rule": rule, "help": help, "shown": shown})


@dataclasses.dataclass
class ClaudesidianSyntheticConfig(datasets.BuilderConfig):
    """Which subset to build and from which source: a named config of `CONFIGS` and its options.
    Each option is declared once, here; the command line, its `--help` and the docs read these."""

    source: Optional[str] = _option(
        None, _TEXT, f"local path or URL of {SOURCE_FILENAME}", "the Hub file at the revision, cached"
    )
    revision: str = _option("main", _TEXT, "Hub revision (branch, tag or commit) of the default source")
    desirable: Optional[int] = _option(
        None, _COUNT, "desirable (True) rows to take; the other label is kept whole unless given too",
        "as many as the smaller label has",
    )
    undesirable: Optional[int] = _option(
        None, _COUNT, "undesirable (False) rows to take; the other label is kept whole unless given too",
        "as many as the smaller label has",
    )
    ratio: Optional[float] = _option(
        None, _POSITIVE, "desirable rows per undesirable row, the smaller label kept whole"
    )
    length_strata: Optional[int] = _option(
        None,
        _STRATA,
        "match the labels' completion lengths (coarsened exact matching): cut both labels into this many "
        "strata at the smaller label's length quantiles and keep as many rows of each label per stratum as "
        "the smaller side has (or the ratio)",
    )
    seed: int = _option(PUBLISHED_SEED, _WHOLE, "random seed of the sampling, the order and the test split "
                        f"({PUBLISHED_SEED} is the published one)")
    replacement: bool = _option(False, _FLAG, "draw with replacement, so a label can be oversampled past its size")
    dedupe: bool = _option(False, _FLAG, "drop exact duplicate lines before selecting, from both splits")
    order: str = _option(
        "shuffle",
        _choice(*ORDERS),
        "row order: source, shuffle, or mixed (every batch-size consecutive rows hold both labels)",
    )
    batch_size: Optional[int] = _option(
        None, _COUNT, "rows per batch of the mixed order: your per_device_train_batch_size"
    )
    test_size: Optional[Union[float, int]] = _option(
        None,
        _TEST_SIZE,
        "hold out a prompt-disjoint test split before the selection, the same prompts for every config: "
        "a fraction of the source (0.1), a row count (100), or 0 for none",
    )
    layout: str = _option(
        "kto",
        _choice(*LAYOUTS),
        "columns: kto (prompt, completion, label, context), conversations (the published file's), "
        "messages (SFT) or preference (prompt, chosen, rejected)",
    )

    def __post_init__(self):
        super().__post_init__()
        if self.name in CONFIGS:  # datasets' own default config, "default", is never used here
            self.check()

    def check(self) -> None:
        """Raise OptionError for a value outside its option's rule, an option this config does not
        take, or options that cannot work together (also called after datasets sets overrides)."""
        named = CONFIGS[self.name]
        defaults = named.option_defaults()
        for option in OPTIONS:
            value, rule = getattr(self, option.name), option.metadata["rule"]
            if value is not None and not rule.accepts(value):
                raise OptionError("{given}: must be " + rule.states, given=Mention(option.name, value))
        if self.test_size == 0:  # `None` cannot say "no test split": `datasets` drops None overrides
            self.test_size = None
        given = {name for name, default in defaults.items() if getattr(self, name) != default}
        refused = sorted(given - named.takes)
        if refused:
            option = refused[0]
            raise OptionError(
                "{given} is not an option of {config} ({purpose}); " + named.why_not,
                given=Mention(option, getattr(self, option)), config=Mention("name", self.name),
                purpose=named.purpose, option=Mention(option), **_CONFIG_MENTIONS,
            )
        selection = SELECTIONS[named.selection]
        for option, allowed in (("order", selection.orders), ("layout", selection.layouts)):
            if getattr(self, option) not in allowed:
                raise OptionError(
                    "{given} does not apply to {config} ({purpose}): use one of " + ", ".join(allowed),
                    given=Mention(option, getattr(self, option)), config=Mention("name", self.name),
                    purpose=named.purpose,
                )
        self._check_together(given)

    def _check_together(self, given: set) -> None:
        """The rules that tie two options together; each message names only the options given."""
        counts = [Mention(name, getattr(self, name)) for name in ("desirable", "undesirable") if name in given]
        if self.ratio is not None and counts:
            raise OptionError("{ratio} with {counts}: give either counts or a ratio, not both",
                              ratio=Mention("ratio", self.ratio), counts=_Mentions(counts))
        if self.length_strata is not None:
            clash = counts + ([Mention("replacement", True)] if self.replacement else [])
            if clash:
                raise OptionError(
                    "{strata} decides how many rows of each label it keeps, so {clash} cannot apply: "
                    "leave it out (a ratio still applies)",
                    strata=Mention("length_strata", self.length_strata), clash=_Mentions(clash),
                )
        if self.order == "mixed" and self.batch_size is None:
            raise OptionError("{order} needs {batch_size} (your per_device_train_batch_size)",
                              order=Mention("order", "mixed"), batch_size=Mention("batch_size"))
        if self.order != "mixed" and self.batch_size is not None:
            raise OptionError("{batch_size} applies only to {mixed}" + (", not {order}" if "order" in given else ""),
                              batch_size=Mention("batch_size", self.batch_size), mixed=Mention("order", "mixed"),
                              order=Mention("order", self.order))
        randomless = CONFIGS[self.name].selection != "balanced" and self.order == "source" and self.test_size is None
        if "seed" in given and randomless:
            raise OptionError(
                "{seed} has no effect on {config} in source order: give {shuffle} (or a test split) for the "
                "seed to choose something, or leave it out",
                seed=Mention("seed", self.seed), config=Mention("name", self.name),
                shuffle=Mention("order", "shuffle"),
            )
        if self.source is not None and "revision" in given:
            raise OptionError("{source} and {revision}: the revision picks the Hub file, the source replaces it; "
                              "give one of them",
                              source=Mention("source", self.source), revision=Mention("revision", self.revision))


OPTIONS = tuple(
    field for field in dataclasses.fields(ClaudesidianSyntheticConfig)
    if field.name not in {base.name for base in dataclasses.fields(datasets.BuilderConfig)}
)
# The options a user passes, with their defaults before a config's own (CONFIGS) apply.
OPTION_DEFAULTS = {field.name: field.default for field in OPTIONS}


# --- the configs: one entry each -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Selection:
    """How a kind of config picks its rows: the options it reads, its layouts (its default first)
    and orders, why it takes no other option, and how its test split is made of the held-out rows."""

    takes: frozenset
    layouts: tuple
    orders: tuple
    why_not: str
    test_split: str
    pairs_rows: bool = False  # an example is two source rows of one prompt (reads each row's prompt and reply)


_ALWAYS = frozenset({"source", "revision", "seed", "test_size", "layout", "order"})
SELECTIONS = {
    "every_row": Selection(
        _ALWAYS | {"dedupe", "batch_size"}, ("kto", "conversations"), ORDERS,
        "it keeps every row: use {custom} to choose rows", "every_row",
    ),
    "balanced": Selection(
        frozenset(OPTION_DEFAULTS), ("kto", "conversations"), ORDERS, "", "every_row",
    ),
    "desirable_only": Selection(
        _ALWAYS | {"dedupe"}, ("messages", "conversations"), ("shuffle", "source"),
        "it holds the desirable rows only; for both labels use {custom} (KTO) or {pairs} (DPO)", "desirable_only",
    ),
    "preference_pairs": Selection(
        _ALWAYS, ("preference",), ("shuffle", "source"),
        "it holds every distinct (desirable, undesirable) reply pair of each prompt that has both labels, "
        "so its size follows from the source; for counts and ratios use {custom}",
        "preference_pairs", pairs_rows=True,
    ),
}


@dataclasses.dataclass(frozen=True)
class NamedConfig:
    """One entry of the configs table: everything that is true of a named config."""

    name: str
    purpose: str
    selection: str
    defaults: dict = dataclasses.field(default_factory=dict)
    only: Optional[frozenset] = None  # the options it takes, when fewer than its selection's
    why_only: str = ""
    pinned: bool = False  # promises the v1.0.0 bytes, so it checks the source's sha256
    exported: bool = False  # in the default export

    @property
    def takes(self) -> frozenset:
        takes = SELECTIONS[self.selection].takes
        return takes & (self.only | {"source", "revision"}) if self.only is not None else takes

    @property
    def why_not(self) -> str:
        return self.why_only or SELECTIONS[self.selection].why_not

    def option_defaults(self) -> dict:
        """Every option's value when the caller gives none: the option's default, then this config's."""
        layout = {"layout": SELECTIONS[self.selection].layouts[0]}
        return {**OPTION_DEFAULTS, **layout, **self.defaults}


_HELD_OUT = {"test_size": 0.1}
CONFIGS = {
    named.name: named
    for named in (
        NamedConfig(
            "balanced_254", "exactly the published 254 + 254 file, seed 42, in its order", "balanced",
            only=frozenset({"layout"}), pinned=True, exported=True,
            why_only="it is the published file, every row in training in its order; use {custom} to choose "
            "{option}, or {full_eval} for a held-out test split",
        ),
        NamedConfig("full", "every source row", "every_row", {"order": "source"}, pinned=True, exported=True),
        NamedConfig(
            "full_eval", "every source row, a tenth held out as the test split, in mixed batches of 4", "every_row",
            {**_HELD_OUT, "order": "mixed", "batch_size": 4}, pinned=True, exported=True,
        ),
        NamedConfig("balanced_custom", "your own balanced subset", "balanced"),
        NamedConfig(
            "balanced_length_matched",
            "both labels in equal numbers with matching completion lengths (10 strata), in mixed batches of 4",
            "balanced", {"length_strata": 10, "order": "mixed", "batch_size": 4}, exported=True,
        ),
        NamedConfig(
            "sft", "the desirable conversations, for supervised fine-tuning (SFT)", "desirable_only", _HELD_OUT,
            exported=True,
        ),
        NamedConfig(
            "pairs", "preference pairs of the prompts that have both labels, for DPO or ORPO", "preference_pairs",
            _HELD_OUT,
            exported=True,
        ),
    )
}
DEFAULT_CONFIG_NAME = "balanced_254"
# Config names that messages may suggest.
_CONFIG_MENTIONS = {name: Mention("name", name) for name in ("balanced_custom", "full_eval", "pairs")}
_CONFIG_MENTIONS["custom"] = _CONFIG_MENTIONS.pop("balanced_custom")


def random_stream(seed: int, stream: str, epoch: int = 0) -> random.Random:
    """The one place that seeds a random generator: each use has a stream of its own. `selection`
    is `random.Random(seed)` itself, the published recipe's generator."""
    if stream == "selection":
        return random.Random(seed)
    names = {"held_out": f"test_size:{seed}", "test_order": f"{seed}:test", "sampler_epoch": f"{seed}:{epoch}"}
    return random.Random(names[stream])


# --- the builder ------------------------------------------------------------------------------


class _CheckedRowFeatures(datasets.Features):
    """Features for rows that already fit them exactly: encoding is the identity."""

    def encode_example(self, example: dict) -> dict:
        return example


class ClaudesidianSynthetic(datasets.GeneratorBasedBuilder):
    """Rebuilds every config of `CONFIGS` from the source JSONL on the fly."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = ClaudesidianSyntheticConfig
    BUILDER_CONFIGS = [
        ClaudesidianSyntheticConfig(
            name=named.name, version=datasets.Version("1.0.0"), description=named.purpose, **named.option_defaults()
        )
        for named in CONFIGS.values()
    ]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG_NAME

    def __init__(self, *args, **kwargs):
        source = kwargs.get("source")
        if source == "":
            raise SourceError("(empty)", "the source path is empty", "Pass {source} (a local copy of "
                              + SOURCE_FILENAME + "), or leave it out to use the Hub file",
                              source=Mention("source", _Placeholder("FILE")))
        if source is not None and not _is_url(source):
            source = os.path.abspath(os.path.expanduser(str(source)))
            fix = "Pass {source} (a local copy of " + SOURCE_FILENAME + "), or leave it out to use the Hub file"
            given = Mention("source", _Placeholder("FILE"))
            if os.path.isdir(source):
                raise SourceError(source, "is a folder, not a file", fix, source=given)
            if not os.path.isfile(source):
                raise SourceError(source, "no such file", fix, source=given)
            kwargs["source"] = source
        # The cache entry is keyed by this code, the source's bytes and the `datasets` version, so an edited
        # local source (or an edited builder) is rebuilt instead of served stale, and a `datasets` that
        # cannot read another's cache files (3.x reads no 5.x `List`) never meets them.
        self._source_sha256 = _sha256_of_file(source) if source and not _is_url(source) else None
        code = kwargs.get("hash") or _sha256_of_file(__file__)
        key = f"{code}:{self._source_sha256}:{datasets.__version__}"
        kwargs["hash"] = hashlib.sha256(key.encode()).hexdigest()[:16]
        super().__init__(*args, **kwargs)
        self.config.check()

    def get_exported_dataset_info(self) -> datasets.DatasetInfo:
        # `datasets<4` checks split sizes against dataset_infos.json, which holds each config with its
        # defaults: only a pinned config with those options has them for sure.
        info = super().get_exported_dataset_info()
        named = CONFIGS[self.config.name]
        if not named.pinned or any(getattr(self.config, key) != value for key, value in named.option_defaults().items()
                                   if key not in ("source", "revision", "layout")):
            info.splits = None
        return info

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=DESCRIPTION,
            features=FEATURES_BY_LAYOUT.get(self.config.layout, FEATURES),  # a bad layout is refused just after
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        path = _fetch_source(dl_manager, self.config)
        if CONFIGS[self.config.name].pinned:
            _verify_pinned_source(path, self.config.name, self._source_sha256 if path == self.config.source else None)
        with _gc_frozen():
            scan = scan_source(path)
        keys = read_row_keys(path, scan) if needs_row_keys(self.config) else None
        try:
            splits = plan_splits(scan, self.config, keys)
        except OptionError as error:
            raise error.about(f"{path}: ") from None
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"path": path, "shards": _shards(scan, rows)})
            for split, rows in splits.items()
        ]

    def _prepare_split(self, *args, **kwargs):
        # Every row was checked by `scan_source` and shaped by `to_example`, so `datasets`' per-value
        # encoding walk would hand each one back unchanged; at 100k rows that walk was a third of the
        # build. Swapped in for the generation only: the Dataset you get has the plain features.
        features = self.info.features
        self.info.features = _CheckedRowFeatures(features)
        try:
            with _gc_frozen():
                return super()._prepare_split(*args, **kwargs)
        finally:
            self.info.features = features

    def _generate_examples(self, path, shards):
        layout = self.config.layout
        with open(path, "rb") as file:  # `open` reads URLs too when datasets streams this module
            unbuffered = getattr(file, "raw", file)  # rows are read out of order: a buffer only costs a copy
            for start, offsets, lengths in shards:
                for position, (offset, length) in enumerate(zip(offsets.tolist(), lengths.tolist()), start):
                    if isinstance(offset, list):  # a preference pair: the chosen row, then the rejected one
                        rows = [_read_row(unbuffered, path, *where) for where in zip(offset, length)]
                        yield position, to_example(rows[0], layout, rejected=rows[1])
                    else:
                        yield position, to_example(_read_row(unbuffered, path, offset, length), layout)


def _read_row(file, path: str, offset: int, length: int) -> dict:
    """The source row at `offset`, already checked by the scan."""
    file.seek(offset)
    try:
        return _DECODER.raw_decode(file.read(length).strip(_JSON_SPACE).decode("utf-8"))[0]
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SourceError(
            path,
            f"changed while it was being read (the row at byte {offset} no longer parses)",
            "Load again once nothing is writing to the file",
        ) from None


def _shards(scan: "SourceScan", rows: np.ndarray) -> list:
    """Contiguous shards of a split's planned order, (first position, offsets, lengths) each: a list in
    gen_kwargs, so `num_proc` builds them in parallel and a streaming rank can take whole shards. The
    rows and their order do not depend on either. A pair's two rows are one example."""
    shards = []
    for start in range(0, len(rows), ROWS_PER_SHARD):
        shard = rows[start : start + ROWS_PER_SHARD]
        shards.append((start, scan.offsets[shard], scan.lengths[shard]))
    return shards


@contextlib.contextmanager
def _gc_frozen():
    """Rows are dicts made by the hundred thousand; without this, each of Python's full collections
    walks every object `datasets` imported as well (about a tenth of a 100k build). Nothing is lost:
    the objects only skip the collector's walks until the block ends."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _is_url(source: str) -> bool:
    return "://" in str(source)


def _sha256_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_url(revision: str = "main") -> str:
    """The Hub URL of the source at `revision`, on the endpoint `datasets` and `huggingface_hub` use
    (`HF_ENDPOINT`, so a mirror serves it too)."""
    return datasets.config.HUB_DATASETS_URL.format(repo_id=SOURCE_REPO_ID, revision=revision, path=SOURCE_FILENAME)


_NO_NETWORK_FIX = (
    "Without network, pass {source} (a local copy of " + SOURCE_FILENAME + "), or load once online so that "
    "offline mode serves the cache; check {revision} if the file is missing there"
)


def _fetch_source(dl_manager, config: ClaudesidianSyntheticConfig) -> str:
    """Return a local path of the source: the file itself, a download of a URL, or the Hub file from
    `huggingface_hub`'s cache (fetched there when online)."""
    if config.source is not None and not _is_url(config.source):
        return config.source
    url = config.source or source_url(config.revision)
    # `datasets` 5 reads HF_DATASETS_OFFLINE but hands Hub URLs to `huggingface_hub`, which does not,
    # so the Hub file is fetched here, offline whenever `datasets` is.
    offline = datasets.config.HF_HUB_OFFLINE
    try:
        if config.source is None:
            return _hub_source(config.revision, offline)
        path = dl_manager.download(url)
        if not os.path.isfile(path):  # a streaming download manager hands back the URL itself
            path = datasets.DownloadManager(download_config=dl_manager.download_config).download(url)
        return path
    except Exception as error:  # noqa: BLE001 - every HTTP client's and the Hub's errors, on every version
        message = " ".join(str(error).split())[:300]
        problem = "is not in the local cache and downloads are off (offline mode)" if offline else (
            f"could not be downloaded ({type(error).__name__}: {message})"
        )
        fix = _NO_NETWORK_FIX if config.source is None else (
            "Check the URL; without network, pass {source} (a local copy of " + SOURCE_FILENAME + ")")
        raise SourceError(url, problem, fix, source=Mention("source", _Placeholder("FILE")),
                          revision=Mention("revision")) from None


def _hub_source(revision: str, offline: bool) -> str:
    """The Hub file through `huggingface_hub`'s cache. With a cold cache, one quick request first:
    `hf_hub_download` retries a failed connection for about 20 seconds before it gives up, which with
    no network at all is only a wait (a slow but working network answers that request)."""
    cached = huggingface_hub.try_to_load_from_cache(SOURCE_REPO_ID, SOURCE_FILENAME, revision=revision,
                                                    repo_type="dataset")
    if not offline and not isinstance(cached, str):
        url = huggingface_hub.hf_hub_url(SOURCE_REPO_ID, SOURCE_FILENAME, repo_type="dataset", revision=revision)
        huggingface_hub.get_hf_file_metadata(url)
    return huggingface_hub.hf_hub_download(
        SOURCE_REPO_ID, SOURCE_FILENAME, repo_type="dataset", revision=revision, local_files_only=offline
    )


def _verify_pinned_source(path: str, name: str, known_sha256: Optional[str] = None) -> None:
    actual = known_sha256 or _sha256_of_file(path)
    if actual != SOURCE_SHA256:
        size = os.path.getsize(path)
        pinned = ", ".join(named.name for named in CONFIGS.values() if named.pinned)
        raise SourceError(
            path,
            f"sha256 {actual} ({size:,} bytes) is not the v1.0.0 source {SOURCE_SHA256} "
            f"({SOURCE_NUM_BYTES:,} bytes), and {name} promises those exact bytes (as {pinned} do)",
            "Pass {revision} a Hub commit that holds v1.0.0, or {source} a local v1.0.0 copy; for any other "
            "version of the data use {custom}",
            revision=Mention("revision"), source=Mention("source"), custom=Mention("name", "balanced_custom"),
        )


def load(
    name: str = DEFAULT_CONFIG_NAME,
    *,
    split: Optional[str] = None,
    source: Optional[str] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[str] = None,
    streaming: bool = False,
    num_proc: Optional[int] = None,
    **options: Any,
):
    """Build (or read from the Arrow cache) one config, like `datasets.load_dataset` did for scripts.

    Returns a DatasetDict (or the Dataset of `split`); an IterableDataset(Dict) with `streaming=True`.
    `num_proc` builds a split's shards (ROWS_PER_SHARD rows each) in parallel; the rows are the same.
    """
    if name not in CONFIGS:
        raise OptionError("{name}: unknown config; choose one of " + ", ".join(CONFIGS), name=Mention("name", name))
    unknown = sorted(set(options) - set(OPTION_DEFAULTS))
    if unknown:
        raise OptionError(f"unknown option(s) {', '.join(unknown)}; the options are {', '.join(OPTION_DEFAULTS)}")
    options = {"source": source, "revision": revision, **options}
    options = {key: value for key, value in options.items() if value is not None}
    builder = ClaudesidianSynthetic(config_name=name, cache_dir=cache_dir, **options)
    if streaming:
        if num_proc is not None:
            raise OptionError("num_proc builds the Arrow cache in parallel; streaming builds nothing: pass one of them")
        return builder.as_streaming_dataset(split=split)
    try:
        builder.download_and_prepare(num_proc=num_proc)
    except datasets.exceptions.DatasetGenerationError as error:
        if isinstance(error.__cause__, ClaudesidianError):
            raise error.__cause__ from None
        raise
    return builder.as_dataset(split=split)


# --- reading the source -----------------------------------------------------------------------


@dataclasses.dataclass
class SourceScan:
    """What the selection needs of each source row: its label, where its line lies, and whether an
    identical line came before it. Text is not kept, so memory grows with rows, not bytes."""

    labels: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    duplicate: np.ndarray
    # len() of the last message's content (the assistant's reply) in characters (code points), for
    # length-matched selections and length statistics.
    completion_chars: np.ndarray


# A large source is scanned in byte ranges by forked processes, one per CPU: the scan is pure Python
# (a JSON decode and the schema checks of each line), so threads would only take turns. A range is
# worth a process from a few MiB on (a fork and the arrays sent back cost milliseconds), so the 1.6 MB
# v1.0.0 file is scanned here, in one piece; more than 8 processes would mostly wait on the disk.
_SCAN_BYTES_PER_PROCESS = 16 << 20
_SCAN_PROCESSES_MAX = 8
# The per-row columns of a range's scan, in the order a child process sends them.
_SCAN_COLUMNS = (("labels", np.bool_), ("offsets", np.int64), ("lengths", np.int64), ("hashes", np.int64),
                 ("completion_chars", np.int64))


@dataclasses.dataclass
class _RangeScan:
    """The rows whose lines start in one byte range of the source (buffers of _SCAN_COLUMNS), and how
    many lines start there, blank ones included: the numbering of the lines after the range."""

    lines: int
    labels: Any
    offsets: Any
    lengths: Any
    hashes: Any
    completion_chars: Any


def scan_source(path: str, processes: Optional[int] = None) -> SourceScan:
    """Read and check every line of the source strictly; raise SourceError naming the first bad one.
    Per row it keeps a label byte and four 8-byte integers (no Python object), so memory grows slowly.

    `processes` byte ranges are scanned at once (default: one per CPU for a large file on Linux, else
    one); the result, and the error with its line number, are those of one read from start to end."""
    size = os.path.getsize(path)
    if processes is None:  # a URL (when `datasets` streams this module) is read once, from its start
        processes = 1 if _is_url(path) else _scan_processes(size)
    starts = [size * part // processes for part in range(processes)]
    progress = datasets.utils.tqdm(total=size, unit="B", unit_scale=True, desc="Checking source", leave=False)
    with open(path, "rb") as file, progress:
        ranges = _scan_ranges(file, path, starts, size, progress)
        labels, offsets, lengths, hashes, completion_chars = (
            np.concatenate([np.frombuffer(getattr(part, name), dtype=dtype) for part in ranges])
            for name, dtype in _SCAN_COLUMNS
        )
        if not len(labels):
            raise SourceError(path, "the file holds no rows", f"Point source= at a non-empty copy of {SOURCE_FILENAME}")
        duplicate = _exact_duplicates(file, offsets, lengths, hashes)
    return SourceScan(labels, offsets, lengths, duplicate, completion_chars)


def _scan_processes(size: int) -> int:
    """How many byte ranges to scan at once: one per usable CPU, each at least _SCAN_BYTES_PER_PROCESS.
    Only where fork() is cheap and safe for this (Linux); one elsewhere."""
    if not sys.platform.startswith("linux"):
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), _SCAN_PROCESSES_MAX, size // _SCAN_BYTES_PER_PROCESS))


def _scan_range(file, path: str, start: int, end: Optional[int], first_number: int = 1, progress=None) -> _RangeScan:
    """Check every line whose first byte lies in [start, end) of the open source `file` (at its start
    when `start` is 0; `end` None: to the end of the file); raise SourceError naming the first bad one,
    numbering lines from `first_number`."""
    labels, offsets, lengths, hashes = bytearray(), array.array("q"), array.array("q"), array.array("q")
    completion_chars = array.array("q")
    if start:  # the range begins at the first line that begins in it
        file.seek(start - 1)
        start += len(file.readline()) - 1
    offset = reported = start
    number = first_number - 1
    stop = math.inf if end is None else end
    for line in file:
        if offset >= stop:
            break
        number += 1
        line_start, offset = offset, offset + len(line)
        if line_start == 0 and line.startswith(_BOM):  # a UTF-8 byte-order mark changes nothing
            line, line_start = line[len(_BOM) :], len(_BOM)
        if progress is not None and number % 4096 == 0:
            progress.update(min(offset, stop) - reported)
            reported = min(offset, stop)
        row = line.strip(_JSON_SPACE)  # CRLF and blank lines change nothing either
        if not row:
            continue
        parsed = parse_line(row, path, number)
        labels.append(parsed["label"])
        completion_chars.append(len(parsed["conversations"][-1]["content"]))
        offsets.append(line_start)
        lengths.append(offset - line_start)
        hashes.append(hash(row))
    if progress is not None:
        progress.update(min(offset, stop) - reported)
    return _RangeScan(number - first_number + 1, labels, offsets, lengths, hashes, completion_chars)


def _scan_ranges(file, path: str, starts: list, size: int, progress) -> list:
    """Scan the byte ranges that begin at `starts` (the last one runs to the end of the file), the first
    in this process (from `file`) and each other one in a forked child at the same time. A range whose
    child failed (a bad line, or anything else) is scanned again here once the ranges before it are done,
    numbering its lines after theirs, so the error raised is exactly the serial scan's: the first bad
    line, its number, its message."""
    ends = starts[1:] + [None]
    children = {}
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns on any fork of a process with threads (pyarrow's, tqdm's): a child that
            # took a lock one of them held would hang. The child only reads, decodes JSON and exits.
            warnings.filterwarnings("ignore", message=".*fork", category=DeprecationWarning)
            for index in range(1, len(starts)):
                children[index] = _fork_range_scan(path, starts[index], ends[index])
        ranges = [_scan_range(file, path, starts[0], ends[0], 1, progress)]
        for index in range(1, len(starts)):
            child = children.pop(index)
            scanned = _collect_range_scan(*child) if child else None
            if scanned is None:
                first_number = 1 + sum(part.lines for part in ranges)
                scanned = _scan_range(file, path, starts[index], ends[index], first_number)
            progress.update((ends[index] or size) - starts[index])
            ranges.append(scanned)
        return ranges
    finally:  # an error in an earlier range (or an interrupt): the children still running are not needed
        for child in children.values():
            if child:
                os.close(child[1])
                _end_child(child[0], kill=True)


def _fork_range_scan(path: str, start: int, end: Optional[int]) -> Optional[tuple]:
    """Start a child that scans one byte range and writes it to a pipe: (pid, read end of the pipe), or
    None when no child could be started (the range is then scanned in this process)."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # the child: it never returns into the caller nor runs the parent's exit handlers
        status = 1
        try:
            os.close(read_end)
            with open(path, "rb") as file:
                scanned = _scan_range(file, path, start, end)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(struct.pack("qq", scanned.lines, len(scanned.labels)))
                for name, _ in _SCAN_COLUMNS:
                    pipe.write(getattr(scanned, name))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def _collect_range_scan(pid: int, read_end: int) -> Optional[_RangeScan]:
    """What a child sent, once it has exited; None when it failed (a bad line, or killed)."""
    try:
        with os.fdopen(read_end, "rb") as pipe:
            payload = pipe.read()
    except BaseException:
        _end_child(pid, kill=True)
        raise
    if _end_child(pid, kill=False) != 0 or len(payload) < 16:
        return None
    lines, rows = struct.unpack_from("qq", payload)
    if len(payload) != 16 + rows * sum(np.dtype(dtype).itemsize for _, dtype in _SCAN_COLUMNS):
        return None
    columns, at = [], 16
    for _, dtype in _SCAN_COLUMNS:
        size = rows * np.dtype(dtype).itemsize
        columns.append(payload[at : at + size])
        at += size
    return _RangeScan(lines, *columns)


def _end_child(pid: int, kill: bool) -> int:
    """Reap a child (killed first if asked) and return its wait status."""
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def _exact_duplicates(file, offsets: np.ndarray, lengths: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Flag each row whose line equals an earlier line. Rows of equal hash() are read back and their
    bytes decide, so a hash collision never drops a row."""
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    groups = {}
    for position in np.flatnonzero(ordered[1:] == ordered[:-1]).tolist():
        groups.setdefault(int(ordered[position]), [int(order[position])]).append(int(order[position + 1]))
    duplicate = np.zeros(len(offsets), dtype=bool)
    for rows in groups.values():
        seen = set()
        for row in rows:
            file.seek(int(offsets[row]))
            line = file.read(int(lengths[row])).strip(_JSON_SPACE)
            duplicate[row] = line in seen
            seen.add(line)
    return duplicate


def parse_line(line: bytes, path: str, number: int) -> dict:
    """Decode one stripped source line and check it against the schema."""
    try:
        text = line.decode("utf-8")
        row, end = _DECODER.raw_decode(text)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    except UnicodeDecodeError as error:
        raise SourceError(path, f"is not valid UTF-8 (byte {error.start + 1} of the line)", _FIX_ROW, number) from None
    except json.JSONDecodeError as error:
        raise SourceError(path, f"is not valid JSON ({error.msg}, column {error.colno})", _FIX_ROW, number) from None
    problem = row_problem(row) or (_SURROGATE_ESCAPE.search(line) and _lone_surrogate_problem(row))
    if problem:
        raise SourceError(path, problem, _FIX_ROW, number)
    return row


_ROW_KEYS = frozenset(ROW_KEYS)
_MESSAGE_KEYS = frozenset(("role", "content"))
_CONTEXT_KEYS = frozenset(CONTEXT_FIELDS)


def row_problem(row: Any) -> Optional[str]:
    """Describe what is wrong with one parsed row, or return None when it fits the schema."""
    if type(row) is not dict:
        return f"expected a JSON object, found {type(row).__name__} {json.dumps(row)[:40]}"
    if not row.keys() <= _ROW_KEYS:
        unknown = sorted(row.keys() - _ROW_KEYS)
        return f"unexpected key(s) {', '.join(map(repr, unknown))}; a row has only {', '.join(ROW_KEYS)}"
    if "label" not in row:
        return 'has no "label"'
    if type(row["label"]) is not bool:
        return f'"label" must be true or false, found {json.dumps(row["label"])}'
    messages = row.get("conversations")
    if type(messages) is not list or len(messages) < 2:
        return '"conversations" must be a list of at least two messages (the prompt, then the assistant\'s reply)'
    for number, message in enumerate(messages, 1):
        if type(message) is not dict or message.keys() != _MESSAGE_KEYS:
            return f'message {number} must be an object with exactly "role" and "content"'
        if type(message["role"]) is not str or type(message["content"]) is not str:
            return f'message {number}: "role" and "content" must be strings'
    if messages[-1]["role"] != "assistant":
        return f"the last message must be from the assistant, found role {messages[-1]['role']!r}"
    context = row.get("context")
    if context is not None:
        if type(context) is not dict:
            return f'"context" must be an object or null, found {type(context).__name__}'
        if not context.keys() <= _CONTEXT_KEYS:
            unknown = sorted(context.keys() - _CONTEXT_KEYS)
            return f'"context" has unknown key(s) {", ".join(map(repr, unknown))}; known: {", ".join(CONTEXT_FIELDS)}'
        if not all(value is None or type(value) is str for value in context.values()):
            return '"context" values must be strings'
    return None


def _lone_surrogate_problem(row: dict) -> Optional[str]:
    """JSON lets a \\uD800-\\uDFFF escape stand alone; it is half a character, which Arrow refuses."""
    strings = [text for message in row["conversations"] for text in message.values()]
    strings += [text for text in (row.get("context") or {}).values() if text is not None]
    for text in strings:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            return (
                f"holds the escape \\u{ord(text[error.start]):04x}, half of a surrogate pair with no other half "
                "(not a character)"
            )
    return None


def to_example(row: dict, layout: str = "kto", rejected: Optional[dict] = None) -> dict:
    """A checked source row in the layout's columns, in exactly the shape its features encode to
    (every context field present): TRL's prompt + completion (== conversations), the source's own
    columns, the whole conversation as `messages`, or with the `rejected` row a preference pair."""
    messages = row["conversations"]
    if layout == "messages":
        return {"messages": messages}
    if layout == "preference":
        return {"prompt": messages[:-1], "chosen": messages[-1:], "rejected": rejected["conversations"][-1:]}
    context = row.get("context")
    if context is not None:
        context = {name: context.get(name) for name in CONTEXT_FIELDS}
    if layout == "conversations":
        return {"conversations": messages, "label": row["label"], "context": context}
    return {"prompt": messages[:-1], "completion": messages[-1:], "label": row["label"], "context": context}


@dataclasses.dataclass
class RowKeys:
    """A 16-byte digest of each row's prompt (every message but the last) and of its reply: rows that
    share a prompt stay on one side of a train/test split, and pairs are made of distinct replies."""

    prompts: list
    replies: list


def needs_row_keys(config: ClaudesidianSyntheticConfig) -> bool:
    return config.test_size is not None or SELECTIONS[CONFIGS[config.name].selection].pairs_rows


def read_row_keys(path: str, scan: SourceScan) -> RowKeys:
    """Read every row again for its prompt and reply digests (only configs that need them pay this)."""
    keys = RowKeys([], [])
    with open(path, "rb") as file:
        for offset, length in zip(scan.offsets.tolist(), scan.lengths.tolist()):
            file.seek(offset)
            messages = json.loads(file.read(length))["conversations"]
            keys.prompts.append(json_digest(messages[:-1]))
            keys.replies.append(json_digest(messages[-1:]))
    return keys


def json_digest(value: Any) -> bytes:
    """16 bytes that stand for a JSON value, whatever the order of its objects' keys: sets of prompts or
    rows without their text. (marshal's format 2 writes every value whole, so equal values give equal
    bytes; it is two to three times as fast as `json.dumps(sort_keys=True)`.)"""
    return value_digest(_sorted_keys(value))


def value_digest(value: Any) -> bytes:
    """16 bytes that stand for a value built of Python's plain types, as marshal's format 2 writes it:
    a caller that knows its values' shape can make them plain faster than `json_digest` does."""
    return hashlib.blake2b(marshal.dumps(value, 2), digest_size=16).digest()


def _sorted_keys(value: Any) -> Any:
    if type(value) is dict:
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if type(value) is list:
        return [_sorted_keys(item) for item in value]
    return value


# --- selection: which rows, in which order ----------------------------------------------------


def plan_splits(scan: SourceScan, config: ClaudesidianSyntheticConfig, keys: Optional[RowKeys] = None) -> dict:
    """Source row indices of each split, in output order (a pair of rows per example for pairs):
    `train`, the config's selection, and with `test_size` a `test` split made of held-out rows, the
    same prompts for every config (it keeps the source's label mix where the config holds both)."""
    named = CONFIGS[config.name]
    candidates = np.arange(len(scan.labels))
    splits = {}
    if config.test_size is not None:
        held_out = np.array(held_out_rows(scan.labels.tolist(), keys.prompts, config.test_size, config.seed))
        candidates = np.setdiff1d(candidates, held_out)
        if config.dedupe:  # identical lines share a prompt, so a line's first copy is on its side too
            held_out = held_out[~scan.duplicate[held_out]]
        test_rng = random_stream(config.seed, "test_order")
        try:
            splits["test"] = choose(SELECTIONS[named.selection].test_split, scan, held_out, config, keys, test_rng)
        except OptionError as error:
            fix = "; pick a larger {test_size}" + (" or a larger {batch_size}" if config.order == "mixed" else "")
            raise error.about("the test split: ", fix, test_size=Mention("test_size"),
                              batch_size=Mention("batch_size")) from None
    if config.dedupe:
        kept = candidates[~scan.duplicate[candidates]]
        logger.warning("dedupe: dropped %d exact duplicate line(s) of %d", len(candidates) - len(kept), len(candidates))
        candidates = kept
    train = choose(named.selection, scan, candidates, config, keys, random_stream(config.seed, "selection"))
    return {"train": train, **splits}


@dataclasses.dataclass
class Candidates:
    """What a selection reads of the rows it chooses from, position by position."""

    labels: list
    completion_chars: np.ndarray
    prompts: Optional[list] = None
    replies: Optional[list] = None


def choose(selection: str, scan: SourceScan, rows: np.ndarray, config: ClaudesidianSyntheticConfig,
           keys: Optional[RowKeys], rng: random.Random) -> np.ndarray:
    """Source rows (or row pairs) that `selection` picks from `rows`, in output order."""
    candidates = Candidates(scan.labels[rows].tolist(), scan.completion_chars[rows])
    if keys is not None:
        candidates.prompts = [keys.prompts[row] for row in rows.tolist()]
        candidates.replies = [keys.replies[row] for row in rows.tolist()]
    picked = _CHOOSERS[selection](candidates, config, rng)
    if not picked:
        raise OptionError(f"{config.name} has no rows to take from these {len(rows)}: {_EMPTY[selection]}")
    return rows[np.array(picked, dtype=np.int64)]


def _every_row(candidates: Candidates, config: ClaudesidianSyntheticConfig, rng: random.Random) -> list:
    labels = candidates.labels
    return arrange(list(range(len(labels))), labels, config.order, rng, config.batch_size)


def _balanced(candidates: Candidates, config: ClaudesidianSyntheticConfig, rng: random.Random) -> list:
    # The published recipe seeds its own generator, `random_stream(seed, "selection")`, as `rng` is.
    if config.length_strata is not None:
        return length_matched_indices(candidates.labels, candidates.completion_chars, strata=config.length_strata,
                                      ratio=config.ratio, seed=config.seed, order=config.order,
                                      batch_size=config.batch_size)
    return balanced_indices(candidates.labels, desirable=config.desirable, undesirable=config.undesirable,
                            ratio=config.ratio, seed=config.seed, replacement=config.replacement,
                            order=config.order, batch_size=config.batch_size)


def _desirable(candidates: Candidates, config: ClaudesidianSyntheticConfig, rng: random.Random) -> list:
    labels = candidates.labels
    return arrange([row for row, label in enumerate(labels) if label], labels, config.order, rng, None)


def _pairs(candidates: Candidates, config: ClaudesidianSyntheticConfig, rng: random.Random) -> list:
    pairs = preference_pairs(candidates.labels, candidates.prompts, candidates.replies)
    if config.order == "shuffle":
        rng.shuffle(pairs)
    return pairs


_CHOOSERS = {"every_row": _every_row, "balanced": _balanced, "desirable_only": _desirable,
             "preference_pairs": _pairs}
_EMPTY = {
    "every_row": "the source has no row",
    "balanced": "the source has no row",
    "desirable_only": "none of them is desirable",
    "preference_pairs": "no prompt among them has both a desirable and an undesirable reply",
}


def preference_pairs(labels: Sequence[bool], prompts: Sequence, replies: Sequence) -> list:
    """Every distinct (desirable reply, undesirable reply) pair of each prompt with both labels, as
    (row, row) positions of the first row with that reply, in source order.

    >>> preference_pairs([True, False, False, True, False], ["p", "p", "p", "q", "r"], ["a", "b", "b", "c", "d"])
    [(0, 1)]
    """
    by_prompt = {}
    for row, (label, prompt, reply) in enumerate(zip(labels, prompts, replies)):
        desirable, undesirable = by_prompt.setdefault(prompt, ({}, {}))
        (desirable if label else undesirable).setdefault(reply, row)
    return sorted(
        (chosen, rejected)
        for desirable, undesirable in by_prompt.values()
        for reply, chosen in desirable.items()
        for other, rejected in undesirable.items()
        if reply != other  # a reply labelled both ways teaches nothing
    )


def held_out_rows(labels: Sequence[bool], prompt_keys: Sequence, test_size: Union[float, int], seed: int) -> list:
    """Sorted source rows of a test split that shares no prompt with the rest, sized and stratified:
    its row count and its desirable count each lie within the largest prompt group of the exact figures.

    Prompt groups are shuffled by a generator of their own (seeded from `seed`), then taken while they
    fit under both labels' exact counts; a second pass fills up to the row count."""
    n = len(labels)
    given = Mention("test_size", test_size)
    target = test_size if isinstance(test_size, int) else round(test_size * n)
    if not 1 <= target < n:
        raise OptionError(
            "{given} asks for " + f"{target} of the {n} source rows: it must leave at least one row on each side; "
            "give a fraction between 0 and 1 or a count below the row count", given=given,
        )
    groups = {}
    for row, key in enumerate(prompt_keys):
        groups.setdefault(key, []).append(row)
    groups = list(groups.values())
    largest = max(map(len, groups))
    random_stream(seed, "held_out").shuffle(groups)
    exact_desirable = target * sum(labels) / n
    exact_undesirable = target - exact_desirable
    taken, desirable, undesirable = [], 0, 0
    caps = [(math.ceil(exact_desirable), target - math.ceil(exact_desirable), target),
            (exact_desirable + largest, exact_undesirable + largest, target)]
    for cap_desirable, cap_undesirable, cap_rows in caps:
        rest = []
        for group in groups:
            group_desirable = sum(labels[row] for row in group)
            group_undesirable = len(group) - group_desirable
            if (
                desirable + group_desirable <= cap_desirable
                and undesirable + group_undesirable <= cap_undesirable
                and desirable + undesirable + len(group) <= cap_rows
            ):
                taken += group
                desirable, undesirable = desirable + group_desirable, undesirable + group_undesirable
            else:
                rest.append(group)
        groups = rest
    rows_off = abs(desirable + undesirable - target)
    if rows_off > largest or abs(desirable - exact_desirable) > largest:
        raise OptionError(
            "{given}: " + f"no prompt-disjoint split of {target} rows with about {exact_desirable:.0f} desirable was "
            f"found (best: {desirable + undesirable} rows, {desirable} desirable; the largest group of rows sharing "
            "a prompt has " + f"{largest}); try another test size or seed", given=given,
        )
    if desirable == 0 or undesirable == 0:
        raise OptionError(
            "{given} leaves the test split with one label " + f"({desirable} desirable, {undesirable} undesirable "
            "rows), where KTO's batches need both; give a larger test size", given=given,
        )
    if sum(labels) - desirable == 0 or n - sum(labels) - undesirable == 0:
        raise OptionError("{given} leaves the train split with one label; give a smaller test size", given=given)
    return sorted(taken)


def class_counts(
    n_desirable: int,
    n_undesirable: int,
    *,
    desirable: Optional[int] = None,
    undesirable: Optional[int] = None,
    ratio: Optional[float] = None,
) -> tuple:
    """How many rows of each label to take: both given counts; a ratio around the minority kept
    whole; one count with the other class whole; or, by default, the minority's size for both."""
    if ratio is not None:
        if n_undesirable <= n_desirable:
            counts = (round(ratio * n_undesirable), n_undesirable)
        else:
            counts = (n_desirable, round(n_desirable / ratio))
        if min(counts) < 1:
            raise OptionError(
                "{ratio} leaves no row of one label " + f"({counts[0]} desirable, {counts[1]} undesirable)",
                ratio=Mention("ratio", ratio),
            )
        return counts
    if desirable is None and undesirable is None:
        smaller = min(n_desirable, n_undesirable)
        return smaller, smaller
    return (n_desirable if desirable is None else desirable, n_undesirable if undesirable is None else undesirable)


def draw(rng: random.Random, pool: list, count: int, replacement: bool, label: str) -> list:
    """`count` items of `pool`: the pool itself when it is kept whole (no draw), else a sample."""
    if count == len(pool):
        return list(pool)
    if replacement:
        return rng.choices(pool, k=count)
    if count > len(pool):
        raise OptionError(
            "{given} but the source has only " + f"{len(pool)} {label} rows: ask for at most {len(pool)}, or add "
            "{replacement} to oversample", given=Mention(label, count), replacement=Mention("replacement", True),
        )
    return rng.sample(pool, count)


def _by_label(labels: Sequence[bool]) -> tuple:
    positive = [i for i, label in enumerate(labels) if label]
    negative = [i for i, label in enumerate(labels) if not label]
    if not positive or not negative:
        raise OptionError(
            f"a balanced subset needs both labels, but every row is labelled {bool(positive)} ({len(labels)} rows); "
            "check the source's labels"
        )
    return positive, negative


def balanced_indices(
    labels: Sequence[bool],
    *,
    desirable: Optional[int] = None,
    undesirable: Optional[int] = None,
    ratio: Optional[float] = None,
    seed: int = PUBLISHED_SEED,
    replacement: bool = False,
    order: str = "shuffle",
    batch_size: Optional[int] = None,
) -> list:
    """The published recipe, generalised: one `random.Random(seed)` samples the desirable rows,
    then the undesirable rows, concatenates them in that order and shuffles with the same generator."""
    positive, negative = _by_label(labels)
    n_desirable, n_undesirable = class_counts(
        len(positive), len(negative), desirable=desirable, undesirable=undesirable, ratio=ratio
    )
    if ratio is not None and not replacement and (n_desirable > len(positive) or n_undesirable > len(negative)):
        # The smaller label is kept whole, so the source's own ratio bounds what the other can give.
        bound = "at most" if len(negative) <= len(positive) else "at least"
        raise OptionError(
            "{ratio} asks for " + f"{n_desirable} desirable and {n_undesirable} undesirable rows, and the source has "
            f"{len(positive)} and {len(negative)}: give a ratio {bound} {len(positive) / len(negative):.4g} (the "
            "source's own, the smaller label kept whole), or add {replacement} to oversample",
            ratio=Mention("ratio", ratio), replacement=Mention("replacement", True),
        )
    rng = random_stream(seed, "selection")
    rows = draw(rng, positive, n_desirable, replacement, "desirable")
    rows += draw(rng, negative, n_undesirable, replacement, "undesirable")
    return arrange(rows, labels, order, rng, batch_size)


def length_strata_of(lengths: Sequence[int], reference: Sequence[int], strata: int) -> np.ndarray:
    """The stratum (0 .. strata-1) of each length: cut at the `reference` lengths' quantiles, each
    edge a length that occurs there (numpy's `inverted_cdf`); a stratum holds [edge below, edge above).

    >>> length_strata_of([1, 5, 9, 20], reference=[2, 4, 6, 8], strata=2).tolist()
    [0, 1, 1, 1]
    """
    edges = np.quantile(np.asarray(reference), np.arange(1, strata) / strata, method="inverted_cdf")
    return np.searchsorted(edges, np.asarray(lengths), side="right")


def length_matched_indices(
    labels: Sequence[bool],
    completion_chars: Sequence[int],
    *,
    strata: int,
    ratio: Optional[float] = None,
    seed: int = PUBLISHED_SEED,
    order: str = "shuffle",
    batch_size: Optional[int] = None,
) -> list:
    """Both labels with matching completion lengths (coarsened exact matching): each stratum of
    `length_strata_of` (cut at the smaller label's quantiles) keeps as many rows of each label as its
    smaller side has (or `ratio` desirable rows per undesirable row), drawn per stratum, desirable then
    undesirable, by one `random.Random(seed)`; then desirable before undesirable, in `order`."""
    positive, negative = _by_label(labels)
    lengths = np.asarray(completion_chars)
    smaller = positive if len(positive) < len(negative) else negative
    stratum = length_strata_of(lengths, lengths[smaller], strata).tolist()
    rng = random_stream(seed, "selection")
    picked = ([], [])
    for level in range(strata):
        pools = ([i for i in positive if stratum[i] == level], [i for i in negative if stratum[i] == level])
        n_undesirable = min(len(pools[1]), math.floor(len(pools[0]) / (ratio or 1)))
        counts = (min(len(pools[0]), round((ratio or 1) * n_undesirable)), n_undesirable)
        for taken, pool, count, label in zip(picked, pools, counts, ("desirable", "undesirable")):
            taken += draw(rng, pool, count, False, label)
    if not picked[0] or not picked[1]:
        raise OptionError(
            "{strata} leaves " + f"{len(picked[0])} desirable and {len(picked[1])} undesirable rows: no stratum "
            "holds both labels; use fewer strata", strata=Mention("length_strata", strata),
        )
    return arrange(picked[0] + picked[1], labels, order, rng, batch_size)


def arrange(rows: list, labels: Sequence[bool], order: str, rng: random.Random, batch_size: Optional[int]) -> list:
    """Put the picked `rows` in `order`: source position, the generator's shuffle, or mixed batches."""
    if order == "source":
        return sorted(rows)
    if order == "shuffle":
        rng.shuffle(rows)
        return rows
    if order == "mixed":
        permutation = mixed_order([labels[row] for row in rows], batch_size, rng)
        return [rows[i] for i in permutation]
    raise OptionError("{order}: must be one of " + ", ".join(ORDERS), order=Mention("order", order))


def smallest_mixed_batch_size(n_desirable: int, n_undesirable: int) -> Optional[int]:
    """The smallest batch size for which `mixed_order` exists; None when one label is absent.

    m minority rows cut the M majority rows into m + 1 runs; every window of B rows holds both labels
    exactly when each run is shorter than B, so B = ceil(M / (m + 1)) + 1 (and at least 2)."""
    minority, majority = sorted((n_desirable, n_undesirable))
    if minority == 0:
        return None
    return max(2, -(-majority // (minority + 1)) + 1)


def mixed_order(labels: Sequence[bool], batch_size: int, rng: random.Random) -> list:
    """A permutation of positions in which every `batch_size` consecutive rows (any window, not only
    aligned batches, so a shifted batch boundary stays mixed) hold both labels: the majority is cut
    into m + 1 runs of as equal length as the counts allow, one minority row between runs, and each
    class is shuffled by `rng`."""
    positive = [i for i, label in enumerate(labels) if label]
    negative = [i for i, label in enumerate(labels) if not label]
    smallest = smallest_mixed_batch_size(len(positive), len(negative))
    if smallest is None or batch_size < smallest:
        reason = (
            f"the smallest batch size that works is {smallest}"
            if smallest
            else "every row has the same label, so no batch can be mixed"
        )
        raise OptionError(
            "{given} cannot give every batch both labels with " + f"{len(positive)} desirable and "
            f"{len(negative)} undesirable rows: {reason}", given=Mention("batch_size", batch_size),
        )
    minority, majority = (positive, negative) if len(positive) < len(negative) else (negative, positive)
    rng.shuffle(minority)
    rng.shuffle(majority)
    m, big = len(minority), len(majority)
    order = []
    for run in range(m + 1):
        order += majority[run * big // (m + 1) : (run + 1) * big // (m + 1)]
        if run < m:
            order.append(minority[run])
    return order
