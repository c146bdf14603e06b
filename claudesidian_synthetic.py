"""Claudesidian synthetic tool-calling dataset, rebuilt into exact, KTO-ready subsets.

This file is both the library module (`import claudesidian_synthetic as cs; cs.load(...)`) and the
Hub loading script for `datasets<4`, so it imports only `datasets`, `numpy` and the standard library,
one import per line (the `datasets<4` script loader misreads `import a, b`).

Layout: source pin and schema, errors, the config, the builder, `load()`, then the pure selection
functions (which rows, in which order) that the builder calls and the tests check without `datasets`.
"""

import dataclasses
import hashlib
import importlib
import json
import logging
import math
import os
import random
import re
from typing import Any
from typing import Optional
from typing import Sequence

import datasets
import numpy as np

# --- source pin and schema -------------------------------------------------------------------

SOURCE_FILENAME = "syngen_toolset_v1.0.0_claude.jsonl"
SOURCE_URL = (
    "https://huggingface.co/datasets/professorsynapse/claudesidian-synthetic-dataset/resolve/{revision}/"
    + SOURCE_FILENAME
)
# `full` and `balanced_254` promise these exact bytes (the v1.0.0 file, 1000 rows, 746 / 254).
SOURCE_SHA256 = "861a7d7d575f2f1f6108b846d4e54ca6a70b2a4316e56ffef7eaeda61a5426a4"
SOURCE_NUM_BYTES = 1_627_040
PUBLISHED_SEED = 42

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
# A Python list of a struct means "list of struct" on every `datasets` from 3.x to 5.x.
FEATURES = datasets.Features(
    {
        "prompt": [_MESSAGE],
        "completion": [_MESSAGE],
        "label": datasets.Value("bool"),
        "context": {name: datasets.Value("string") for name in CONTEXT_FIELDS},
    }
)

DESCRIPTION = """\
Synthetic tool-calling conversations for the Claudesidian Obsidian agent, each labelled desirable
(true) or undesirable (false), as unpaired preference data for TRL's KTOTrainer. Columns: prompt
(every message but the last), completion (the assistant's reply), label, context (session metadata
or null). Configs: full (every row), balanced_254 (the published 254 + 254 file, exactly) and
balanced_custom (your own counts, ratio, seed and order).
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


class ClaudesidianError(ValueError):
    """Base of this package's errors: a ValueError whose message says what, where and what to do."""


class SourceError(ClaudesidianError):
    """The source file is unreadable, malformed or not the promised bytes."""

    def __init__(self, path: str, problem: str, fix: str, line: Optional[int] = None):
        self.path, self.line = path, line
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}. {fix}")


class OptionError(ClaudesidianError):
    """An option has a value that cannot work; the message names the option and the fix."""


_FIX_ROW = (
    'Fix or delete that line: each line must be one JSON object {"conversations": [{"role": ..., '
    '"content": ...}, ..., {"role": "assistant", "content": ...}], "label": true|false, '
    '"context": {...} or null}'
)


# --- the config -------------------------------------------------------------------------------

CONFIG_PURPOSE = {
    "full": "every source row",
    "balanced_254": "exactly the published 254 + 254 file, seed 42, in its order",
    "balanced_custom": "your own balanced subset",
}
# Configs that promise the v1.0.0 bytes and therefore verify the source's sha256.
PINNED_CONFIGS = ("full", "balanced_254")
_SELECTION_OPTIONS = ("desirable", "undesirable", "ratio", "replacement")
# Options a config does not take: they would change which rows it promises.
_FIXED_OPTIONS = {
    "full": _SELECTION_OPTIONS,
    "balanced_254": _SELECTION_OPTIONS + ("seed", "dedupe", "order", "batch_size"),
}


