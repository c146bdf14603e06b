"""Length bias and TRL truncation: how long each label's rows are, and what KTO training would cut.

Desirable completions in this dataset are much longer than undesirable ones, so a preference-trained
model can learn "longer is better"; and TRL's KTOTrainer cuts sequences at `max_length` tokens and
drops rows whose prompt alone reaches it. These pure functions measure both, in characters (no
tokenizer needed) and, given a tokenizer, in the exact tokens KTOTrainer would see.

Only numpy and the standard library are imported here; `transformers` is imported inside the
tokenizer functions, so the character figures work without the [kto] extra.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence, Sized
from typing import Any, Optional

import numpy as np
from jinja2 import TemplateError

import claudesidian_synthetic as cs

# TRL's `KTOConfig.max_length` default (tokens); a test compares it with the installed TRL.
TRL_DEFAULT_MAX_LENGTH = 1024
# The rule of thumb behind the estimate made without a tokenizer: about 4 characters per token.
CHARS_PER_TOKEN_ESTIMATE = 4
LABEL_NAMES = cs.LABEL_NAMES
# Conversations per `apply_chat_template` call: the fast tokenizer encodes each batch in parallel.
TOKENIZE_BATCH_SIZE = 256
_KTO_EXTRA = cs.install_hint("kto")
# What a chat template raises for a conversation it cannot render (`raise_exception(...)` in the template, or
# a value of a type it did not expect): such a row is counted and named, where the trainer would stop.
TEMPLATE_ERRORS = (TemplateError, TypeError)


class TokenizerError(cs.ClaudesidianError):
    """The tokenizer asked for cannot measure this data; the message names the option and the fix."""

    def __init__(self, name_or_path: Any, problem: str, fix: str):
        self.name_or_path = name_or_path
        super().__init__("{given}: " + cs.escaped(f"{problem}. {fix}"),
                         given=cs.Mention("tokenizer", str(name_or_path)))


# --- summaries ---------------------------------------------------------------------------------


def _as_lengths(values: Iterable[int], option: str) -> np.ndarray:
    """Integer lengths as a 1-D int64 array; anything else is an OptionError naming `option`."""
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer) or array.min() < 0:
        raise cs.OptionError(f"{option}: expected a flat list of lengths (whole numbers >= 0), got {array[:3]!r}...")
    return array.astype(np.int64, copy=False)


def length_summary(values: Iterable[int]) -> dict:
    """count, min, q1, median, q3, max of lengths: the five numbers that show a skew at a glance.

    Quartiles use numpy's default `method="linear"` (Hyndman & Fan type 7, as R and pandas do), so
    the median of an even count is the mean of the two middle values. Plain Python numbers, so the
    dict goes straight into JSON; an empty input has count 0 and None elsewhere.

    >>> length_summary([1, 2, 3, 4])
    {'count': 4, 'min': 1, 'q1': 1.75, 'median': 2.5, 'q3': 3.25, 'max': 4}
    """
    array = _as_lengths(values, "values")
    if array.size == 0:
        return {"count": 0, "min": None, "q1": None, "median": None, "q3": None, "max": None}
    q1, median, q3 = (float(value) for value in np.percentile(array, [25, 50, 75]))
    return {"count": int(array.size), "min": int(array.min()), "q1": q1, "median": median, "q3": q3,
            "max": int(array.max())}


def ks_distance(a: Iterable[int], b: Iterable[int]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a(x) - F_b(x)|, exact, rounded to 4 decimals.

    0 means the two length distributions coincide, 1 that every value of one lies beyond the other;
    in between it is how well the best single length threshold tells the labels apart (its share of
    one label above the threshold minus its share of the other). Both empirical CDFs are evaluated at
    every distinct observed value, where the supremum is reached.

    >>> ks_distance([1, 2, 3], [4, 5, 6])
    1.0
    """
    a, b = np.sort(_as_lengths(a, "a")), np.sort(_as_lengths(b, "b"))
    if a.size == 0 or b.size == 0:
        raise cs.OptionError(f"ks_distance needs rows of both labels, got {a.size} and {b.size}: pass non-empty lists")
    points = np.union1d(a, b)  # each distinct observed value once: the same supremum, far less memory
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    return round(float(np.max(np.abs(cdf_a - cdf_b))), 4)


# --- character lengths -------------------------------------------------------------------------


message_chars = cs.message_chars


