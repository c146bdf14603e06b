"""Claudesidian synthetic tool-calling dataset, rebuilt into exact, KTO-ready subsets.

This file is both the library module (`import claudesidian_synthetic as cs; cs.load(...)`) and the
Hub loading script for `datasets<4`, so it imports only `datasets`, `numpy` and the standard library,
one import per line (the `datasets<4` script loader misreads `import a, b`).

Layout: source pin and schema, errors, the config, the builder, `load()`, then the pure selection
functions (which rows, in which order) that the builder calls and the tests check without `datasets`.
"""

import array
import contextlib
import dataclasses
import gc
import hashlib
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
import huggingface_hub
import numpy as np

__version__ = "1.0.0"

# --- source pin and schema -------------------------------------------------------------------

SOURCE_FILENAME = "syngen_toolset_v1.0.0_claude.jsonl"
SOURCE_REPO_ID = "professorsynapse/claudesidian-synthetic-dataset"
# `full` and `balanced_254` promise these exact bytes (the v1.0.0 file, 1000 rows, 746 / 254).
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
LAYOUTS = ("kto", "conversations")
# How lines are read: a UTF-8 byte-order mark and JSON whitespace around a row change nothing
# (bytes.strip() would also take \x0b and \x0c, which JSON refuses).
_BOM = b"\xef\xbb\xbf"
_JSON_SPACE = b" \t\r\n"
_DECODER = json.JSONDecoder()
# Only a \uD800-\uDFFF escape can put half a character into a row; lines without one skip that check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD]")

_MESSAGE = {"role": datasets.Value("string"), "content": datasets.Value("string")}
_CONTEXT = {name: datasets.Value("string") for name in CONTEXT_FIELDS}
# A Python list of a struct means "list of struct" on every `datasets` from 3.x to 5.x.
FEATURES = datasets.Features(
    {"prompt": [_MESSAGE], "completion": [_MESSAGE], "label": datasets.Value("bool"), "context": _CONTEXT}
)
# The published file's own columns, for pipelines that read `example["conversations"]`.
CONVERSATIONS_FEATURES = datasets.Features(
    {"conversations": [_MESSAGE], "label": datasets.Value("bool"), "context": _CONTEXT}
)
FEATURES_BY_LAYOUT = {"kto": FEATURES, "conversations": CONVERSATIONS_FEATURES}

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
    "balanced_254": _SELECTION_OPTIONS + ("seed", "dedupe", "order", "batch_size", "test_size"),
}
_WHY_FIXED = {
    "test_size": "it is the published file, every row of it in training; for a held-out test split use "
    "name='balanced_custom' (the same recipe on the rows left for training) or name='full', with test_size",
}


