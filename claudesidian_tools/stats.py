"""What a subset will teach: label counts and mix, duplicates, batch mix, KTO weights, lengths by
label, and prompts shared between splits and configs.

One pass over the rows (`SplitFigures.add`, batch by batch) gives every figure, so the export computes
them while it writes the Parquet files; `stats`, the card, the recipes and the figures all read them.
Every layout is seen as labelled replies to prompts: a KTO row is one, an SFT conversation one
desirable, a preference pair two (the chosen reply desirable, the rejected one undesirable).
"""

from __future__ import annotations

import array
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

import claudesidian_synthetic as cs
from claudesidian_tools.kto import homogeneous_batches, weights_for_counts

DEFAULT_STATS_BATCH_SIZES = (2, 4, 8)
FIRST_ROWS = 50
_DIGEST = np.dtype([("high", "<u8"), ("low", "<u8")])


def layout_of(column_names: Sequence[str]) -> str:
    """The layout whose columns these are."""
    for layout, features in cs.FEATURES_BY_LAYOUT.items():
        if list(features) == list(column_names):
            return layout
    raise cs.OptionError(f"columns {', '.join(column_names)} are none of the layouts {', '.join(cs.LAYOUTS)}")


def replies_of(batch: Mapping[str, list], layout: str) -> tuple[list, list, list]:
    """(labels, prompts, replies) of a columnar batch: one labelled reply per row, two per pair."""
    if layout == "kto":
        return batch["label"], batch["prompt"], batch["completion"]
    if layout == "conversations":
        return batch["label"], [m[:-1] for m in batch["conversations"]], [m[-1:] for m in batch["conversations"]]
    if layout == "messages":
        messages = batch["messages"]
        return [True] * len(messages), [m[:-1] for m in messages], [m[-1:] for m in messages]
    pairs = len(batch["prompt"])
    return [True, False] * pairs, [p for p in batch["prompt"] for _ in (0, 1)], [
        reply for chosen, rejected in zip(batch["chosen"], batch["rejected"]) for reply in (chosen, rejected)
    ]


def _chars(messages: list) -> int:
    return sum(len(message["content"]) for message in messages)


def _plain(value):
    """A column value as plain tuples, the same whatever order its keys came in: a list of messages,
    the context (its fields in schema order) or a label. Quicker than a general canonical form."""
    if type(value) is list:
        return tuple((message["role"], message["content"]) for message in value)
    if type(value) is dict:
        return tuple(value.get(name) for name in cs.CONTEXT_FIELDS)
    return value


