"""Claudesidian synthetic tool-calling dataset, rebuilt into exact, training-ready subsets.

This file is both the library module (`import claudesidian_synthetic as cs; cs.load(...)`) and the
Hub loading script for `datasets<4`, so it imports only `datasets`, `numpy`, `msgspec` (the typed JSON
decoder of the strict reader, a requirement of this package) and the standard library, one import per
line (the `datasets<4` script loader misreads `import a, b`, and names a missing module in its "install"
line), and holds only what a loading script needs. Read top to bottom: the source pin and its schema;
the layouts, one record each; errors; the options, each declared once; the configs table; the builder
and `load()`; reading the source; the pure selection functions (which rows, in which order), which the
tests check without `datasets`.
"""

import array
import codecs
import contextlib
import dataclasses
import difflib
import functools
import gc
import hashlib
import itertools
import json
import logging
import marshal
import math
import os
import random
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Collection
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Annotated
from typing import Any
from typing import Callable
from typing import Optional
from typing import Sequence
from typing import Union

import datasets
import huggingface_hub
import msgspec
import numpy as np
import xxhash

__version__ = "1.3.0"

# --- source pin and schema -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Member:
    """One source file of the syngen_toolset family (the same generator run with one model), pinned: its file
    name, version, bytes (sha256, size, rows), where it downloads from and its licence."""

    name: str
    file: str
    version: str
    sha256: str
    size: int
    rows: int
    url: Optional[str]  # None: the Hub dataset repository SOURCE_REPO_ID, at the `revision` option
    licence: str = "MIT, copyright 2025 ProfSynapse"


SOURCE_REPO_ID = "professorsynapse/claudesidian-synthetic-dataset"
# The author's repository at the commit the two other members are pinned to (unchanged since 2025-11-25).
_ARCHIVE = ("https://raw.githubusercontent.com/ProfSynapse/Synaptic-Tuner/3da8e857e953ba18e1177b77ae2da39da29139ab/"
            "Datasets/archived%20datasets/")
MEMBERS = {
    member.name: member
    for member in (
        # The source of every single-file config: the v1.0.0 file published on the Hub, 746 / 254.
        Member("claude", "syngen_toolset_v1.0.0_claude.jsonl", "1.0.0",
               "861a7d7d575f2f1f6108b846d4e54ca6a70b2a4316e56ffef7eaeda61a5426a4", 1_627_040, 1_000, None),
        Member("chatgpt", "syngen_toolset_v1.0.0_chatgpt.jsonl", "1.0.0",
               "493883ebc87c877b5dd1c6908f18bce2c869139dfabffad2827bd5bb2074c53b", 1_072_882, 787,
               _ARCHIVE + "syngen_toolset_v1.0.0_chatgpt.jsonl"),
        Member("copilot", "syngen_toolset_v1.0.1_copilot.jsonl", "1.0.1",
               "46b37290f7865c622aa9b209e6e742c672fcabc9de9c41d8cbc640499551891b", 1_472_842, 1_438,
               _ARCHIVE + "syngen_toolset_v1.0.1_copilot.jsonl"),
    )
}
SOURCE_FILENAME = MEMBERS["claude"].file
# Pinned configs promise these exact bytes (the v1.0.0 file, 1000 rows, 746 / 254).
SOURCE_SHA256 = MEMBERS["claude"].sha256
SOURCE_NUM_BYTES = MEMBERS["claude"].size
PUBLISHED_SEED = 42
# The dataset author's tool schemas (ProfSynapse/Synaptic-Tuner, tools/tool_schemas.json at 3da8e857, 47
# tools), shipped in claudesidian_tools/ with its MIT licence notice: what the tool-call checks use unless
# `tool_schemas` names a newer version.
TOOL_SCHEMAS_FILENAME = "tool_schemas.json"
TOOL_SCHEMAS_SHA256 = "2e741f5c0f718d3aa23b1de3fb9d3eee834aeb0a6260ad8936d2602c0f64cc00"
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
# The words for a row's label, True first: every message, figure and column says these.
LABEL_NAMES = ("desirable", "undesirable")
# The oldest `datasets` that loads an exported config from its Parquet files, as CI's version cells measure
# it: plain columns from 3.6 (the oldest CI runs); the tools layouts' `Json` values from 4.7, which added
# `Json` (below it `load_dataset` stops at their features: 3.x knows neither `List` nor `Json`).
OLDEST_DATASETS = "3.6"
JSON_DATASETS = "4.7"
ORDERS = ("source", "shuffle", "mixed")
# JSON whitespace around a row changes nothing (bytes.strip() would also take \x0b and \x0c, which
# JSON refuses), nor does a UTF-8 byte-order mark before the first line.
_JSON_SPACE = b" \t\r\n"
_DECODER = json.JSONDecoder()
# Only a \uD800-\uDFFF escape can put half a character into a row; lines without one skip that check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD]")

DESCRIPTION = """\
Synthetic tool-calling conversations for the Claudesidian Obsidian agent, each labelled desirable
(true) or undesirable (false), rebuilt exactly into training-ready subsets: unpaired preference data
for TRL's KTOTrainer (prompt, completion, label, context), the desirable conversations for SFT
(messages) and the prompts with both labels as preference pairs for DPO (prompt, chosen, rejected).
"""
HOMEPAGE = f"https://huggingface.co/datasets/{SOURCE_REPO_ID}"
LICENSE = "mit"
CITATION = f"""\
@misc{{claudesidian_synthetic_2025,
  title  = {{Claudesidian synthetic tool-calling dataset}},
  author = {{ProfSynapse}},
  year   = {{2025}},
  url    = {{{HOMEPAGE}}}
}}
"""

logger = logging.getLogger("claudesidian_synthetic")


# --- layouts: one record each ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Layout:
    """Everything that is true of one layout: its columns, how a checked source row becomes an
    example, where an example's prompts and labelled replies are, which `trl` command trains on it,
    and how the card describes it. Builder, stats, export, card and recipes read this record, so a
    new layout is one entry of LAYOUTS."""

    name: str
    features: datasets.Features
    # A checked source row (and, for a pair, the rejected row) as an example, in exactly the shape its
    # features encode to.
    to_example: Callable[..., dict]
    # (labels, prompts, replies) of a columnar batch: one labelled reply per row, two per pair.
    replies: Callable[[Mapping], tuple]
    # How its rows are labelled: "own" (each row has its label), "desirable" (only desirable rows) or
    # "pairs" (a chosen and a rejected reply per row).
    labels: str
    trainer: Optional[str]  # the `trl` command that trains on it; None for the published columns
    title: str  # the card's heading for its columns
    columns: tuple  # (column, type, meaning) per column, for the card
    purpose: str  # the `layout` option's help and the README's table
    # Structured tool calls and a `tools` column: it needs the tool schemas, and every row's calls must parse.
    tools: bool = False
    # One decision per example: the conversation before one assistant turn as the prompt, that turn as the
    # completion (`decision_turns`), so the trainer's log-ratio never sums over tool results it did not write.
    turns: bool = False

    def loss_messages(self, prompt: Sequence[Mapping], reply: Sequence[Mapping]) -> list:
        """The messages of one labelled reply that its trainer's loss falls on: the assistant's turns for SFT
        (its recipes set `assistant_only_loss`), the completion for KTO and DPO."""
        if self.trainer == "sft":
            return [message for message in [*prompt, *reply] if message["role"] == "assistant"]
        return list(reply)

    @property
    def plain(self) -> bool:
        """Its examples are already what Arrow stores (no `Json` value to encode), so `datasets`' encoding
        walk can be skipped."""
        return not (self.tools and _JSON is not None)

    @property
    def label_words(self) -> dict:
        """What the card, `stats` and the figures call each of LABEL_NAMES: a pair's two replies are its
        `chosen` and `rejected` columns, not rows of their own."""
        return dict(zip(LABEL_NAMES, ("chosen", "rejected") if self.labels == "pairs" else LABEL_NAMES))

    @property
    def oldest_datasets(self) -> str:
        """The oldest `datasets` that loads an exported config of this layout from its Parquet files: the card
        and the README say it per config, CI's version cells check it. (Exported by a `datasets` without
        `Json`, a tools layout holds JSON text, which every version reads.)"""
        return OLDEST_DATASETS if self.plain else JSON_DATASETS


_MESSAGE = {"role": datasets.Value("string"), "content": datasets.Value("string")}
_CONTEXT = {name: datasets.Value("string") for name in CONTEXT_FIELDS}
_LABEL_TEXT = "`true` = desirable, `false` = undesirable"
_CONTEXT_TYPE = f"struct of {len(CONTEXT_FIELDS)} strings, or null"


def _context(row: dict) -> Optional[dict]:
    """The row's context with every field present, in schema order (None stays None)."""
    context = row.get("context")
    return None if context is None else {name: context.get(name) for name in CONTEXT_FIELDS}


def _split_replies(batch: Mapping, column: str, labels: list) -> tuple:
    conversations = batch[column]
    return labels, [messages[:-1] for messages in conversations], [messages[-1:] for messages in conversations]


def reply_start(messages: Sequence[Mapping]) -> int:
    """Where the reply begins in a whole conversation: after its last user message."""
    return max(index for index, message in enumerate(messages) if message["role"] == "user") + 1


def _pair_replies(batch: Mapping) -> tuple:
    pairs = len(batch["prompt"])
    replies = [reply for chosen, rejected in zip(batch["chosen"], batch["rejected"]) for reply in (chosen, rejected)]
    return [True, False] * pairs, [prompt for prompt in batch["prompt"] for _ in (0, 1)], replies


# `datasets` 4.7 and later store a value whose keys vary from row to row (a message with or without
# `tool_calls`, a call's arguments) as JSON text and hand it back as it was: the tools layouts use it where
# it exists. Elsewhere (3.x) a message is a struct whose absent keys are null (TRL's `remove_none_values`
# drops them) and arguments and tools are JSON strings, which TRL and most chat templates read too.
_JSON = getattr(datasets.features, "Json", None)
if _JSON is not None:
    _NATIVE_MESSAGES, _TOOLS = [_JSON()], _JSON()
else:
    _TOOL_CALL = {"type": datasets.Value("string"), "id": datasets.Value("string"),
                  "function": {"name": datasets.Value("string"), "arguments": datasets.Value("string")}}
    _NATIVE_MESSAGES = [{**_MESSAGE, "tool_calls": [_TOOL_CALL], "tool_call_id": datasets.Value("string"),
                         "name": datasets.Value("string")}]
    _TOOLS = datasets.Value("string")
_NATIVE_TYPE = "list of messages with `tool_calls` (`{type, id, function: {name, arguments}}`) and `tool` results"
_TOOLS_COLUMN = ("tools", "list of JSON Schema function definitions",
                 "`get_tools` and every tool of each agent the reply calls, as the runtime offers them")


def _stored(messages: list) -> list:
    """Messages as the tools layouts' features store them (see _JSON)."""
    if _JSON is not None:
        return messages
    return [{"role": message["role"], "content": message["content"],
             "tool_calls": [{**call, "function": {**call["function"],
                                                  "arguments": json.dumps(call["function"]["arguments"])}}
                            for call in message["tool_calls"]] if "tool_calls" in message else None,
             "tool_call_id": message.get("tool_call_id"), "name": message.get("name")} for message in messages]


def _json_columns(features: datasets.Features) -> dict:
    """The columns holding `Json` values: "value" (one per row) or "list" (a list of them per row)."""
    if _JSON is None:
        return {}
    found = {column: "value" for column, feature in features.items() if isinstance(feature, _JSON)}
    return {**found, **{column: "list" for column, feature in features.items()
                        if isinstance(getattr(feature, "feature", None), _JSON)}}


def json_text(batch: Mapping, features: datasets.Features) -> dict:
    """A columnar batch with its `Json` values as JSON text, as Python's json writes it: exact, where
    `datasets` reads JSON with pandas' ujson, which puts some decimals one step off (0.7 reads back as
    0.7000000000000001). The export writes this text; verify reads it back with `json_values`."""
    kinds = _json_columns(features)
    return {column: [json.dumps(value) if kinds[column] == "value" else [json.dumps(item) for item in value]
                     for value in values] if column in kinds else values for column, values in batch.items()}


def json_values(row: Mapping, features: datasets.Features) -> dict:
    """A stored row with its `Json` values (JSON text) read back by Python's json, exactly."""
    kinds = _json_columns(features)
    return {column: (json.loads(value) if kinds[column] == "value" else [json.loads(item) for item in value])
            if column in kinds and value is not None else value for column, value in row.items()}


def _native(row: dict, schemas: "ToolSchemas") -> tuple:
    """(prompt, reply, tools) of a checked source row in the native tool format: the reply as
    structured messages (not yet stored), the tools it may call as definitions."""
    messages = row["conversations"]
    parsed = parse_reply(messages[-1]["content"])
    tools = [schemas.definition(name) for name in tools_for_row(parsed, schemas)]
    return messages[:-1], native_messages(parsed), tools if _JSON is not None else json.dumps(tools)


def _native_pair(row: dict, rejected: dict, schemas: "ToolSchemas") -> dict:
    prompt, chosen, chosen_tools = _native(row, schemas)
    _, other, rejected_tools = _native(rejected, schemas)
    decode = (lambda tools: tools) if _JSON is not None else json.loads
    names = {tool["function"]["name"]: tool for tool in decode(chosen_tools) + decode(rejected_tools)}
    tools = [names[name] for name in sorted(names)]
    return {"prompt": _stored(prompt), "chosen": _stored(chosen), "rejected": _stored(other),
            "tools": tools if _JSON is not None else json.dumps(tools)}


def _native_decision(row: dict, schemas: "ToolSchemas", turn: int) -> dict:
    """One decision of a checked source row: every message before its `turn`-th decision turn (the
    request, earlier calls and their results) as the prompt, that one assistant message as the completion."""
    prompt, reply, tools = _native(row, schemas)
    position = decision_turns(reply)[turn]
    return {"prompt": _stored(prompt + reply[:position]), "completion": _stored(reply[position : position + 1]),
            "label": row["label"], "context": _context(row), "tools": tools}


def _native_sft(row: dict, schemas: "ToolSchemas") -> dict:
    prompt, reply, tools = _native(row, schemas)
    return {"messages": _stored(prompt + reply), "tools": tools}


def _messages_replies(batch: Mapping, labels: list) -> tuple:
    starts = [reply_start(messages) for messages in batch["messages"]]
    return (labels, [messages[:start] for messages, start in zip(batch["messages"], starts)],
            [messages[start:] for messages, start in zip(batch["messages"], starts)])


# A Python list of a struct means "list of struct" on every `datasets` from 3.x to 5.x.
LAYOUTS = {
    layout.name: layout
    for layout in (
        Layout(
            "kto",
            datasets.Features({"prompt": [_MESSAGE], "completion": [_MESSAGE], "label": datasets.Value("bool"),
                               "context": _CONTEXT}),
            lambda row, rejected=None, schemas=None: {"prompt": row["conversations"][:-1],
                                                      "completion": row["conversations"][-1:],
                                                      "label": row["label"], "context": _context(row)},
            lambda batch: (batch["label"], batch["prompt"], batch["completion"]),
            "own", "kto",
            "The `kto` layout (TRL's unpaired preference format, conversational)",
            (("prompt", "list of `{role, content}`", "every message but the last"),
             ("completion", "list with one `{role, content}`", "the assistant's reply"),
             ("label", "bool", _LABEL_TEXT),
             ("context", _CONTEXT_TYPE, f"session metadata ({', '.join(CONTEXT_FIELDS)})")),
            "prompt, completion, label, context",
        ),
        Layout(
            "conversations",
            datasets.Features({"conversations": [_MESSAGE], "label": datasets.Value("bool"), "context": _CONTEXT}),
            lambda row, rejected=None, schemas=None: {"conversations": row["conversations"], "label": row["label"],
                                        "context": _context(row)},
            lambda batch: _split_replies(batch, "conversations", batch["label"]),
            "own", None,
            "The `conversations` layout (the published file's columns)",
            (("conversations", "list of `{role, content}`", "the whole conversation, the assistant's reply last"),
             ("label", "bool", _LABEL_TEXT),
             ("context", _CONTEXT_TYPE, "session metadata")),
            "the published file's",
        ),
        Layout(
            "messages",
            datasets.Features({"messages": [_MESSAGE]}),
            lambda row, rejected=None, schemas=None: {"messages": row["conversations"]},
            lambda batch: _split_replies(batch, "messages", [True] * len(batch["messages"])),
            "desirable", "sft",
            "The `messages` layout (TRL's conversational language-modeling format, for SFT)",
            (("messages", "list of `{role, content}`", "the whole conversation of a desirable row"),),
            "SFT",
        ),
        Layout(
            "preference",
            datasets.Features({"prompt": [_MESSAGE], "chosen": [_MESSAGE], "rejected": [_MESSAGE]}),
            lambda row, rejected, schemas=None: {"prompt": row["conversations"][:-1],
                                                 "chosen": row["conversations"][-1:],
                                   "rejected": rejected["conversations"][-1:]},
            _pair_replies,
            "pairs", "dpo",
            "The `preference` layout (TRL's conversational preference format, for DPO and ORPO)",
            (("prompt", "list of `{role, content}`", "every message but the last"),
             ("chosen", "list with one `{role, content}`", "a desirable reply to the prompt"),
             ("rejected", "list with one `{role, content}`", "an undesirable reply to the same prompt")),
            "prompt, chosen, rejected",
        ),
        Layout(
            "kto_tools",
            datasets.Features({"prompt": _NATIVE_MESSAGES, "completion": _NATIVE_MESSAGES,
                               "label": datasets.Value("bool"), "context": _CONTEXT, "tools": _TOOLS}),
            lambda row, rejected=None, schemas=None, turn=0: _native_decision(row, schemas, turn),
            lambda batch: (batch["label"], batch["prompt"], batch["completion"]),
            "own", "kto",
            "The `kto_tools` layout (TRL's unpaired preference format with structured tool calls, one assistant "
            "turn per row)",
            (("prompt", _NATIVE_TYPE, "the conversation before the assistant's turn: the request, the earlier calls "
                                      "and their results"),
             ("completion", "list with one assistant message", "one assistant turn: a call, several parallel calls, "
                                                               "or the answer"),
             ("label", "bool", _LABEL_TEXT),
             ("context", _CONTEXT_TYPE, "session metadata"), _TOOLS_COLUMN),
            "prompt, completion, label, context, tools: one assistant turn per row, structured tool calls",
            tools=True, turns=True,
        ),
        Layout(
            "messages_tools",
            datasets.Features({"messages": _NATIVE_MESSAGES, "tools": _TOOLS}),
            lambda row, rejected=None, schemas=None: _native_sft(row, schemas),
            lambda batch: _messages_replies(batch, [True] * len(batch["messages"])),
            "desirable", "sft",
            "The `messages_tools` layout (TRL's conversational language-modeling format with structured tool calls)",
            (("messages", _NATIVE_TYPE, "the whole conversation of a desirable row, its reply as structured "
                                        "messages"), _TOOLS_COLUMN),
            "SFT with structured tool calls",
            tools=True,
        ),
        Layout(
            "preference_tools",
            datasets.Features({"prompt": _NATIVE_MESSAGES, "chosen": _NATIVE_MESSAGES, "rejected": _NATIVE_MESSAGES,
                               "tools": _TOOLS}),
            lambda row, rejected, schemas=None: _native_pair(row, rejected, schemas),
            _pair_replies,
            "pairs", "dpo",
            "The `preference_tools` layout (TRL's conversational preference format with structured tool calls)",
            (("prompt", "list of `{role, content}`", "every message but the reply"),
             ("chosen", _NATIVE_TYPE, "a desirable reply to the prompt"),
             ("rejected", _NATIVE_TYPE, "an undesirable reply to the same prompt"), _TOOLS_COLUMN),
            "prompt, chosen, rejected, tools: structured tool calls",
            tools=True,
        ),
    )
}


