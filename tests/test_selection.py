"""The pure selection functions: which rows, in which order. No `datasets` involved."""

import random
from collections import Counter

import numpy as np
import pytest
from conftest import windows_mixed
from hypothesis import given, settings
from hypothesis import strategies as st

import claudesidian_synthetic as cs

labels_strategy = st.lists(st.booleans(), min_size=2, max_size=200).filter(lambda labels: 0 < sum(labels) < len(labels))


def test_published_recipe_reproduces_the_published_file(source_rows, published_rows):
    # The recipe as ../shared/data/README.md states it, against the published file itself.
    labels = [row["label"] for row in source_rows]
    picked = [source_rows[i] for i in cs.balanced_indices(labels)]
    expected = [{**row, "context": row.get("context")} for row in picked]
    assert expected == published_rows


@pytest.mark.parametrize(
    ("n_desirable", "n_undesirable", "options", "expected"),
    [
        (746, 254, {}, (254, 254)),
        (100, 300, {}, (100, 100)),
        (746, 254, {"desirable": 300, "undesirable": 200}, (300, 200)),
        (746, 254, {"desirable": 300}, (300, 254)),
        (746, 254, {"undesirable": 100}, (746, 100)),
        (746, 254, {"ratio": 2.0}, (508, 254)),
        (746, 254, {"ratio": 0.5}, (127, 254)),
        (100, 300, {"ratio": 0.5}, (100, 200)),
    ],
)
def test_class_counts(n_desirable, n_undesirable, options, expected):
    assert cs.class_counts(n_desirable, n_undesirable, **options) == expected


def test_ratio_that_leaves_no_row_is_an_error():
    with pytest.raises(cs.OptionError, match="ratio=0.001"):
        cs.class_counts(746, 254, ratio=0.001)


@settings(max_examples=200, deadline=None)
@given(labels=labels_strategy, seed=st.integers(0, 2**32), data=st.data())
def test_balanced_indices_properties(labels, seed, data):
    n_pos, n_neg = sum(labels), len(labels) - sum(labels)
    desirable = data.draw(st.integers(1, n_pos))
    undesirable = data.draw(st.integers(1, n_neg))
    rows = cs.balanced_indices(labels, desirable=desirable, undesirable=undesirable, seed=seed)
    assert sum(labels[i] for i in rows) == desirable
    assert sum(not labels[i] for i in rows) == undesirable
    assert len(set(rows)) == len(rows)  # no duplicates without replacement
    assert all(0 <= i < len(labels) for i in rows)  # every row from the source
    assert rows == cs.balanced_indices(labels, desirable=desirable, undesirable=undesirable, seed=seed)


@settings(max_examples=100, deadline=None)
@given(labels=labels_strategy, seed=st.integers(0, 1000), extra=st.integers(1, 50))
def test_replacement_oversamples_past_a_class_size(labels, seed, extra):
    n_pos = sum(labels)
    rows = cs.balanced_indices(labels, desirable=n_pos + extra, seed=seed, replacement=True)
    assert sum(labels[i] for i in rows) == n_pos + extra
    assert len(rows) == n_pos + extra + len(labels) - n_pos


def test_counts_beyond_the_source_without_replacement_say_how_many_there_are():
    labels = [True] * 5 + [False] * 3
    with pytest.raises(cs.OptionError,
                       match=r"desirable=6 but there are only 5 desirable rows to draw from.*replacement=True"):
        cs.balanced_indices(labels, desirable=6)


def test_single_label_source_is_refused():
    with pytest.raises(cs.OptionError, match="needs both labels"):
        cs.balanced_indices([True, True, True])


def test_class_kept_whole_is_not_drawn():
    # The minority is kept whole and in source order before the shuffle: same as the recipe.
    labels = [True, False, True, True, False]
    rng = random.Random(3)
    picked = rng.sample([0, 2, 3], 2) + [1, 4]
    rng.shuffle(picked)
    assert cs.balanced_indices(labels, seed=3) == picked