class SplitFigures:
    """The figures of one split, accumulated batch by batch: per row a label byte, two lengths and two
    16-byte digests (never the text), so memory follows the row count, not the text."""

    def __init__(self, layout: str, tokenizer=None):
        self.layout, self.tokenizer = layout, tokenizer
        self.rows = 0
        self.labels = bytearray()
        self.prompt_chars, self.reply_chars = array.array("q"), array.array("q")
        self.prompt_tokens, self.full_tokens = array.array("q"), array.array("q")
        self._rows, self._prompts = bytearray(), bytearray()
        self._distinct_prompts = None

    def add(self, batch: Mapping[str, list]) -> None:
        """Take one columnar batch (`{column: [values]}`, as `Dataset.iter` yields)."""
        columns = list(batch)
        self.rows += len(batch[columns[0]])
        self._distinct_prompts = None
        for values in zip(*batch.values()):
            self._rows += cs.value_digest(tuple(map(_plain, values)))
        labels, prompts, replies = replies_of(batch, self.layout)
        self.labels += bytes(map(bool, labels))
        self.prompt_chars.extend(map(_chars, prompts))
        self.reply_chars.extend(map(_chars, replies))
        for prompt in prompts[:: 2 if self.layout == "preference" else 1]:
            self._prompts += cs.value_digest(_plain(prompt))
        if self.tokenizer is not None:
            from claudesidian_tools.lengths import token_lengths

            prompt_tokens, full_tokens = token_lengths(self.tokenizer, prompts, replies)
            self.prompt_tokens.extend(prompt_tokens.tolist())
            self.full_tokens.extend(full_tokens.tolist())

    def prompts(self) -> np.ndarray:
        """The distinct prompts of the split, as sorted digests."""
        if self._distinct_prompts is None:
            self._distinct_prompts = np.unique(np.frombuffer(self._prompts, dtype=_DIGEST))
        return self._distinct_prompts

    def result(self, batch_sizes: Iterable[int] = DEFAULT_STATS_BATCH_SIZES, max_length: int | None = None) -> dict:
        """The figures `claudesidian-synthetic stats` prints, as one JSON-ready dict."""
        from claudesidian_tools.lengths import TRL_DEFAULT_MAX_LENGTH, completion_histogram, length_report

        # Views, not copies, and counts in numpy: at a million rows every copy of a column is megabytes.
        labels = np.frombuffer(self.labels, dtype=bool)
        digests = np.frombuffer(self._rows, dtype=_DIGEST)
        figures = {"rows": self.rows, "duplicates": int(len(digests) - len(np.unique(digests))),
                   "prompts": int(len(self.prompts()))}
        if self.layout in ("kto", "conversations", "messages"):
            desirable = int(labels.sum())
            figures.update(desirable=desirable, undesirable=self.rows - desirable)
        if self.layout in ("kto", "conversations"):
            figures.update(self._batch_mix(labels, batch_sizes))
        tokens = {}
        if self.tokenizer is not None:
            tokens = {"prompt_tokens": np.frombuffer(self.prompt_tokens, dtype=np.int64),
                      "full_tokens": np.frombuffer(self.full_tokens, dtype=np.int64)}
        prompt_chars = np.frombuffer(self.prompt_chars, dtype=np.int64)
        reply_chars = np.frombuffer(self.reply_chars, dtype=np.int64)
        figures["lengths"] = length_report(labels, prompt_chars, reply_chars, max_length=max_length or
                                           TRL_DEFAULT_MAX_LENGTH, **tokens)
        figures["completion_histogram"] = completion_histogram(labels, reply_chars)
        return figures

    def _batch_mix(self, labels: np.ndarray, batch_sizes: Iterable[int]) -> dict:
        desirable, first = int(np.count_nonzero(labels)), labels[:FIRST_ROWS].tolist()
        undesirable = len(labels) - desirable
        return {
            "ratio": round(desirable / max(undesirable, 1), 4),
            "first_50": {"desirable": sum(first), "undesirable": len(first) - sum(first)},
            "homogeneous_batches": {str(size): homogeneous_batches(labels, size) for size in sorted(set(batch_sizes))},
            "kto_weights": weights_for_counts(desirable, undesirable) if desirable and undesirable else None,
            "first_labels": labels[: 16 * max(batch_sizes)].tolist(),
        }


def split_figures(dataset, tokenizer=None) -> SplitFigures:
    """Accumulate a whole Dataset (or IterableDataset) in batches of 1000 rows."""
    figures = SplitFigures(layout_of(dataset.column_names), tokenizer)
    for batch in dataset.iter(batch_size=1000):
        figures.add(batch)
    return figures


def dataset_stats(dataset, batch_sizes: Iterable[int] = DEFAULT_STATS_BATCH_SIZES, tokenizer=None,
                  max_length: int | None = None) -> dict:
    """The figures of one split."""
    return split_figures(dataset, tokenizer).result(batch_sizes, max_length)


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


def held_out_leaks_of(dataset_dicts: Mapping) -> list[dict]:
    """`held_out_leaks` of built configs (name -> DatasetDict)."""
    return held_out_leaks({name: {split: split_figures(dataset).prompts() for split, dataset in splits.items()}
                           for name, splits in dataset_dicts.items()})


def draw_figure(path: str, name: str, stats: Mapping, batch_size: int | None = None) -> bool:
    """The config's figure (reply lengths by label, rows per split, the first batches' labels) from its
    figures; False when matplotlib is missing."""
    from claudesidian_tools.plots import PlotsUnavailable, plot_config

    train = stats["train"]
    pairs = "desirable" not in train  # preference pairs: a chosen and a rejected reply per row
    splits = {split: figures for split, figures in stats.items() if isinstance(figures, Mapping)}
    try:
        plot_config(
            path,
            title=name,
            histogram=train["completion_histogram"],
            splits={split: {"desirable": figures["rows"]} if pairs else
                    {"desirable": figures["desirable"], "undesirable": figures["undesirable"]}
                    for split, figures in splits.items()},
            first_labels=train.get("first_labels", []),
            batch_size=batch_size or 4,
            label_names={"desirable": "chosen", "undesirable": "rejected"} if pairs else None,
            note="preference pairs: each row holds both replies" if pairs else "one label: no batch mix to show",
        )
    except PlotsUnavailable:
        return False
    return True


