"""Length bias and TRL truncation figures (claudesidian_tools.lengths), checked on the real source and by hand."""

import copy
import dataclasses
import importlib.util
import json
import statistics

import numpy as np
import pytest
from conftest import char_columns, labelled_replies
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_model import need_trl, tiny_model_and_tokenizer

import claudesidian_synthetic as cs
from claudesidian_tools import lengths
from claudesidian_tools.lengths import (
    TRL_DEFAULT_MAX_LENGTH,
    TokenizerError,
    completion_histogram,
    ks_distance,
    length_report,
    length_summary,
    load_tokenizer,
    token_lengths,
    truncation,
)

# A conversation small enough to tokenize by hand with tests/tiny_model.py's word-level tokenizer.
HAND_PROMPT = [{"role": "user", "content": "the result"}]
HAND_COMPLETION = [{"role": "assistant", "content": "a tool_call of the result"}]


@pytest.fixture(scope="module")
def tokenizer():
    need_trl()
    return tiny_model_and_tokenizer()[1]


def _brute_force_ks(a, b):
    """sup |F_a - F_b| straight from the definition: both CDFs at every observed value."""
    return max(abs(sum(x <= t for x in a) / len(a) - sum(y <= t for y in b) / len(b)) for t in set(a) | set(b))


# --- length_summary ---------------------------------------------------------------------------


def test_summary_by_hand_and_as_the_inclusive_quantiles():
    values = [5, 1, 9, 3, 7, 2]
    summary = length_summary(values)
    # statistics' "inclusive" method is Hyndman & Fan type 7, numpy's default "linear".
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    assert summary == {"count": 6, "min": 1, "q1": q1, "median": median, "q3": q3, "max": 9}
    assert summary["median"] == 4.0  # (3 + 5) / 2
    assert json.loads(json.dumps(summary)) == summary
    assert all(type(summary[key]) is int for key in ("count", "min", "max"))


def test_summary_of_nothing():
    assert length_summary([]) == {"count": 0, "min": None, "q1": None, "median": None, "q3": None, "max": None}


@pytest.mark.parametrize("values", [[1.5, 2], [-1, 3], [[1, 2], [3, 4]], ["a"]])
def test_summary_refuses_what_is_not_a_length(values):
    with pytest.raises(cs.OptionError, match="whole numbers >= 0"):
        length_summary(values)


# --- ks_distance ------------------------------------------------------------------------------


def test_ks_by_hand():
    assert ks_distance([1, 2, 3], [4, 5, 6]) == 1.0
    assert ks_distance([1, 2, 3], [3, 2, 1]) == 0.0
    # F_a(2) = 2/3 and F_b(2) = 0 for b = [3, 4]: 0.6667.
    assert ks_distance([1, 2, 3], [3, 4]) == 0.6667


@settings(max_examples=200, deadline=None)
@given(a=st.lists(st.integers(0, 30), min_size=1, max_size=40), b=st.lists(st.integers(0, 30), min_size=1, max_size=40))
def test_ks_matches_the_definition(a, b):
    assert ks_distance(a, b) == round(_brute_force_ks(a, b), 4) == ks_distance(b, a)
    if importlib.util.find_spec("scipy") is not None:
        from scipy.stats import ks_2samp

        assert ks_distance(a, b) == round(float(ks_2samp(a, b).statistic), 4)


def test_ks_needs_both_samples():
    with pytest.raises(cs.OptionError, match="both labels"):
        ks_distance([], [1, 2])


# --- the real source: the length bias of the issue ----------------------------------------------------


def test_length_bias_of_the_full_source(source_path):
    labels, prompt_chars, completion_chars = char_columns(cs.load("full", split="train", source=source_path))
    assert np.median(completion_chars[labels]) == 1432 and np.median(completion_chars[~labels]) == 628
    report = length_report(labels, prompt_chars, completion_chars, max_length=TRL_DEFAULT_MAX_LENGTH)
    assert report["desirable"]["rows"] == 746 and report["undesirable"]["rows"] == 254
    assert report["desirable"]["completion_chars"]["median"] == 1432.0
    assert report["undesirable"]["completion_chars"]["median"] == 628.0
    assert report["ks_completion_chars"] == 0.5592
    # 32 desirable rows (and one undesirable) are longer than 4096 characters: past 1024 tokens at 4 per token.
    assert int(((prompt_chars + completion_chars) > 4096)[labels].sum()) == 32
    estimate = report["over_chars_estimate"]
    assert (estimate["max_chars"], estimate["desirable"], estimate["undesirable"]) == (4096, 32, 1)
    assert "4 characters per token" in estimate["assumes"]
    assert "truncation" not in report and "ks_completion_tokens" not in report


