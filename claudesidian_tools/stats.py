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
    TEMPLATE_ERRORS,
    TRL_DEFAULT_MAX_LENGTH,
    assistant_tokens,
    completion_histogram,
    length_report,
    length_summary,
    long_prompt_fate,
    message_chars,
    sequences,
    token_lengths,
    tool_output_chars,
    tools_tokens,
    trainer_name,
)

# Batch sizes whose single-label batches every config reports (and its own mixed batch size).
REPORTED_BATCH_SIZES = (2, 4, 8)
FIRST_ROWS = 50
TOP_REASONS = 10
TOP_MEMBER_REASONS = 3
_MEMBER_INDEX = {name: index for index, name in enumerate(cs.MEMBERS)}
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
    """The numbers of one split, accumulated batch by batch: per row a label byte, a few lengths, two
    16-byte digests and the first tool-call check it fails (never the text), so memory follows the row
    count, not the text. `schemas` are the tool schemas its calls are checked against; `checks` their results
    where the builder's plan has them (`cs.ReplyChecks`), else each reply is checked here."""

    def __init__(self, layout: str, tokenizer=None, schemas: cs.ToolSchemas | None = None,
                 checks: cs.ReplyChecks | None = None):
        self.layout, self.tokenizer, self.schemas, self.checks = cs.LAYOUTS[layout], tokenizer, schemas, checks
        self.rows = 0
        self.labels = bytearray()
        self.prompt_chars, self.reply_chars, self.tools_chars = array.array("q"), array.array("q"), array.array("q")
        self.prompt_tokens, self.full_tokens, self.tools_tokens = array.array("q"), array.array("q"), array.array("q")
        self.loss_tokens = array.array("q")
        self.loss_chars = self.tool_output_chars = 0
        self._rows, self._prompts = bytearray(), bytearray()
        self._distinct_prompts = None
        self._first_failed = bytearray()
        self._reasons = (Counter(), Counter())  # desirable, undesirable
        self._unanswered = [0, 0]  # rows with a call that got no result: desirable, undesirable
        self._replies = 0  # the labelled replies taken so far (two per pair): a place in `checks`
        self._unrenderable: list[int] = []  # positions of the rows the chat template cannot render
        self._unrenderable_reason = ""
        # A family config's rows: each one's member (an index into cs.MEMBERS), and the reasons per member.
        self._members = bytearray()
        self._member_reasons: dict[tuple, Counter] = {}

    def add(self, batch: Mapping[str, list]) -> None:
        """Take one columnar batch (`{column: [values]}`, as `Dataset.iter` and the builder yield)."""
        first = self.rows
        self.rows += len(next(iter(batch.values())))
        self._distinct_prompts = None
        for values in zip(*batch.values()):
            self._rows += cs.value_digest(tuple(map(_plain, values)))
        labels, prompts, replies = self.layout.replies(batch)
        per_row = 2 if self.layout.labels == "pairs" else 1  # a pair's two replies share its prompt (and tools)
        self.labels += bytes(map(bool, labels))
        self.prompt_chars.extend(map(message_chars, prompts))
        self.reply_chars.extend(map(message_chars, replies))
        if self.layout.tools:  # the tools block is part of every prompt the template renders
            self.tools_chars.extend(len(tools if isinstance(tools, str) else json.dumps(tools))
                                    for tools in batch["tools"] for _ in range(per_row))
        for prompt in prompts[::per_row]:  # a decision's prompt is its source row's: the talk before its reply
            self._prompts += cs.messages_digest(prompt[: cs.reply_start(prompt)] if self.layout.turns else prompt)
        members = [_MEMBER_INDEX[name] for name in batch["source"]] if "source" in batch else [None] * len(replies)
        if "source" in batch:
            self._members += bytes(members)
        for label, prompt, reply, member in zip(labels, prompts, replies, members):
            self._add_reply(label, prompt, reply, member)
            self._replies += 1
        if self.tokenizer is not None:
            tools = [listed for listed in batch["tools"] for _ in range(per_row)] if self.layout.tools else None
            self._add_tokens(prompts, replies, tools, [first + index // per_row for index in range(len(replies))])

    def _add_reply(self, label: bool, prompt: list, reply: list, member: int | None = None) -> None:
        """One labelled reply's calls (checked against the schemas) and what the trainer's loss sees of it. Where
        the builder's plan has the replies' checks (`self.checks`), the reply is not parsed again."""
        if self.checks is not None:
            place = self._replies
            unanswered, results = bool(self.checks.unanswered[place]), int(self.checks.result_chars[place])
        else:
            parsed = cs.calls_of(reply)
            unanswered, results = parsed.unanswered, parsed.result_chars
            if self.schemas is not None:
                checked = cs.check_reply(parsed, self.schemas)
                self._first_failed.append(checked.first_failed)
                reasons = [(reason.code, reason.tool, reason.parameter) for reason in checked.reasons]
                self._reasons[0 if label else 1].update(reasons)
                if member is not None:
                    self._member_reasons.setdefault((member, 0 if label else 1), Counter()).update(reasons)
        self._unanswered[0 if label else 1] += unanswered
        if self.layout.trainer:
            seen = self.layout.loss_messages(prompt, reply)
            self.loss_chars += message_chars(seen)
            if self.layout.trainer == "sft":  # the loss sees the assistant's turns: a tools layout's results apart
                self.tool_output_chars += tool_output_chars([message for message in seen if message not in reply]) + (
                    0 if self.layout.tools else results)
            else:  # the completion, results and all
                self.tool_output_chars += results

    def _add_tokens(self, prompts: list, replies: list, tools: list | None, positions: list) -> None:
        """Token lengths of each reply as its trainer tokenizes it; a row the chat template cannot render is
        counted and named (`unrenderable`), not a crash, and its tokens are left out of the figures."""
        try:
            counted = self._tokens(prompts, replies, tools)
        except TEMPLATE_ERRORS:  # find the rows one by one
            counted = []
            for row in range(len(replies)):
                try:
                    counted.append(self._tokens(prompts[row : row + 1], replies[row : row + 1],
                                                None if tools is None else tools[row : row + 1]))
                except TEMPLATE_ERRORS as error:
                    if positions[row] not in self._unrenderable:
                        self._unrenderable.append(positions[row])
                    self._unrenderable_reason = self._unrenderable_reason or (
                        f"{type(error).__name__}: {' '.join(str(error).split())[:200]}")
                    counted.append([np.array([-1])] * 4)
            counted = [np.concatenate(column) for column in zip(*counted)]
        for column, values in zip((self.prompt_tokens, self.full_tokens, self.loss_tokens, self.tools_tokens),
                                  counted):
            column.extend(values.tolist())

    def _tokens(self, prompts: list, replies: list, tools: list | None) -> list:
        """(prompt, full, loss, tools block) tokens per reply: KTO and DPO learn from the completion's tokens,
        SFT (`assistant_only_loss`) from the assistant's turns."""
        prompt_tokens, full_tokens = token_lengths(self.tokenizer, prompts, replies, tools)
        if self.layout.trainer == "sft":
            loss = assistant_tokens(self.tokenizer, [[*prompt, *reply] for prompt, reply in zip(prompts, replies)],
                                    tools)
        else:
            loss = full_tokens - prompt_tokens
        block = tools_tokens(self.tokenizer, prompts, tools) if tools is not None else np.zeros(len(replies), np.int64)
        return [prompt_tokens, full_tokens, loss, block]

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
        prompt_chars = np.frombuffer(self.prompt_chars, dtype=np.int64)
        reply_chars = np.frombuffer(self.reply_chars, dtype=np.int64)
        tools_chars = np.frombuffer(self.tools_chars, dtype=np.int64) if self.layout.tools else None
        tokens = {}
        if self.tokenizer is not None:
            tokens = {"prompt_tokens": np.frombuffer(self.prompt_tokens, dtype=np.int64),
                      "full_tokens": np.frombuffer(self.full_tokens, dtype=np.int64)}
        stats["lengths"] = length_report(labels, prompt_chars, reply_chars, tools_chars=tools_chars,
                                         max_length=max_length or TRL_DEFAULT_MAX_LENGTH, **tokens)
        if self.tokenizer is not None and self.layout.tools:
            rendered = tokens["full_tokens"] >= 0
            stats["lengths"]["tools_tokens"] = length_summary(np.frombuffer(self.tools_tokens, np.int64)[rendered])
        stats["completion_histogram"] = completion_histogram(labels, reply_chars)
        if self.layout.trainer:
            stats["loss"] = self._loss(prompt_chars, reply_chars, tools_chars)
        if self.schemas is not None:
            stats["tool_calls"] = self._funnel(labels)
        if self._members:
            stats["members"] = self._by_member(labels, reply_chars)
        if self.tokenizer is not None:
            stats["unrenderable"] = {"rows": len(self._unrenderable), "positions": sorted(self._unrenderable),
                                     "reason": self._unrenderable_reason}
        return stats

    def _loss(self, prompt_chars: np.ndarray, reply_chars: np.ndarray, tools_chars: np.ndarray | None) -> dict:
        """What the trainer's loss sees: its share of every training sequence (characters; tokens with a
        tokenizer), and the share of it that is tool output, which no policy writes."""
        total = int(prompt_chars.sum() + reply_chars.sum() + (0 if tools_chars is None else tools_chars.sum()))
        loss = {"trainer": self.layout.trainer, "sees": LOSS_SEES[self.layout.trainer],
                "characters": _share(self.loss_chars, total),
                "tool_output_share": round(self.tool_output_chars / self.loss_chars, 4) if self.loss_chars else 0.0}
        if self.tokenizer is not None:
            full = np.frombuffer(self.full_tokens, dtype=np.int64)
            rendered = full >= 0
            loss["tokens"] = _share(int(np.frombuffer(self.loss_tokens, dtype=np.int64)[rendered].sum()),
                                    int(full[rendered].sum()))
        return loss

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
            # Per batch size: whether the split ends in a partial batch of one label (the mixed order keeps every
            # whole window mixed, but rows % size left over can be the end of one label's run).
            "last_batch_one_label": {str(size): _one_label_tail(labels, size) for size in sorted(set(batch_sizes))},
            "first_labels": labels[: 16 * max(batch_sizes)].tolist(),
        }

    def _funnel(self, labels: np.ndarray) -> dict:
        """Per label: rows, rows passing each check and every check before it, the most common reasons, and
        the rows holding a call that got no result (a whole reply only: a decision's result comes after it);
        for undesirable rows also how many are bad by format and how many are WELL_FORMED_BUT_FAILING (what
        KTO must learn from)."""
        first_failed, reasons_by_label = np.frombuffer(self._first_failed, dtype=np.uint8), self._reasons
        if self.checks is not None:  # the builder's plan checked them
            first_failed, reasons_by_label = self.checks.first_failed, self.checks.reasons
        funnel = {"schemas_sha256": self.schemas.sha256, "checks": list(cs.CHECKS)}
        for index, (name, rows, reasons) in enumerate(zip(cs.LABEL_NAMES, (labels, ~labels), reasons_by_label)):
            failed = first_failed[rows]
            ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:TOP_REASONS]
            funnel[name] = {
                "rows": int(rows.sum()),
                "passing": {check: int((failed > index).sum()) for index, check in enumerate(cs.CHECKS)},
                "top_reasons": [{"code": code, "tool": tool, "parameter": parameter, "count": count}
                                for (code, tool, parameter), count in ranked],
            }
            if not self.layout.turns:
                funnel[name]["calls_without_result"] = self._unanswered[index]
            if name == "undesirable":
                funnel[name]["bad_format"] = int((failed == 0).sum())
                funnel[name]["well_formed_but_failing"] = int(((failed > 0) & (failed < len(cs.CHECKS))).sum())
        return funnel

    def _by_member(self, labels: np.ndarray, reply_chars: np.ndarray) -> dict:
        """Per member of the family the split holds: its rows and share of the split, each label's rows, reply
        lengths and tool-call funnel (rows passing each check and every check before it) with its top reasons."""
        members = np.frombuffer(self._members, dtype=np.uint8)
        first_failed = np.frombuffer(self._first_failed, dtype=np.uint8) if self.schemas is not None else None
        result = {}
        for index, name in enumerate(cs.MEMBERS):
            rows = members == index
            if not rows.any():
                continue
            entry = {"rows": int(rows.sum()), "share": round(float(rows.mean()), 4)}
            for label_index, (label, mask) in enumerate(zip(cs.LABEL_NAMES, (labels, ~labels))):
                held = rows & mask
                figures = {"rows": int(held.sum()), "reply_chars": length_summary(reply_chars[held])}
                if first_failed is not None:
                    failed = first_failed[held]
                    ranked = sorted(self._member_reasons.get((index, label_index), Counter()).items(),
                                    key=lambda item: (-item[1], item[0]))[:TOP_MEMBER_REASONS]
                    figures["passing"] = {check: int((failed > position).sum())
                                          for position, check in enumerate(cs.CHECKS)}
                    figures["top_reasons"] = [{"code": code, "tool": tool, "parameter": parameter, "count": count}
                                              for (code, tool, parameter), count in ranked]
                entry[label] = figures
            result[name] = entry
        return result