@settings(max_examples=300, deadline=None)
@given(labels=labels_strategy, seed=st.integers(0, 1000), slack=st.integers(0, 5))
def test_mixed_order_mixes_every_window_at_the_smallest_batch_size(labels, seed, slack):
    n_pos = sum(labels)
    smallest = cs.smallest_mixed_batch_size(n_pos, len(labels) - n_pos)
    batch_size = smallest + slack
    order = cs.mixed_order(labels, batch_size, random.Random(seed))
    assert sorted(order) == list(range(len(labels)))
    assert windows_mixed([labels[i] for i in order], batch_size)
    assert order == cs.mixed_order(labels, batch_size, random.Random(seed))


@settings(max_examples=200, deadline=None)
@given(labels=labels_strategy)
def test_below_the_smallest_batch_size_no_order_mixes_every_window(labels):
    n_pos = sum(labels)
    minority, majority = sorted((n_pos, len(labels) - n_pos))
    smallest = cs.smallest_mixed_batch_size(n_pos, len(labels) - n_pos)
    if smallest == 2:
        return
    # Pigeonhole: m minority rows leave m + 1 majority runs, one of them at least ceil(M / (m + 1)) long,
    # so windows of smallest - 1 rows cannot all be mixed.
    assert majority > (minority + 1) * (smallest - 2)
    with pytest.raises(cs.OptionError, match=f"smallest batch size that works is {smallest}"):
        cs.mixed_order(labels, smallest - 1, random.Random(0))


def _prompt_clashes(order, prompts, batch_size):
    """Positions whose prompt also sits among the batch_size - 1 rows before them."""
    return [position for position in range(len(order)) if prompts[order[position]]
            in {prompts[row] for row in order[max(0, position - batch_size + 1) : position]}]


@settings(max_examples=300, deadline=None)
@given(labels=labels_strategy, seed=st.integers(0, 1000), groups=st.integers(1, 30), slack=st.integers(0, 4),
       data=st.data())
def test_spread_prompts_keeps_labels_in_place_and_never_adds_a_clash(labels, seed, groups, slack, data):
    prompts = data.draw(st.lists(st.integers(0, groups - 1), min_size=len(labels), max_size=len(labels)))
    batch_size = cs.smallest_mixed_batch_size(sum(labels), len(labels) - sum(labels)) + slack
    order = cs.mixed_order(labels, batch_size, random.Random(seed))
    spread = cs.spread_prompts(order, labels, prompts, batch_size)
    assert sorted(spread) == sorted(order)
    assert [labels[row] for row in spread] == [labels[row] for row in order]  # every window keeps both labels
    before, after = _prompt_clashes(order, prompts, batch_size), _prompt_clashes(spread, prompts, batch_size)
    assert len(after) < len(before) or spread == order  # better, or as it was
    # 16-byte digests in a numpy array (what the builder passes) give the same order as Python values.
    digests = np.array([bytes([prompt]) * 16 for prompt in prompts], dtype="V16")
    assert cs.spread_prompts(order, labels, digests, batch_size) == spread


def test_spread_prompts_moves_a_clash_that_a_later_row_of_its_label_can_fill():
    # rows 0 and 1 share a prompt in the first batch of 2; row 3 (desirable too) takes row 1's place.
    assert cs.spread_prompts([0, 1, 2, 3, 4], [True, True, False, True, False], ["p", "p", "q", "r", "s"], 2) == [
        0, 3, 2, 1, 4]
    # no later desirable row: the clash stays (reported by stats, never a label moved).
    assert cs.spread_prompts([0, 2, 1], [True, False, True], ["p", "q", "p"], 3) == [0, 2, 1]


def test_smallest_mixed_batch_size_of_the_full_source(source_rows):
    counts = Counter(row["label"] for row in source_rows)
    assert cs.smallest_mixed_batch_size(counts[True], counts[False]) == 4


def test_the_published_selection_is_random_random_42_itself():
    """Named streams keep the published recipe's generator: `random.Random(seed)`, not a derived seed."""
    assert cs.random_stream(42, "selection").random() == random.Random(42).random()
    streams = {name: cs.random_stream(42, name, epoch=1).random() for name in ("selection", "held_out", "test_order",
                                                                                "sampler_epoch")}
    assert len(set(streams.values())) == 4  # each use draws from a stream of its own


