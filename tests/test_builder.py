"""The builder end to end through `load()`, on the real files and generated ones."""

import json
import os

import datasets
import numpy as np
import pytest
from conftest import as_source_rows, config_source, make_row, windows_mixed

import claudesidian_synthetic as cs


def test_balanced_254_is_the_published_file(source_path, published_rows):
    dataset = cs.load("balanced_254", split="train", source=source_path)
    assert len(dataset) == 508
    assert as_source_rows(dataset) == published_rows
    first_50 = dataset["label"][:50]
    assert (sum(first_50), 50 - sum(first_50)) == (26, 24)


def test_columns_are_ktos(source_path):
    dataset = cs.load("balanced_254", split="train", source=source_path)
    assert dataset.column_names == ["prompt", "completion", "label", "context"]
    assert dataset.features == cs.LAYOUTS["kto"].features
    row = dataset[0]
    assert row["completion"][0]["role"] == "assistant" and len(row["completion"]) == 1
    assert all(set(message) == {"role", "content"} for message in row["prompt"])


def test_full_is_every_source_row_in_order(source_path, source_rows):
    dataset = cs.load("full", split="train", source=source_path)
    assert as_source_rows(dataset) == [{**row, "context": row.get("context")} for row in source_rows]
    assert sum(dataset["label"]) == 746


def test_balanced_custom_defaults_equal_balanced_254(source_path):
    custom = cs.load("balanced_custom", split="train", source=source_path)
    published = cs.load("balanced_254", split="train", source=source_path)
    assert custom["label"] == published["label"]
    assert custom["prompt"] == published["prompt"]


@pytest.mark.parametrize(
    ("options", "rows", "desirable"),
    [
        ({"desirable": 300, "undesirable": 200, "seed": 7}, 500, 300),
        ({"ratio": 2.0}, 762, 508),
        ({"desirable": 900, "replacement": True}, 1154, 900),
        ({"order": "mixed", "batch_size": 2}, 508, 254),
    ],
)
def test_balanced_custom_options(source_path, options, rows, desirable):
    dataset = cs.load("balanced_custom", split="train", source=source_path, **options)
    assert (len(dataset), sum(dataset["label"])) == (rows, desirable)


def test_dedupe_drops_the_19_duplicate_lines_and_says_so(source_path, source_rows, caplog):
    dataset = cs.load("full", split="train", source=source_path, dedupe=True)
    unique = {json.dumps(row, sort_keys=True) for row in source_rows}
    assert len(dataset) == len(unique) == 981
    assert "dropped 19 exact duplicate" in caplog.text


def test_duplicates_are_decided_by_the_bytes_not_the_hash(source_path, source_rows, monkeypatch):
    # Every line shares one hash: only the byte comparison can tell the 19 true duplicates apart.
    honest = cs.scan_source(source_path)
    monkeypatch.setattr(cs, "hash", lambda line: 0, raising=False)  # the scan's builtin, shadowed
    colliding = cs.scan_source(source_path)
    lines = [json.dumps(row, sort_keys=True) for row in source_rows]
    expected = [line in lines[:index] for index, line in enumerate(lines)]
    assert colliding.duplicate.tolist() == honest.duplicate.tolist() == expected
    assert sum(expected) == 19


def test_scan_keeps_each_rows_reply_length_in_characters(source_path, source_rows):
    scan = cs.scan_source(source_path)
    assert scan.completion_chars.dtype == np.int64
    assert scan.completion_chars.tolist() == [len(row["conversations"][-1]["content"]) for row in source_rows]
    assert np.median(scan.completion_chars[scan.labels]) == 1432
    assert np.median(scan.completion_chars[~scan.labels]) == 628