def tool_output_chars(messages: Sequence[dict]) -> int:
    """Characters of tool output among the messages: `tool` results, and the `Result:` blocks that a reply
    in the text format writes itself. No policy writes them: in a loss they are the environment's text."""
    total = 0
    for message in messages:
        if message["role"] == "tool":
            total += len(message["content"] or "")
        elif not message.get("tool_calls") and "Result:" in (message["content"] or ""):
            total += sum(len(part.text) for part in cs.parse_reply(message["content"]).parts
                         if isinstance(part, cs.Result))
    return total


# --- tokens, as TRL's KTOTrainer counts them -------------------------------------------------------


def _require_chat_template(tokenizer, name_or_path: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise TokenizerError(
            name_or_path, "this tokenizer has no chat template",
            "The data is conversational and TRL's KTOTrainer tokenizes it with the tokenizer's chat template: "
            "pass the tokenizer of the chat model you train (or set tokenizer.chat_template before saving it)",
        )


def load_tokenizer(name_or_path: str | os.PathLike) -> Any:
    """`transformers.AutoTokenizer.from_pretrained`, with every failure one TokenizerError that says what to do.

    Refuses a tokenizer without a chat template: KTOTrainer would fail on this conversational data.
    """
    try:
        import transformers
    except ImportError as error:
        raise TokenizerError(
            name_or_path, "transformers is not installed", _KTO_EXTRA[0].upper() + _KTO_EXTRA[1:]
        ) from error
    try:
        if not os.path.isdir(name_or_path):
            _reach_hub_quickly(os.fspath(name_or_path))
        tokenizer = transformers.AutoTokenizer.from_pretrained(os.fspath(name_or_path))
    except Exception as error:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError, ...
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if os.path.isdir(name_or_path):
            raise TokenizerError(
                name_or_path, f"this folder holds no tokenizer transformers can read ({detail})",
                "Pass a folder written by tokenizer.save_pretrained(folder) (tokenizer.json, tokenizer_config.json)",
            ) from error
        raise TokenizerError(
            name_or_path, f"not a local folder, and the Hub could not provide it ({detail})",
            "Check the spelling; without network access pass a local folder written by "
            "tokenizer.save_pretrained(folder)",
        ) from error
    _require_chat_template(tokenizer, name_or_path)
    return tokenizer


def _reach_hub_quickly(repo_id: str) -> None:
    """A tokenizer that is not in the cache comes from the Hub: one quick request first, since
    `transformers` retries a failed connection for most of a minute, which with no network is only a wait."""
    import huggingface_hub

    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return  # transformers answers from the cache at once, or says it is offline
    if isinstance(huggingface_hub.try_to_load_from_cache(repo_id, "tokenizer_config.json"), str):
        return
    huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(repo_id, "tokenizer_config.json"))


def _chat_ids(tokenizer, conversations: list, add_generation_prompt: bool, tools=None) -> list:
    encoded = tokenizer.apply_chat_template(
        conversations, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True, tools=tools
    )
    return encoded["input_ids"]


def _decoded_tools(tools) -> list | None:
    """A `tools` value as TRL passes it to the chat template: a JSON string is decoded, an empty list is None."""
    tools = json.loads(tools) if isinstance(tools, str) else tools
    return tools or None


def token_lengths(tokenizer, prompts: Sequence[Sequence[dict]], completions: Sequence[Sequence[dict]],
                  tools: Sequence | None = None) -> tuple:
    """(prompt_tokens, full_tokens) per row, exactly as TRL 1.16's KTOTrainer tokenizes conversational rows.

    KTOTrainer renders the prompt with the generation prompt and prompt + completion without it, both
    through the chat template (with the row's `tools`, where the layout has them); the prompt is their
    common prefix, the rest is the completion, so the sequence it trains on has len(prompt + completion
    ids) tokens. `full_tokens - prompt_tokens` are the completion tokens. Batched through the fast
    tokenizer (one row at a time with tools, which differ from row to row): seconds for a thousand rows.
    """
    from trl.data_utils import common_prefix_length  # where TRL itself starts the completion

    prompts, completions = list(prompts), list(completions)
    _same_length(prompts=prompts, completions=completions)
    _require_chat_template(tokenizer, getattr(tokenizer, "name_or_path", type(tokenizer).__name__))
    prompt_tokens = np.zeros(len(prompts), dtype=np.int64)
    full_tokens = np.zeros(len(prompts), dtype=np.int64)
    if tools is not None:
        for row, (prompt, completion, listed) in enumerate(zip(prompts, completions, tools)):
            listed = _decoded_tools(listed)
            prompt_ids = _chat_ids(tokenizer, list(prompt), True, listed)
            full_ids = _chat_ids(tokenizer, list(prompt) + list(completion), False, listed)
            prompt_tokens[row], full_tokens[row] = common_prefix_length(prompt_ids, full_ids), len(full_ids)
        return prompt_tokens, full_tokens
    for start in range(0, len(prompts), TOKENIZE_BATCH_SIZE):
        batch_prompts = [list(messages) for messages in prompts[start : start + TOKENIZE_BATCH_SIZE]]
        batch_full = [
            list(prompt) + list(completion)
            for prompt, completion in zip(batch_prompts, completions[start : start + TOKENIZE_BATCH_SIZE])
        ]
        prompt_ids = _chat_ids(tokenizer, batch_prompts, add_generation_prompt=True)
        full_ids = _chat_ids(tokenizer, batch_full, add_generation_prompt=False)
        for offset, (prompt, full) in enumerate(zip(prompt_ids, full_ids)):
            prompt_tokens[start + offset] = common_prefix_length(prompt, full)
            full_tokens[start + offset] = len(full)
    return prompt_tokens, full_tokens


