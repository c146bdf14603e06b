"""What a subset will teach: label counts and mix, duplicates, batch mix, KTO weights, lengths by
label, and prompts shared between splits and configs.

One pass over the rows (`SplitStats.add`, batch by batch) gives every number, so the export counts
them while it writes the Parquet files; `stats`, the card, the recipes and the figures all read them.
Every layout is seen as labelled replies to prompts, as its record (`cs.LAYOUTS`) says where they are.
"""

from __future__ import annotations

import array
import json
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

import claudesidian_synthetic as cs
from claudesidian_tools.kto import homogeneous_batches, weights_for_counts
from claudesidian_tools.lengths import (
    TRL_DEFAULT_MAX_LENGTH,
    completion_histogram,
    length_report,
    length_summary,
    message_chars,
    token_lengths,
    tools_tokens,
)

# Batch sizes whose single-label batches every config reports (and its own mixed batch size).
REPORTED_BATCH_SIZES = (2, 4, 8)
FIRST_ROWS = 50
TOP_REASONS = 10
_DIGEST = np.dtype("V16")


def stats_batch_sizes(batch_size: int | None = None) -> list[int]:
    """The batch sizes whose single-label batches are counted: the reported ones and the config's own."""
    return sorted({*REPORTED_BATCH_SIZES, *([batch_size] if batch_size else [])})


def _plain(value):
    """A column value as plain types for a digest, the same whatever order its keys came in."""
    if type(value) is list and all(type(item) is dict and item.keys() == {"role", "content"} for item in value):
        return tuple((message["role"], message["content"]) for message in value)  # the common case, quickly
    if type(value) is dict and value.keys() <= set(cs.CONTEXT_FIELDS):
        return tuple(value.get(name) for name in cs.CONTEXT_FIELDS)
    return cs.json_digest(value) if type(value) in (list, dict) else value