# A family config's rows name their member (claude, chatgpt or copilot) in one more column, after the layout's.
SOURCE_COLUMN = {"source": datasets.Value("string")}


def layout_of(column_names: Sequence[str]) -> Layout:
    """The layout whose columns these are (a family's `source` column aside)."""
    columns = [column for column in column_names if column not in SOURCE_COLUMN]
    for layout in LAYOUTS.values():
        if list(layout.features) == columns:
            return layout
    raise OptionError(f"columns {', '.join(column_names)} are none of the layouts {', '.join(LAYOUTS)}")


# --- errors -----------------------------------------------------------------------------------


def escaped(text: str) -> str:
    """Text to show as it is inside a message template (its braces doubled)."""
    return str(text).replace("{", "{{").replace("}", "}}")


class ClaudesidianError(ValueError):
    """Base of this package's errors: a ValueError whose message says what, where and what to do, in
    the caller's words. The message is a template whose fields are `Mention`s of options (or other
    errors); `str(error)` words them as Python keywords, `error.words(voice)` in another voice (the
    command line's flags live with the command line)."""

    exit_code = 2  # the command line's exit status for this error
    voice: Optional[Callable[[Any], str]] = None  # set where the message must keep one voice

    def __init__(self, template: str, **mentions: Any):
        self.template, self.mentions = (template if mentions else escaped(template)), mentions
        super().__init__(self.words())

    def words(self, voice: Optional[Callable[[Any], str]] = None) -> str:
        speak = self.voice or voice or python_voice
        return self.template.format(**{key: speak(value) for key, value in self.mentions.items()})


class SourceError(ClaudesidianError):
    """The source file is unreadable, malformed or not the promised bytes."""

    def __init__(self, path: str, problem: str, fix: str, line: Optional[int] = None, **mentions: Any):
        self.path, self.line = path, line
        where = f"{path}, line {line}" if line is not None else str(path)
        if not mentions:  # plain text: the base class escapes it once
            super().__init__(f"{where}: {problem}. {fix}")
        else:
            super().__init__(escaped(f"{where}: {problem}. ") + fix, **mentions)


class OptionError(ClaudesidianError):
    """An option has a value that cannot work; the message names the option and the fix."""

    def about(self, prefix: str, suffix: str = "", voice: Optional[Callable[[Any], str]] = None,
              **mentions: Any) -> "OptionError":
        """The same error, said about something (a file, a split): `prefix` + message + `suffix`."""
        said = OptionError(escaped(prefix) + self.template + suffix, **{**self.mentions, **mentions})
        said.voice = voice or self.voice
        return said


class Placeholder(str):
    """A value to fill in, shown as it is (`source=PATH`, `--source PATH`)."""

    def __repr__(self) -> str:
        return str(self)


_NOTHING = object()


@dataclasses.dataclass(frozen=True)
class Mention:
    """An option as a message mentions it, with the value given (if any); `name` is the config. Each
    voice words it its own way: `batch_size=4` in Python, `--batch-size 4` on the command line."""

    option: str
    value: Any = _NOTHING

    @property
    def bare(self) -> bool:
        return self.value is _NOTHING


def voice(words: Callable[[Mention], str], joiner: str) -> Callable[[Any], str]:
    """A way of speaking: how it words one mention, and what joins several; an error mentioned inside
    another is said in the same voice."""

    def speak(said: Any) -> str:
        if isinstance(said, ClaudesidianError):
            return said.words(speak)
        if isinstance(said, tuple):
            return joiner.join(map(speak, said))
        return words(said) if isinstance(said, Mention) else str(said)

    return speak


# Python's words: `batch_size=4`, `name='full'`; several joined by commas.
python_voice = voice(lambda said: said.option if said.bare else f"{said.option}={said.value!r}", ", ")


_FIX_ROW = (
    'Fix or delete that line: each line must be one JSON object {"conversations": [{"role": ..., '
    '"content": ...}, ..., {"role": "assistant", "content": ...}], "label": true|false, '
    '"context": {...} or null}'
)


# --- options: each declared once, with its rule, default and help ----------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """The values an option takes (imbalanced-learn's `_parameter_constraints`, one per option): a
    test and the words that state it; `choices` when the values are a few names."""

    states: str
    accepts: Callable[[Any], bool]
    choices: tuple = ()


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(*values: str) -> Rule:
    return Rule(f"one of {', '.join(values)}", lambda value: value in values, values)


_COUNT = Rule("a positive whole number", lambda value: _is_whole(value) and value >= 1)
_STRATA = Rule("a whole number of strata, at least 2 (one stratum matches nothing)",
               lambda value: _is_whole(value) and value >= 2)
_WHOLE = Rule("a whole number", _is_whole)
_POSITIVE = Rule(
    "a finite number above 0",
    lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf,
)
_FLAG = Rule("True or False", lambda value: isinstance(value, bool))
_TEXT = Rule("text", lambda value: isinstance(value, str))
_SOURCE = Rule("a path or URL (text), or a mapping of member name to path or URL",
               lambda value: isinstance(value, str) or (isinstance(value, Mapping) and all(
                   isinstance(key, str) and isinstance(item, str) for key, item in value.items())))
_TEST_SIZE = Rule(
    "a fraction of the source between 0 and 1 (e.g. 0.1), a whole number of rows (at least 1), or 0 for no test "
    "split",
    lambda value: (_is_whole(value) and value >= 0) or (isinstance(value, float) and 0 <= value < 1),
)


def _option(default: Any, rule: Rule, help: str, shown: Optional[str] = None) -> Any:
    """One option: its default, its rule, its help, and how `--help` shows a default of None."""
    return dataclasses.field(default=default, metadata={"rule": rule, "help": help, "shown": shown})


@dataclasses.dataclass
class ClaudesidianSyntheticConfig(datasets.BuilderConfig):
    """Which subset to build and from which source: a named config of `CONFIGS` and its options.
    Each option is declared once, here (its type tells the command line how to read it); the
    command line, its `--help` and the docs read these."""

    source: Optional[Union[str, Mapping]] = _option(
        None, _SOURCE, f"local path or URL of {SOURCE_FILENAME}, or a folder holding the source files under their "
        f"pinned names ({', '.join(member.file for member in MEMBERS.values())}; a family config reads them all)",
        "each file downloaded and cached: claude's from the Hub at the revision, the others from the author's "
        "repository at their pinned commit",
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
    ratio: Optional[Union[int, float]] = _option(
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
    per_member: bool = _option(
        False, _FLAG, "balance the labels within each member of the family (each member's smaller label kept whole, "
        "or the ratio), as the dataset's author balances within each category, instead of over all its rows",
    )
    order: str = _option(
        "shuffle",
        _choice(*ORDERS),
        "row order: source, shuffle, or mixed (every batch-size consecutive rows hold both labels)",
    )
    batch_size: Optional[int] = _option(
        None, _COUNT, "rows per batch of the mixed order: your per_device_train_batch_size"
    )
    test_size: Optional[Union[int, float]] = _option(
        None,
        _TEST_SIZE,
        "hold out a prompt-disjoint test split before the selection, the same prompts for every config: "
        "a fraction of the source (0.1), a row count (100), or 0 for none",
    )
    layout: str = _option(
        "kto",
        _choice(*LAYOUTS),
        "columns: " + ", ".join(f"{layout.name} ({layout.purpose})" for layout in LAYOUTS.values()),
    )
    gate: str = _option(
        "keep",
        _choice("keep", "drop", "relabel"),
        "desirable rows whose tool calls fail the checks against the tool schemas: keep them, drop them, or relabel "
        "them undesirable (KTO then learns from them what not to do); with drop or relabel a tools layout also "
        "drops every row whose calls do not parse",
    )
    tool_schemas: Optional[str] = _option(
        None, _TEXT, "the tool schemas the gate and the tools layouts check calls against: a local tool_schemas.json "
        "(a newer version of the author's)", f"the pinned copy shipped with the package, sha256 {TOOL_SCHEMAS_SHA256}",
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
        if "order" in given and self.order != "mixed" and "batch_size" not in given:
            self.batch_size = None  # a config's own batch size is its mixed order's: another order drops it
        refused = sorted(given - named.takes)
        if refused == ["per_member"] and not named.family:
            raise OptionError("{given} balances the labels within each member of the family, and {config} reads one "
                              f"file ({SOURCE_FILENAME}): use " + "{family} for the family",
                              given=Mention("per_member", True), config=Mention("name", self.name),
                              family=Mention("name", "family_balanced"))
        if refused:
            option = refused[0]
            mentions = {**_CONFIG_MENTIONS, **({"custom": Mention("name", "family_balanced")} if named.family else {})}
            raise OptionError(
                "{given} is not an option of {config} ({purpose}); " + named.why_not,
                given=Mention(option, getattr(self, option)), config=Mention("name", self.name),
                purpose=named.purpose, option=Mention(option), **mentions,
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
        """The rules that tie two options together, in this order; each message names only the options given."""
        self._check_sizes(given)
        self._check_order(given)
        self._check_checks_and_source(given)

    def _check_sizes(self, given: set) -> None:
        counts = tuple(Mention(name, getattr(self, name)) for name in ("desirable", "undesirable") if name in given)
        if self.ratio is not None and counts:
            raise OptionError("{ratio} with {counts}: give either counts or a ratio, not both",
                              ratio=Mention("ratio", self.ratio), counts=counts)
        if self.length_strata is not None:
            clash = counts + ((Mention("replacement", True),) if self.replacement else ())
            if clash:
                raise OptionError(
                    "{strata} decides how many rows of each label it keeps, so {clash} cannot apply: "
                    "leave it out (a ratio still applies)",
                    strata=Mention("length_strata", self.length_strata), clash=clash,
                )
        if self.per_member and (counts or self.length_strata is not None):
            raise OptionError("{per_member} balances each member by its own smaller label (or the ratio); {clash} "
                              "cannot apply to each member: leave one of them out",
                              per_member=Mention("per_member", True),
                              clash=counts or (Mention("length_strata", self.length_strata),))

    def _check_order(self, given: set) -> None:
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

    def _check_checks_and_source(self, given: set) -> None:
        if self.gate == "relabel" and CONFIGS[self.name].selection == "desirable_only":
            raise OptionError("{gate} on {config}: it holds desirable rows only, so a relabelled row leaves it as a "
                              "dropped one does; give {drop}", gate=Mention("gate", "relabel"),
                              config=Mention("name", self.name), drop=Mention("gate", "drop"))
        if self.tool_schemas is not None and not uses_tool_checks(self):
            raise OptionError(
                "{given} changes nothing here: the gate and the tools layouts check calls against it, and this "
                "build has neither; give {gate} or a tools {layout}, or leave it out",
                gate=Mention("gate", Placeholder("drop|relabel")),
                given=Mention("tool_schemas", self.tool_schemas), layout=Mention("layout"))
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


_ALWAYS = frozenset({"source", "revision", "seed", "test_size", "layout", "order", "gate", "tool_schemas"})
SELECTIONS = {
    "every_row": Selection(
        _ALWAYS | {"dedupe", "batch_size"}, ("kto", "conversations", "kto_tools"), ORDERS,
        "it keeps every row: use {custom} to choose rows", "every_row",
    ),
    "balanced": Selection(
        frozenset(OPTION_DEFAULTS), ("kto", "conversations", "kto_tools"), ORDERS, "", "every_row",
    ),
    "desirable_only": Selection(
        _ALWAYS | {"dedupe"}, ("messages", "conversations", "messages_tools"), ("shuffle", "source"),
        "it holds the desirable rows only; for both labels use {custom} (KTO) or {pairs} (DPO)", "desirable_only",
    ),
    "preference_pairs": Selection(
        _ALWAYS, ("preference", "preference_tools"), ("shuffle", "source"),
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
    pinned: bool = False  # promises its members' pinned bytes (v1.0.0 for claude), so it checks each sha256
    exported: bool = False  # in the default export
    members: tuple = ("claude",)  # the source files it reads (MEMBERS): one, or the family

    @property
    def family(self) -> bool:
        """It reads several members, and each row names its own in a `source` column."""
        return len(self.members) > 1

    @property
    def takes(self) -> frozenset:
        takes = SELECTIONS[self.selection].takes - (set() if self.family else {"per_member"})
        return takes & (self.only | {"source", "revision"}) if self.only is not None else takes

    @property
    def why_not(self) -> str:
        return self.why_only or SELECTIONS[self.selection].why_not

    def option_defaults(self) -> dict:
        """Every option's value when the caller gives none: the option's default, then this config's."""
        layout = {"layout": SELECTIONS[self.selection].layouts[0]}
        return {**OPTION_DEFAULTS, **layout, **self.defaults}


_HELD_OUT = {"test_size": 0.1}
_FAMILY = tuple(MEMBERS)
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
            "sft", "the desirable conversations whose tool calls pass the checks, for supervised fine-tuning (SFT)",
            "desirable_only", {**_HELD_OUT, "gate": "drop"}, exported=True,
        ),
        NamedConfig(
            "sft_tools", "the desirable conversations whose tool calls pass the checks, with structured tool calls, "
            "for SFT", "desirable_only", {**_HELD_OUT, "gate": "drop", "layout": "messages_tools"}, exported=True,
        ),
        NamedConfig(
            "kto_tools", "every source row as decisions with structured tool calls (one assistant turn per row: each "
            "turn of a desirable reply, the faulty turn of an undesirable one), desirable rows whose calls fail the "
            "checks relabelled undesirable, a tenth held out as the test split, in mixed batches of 8", "every_row",
            {**_HELD_OUT, "order": "mixed", "batch_size": 8, "gate": "relabel", "layout": "kto_tools"},
            exported=True,
        ),
        NamedConfig(
            "pairs", "preference pairs of the prompts that have both labels, for DPO or ORPO", "preference_pairs",
            _HELD_OUT,
            exported=True,
        ),
        NamedConfig(
            "family", "every row of the three members (claude, chatgpt, copilot), a tenth held out as the test split, "
            "in mixed batches of 4", "every_row", {**_HELD_OUT, "order": "mixed", "batch_size": 4}, pinned=True,
            exported=True, members=_FAMILY,
        ),
        NamedConfig(
            "family_sft_tools", "the desirable conversations of the three members whose tool calls pass the checks, "
            "with structured tool calls, for SFT", "desirable_only",
            {**_HELD_OUT, "gate": "drop", "layout": "messages_tools"}, pinned=True, exported=True, members=_FAMILY,
        ),
        NamedConfig(
            "family_kto_tools", "every row of the three members as decisions with structured tool calls (as "
            "kto_tools), a tenth held out as the test split, in mixed batches of 8", "every_row",
            {**_HELD_OUT, "order": "mixed", "batch_size": 8, "gate": "relabel", "layout": "kto_tools"},
            pinned=True, exported=True, members=_FAMILY,
        ),
        NamedConfig("family_balanced", "your own balanced subset of the three members", "balanced",
                    members=_FAMILY),
    )
}
DEFAULT_CONFIG_NAME = "balanced_254"
# Config names that messages may suggest.
_CONFIG_MENTIONS = {name: Mention("name", name) for name in ("balanced_custom", "full_eval", "pairs")}
_CONFIG_MENTIONS["custom"] = _CONFIG_MENTIONS.pop("balanced_custom")


def install_hint(extra: str) -> str:
    """How to install one of the package's extras (kto, plots), in the words every message uses: the package is
    installed from a clone of its repository, not from an index."""
    return f"install the {extra} extra (in the repository's clone: pip install '.[{extra}]')"


def random_stream(seed: int, stream: str, epoch: int = 0) -> random.Random:
    """The one place that seeds a random generator: each use has a stream of its own. `selection`
    is `random.Random(seed)` itself, the published recipe's generator."""
    if stream == "selection":
        return random.Random(seed)
    names = {"held_out": f"test_size:{seed}", "test_order": f"{seed}:test", "sampler_epoch": f"{seed}:{epoch}"}
    return random.Random(names[stream])




# --- the builder ------------------------------------------------------------------------------


@dataclasses.dataclass
class SplitPlan:
    """One split of a config: the source files (read as one stream) and, in output order, where each
    example's source line lies (offsets and lengths; two of each per example for a pair), each example's label
    where the gate relabelled some, what the planning dropped or relabelled (`notes`) and, when asked, the
    tool-call checks of its replies (`checks`)."""

    files: "SourceFiles"
    offsets: np.ndarray
    lengths: np.ndarray
    labels: Optional[np.ndarray] = None
    notes: dict = dataclasses.field(default_factory=dict)
    turns: Optional[np.ndarray] = None  # which decision of its row each example is (`Layout.turns`)
    checks: Optional["ReplyChecks"] = None  # with `plan_splits(tool_schemas=...)`: how its replies fare

    def __len__(self) -> int:
        return len(self.offsets)

    def shards(self) -> list:
        """Contiguous pieces of ROWS_PER_SHARD examples, (first position, offsets, lengths, labels, turns)
        each: a list in gen_kwargs, so `num_proc` builds them in parallel and a streaming rank can take
        whole shards. The rows and their order do not depend on either."""
        return [(start, *(None if column is None else column[start : start + ROWS_PER_SHARD]
                          for column in (self.offsets, self.lengths, self.labels, self.turns)))
                for start in range(0, len(self), ROWS_PER_SHARD)]


