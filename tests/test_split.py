"""The held-out test split (`test_size`) and the published layout (`layout="conversations"`)."""

import json

import datasets
import pytest
from conftest import prompt_digests, windows_mixed

import claudesidian_synthetic as cs
from claudesidian_tools.kto import homogeneous_batches


def prompt_groups(source_rows) -> dict:
    groups = {}
    for row in source_rows:
        groups.setdefault(json.dumps(row["conversations"][:-1], sort_keys=True), []).append(row["label"])
    return groups


@pytest.mark.parametrize(("test_size", "seed"), [(0.1, 42), (0.1, 7), (0.2, 0), (0.05, 123), (150, 42), (0.5, 3)])
def test_split_is_prompt_disjoint_sized_and_stratified(source_path, source_rows, test_size, seed):
    order = {} if seed == 42 else {"order": "shuffle", "seed": seed}
    splits = cs.load("full", source=source_path, test_size=test_size, **order)
    train, test = splits["train"], splits["test"]
    assert len(train) + len(test) == len(source_rows)
    assert not prompt_digests(train) & prompt_digests(test)
    largest = max(len(labels) for labels in prompt_groups(source_rows).values())
    assert largest == 14  # the data README: one row occurs 14 times
    exact_rows = test_size if isinstance(test_size, int) else test_size * len(source_rows)
    desirable_share = sum(row["label"] for row in source_rows) / len(source_rows)
    assert abs(len(test) - exact_rows) <= largest
    assert abs(sum(test["label"]) - exact_rows * desirable_share) <= largest


def test_full_with_a_tenth_held_out(source_path):
    splits = cs.load("full", source=source_path, test_size=0.1)
    figures = {name: (len(split), sum(split["label"])) for name, split in splits.items()}
    assert figures == {"train": (900, 671), "test": (100, 75)}


def test_the_split_depends_on_the_seed_only(source_path):
    first = cs.load("full", source=source_path, test_size=0.1, order="shuffle", seed=5)
    again = cs.load("full", source=source_path, test_size=0.1, order="shuffle", seed=5)
    other = cs.load("full", source=source_path, test_size=0.1, order="shuffle", seed=6)
    assert list(first["test"]) == list(again["test"])
    assert prompt_digests(first["test"]) != prompt_digests(other["test"])


def test_selection_shapes_train_and_the_test_split_keeps_the_source_mix(source_path):
    splits = cs.load("balanced_custom", source=source_path, test_size=0.1)
    assert sum(splits["train"]["label"]) * 2 == len(splits["train"])  # balanced
    assert (len(splits["test"]), sum(splits["test"]["label"])) == (100, 75)  # the source's 3 : 1
    assert not prompt_digests(splits["train"]) & prompt_digests(splits["test"])


def test_dedupe_drops_duplicate_lines_from_both_splits(source_path):
    """One line occurs 14 times and its prompt is held out at seed 42: deduped, the test split holds it once."""
    plain = cs.load("full", source=source_path, test_size=0.1, order="shuffle")
    deduped = cs.load("full", source=source_path, test_size=0.1, order="shuffle", dedupe=True)
    for split in ("train", "test"):
        rows = [json.dumps(row, sort_keys=True) for row in deduped[split]]
        assert len(rows) == len(set(rows))
        assert prompt_digests(deduped[split]) == prompt_digests(plain[split])  # the same prompts, once each
    assert len(plain["test"]) - len(deduped["test"]) == 13
    repeated = [row for row in cs.load("full_eval", split="test", source=source_path)
                if row["completion"][0]["content"] == "Done."]  # the README's figure: 14 of 25 undesirable rows
    assert len(repeated) == 14 and len({json.dumps(row) for row in repeated}) == 1 and not repeated[0]["label"]


def test_mixed_order_applies_to_both_splits(source_path):
    splits = cs.load("full", source=source_path, test_size=0.1, order="mixed", batch_size=4)
    for split in splits.values():
        labels = split["label"]
        assert windows_mixed(labels, 4) and homogeneous_batches(labels, 4) == 0


def test_split_test_and_streaming(source_path):
    test = cs.load("full", split="test", source=source_path, test_size=0.1)
    assert isinstance(test, datasets.Dataset) and len(test) == 100
    streamed = cs.load("full", split="test", source=source_path, test_size=0.1, streaming=True)
    assert [row["label"] for row in streamed] == test["label"]


def test_a_test_split_with_one_label_is_refused(source_path):
    with pytest.raises(cs.OptionError, match="leaves the test split with one label"):
        cs.load("full", source=source_path, test_size=2)


def test_a_mixed_test_split_too_small_for_the_batch_size_is_refused(source_path):
    with pytest.raises(cs.OptionError, match="the test split: batch_size=2 cannot give every batch both labels"):
        cs.load("full", source=source_path, test_size=0.1, order="mixed", batch_size=2)


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, True, "0.1", -1])
def test_bad_test_size_values(source_path, value):
    with pytest.raises(cs.OptionError, match=r"test_size=.*: must be a fraction"):
        cs.load("full", source=source_path, test_size=value)