@dataclasses.dataclass
class ClaudesidianSyntheticConfig(datasets.BuilderConfig):
    """Which subset to build and from which source.

    `source`: a local path or URL of the source JSONL; default: the Hub file at `revision`.
    `desirable` / `undesirable`: row counts; or `ratio`: desirable rows per undesirable row, the
    minority kept whole. `replacement`: draw with replacement (oversample past a class's size).
    `dedupe`: drop exact duplicate lines first. `order`: "source", "shuffle" or "mixed" (every
    `batch_size` consecutive rows hold both labels).
    """

    source: Optional[str] = None
    revision: str = "main"
    desirable: Optional[int] = None
    undesirable: Optional[int] = None
    ratio: Optional[float] = None
    seed: int = PUBLISHED_SEED
    replacement: bool = False
    dedupe: bool = False
    order: Optional[str] = None
    batch_size: Optional[int] = None

    def __post_init__(self):
        super().__post_init__()
        self.check()

    def check(self) -> None:
        """Raise OptionError for options that cannot work together (also called after overrides)."""
        fixed = _FIXED_OPTIONS.get(self.name, ())
        for option in fixed:
            if getattr(self, option) != OPTION_DEFAULTS[option]:
                raise OptionError(
                    f"{option}={getattr(self, option)!r} is not an option of the {self.name!r} config "
                    f"({CONFIG_PURPOSE[self.name]}); use name='balanced_custom' to choose {option}"
                )
        for option in ("desirable", "undesirable", "batch_size"):
            value = getattr(self, option)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise OptionError(f"{option}={value!r}: must be a positive whole number")
        if self.ratio is not None:
            if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) or not self.ratio > 0:
                raise OptionError(f"ratio={self.ratio!r}: must be a number above 0 (desirable rows per undesirable)")
            if math.isinf(self.ratio):
                raise OptionError(f"ratio={self.ratio!r}: must be finite")
            if self.desirable is not None or self.undesirable is not None:
                raise OptionError(
                    f"ratio={self.ratio!r} with desirable={self.desirable!r}, undesirable={self.undesirable!r}: "
                    "give either counts or a ratio, not both"
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise OptionError(f"seed={self.seed!r}: must be a whole number")
        if self.order is not None and self.order not in ORDERS:
            raise OptionError(f"order={self.order!r}: must be one of {', '.join(ORDERS)}")
        if (self.order == "mixed") != (self.batch_size is not None):
            raise OptionError(
                f"order={self.order!r}, batch_size={self.batch_size!r}: order='mixed' needs batch_size "
                "(your per_device_train_batch_size), and batch_size only applies to order='mixed'"
            )
        if self.source is not None and self.revision != "main":
            raise OptionError(
                f"source={self.source!r} and revision={self.revision!r}: revision picks the Hub file, "
                "source replaces it; pass one of them"
            )

    @property
    def resolved_order(self) -> str:
        return self.order or ("source" if self.name == "full" else "shuffle")


# The options a user passes (the config's own fields, not datasets.BuilderConfig's), with their defaults.
OPTION_DEFAULTS = {
    field.name: field.default
    for field in dataclasses.fields(ClaudesidianSyntheticConfig)
    if field.name not in {base.name for base in dataclasses.fields(datasets.BuilderConfig)}
}


# --- the builder ------------------------------------------------------------------------------


class _CheckedRowFeatures(datasets.Features):
    """FEATURES for rows that already fit them exactly: encoding is the identity."""

    def encode_example(self, example: dict) -> dict:
        return example


class ClaudesidianSynthetic(datasets.GeneratorBasedBuilder):
    """Rebuilds `full`, `balanced_254` and `balanced_custom` from the source JSONL on the fly."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = ClaudesidianSyntheticConfig
    BUILDER_CONFIGS = [
        ClaudesidianSyntheticConfig(name=name, version=datasets.Version("1.0.0"), description=purpose)
        for name, purpose in CONFIG_PURPOSE.items()
    ]
    DEFAULT_CONFIG_NAME = "balanced_254"

    def __init__(self, *args, **kwargs):
        source = kwargs.get("source")
        if source is not None and not _is_url(source):
            source = os.path.abspath(os.path.expanduser(str(source)))
            if not os.path.isfile(source):
                raise SourceError(
                    source, "no such file", f"Pass source= an existing copy of {SOURCE_FILENAME}, or omit it"
                )
            kwargs["source"] = source
        # The cache entry is keyed by this code and the source's bytes, so an edited local source (or
        # an edited builder) is rebuilt instead of served stale.
        self._source_sha256 = _sha256_of_file(source) if source and not _is_url(source) else None
        code = kwargs.get("hash") or _sha256_of_file(__file__)
        kwargs["hash"] = hashlib.sha256(f"{code}:{self._source_sha256}".encode()).hexdigest()[:16]
        super().__init__(*args, **kwargs)
        self.config.check()

    def get_exported_dataset_info(self) -> datasets.DatasetInfo:
        # `datasets<4` checks split sizes against dataset_infos.json; those hold for the pinned configs only.
        info = super().get_exported_dataset_info()
        if self.config.name not in PINNED_CONFIGS or self.config.dedupe:
            info.splits = None
        return info

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=DESCRIPTION,
            features=FEATURES,
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        path = _fetch_source(dl_manager, self.config)
        if self.config.name in PINNED_CONFIGS:
            _verify_pinned_source(path, self._source_sha256 if path == self.config.source else None)
        scan = scan_source(path)
        try:
            rows = plan_rows(scan, self.config)
        except OptionError as error:
            raise OptionError(f"{path}: {error}") from None
        gen_kwargs = {"path": path, "offsets": scan.offsets[rows], "lengths": scan.lengths[rows]}
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs=gen_kwargs)]

    def _prepare_split(self, *args, **kwargs):
        # Every row was checked by `scan_source` and shaped by `to_example`, so `datasets`' per-value
        # encoding walk would hand each one back unchanged; at 100k rows that walk was a third of the
        # build. Swapped in for the generation only: the Dataset you get has the plain FEATURES.
        features = self.info.features
        self.info.features = _CheckedRowFeatures(features)
        try:
            return super()._prepare_split(*args, **kwargs)
        finally:
            self.info.features = features

    def _generate_examples(self, path, offsets, lengths):
        with open(path, "rb") as file:  # `open` reads URLs too when datasets streams this module
            unbuffered = getattr(file, "raw", file)  # rows are read out of order: a buffer only costs a copy
            for position, (offset, length) in enumerate(zip(offsets.tolist(), lengths.tolist())):
                unbuffered.seek(offset)
                try:
                    row = _DECODER.raw_decode(unbuffered.read(length).strip(_JSON_SPACE).decode("utf-8"))[0]
                except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                    raise SourceError(
                        path,
                        f"changed while it was being read (the row at byte {offset} no longer parses)",
                        "Load again once nothing is writing to the file",
                    ) from None
                yield position, to_example(row)


def _is_url(source: str) -> bool:
    return "://" in str(source)


def _sha256_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_source(dl_manager, config: ClaudesidianSyntheticConfig) -> str:
    """Return a local path of the source, downloading (and caching) it where it is a URL."""
    if config.source is not None and not _is_url(config.source):
        return config.source
    url = config.source or SOURCE_URL.format(revision=config.revision)
    try:
        path = dl_manager.download(url)
        if not os.path.isfile(path):  # a streaming download manager hands back the URL itself
            path = datasets.DownloadManager(download_config=dl_manager.download_config).download(url)
    except OSError as error:  # ConnectionError, offline mode, HTTP 404 and friends are all OSErrors
        raise SourceError(
            url,
            f"could not download the source ({type(error).__name__}: {error})",
            f"Without network, pass source= a local copy of {SOURCE_FILENAME} (or load once online, "
            "then HF_DATASETS_OFFLINE=1 serves the cache); check revision= if the file is missing there",
        ) from None
    return path


def _verify_pinned_source(path: str, known_sha256: Optional[str] = None) -> None:
    actual = known_sha256 or _sha256_of_file(path)
    if actual != SOURCE_SHA256:
        size = os.path.getsize(path)
        raise SourceError(
            path,
            f"sha256 {actual} ({size:,} bytes) is not the v1.0.0 source {SOURCE_SHA256} "
            f"({SOURCE_NUM_BYTES:,} bytes), and the 'full' and 'balanced_254' configs promise those exact bytes",
            "Pass revision= a Hub commit that holds v1.0.0, or source= a local v1.0.0 copy; "
            "for any other version of the data use name='balanced_custom'",
        )


def load(
    name: str = "balanced_254",
    *,
    split: Optional[str] = None,
    source: Optional[str] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[str] = None,
    streaming: bool = False,
    **config_kwargs: Any,
):
    """Build (or read from the Arrow cache) one config, like `datasets.load_dataset` did for scripts.

    Returns a DatasetDict (or the Dataset of `split`); an IterableDataset(Dict) with `streaming=True`.
    """
    if name not in CONFIG_PURPOSE:
        raise OptionError(f"name={name!r}: unknown config; choose one of {', '.join(CONFIG_PURPOSE)}")
    unknown = sorted(set(config_kwargs) - set(OPTION_DEFAULTS))
    if unknown:
        raise OptionError(f"unknown option(s) {', '.join(unknown)}; the options are {', '.join(OPTION_DEFAULTS)}")
    options = {"source": source, "revision": revision, **config_kwargs}
    options = {key: value for key, value in options.items() if value is not None}
    builder = ClaudesidianSynthetic(config_name=name, cache_dir=cache_dir, **options)
    if streaming:
        return builder.as_streaming_dataset(split=split)
    try:
        builder.download_and_prepare()
    except datasets.exceptions.DatasetGenerationError as error:
        if isinstance(error.__cause__, ClaudesidianError):
            raise error.__cause__ from None
        raise
    return builder.as_dataset(split=split)


def __getattr__(name: str):
    # The KTO helpers live in claudesidian_tools.kto; they are re-exported here lazily so that this
    # file stays a self-contained loading script.
    if name in ("kto_weights", "MixedLabelBatchSampler"):
        return getattr(importlib.import_module("claudesidian_tools.kto"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- reading the source -----------------------------------------------------------------------


@dataclasses.dataclass
class SourceScan:
    """What the selection needs of each source row: its label, where its line lies, and whether an
    identical line came before it. Text is not kept, so memory grows with rows, not bytes."""

    labels: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    duplicate: np.ndarray


def scan_source(path: str) -> SourceScan:
    """Read and check every line of the source strictly; raise SourceError naming the first bad one."""
    labels, offsets, lengths = [], [], []
    first_row_of_hash, rows_sharing_a_hash = {}, {}
    progress = datasets.utils.tqdm(
        total=os.path.getsize(path), unit="B", unit_scale=True, desc="Checking source", leave=False
    )
    with open(path, "rb") as file, progress:
        offset = 0
        for number, line in enumerate(file, 1):
            start, offset = offset, offset + len(line)
            if number == 1 and line.startswith(_BOM):  # a UTF-8 byte-order mark changes nothing
                line, start = line[len(_BOM) :], start + len(_BOM)
            if number % 4096 == 0:
                progress.update(offset - progress.n)
            row = line.strip(_JSON_SPACE)  # CRLF and blank lines change nothing either
            if not row:
                continue
            labels.append(parse_line(row, path, number)["label"])
            offsets.append(start)
            lengths.append(offset - start)
            index = len(labels) - 1
            first = first_row_of_hash.setdefault(hash(row), index)
            if first != index:
                rows_sharing_a_hash.setdefault(first, [first]).append(index)
        progress.update(offset - progress.n)
        if not labels:
            raise SourceError(path, "the file holds no rows", f"Point source= at a non-empty copy of {SOURCE_FILENAME}")
        duplicate = _exact_duplicates(file, offsets, lengths, rows_sharing_a_hash.values())
    return SourceScan(
        np.array(labels, dtype=bool), np.array(offsets, dtype=np.int64), np.array(lengths, dtype=np.int64), duplicate
    )


def _exact_duplicates(file, offsets: list, lengths: list, groups) -> np.ndarray:
    """Flag each row whose line equals an earlier line. `groups` hold rows of equal hash(); only
    they are read back, and their bytes decide, so a hash collision never drops a row."""
    duplicate = np.zeros(len(offsets), dtype=bool)
    for rows in groups:
        seen = set()
        for row in rows:
            file.seek(offsets[row])
            line = file.read(lengths[row]).strip(_JSON_SPACE)
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


def to_example(row: dict) -> dict:
    """Split a checked source row into TRL's unpaired-preference columns (prompt + completion ==
    conversations), in exactly the shape FEATURES encodes to: every context field present."""
    messages = row["conversations"]
    context = row.get("context")
    if context is not None:
        context = {name: context.get(name) for name in CONTEXT_FIELDS}
    return {"prompt": messages[:-1], "completion": messages[-1:], "label": row["label"], "context": context}


# --- selection: which rows, in which order ----------------------------------------------------


def plan_rows(scan: SourceScan, config: ClaudesidianSyntheticConfig) -> np.ndarray:
    """Source row indices of the config's dataset, in output order."""
    candidates = np.arange(len(scan.labels))
    if config.dedupe:
        candidates = candidates[~scan.duplicate]
        logger.warning(
            "dedupe: dropped %d exact duplicate line(s) of %d", len(scan.labels) - len(candidates), len(scan.labels)
        )
    labels = scan.labels[candidates].tolist()
    if config.name == "full":
        rng = random.Random(config.seed)
        picked = arrange(list(range(len(labels))), labels, config.resolved_order, rng, config.batch_size)
    else:
        picked = balanced_indices(
            labels,
            desirable=config.desirable,
            undesirable=config.undesirable,
            ratio=config.ratio,
            seed=config.seed,
            replacement=config.replacement,
            order=config.resolved_order,
            batch_size=config.batch_size,
        )
    return candidates[np.array(picked, dtype=np.int64)]


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
                f"ratio={ratio!r} leaves no row of one label ({counts[0]} desirable, {counts[1]} undesirable)"
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
            f"{label}={count} but the source has only {len(pool)} {label} rows: "
            f"ask for at most {len(pool)}, or pass replacement=True to oversample"
        )
    return rng.sample(pool, count)


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
    positive = [i for i, label in enumerate(labels) if label]
    negative = [i for i, label in enumerate(labels) if not label]
    if not positive or not negative:
        raise OptionError(
            f"a balanced subset needs both labels, but every row is labelled {bool(positive)} "
            f"({len(labels)} rows); use name='full' for single-label data"
        )
    n_desirable, n_undesirable = class_counts(
        len(positive), len(negative), desirable=desirable, undesirable=undesirable, ratio=ratio
    )
    rng = random.Random(seed)
    rows = draw(rng, positive, n_desirable, replacement, "desirable")
    rows += draw(rng, negative, n_undesirable, replacement, "undesirable")
    return arrange(rows, labels, order, rng, batch_size)


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
    raise OptionError(f"order={order!r}: must be one of {', '.join(ORDERS)}")


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
            f"batch_size={batch_size} cannot give every batch both labels with {len(positive)} desirable and "
            f"{len(negative)} undesirable rows: {reason}"
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