# What each trainer's loss sees of a row (its recipe sets `assistant_only_loss` for SFT).
LOSS_SEES = {"kto": "the completion", "dpo": "the chosen and the rejected completion",
             "sft": "the assistant's turns (assistant_only_loss)"}
# Undesirable rows whose calls parse but fail a check after the first: one wording for stats, card and README.
WELL_FORMED_BUT_FAILING = "well-formed but failing a later check"


def _share(part: int, total: int) -> dict:
    return {"in_loss": part, "total": total, "share": round(part / total, 4) if total else 0.0}


def _one_label_tail(labels: np.ndarray, batch_size: int) -> bool:
    """Whether the rows after the last whole batch of `batch_size` hold one label (a partial batch's)."""
    left = len(labels) % batch_size
    return bool(left) and len(set(labels[len(labels) - left :].tolist())) == 1


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


def print_stats(name: str, stats: Mapping, layout: cs.Layout) -> None:
    """The text form of `stats` of a config in `layout`: one line per number, its name in a column of its own."""
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
        print(format_lengths(numbers["lengths"], layout.label_words, layout.trainer))
        if "loss" in numbers:
            print(format_loss(numbers["loss"]))
        if "tool_calls" in numbers:
            print(format_tool_calls(numbers["tool_calls"], layout.label_words))
        if numbers.get("unrenderable", {}).get("rows"):
            print(format_unrenderable(numbers["unrenderable"], layout.trainer))
        if "members" in numbers:
            print(format_members(numbers["members"]))
    if "shared_prompts" in stats:
        line("prompts shared by splits", stats["shared_prompts"])