@dataclasses.dataclass
class ClaudesidianSyntheticConfig(datasets.BuilderConfig):
    """Which subset to build and from which source.

    `source`: a local path or URL of the source JSONL; default: the Hub file at `revision`.
    `desirable` / `undesirable`: row counts; or `ratio`: desirable rows per undesirable row, the
    minority kept whole. `replacement`: draw with replacement (oversample past a class's size).
    `dedupe`: drop exact duplicate lines first. `order`: "source", "shuffle" or "mixed" (every
    `batch_size` consecutive rows hold both labels). `seed`: 42 (the published one) unless given.
    `test_size`: hold out a prompt-disjoint, stratified `test` split (a fraction, or a row count)
    before the selection. `layout`: "kto" (prompt, completion, label, context) or "conversations"
    (the published file's columns); it changes columns, never rows.
    """

    source: Optional[str] = None
    revision: str = "main"
    desirable: Optional[int] = None
    undesirable: Optional[int] = None
    ratio: Optional[float] = None
    seed: Optional[int] = None
    replacement: bool = False
    dedupe: bool = False
    order: Optional[str] = None
    batch_size: Optional[int] = None
    test_size: Optional[float] = None
    layout: str = "kto"

    def __post_init__(self):
        super().__post_init__()
        self.check()

    def check(self) -> None:
        """Raise OptionError for options that cannot work together (also called after overrides)."""
        fixed = _FIXED_OPTIONS.get(self.name, ())
        for option in fixed:
            if getattr(self, option) != OPTION_DEFAULTS[option]:
                why = _WHY_FIXED.get(option, f"use name='balanced_custom' to choose {option}")
                raise OptionError(
                    f"{option}={getattr(self, option)!r} is not an option of the {self.name!r} config "
                    f"({CONFIG_PURPOSE[self.name]}); {why}"
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
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise OptionError(f"seed={self.seed!r}: must be a whole number")
        if self.order is not None and self.order not in ORDERS:
            raise OptionError(f"order={self.order!r}: must be one of {', '.join(ORDERS)}")
        if self.layout not in LAYOUTS:
            raise OptionError(f"layout={self.layout!r}: must be one of {', '.join(LAYOUTS)}")
        if self.test_size is not None:
            size = self.test_size
            is_count = isinstance(size, int) and not isinstance(size, bool)
            if not (is_count and size >= 1) and not (isinstance(size, float) and 0 < size < 1):
                raise OptionError(
                    f"test_size={size!r}: give a fraction of the source between 0 and 1 (e.g. 0.1) "
                    "or a whole number of rows (at least 1)"
                )
        if self.name == "full" and self.seed is not None and self.resolved_order == "source" and self.test_size is None:
            raise OptionError(
                f"seed={self.seed!r} has no effect on 'full' in source order: pass order='shuffle' or "
                "order='mixed' (or test_size) for the seed to choose something, or leave seed out"
            )
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

    @property
    def resolved_seed(self) -> int:
        return PUBLISHED_SEED if self.seed is None else self.seed


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
            if os.path.isdir(source):
                raise SourceError(
                    source, "is a folder, not a file", f"Pass source= the path of {SOURCE_FILENAME} itself"
                )
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
        if self.config.name not in PINNED_CONFIGS or self.config.dedupe or self.config.test_size is not None:
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
        if self.config.name in PINNED_CONFIGS:
            _verify_pinned_source(path, self._source_sha256 if path == self.config.source else None)
        with _gc_frozen():
            scan = scan_source(path)
        prompt_keys = read_prompt_keys(path, scan) if self.config.test_size is not None else None
        try:
            splits = plan_splits(scan, self.config, prompt_keys)
        except OptionError as error:
            raise OptionError(f"{path}: {error}") from None
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"path": path, "shards": _shards(scan, rows)})
            for split, rows in splits.items()
        ]

    def _prepare_split(self, *args, **kwargs):
        # Every row was checked by `scan_source` and shaped by `to_example`, so `datasets`' per-value
        # encoding walk would hand each one back unchanged; at 100k rows that walk was a third of the
        # build. Swapped in for the generation only: the Dataset you get has the plain FEATURES.
        features = self.info.features
        self.info.features = _CheckedRowFeatures(features)
        try:
            with _gc_frozen():
                return super()._prepare_split(*args, **kwargs)
        finally:
            self.info.features = features

    def _generate_examples(self, path, shards):
        with open(path, "rb") as file:  # `open` reads URLs too when datasets streams this module
            unbuffered = getattr(file, "raw", file)  # rows are read out of order: a buffer only costs a copy
            for start, offsets, lengths in shards:
                for position, (offset, length) in enumerate(zip(offsets.tolist(), lengths.tolist()), start):
                    unbuffered.seek(offset)
                    try:
                        row = _DECODER.raw_decode(unbuffered.read(length).strip(_JSON_SPACE).decode("utf-8"))[0]
                    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                        raise SourceError(
                            path,
                            f"changed while it was being read (the row at byte {offset} no longer parses)",
                            "Load again once nothing is writing to the file",
                        ) from None
                    yield position, to_example(row, self.config.layout)