def config_stats(dataset_dict: Mapping, batch_size: int | None = None, tokenizer=None,
                 max_length: int | None = None) -> dict:
    """`stats` of one config: every split's figures, and the prompts its splits share."""
    sizes = sorted({*DEFAULT_STATS_BATCH_SIZES, *([batch_size] if batch_size else [])})
    figures = {split: split_figures(dataset, tokenizer) for split, dataset in dataset_dict.items()}
    stats = {split: each.result(sizes, max_length) for split, each in figures.items()}
    if len(figures) > 1:
        stats["shared_prompts"] = shared_between({split: each.prompts() for split, each in figures.items()})
    return stats


def print_stats(name: str, stats: Mapping) -> None:
    """The text form of `stats`: one line per figure, the figure's name in a column of its own."""
    def line(label: str, value) -> None:
        print(f"{label:<26} {value}")

    line("config", name)
    for split, figures in stats.items():
        if not isinstance(figures, Mapping):
            continue
        print(f"[{split}]")
        line("rows", figures["rows"])
        if "desirable" in figures:
            line("desirable", figures["desirable"])
            line("undesirable", figures["undesirable"])
        line("exact duplicates", figures["duplicates"])
        line("distinct prompts", figures["prompts"])
        if "first_50" in figures:
            first, weights = figures["first_50"], figures["kto_weights"]
            batches = ", ".join(f"{size}: {count}" for size, count in figures["homogeneous_batches"].items())
            line("ratio", figures["ratio"])
            line("first 50 rows", f"{first['desirable']} desirable, {first['undesirable']} undesirable")
            line("single-label batches", f"{batches} (batch size: count)")
            if weights:
                line("KTO weights", f"desirable_weight={weights['desirable_weight']}, "
                                    f"undesirable_weight={weights['undesirable_weight']}")
        print(format_lengths(figures["lengths"], "preference" if "desirable" not in figures else "labels"))
    if "shared_prompts" in stats:
        line("prompts shared by splits", stats["shared_prompts"])


def format_lengths(report: Mapping, kind: str = "labels") -> str:
    """The length report as text: per label the reply (and prompt) lengths, the distance, truncation."""
    names = {"desirable": "chosen", "undesirable": "rejected"} if kind == "preference" else {}
    lines = []
    for label in ("desirable", "undesirable"):
        figures = report[label]
        if not figures["rows"]:
            continue
        for column, title in (("completion_chars", "reply chars"), ("prompt_chars", "prompt chars"),
                              ("completion_tokens", "reply tokens"), ("prompt_tokens", "prompt tokens")):
            if column in figures:
                summary = figures[column]
                lines.append(f"{names.get(label, label) + ' ' + title:<26} min {summary['min']}, quartiles "
                             f"{summary['q1']:g} / {summary['median']:g} / {summary['q3']:g}, max {summary['max']}")
    if report.get("ks_completion_chars") is not None:
        lines.append(f"{'length distance':<26} {report['ks_completion_chars']} (Kolmogorov-Smirnov, reply "
                     "characters; 0 = the same lengths)")
    if report.get("ks_completion_tokens") is not None:
        lines.append(f"{'length distance':<26} {report['ks_completion_tokens']} (Kolmogorov-Smirnov, reply tokens)")
    if "truncation" in report:
        cut = report["truncation"]
        lines.append(f"{'max_length ' + str(cut['max_length']):<26} {cut['truncated']} rows truncated, "
                     f"{cut['dropped']} dropped (longest: {cut['longest']} tokens)")
    elif "over_chars_estimate" in report:
        over = report["over_chars_estimate"]
        lines.append(f"{'max_length ' + str(over['max_length']):<26} about {over['desirable'] + over['undesirable']} "
                     f"rows longer than {over['max_chars']} characters would be truncated (estimate: "
                     f"{over['assumes']}; --tokenizer counts tokens)")
    return "\n".join(lines)