def test_length_bias_of_the_published_balanced_subset(source_path):
    dataset = cs.load("balanced_254", split="train", source=source_path)
    labels, prompt_chars, completion_chars = char_columns(dataset)
    report = length_report(labels, prompt_chars, completion_chars)
    assert report["desirable"]["rows"] == report["undesirable"]["rows"] == 254
    assert round(report["ks_completion_chars"], 2) == 0.54
    assert report["ks_completion_chars"] == ks_distance(completion_chars[labels], completion_chars[~labels])
    assert report["desirable"]["completion_chars"]["median"] == 1411.0
    assert report["undesirable"]["completion_chars"]["median"] == 628.0  # every undesirable row of the source
    assert "over_chars_estimate" not in report  # no max_length, no estimate


def test_both_layouts_give_the_same_lengths(source_path):
    kto = char_columns(cs.load("balanced_254", split="train", source=source_path))
    conversations = char_columns(cs.load("balanced_254", split="train", source=source_path, layout="conversations"))
    assert len(kto) == len(conversations)
    for ours, theirs in zip(kto, conversations):
        assert np.array_equal(ours, theirs)


def test_characters_are_code_points():
    prompts = [[{"role": "system", "content": "ab"}, {"role": "user", "content": "é✓"}]]
    completions = [[{"role": "assistant", "content": "😀x"}]]
    assert [lengths.message_chars(messages) for messages in (*prompts, *completions)] == [4, 2]


# --- completion_histogram ---------------------------------------------------------------------


def test_histogram_counts_every_row_on_shared_edges(source_path):
    labels, _, completion_chars = char_columns(cs.load("full", split="train", source=source_path))
    histogram = completion_histogram(labels, completion_chars, bins=20)
    edges = histogram["edges"]
    assert len(edges) == 21 and edges[0] == completion_chars.min() and edges[-1] == completion_chars.max()
    assert all(low < high for low, high in zip(edges, edges[1:]))
    # log(1 + x) spacing: equal steps in log1p.
    steps = np.diff(np.log1p(edges))
    assert np.allclose(steps, steps[0], rtol=0.01)
    assert sum(histogram["desirable"]) == 746 and sum(histogram["undesirable"]) == 254
    for name, rows in (("desirable", labels), ("undesirable", ~labels)):
        assert histogram[name] == np.histogram(completion_chars[rows], bins=edges)[0].tolist()
    assert json.loads(json.dumps(histogram)) == histogram


def test_histogram_edge_cases():
    assert completion_histogram([], []) == {"scale": "log1p", "edges": [], "desirable": [], "undesirable": []}
    same = completion_histogram([True, False, True], [7, 7, 7])
    assert same["edges"] == [7.0, 8.0] and same["desirable"] == [2] and same["undesirable"] == [1]
    with_zero = completion_histogram([True, False], [0, 100], bins=4)
    assert with_zero["edges"][0] == 0.0 and sum(with_zero["desirable"] + with_zero["undesirable"]) == 2
    with pytest.raises(cs.OptionError, match="bins=0"):
        completion_histogram([True], [3], bins=0)


# --- truncation -------------------------------------------------------------------------------


def test_truncation_by_hand():
    prompt_tokens = [2, 5, 3, 3, 4]
    full_tokens = [4, 9, 3, 8, 6]
    labels = [True, True, False, False, True]
    # max_length 4: row 0 fits exactly, row 1 dropped (prompt 5 >= 4), row 2 fits, row 3 truncated (8 > 4),
    # row 4 dropped (prompt 4 == max_length: TRL keeps a row only while the prompt is shorter).
    assert truncation(prompt_tokens, full_tokens, 4, labels=labels) == {
        "max_length": 4, "rows": 5, "truncated": 1, "dropped": 2, "longest": 9,
        "by_label": {
            "desirable": {"rows": 3, "truncated": 0, "dropped": 2, "longest": 9},
            "undesirable": {"rows": 2, "truncated": 1, "dropped": 0, "longest": 8},
        },
    }
    assert truncation(prompt_tokens, full_tokens, 9) == {"max_length": 9, "rows": 5, "truncated": 0, "dropped": 0,
                                                         "longest": 9}
    empty_label = truncation([1], [2], 4, labels=[True])["by_label"]["undesirable"]
    assert empty_label == {"rows": 0, "truncated": 0, "dropped": 0, "longest": None}


@pytest.mark.parametrize("max_length", [0, -3, 1.5, True, "1024", None])
def test_bad_max_length_is_one_option_error(max_length):
    expected = r"^max_length=.*: must be a positive whole number of tokens \(TRL's KTOConfig default is 1024\)$"
    with pytest.raises(cs.OptionError, match=expected):
        truncation([1], [2], max_length)
    if max_length is not None:
        with pytest.raises(cs.OptionError, match="max_length="):
            length_report([True], [1], [2], max_length=max_length)


