"""The pure selection functions: which rows, in which order. No `datasets` involved."""

import random
from collections import Counter

import pytest
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
    with pytest.raises(cs.OptionError, match=r"desirable=6 but the source has only 5 desirable rows.*replacement=True"):
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


def _windows_mixed(labels, batch_size):
    return all(
        len(set(labels[start : start + batch_size])) == 2 for start in range(0, len(labels) - batch_size + 1)
    )


@settings(max_examples=300, deadline=None)
@given(labels=labels_strategy, seed=st.integers(0, 1000), slack=st.integers(0, 5))
def test_mixed_order_mixes_every_window_at_the_smallest_batch_size(labels, seed, slack):
    n_pos = sum(labels)
    smallest = cs.smallest_mixed_batch_size(n_pos, len(labels) - n_pos)
    batch_size = smallest + slack
    order = cs.mixed_order(labels, batch_size, random.Random(seed))
    assert sorted(order) == list(range(len(labels)))
    assert _windows_mixed([labels[i] for i in order], batch_size)
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


def test_smallest_mixed_batch_size_of_the_full_source(source_rows):
    counts = Counter(row["label"] for row in source_rows)
    assert cs.smallest_mixed_batch_size(counts[True], counts[False]) == 4