def format_tool_calls(funnel: Mapping, words: Mapping[str, str]) -> str:
    """The tool-call funnel as text: per label (called `words[label]`) the rows passing each check in order,
    and the top reasons."""
    lines = [f"{'tool calls checked against':<26} tool schemas sha256 {funnel['schemas_sha256']}"]
    for label in cs.LABEL_NAMES:
        numbers = funnel[label]
        if not numbers["rows"]:
            continue
        passing = ", ".join(f"{check} {count}" for check, count in numbers["passing"].items())
        text = f"{numbers['rows']} rows; passing {passing}"
        if "bad_format" in numbers:
            text += (f"; bad format {numbers['bad_format']}, {WELL_FORMED_BUT_FAILING} "
                     f"{numbers['well_formed_but_failing']}")
        if numbers.get("calls_without_result"):
            text += f"; {cs.plural(numbers['calls_without_result'], 'row')} with a call that got no result"
        lines.append(f"{words[label] + ' tool calls':<26} {text}")
        reasons = "; ".join(f"{reason_text(reason)} {reason['count']}" for reason in numbers["top_reasons"][:5])
        if reasons:
            lines.append(f"{'  top reasons':<26} {reasons}")
    return "\n".join(lines)


def reason_text(reason: Mapping) -> str:
    """`unknown_parameter memoryManager_createState.snapshot`: a reason's code, its tool and parameter."""
    parameter = f".{reason['parameter']}" if reason["parameter"] else ""
    return f"{reason['code']} {reason['tool'] or '(no name)'}{parameter}"