def test_mismatched_columns_are_one_option_error():
    with pytest.raises(cs.OptionError, match="full_tokens has 1 values but prompt_tokens has 2: pass one value"):
        truncation([1, 2], [3], 4)
    with pytest.raises(cs.OptionError, match="completion_chars has 1 values but labels has 2"):
        length_report([True, False], [1, 2], [3])
    with pytest.raises(cs.OptionError, match="labels has 2 values but prompt_tokens has 1"):
        truncation([1], [3], 4, labels=[True, False])
    with pytest.raises(cs.OptionError, match="pass both"):
        length_report([True], [1], [2], prompt_tokens=[1])
    with pytest.raises(cs.OptionError, match="booleans"):
        length_report([1, 0], [1, 2], [3, 4])


def test_trl_default_max_length_is_trls():
    need_trl()
    import trl

    (field,) = [field for field in dataclasses.fields(trl.KTOConfig) if field.name == "max_length"]
    assert TRL_DEFAULT_MAX_LENGTH == field.default == 1024


# --- tokens -----------------------------------------------------------------------------------


def test_token_counts_of_a_handmade_conversation(tokenizer):
    # The template renders "user : the result <eos> assistant : " for the prompt (generation prompt on):
    # user, <unk> (":" is not in the vocabulary), the, result, <eos>, assistant, <unk> = 7 tokens.
    # Prompt + completion adds "a tool_call of the result <eos> " = 6 tokens: 13 in all.
    prompt_tokens, full_tokens = token_lengths(tokenizer, [HAND_PROMPT], [HAND_COMPLETION])
    assert prompt_tokens.tolist() == [7] and full_tokens.tolist() == [13]
    assert tokenizer.convert_ids_to_tokens(
        tokenizer.apply_chat_template(HAND_PROMPT + HAND_COMPLETION, tokenize=True, return_dict=True)["input_ids"]
    ) == ["user", "<unk>", "the", "result", "<eos>", "assistant", "<unk>", "a", "tool_call", "of", "the", "result",
          "<eos>"]
    system = [{"role": "system", "content": "a"}, *HAND_PROMPT]  # "system : a <eos> " = 4 more tokens
    assert [values.tolist() for values in token_lengths(tokenizer, [system], [HAND_COMPLETION])] == [[11], [17]]


def test_prompt_is_the_common_prefix_when_the_template_renders_it_differently(tokenizer):
    """As TRL does: a generation prompt the full conversation does not repeat ends the prompt early."""
    odd = copy.deepcopy(tokenizer)
    odd.chat_template = tokenizer.chat_template.replace("assistant : {% endif %}", "assistant : of {% endif %}")
    # Prompt alone: user <unk> the result <eos> assistant <unk> of (8); with the completion the 8th token is
    # "a", so the two share 7 tokens and the completion is the 6 after them.
    prompt_tokens, full_tokens = token_lengths(odd, [HAND_PROMPT], [HAND_COMPLETION])
    assert prompt_tokens.tolist() == [7] and full_tokens.tolist() == [13]
    assert len(odd.apply_chat_template(HAND_PROMPT, add_generation_prompt=True, tokenize=True,
                                       return_dict=True)["input_ids"]) == 8


def test_batches_give_what_one_row_at_a_time_gives(tokenizer, source_path, monkeypatch):
    dataset = cs.load("balanced_254", split="train", source=source_path).select(range(40))
    _, prompts, completions = labelled_replies(dataset)
    batched = token_lengths(tokenizer, prompts, completions)
    monkeypatch.setattr(lengths, "TOKENIZE_BATCH_SIZE", 1)
    one_by_one = token_lengths(tokenizer, prompts, completions)
    assert len(batched) == len(one_by_one)
    assert all(np.array_equal(ours, theirs) for ours, theirs in zip(batched, one_by_one))