def test_reply_length_counts_code_points_not_bytes_or_utf16_units(write_source):
    reply = "caf\u00e9 \U0001F600"  # 6 characters, 10 bytes of UTF-8, 7 UTF-16 code units
    rows = [make_row(0, True), {**make_row(1, False), "conversations": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": reply}]}]
    path = write_source([rows[0], "", json.dumps(rows[1])])  # json.dumps escapes the emoji as \ud83d\ude00
    assert cs.scan_source(path).completion_chars.tolist() == [len("answer 0"), 6]


def test_balanced_custom_dedupe_balances_the_unique_rows(source_rows, source_path):
    unique = {json.dumps(row): row["label"] for row in source_rows}  # same bytes as the source lines
    smaller = min(sum(unique.values()), len(unique) - sum(unique.values()))
    dataset = cs.load("balanced_custom", split="train", source=source_path, dedupe=True)
    assert (len(dataset), sum(dataset["label"])) == (2 * smaller, smaller)
    assert len({json.dumps(row) for row in as_source_rows(dataset)}) == len(dataset)


def test_full_mixed_order_has_no_single_label_batch(source_path):
    dataset = cs.load("full", split="train", source=source_path, order="mixed", batch_size=4)
    assert windows_mixed(dataset["label"], 4)
    assert sorted(map(json.dumps, dataset["prompt"])) == sorted(
        map(json.dumps, cs.load("full", split="train", source=source_path)["prompt"])
    )


def test_second_load_regenerates_nothing(source_path, monkeypatch):
    first = cs.load("balanced_custom", split="train", source=source_path, seed=3)

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have served this")

    monkeypatch.setattr(cs.ClaudesidianSynthetic, "plan_splits", fail)
    second = cs.load("balanced_custom", split="train", source=source_path, seed=3)
    assert second["label"] == first["label"]
    with pytest.raises(AssertionError, match="cache"):
        cs.load("balanced_custom", split="train", source=source_path, seed=4)  # other options: other entry


def test_each_datasets_version_has_its_own_cache_entry(source_path, monkeypatch):
    """datasets 3.6 cannot read the cache files 5.x writes: the two never share an entry."""
    here = cs.ClaudesidianSynthetic(config_name="full", source=source_path)
    monkeypatch.setattr(datasets, "__version__", "3.6.0")
    other = cs.ClaudesidianSynthetic(config_name="full", source=source_path)
    assert here.cache_dir != other.cache_dir


def test_cache_entries_differ_per_option(source_path):
    seven = cs.ClaudesidianSynthetic(config_name="balanced_custom", source=source_path, seed=7)
    eight = cs.ClaudesidianSynthetic(config_name="balanced_custom", source=source_path, seed=8)
    assert seven.cache_dir != eight.cache_dir


def test_pinned_configs_refuse_other_bytes(write_source, source_path):
    with open(source_path, encoding="utf-8") as file:
        rows = [json.loads(line) for line in file]
    assert rows[0]["label"] is True
    other = write_source(rows[1:])  # one desirable row less: not v1.0.0
    for name in ("full", "balanced_254"):
        with pytest.raises(cs.SourceError, match=r"is not the v1.0.0 source.*balanced_custom"):
            cs.load(name, source=other)
    assert len(cs.load("balanced_custom", split="train", source=other)) == 2 * 254


def test_changed_source_rebuilds_instead_of_serving_stale_cache(write_source):
    path = write_source([make_row(i, i % 3 != 0) for i in range(30)])
    before = cs.load("balanced_custom", split="train", source=path)
    assert len(before) == 20
    write_source([make_row(i, i % 2 == 0) for i in range(30)])  # same path, other bytes
    after = cs.load("balanced_custom", split="train", source=path)
    assert len(after) == 30


def test_context_missing_fields_become_null(write_source):
    path = write_source([make_row(0, True, context=True), make_row(1, False)])
    dataset = cs.load("balanced_custom", split="train", source=path, order="source")
    assert dataset[0]["context"]["sessionId"] == "s0" and dataset[0]["context"]["subgoal"] is None
    assert dataset[1]["context"] is None


def test_rows_equal_what_datasets_own_encoding_makes_of_them(write_source, source_rows):
    # The builder skips datasets' per-value encoding of rows it has checked; the Arrow data must not differ.
    rows = source_rows[:60] + [make_row(i, i % 2 == 0, context=i % 3 == 0) for i in range(30)]
    path = write_source(rows)
    desirable = sum(row["label"] for row in rows)
    built = cs.load("balanced_custom", split="train", source=path, order="source",
                    desirable=desirable, undesirable=len(rows) - desirable)
    reference = datasets.Dataset.from_list(
        [{"prompt": row["conversations"][:-1], "completion": row["conversations"][-1:], "label": row["label"],
          "context": row.get("context")} for row in rows],
        features=cs.LAYOUTS["kto"].features,
    )
    assert type(built.features) is datasets.Features and built.features == reference.features
    assert built.data.table.schema.types == reference.data.table.schema.types
    assert built.to_list() == reference.to_list()


@pytest.mark.parametrize("name", list(cs.CONFIGS))
def test_streaming_gives_the_same_rows_in_the_same_order(source_path, name):
    prepared = cs.load(name, source=config_source(name, source_path))
    streamed = cs.load(name, source=config_source(name, source_path), streaming=True)
    assert list(streamed) == list(prepared)
    for split in prepared:
        assert isinstance(streamed[split], datasets.IterableDataset)
        assert list(streamed[split]) == list(prepared[split])


def test_a_misspelled_option_in_python_gets_the_closest_one():
    with pytest.raises(cs.OptionError, match=r"unknown option\(s\) sorce \(did you mean source\?\)"):
        cs.load("full", sorce="x.jsonl")


def test_load_without_split_gives_a_dataset_dict(source_path):
    result = cs.load("balanced_254", source=source_path)
    assert isinstance(result, datasets.DatasetDict) and list(result) == ["train"]


def test_relative_source_is_resolved(source_path, tmp_path, monkeypatch):
    monkeypatch.chdir(os.path.dirname(source_path))
    dataset = cs.load("balanced_254", split="train", source=os.path.basename(source_path))
    assert len(dataset) == 508


def test_the_loading_script_imports_one_name_per_line_and_only_what_the_package_installs():
    # datasets<4 reads a script's imports line by line and misreads `from a import b, c`; the Hub
    # script must also stand alone: the standard library, `datasets`, what `datasets` requires and this
    # package's own requirements (msgspec), which datasets<4 names in its "install" line when one is missing.
    import ast
    import importlib.metadata
    import re
    import sys

    tree = ast.parse(open(cs.__file__, encoding="utf-8").read())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imports and all(len(node.names) == 1 for node in imports)
    modules = {(node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
               for node in imports}

    def requirements(package: str) -> set:
        return {re.split(r"[^A-Za-z0-9_-]", line)[0].replace("-", "_").lower()
                for line in importlib.metadata.requires(package) if "extra ==" not in line}

    third_party = modules - set(sys.stdlib_module_names)
    beyond_datasets = third_party - {"datasets"} - requirements("datasets")
    assert "datasets" in third_party and beyond_datasets == {"msgspec"} <= requirements("claudesidian-synthetic")


@pytest.mark.parametrize("name", ["full", "kto_tools", "pairs"])
def test_a_plans_examples_are_the_same_whatever_the_window_of_places(source_path, monkeypatch, name):
    """`iter_examples` turns a plan's places (and relabelled labels, and pairs' two rows) into Python numbers a
    window at a time; windows of 7 rows, the last one short, give the examples of one window over all 1000."""
    built = cs.builder(name, source=source_path)
    plans = built.plan_splits()
    whole = {split: list(built.iter_examples(plan)) for split, plan in plans.items()}
    monkeypatch.setattr(cs, "_ROWS_PER_WINDOW", 7)
    assert {split: list(built.iter_examples(plan)) for split, plan in plans.items()} == whole
    assert sum(map(len, whole.values())) == {"full": 1000, "kto_tools": 1540 + 173, "pairs": 43}[name]