class _CheckedRowFeatures(datasets.Features):
    """Features for rows that already fit them exactly: encoding is the identity."""

    def encode_example(self, example: dict) -> dict:
        return example


class ClaudesidianSynthetic(datasets.GeneratorBasedBuilder):
    """Rebuilds every config of `CONFIGS` from the source JSONL on the fly.

    Besides what `datasets` calls, its public face is what the export, verify and stats need: the
    splits' plan (`plan_splits`) and each split's examples, one by one or in columnar batches."""

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
        named = CONFIGS.get(kwargs.get("config_name") or DEFAULT_CONFIG_NAME)
        if kwargs.get("source") is not None:  # local paths made absolute, as the config then records them
            kwargs["source"] = absolute_source(kwargs["source"])
        sources = member_sources(kwargs.get("source"), named.members if named else ("claude",))
        unread = [member for member in MEMBERS if isinstance(kwargs.get("source"), Mapping)
                  and member in kwargs["source"] and member not in sources]
        if unread:  # a file given for nothing: a mapping meant for another config
            raise OptionError("{given} names " + " and ".join(unread) + ", which {config} does not read (it reads "
                              + " and ".join(sources) + "): leave " + ("them" if len(unread) > 1 else "it")
                              + " out, or choose a config of the family, e.g. {family}",
                              given=Mention("source", Placeholder(dict(kwargs["source"]))),
                              config=Mention("name", named.name), family=Mention("name", "family_balanced"))
        # The cache entry is keyed by this code, the sources' bytes and the `datasets` version, so an edited
        # local source (or an edited builder) is rebuilt instead of served stale, and a `datasets` that
        # cannot read another's cache files (3.x reads no 5.x `List`) never meets them.
        # Each local source file's digest and state, which name its cache entries (`_FileState`).
        self._states = {member: _FileState.of(path) for member, path in sources.items()
                        if path is not None and not is_url(path)}
        schemas = kwargs.get("tool_schemas")
        schemas_sha256 = file_sha256(schemas) if schemas and not is_url(schemas) and os.path.isfile(schemas) else None
        code = kwargs.get("hash") or file_sha256(__file__)
        digests = ",".join(f"{member}:{state.digest}" for member, state in self._states.items()) or None
        key = f"{code}:{digests}:{schemas_sha256}:{datasets.__version__}"
        kwargs["hash"] = hashlib.sha256(key.encode()).hexdigest()[:16]
        # Each source row's checks (the scan) are kept beside the `datasets` cache, for every config built
        # from the same bytes with this code (`SourceFacts`).
        self._facts = SourceFacts(os.path.join(os.fspath(kwargs.get("cache_dir") or datasets.config.HF_DATASETS_CACHE),
                                               "claudesidian_synthetic_facts"), code)
        # datasets 3.x locks the folder above this file's, as FOLDER.lock beside it, to extend the builder for
        # streaming: imported from an export (the card's builder block), a stray file beside the export.
        stray = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + ".lock"
        stray = stray if int(datasets.__version__.split(".")[0]) < 4 and not os.path.exists(stray) else None
        super().__init__(*args, **kwargs)
        if stray:
            with contextlib.suppress(OSError):
                os.remove(stray)
        self.config.check()
        self._tool_schemas = None

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
        layout = LAYOUTS.get(self.config.layout, LAYOUTS["kto"])  # a bad layout is refused just after
        features = layout.features
        if CONFIGS[self.config.name].family:
            features = datasets.Features({**features, **SOURCE_COLUMN})
        return datasets.DatasetInfo(description=DESCRIPTION, features=features, homepage=HOMEPAGE,
                                    license=LICENSE, citation=CITATION)

    # -- the public face: the plan, then each split's examples --

    def plan_splits(self, download_config: Optional[datasets.DownloadConfig] = None,
                    writes_to: Optional[str] = None, tool_schemas: Optional["ToolSchemas"] = None) -> dict:
        """Each split's plan (`train`, and `test` with a test size), from one strict read of the source,
        which is fetched first when it is not a local file, or from that read's facts kept from an earlier
        build of the same bytes. The rows must fit in this machine's memory and on the disk of `writes_to`
        (default: the `datasets` cache), or an OptionError says how many do. With `tool_schemas`, each plan
        also carries its replies' checks against them (for the funnel of `stats`), from the same facts."""
        download_config = download_config or datasets.DownloadConfig()
        named = CONFIGS[self.config.name]
        paths = fetch_members(self.config, download_config)
        for member, path in paths.items():
            _verify_member_file(path, self.config.name, member)
        with _gc_frozen():
            facts = [self._source_facts(path, self._states.get(member) or _FileState.of(path), download_config,
                                        tool_schemas) for member, path in paths.items()]
        files = SourceFiles.of(paths)
        scan, counted = facts[0] if len(facts) == 1 else (
            combine_scans([each for each, _ in facts], files, dedupe=self.config.dedupe),
            combine_scans([each for _, each in facts], files))
        try:
            planned = plan_rows(scan, self.config, row_limit(scan, writes_to or self.cache_dir))
        except OptionError as error:
            raise error.about(f"{files.paths[0] if len(files.paths) == 1 else files.folder_words()}: ") from None
        self._facts.keep()
        for notes in planned.notes.values():
            for note in notes.get("said", ()):
                logger.warning("%s", note)
        self.info.description = DESCRIPTION + "".join(
            f"\n{_NOTES_HEADING} {note}" for notes in planned.notes.values() for note in notes.get("said", ()))
        relabelled = not np.array_equal(planned.labels, scan.labels)
        layout = LAYOUTS[self.config.layout]
        return {split: SplitPlan(files, scan.offsets[rows], scan.lengths[rows],
                                 planned.labels[rows] if relabelled and rows.ndim == 1 else None,
                                 planned.notes.get(split, {}), planned.turns.get(split),
                                 ReplyChecks.of(counted, rows, planned.labels, layout) if tool_schemas and not
                                 (layout.turns or named.family) else None)
                for split, rows in planned.splits.items()}

    def _source_facts(self, path: str, source: "_FileState", download_config: datasets.DownloadConfig,
                      tool_schemas: Optional["ToolSchemas"]) -> tuple:
        """The source's facts the plan needs (with its gate's checks where it has a gate), and those with the
        checks against `tool_schemas` (the same, where the gate checks against them too)."""
        gate = self.tool_schemas(download_config) if uses_tool_checks(self.config) else None
        scan = self._facts.scan(path, source, row_keys(self.config), gate or tool_schemas)
        if tool_schemas is None or gate is None or gate.sha256 == tool_schemas.sha256:
            return scan, scan
        return scan, self._facts.scan(path, source, (), tool_schemas)

    def tool_schemas(self, download_config: Optional[datasets.DownloadConfig] = None) -> "ToolSchemas":
        """The tool schemas this config checks calls against: `tool_schemas`, or the pinned copy."""
        if self._tool_schemas is None:
            self._tool_schemas = load_tool_schemas(self.config.tool_schemas, base_path=self.base_path,
                                                   download_config=download_config)
        return self._tool_schemas

    def iter_examples(self, plan: SplitPlan) -> Iterator[dict]:
        """The split's examples in order, each read from its source line(s), already checked by the scan."""
        layout = LAYOUTS[self.config.layout]
        schemas = self.tool_schemas() if layout.tools else None
        files, family = plan.files, CONFIGS[self.config.name].family
        with contextlib.ExitStack() as stack:
            # Rows are read out of order: a buffer only costs a copy.
            handles = [getattr(handle, "raw", handle) for handle in
                       (stack.enter_context(open(path, "rb")) for path in files.paths)]

            def read(offset: int, length: int) -> tuple:
                index = int(files.which(offset)) if len(handles) > 1 else 0
                return _read_row(handles[index], files.paths[index], offset - files.bases[index], length), index

            # The plan's numbers become Python ints a window at a time: for a million rows, the whole of
            # them as lists took 80 MB, the export's peak.
            for start in range(0, len(plan), _ROWS_PER_WINDOW):
                window = slice(start, start + _ROWS_PER_WINDOW)
                labels = iter(plan.labels[window].tolist()) if plan.labels is not None else None
                turns = iter(plan.turns[window].tolist()) if plan.turns is not None else None
                for offset, length in zip(plan.offsets[window].tolist(), plan.lengths[window].tolist()):
                    if isinstance(offset, list):  # a preference pair: the chosen row, then the rejected one
                        rows = [read(*where)[0] for where in zip(offset, length)]
                        yield layout.to_example(*rows, schemas=schemas)
                        continue
                    row, index = read(offset, length)
                    if labels is not None:
                        row["label"] = next(labels)
                    example = layout.to_example(row, schemas=schemas,
                                                **({} if turns is None else {"turn": next(turns)}))
                    if family:
                        example["source"] = files.members[index]
                    yield example

    def iter_batches(self, plan: SplitPlan, batch_size: int = 1000) -> Iterator[dict]:
        """The split's examples in columnar batches (`{column: [values]}`, as `Dataset.iter` yields)."""
        columns = list(self.info.features)
        batch = []
        for example in self.iter_examples(plan):
            batch.append(example)
            if len(batch) == batch_size:
                yield {column: [row[column] for row in batch] for column in columns}
                batch = []
        if batch:
            yield {column: [row[column] for row in batch] for column in columns}

    # -- what `datasets` calls --

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name=split, gen_kwargs={"files": plan.files, "shards": plan.shards()})
                for split, plan in self.plan_splits(dl_manager.download_config).items()]

    def _prepare_split(self, *args, **kwargs):
        # Every row was checked by `scan_source` and shaped by its layout's `to_example`, so `datasets`'
        # per-value encoding walk would hand each one back unchanged; at 100k rows that walk was a third
        # of the build. Swapped in for the generation only: the Dataset you get has the plain features.
        # (A tools layout's `Json` values do need it.)
        features = self.info.features
        if LAYOUTS[self.config.layout].plain:
            self.info.features = _CheckedRowFeatures(features)
        try:
            with _gc_frozen():
                return super()._prepare_split(*args, **kwargs)
        finally:
            self.info.features = features

    def _generate_examples(self, files, shards):
        for start, offsets, lengths, labels, turns in shards:
            yield from enumerate(self.iter_examples(SplitPlan(files, offsets, lengths, labels, turns=turns)), start)


_ROWS_PER_WINDOW = 4096  # rows whose places `iter_examples` turns into Python numbers at a time
_NOTES_HEADING = "This build:"


def build_notes(info: datasets.DatasetInfo) -> list:
    """What the build of a dataset dropped or relabelled (dedupe, the gate), as its info records it, so a
    dataset served from the cache says it as the first build did."""
    return [line[len(_NOTES_HEADING) :].strip() for line in (info.description or "").splitlines()
            if line.startswith(_NOTES_HEADING)]


# What a planned row costs at most while a build runs: its place in the selection's lists and arrays,
# and the per-row numbers the export counts (label, lengths, digests); the rows' text is never held.
BYTES_PER_PLANNED_ROW = 160


class RowLimit(int):
    """The most rows a build can hold, which knows the folder whose disk bounds it, so a refusal names it."""

    folder = ""

    def __new__(cls, rows: int, folder: str = "") -> "RowLimit":
        limit = super().__new__(cls, rows)
        limit.folder = folder
        return limit


def _bounds(limit: int) -> str:
    """Where a row limit comes from, in the words of a refusal."""
    folder = getattr(limit, "folder", "")
    return f"in the memory available and on the disk of {folder}" if folder else \
        "in the memory available and on the disk the build writes to"