def format_members(members: Mapping) -> str:
    """Per member of the family: its rows and share, each label's rows, rows passing every check and median
    reply length, and the top reasons its calls fail."""
    lines = []
    for name, entry in members.items():
        held = [label for label in cs.LABEL_NAMES if entry[label]["rows"]]
        text = (f"{entry['rows']} rows ({entry['share']:.1%} of the split): "
                + ", ".join(f"{entry[label]['rows']} {label}" for label in cs.LABEL_NAMES))
        if held and "passing" in entry[held[0]]:
            text += "; passing every check " + ", ".join(
                f"{entry[label]['passing'][cs.CHECKS[-1]]} {label}" for label in held)
        text += "; median reply chars " + ", ".join(
            f"{entry[label]['reply_chars']['median']:g} {label}" for label in held)
        lines.append(f"{'member ' + name:<26} {text}")
        reasons = "; ".join(f"{label}: " + ", ".join(f"{reason_text(reason)} {reason['count']}"
                                                       for reason in entry[label].get("top_reasons", ()))
                            for label in held if entry[label].get("top_reasons"))
        if reasons:
            lines.append(f"{'  top reasons':<26} {reasons}")
    return "\n".join(lines)


def format_loss(loss: Mapping) -> str:
    """What the trainer's loss sees, as text: its share of the training sequences, and of tool output in it."""
    def share(figures: Mapping, unit: str) -> str:
        return f"{figures['share']:.1%} of the {unit} ({figures['in_loss']:,} of {figures['total']:,})"

    seen = share(loss["characters"], "characters") + (f"; {share(loss['tokens'], 'tokens')}" if "tokens" in loss
                                                       else "")
    output = f"{loss['tool_output_share']:.1%} of the characters the loss sees (tool results, which no policy writes)"
    return f"{'loss sees':<26} {loss['sees']}: {seen}\n{'tool output in the loss':<26} {output}"