@settings(max_examples=150, deadline=None)
@given(labels=labels_strategy, seed=st.integers(0, 1000), strata=st.integers(1, 6), data=st.data())
def test_length_matched_indices_match_each_stratum(labels, seed, strata, data):
    lengths = data.draw(st.lists(st.integers(0, 500), min_size=len(labels), max_size=len(labels)))
    positive = [i for i, label in enumerate(labels) if label]
    negative = [i for i, label in enumerate(labels) if not label]
    smaller = positive if len(positive) < len(negative) else negative
    try:
        rows = cs.length_matched_indices(labels, lengths, strata=strata, seed=seed, order="source")
    except cs.OptionError as error:
        if "give at most" in str(error):  # refused as changing nothing: the rows fall into the same groups
            most = len(smaller) + 1
            reference = [lengths[i] for i in smaller]
            many, fewer = (cs.length_strata_of(lengths, reference, n).tolist() for n in (strata, most))
            assert strata > most and len(set(zip(many, fewer))) == len(set(many)) == len(set(fewer))
            return
        assert "no stratum holds both labels" in str(error)
        return
    stratum = cs.length_strata_of(lengths, [lengths[i] for i in smaller], strata)
    assert len(set(rows)) == len(rows) and rows == sorted(rows)
    for level in range(strata):
        taken = [labels[i] for i in rows if stratum[i] == level]
        available = [labels[i] for i in range(len(labels)) if stratum[i] == level]
        expected = min(sum(available), len(available) - sum(available))
        assert sum(taken) == len(taken) - sum(taken) == expected  # as many of each label as the smaller side
    assert rows == cs.length_matched_indices(labels, lengths, strata=strata, seed=seed, order="source")


def test_length_matched_ratio_keeps_the_ratio_per_stratum():
    labels = [True] * 60 + [False] * 20
    lengths = list(range(60)) + list(range(0, 60, 3))
    rows = cs.length_matched_indices(labels, lengths, strata=4, ratio=2.0, seed=1, order="source")
    desirable = sum(labels[i] for i in rows)
    assert desirable == 2 * (len(rows) - desirable) == 40


def test_length_matching_that_leaves_a_label_empty_is_refused():
    # Every desirable reply is shorter than the shortest undesirable one (the smaller label, whose
    # quantiles cut the strata): the desirable rows all fall below the first cut, alone.
    with pytest.raises(cs.OptionError, match=r"length_strata=2 leaves 0 desirable and 0 undesirable rows.*fewer"):
        cs.length_matched_indices([True] * 3 + [False] * 2, [1, 2, 3, 100, 100], strata=2)


def test_length_matching_on_the_source_meets_the_target(source_path):
    """The issue's target on v1.0.0: a distance of at most 0.10 with at least 190 rows per label."""
    from claudesidian_tools.lengths import ks_distance

    scan = cs.scan_source(source_path)
    rows = cs.length_matched_indices(scan.labels.tolist(), scan.completion_chars, strata=10)
    labels = scan.labels[rows]
    lengths = scan.completion_chars[rows]
    assert labels.sum() == (~labels).sum() >= 190
    assert ks_distance(lengths[labels], lengths[~labels]) <= 0.10


def test_preference_pairs_are_every_distinct_reply_pair_of_a_prompt_with_both_labels():
    labels = [True, False, False, True, True, False, True]
    prompts = ["p", "p", "p", "p", "q", "r", "r"]
    replies = ["a", "b", "b", "c", "d", "e", "e"]  # rows 1 and 2 are the same reply; r's reply is both
    assert cs.preference_pairs(labels, prompts, replies) == [(0, 1), (3, 1)]


def test_preference_pairs_of_the_source(source_rows):
    """The issue's figures: 933 prompts, 42 with both labels, 43 distinct pairs."""
    prompts = [cs.json_digest(row["conversations"][:-1]) for row in source_rows]
    replies = [cs.json_digest(row["conversations"][-1:]) for row in source_rows]
    pairs = cs.preference_pairs([row["label"] for row in source_rows], prompts, replies)
    assert len(set(prompts)) == 933 and len({prompts[chosen] for chosen, _ in pairs}) == 42 and len(pairs) == 43
    assert all(source_rows[chosen]["label"] and not source_rows[rejected]["label"] for chosen, rejected in pairs)
    assert all(prompts[chosen] == prompts[rejected] for chosen, rejected in pairs)


def test_length_strata_cut_at_the_reference_quantiles():
    strata = cs.length_strata_of(np.arange(10), reference=[2, 4, 6, 8], strata=4)
    assert strata.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3]  # a stratum holds [edge below, edge above)