def test_balanced_254_refuses_a_test_size_and_says_what_to_use(source_path):
    with pytest.raises(cs.OptionError, match="it is the published file.*name='balanced_custom'.*name='full_eval'"):
        cs.load("balanced_254", source=source_path, test_size=0.1)


def test_conversations_layout_of_balanced_254_is_the_published_file(source_path, published_path):
    ours = cs.load("balanced_254", split="train", source=source_path, layout="conversations")
    published = datasets.load_dataset("json", data_files=published_path, split="train")
    assert ours.column_names == published.column_names == ["conversations", "label", "context"]
    assert ours.features == published.features
    assert list(ours) == list(published)


def test_layout_changes_columns_never_rows(source_path):
    kto = cs.load("full", split="train", source=source_path, order="shuffle", seed=3)
    conversations = cs.load("full", split="train", source=source_path, order="shuffle", seed=3, layout="conversations")
    assert [row["prompt"] + row["completion"] for row in kto] == conversations["conversations"]
    with pytest.raises(cs.OptionError, match="layout='chatml': must be one of kto, conversations"):
        cs.load("full", source=source_path, layout="chatml")


@pytest.mark.parametrize(("test_size", "seed"), [(0.1, 42), (0.2, 7)])
def test_one_held_out_prompt_set_for_every_config(source_path, source_rows, test_size, seed):
    """With the same seed and test size, every config's test split comes from the same held-out prompts,
    so no config's train split holds a prompt of any config's test split (staged training)."""
    built = {
        "full": cs.load("full", source=source_path, test_size=test_size, seed=seed, order="shuffle"),
        "balanced_custom": cs.load("balanced_custom", source=source_path, test_size=test_size, seed=seed),
        "balanced_length_matched": cs.load("balanced_length_matched", source=source_path, test_size=test_size,
                                           seed=seed),
        "sft": cs.load("sft", source=source_path, test_size=test_size, seed=seed, gate="keep"),
        "sft gated": cs.load("sft", source=source_path, test_size=test_size, seed=seed),
        "pairs": cs.load("pairs", source=source_path, test_size=test_size, seed=seed),
    }
    held_out = prompt_digests(built["full"]["test"])
    for name, splits in built.items():
        assert prompt_digests(splits["test"]) <= held_out, name
        for other in built.values():
            assert not prompt_digests(other["train"]) & prompt_digests(splits["test"]), name
    # sft's test split is every desirable held-out row (the gated one fewer); the pairs' test split every pair
    # of a held-out prompt.
    assert len(built["sft"]["test"]) == sum(built["full"]["test"]["label"]) > len(built["sft gated"]["test"])
    all_prompts = prompt_digests(built["pairs"]["train"]) | prompt_digests(built["pairs"]["test"])
    assert prompt_digests(built["pairs"]["test"]) == all_prompts & held_out


def test_sft_is_the_desirable_conversations(source_path, source_rows):
    splits = cs.load("sft", source=source_path, test_size=0, order="source", gate="keep")
    desirable = [row["conversations"] for row in source_rows if row["label"]]
    assert list(splits) == ["train"] and splits["train"].column_names == ["messages"]
    assert splits["train"]["messages"] == desirable


def test_sft_defaults_hold_out_a_tenth_and_drop_the_rows_whose_tool_calls_fail(source_path):
    ungated = cs.load("sft", source=source_path, gate="keep")
    assert {split: len(rows) for split, rows in ungated.items()} == {"train": 671, "test": 75}
    splits = cs.load("sft", source=source_path)  # 746 - 632 = 114 desirable rows fail a check
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 567, "test": 65}


def test_pairs_are_the_prompts_with_both_labels(source_path, source_rows):
    pairs = cs.load("pairs", split="train", source=source_path, test_size=0, order="source")
    assert pairs.column_names == ["prompt", "chosen", "rejected"] and len(pairs) == 43
    by_prompt = {}
    for row in source_rows:
        replies = by_prompt.setdefault(cs.json_digest(row["conversations"][:-1]), (set(), set()))
        replies[0 if row["label"] else 1].add(cs.json_digest(row["conversations"][-1]))
    for pair in pairs:
        chosen, rejected = by_prompt[cs.json_digest(pair["prompt"])]
        assert cs.json_digest(pair["chosen"][0]) in chosen and cs.json_digest(pair["rejected"][0]) in rejected
    assert len({(cs.json_digest(p["prompt"]), cs.json_digest(p["chosen"]), cs.json_digest(p["rejected"]))
                for p in pairs}) == 43  # every pair distinct


def test_pairs_with_a_held_out_split(source_path):
    splits = cs.load("pairs", source=source_path)
    assert len(splits["train"]) + len(splits["test"]) == 43 and len(splits["test"]) >= 1