def format_unrenderable(unrenderable: Mapping, trainer: str | None) -> str:
    """The rows the tokenizer's chat template cannot render, named by their position in the split."""
    positions = ", ".join(map(str, unrenderable["positions"][:10])) + (", ..." if unrenderable["rows"] > 10 else "")
    trainer_words = f"{trainer_name(trainer) if trainer else 'a trainer'} would stop at them"
    return (f"{'chat template cannot render':<26} {cs.plural(unrenderable['rows'], 'row')} (rows {positions}, "
            f"counting from 0; left out of the token figures): {unrenderable['reason']}; {trainer_words}: leave "
            "them out (`dataset.select`) or train with a template that renders them")


def format_lengths(report: Mapping, words: Mapping[str, str], trainer: str | None = None) -> str:
    """The length report as text: per label (called `words[label]`) the reply (and prompt) lengths, the
    distance, truncation (what `trainer` does with a row too long)."""
    lines = []
    for label in cs.LABEL_NAMES:
        numbers = report[label]
        if not numbers["rows"]:
            continue
        for column, title in (("completion_chars", "reply chars"), ("prompt_chars", "prompt chars"),
                              ("tools_chars", "tools chars"), ("completion_tokens", "reply tokens"),
                              ("prompt_tokens", "prompt tokens")):
            if column in numbers:
                summary = numbers[column]
                lines.append(f"{words[label] + ' ' + title:<26} min {summary['min']}, quartiles "
                             f"{summary['q1']:g} / {summary['median']:g} / {summary['q3']:g}, max {summary['max']}"
                             + (_COLUMN_NOTES.get(column, "") if "tools_chars" in numbers else ""))
    if report.get("ks_completion_chars") is not None:
        lines.append(f"{'length distance':<26} {report['ks_completion_chars']} (Kolmogorov-Smirnov, reply "
                     "characters; 0 = the same lengths)")
    if report.get("ks_completion_tokens") is not None:
        lines.append(f"{'length distance':<26} {report['ks_completion_tokens']} (Kolmogorov-Smirnov, reply tokens)")
    if "tools_tokens" in report:
        summary = report["tools_tokens"]
        lines.append(f"{'tools block tokens':<26} min {summary['min']}, quartiles {summary['q1']:g} / "
                     f"{summary['median']:g} / {summary['q3']:g}, max {summary['max']} (in every prompt)"
                     + ("; this chat template renders no tools: the model would never see their definitions"
                        if summary["max"] == 0 else ""))
    if "truncation" in report:
        cut = report["truncation"]
        lines.append(f"{'max_length ' + str(cut['max_length']):<26} {sequences(cut['truncated'], trainer)} truncated, "
                     f"{cut['dropped']} dropped (longest: {cut['longest']} tokens)")
    elif "over_chars_estimate" in report:
        over = report["over_chars_estimate"]
        rows, dropped = over["desirable"] + over["undesirable"], over["prompt_over"]
        lines.append(f"{'max_length ' + str(over['max_length']):<26} about {sequences(rows, trainer)} longer than "
                     f"{over['max_chars']} characters would be cut, {dropped} of them {long_prompt_fate(trainer)} "
                     f"(estimate: {over['assumes']}; --tokenizer counts tokens)")
    return "\n".join(lines)


# What a length column of a tools layout leaves out or adds, said beside its figures.
_COLUMN_NOTES = {"prompt_chars": " (the messages; the tools block apart)",
                 "tools_chars": " (the tool definitions in every prompt, as JSON)"}