class SplitStats:
    """The numbers of one split, accumulated batch by batch: per row a label byte, two lengths, two
    16-byte digests and the first tool-call check it fails (never the text), so memory follows the row
    count, not the text. `schemas` are the tool schemas its calls are checked against; `checks` their results
    where the builder's plan has them (`cs.ReplyChecks`), else each reply is checked here."""

    def __init__(self, layout: str, tokenizer=None, schemas: cs.ToolSchemas | None = None,
                 checks: cs.ReplyChecks | None = None):
        self.layout, self.tokenizer, self.schemas, self.checks = cs.LAYOUTS[layout], tokenizer, schemas, checks
        self.rows = 0
        self.labels = bytearray()
        self.prompt_chars, self.reply_chars = array.array("q"), array.array("q")
        self.prompt_tokens, self.full_tokens, self.tools_tokens = array.array("q"), array.array("q"), array.array("q")
        self._rows, self._prompts = bytearray(), bytearray()
        self._distinct_prompts = None
        self._first_failed = bytearray()
        self._reasons = (Counter(), Counter())  # desirable, undesirable

    def add(self, batch: Mapping[str, list]) -> None:
        """Take one columnar batch (`{column: [values]}`, as `Dataset.iter` and the builder yield)."""
        self.rows += len(next(iter(batch.values())))
        self._distinct_prompts = None
        for values in zip(*batch.values()):
            self._rows += cs.value_digest(tuple(map(_plain, values)))
        labels, prompts, replies = self.layout.replies(batch)
        self.labels += bytes(map(bool, labels))
        prompt_chars = list(map(message_chars, prompts))
        if self.layout.tools:  # the tools block is part of every prompt the template renders
            per_row = [len(tools if isinstance(tools, str) else json.dumps(tools)) for tools in batch["tools"]]
            pairs = self.layout.labels == "pairs"
            prompt_chars = [chars + per_row[index // 2 if pairs else index] for index, chars in enumerate(prompt_chars)]
        self.prompt_chars.extend(prompt_chars)
        self.reply_chars.extend(map(message_chars, replies))
        for prompt in prompts[:: 2 if self.layout.labels == "pairs" else 1]:
            self._prompts += cs.messages_digest(prompt)
        if self.schemas is not None and self.checks is None:  # else the builder's plan has them
            for label, reply in zip(labels, replies):
                checked = cs.check_reply(cs.calls_of(reply), self.schemas)
                self._first_failed.append(checked.first_failed)
                self._reasons[0 if label else 1].update((reason.code, reason.tool, reason.parameter)
                                                       for reason in checked.reasons)
        if self.tokenizer is not None:
            tools = None
            if self.layout.tools:  # a pair's two replies share its prompt's tools
                tools = [listed for listed in batch["tools"] for _ in range(2 if self.layout.labels == "pairs" else 1)]
                self.tools_tokens.extend(tools_tokens(self.tokenizer, prompts, tools).tolist())
            prompt_tokens, full_tokens = token_lengths(self.tokenizer, prompts, replies, tools)
            self.prompt_tokens.extend(prompt_tokens.tolist())
            self.full_tokens.extend(full_tokens.tolist())

    def prompts(self) -> np.ndarray:
        """The distinct prompts of the split, as sorted digests."""
        if self._distinct_prompts is None:
            self._distinct_prompts = np.unique(np.frombuffer(self._prompts, dtype=_DIGEST))
        return self._distinct_prompts

    def result(self, batch_sizes: Iterable[int] = REPORTED_BATCH_SIZES, max_length: int | None = None) -> dict:
        """The numbers `claudesidian-synthetic stats` prints, as one JSON-ready dict."""
        # Views, not copies, and counts in numpy: at a million rows every copy of a column is megabytes.
        labels = np.frombuffer(self.labels, dtype=bool)
        digests = np.frombuffer(self._rows, dtype=_DIGEST)
        stats = {"rows": self.rows, "duplicates": int(len(digests) - len(np.unique(digests))),
                 "prompts": int(len(self.prompts()))}
        if self.layout.labels != "pairs":
            desirable = int(labels.sum())
            stats.update(desirable=desirable, undesirable=self.rows - desirable)
        if self.layout.labels == "own":
            stats.update(self._batch_mix(labels, batch_sizes))
        tokens = {}
        if self.tokenizer is not None:
            tokens = {"prompt_tokens": np.frombuffer(self.prompt_tokens, dtype=np.int64),
                      "full_tokens": np.frombuffer(self.full_tokens, dtype=np.int64)}
        prompt_chars = np.frombuffer(self.prompt_chars, dtype=np.int64)
        reply_chars = np.frombuffer(self.reply_chars, dtype=np.int64)
        stats["lengths"] = length_report(labels, prompt_chars, reply_chars, max_length=max_length or
                                         TRL_DEFAULT_MAX_LENGTH, **tokens)
        if self.tools_tokens:
            stats["lengths"]["tools_tokens"] = length_summary(np.frombuffer(self.tools_tokens, dtype=np.int64))
        stats["completion_histogram"] = completion_histogram(labels, reply_chars)
        if self.schemas is not None:
            stats["tool_calls"] = self._funnel(labels)
        return stats

    def _batch_mix(self, labels: np.ndarray, batch_sizes: Iterable[int]) -> dict:
        desirable, first = int(np.count_nonzero(labels)), labels[:FIRST_ROWS].tolist()
        undesirable = len(labels) - desirable
        prompts = np.frombuffer(self._prompts, dtype=_DIGEST)
        return {
            "ratio": round(desirable / max(undesirable, 1), 4),
            "first_50": {"desirable": sum(first), "undesirable": len(first) - sum(first)},
            "homogeneous_batches": {str(size): homogeneous_batches(labels, size) for size in sorted(set(batch_sizes))},
            "prompt_repeat_batches": {str(size): prompt_repeat_batches(prompts, size)
                                      for size in sorted(set(batch_sizes))},
            "kto_weights": weights_for_counts(desirable, undesirable) if desirable and undesirable else None,
            "first_labels": labels[: 16 * max(batch_sizes)].tolist(),
        }

    def _funnel(self, labels: np.ndarray) -> dict:
        """Per label: rows, rows passing each check and every check before it, the most common reasons;
        for undesirable rows also how many are bad by format and how many are well-formed calls whose
        fault lies elsewhere (what KTO must learn from)."""
        first_failed, reasons_by_label = np.frombuffer(self._first_failed, dtype=np.uint8), self._reasons
        if self.checks is not None:  # the builder's plan checked them
            first_failed, reasons_by_label = self.checks.first_failed, self.checks.reasons
        funnel = {"schemas_sha256": self.schemas.sha256, "checks": list(cs.CHECKS)}
        for name, rows, reasons in zip(cs.LABEL_NAMES, (labels, ~labels), reasons_by_label):
            failed = first_failed[rows]
            ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:TOP_REASONS]
            funnel[name] = {
                "rows": int(rows.sum()),
                "passing": {check: int((failed > index).sum()) for index, check in enumerate(cs.CHECKS)},
                "top_reasons": [{"code": code, "tool": tool, "parameter": parameter, "count": count}
                                for (code, tool, parameter), count in ranked],
            }
            if name == "undesirable":
                funnel[name]["bad_format"] = int((failed == 0).sum())
                funnel[name]["well_formed_but_failing"] = int(((failed > 0) & (failed < len(cs.CHECKS))).sum())
        return funnel


def prompt_repeat_batches(prompts: np.ndarray, batch_size: int) -> int:
    """How many complete, aligned batches of `batch_size` consecutive rows hold one prompt twice (there
    TRL's in-batch KL pairs may pair a prompt with its own reply)."""
    complete = len(prompts) // batch_size * batch_size
    return sum(len(set(prompts[start : start + batch_size].tolist())) < batch_size
               for start in range(0, complete, batch_size))


def schemas_option(name: str, options: Mapping, tool_schemas: str | None) -> dict:
    """`tool_schemas` as a builder option where the config checks calls with it (its gate, a tools layout);
    elsewhere the schemas only count the calls, and the builder refuses an option that changes nothing."""
    if tool_schemas is None:
        return {}
    config = cs.ClaudesidianSyntheticConfig(name=name, **{**cs.CONFIGS[name].option_defaults(), **options})
    return {"tool_schemas": tool_schemas} if cs.uses_tool_checks(config) else {}


def split_stats(dataset, tokenizer=None, schemas: cs.ToolSchemas | None = None) -> SplitStats:
    """Accumulate a whole Dataset (or IterableDataset) in batches of 1000 rows."""
    stats = SplitStats(cs.layout_of(dataset.column_names).name, tokenizer, schemas)
    for batch in dataset.iter(batch_size=1000):
        stats.add(batch)
    return stats


def count_config(name: str, tokenizer=None, tool_schemas: str | None = None, **options) -> tuple:
    """Build one config from the source, through the builder's plan (no Arrow cache), counting each split
    (its tool calls checked against `tool_schemas`, default the pinned copy); returns ({split: SplitStats},
    {split: what the planning dropped or relabelled})."""
    built = cs.builder(name, **options, **schemas_option(name, options, tool_schemas))
    schemas = cs.load_tool_schemas(tool_schemas)
    counted, notes = {}, {}
    for split, plan in built.plan_splits(tool_schemas=schemas).items():
        counted[split], notes[split] = SplitStats(built.config.layout, tokenizer, schemas, plan.checks), plan.notes
        for batch in built.iter_batches(plan):
            counted[split].add(batch)
    return counted, notes


def config_stats(counted: Mapping[str, SplitStats], batch_size: int | None = None,
                 max_length: int | None = None) -> dict:
    """`stats` of one config: every split's numbers, and the prompts its splits share."""
    stats = {split: each.result(stats_batch_sizes(batch_size), max_length) for split, each in counted.items()}
    if len(counted) > 1:
        stats["shared_prompts"] = shared_between({split: each.prompts() for split, each in counted.items()})
    return stats


def shared_between(prompt_sets: Mapping[str, np.ndarray]) -> int:
    """How many prompts occur in more than one of these sets (0 for a leak-free train/test split)."""
    counts = {}
    for prompts in prompt_sets.values():
        for digest in prompts.tolist():
            counts[digest] = counts.get(digest, 0) + 1
    return sum(count > 1 for count in counts.values())


def held_out_leaks(prompts_by_config: Mapping[str, Mapping[str, np.ndarray]]) -> list[dict]:
    """For every config with a test split: how many of its test prompts each other such config's
    train split holds. 0 everywhere means a model trained in stages on these configs never sees, in
    any stage, a prompt it is evaluated on. (A config without a test split trains on every prompt.)"""
    evaluated = {name: splits for name, splits in prompts_by_config.items() if "test" in splits}
    return [
        {"train": trained, "test": tested, "shared": int(len(np.intersect1d(evaluated[trained]["train"],
                                                                            splits["test"])))}
        for tested, splits in evaluated.items()
        for trained in evaluated
        if trained != tested
    ]


def print_stats(name: str, stats: Mapping) -> None:
    """The text form of `stats`: one line per number, its name in a column of its own."""
    def line(label: str, value) -> None:
        print(f"{label:<26} {value}")

    line("config", name)
    for split, numbers in stats.items():
        if not isinstance(numbers, Mapping):
            continue
        print(f"[{split}]")
        line("rows", numbers["rows"])
        if "desirable" in numbers:
            line("desirable", numbers["desirable"])
            line("undesirable", numbers["undesirable"])
        line("exact duplicates", numbers["duplicates"])
        line("distinct prompts", numbers["prompts"])
        if "first_50" in numbers:
            first, weights = numbers["first_50"], numbers["kto_weights"]
            batches = ", ".join(f"{size}: {count}" for size, count in numbers["homogeneous_batches"].items())
            line("ratio", numbers["ratio"])
            line("first 50 rows", f"{first['desirable']} desirable, {first['undesirable']} undesirable")
            line("single-label batches", f"{batches} (batch size: count)")
            repeats = ", ".join(f"{size}: {count}" for size, count in numbers["prompt_repeat_batches"].items())
            line("batches sharing a prompt", f"{repeats} (batch size: count)")
            if weights:
                line("KTO weights", f"desirable_weight={weights['desirable_weight']}, "
                                    f"undesirable_weight={weights['undesirable_weight']}")
        print(format_lengths(numbers["lengths"], "preference" if "desirable" not in numbers else "labels"))
        if "tool_calls" in numbers:
            print(format_tool_calls(numbers["tool_calls"], "preference" if "desirable" not in numbers else "labels"))
    if "shared_prompts" in stats:
        line("prompts shared by splits", stats["shared_prompts"])


def format_tool_calls(funnel: Mapping, kind: str = "labels") -> str:
    """The tool-call funnel as text: per label the rows passing each check in order, and the top reasons."""
    names = {"desirable": "chosen", "undesirable": "rejected"} if kind == "preference" else {}
    lines = [f"{'tool calls checked against':<26} tool schemas sha256 {funnel['schemas_sha256']}"]
    for label in cs.LABEL_NAMES:
        numbers = funnel[label]
        if not numbers["rows"]:
            continue
        passing = ", ".join(f"{check} {count}" for check, count in numbers["passing"].items())
        text = f"{numbers['rows']} rows; passing {passing}"
        if "bad_format" in numbers:
            text += (f"; bad format {numbers['bad_format']}, well-formed but failing "
                     f"{numbers['well_formed_but_failing']}")
        lines.append(f"{names.get(label, label) + ' tool calls':<26} {text}")
        reasons = "; ".join(f"{reason_text(reason)} {reason['count']}" for reason in numbers["top_reasons"][:5])
        if reasons:
            lines.append(f"{'  top reasons':<26} {reasons}")
    return "\n".join(lines)


def reason_text(reason: Mapping) -> str:
    """`unknown_parameter memoryManager_createState.snapshot`: a reason's code, its tool and parameter."""
    parameter = f".{reason['parameter']}" if reason["parameter"] else ""
    return f"{reason['code']} {reason['tool'] or '(no name)'}{parameter}"


def format_lengths(report: Mapping, kind: str = "labels") -> str:
    """The length report as text: per label the reply (and prompt) lengths, the distance, truncation."""
    names = {"desirable": "chosen", "undesirable": "rejected"} if kind == "preference" else {}
    lines = []
    for label in cs.LABEL_NAMES:
        numbers = report[label]
        if not numbers["rows"]:
            continue
        for column, title in (("completion_chars", "reply chars"), ("prompt_chars", "prompt chars"),
                              ("completion_tokens", "reply tokens"), ("prompt_tokens", "prompt tokens")):
            if column in numbers:
                summary = numbers[column]
                lines.append(f"{names.get(label, label) + ' ' + title:<26} min {summary['min']}, quartiles "
                             f"{summary['q1']:g} / {summary['median']:g} / {summary['q3']:g}, max {summary['max']}")
    if report.get("ks_completion_chars") is not None:
        lines.append(f"{'length distance':<26} {report['ks_completion_chars']} (Kolmogorov-Smirnov, reply "
                     "characters; 0 = the same lengths)")
    if report.get("ks_completion_tokens") is not None:
        lines.append(f"{'length distance':<26} {report['ks_completion_tokens']} (Kolmogorov-Smirnov, reply tokens)")
    if "tools_tokens" in report:
        summary = report["tools_tokens"]
        lines.append(f"{'tools block tokens':<26} min {summary['min']}, quartiles {summary['q1']:g} / "
                     f"{summary['median']:g} / {summary['q3']:g}, max {summary['max']} (in every prompt)")
    if "truncation" in report:
        cut = report["truncation"]
        lines.append(f"{'max_length ' + str(cut['max_length']):<26} {cut['truncated']} rows truncated, "
                     f"{cut['dropped']} dropped (longest: {cut['longest']} tokens)")
    elif "over_chars_estimate" in report:
        over = report["over_chars_estimate"]
        rows, dropped = over["desirable"] + over["undesirable"], over["prompt_over"]
        lines.append(f"{'max_length ' + str(over['max_length']):<26} about {cs.plural(rows, 'row')} longer than "
                     f"{over['max_chars']} characters would be cut, {dropped} of them dropped by TRL's KTOTrainer "
                     f"(their prompt alone is that long) (estimate: {over['assumes']}; --tokenizer counts tokens)")
    return "\n".join(lines)