def row_limit(scan: "SourceScan", writes_to: Optional[str]) -> int:
    """The most rows a build of this source can hold: in the memory available now, and on the disk of
    `writes_to` at the source's mean bytes per row (what the Arrow or Parquet files take, about)."""
    limit, folder = _available_memory() // BYTES_PER_PLANNED_ROW, ""
    if writes_to:
        folder = os.path.abspath(writes_to)
        while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
            folder = os.path.dirname(folder)
        limit = min(limit, _free_disk(folder) // max(1, int(scan.lengths.mean())))
    return RowLimit(limit, folder)


def _available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux's MemAvailable; elsewhere, free pages)."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/meminfo", encoding="ascii") as file:
        return int(next(line for line in file if line.startswith("MemAvailable:")).split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _free_disk(folder: str) -> int:
    return shutil.disk_usage(folder).free


def uses_tool_checks(config: ClaudesidianSyntheticConfig) -> bool:
    """Whether building the config checks tool calls: its gate, or a tools layout."""
    return config.gate != "keep" or LAYOUTS[config.layout].tools


def load_tool_schemas(path: Optional[str] = None, *, base_path: Optional[str] = None,
                      download_config: Optional[datasets.DownloadConfig] = None) -> "ToolSchemas":
    """The tool schemas at `path` (a local file or a URL), or the pinned copy: the one shipped in
    claudesidian_tools/, or, for the loading script, the file beside it (`base_path`)."""
    if path is None:
        here = os.path.dirname(os.path.abspath(__file__))
        shipped = [os.path.join(folder, TOOL_SCHEMAS_FILENAME) for folder in (os.path.join(here, "claudesidian_tools"),
                                                                               here)]
        found = next((candidate for candidate in shipped if os.path.isfile(candidate)), None)
        if found is None:  # the loading script, copied away by `datasets<4`: the file beside the original
            found = _beside_the_script(base_path, download_config)
        schemas = read_tool_schemas(found)
        if schemas.sha256 != TOOL_SCHEMAS_SHA256:
            raise ToolSchemaError(f"{found}: sha256 {schemas.sha256} is not the pinned tool schemas "
                                  f"{TOOL_SCHEMAS_SHA256}; reinstall the package, or pass the file as tool_schemas "
                                  "if you changed it on purpose")
        return schemas
    if is_url(path):
        path = datasets.DownloadManager(download_config=download_config or datasets.DownloadConfig()).download(path)
    if not os.path.isfile(path):
        problem = "is a folder" if os.path.isdir(path) else "no such file"
        raise ToolSchemaError("{given}: " + problem + "; give the path of a tool_schemas.json, or leave it out for "
                              "the pinned copy", given=Mention("tool_schemas", path))
    return read_tool_schemas(path)


def _beside_the_script(base_path: Optional[str], download_config: Optional[datasets.DownloadConfig]) -> str:
    """The pinned schemas beside the loading script (an export's `loading_script/`, local or on the Hub), or
    in `claudesidian_tools/` beside it (a checkout of this repository)."""
    manager = datasets.DownloadManager(download_config=download_config or datasets.DownloadConfig(),
                                       base_path=base_path)
    tried = []
    for relative in (TOOL_SCHEMAS_FILENAME, f"claudesidian_tools/{TOOL_SCHEMAS_FILENAME}"):
        try:
            return manager.download(relative)
        except (FileNotFoundError, OSError) as error:
            tried.append(f"{relative} ({type(error).__name__})")
    raise ToolSchemaError(f"the pinned tool schemas are not beside the loading script in {base_path} (tried "
                          f"{', '.join(tried)}); pass tool_schemas a local copy of {TOOL_SCHEMAS_FILENAME}")


def _read_row(file, path: str, offset: int, length: int) -> dict:
    """The source row at `offset`, already checked by the scan."""
    file.seek(offset)
    try:
        return _PLAIN_DECODER.decode(file.read(length))
    except ValueError:  # msgspec's DecodeError is a ValueError
        raise SourceError(
            path,
            f"changed while it was being read (the row at byte {offset} no longer parses)",
            "Load again once nothing is writing to the file",
        ) from None


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


def is_url(source: str) -> bool:
    """A source given as a URL (read through `datasets`' download manager), not a local path."""
    return "://" in str(source)


def file_sha256(path: str) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(os.path.abspath(os.path.expanduser(path)), "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def member_url(member: str, revision: str = "main") -> str:
    """Where a member's pinned file downloads from: claude's from the Hub at `revision`, the others' from the
    author's repository at their pinned commit."""
    return MEMBERS[member].url or source_url(revision)


def source_url(revision: str = "main") -> str:
    """The Hub URL of the source at `revision`, on the endpoint `datasets` and `huggingface_hub` use
    (`HF_ENDPOINT`, so a mirror serves it too)."""
    return datasets.config.HUB_DATASETS_URL.format(repo_id=SOURCE_REPO_ID, revision=revision, path=SOURCE_FILENAME)


# --- where the source files come from: a file, a folder of the pinned files, a mapping, or downloads --------


def absolute_source(source: Union[str, Mapping]) -> Union[str, dict]:
    """A `source` with its local paths made absolute (URLs as they are)."""
    if isinstance(source, Mapping):
        return {member: absolute_source(path) for member, path in source.items()}
    return source if source == "" or is_url(source) else os.path.abspath(os.path.expanduser(str(source)))


_SOURCE_FIX = ("Pass {source} (a local copy of " + SOURCE_FILENAME + ", or a folder holding the source files), or "
               "leave it out to download them")


def member_sources(source: Union[None, str, Mapping], members: Sequence[str]) -> dict:
    """What `source` gives each member a config reads: a local path, a URL, or None (the pinned file, to
    download). A folder must hold each one's pinned file; one file or URL serves a config of one member; a
    mapping names members that exist, each with its own file."""
    given = Mention("source", Placeholder("FILE_OR_FOLDER"))
    if source is not None and not isinstance(source, (str, Mapping)):
        raise OptionError("{given}: " + _SOURCE.states, given=Mention("source", source))
    if isinstance(source, Mapping):
        return _mapped_sources(source, members)
    if source is None:
        return {member: None for member in members}
    if source == "":
        raise SourceError("(empty)", "the source path is empty", _SOURCE_FIX, source=given)
    # A URL never meets os.path: `datasets` may have patched this module's os.path to reach URLs itself.
    if not is_url(source) and os.path.isdir(source):
        missing = [MEMBERS[member].file for member in members if not os.path.isfile(os.path.join(source, MEMBERS[
            member].file))]
        if missing:
            raise SourceError(source, f"the folder holds no {' and no '.join(missing)}", "Put the file" + (
                "s" if len(missing) > 1 else "") + " there under that name, or pass {source} another folder",
                source=Mention("source"))
        return {member: os.path.join(source, MEMBERS[member].file) for member in members}
    if not is_url(source) and not os.path.exists(source):
        raise SourceError(source, "no such file or folder", _SOURCE_FIX, source=given)
    if len(members) > 1:
        raise SourceError(source, f"is one file, and this config reads {len(members)}: "
                          + ", ".join(MEMBERS[member].file for member in members),
                          "Pass {source}, the folder that holds them under those names",
                          source=Mention("source", Placeholder("FOLDER")))
    if not is_url(source):
        if not os.path.exists(source):
            raise SourceError(source, "no such file", _SOURCE_FIX, source=given)
        if not os.path.isfile(source):
            raise SourceError(source, "is not a regular file", _SOURCE_FIX, source=given)
    return {members[0]: source}


def _mapped_sources(source: Mapping, members: Sequence[str]) -> dict:
    """A mapping of member name to path or URL; a member it leaves out is downloaded."""
    if not all(isinstance(path, str) for path in source.values()):
        raise OptionError("{given}: " + _SOURCE.states, given=Mention("source", Placeholder(dict(source))))
    unknown = sorted(set(source) - set(MEMBERS))
    if unknown:
        raise OptionError("{given}: " + f"{', '.join(map(repr, unknown))} is no member of the family; the members are "
                          f"{', '.join(MEMBERS)}", given=Mention("source", Placeholder(dict(source))))
    for member, path in source.items():
        others = [other for other in MEMBERS.values() if other.name != member and os.path.basename(
            str(path).split("?")[0]).replace("%20", " ") == other.file]
        if others:
            raise OptionError(
                "{given}: " + f"{path} is {others[0].name}'s file ({others[0].file}), given for {member}: give "
                f"{member} its own file, {MEMBERS[member].file}", given=Mention("source", Placeholder(dict(source))))
        if not is_url(path) and not os.path.isfile(path):
            problem = "is a folder, not a file" if os.path.isdir(path) else "no such file"
            raise SourceError(path, f"{problem} (the source of {member})", "Give " + member + " its own file, "
                              + MEMBERS[member].file + ", in the {source} mapping", source=Mention("source"))
    return {member: source.get(member) for member in members}


def fetch_members(config: "ClaudesidianSyntheticConfig", download_config: datasets.DownloadConfig) -> dict:
    """A local path of each member's file the config reads, in MEMBERS order: the file given, a download of
    a URL, or the pinned file from its cache (claude's from the Hub at `revision`, the others' from the
    author's repository), fetched there when online."""
    members = CONFIGS[config.name].members
    paths = {}
    for member, given in member_sources(config.source, members).items():
        if given is not None and not is_url(given):
            paths[member] = given
        elif member == "claude":
            paths[member] = _fetch_source(config, download_config, given)
        else:
            paths[member] = _download_member(MEMBERS[member], given, download_config)
    return paths


def _download_member(member: Member, url: Optional[str], download_config: datasets.DownloadConfig) -> str:
    """A member other than claude, downloaded through `datasets`' cache from its URL (default: its pinned one)."""
    url = url or member.url
    try:
        return datasets.DownloadManager(download_config=download_config).download(url)
    except Exception as error:  # noqa: BLE001 - every HTTP client's errors, on every version
        offline = datasets.config.HF_HUB_OFFLINE
        message = " ".join(str(error).split())[:300]
        problem = "is not in the local cache and downloads are off (offline mode)" if offline else (
            f"could not be downloaded ({type(error).__name__}: {message})")
        raise SourceError(url, problem, "Without network, pass {source}, a folder holding " + member.file + " (and "
                          "the other source files the config reads; in Python a mapping may give " + member.name
                          + " its file), or download it once online",
                          source=Mention("source", Placeholder("FOLDER"))) from None


@dataclasses.dataclass(frozen=True)
class SourceFiles:
    """The source files a plan reads, as one stream: each member's file at a base offset (the sizes of the
    files before it), so a row is one offset whichever file holds it."""

    members: tuple
    paths: tuple
    bases: tuple

    @classmethod
    def of(cls, paths: Mapping[str, str]) -> "SourceFiles":
        bases, total = [], 0
        for path in paths.values():
            bases.append(total)
            total += os.path.getsize(path)
        return cls(tuple(paths), tuple(paths.values()), tuple(bases))

    def which(self, offsets: np.ndarray) -> np.ndarray:
        """The index of the file that holds each offset."""
        return np.searchsorted(np.asarray(self.bases, dtype=np.int64), offsets, side="right") - 1

    def folder_words(self) -> str:
        """The files, as a message names them: their folder, or each path."""
        folders = {os.path.dirname(path) for path in self.paths}
        return f"{folders.pop()}/" if len(folders) == 1 else ", ".join(self.paths)


_NO_NETWORK_FIX = (
    "Without network, pass {source} (a local copy of " + SOURCE_FILENAME + ", or the folder that holds the source "
    "files), or load once online so that "
    "offline mode serves the cache; check {revision} if the file is missing there"
)


def _fetch_source(config: ClaudesidianSyntheticConfig, download_config: datasets.DownloadConfig,
                  url: Optional[str] = None) -> str:
    """A local path of claude's file: a download of `url`, or the Hub file from `huggingface_hub`'s cache
    (fetched there when online)."""
    # `datasets` 5 reads HF_DATASETS_OFFLINE but hands Hub URLs to `huggingface_hub`, which does not,
    # so the Hub file is fetched here, offline whenever `datasets` is.
    offline = datasets.config.HF_HUB_OFFLINE
    try:
        if url is None:
            return _hub_source(config.revision, offline)
        return datasets.DownloadManager(download_config=download_config).download(url)
    except Exception as error:  # noqa: BLE001 - every HTTP client's and the Hub's errors, on every version
        message = " ".join(str(error).split())[:300]
        problem = "is not in the local cache and downloads are off (offline mode)" if offline else (
            f"could not be downloaded ({type(error).__name__}: {message})"
        )
        fix = _NO_NETWORK_FIX if url is None else (
            "Check the URL; without network, pass {source} (a local copy of " + SOURCE_FILENAME + ")")
        if CONFIGS[config.name].family:
            fix = ("Without network, pass {source}, a folder holding the family's files ("
                   + ", ".join(member.file for member in MEMBERS.values()) + ")")
        url = url or source_url(config.revision)
        placeholder = Placeholder("FOLDER" if CONFIGS[config.name].family else "FILE")
        raise SourceError(url, problem, fix, source=Mention("source", placeholder),
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


def _verify_member_file(path: str, name: str, member: str = "claude") -> None:
    """A pinned config reads its members' pinned bytes only, and no family config takes one member's file for
    another's (a folder whose files are swapped): either is refused in one line naming the file."""
    named, pin = CONFIGS[name], MEMBERS[member]
    if not named.pinned and not named.family:
        return
    actual = file_sha256(path)
    if actual == pin.sha256:
        return
    other = next((each for each in MEMBERS.values() if each.sha256 == actual), None)
    if other is None and not named.pinned:  # other bytes, which a config that pins nothing takes
        return
    size = os.path.getsize(path)
    if named.family:
        what = f"is {other.name}'s file ({other.file}), not {member}'s" if other else (
            f"sha256 {actual} ({size:,} bytes) is not {member}'s pinned file {pin.file} {pin.sha256} ({pin.size:,} "
            "bytes)")
        layout, gate = named.option_defaults()["layout"], named.option_defaults()["gate"]
        # For other bytes, what builds the same kind of rows without a pin, where something does.
        other_bytes = ("{family_custom} with {layout}" + (" and {gate}" if gate != "keep" else "")
                       if layout in SELECTIONS["balanced"].layouts else "{single} on each member's file alone")
        raise SourceError(path, f"{what}, and {name} " + ("promises those exact bytes" if named.pinned else
                                                          "reads each member's own file"),
                          "Put the pinned " + pin.file + " there (it downloads from " + (pin.url or source_url())
                          + ")" + (", or for other bytes use " + other_bytes if named.pinned else ""),
                          family_custom=Mention("name", "family_balanced"), layout=Mention("layout", layout),
                          gate=Mention("gate", gate), single=Mention("name", name.removeprefix("family_")))
    pinned = ", ".join(each.name for each in CONFIGS.values() if each.pinned and not each.family)
    raise SourceError(
        path,
        f"sha256 {actual} ({size:,} bytes) is not the v1.0.0 source {SOURCE_SHA256} "
        f"({SOURCE_NUM_BYTES:,} bytes), and {name} promises those exact bytes (as {pinned} do)",
        "Pass {revision} a Hub commit that holds v1.0.0, or {source} a local v1.0.0 copy; for any other "
        "version of the data use {custom}", revision=Mention("revision"), source=Mention("source"),
        custom=Mention("name", "balanced_custom"),
    )


def builder(name: str = DEFAULT_CONFIG_NAME, *, cache_dir: Optional[str] = None,
            **options: Any) -> ClaudesidianSynthetic:
    """The builder of one config with these options (None values are left out), every option checked."""
    if name not in CONFIGS:
        raise OptionError("{name}: unknown config; choose one of " + ", ".join(CONFIGS), name=Mention("name", name))
    unknown = sorted(set(options) - set(OPTION_DEFAULTS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(OPTION_DEFAULTS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise OptionError(f"unknown option(s) {', '.join(unknown)}{hint}; the options are "
                          f"{', '.join(OPTION_DEFAULTS)}")
    options = {key: value for key, value in options.items() if value is not None}
    return ClaudesidianSynthetic(config_name=name, cache_dir=cache_dir, **options)


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
    built = builder(name, cache_dir=cache_dir, source=source, revision=revision, **options)
    if streaming:
        if num_proc is not None:
            raise OptionError("num_proc builds the Arrow cache in parallel; streaming builds nothing: pass one of them")
        return built.as_streaming_dataset(split=split)
    try:
        built.download_and_prepare(num_proc=num_proc)
    except datasets.exceptions.DatasetGenerationError as error:
        if isinstance(error.__cause__, ClaudesidianError):
            raise error.__cause__ from None
        raise
    return built.as_dataset(split=split)


# --- reading the source -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RowReasons:
    """Why each source row's calls fail, as the funnel counts them: the (code, tool, parameter) of every
    reason `check_reply` gives for the row, the distinct ones held once and each row's as numbers into them."""

    keys: tuple  # the distinct (code, tool, parameter)
    counts: np.ndarray  # how many reasons each row has (uint32): row r's are the next counts[r] of `ids`
    ids: np.ndarray  # into `keys` (int32)

    @classmethod
    def joined(cls, parts: Sequence["RowReasons"]) -> "RowReasons":
        """The reasons of several sources' rows, one source's rows after the other's (as `combine_scans` joins)."""
        keys, ids = {}, []
        for part in parts:
            renumbered = np.array([keys.setdefault(key, len(keys)) for key in part.keys], dtype=np.int32)
            ids.append(renumbered[part.ids] if len(part.ids) else part.ids.astype(np.int32))
        return cls(tuple(keys), np.concatenate([part.counts for part in parts]), np.concatenate(ids))

    def counted(self, rows: np.ndarray) -> Counter:
        """(code, tool, parameter) -> how often it is a reason of these rows (a row counts as often as listed)."""
        listed = np.bincount(rows, minlength=len(self.counts))
        per_reason = np.repeat(listed, self.counts)
        counts = np.bincount(self.ids, weights=per_reason, minlength=len(self.keys))
        return Counter({self.keys[key]: int(count) for key, count in enumerate(counts.tolist()) if count})


@dataclasses.dataclass
class SourceScan:
    """What the selection needs of each source row: its label, where its line lies, whether an
    identical line came before it, its reply's length, and (when asked) digests of its prompt and
    reply. Text is not kept, so memory grows with rows, not bytes."""

    labels: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    duplicate: np.ndarray
    # len() of the last message's content (the assistant's reply) in characters (code points), for
    # length-matched selections and length statistics.
    completion_chars: np.ndarray
    # 16-byte digests (`messages_digest`) of every message but the last, and of the last: rows that share
    # a prompt stay on one side of a train/test split and apart in a mixed order, and pairs are made of
    # distinct replies.
    prompts: Optional[np.ndarray] = None
    replies: Optional[np.ndarray] = None
    # With the tool schemas: the index into CHECKS of the first check each row's reply fails (len(CHECKS):
    # it passes every one), and the reasons of its calls.
    tool_checks: Optional[np.ndarray] = None
    reasons: Optional[RowReasons] = None
    # With them too, what the parse of each reply says beside its checks: whether a call of it got no result
    # (uint8), and how many characters of tool results the reply holds (`Result:` blocks).
    unanswered: Optional[np.ndarray] = None
    result_chars: Optional[np.ndarray] = None
    # For a layout of one decision per example (when asked, with the tool schemas): each reply's decisions.
    turns: Optional["TurnFacts"] = None
    # The member of the family each row comes from (an index into MEMBERS order), when several are read.
    member: Optional[np.ndarray] = None


def combine_scans(scans: Sequence[SourceScan], files: "SourceFiles", dedupe: bool = False) -> SourceScan:
    """One scan of several members' files read as one stream (`SourceFiles`): each file's rows after the last
    file's, its offsets moved by the file's base, `member` naming each row's file. With `dedupe`, a line equal
    to an earlier line of another file is a duplicate too."""
    def joined(field: str) -> Optional[np.ndarray]:  # a fact one file's kept facts lack, the config did not ask
        values = [getattr(scan, field) for scan in scans]
        return None if any(value is None for value in values) else np.concatenate(values)

    combined = SourceScan(joined("labels"), np.concatenate([scan.offsets + base for scan, base in
                                                           zip(scans, files.bases)]), joined("lengths"),
                          joined("duplicate"), joined("completion_chars"), joined("prompts"), joined("replies"),
                          joined("tool_checks"), unanswered=joined("unanswered"), result_chars=joined("result_chars"))
    if all(scan.reasons is not None for scan in scans):
        combined.reasons = RowReasons.joined([scan.reasons for scan in scans])
    if all(scan.turns is not None for scan in scans):
        counts = np.concatenate([scan.turns.counts for scan in scans])
        combined.turns = TurnFacts(counts, *(np.concatenate([getattr(scan.turns, field) for scan in scans])
                                             for field in ("assistant_turns", "labelled", "rules")),
                                   np.cumsum(counts) - counts, np.concatenate([scan.turns.chars for scan in scans]))
    combined.member = np.repeat(np.arange(len(scans), dtype=np.uint8), [len(scan.labels) for scan in scans])
    if dedupe:
        combined.duplicate = _duplicate_lines(files, combined)
    return combined


def _duplicate_lines(files: "SourceFiles", scan: SourceScan) -> np.ndarray:
    """Each row whose line (its stripped bytes) equals an earlier row's, in whichever file."""
    seen, duplicate = set(), np.zeros(len(scan.labels), dtype=bool)
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(path, "rb")) for path in files.paths]
        for row, (index, offset, length) in enumerate(zip(files.which(scan.offsets).tolist(), scan.offsets.tolist(),
                                                         scan.lengths.tolist())):
            handles[index].seek(offset - files.bases[index])
            line = handles[index].read(length).strip(_JSON_SPACE)
            duplicate[row] = line in seen
            seen.add(line)
    return duplicate


@dataclasses.dataclass
class TurnFacts:
    """Per source row, what a layout of one decision per example needs of its reply (`reply_decisions`): how
    many decisions it has, and how many assistant turns in all; which decision carries the label of an
    undesirable row and by which of LABELLING_RULES (its position there); and each decision's length
    (`message_chars`), one after the other (row r's from `starts[r]`). A reply whose calls do not parse has
    none."""

    counts: np.ndarray
    assistant_turns: np.ndarray
    labelled: np.ndarray
    rules: np.ndarray
    starts: np.ndarray
    chars: np.ndarray


class _TurnCounter:
    """Collects TurnFacts row by row during the scan, in arrays of plain numbers."""

    def __init__(self):
        self.counts, self.assistant_turns, self.labelled = array.array("q"), array.array("q"), array.array("q")
        self.rules, self.chars = bytearray(), array.array("q")

    def add(self, parsed: "ParsedReply", checked: "RowCheck") -> None:
        if checked.first_failed == 0:  # its calls do not parse: no structured form, no decision
            decisions = Decisions([], [], 0, "first_turn")
        else:
            decisions = reply_decisions(parsed, checked)
        self.counts.append(len(decisions.turns))
        self.assistant_turns.append(sum(message["role"] == "assistant" for message in decisions.messages))
        self.labelled.append(decisions.labelled)
        self.rules.append(list(LABELLING_RULES).index(decisions.rule))
        self.chars.extend(message_chars(decisions.messages[position : position + 1]) for position in decisions.turns)

    def facts(self) -> TurnFacts:
        counts = np.frombuffer(self.counts, dtype=np.int64)
        return TurnFacts(counts, np.frombuffer(self.assistant_turns, dtype=np.int64),
                         np.frombuffer(self.labelled, dtype=np.int64), np.frombuffer(self.rules, dtype=np.uint8),
                         np.cumsum(counts) - counts, np.frombuffer(self.chars, dtype=np.int64))


_DIGEST = np.dtype("V16")
# The row schema as types. msgspec checks a line against them while it decodes it, in C (strict types,
# unknown keys refused), where Python's json and a walk over its result took three times as long. A line
# they refuse goes to `parse_line`, which says what is wrong in the words it always has.
_Message = msgspec.defstruct("Message", [("role", str), ("content", str)], forbid_unknown_fields=True, gc=False)
_Context = msgspec.defstruct("Context", [(name, Optional[str], None) for name in CONTEXT_FIELDS],
                             forbid_unknown_fields=True, gc=False)
_Row = msgspec.defstruct(
    "Row", [("conversations", Annotated[list[_Message], msgspec.Meta(min_length=2)]), ("label", bool),
            ("context", Optional[_Context], None)], forbid_unknown_fields=True, gc=False)
_ROW_DECODER = msgspec.json.Decoder(_Row)
# The picked lines, already checked, are decoded again for the writer: as the plain dicts layouts take.
_PLAIN_DECODER = msgspec.json.Decoder()
_BLOCK_BYTES = 1 << 20  # the scan reads, splits and decodes the file this much at a time


def scan_source(path: str, *, keys: Collection[str] = (), tool_schemas: Optional["ToolSchemas"] = None) -> SourceScan:
    """Read and check every line of the source strictly; raise SourceError naming the first bad one.
    Per row it keeps a label byte and four 8-byte integers (no Python object), the digests `keys` names
    ("prompts", "replies"), and with `tool_schemas` the first check its tool calls fail and their reasons,
    so memory grows slowly."""
    columns = _ScanColumns(keys, tool_schemas)
    progress = datasets.utils.tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc="Checking source",
                                   leave=False)
    with open(path, "rb") as file, progress:
        number, offset = 1, 0
        for lines, last in _line_blocks(file):
            if number == 1 and lines[0].startswith(codecs.BOM_UTF8):  # the first line begins after the mark
                lines[0], offset = lines[0][len(codecs.BOM_UTF8) :], len(codecs.BOM_UTF8)
            sizes = np.fromiter(map(len, lines), np.int64, len(lines)) + 1  # each line's "\n"...
            sizes[-1] -= last  # ...but the file's last line may lack one
            starts = offset + np.cumsum(sizes) - sizes
            numbers = range(number, number + len(lines))
            number, offset = number + len(lines), offset + int(sizes.sum())
            progress.update(int(sizes.sum()))
            stripped = [line.strip(_JSON_SPACE) for line in lines]  # CRLF and blank lines change nothing either
            if not all(stripped):
                kept = [index for index, line in enumerate(stripped) if line]
                stripped, numbers = [stripped[index] for index in kept], [numbers[index] for index in kept]
                starts, sizes = starts[kept], sizes[kept]
            columns.add(_decode_rows(stripped, path, numbers), stripped, starts, sizes)
        if not columns.rows:
            raise SourceError(path, "the file holds no rows",
                              "Point {source} at a non-empty copy of " + SOURCE_FILENAME, source=Mention("source"))
        return columns.scan(file)


def _line_blocks(file) -> Iterator[tuple]:
    """The file's lines, split as `for line in file` splits them, a block at a time: (the lines without their
    "\\n", whether the last of them is the file's last line, which may lack one)."""
    pending = []  # the beginning of a line that runs on into the next block
    for block in iter(functools.partial(file.read, _BLOCK_BYTES), b""):
        lines = block.split(b"\n")
        if len(lines) == 1:  # a line longer than a block
            pending.append(block)
            continue
        if pending:
            lines[0] = b"".join([*pending, lines[0]])
        pending = [lines.pop()]
        yield lines, False
    last = b"".join(pending)
    if last:
        yield [last], True


class _ScanColumns:
    """The scan's per-row columns, grown a block of rows at a time."""

    def __init__(self, keys: Collection[str], tool_schemas: Optional["ToolSchemas"]):
        self.keys, self.tool_schemas, self.rows = frozenset(keys), tool_schemas, 0
        self.labels, self.completion_chars, self.hashes = bytearray(), array.array("q"), array.array("q")
        self.offsets, self.lengths = array.array("q"), array.array("q")  # grown in place: no copy joins them
        self.prompts, self.replies, self.tool_checks = bytearray(), bytearray(), bytearray()
        self.reason_counts, self.reason_ids, self.reason_keys = array.array("I"), array.array("i"), {}
        self.turns = _TurnCounter() if "turns" in self.keys and tool_schemas is not None else None
        self.unanswered, self.result_chars = bytearray(), array.array("q")

    def add(self, rows: list, lines: list, starts: np.ndarray, sizes: np.ndarray) -> None:
        self.rows += len(rows)
        self.labels += bytes([row.label for row in rows])
        self.completion_chars.extend([len(row.conversations[-1].content) for row in rows])
        self.hashes.extend(map(hash, lines))
        self.offsets.frombytes(starts.tobytes())
        self.lengths.frombytes(sizes.tobytes())
        if "prompts" in self.keys:
            self.prompts += b"".join([_messages_digest(row.conversations[:-1]) for row in rows])
        if "replies" in self.keys:
            self.replies += b"".join([_messages_digest(row.conversations[-1:]) for row in rows])
        if self.tool_schemas is not None:
            parsed = [parse_reply(row.conversations[-1].content) for row in rows]
            checks = [check_reply(reply, self.tool_schemas) for reply in parsed]
            if self.turns is not None:
                for reply, checked in zip(parsed, checks):
                    self.turns.add(reply, checked)
            self.tool_checks += bytes([checked.first_failed for checked in checks])
            self.unanswered += bytes([reply.unanswered for reply in parsed])
            self.result_chars.extend([reply.result_chars for reply in parsed])
            self.reason_counts.extend([len(checked.reasons) for checked in checks])
            keys = self.reason_keys
            self.reason_ids.extend([keys.setdefault((reason.code, reason.tool, reason.parameter), len(keys))
                                    for checked in checks for reason in checked.reasons])

    def scan(self, file) -> SourceScan:
        offsets, lengths = np.frombuffer(self.offsets, dtype=np.int64), np.frombuffer(self.lengths, dtype=np.int64)
        duplicate = _exact_duplicates(file, offsets, lengths, np.frombuffer(self.hashes, dtype=np.int64))
        scan = SourceScan(np.frombuffer(self.labels, dtype=np.bool_), offsets, lengths, duplicate,
                          np.frombuffer(self.completion_chars, dtype=np.int64))
        if "prompts" in self.keys:
            scan.prompts = np.frombuffer(self.prompts, dtype=_DIGEST)
        if "replies" in self.keys:
            scan.replies = np.frombuffer(self.replies, dtype=_DIGEST)
        if self.tool_schemas is not None:
            scan.tool_checks = np.frombuffer(self.tool_checks, dtype=np.uint8)
            scan.reasons = RowReasons(tuple(self.reason_keys), np.frombuffer(self.reason_counts, dtype=np.uint32),
                                      np.frombuffer(self.reason_ids, dtype=np.int32))
            scan.unanswered = np.frombuffer(self.unanswered, dtype=np.uint8)
            scan.result_chars = np.frombuffer(self.result_chars, dtype=np.int64)
        if self.turns is not None:
            scan.turns = self.turns.facts()
        return scan


def _decode_rows(lines: list, path: str, numbers: Sequence[int]) -> list:
    """Each stripped line as a typed row (`_Row`). Where any line of the block fails the types, the block is
    read again line by line, so the first bad line is the one named."""
    try:
        rows = list(map(_ROW_DECODER.decode, lines))
    except ValueError:  # msgspec's DecodeError and ValidationError
        rows = None
    if rows is None or any(row.conversations[-1].role != "assistant" for row in rows):
        rows = [_decode_row(line, path, number) for line, number in zip(lines, numbers)]
    return rows


def _decode_row(line: bytes, path: str, number: int) -> Any:
    """One line as a typed row, or the SourceError `parse_line` words for it. A few lines msgspec refuses are
    rows all the same (a key given twice, first with a value of the wrong type: JSON keeps the last), and
    `parse_line` decides for those too."""
    try:
        row = _ROW_DECODER.decode(line)
        if row.conversations[-1].role == "assistant":
            return row
    except ValueError:
        pass
    return msgspec.convert(parse_line(line, path, number), _Row)


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


@dataclasses.dataclass(frozen=True)
class ReplyChecks:
    """How a split's replies fare in the tool-call checks, taken from the source rows' facts (no reply is
    parsed again): each reply's first failing check, in the split's order, and the reasons of its
    desirable and of its undesirable replies; and each reply's parse beside its checks (`SourceScan`)."""

    first_failed: np.ndarray
    reasons: tuple  # (Counter of (code, tool, parameter) over the desirable replies, the same over the others)
    unanswered: np.ndarray
    result_chars: np.ndarray

    @classmethod
    def of(cls, scan: SourceScan, rows: np.ndarray, labels: np.ndarray, layout: Layout) -> "ReplyChecks":
        """The replies of these source rows (a (chosen, rejected) pair per example of a pairs layout), every
        source row's label being `labels` (after the gate), as the layout's examples list them."""
        replies = rows.ravel()
        if layout.labels == "pairs":
            desirable = np.tile([True, False], len(rows))
        elif layout.labels == "desirable":
            desirable = np.ones(len(replies), dtype=bool)
        else:
            desirable = labels[replies]
        return cls(scan.tool_checks[replies], (scan.reasons.counted(replies[desirable]),
                                               scan.reasons.counted(replies[~desirable])),
                   scan.unanswered[replies], scan.result_chars[replies])


@dataclasses.dataclass(frozen=True)
class _FileState:
    """A digest of a file's bytes, and its size, modification time and inode when that was taken: what
    names the source's cache entries (the `datasets` cache, the facts), and what says the file changed since."""

    digest: str
    stamp: tuple

    @classmethod
    def of(cls, path: str) -> "_FileState":
        """The file at `path` now. Its digest is xxh3's 128 bits (a `datasets` requirement), ten times as fast as
        sha256 (a tenth of a second on a gigabyte), which stays for what a source is pinned or recorded by."""
        stamp, digest = _stamp(path), xxhash.xxh3_128()
        with open(path, "rb") as file:
            for block in iter(functools.partial(file.read, 1 << 20), b""):
                digest.update(block)
        return cls(digest.hexdigest(), stamp)


def _stamp(path: str) -> tuple:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns, status.st_ino


# The facts that depend on the tool schemas as well as on the source: kept in a file of their own per schemas
# (the replies' decisions, `turns`, there too when a layout of one decision per example asked for them).
_CHECK_FIELDS = ("tool_checks", "reasons", "unanswered", "result_chars", "turns")
_TURN_COLUMNS = {"turn_counts": "counts", "turn_assistant": "assistant_turns", "turn_labelled": "labelled",
                 "turn_rules": "rules", "turn_chars": "chars"}
# The facts a scan reads only when asked (`keys`): SourceScan's fields that may be None, but the checks'.
_ASKED_FIELDS = frozenset(field.name for field in dataclasses.fields(SourceScan)
                          if field.default is None and field.name not in _CHECK_FIELDS)


class SourceFacts:
    """Every source row's facts (a `SourceScan`: label, place, lengths, digests, and with tool schemas the
    checks of its calls), kept in `folder` beside the `datasets` cache once read. They depend only on the
    source's bytes, the schemas' bytes and this code (its version and sha256), which name the files, so the
    configs, `stats`, an export of several configs and `verify` of one source share one read of it, and
    parse each reply at most once. A new per-row fact is a new field of SourceScan, an array per row that
    `_ScanColumns` fills (when asked by name in `keys`, if it defaults to None), kept and read back as it is;
    one that depends on the schemas joins `_CHECK_FIELDS` and `_check_columns`."""

    def __init__(self, folder: str, code: str):
        self.folder, self.code, self._unkept = folder, code, []

    def scan(self, path: str, source: _FileState, keys: Collection[str],
             tool_schemas: Optional["ToolSchemas"]) -> SourceScan:
        """`scan_source(path, keys=keys, tool_schemas=tool_schemas)`, read from the kept facts when they hold
        all of it; else scanned, to be kept by `keep()` when the file did not change since `source` was taken."""
        name = hashlib.sha256(f"{source.digest}:{__version__}:{self.code}".encode()).hexdigest()[:32]
        rows_file = os.path.join(self.folder, f"{name}.npz")
        checks_file = tool_schemas and os.path.join(self.folder, f"{name}-checks-{tool_schemas.sha256[:32]}.npz")
        rows = _read_columns(rows_file)
        checks = _read_columns(checks_file) if checks_file else {}
        turns = "turns" in keys and tool_schemas is not None
        if checks and turns and "turn_counts" not in checks:  # checked before without the decisions: again
            checks = None
        keys = {*keys, *(_ASKED_FIELDS & set(rows or ()))} - {"turns"}  # what is kept stays kept
        if rows is not None and keys <= set(rows) and checks is not None:
            return _scan_of(rows, checks)
        # Read the source for what is missing: the replies are parsed only where their checks are.
        scan = scan_source(path, keys=keys | ({"turns"} if turns and checks is None else set()),
                           tool_schemas=tool_schemas if checks is None else None)
        if _stamp(path) == source.stamp:  # the bytes read are those `source.digest` stands for
            if rows is None or not keys <= set(rows):
                self._unkept.append((rows_file, _row_columns(scan)))
            if checks is None:
                self._unkept.append((checks_file, _check_columns(scan)))
        return scan if checks is None else _scan_of(_row_columns(scan), checks)

    def keep(self) -> None:
        """Keep what the scans read, once a plan was made of it: a build refused writes nothing."""
        for path, columns in self._unkept:
            _write_columns(path, columns)
        self._unkept.clear()


def _row_columns(scan: SourceScan) -> dict:
    return {field.name: getattr(scan, field.name) for field in dataclasses.fields(scan)
            if field.name not in _CHECK_FIELDS and getattr(scan, field.name) is not None}


def _check_columns(scan: SourceScan) -> dict:
    keys = np.frombuffer(json.dumps(scan.reasons.keys).encode(), dtype=np.uint8)
    columns = {"tool_checks": scan.tool_checks, "reason_counts": scan.reasons.counts, "reason_ids": scan.reasons.ids,
               "reason_keys": keys, "unanswered": scan.unanswered, "result_chars": scan.result_chars}
    if scan.turns is not None:
        columns.update({column: getattr(scan.turns, field) for column, field in _TURN_COLUMNS.items()})
    return columns


def _scan_of(rows: dict, checks: dict) -> SourceScan:
    """The SourceScan of kept facts (`_row_columns` and, where checked, `_check_columns`)."""
    scan = SourceScan(**rows)
    if checks:
        keys = tuple(map(tuple, json.loads(checks["reason_keys"].tobytes())))
        scan.tool_checks, scan.unanswered, scan.result_chars = (checks["tool_checks"], checks["unanswered"],
                                                                checks["result_chars"])
        scan.reasons = RowReasons(keys, checks["reason_counts"], checks["reason_ids"])
        if "turn_counts" in checks:
            counts = checks["turn_counts"]
            scan.turns = TurnFacts(**{field: checks[column] for column, field in _TURN_COLUMNS.items()},
                                   starts=np.cumsum(counts) - counts)
    return scan


def _read_columns(path: str) -> Optional[dict]:
    """The arrays of a facts file, or None where there is none or it cannot be read (then the source is read)."""
    try:
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _write_columns(path: str, columns: dict) -> None:
    """Keep a facts file, whole or not at all; where it cannot be written, the next build reads the source."""
    partial = f"{path}.{os.getpid()}.partial"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(partial, "wb") as file:
            np.savez(file, **columns)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(partial)


def parse_line(line: bytes, path: str, number: int) -> dict:
    """Decode one stripped source line with Python's json and check it against the schema, saying what is
    wrong: the words of every source error (the scan's typed reader sends the lines it refuses here)."""
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


def row_keys(config: ClaudesidianSyntheticConfig) -> tuple:
    """What the config reads of each row, which the scan then keeps: prompt digests for a test split, pairs
    and a mixed order (which keeps a prompt's rows out of one batch); reply digests for pairs; the replies'
    decisions for a layout of one decision per example."""
    pairs = SELECTIONS[CONFIGS[config.name].selection].pairs_rows
    return (("prompts",) if config.test_size is not None or config.order == "mixed" or pairs else ()) + (
        ("replies",) if pairs else ()) + (("turns",) if LAYOUTS[config.layout].turns else ())


def messages_digest(messages: Sequence[Mapping]) -> bytes:
    """16 bytes that stand for a list of `{role, content}` messages (a prompt, a reply): sets of prompts
    without their text."""
    return value_digest(tuple((message["role"], message["content"]) for message in messages))


def _messages_digest(messages: Sequence) -> bytes:
    """`messages_digest` of the typed reader's messages: the same value, as `astuple` gives (role, content)."""
    return value_digest(tuple(map(msgspec.structs.astuple, messages)))


def json_digest(value: Any) -> bytes:
    """16 bytes that stand for any JSON value, whatever the order of its objects' keys."""
    return value_digest(_sorted_keys(value))


def value_digest(value: Any) -> bytes:
    """16 bytes that stand for a value built of Python's plain types, as marshal's format 2 writes it
    (every value whole, so equal values give equal bytes; two to three times as fast as JSON)."""
    return hashlib.blake2b(marshal.dumps(value, 2), digest_size=16).digest()


def _sorted_keys(value: Any) -> Any:
    if type(value) is dict:
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if type(value) is list:
        return [_sorted_keys(item) for item in value]
    return value


# --- tool calls: the text format, the checks against the tool schemas, the native format ------
#
# A reply spells each call as `tool_call: NAME`, then `arguments: {JSON object}`, then optionally
# `Result: {JSON}` after a blank line, with free text between calls and the final answer after the last
# one. `parse_reply` is the one parser of that text; `check_reply` checks its calls against the dataset
# author's tool schemas (`tool_schemas.json`); `native_reply` turns it into the structured messages chat
# templates render (`tool_calls`, `tool` results), with `tools` definitions in JSON Schema.

# The checks, in the order each call meets them; a call stops at the first it fails.
CHECKS = ("arguments", "tool", "required", "unknown", "types", "context")
# Findings that fail the `arguments` check; the result_* findings only describe the reply.
FORMAT_CODES = ("name_missing", "arguments_missing", "arguments_not_json", "arguments_not_object",
                "arguments_trailing_text")
# Every mode of the runtime extends CommonParameters, whose `context` is required. The file declares it
# for 7 tools only, yet 870 calls of the other 40 pass it (and the author's validator requires it), so
# every tool gets it, with these fields.
COMMON_CONTEXT_FIELDS = tuple({"name": name, "optional": name == "workspaceId"} for name in CONTEXT_FIELDS)
COMMON_CONTEXT_DESCRIPTION = "Standard context object required by all tools"  # the file's own wording
# Named types of the file that the runtime defines as string enums (ImageTypes.ts, searchMemoryMode.ts).
TYPE_ALIASES = {"AspectRatio": "'1:1' | '3:4' | '4:3' | '9:16' | '16:9'",
                "MemoryType": "'traces' | 'sessions' | 'states' | 'workspaces' | 'toolCalls'"}
_PRIMITIVES = {"string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
               "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
               "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list), "any": lambda v: True}
_MEMBER = re.compile(r"'[^']*'|[A-Z][A-Za-z0-9_]*")  # a string literal or an interface name
# Markers count only at a line start. One pass of `_LINE_MARKER` finds them all: led by its literal "\n",
# `re` finds it several times faster than a `^` under re.MULTILINE, which it tries at every position.
_FIRST_MARKER = re.compile(r"(tool_call:|Result:)")  # at the reply's start
_LINE_MARKER = re.compile(r"\n(tool_call:|Result:)")
_BLOCK_END = re.compile(r"\n[ \t]*\n|\n(?=tool_call:|Result:)")
_SPACE = re.compile(r"\s*")  # what str.strip() strips
_BLANKS = re.compile(r"[ \t]*")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)  # NaN and Infinity are Python's, not JSON's


@dataclasses.dataclass(frozen=True)
class Finding:
    """Something in a reply that does not follow the format; `pos` is a character offset into it."""

    code: str
    pos: int
    call: int  # 1-based index of the call it belongs to, 0 for none
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Text:
    text: str


@dataclasses.dataclass(frozen=True)
class Call:
    index: int  # 1-based position among the reply's calls
    name: str
    arguments: Optional[dict]  # None unless the arguments decode to a JSON object
    pos: int


@dataclasses.dataclass(frozen=True)
class Result:
    call: int
    text: str
    pos: int


@dataclasses.dataclass(frozen=True)
class ParsedReply:
    parts: tuple  # Text, Call and Result parts in reply order, without the final answer
    answer: str  # the text after the last call or result; the whole reply when it has no call
    findings: tuple

    @property
    def unanswered(self) -> bool:
        """Whether a call of the reply got no result."""
        answered = {part.call for part in self.parts if type(part) is Result}
        return any(call.index not in answered for call in self.calls)

    @property
    def result_chars(self) -> int:
        """Characters of the tool results the reply holds (the environment's text, which no policy writes)."""
        return sum(len(part.text) for part in self.parts if type(part) is Result)

    @property
    def calls(self) -> tuple:
        return tuple([part for part in self.parts if isinstance(part, Call)])


def _json_block(text: str, start: int) -> tuple:
    """Read the JSON value opening a block: (value or None, block end, None or (problem, position, detail)).

    The block ends with its JSON when the rest of that line is blank; otherwise (not JSON, or text after
    it) at the next blank line or line-start marker, the only points where the format lets a reader
    resynchronise. A value alone on its line, the common case, is decoded once by msgspec; any other (a
    value over several lines, or none) is read by Python's json, whose messages the findings quote."""
    line_end = text.find("\n", start)
    line = text[start : len(text) if line_end < 0 else line_end]
    if line[:1] not in ("", "\r"):  # msgspec, unlike Python's json, would skip a leading \r
        try:
            return _PLAIN_DECODER.decode(line), start + len(line.rstrip(" \t\r")), None
        except (ValueError, RecursionError):  # msgspec's DecodeError, or a lone surrogate it cannot encode
            pass
    try:
        value, end = _STRICT_JSON.raw_decode(text, start)
    except json.JSONDecodeError as error:
        value, problem = None, ("not_json", error.pos, error.msg)
    except (ValueError, RecursionError) as error:  # NaN/Infinity, or nesting too deep for the decoder
        value, problem = None, ("not_json", start, type(error).__name__)
    else:
        line_end = text.find("\n", end)
        rest = text[end : len(text) if line_end < 0 else line_end].strip()
        if not rest:
            return value, end, None
        problem = ("trailing_text", end, repr(rest[:40]))
    found = _BLOCK_END.search(text, start)
    return value, found.start() if found else len(text), problem


def parse_reply(text: str) -> ParsedReply:
    """Split a reply into text, call and result parts plus the final answer, with findings; never raises.

    `tool_call:` counts only at a line start; the next line must start with `arguments:`, and the JSON
    object starts on that line (it may span lines); `Result:` at a line start after only whitespace is
    the call's result. The markers are found in one pass, then read in order; a `Result:` that no call
    reached is a finding."""
    parts, findings = [], []
    position = calls = 0
    first = _FIRST_MARKER.match(text)
    for marker in itertools.chain([first] if first else (), _LINE_MARKER.finditer(text)):
        start = marker.start(1)
        if start < position:  # inside the block of the call before
            continue
        if marker.group(1) == "Result:":
            findings.append(Finding("result_without_call", start, 0))
            continue
        segment = text[position:start].strip()
        if segment:
            parts.append(Text(segment))
        calls += 1
        position = _read_call(text, start, calls, parts, findings)
    return ParsedReply(tuple(parts), text[position:].strip(), tuple(findings))


def _read_call(text: str, start: int, index: int, parts: list, findings: list) -> int:
    """Read the call whose `tool_call:` is at `start`, and its result if one follows, into `parts` and
    `findings`; return where its block ends."""
    line_end = text.find("\n", start)
    position = len(text) if line_end < 0 else line_end
    name = text[start + len("tool_call:") : position].strip()
    if not name:
        findings.append(Finding("name_missing", start, index))
    arguments = None
    if not text.startswith("\narguments:", position):
        findings.append(Finding("arguments_missing", position, index, "the next line must start with arguments:"))
    else:
        json_start = _BLANKS.match(text, position + len("\narguments:")).end()
        value, position, problem = _json_block(text, json_start)
        if problem:
            findings.append(Finding(f"arguments_{problem[0]}", problem[1], index, problem[2]))
        elif not isinstance(value, dict):
            findings.append(Finding("arguments_not_object", json_start, index, type(value).__name__))
        arguments = value if isinstance(value, dict) else None
    parts.append(Call(index, name, arguments, start))
    head = _SPACE.match(text, position).end()
    if text.startswith("Result:", head) and text[head - 1] == "\n":
        result_start = _BLANKS.match(text, head + len("Result:")).end()
        _, position, problem = _json_block(text, result_start)
        if problem:
            findings.append(Finding(f"result_{problem[0]}", problem[1], index, problem[2]))
        parts.append(Result(index, text[result_start:position].rstrip(), head))
    return position


class ToolSchemaError(ClaudesidianError):
    """The tool schema file is unusable; the message names the file, the tool and what to fix."""


@dataclasses.dataclass(frozen=True)
class ToolSchemas:
    """The tools a reply may call, by name, as the schema file describes them."""

    tools: dict
    sha256: str  # of the file's bytes
    path: str

    def definition(self, name: str) -> dict:
        """The tool as a chat template's tool definition (JSON Schema), as `get_json_schema` writes one."""
        return function_definition(name, self)

    @functools.cached_property
    def checks(self) -> dict:
        """Each tool's checks, compiled once: a call is checked without reading the schema again."""
        return {name: _ToolCheck.of(tool) for name, tool in self.tools.items()}


def _type_members(type_string: str) -> list:
    """The members of a TypeScript union; ValueError for a type these checks cannot check."""
    members = [member.strip() for member in re.findall(r"(?:'[^']*'|[^|'])+", type_string)]
    for member in members:
        base = member[:-2] if member.endswith("[]") else member
        if not (base in _PRIMITIVES or _MEMBER.fullmatch(base)):
            raise ValueError(f"unsupported type {member!r} in {type_string!r}")
    if not members or "".join(members).count("'") != type_string.count("'"):
        raise ValueError(f"unsupported type {type_string!r}")
    return members


def read_tool_schemas(path: str, data: Optional[bytes] = None) -> ToolSchemas:
    """Read a tool schema file (`data`, its bytes, when already read) and check its shape strictly, so
    the checks never meet a malformed schema."""

    def fail(where: str, what: str) -> ToolSchemaError:
        return ToolSchemaError(
            escaped(f"{path}: {where}: {what}".replace("\n", " ")) + "; fix the file, or leave out {option} for "
            f"the pinned copy (sha256 {TOOL_SCHEMAS_SHA256[:12]}...)", option=Mention("tool_schemas"))

    try:
        if data is None:
            with open(path, "rb") as file:
                data = file.read()
        tools = json.loads(data.decode("utf-8"))
    except (OSError, ValueError) as error:  # ValueError covers UnicodeDecodeError and JSONDecodeError
        raise fail("file", f"cannot be read as JSON ({type(error).__name__}: {error})") from None
    if not isinstance(tools, dict) or not tools:
        raise fail("file", "must be a non-empty JSON object keyed by tool name")
    for name, tool in tools.items():
        problem = _tool_problem(f"tool {name!r}", name, tool)
        if problem:
            raise fail(*problem)
    return ToolSchemas(tools, hashlib.sha256(data).hexdigest(), str(path))


def _tool_problem(where: str, name: str, tool: Any) -> Optional[tuple]:
    """(where, what is wrong) of the first fault of one tool's schema, or None."""
    if not isinstance(tool, dict) or not isinstance(tool.get("parameters"), list):
        return where, "must be an object with a 'parameters' list"
    if tool.get("tool_name") != name or not all(isinstance(tool.get(key), str) for key in ("agent", "mode")):
        return where, "needs 'tool_name' equal to its key and string 'agent' and 'mode'"
    seen = []
    for number, parameter in enumerate(tool["parameters"], 1):
        problem = _parameter_problem(where, number, parameter, seen)
        if problem:
            return problem
        seen.append(parameter["name"])
    return _required_and_context_problem(where, tool, seen)


def _required_and_context_problem(where: str, tool: dict, seen: list) -> Optional[tuple]:
    """(where, what is wrong) of a tool's `required_params` and `context_schema`, given its parameters' names."""
    required = tool.get("required_params")
    optional = {parameter["name"] for parameter in tool["parameters"] if parameter["optional"]}
    if not isinstance(required, list) or sorted(required) != sorted(set(seen) - optional):
        return where, f"'required_params' {required!r} must name exactly its non-optional parameters"
    schema = tool.get("context_schema")
    fields = schema.get("fields") if isinstance(schema, dict) else None
    if schema is not None and not (isinstance(fields, list) and "context" in seen and all(
            isinstance(field, dict) and isinstance(field.get("name"), str)
            and isinstance(field.get("optional"), bool) for field in fields)):
        return where, "'context_schema' must be null or {'fields': [{name, optional}]} with a 'context' parameter"
    return None


def _parameter_problem(where: str, number: int, parameter: Any, seen: list) -> Optional[tuple]:
    """(where, what is wrong) of one parameter of a tool's schema, or None; `seen` are the names before it."""
    if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str) or not parameter["name"]:
        return f"{where} parameter #{number}", "needs a non-empty string 'name'"
    named = f"{where} parameter {parameter['name']!r}"
    if parameter["name"] in seen or not isinstance(parameter.get("optional"), bool):
        return named, "is listed twice or lacks a boolean 'optional'"
    if not isinstance(parameter.get("type"), str) or not isinstance(parameter.get("description", ""), str):
        return named, "needs a string 'type' (and a string 'description' if any)"
    try:
        _type_members(parameter["type"])
    except ValueError as error:
        return named, (f"{error}: the checks know string, number, boolean, object, array, any, X[], "
                       "'literal' | 'unions' and interface names")
    return None


def _parameters(tool: dict) -> tuple:
    """The tool's parameters, required names and context fields, with the common `context` added if absent."""
    parameters, required = list(tool["parameters"]), list(tool["required_params"])
    if "context" not in {parameter["name"] for parameter in parameters}:
        parameters.append({"name": "context", "optional": False, "type": "object",
                           "description": COMMON_CONTEXT_DESCRIPTION})
        required.append("context")
    fields = tool["context_schema"]["fields"] if tool["context_schema"] else COMMON_CONTEXT_FIELDS
    return parameters, required, list(fields)


def _type_test(type_string: str) -> Callable[[Any], bool]:
    """A test of a JSON value against a TypeScript type, made once: interfaces are objects, aliases expand,
    literals compare, and a union passes where any member does."""
    tests, literals = [], set()
    for member in _type_members(type_string):
        if member.endswith("[]"):
            tests.append(functools.partial(_is_list_of, _type_test(member[:-2])))
        elif member in TYPE_ALIASES:
            tests.append(_type_test(TYPE_ALIASES[member]))
        elif member.startswith("'"):
            literals.add(member[1:-1])
        else:
            tests.append(_PRIMITIVES.get(member, _PRIMITIVES["object"]))
    if literals:
        tests.append(functools.partial(_is_one_of, frozenset(literals)))
    return tests[0] if len(tests) == 1 else functools.partial(_passes_any, tuple(tests))


def _is_list_of(item: Callable[[Any], bool], value: Any) -> bool:
    return isinstance(value, list) and all(map(item, value))


def _is_one_of(literals: frozenset, value: Any) -> bool:
    return isinstance(value, str) and value in literals


def _passes_any(tests: tuple, value: Any) -> bool:
    return any(test(value) for test in tests)


@dataclasses.dataclass(frozen=True)
class _ToolCheck:
    """One tool's checks after `arguments` and `tool`, compiled from its schema once: the parameters a call
    must give, a type test per parameter, and the fields of its `context`."""

    required: tuple  # in the file's order, `context` last where it is implied
    types: dict  # parameter -> (its type as the file writes it, a test of a value against it)
    context_required: tuple
    context_fields: frozenset

    @classmethod
    def of(cls, tool: dict) -> "_ToolCheck":
        parameters, required, fields = _parameters(tool)
        return cls(tuple(required), {parameter["name"]: (parameter["type"], _type_test(parameter["type"]))
                                     for parameter in parameters},
                   tuple(field["name"] for field in fields if not field["optional"]),
                   frozenset(field["name"] for field in fields))

    def failing(self, arguments: dict) -> tuple:
        """(index into CHECKS of the first check the arguments fail, each of its reasons as (code,
        parameter, detail)), or (len(CHECKS), []) when they pass them all."""
        missing = [("missing_required", name, "") for name in self.required if name not in arguments]
        if missing:
            return CHECKS.index("required"), missing
        unknown = [("unknown_parameter", name, "") for name in arguments if name not in self.types]
        if unknown:
            return CHECKS.index("unknown"), unknown
        mistyped = [("wrong_type", name, f"expected {self.types[name][0]}, got {json.dumps(value)[:40]}")
                    for name, value in arguments.items() if not self.types[name][1](value)]
        if mistyped:
            return CHECKS.index("types"), mistyped
        context = arguments.get("context")
        faults = self._context_faults(context) if isinstance(context, dict) else []
        return (CHECKS.index("context"), faults) if faults else (len(CHECKS), [])

    def _context_faults(self, context: dict) -> list:
        # Extra fields fail: the runtime's context is a closed record, so an extra one is invented and ignored.
        return ([("context_missing_field", name, "") for name in self.context_required if name not in context]
                + [("context_unknown_field", key, "") for key in context if key not in self.context_fields]
                + [("context_wrong_type", key, f"expected string, got {json.dumps(value)[:40]}")
                   for key, value in context.items() if key in self.context_fields and not isinstance(value, str)])


@dataclasses.dataclass(frozen=True)
class Reason:
    """Why a call fails: a short code, the call (1-based) and its tool, and the parameter if one."""

    code: str
    call: int
    tool: str
    parameter: str  # "" when the reason is about the whole call
    detail: str


@dataclasses.dataclass(frozen=True)
class RowCheck:
    first_failed: int  # index into CHECKS of the earliest check the row fails, len(CHECKS) when it passes
    reasons: tuple


def _check_call(call: Call, findings: Sequence, schemas: ToolSchemas) -> tuple:
    """(index of the call's first failing check, every reason of that check), or (len(CHECKS), [])."""
    bad_format = [Reason(finding.code, call.index, call.name, "", f"char {finding.pos} {finding.detail}".strip())
                  for finding in findings if finding.call == call.index and finding.code in FORMAT_CODES]
    if bad_format or call.arguments is None:
        return CHECKS.index("arguments"), bad_format or [Reason("arguments_missing", call.index, call.name, "", "")]
    check = schemas.checks.get(call.name)
    if check is None:
        return CHECKS.index("tool"), [Reason("unknown_tool", call.index, call.name, "", "")]
    failed, reasons = check.failing(call.arguments)
    return failed, [Reason(code, call.index, call.name, parameter, detail) for code, parameter, detail in reasons]


def check_reply(parsed: ParsedReply, schemas: ToolSchemas) -> RowCheck:
    """Check every call in CHECKS order; a call stops at its first failing check, a row fails at its worst
    call; a row without calls passes."""
    first, reasons = len(CHECKS), []
    for call in parsed.calls:
        index, call_reasons = _check_call(call, parsed.findings, schemas)
        first = min(first, index)
        reasons += call_reasons
    return RowCheck(first, tuple(reasons))


def _json_schema(type_string: str) -> dict:
    """JSON Schema of a TypeScript type, shaped the way transformers' get_json_schema writes type hints."""
    members = _type_members(type_string)
    literals = [member[1:-1] for member in members if member.startswith("'")]
    schemas = [{"type": "string", "enum": literals}] if literals else []
    for member in members:
        if member.endswith("[]"):
            schemas.append({"type": "array", "items": _json_schema(member[:-2])})
        elif member in TYPE_ALIASES:
            schemas.append(_json_schema(TYPE_ALIASES[member]))
        elif not member.startswith("'"):
            schemas.append({} if member == "any" else {"type": member if member in _PRIMITIVES else "object"})
    if len(schemas) == 1:
        return schemas[0]
    if all(schema.keys() == {"type"} for schema in schemas):
        return {"type": sorted({schema["type"] for schema in schemas})}
    return {"anyOf": schemas}


def function_definition(tool_name: str, schemas: ToolSchemas) -> dict:
    """The tool as a chat template's tool definition, in the format transformers' get_json_schema returns."""
    tool = schemas.tools[tool_name]
    parameters, required, fields = _parameters(tool)
    properties = {}
    for parameter in parameters:
        described = _json_schema(parameter["type"])
        if parameter["name"] == "context":
            described = {"type": "object", "properties": {field["name"]: {"type": "string"} for field in fields},
                         "required": [field["name"] for field in fields if not field["optional"]]}
        if parameter.get("description"):
            described["description"] = parameter["description"]
        properties[parameter["name"]] = described
    mode = re.sub(r"(?<=[a-z])([A-Z])", r" \1", tool["mode"]).replace("_", " ").lower().capitalize()
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    description = tool.get("notes") or f"{mode} ({tool['agent']} agent)."
    return {"type": "function", "function": {"name": tool_name, "description": description, "parameters": schema}}


def tools_for_row(parsed: ParsedReply, schemas: ToolSchemas) -> list:
    """The tools a row's `tools` column defines, sorted: `get_tools`, and every mode of each agent the row
    calls. The runtime hands tools out per agent (`get_tools(managers=[...])`), so a model sees the
    called tool among its siblings, as it will at inference, for about a fifth of the tokens of all 47
    definitions; a call of a tool the schemas lack adds nothing."""
    agents = {schemas.tools[call.name]["agent"] for call in parsed.calls if call.name in schemas.tools}
    return sorted({"get_tools"} & set(schemas.tools) | {name for name, tool in schemas.tools.items()
                                                         if tool["agent"] in agents})


def native_messages(parsed: ParsedReply) -> list:
    """The reply as structured chat messages: assistant `tool_calls`, `tool` results, then the final answer.

    Calls written back to back (no text, no result between them) share one assistant message: they were
    issued together, as parallel calls are. A call after a result gets its own message, because it saw
    that result. A call without a result gets no tool message: results are never invented. Call ids are
    `call` + 5 digits, the 9 letters and digits Mistral's templates require."""
    for call in parsed.calls:
        bad = [finding for finding in parsed.findings if finding.call == call.index and finding.code in FORMAT_CODES]
        if bad or call.arguments is None:
            what = f"{bad[0].code} at character {bad[0].pos}" if bad else "no usable arguments"
            raise ValueError(f"call {call.index} ({call.name or 'no name'}) does not parse: {what}")
    messages, names = [], {call.index: call.name for call in parsed.calls}
    text, group = "", None
    for part in parsed.parts:
        if isinstance(part, Text):
            text, group = part.text, None
        elif isinstance(part, Call):
            if group is None:
                group = {"role": "assistant", "content": text, "tool_calls": []}
                messages.append(group)
                text = ""
            group["tool_calls"].append({"type": "function", "id": _call_id(part.index),
                                        "function": {"name": part.name, "arguments": part.arguments}})
        else:
            messages.append({"role": "tool", "content": part.text, "tool_call_id": _call_id(part.call),
                             "name": names[part.call]})
            group = None
    messages.append({"role": "assistant", "content": parsed.answer})
    return messages


def _call_id(index: int) -> str:
    return f"call{index:05d}"


def decision_turns(messages: Sequence[Mapping]) -> list:
    """Positions, among a reply's native messages, of its decisions: the assistant turns the model writes
    given everything before them, tool results included. A turn after a call that got no result is none
    (its context lacks the result the model would wait for), and neither is an empty final answer after a
    result (it says nothing); a reply always has its first turn."""
    turns = []
    for position, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        calls = message.get("tool_calls") or ()
        if turns and not calls and not message["content"].strip():
            continue
        turns.append(position)
        answered = set()
        for following in messages[position + 1 :]:
            if following["role"] != "tool":
                break
            answered.add(following["tool_call_id"])
        if any(call["id"] not in answered for call in calls):
            break
    return turns


# How the one turn of an undesirable reply that carries its label is chosen, in this order, each rule in the
# words every message uses; LABELLING_WHY says why, for the card.
LABELLING_RULES = {"first_failing_call": "the turn of its first call that fails a check",
                   "first_turn": "its first turn"}
LABELLING_WHY = (
    "An undesirable reply is labelled as a whole, and KTO needs one completion per row: the turn that carries the "
    "label is the one holding the reply's first call that fails a check against the tool schemas (that call is a "
    "fault the label can point at, and what follows it was built on it), else its first turn (its calls are "
    "well-formed, so the fault lies in what it chose to do, and the first decision sets the rest in motion). Its "
    "other turns are left out: nothing says whether they are good or bad."
)


@dataclasses.dataclass(frozen=True)
class Decisions:
    """A reply as decisions: its native messages, the positions of its decision turns, and which of those
    turns carries the label of an undesirable row (an index into `turns`), by which of LABELLING_RULES."""

    messages: list
    turns: list
    labelled: int
    rule: str


def reply_decisions(parsed: ParsedReply, checked: "RowCheck") -> Decisions:
    """The decisions of a parsed reply whose calls parse (`native_messages` raises otherwise)."""
    messages = native_messages(parsed)
    turns = decision_turns(messages)
    failing = min((reason.call for reason in checked.reasons), default=None)
    if failing is not None:
        holder = next(position for position, message in enumerate(messages)
                      if any(call["id"] == _call_id(failing) for call in message.get("tool_calls") or ()))
        if holder in turns:
            return Decisions(messages, turns, turns.index(holder), "first_failing_call")
    return Decisions(messages, turns, 0, "first_turn")


def message_chars(messages: Sequence[Mapping]) -> int:
    """Characters (code points, `len(str)`) of what the messages say, no template: their contents and, for
    structured tool calls, each call's name and arguments (as JSON), which the model writes too."""
    total = 0
    for message in messages:
        total += len(message["content"] or "")
        for call in message.get("tool_calls") or ():
            arguments = call["function"]["arguments"]
            total += len(call["function"]["name"]) + len(arguments if isinstance(arguments, str)
                                                         else json.dumps(arguments))
    return total


def calls_of(reply: Sequence[Mapping]) -> ParsedReply:
    """The calls (and results) of a reply in any layout: structured `tool_calls` and `tool` messages (the
    tools layouts), else the text of its one message (the text layouts), so stats check both the same way."""
    if not any(message.get("tool_calls") for message in reply):
        return parse_reply("".join(message["content"] or "" for message in reply))
    parts, indexes = [], {}
    for message in reply:
        if message["role"] == "tool" and message.get("tool_call_id") in indexes:
            parts.append(Result(indexes[message["tool_call_id"]], message["content"] or "", 0))
        for call in message.get("tool_calls") or ():
            arguments = call["function"]["arguments"]
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments  # without `Json`
            indexes[call["id"]] = len(indexes) + 1
            parts.append(Call(len(indexes), call["function"]["name"], arguments, 0))
    return ParsedReply(tuple(parts), reply[-1]["content"] or "", ())


# --- selection: which rows, in which order ----------------------------------------------------


@dataclasses.dataclass
class RowPlan:
    """What `plan_rows` decided: each split's source rows in output order, every source row's label as
    the selection saw it (the gate may relabel), per split what was dropped or relabelled, and, for a layout
    of one decision per example, which decision of its row each example is."""

    splits: dict
    labels: np.ndarray
    notes: dict
    turns: dict = dataclasses.field(default_factory=dict)


def plan_rows(scan: SourceScan, config: ClaudesidianSyntheticConfig, row_limit: Optional[int] = None) -> RowPlan:
    """Source row indices of each split, in output order (a pair of rows per example for pairs):
    `train`, the config's selection, and with `test_size` a `test` split made of held-out rows, the
    same prompts for every config (it keeps the source's label mix where the config holds both). Exact
    duplicates (`dedupe`) and the gate act on each split's rows before its selection; a balanced
    selection of more than `row_limit` rows is refused. In a layout of one decision per example, each
    split's rows become their decisions (`decision_rows`) before the selection, which then picks and
    orders decisions; the held-out prompts stay the rows' own."""
    named = CONFIGS[config.name]
    candidates = np.arange(len(scan.labels))
    sides = {}
    if config.test_size is not None:
        both = named.selection != "desirable_only"
        held_out = np.array(held_out_rows(scan.labels.tolist(), scan.prompts.tolist(), config.test_size, config.seed,
                                          both_labels=both) if scan.member is None else
                            family_held_out(scan.labels, scan.prompts, scan.member, config.test_size, config.seed,
                                            both_labels=both), dtype=np.int64)
        candidates = np.setdiff1d(candidates, held_out)
        sides["test"] = held_out
    sides = {"train": candidates, **sides}
    labels, notes = scan.labels, {split: {"said": []} for split in sides}
    if config.dedupe:  # identical lines share a prompt, so a line's first copy is on its side too
        for split, rows in sides.items():
            sides[split] = rows[~scan.duplicate[rows]]
            notes[split]["dedupe_dropped"] = dropped = len(rows) - len(sides[split])
            notes[split]["said"].append(f"dedupe dropped {plural(dropped, 'exact duplicate line')} of the "
                                        f"{len(rows)} rows of the {split} split")
    if config.gate != "keep":
        labels = _gate(scan, config, sides, notes)
    gated = dataclasses.replace(scan, labels=labels)
    turns, chars = {}, {split: scan.completion_chars[rows] for split, rows in sides.items()}
    if LAYOUTS[config.layout].turns:
        _refuse_unparsed(scan, config, sides)  # such a row has no decision to name later
        for split, rows in sides.items():
            sides[split], turns[split], chars[split] = decision_rows(scan.turns, labels, rows)
            notes[split]["decisions"] = _decision_counts(scan.turns, labels, rows)
            said = _decisions_said(notes[split]["decisions"], split)
            if named.selection != "every_row":  # the counts are drawn from decisions: a reply may give some turns
                said += ("; the selection then draws its rows from these decisions, so a reply may give some of its "
                         "turns")
            notes[split]["said"].append(said)
    picked = {}
    if "test" in sides:  # the test split first: its errors are said first, as they were
        try:
            picked["test"] = choose(SELECTIONS[named.selection].test_split, gated, sides["test"], config,
                                    random_stream(config.seed, "test_order"), row_limit, chars["test"])
        except OptionError as error:
            fix = "; pick a larger {test_size}" + (" or a larger {batch_size}" if config.order == "mixed" else "")
            if "smallest batch size" in error.template:  # set by the mix of labels, which any test size keeps
                fix = ("; the test split keeps the source's mix of labels at any {test_size}: give a {batch_size} "
                       "that large, or {no_test}")
            raise error.about("the test split: ", "" if "give at most" in error.template else fix,
                              test_size=Mention("test_size"), batch_size=Mention("batch_size"),
                              no_test=Mention("test_size", 0)) from None
    try:
        picked["train"] = choose(named.selection, gated, sides["train"], config,
                                 random_stream(config.seed, "selection"), row_limit, chars["train"])
    except OptionError as error:
        # What drew from fewer rows than the source holds, said where a count runs out.
        fewer = [what for what, applies in (("the test split is held out", "test" in sides),
                                            ("dedupe drops duplicates", config.dedupe),
                                            ("the gate " + ("drops" if config.gate == "drop" else "relabels")
                                             + " desirable rows whose calls fail", config.gate != "keep"),
                                            ("each row is its decisions", bool(turns))) if applies]
        if "rows to draw from" not in error.template or not fewer:
            raise
        raise error.about("", " (the train split's rows, after " + "; ".join(fewer) + ")") from None
    splits = {split: sides[split][picked[split]] for split in sides}
    turns = {split: turns[split][picked[split]] for split in turns}
    if LAYOUTS[config.layout].tools and not turns:
        _refuse_unparsed(scan, config, splits)
    return RowPlan(splits, labels, notes, turns)


def decision_rows(facts: TurnFacts, labels: np.ndarray, rows: np.ndarray) -> tuple:
    """(rows, turns, lengths) with an entry per decision of these source rows, in their order: every decision
    of a desirable row, the one that carries the label of an undesirable row (`TurnFacts.labelled`)."""
    counts = np.where(labels[rows], facts.counts[rows], np.minimum(facts.counts[rows], 1))
    decided = np.repeat(rows, counts)
    within = np.arange(len(decided)) - np.repeat(np.cumsum(counts) - counts, counts)
    turns = np.where(labels[decided], within, facts.labelled[decided])
    return decided, turns, facts.chars[facts.starts[decided] + turns]


def _decision_counts(facts: TurnFacts, labels: np.ndarray, rows: np.ndarray) -> dict:
    """What `decision_rows` made of a split's rows: the desirable rows' decisions and the assistant turns
    that are none, and how many undesirable rows each of LABELLING_RULES labelled."""
    desirable, undesirable = rows[labels[rows]], rows[~labels[rows]]
    rules = np.bincount(facts.rules[undesirable], minlength=len(LABELLING_RULES)).tolist()
    return {"desirable_rows": len(desirable), "desirable_turns": int(facts.counts[desirable].sum()),
            "turns_left_out": int(facts.assistant_turns[desirable].sum() - facts.counts[desirable].sum()),
            "undesirable_rows": len(undesirable), "labelled_by": dict(zip(LABELLING_RULES, rules))}


def _decisions_said(counts: dict, split: str) -> str:
    """The build's line about a split's decisions."""
    by = counts["labelled_by"]
    left_out = counts["turns_left_out"]
    return (f"decisions: the {split} split's {plural(counts['desirable_rows'], 'desirable row')} hold "
            f"{plural(counts['desirable_turns'], 'assistant turn')}, a row each"
            + (f" ({plural(left_out, 'turn')} after a call without a result, or an empty final answer, left out)"
               if left_out else "")
            + f"; its {plural(counts['undesirable_rows'], 'undesirable row')} give one row each: "
            + ", ".join(f"{words} in {by[rule]:,}" for rule, words in LABELLING_RULES.items()))


def _refuse_unparsed(scan: SourceScan, config: ClaudesidianSyntheticConfig, splits: dict) -> None:
    """A tools layout holds calls as structured data: a selected row whose calls do not parse has no such
    form (the gate leaves those rows out; without it, they are named here)."""
    for split, rows in splits.items():
        bad = np.unique(rows[scan.tool_checks[rows] == 0])
        if len(bad):
            if scan.member is None:
                named = "source rows " + ", ".join(str(row + 1) for row in bad[:8].tolist())
            else:  # a family's rows, counted from 1 in each member's file
                first = {member: int(np.argmax(scan.member == member)) for member in np.unique(scan.member).tolist()}
                named = ", ".join(f"{list(MEMBERS)[scan.member[row]]}'s row {row - first[scan.member[row]] + 1}"
                                  for row in bad[:8].tolist())
            raise OptionError(
                "{layout} needs the tool calls of every row it holds to parse, and " + f"{plural(len(bad), 'row')} "
                f"of the {split} split do not ({named}{', ...' if len(bad) > 8 else ''}): give "
                + "{drop} (or {relabel}) to leave them out",
                layout=Mention("layout", config.layout), drop=Mention("gate", "drop"),
                relabel=Mention("gate", "relabel"))


def _gate(scan: SourceScan, config: ClaudesidianSyntheticConfig, sides: dict, notes: dict) -> np.ndarray:
    """Apply the gate to each split's rows (in place in `sides`) and return every row's label after it:
    desirable rows whose calls fail a check are dropped or relabelled undesirable; a tools layout also
    drops rows whose calls do not parse (any label)."""
    failing = scan.labels & (scan.tool_checks < len(CHECKS))
    unparsed = scan.tool_checks == 0
    tools = LAYOUTS[config.layout].tools
    labels = scan.labels & ~failing if config.gate == "relabel" else scan.labels
    for split, rows in sides.items():
        gone = (failing[rows] & (config.gate == "drop")) | (unparsed[rows] & tools)
        relabelled = failing[rows] & ~gone if config.gate == "relabel" else np.zeros(len(rows), dtype=bool)
        sides[split] = rows[~gone]
        notes[split].update(gate=config.gate, gate_failing=int(failing[rows].sum()),
                            gate_relabelled=int(relabelled.sum()), gate_dropped=int(gone.sum()))
        if config.gate == "drop":
            said = f"gate: dropped {plural(int(failing[rows].sum()), 'desirable row')} of the {split} split whose " \
                   "tool calls fail the checks"
            extra = int((gone & ~failing[rows]).sum()) if LAYOUTS[config.layout].labels != "desirable" else 0
            said += f", and {plural(extra, 'undesirable row')} whose calls do not parse" if extra else ""
        elif config.gate == "relabel":
            said = f"gate: relabelled undesirable {plural(int(relabelled.sum()), 'desirable row')} of the {split} " \
                   "split whose tool calls fail the checks"
            if gone.any():
                said += (f"; dropped {plural(int(gone.sum()), 'row')} whose calls do not parse "
                         f"({int((gone & scan.labels[rows]).sum())} of them desirable), which a tools layout cannot "
                         "hold")
        else:
            continue
        notes[split]["said"].append(said)
    return labels


def plural(number: int, noun: str, nouns: Optional[str] = None) -> str:
    """`1 row`, `2 rows`: a number and its noun, in the plural it takes (`nouns` where an s will not do:
    `batches of 4`)."""
    return f"{number:,} {noun if number == 1 else nouns or noun + 's'}"


@dataclasses.dataclass
class Candidates:
    """What a selection reads of the rows it chooses from, position by position."""

    labels: list
    completion_chars: np.ndarray
    # Digests, kept as arrays: as lists of 16-byte `bytes` they took 57 bytes a row each (114 MB at 1M rows).
    prompts: Optional[np.ndarray] = None
    replies: Optional[np.ndarray] = None
    row_limit: Optional[int] = None  # the most rows this machine can build
    members: Optional[np.ndarray] = None  # each row's member of the family, when several are read


def choose(selection: str, scan: SourceScan, rows: np.ndarray, config: ClaudesidianSyntheticConfig,
           rng: random.Random, row_limit: Optional[int] = None, chars: Optional[np.ndarray] = None) -> np.ndarray:
    """Positions in `rows` (or pairs of them) that `selection` picks, in output order; `chars` are the
    completion lengths it matches (default: the rows' replies')."""
    chars = scan.completion_chars[rows] if chars is None else chars
    candidates = Candidates(scan.labels[rows].tolist(), chars, row_limit=row_limit)
    if scan.prompts is not None:
        candidates.prompts = scan.prompts[rows]
    if scan.replies is not None:
        candidates.replies = scan.replies[rows]
    if scan.member is not None:
        candidates.members = scan.member[rows]
    picked = _CHOOSERS[selection](candidates, config, rng)
    if not picked:
        raise OptionError(f"{config.name} has no rows to take from these {len(rows)}: {_EMPTY[selection]}")
    return np.array(picked, dtype=np.int64)


def _every_row(candidates: Candidates, config: ClaudesidianSyntheticConfig, rng: random.Random) -> list:
    labels = candidates.labels
    return arrange(list(range(len(labels))), labels, config.order, rng, config.batch_size, candidates.prompts)


def _balanced(candidates: Candidates, config: ClaudesidianSyntheticConfig, rng: random.Random) -> list:
    # The published recipe seeds its own generator, `random_stream(seed, "selection")`, as `rng` is.
    if config.per_member:
        return balanced_per_member(candidates.labels, candidates.members, ratio=config.ratio, seed=config.seed,
                                   replacement=config.replacement, order=config.order, batch_size=config.batch_size,
                                   prompts=candidates.prompts, row_limit=candidates.row_limit)
    if config.length_strata is not None:
        return length_matched_indices(candidates.labels, candidates.completion_chars, strata=config.length_strata,
                                      ratio=config.ratio, seed=config.seed, order=config.order,
                                      batch_size=config.batch_size, prompts=candidates.prompts)
    return balanced_indices(candidates.labels, desirable=config.desirable, undesirable=config.undesirable,
                            ratio=config.ratio, seed=config.seed, replacement=config.replacement,
                            order=config.order, batch_size=config.batch_size, prompts=candidates.prompts,
                            row_limit=candidates.row_limit)


def _desirable(candidates: Candidates, config: ClaudesidianSyntheticConfig, rng: random.Random) -> list:
    labels = candidates.labels
    return arrange([row for row, label in enumerate(labels) if label], labels, config.order, rng, None)


def _pairs(candidates: Candidates, config: ClaudesidianSyntheticConfig, rng: random.Random) -> list:
    pairs = preference_pairs(candidates.labels, candidates.prompts.tolist(), candidates.replies.tolist())
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


def held_out_rows(labels: Sequence[bool], prompt_keys: Sequence, test_size: Union[float, int], seed: int,
                  members: Optional[Sequence[int]] = None, both_labels: Optional[bool] = True) -> list:
    """Sorted source rows of a test split that shares no prompt with the rest, sized and stratified:
    its row count and its desirable count (and, with `members`, each member's count of each label) each lie
    within the largest prompt group of the exact figures. Each side needs both labels, or, where the config
    holds desirable rows only (`both_labels=False`), a desirable row (`None`: neither, for a part of a split).

    Prompt groups are shuffled by a generator of their own (seeded from `seed`), then taken while they
    fit under every stratum's exact count; a second pass fills up to the row count."""
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
    # Strata: a member's desirable rows (2 * member), its undesirable rows (2 * member + 1); each group's count
    # of each, counted at once.
    strata = (0 if members is None else 2 * np.asarray(members, dtype=np.int64)) + ~np.asarray(labels, dtype=bool)
    kinds = int(strata.max()) // 2 * 2 + 2
    sizes = np.bincount(strata, minlength=kinds)
    group_of_row = np.empty(n, dtype=np.int64)
    for index, group in enumerate(groups):
        group_of_row[group] = index
    per_group = np.bincount(group_of_row * kinds + strata, minlength=len(groups) * kinds).reshape(-1, kinds).tolist()
    exact = [0.0] * kinds
    for member in range(kinds // 2):
        exact[2 * member] = target * sizes[2 * member] / n
        exact[2 * member + 1] = target * (sizes[2 * member] + sizes[2 * member + 1]) / n - exact[2 * member]
    caps = [[math.ceil(value) if kind % 2 == 0 else math.floor(value) for kind, value in enumerate(exact)],
            [value + largest for value in exact]]
    taken, counts, rows = [], [0] * kinds, 0
    for cap in caps:
        rest = []
        for index, group in zip(range(len(per_group)), groups):
            group_counts = per_group[index]
            if rows + len(group) <= target and all(have + more <= most for have, more, most in
                                                    zip(counts, group_counts, cap)):
                taken += group
                counts = [have + more for have, more in zip(counts, group_counts)]
                rows += len(group)
            else:
                rest.append(index)
        per_group, groups = [per_group[index] for index in rest], [groups[index] for index in rest]
    exact_desirable = sum(exact[0::2])
    desirable, undesirable = sum(counts[0::2]), sum(counts[1::2])
    rows_off = abs(desirable + undesirable - target)
    if rows_off > largest or abs(desirable - exact_desirable) > largest:
        raise OptionError(
            "{given}: " + f"no prompt-disjoint split of {target} rows with about {exact_desirable:.0f} desirable was "
            f"found (best: {desirable + undesirable} rows, {desirable} desirable; the largest group of rows sharing "
            "a prompt has " + f"{largest}); try another test size or seed", given=given,
        )
    if both_labels is None:  # a part of a split, whose labels the whole split's check covers
        return sorted(taken)
    if not both_labels:  # desirable rows only (SFT): both sides need some
        if desirable == 0 or sum(labels) == desirable:
            side = "test" if desirable == 0 else "train"
            raise OptionError("{given} leaves the " + f"{side} split with no desirable row; give a " + (
                "larger" if side == "test" else "smaller") + " test size", given=given)
        return sorted(taken)
    if desirable == 0 or undesirable == 0:
        raise OptionError(
            "{given} leaves the test split with one label " + f"({desirable} desirable, {undesirable} undesirable "
            "rows), where KTO's batches need both; give a larger test size", given=given,
        )
    if sum(labels) - desirable == 0 or n - sum(labels) - undesirable == 0:
        raise OptionError("{given} leaves the train split with one label; give a smaller test size", given=given)
    return sorted(taken)


def family_held_out(labels: np.ndarray, prompt_keys: np.ndarray, members: np.ndarray, test_size: Union[float, int],
                    seed: int, both_labels: bool = True) -> list:
    """Sorted rows of a family config's test split: claude's rows that claude's own configs hold out with the
    same `test_size` and `seed` (so a model trained on them, then on the family, or the other way, is never
    evaluated on a prompt it trained on), every other member's row of a prompt on either side of that split on
    the same side, and of the rest the same share (`test_size` of claude's rows), prompt-disjoint and stratified
    by member and label (`held_out_rows`). Claude is the family's first member, which every family config reads.

    >>> family_held_out(np.array([True, False, True, False, True, False]), np.array(["p", "q", "r", "s", "p", "t"]),
    ...                 np.array([0, 0, 0, 0, 1, 1]), 0.5, 42)
    [0, 1, 4]
    """
    claude = np.flatnonzero(members == 0)
    tested = claude[np.asarray(held_out_rows(labels[claude].tolist(), prompt_keys[claude].tolist(), test_size, seed,
                                             both_labels=both_labels), dtype=np.int64)]
    others = np.flatnonzero(members != 0)
    sides = np.isin(prompt_keys[others], prompt_keys[tested]), np.isin(prompt_keys[others], prompt_keys[claude])
    taken, free = [*tested.tolist(), *others[sides[0]].tolist()], others[~sides[1]]
    share = test_size if isinstance(test_size, float) else test_size / len(claude)
    wanted = round(share * len(others)) - int(sides[0].sum())
    if len(free) and wanted >= 1:
        picked = held_out_rows(labels[free].tolist(), prompt_keys[free].tolist(), min(wanted, len(free) - 1), seed,
                               members[free] - 1, both_labels=None)  # claude's part checked the labels
        taken += free[np.asarray(picked, dtype=np.int64)].tolist()
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
    _check_pool(pool, count, label)
    return rng.sample(pool, count)


def _check_pool(pool: list, count: int, label: str) -> None:
    """Without replacement a label gives at most its rows."""
    if count > len(pool):
        raise OptionError(
            "{given} but there are only " + f"{len(pool)} {label} rows to draw from: ask for at most {len(pool)}, or "
            "add {replacement} to oversample", given=Mention(label, count), replacement=Mention("replacement", True),
        )


def _by_label(labels: Sequence[bool]) -> tuple:
    """(desirable rows, undesirable rows), both in source order; a balanced subset needs both."""
    desirable = [i for i, label in enumerate(labels) if label]
    undesirable = [i for i, label in enumerate(labels) if not label]
    if not desirable or not undesirable:
        raise OptionError(
            f"a balanced subset needs both labels, but every row is labelled {bool(desirable)} ({len(labels)} rows); "
            "check the source's labels"
        )
    return desirable, undesirable


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
    prompts: Optional[Sequence] = None,
    row_limit: Optional[int] = None,
) -> list:
    """The published recipe, generalised: one `random.Random(seed)` samples the desirable rows,
    then the undesirable rows, concatenates them in that order and shuffles with the same generator.
    More rows than `row_limit` (what this machine can build) are refused before any is drawn."""
    desirable_rows, undesirable_rows = _by_label(labels)
    n_desirable, n_undesirable = class_counts(
        len(desirable_rows), len(undesirable_rows), desirable=desirable, undesirable=undesirable, ratio=ratio
    )
    beyond = n_desirable > len(desirable_rows) or n_undesirable > len(undesirable_rows)
    if ratio is not None and not replacement and beyond:
        # The smaller label is kept whole, so the source's own ratio bounds what the other can give.
        bound = "at most" if len(undesirable_rows) <= len(desirable_rows) else "at least"
        own = len(desirable_rows) / len(undesirable_rows)
        raise OptionError(
            "{ratio} asks for " + f"{n_desirable} desirable and {n_undesirable} undesirable rows, and the source has "
            f"{len(desirable_rows)} and {len(undesirable_rows)}: give a ratio {bound} {own:.4g} (the "
            "source's own, the smaller label kept whole), or add {replacement} to oversample",
            ratio=Mention("ratio", ratio), replacement=Mention("replacement", True),
        )
    if not replacement:  # what the source can give comes before what the machine can hold
        for pool, count, label in zip((desirable_rows, undesirable_rows), (n_desirable, n_undesirable), LABEL_NAMES):
            _check_pool(pool, count, label)
    if row_limit is not None and n_desirable + n_undesirable > row_limit:
        _refuse_beyond_limit(row_limit, n_desirable, n_undesirable, len(desirable_rows), len(undesirable_rows),
                             desirable, undesirable, ratio)
    rng = random_stream(seed, "selection")
    rows = draw(rng, desirable_rows, n_desirable, replacement, LABEL_NAMES[0])
    rows += draw(rng, undesirable_rows, n_undesirable, replacement, LABEL_NAMES[1])
    return arrange(rows, labels, order, rng, batch_size, prompts)


def balanced_per_member(labels: Sequence[bool], members: Sequence[int], *, ratio: Optional[float] = None,
                        seed: int = PUBLISHED_SEED, replacement: bool = False, order: str = "shuffle",
                        batch_size: Optional[int] = None, prompts: Optional[Sequence] = None,
                        row_limit: Optional[int] = None) -> list:
    """The published recipe within each member of the family (`members`: each row's, an index into the family),
    as the dataset's author balances within each category: each member's rows balanced on their own by
    `balanced_indices` (its smaller label kept whole, or the ratio), then every member's rows together, in
    `order`, by one more `random.Random(seed)`.

    >>> balanced_per_member([True, True, False, True, False, False, False], [0, 0, 0, 1, 1, 1, 1], order="source")
    [0, 2, 3, 6]
    """
    members = np.asarray(members)
    rows = []
    for member in np.unique(members).tolist():
        positions = np.flatnonzero(members == member)
        try:
            picked = balanced_indices([labels[row] for row in positions.tolist()], ratio=ratio, seed=seed,
                                      replacement=replacement, order="source")
        except OptionError as error:
            raise error.about(f"{list(MEMBERS)[member]} (per_member): ") from None
        rows += positions[picked].tolist()
    if row_limit is not None and len(rows) > row_limit:
        raise OptionError(f"the selection needs {len(rows):,} rows, and this machine can build {row_limit:,} "
                          f"({_bounds(row_limit)}): free memory or disk space, or build elsewhere")
    return arrange(rows, labels, order, random_stream(seed, "selection"), batch_size, prompts)


def _refuse_beyond_limit(row_limit: int, n_desirable: int, n_undesirable: int, source_desirable: int,
                         source_undesirable: int, desirable: Optional[int], undesirable: Optional[int],
                         ratio: Optional[float]) -> None:
    """The counts ask for more rows than `row_limit`: name the option given and the largest value that fits,
    or, where none fits (the label kept whole alone is too many), say so."""
    asked = n_desirable + n_undesirable
    if ratio is not None:  # the smaller label is kept whole, the other follows the ratio
        whole, given = min(source_desirable, source_undesirable), Mention("ratio", ratio)
        if whole < row_limit and source_undesirable <= source_desirable:
            _refuse_beyond(row_limit, asked, given,
                           Mention("ratio", math.floor((row_limit - whole) / whole * 1e4) / 1e4), "at most")
        if whole < row_limit:
            _refuse_beyond(row_limit, asked, given,
                           Mention("ratio", math.ceil(whole / (row_limit - whole) * 1e4) / 1e4), "at least")
        other = whole
    elif desirable is None and undesirable is None:  # the defaults: no count to name, the machine is short
        raise OptionError(
            f"the selection needs {asked:,} rows, and this machine can build {row_limit:,} ({_bounds(row_limit)}, at "
            "the source's mean line per row): free memory or disk space, or build elsewhere")
    else:
        name = "desirable" if desirable is not None and (undesirable is None or n_desirable >= n_undesirable) \
            else "undesirable"
        given = Mention(name, n_desirable if name == "desirable" else n_undesirable)
        other = n_undesirable if name == "desirable" else n_desirable
        if other < row_limit:
            _refuse_beyond(row_limit, asked, given, Mention(name, row_limit - other), "at most",
                           f" (with {other:,} {'undesirable' if name == 'desirable' else 'desirable'} rows)")
    raise OptionError(
        "{given} asks for " + f"{asked:,} rows, and this machine can build {row_limit:,} ({_bounds(row_limit)}), "
        f"fewer than the {other:,} rows of the other label alone: free memory or disk, or ask for fewer rows of both "
        "labels", given=given)


def _refuse_beyond(row_limit: int, asked: int, given: Mention, largest: Mention, bound: str, rest: str = "") -> None:
    """More rows were asked for than this machine can build: say how large the option may be."""
    raise OptionError(
        "{given} asks for " + f"{asked:,} rows, more than this machine can build: {row_limit:,} fit "
        f"{_bounds(row_limit)} ({BYTES_PER_PLANNED_ROW} bytes of memory and the source's mean line of disk per row); "
        f"give {bound} " + "{largest}" + rest, given=given, largest=largest)


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
    prompts: Optional[Sequence] = None,
) -> list:
    """Both labels with matching completion lengths (coarsened exact matching): each stratum of
    `length_strata_of` (cut at the smaller label's quantiles) keeps as many rows of each label as its
    smaller side has (or `ratio` desirable rows per undesirable row), drawn per stratum, desirable then
    undesirable, by one `random.Random(seed)`; then desirable before undesirable, in `order`."""
    desirable_rows, undesirable_rows = _by_label(labels)
    lengths = np.asarray(completion_chars)
    smaller = desirable_rows if len(desirable_rows) < len(undesirable_rows) else undesirable_rows
    most = len(smaller) + 1  # from there on every length of the smaller label is an edge: more strata change nothing
    if strata > most:
        name = LABEL_NAMES[smaller is undesirable_rows]
        raise OptionError("{strata}: the smaller label has " + f"{len(smaller)} {name} rows, whose lengths cut at most "
                          f"{most} strata; give at most {most}", strata=Mention("length_strata", strata))
    stratum = length_strata_of(lengths, lengths[smaller], strata).tolist()
    rng = random_stream(seed, "selection")
    picked = ([], [])
    for level in range(strata):
        pools = tuple([i for i in rows if stratum[i] == level] for rows in (desirable_rows, undesirable_rows))
        n_undesirable = min(len(pools[1]), math.floor(len(pools[0]) / (ratio or 1)))
        counts = (min(len(pools[0]), round((ratio or 1) * n_undesirable)), n_undesirable)
        for taken, pool, count, label in zip(picked, pools, counts, LABEL_NAMES):
            taken += draw(rng, pool, count, False, label)
    if not picked[0] or not picked[1]:
        raise OptionError(
            "{strata} leaves " + f"{len(picked[0])} desirable and {len(picked[1])} undesirable rows: no stratum "
            "holds both labels; use fewer strata", strata=Mention("length_strata", strata),
        )
    return arrange(picked[0] + picked[1], labels, order, rng, batch_size, prompts)


def arrange(rows: list, labels: Sequence[bool], order: str, rng: random.Random, batch_size: Optional[int],
            prompts: Optional[Sequence] = None) -> list:
    """Put the picked `rows` in `order`: source position, the generator's shuffle, or mixed batches (in
    which, given the rows' `prompts`, rows of one prompt stay out of one batch wherever they can)."""
    if order == "source":
        return sorted(rows)
    if order == "shuffle":
        rng.shuffle(rows)
        return rows
    if order == "mixed":
        if batch_size > len(rows):
            raise OptionError("{given} is more than the " + f"{len(rows)} rows to arrange: every batch would be the "
                              f"whole split; give at most {len(rows)}", given=Mention("batch_size", batch_size))
        picked_prompts = None if prompts is None else np.asarray(prompts)[np.asarray(rows, dtype=np.int64)]
        permutation = mixed_order([labels[row] for row in rows], batch_size, rng, picked_prompts)
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


def mixed_order(labels: Sequence[bool], batch_size: int, rng: random.Random,
                prompts: Optional[Sequence] = None) -> list:
    """A permutation of positions in which every `batch_size` consecutive rows (any window, not only
    aligned batches, so a shifted batch boundary stays mixed) hold both labels: the majority is cut
    into m + 1 runs of as equal length as the counts allow, one minority row between runs, and each
    class is shuffled by `rng`. With `prompts` (one key per position), rows that share a prompt are then
    kept apart too (`spread_prompts`)."""
    desirable_rows = [i for i, label in enumerate(labels) if label]
    undesirable_rows = [i for i, label in enumerate(labels) if not label]
    smallest = smallest_mixed_batch_size(len(desirable_rows), len(undesirable_rows))
    if smallest is None or batch_size < smallest:
        reason = (
            f"the smallest batch size that works is {smallest}"
            if smallest
            else "every row has the same label, so no batch can be mixed"
        )
        raise OptionError(
            "{given} cannot give every batch both labels with " + f"{len(desirable_rows)} desirable and "
            f"{len(undesirable_rows)} undesirable rows: {reason}", given=Mention("batch_size", batch_size),
        )
    minority, majority = sorted((undesirable_rows, desirable_rows), key=len)  # a tie: undesirable first
    rng.shuffle(minority)
    rng.shuffle(majority)
    m, big = len(minority), len(majority)
    order = []
    for run in range(m + 1):
        order += majority[run * big // (m + 1) : (run + 1) * big // (m + 1)]
        if run < m:
            order.append(minority[run])
    return order if prompts is None else spread_prompts(order, labels, prompts, batch_size)


def spread_prompts(order: list, labels: Sequence[bool], prompts: Sequence, batch_size: int) -> list:
    """`order` with rows that share a prompt kept out of any `batch_size` consecutive rows wherever a later
    row of the same label can take a clashing row's place: TRL pairs each row of a batch with another's
    completion for the KL term, and a pair of one prompt is no mismatched pair. Only rows of one label
    swap, so every window keeps both labels; an order without a clash, or one the swaps would not
    improve (few prompts among many rows), is returned as it is.

    >>> spread_prompts([0, 1, 2, 3], [True, True, False, True], ["p", "p", "q", "r"], 2)
    [0, 3, 2, 1]
    """
    keys = np.asarray(prompts)
    before = _prompt_clashes(keys[np.asarray(order, dtype=np.int64)], batch_size)
    if not len(before):  # checked in numpy: a large split of distinct prompts never enters the loop below
        return list(order)
    ids = np.unique(keys, return_inverse=True)[1].reshape(-1).tolist()  # one small integer per distinct prompt
    spread = list(order)
    for position in range(int(before[0]), len(spread)):
        window = {ids[row] for row in spread[max(0, position - batch_size + 1) : position]}
        if ids[spread[position]] not in window:
            continue
        label = labels[spread[position]]
        for later in range(position + 1, len(spread)):
            if labels[spread[later]] == label and ids[spread[later]] not in window:
                spread[position], spread[later] = spread[later], spread[position]
                break
    after = _prompt_clashes(keys[np.asarray(spread, dtype=np.int64)], batch_size)
    return spread if len(after) < len(before) else list(order)


def _prompt_clashes(keys: np.ndarray, batch_size: int) -> np.ndarray:
    """Positions whose key also sits among the `batch_size - 1` keys before them."""
    found = [np.flatnonzero(keys[gap:] == keys[:-gap]) + gap for gap in range(1, min(batch_size, len(keys)))]
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