def assistant_tokens(tokenizer, conversations: Sequence[Sequence[dict]], tools: Sequence | None = None) -> np.ndarray:
    """The tokens of each conversation that SFTTrainer's loss sees with `assistant_only_loss=True`: TRL renders
    it with a training copy of the chat template whose `{% generation %}` markers enclose the assistant's turns
    (`trl.chat_template_utils.get_training_chat_template`) and masks every other token, as done here. A template
    TRL cannot patch is a TokenizerError: the trainer would refuse it too."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        template = get_training_chat_template(tokenizer)
    except ValueError as error:
        raise TokenizerError(
            getattr(tokenizer, "name_or_path", type(tokenizer).__name__),
            f"TRL cannot mark the assistant's turns in this chat template ({' '.join(str(error).split())})",
            "SFT with assistant_only_loss (every SFT recipe sets it) needs a chat template whose {% generation %} "
            "... {% endgeneration %} markers enclose each assistant turn: give the tokenizer one "
            "(tokenizer.chat_template) and save it, or leave the SFT configs out",
        ) from None
    counts = np.zeros(len(conversations), dtype=np.int64)
    for row, conversation in enumerate(conversations):
        listed = _decoded_tools(tools[row]) if tools is not None else None
        encoded = tokenizer.apply_chat_template(list(conversation), tools=listed, chat_template=template, tokenize=True,
                                                return_dict=True, return_assistant_tokens_mask=True)
        counts[row] = sum(encoded["assistant_masks"])
    return counts


def tools_tokens(tokenizer, prompts: Sequence[Sequence[dict]], tools: Sequence) -> np.ndarray:
    """Tokens the `tools` block adds to each row's prompt: the prompt rendered with its tools, less the
    same prompt without them (what every training sequence of a tools layout carries besides the talk)."""
    _same_length(prompts=prompts, tools=tools)
    return np.array([len(_chat_ids(tokenizer, list(prompt), True, _decoded_tools(listed)))
                     - len(_chat_ids(tokenizer, list(prompt), True)) for prompt, listed in zip(prompts, tools)],
                    dtype=np.int64)


# --- truncation --------------------------------------------------------------------------------


def check_max_length(max_length: Any) -> int:
    """`max_length` as a whole number of tokens, or the one OptionError every caller raises for it."""
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise cs.OptionError("{given}: must be a positive whole number of tokens (TRL's KTOConfig default is "
                             f"{TRL_DEFAULT_MAX_LENGTH})", given=cs.Mention("max_length", max_length))
    return int(max_length)


def _same_length(**columns: Sized) -> None:
    """One value per row in every column, or an OptionError naming the odd one."""
    (first_name, first), *rest = columns.items()
    for name, column in rest:
        if len(column) != len(first):
            raise cs.OptionError(
                f"{name} has {len(column)} values but {first_name} has {len(first)}: pass one value per row"
            )


def _label_mask(labels: Sequence[bool]) -> np.ndarray:
    mask = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels)
    if mask.size and mask.dtype != np.bool_:
        raise cs.OptionError(f"labels must be booleans (True = desirable), found {mask[:3]!r}...")
    return mask.astype(bool, copy=False)


def _truncation_counts(prompt_tokens: np.ndarray, full_tokens: np.ndarray, max_length: int) -> dict:
    dropped = prompt_tokens >= max_length
    truncated = (full_tokens > max_length) & ~dropped
    return {
        "rows": int(prompt_tokens.size),
        "truncated": int(truncated.sum()),
        "dropped": int(dropped.sum()),
        "longest": int(full_tokens.max()) if full_tokens.size else None,
    }


def truncation(
    prompt_tokens: Sequence[int], full_tokens: Sequence[int], max_length: int, labels: Optional[Sequence[bool]] = None
) -> dict:
    """What TRL's KTOTrainer does to these rows at `max_length` tokens.

    `dropped`: the prompt alone reaches max_length, so KTOTrainer filters the row out before batching
    (it would keep no completion token). `truncated`: kept, but prompt + completion is longer than
    max_length, so the collator cuts the completion's end. `longest`: the longest sequence, in tokens
    (a max_length at or above it cuts nothing). With labels, the same per label under `by_label`.
    """
    max_length = check_max_length(max_length)
    prompt_tokens, full_tokens = _as_lengths(prompt_tokens, "prompt_tokens"), _as_lengths(full_tokens, "full_tokens")
    _same_length(prompt_tokens=prompt_tokens, full_tokens=full_tokens)
    result = {"max_length": max_length, **_truncation_counts(prompt_tokens, full_tokens, max_length)}
    if labels is not None:
        mask = _label_mask(labels)
        _same_length(prompt_tokens=prompt_tokens, labels=mask)
        result["by_label"] = {
            name: _truncation_counts(prompt_tokens[rows], full_tokens[rows], max_length)
            for name, rows in zip(LABEL_NAMES, (mask, ~mask))
        }
    return result


# --- the report -----------------------------------------------------------------------------------


def _ks_or_none(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    return ks_distance(a, b) if a.size and b.size else None


def length_report(
    labels: Sequence[bool],
    prompt_chars: Sequence[int],
    completion_chars: Sequence[int],
    *,
    prompt_tokens: Optional[Sequence[int]] = None,
    full_tokens: Optional[Sequence[int]] = None,
    max_length: Optional[int] = None,
    tools_chars: Optional[Sequence[int]] = None,
) -> dict:
    """Per label, how long prompts and completions are; how far apart the labels' completion lengths
    lie (KS distance); and, with `max_length`, what TRL would cut (exact with tokens, estimated without).

    Completion tokens are `full_tokens - prompt_tokens`: the tokens KTOTrainer trains on, including
    what the chat template adds after the reply (e.g. an end-of-turn token); a row whose tokens are -1 (its
    chat template cannot render it, see `stats.SplitStats`) is left out of the token figures. `tools_chars`,
    for a tools layout, are the characters of the tool definitions every prompt carries besides its
    messages: shown apart, and counted in the prompt's length where truncation is estimated.
    """
    mask = _label_mask(labels)
    prompt_chars = _as_lengths(prompt_chars, "prompt_chars")
    completion_chars = _as_lengths(completion_chars, "completion_chars")
    _same_length(labels=mask, prompt_chars=prompt_chars, completion_chars=completion_chars)
    whole_prompt_chars = prompt_chars
    columns = {"prompt_chars": prompt_chars, "completion_chars": completion_chars}
    if tools_chars is not None:
        columns["tools_chars"] = tools_chars = _as_lengths(tools_chars, "tools_chars")
        _same_length(labels=mask, tools_chars=tools_chars)
        whole_prompt_chars = prompt_chars + tools_chars
    if (prompt_tokens is None) != (full_tokens is None):
        raise cs.OptionError("prompt_tokens and full_tokens go together: pass both (from token_lengths) or neither")
    if max_length is not None:
        max_length = check_max_length(max_length)
    report: dict = {}
    for name, rows in zip(LABEL_NAMES, (mask, ~mask)):
        summaries = {key: length_summary(values[rows]) for key, values in columns.items()}
        report[name] = {"rows": int(rows.sum()), **summaries}
    report["ks_completion_chars"] = _ks_or_none(completion_chars[mask], completion_chars[~mask])
    if prompt_tokens is not None:
        rendered = np.asarray(full_tokens) >= 0
        _same_length(labels=mask, prompt_tokens=prompt_tokens, full_tokens=rendered)
        report.update(_token_figures(mask[rendered], _as_lengths(np.asarray(prompt_tokens)[rendered], "prompt_tokens"),
                                     _as_lengths(np.asarray(full_tokens)[rendered], "full_tokens"), max_length, report))
    elif max_length is not None:
        report["over_chars_estimate"] = _over_chars_estimate(mask, whole_prompt_chars + completion_chars, max_length,
                                                             whole_prompt_chars)
    return report


def _token_figures(mask: np.ndarray, prompt_tokens: np.ndarray, full_tokens: np.ndarray, max_length: Optional[int],
                   report: dict) -> dict:
    """The token part of `length_report`: per label (added to `report`), the distance and the truncation."""
    completion_tokens = full_tokens - prompt_tokens
    for name, rows in zip(LABEL_NAMES, (mask, ~mask)):
        report[name].update(prompt_tokens=length_summary(prompt_tokens[rows]),
                            completion_tokens=length_summary(completion_tokens[rows]))
    figures = {"ks_completion_tokens": _ks_or_none(completion_tokens[mask], completion_tokens[~mask])}
    if max_length is not None:
        figures["truncation"] = truncation(prompt_tokens, full_tokens, max_length, labels=mask)
    return figures


def _over_chars_estimate(mask: np.ndarray, total_chars: np.ndarray, max_length: int,
                         prompt_chars: np.ndarray) -> dict:
    """Rows longer than max_length tokens at 4 characters per token: a rough stand-in without a tokenizer;
    `prompt_over`: rows whose prompt alone is that long (`long_prompt_fate` says what each trainer does with
    them); `longest_chars`: the longest row."""
    max_chars = CHARS_PER_TOKEN_ESTIMATE * max_length
    over = total_chars > max_chars
    return {
        "assumes": f"{CHARS_PER_TOKEN_ESTIMATE} characters per token (no tokenizer given)",
        "max_length": max_length,
        "max_chars": max_chars,
        **{name: int(over[rows].sum()) for name, rows in zip(LABEL_NAMES, (mask, ~mask))},
        "prompt_over": int((prompt_chars > max_chars).sum()),
        "longest_chars": int(total_chars.max()) if total_chars.size else 0,
    }


def sequences(count: int, trainer: Optional[str]) -> str:
    """`count` training sequences in a message's words: rows, or for DPO replies (a pair trains on two
    sequences, its chosen and its rejected reply, which share one prompt)."""
    if trainer == "dpo":
        return cs.plural(count, "reply", "replies") + " (a pair's chosen and rejected each)"
    return cs.plural(count, "row")


def trainer_name(trainer: str) -> str:
    """A layout's `trl` command as messages name its trainer: `kto` -> TRL's KTOTrainer."""
    return f"TRL's {trainer.upper()}Trainer"


def long_prompt_fate(trainer: Optional[str]) -> str:
    """What a trainer does with a row whose prompt alone reaches `max_length`, in the words every message uses:
    KTOTrainer and DPOTrainer drop it before batching, SFTTrainer once truncation leaves it no token in the
    loss (TRL 1.16)."""
    if trainer in ("kto", "dpo"):
        return f"dropped by {trainer_name(trainer)} (their prompt alone is that long)"
    if trainer == "sft":
        return f"dropped by {trainer_name(trainer)} (what comes before the reply is that long: no token of the loss " \
               "is left)"
    return "with a prompt that long"


def completion_histogram(labels: Sequence[bool], completion_chars: Sequence[int], bins: int = 20) -> dict:
    """Rows per completion-length bin, per label, on shared edges: the numbers the stats and the figure show.

    The edges are evenly spaced in log(1 + length) from the shortest to the longest completion: the
    lengths span three orders of magnitude and are right-skewed, so linear bins would crowd most rows
    into the first few, while log bins show both labels' shapes and stay comparable across configs.
    Bins are half-open [lo, hi) except the last, which includes the longest completion (np.histogram).
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise cs.OptionError(f"bins={bins!r}: must be a whole number of bins >= 1 (for example 20)")
    mask = _label_mask(labels)
    lengths = _as_lengths(completion_chars, "completion_chars")
    _same_length(labels=mask, completion_chars=lengths)
    if lengths.size == 0:
        return {"scale": "log1p", "edges": [], "desirable": [], "undesirable": []}
    low, high = int(lengths.min()), int(lengths.max())
    if low == high:
        edges = np.array([low, high + 1], dtype=float)
    else:
        edges = np.round(np.expm1(np.linspace(np.log1p(low), np.log1p(high), bins + 1)), 2)
        edges[0], edges[-1] = low, high  # exact ends: rounding must not leave the extremes outside
    return {
        "scale": "log1p",
        "edges": [float(edge) for edge in edges],
        **{name: [int(count) for count in np.histogram(lengths[rows], bins=edges)[0]]
           for name, rows in zip(LABEL_NAMES, (mask, ~mask))},
    }