def _shards(scan: "SourceScan", rows: np.ndarray) -> list:
    """Contiguous shards of a split's planned order, (first position, offsets, lengths) each: a list in
    gen_kwargs, so `num_proc` builds them in parallel and a streaming rank can take whole shards. The
    rows and their order do not depend on either."""
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
            return huggingface_hub.hf_hub_download(
                SOURCE_REPO_ID, SOURCE_FILENAME, repo_type="dataset", revision=config.revision, local_files_only=offline
            )
        path = dl_manager.download(url)
        if not os.path.isfile(path):  # a streaming download manager hands back the URL itself
            path = datasets.DownloadManager(download_config=dl_manager.download_config).download(url)
        return path
    except Exception as error:  # noqa: BLE001 - every HTTP client's and the Hub's errors, on every version
        message = " ".join(str(error).split())[:300]
        problem = "is not in the local cache and downloads are off (offline mode)" if offline else (
            f"could not be downloaded ({type(error).__name__}: {message})"
        )
        raise SourceError(
            url,
            problem,
            f"Without network, pass source= a local copy of {SOURCE_FILENAME} (CLI: --source), or load once "
            "online so that offline mode serves the cache; check revision= if the file is missing there",
        ) from None


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
    num_proc: Optional[int] = None,
    **config_kwargs: Any,
):
    """Build (or read from the Arrow cache) one config, like `datasets.load_dataset` did for scripts.

    Returns a DatasetDict (or the Dataset of `split`); an IterableDataset(Dict) with `streaming=True`.
    `num_proc` builds a split's shards (ROWS_PER_SHARD rows each) in parallel; the rows are the same.
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


def scan_source(path: str) -> SourceScan:
    """Read and check every line of the source strictly; raise SourceError naming the first bad one.
    Per row it keeps a label byte and three 8-byte integers (no Python object), so memory grows slowly."""
    labels, offsets, lengths, hashes = bytearray(), array.array("q"), array.array("q"), array.array("q")
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
            hashes.append(hash(row))
        progress.update(offset - progress.n)
        if not labels:
            raise SourceError(path, "the file holds no rows", f"Point source= at a non-empty copy of {SOURCE_FILENAME}")
        offsets, lengths = np.frombuffer(offsets, dtype=np.int64), np.frombuffer(lengths, dtype=np.int64)
        duplicate = _exact_duplicates(file, offsets, lengths, np.frombuffer(hashes, dtype=np.int64))
    return SourceScan(np.frombuffer(labels, dtype=bool), offsets, lengths, duplicate)


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


def to_example(row: dict, layout: str = "kto") -> dict:
    """A checked source row in the layout's columns, in exactly the shape its features encode to
    (every context field present): TRL's prompt + completion (== conversations), or the source's own."""
    messages = row["conversations"]
    context = row.get("context")
    if context is not None:
        context = {name: context.get(name) for name in CONTEXT_FIELDS}
    if layout == "conversations":
        return {"conversations": messages, "label": row["label"], "context": context}
    return {"prompt": messages[:-1], "completion": messages[-1:], "label": row["label"], "context": context}


def read_prompt_keys(path: str, scan: SourceScan) -> list:
    """A digest of each row's prompt (every message but the last): rows that share one must stay on
    the same side of a train/test split. Identical lines share one too."""
    keys = []
    with open(path, "rb") as file:
        for offset, length in zip(scan.offsets.tolist(), scan.lengths.tolist()):
            file.seek(offset)
            keys.append(json_digest(json.loads(file.read(length))["conversations"][:-1]))
    return keys


def json_digest(value: Any) -> bytes:
    """16 bytes that stand for a JSON value (keys sorted): sets of prompts or rows without their text."""
    return hashlib.blake2b(json.dumps(value, ensure_ascii=False, sort_keys=True).encode(), digest_size=16).digest()


# --- selection: which rows, in which order ----------------------------------------------------


def plan_splits(scan: SourceScan, config: ClaudesidianSyntheticConfig, prompt_keys: Optional[list] = None) -> dict:
    """Source row indices of each split, in output order: `test` (when `test_size` holds one out of the
    source first, keeping its label mix) and `train` (the config's selection from the rest)."""
    candidates = np.arange(len(scan.labels))
    splits = {}
    if config.test_size is not None:
        test = np.array(held_out_rows(scan.labels.tolist(), prompt_keys, config.test_size, config.resolved_seed))
        candidates = np.setdiff1d(candidates, test)
        rng = random.Random(f"{config.resolved_seed}:test")
        test_labels = scan.labels[test].tolist()
        try:
            order = arrange(list(range(len(test))), test_labels, config.resolved_order, rng, config.batch_size)
        except OptionError as error:
            raise OptionError(f"the test split: {error}; pick a larger test_size or a larger batch_size") from None
        splits["test"] = test[np.array(order, dtype=np.int64)]
    if config.dedupe:
        kept = candidates[~scan.duplicate[candidates]]
        logger.warning("dedupe: dropped %d exact duplicate line(s) of %d", len(candidates) - len(kept), len(candidates))
        candidates = kept
    labels = scan.labels[candidates].tolist()
    if config.name == "full":
        rng = random.Random(config.resolved_seed)
        picked = arrange(list(range(len(labels))), labels, config.resolved_order, rng, config.batch_size)
    else:
        picked = balanced_indices(
            labels,
            desirable=config.desirable,
            undesirable=config.undesirable,
            ratio=config.ratio,
            seed=config.resolved_seed,
            replacement=config.replacement,
            order=config.resolved_order,
            batch_size=config.batch_size,
        )
    return {"train": candidates[np.array(picked, dtype=np.int64)], **splits}


def held_out_rows(labels: Sequence[bool], prompt_keys: Sequence, test_size: float, seed: int) -> list:
    """Sorted source rows of a test split that shares no prompt with the rest, sized and stratified:
    its row count and its desirable count each lie within the largest prompt group of the exact figures.

    Prompt groups are shuffled by a generator of their own (seeded from `seed`), then taken while they
    fit under both labels' exact counts; a second pass fills up to the row count."""
    n = len(labels)
    target = test_size if isinstance(test_size, int) else round(test_size * n)
    if not 1 <= target < n:
        raise OptionError(
            f"test_size={test_size!r} asks for {target} of the {n} source rows: it must leave at least one row "
            "on each side; give a fraction between 0 and 1 or a count below the row count"
        )
    groups = {}
    for row, key in enumerate(prompt_keys):
        groups.setdefault(key, []).append(row)
    groups = list(groups.values())
    largest = max(map(len, groups))
    random.Random(f"test_size:{seed}").shuffle(groups)
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
            f"test_size={test_size!r}: no prompt-disjoint split of {target} rows with about "
            f"{exact_desirable:.0f} desirable was found (best: {desirable + undesirable} rows, {desirable} desirable; "
            f"the largest group of rows sharing a prompt has {largest}); try another test_size or seed"
        )
    if desirable == 0 or undesirable == 0:
        raise OptionError(
            f"test_size={test_size!r} leaves the test split with one label ({desirable} desirable, {undesirable} "
            "undesirable rows), where KTO's batches need both; give a larger test_size"
        )
    if sum(labels) - desirable == 0 or n - sum(labels) - undesirable == 0:
        raise OptionError(
            f"test_size={test_size!r} leaves the train split with one label; give a smaller test_size"
        )
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