@pytest.mark.kto
def test_truncated_and_dropped_rows_are_what_trls_kto_trainer_does(tokenizer, source_path, tmp_path):
    """Run KTOTrainer's own dataset preparation and collator on ten real rows at a small max_length."""
    import torch
    import trl

    from claudesidian_tools.kto import kto_weights

    dataset = cs.load("balanced_254", split="train", source=source_path).select(range(10))
    labels, prompts, completions = labelled_replies(dataset)
    prompt_tokens, full_tokens = token_lengths(tokenizer, prompts, completions)
    max_length = int(np.sort(prompt_tokens)[6])  # the four or more longest prompts reach it
    ours = truncation(prompt_tokens, full_tokens, max_length, labels=labels)
    assert ours["dropped"] >= 1 and ours["truncated"] >= 1  # the test exercises both

    torch.manual_seed(0)
    model, _ = tiny_model_and_tokenizer()
    args = trl.KTOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_length=max_length, report_to=[],
        save_strategy="no", use_cpu=True, dataloader_num_workers=0, **kto_weights(labels),
    )
    trainer = trl.KTOTrainer(model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=dataset,
                             processing_class=tokenizer)
    prepared = trainer.train_dataset
    kept = np.flatnonzero(prompt_tokens < max_length)
    assert len(dataset) - len(prepared) == ours["dropped"]
    assert [len(ids) for ids in prepared["prompt_ids"]] == prompt_tokens[kept].tolist()
    assert [len(p) + len(c) for p, c in zip(prepared["prompt_ids"], prepared["completion_ids"])] == (
        full_tokens[kept].tolist()
    )
    batch = trainer.data_collator([prepared[index] for index in range(len(prepared))])
    trained_lengths = batch["attention_mask"].sum(dim=1).numpy()
    assert trained_lengths.tolist() == np.minimum(full_tokens[kept], max_length).tolist()
    assert int((full_tokens[kept] > trained_lengths).sum()) == ours["truncated"]
    by_label = ours["by_label"]
    assert by_label["desirable"]["dropped"] + by_label["undesirable"]["dropped"] == ours["dropped"]
    kept_labels = np.array(labels)[kept]
    assert int((full_tokens[kept] > max_length)[kept_labels].sum()) == by_label["desirable"]["truncated"]


def test_token_figures_of_the_full_source_with_the_tiny_tokenizer(tokenizer, source_path):
    """The report at TRL's default max_length, in the toy word-level tokens (small, but exact)."""
    from claudesidian_tools.stats import split_stats

    stats = split_stats(cs.load("full", split="train", source=source_path), tokenizer=tokenizer).result()
    report = {**stats["lengths"], "completion_histogram": stats["completion_histogram"]}
    assert report["truncation"] == {
        "max_length": 1024, "rows": 1000, "truncated": 15, "dropped": 0, "longest": 1571,
        "by_label": {
            "desirable": {"rows": 746, "truncated": 14, "dropped": 0, "longest": 1571},
            "undesirable": {"rows": 254, "truncated": 1, "dropped": 0, "longest": 1035},
        },
    }
    assert report["ks_completion_tokens"] == 0.5529 and report["ks_completion_chars"] == 0.5592
    assert report["desirable"]["completion_tokens"]["median"] == 289.0
    assert report["undesirable"]["completion_tokens"]["median"] == 123.5
    assert "over_chars_estimate" not in report  # the exact figures replace the estimate
    assert sum(report["completion_histogram"]["desirable"]) == 746
    assert json.loads(json.dumps(report)) == report


# --- load_tokenizer ---------------------------------------------------------------------------


def test_load_tokenizer_reads_a_saved_tokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert [values.tolist() for values in token_lengths(loaded, [HAND_PROMPT], [HAND_COMPLETION])] == [[7], [13]]


def test_unknown_path_is_one_tokenizer_error(tmp_path):
    need_trl()
    missing = str(tmp_path / "no-such-tokenizer")
    with pytest.raises(TokenizerError) as raised:
        load_tokenizer(missing)
    message = str(raised.value)
    assert message.startswith(f"tokenizer={missing!r}: not a local folder")
    assert "pass a local folder" in message and "\n" not in message
    assert isinstance(raised.value, cs.ClaudesidianError) and isinstance(raised.value, ValueError)


def test_folder_without_a_tokenizer_is_one_tokenizer_error(tmp_path):
    need_trl()
    with pytest.raises(TokenizerError, match="this folder holds no tokenizer transformers can read"):
        load_tokenizer(tmp_path)


def test_tokenizer_without_a_chat_template_is_refused(tokenizer, tmp_path):
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    plain.save_pretrained(tmp_path / "plain")
    with pytest.raises(TokenizerError, match="has no chat template.*TRL's KTOTrainer tokenizes it"):
        load_tokenizer(tmp_path / "plain")
    with pytest.raises(TokenizerError, match="no chat template"):
        token_lengths(plain, [HAND_PROMPT], [HAND_COMPLETION])


def test_missing_transformers_is_one_tokenizer_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    with pytest.raises(TokenizerError, match=r"transformers is not installed\. Install the kto extra \(in the "
                                             r"repository's clone: pip install '\.\[kto\]'\)"):
        load_tokenizer("Qwen/Qwen2.5-0.5B-Instruct")
