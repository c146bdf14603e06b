"""The source's facts (each row's label, place, lengths, digests and tool-call checks) are read once per
source bytes, tool schemas and code, kept beside the `datasets` cache, and served to every later build,
`stats`, export and `verify` of the same bytes."""

import pytest
from conftest import make_row

import claudesidian_synthetic as cs
from claudesidian_tools import export as exporter
from claudesidian_tools.manifest import read_manifest
from claudesidian_tools.stats import config_stats, count_config


@pytest.fixture
def counted_scans(monkeypatch):
    """Every call of the strict reader (`scan_source`) and of the reply parser, counted."""
    calls = {"scans": 0, "parses": 0}
    scan, parse = cs.scan_source, cs.parse_reply

    def counting_scan(*args, **kwargs):
        calls["scans"] += 1
        return scan(*args, **kwargs)

    def counting_parse(text):
        calls["parses"] += 1
        return parse(text)

    monkeypatch.setattr(cs, "scan_source", counting_scan)
    monkeypatch.setattr(cs, "parse_reply", counting_parse)
    return calls


def _plans(name, **options):
    plans = cs.builder(name, **options).plan_splits(tool_schemas=cs.load_tool_schemas())
    return {split: (plan.offsets.tolist(), plan.lengths.tolist(), plan.checks.first_failed.tolist(),
                    plan.checks.reasons) for split, plan in plans.items()}


def test_a_second_plan_of_the_same_bytes_reads_no_line(own_cache, source_path, counted_scans):
    first = _plans("full_eval", source=source_path)
    assert counted_scans == {"scans": 1, "parses": 1000}  # every reply parsed once, by the scan
    assert _plans("full_eval", source=source_path) == first
    assert _plans("sft", source=source_path)  # another config: its gate's checks are among the facts kept
    assert counted_scans == {"scans": 1, "parses": 1000}


def test_an_export_of_several_configs_parses_each_reply_once_and_its_rerun_none(own_cache, source_path, tmp_path,
                                                                              counted_scans):
    specs = [exporter.parse_config_spec(name) for name in ("full", "full_eval", "sft", "pairs", "balanced_254")]
    exporter.export(str(tmp_path / "a"), specs, source=source_path)
    assert counted_scans["parses"] == 1000
    exporter.export(str(tmp_path / "b"), specs, source=source_path)
    assert counted_scans["parses"] == 1000
    figures = [[entry["stats"] for entry in read_manifest(str(tmp_path / folder))["configs"]] for folder in "ab"]
    assert figures[0] == figures[1] and figures[0][2]["train"]["tool_calls"]["desirable"]["rows"] == 567


def test_the_funnel_from_kept_facts_is_the_funnel_of_parsed_replies(own_cache, source_path, monkeypatch):
    """`stats` takes each reply's checks from the facts; checking every built reply again gives the same."""
    from_facts = config_stats(count_config("kto_tools", source=source_path)[0])
    reparsed = config_stats(_count_without_facts("kto_tools", source_path, monkeypatch)[0])
    assert from_facts == reparsed
    # After the gate, every desirable decision of kto_tools passes every check (the README's 1236 train rows).
    assert from_facts["train"]["tool_calls"]["desirable"]["passing"]["context"] == 1236


def _count_without_facts(name, source_path, monkeypatch):
    """count_config with plans that carry no checks, so SplitStats checks each reply itself."""
    plan_splits = cs.ClaudesidianSynthetic.plan_splits

    def without_checks(self, *args, tool_schemas=None, **kwargs):
        return plan_splits(self, *args, **kwargs)

    monkeypatch.setattr(cs.ClaudesidianSynthetic, "plan_splits", without_checks)
    return count_config(name, source=source_path)


def test_changed_bytes_and_other_schemas_are_read_again(own_cache, write_source, tmp_path, counted_scans):
    rows = [make_row(index, index % 3 != 0) for index in range(9)]
    path = write_source(rows)
    assert len(cs.load("balanced_custom", split="train", source=path, order="source")) == 6
    with open(path, "a", encoding="utf-8") as file:  # one more undesirable row: other bytes, other facts
        file.write('{"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], '
                   '"label": false}\n')
    assert len(cs.load("balanced_custom", split="train", source=path, order="source")) == 8
    assert counted_scans["scans"] == 2
    schemas = tmp_path / "tool_schemas.json"
    schemas.write_bytes(open(cs.load_tool_schemas().path, "rb").read() + b"\n")  # the same tools, other bytes
    for _ in range(2):
        cs.builder("balanced_custom", source=path).plan_splits(tool_schemas=cs.load_tool_schemas(str(schemas)))
        cs.builder("balanced_custom", source=path).plan_splits(tool_schemas=cs.load_tool_schemas())
    assert counted_scans["scans"] == 4  # once for each schemas' checks, then both kept


def test_facts_that_cannot_be_kept_or_read_cost_only_a_scan(own_cache, write_source, counted_scans):
    path = write_source([make_row(index, index % 2 == 0) for index in range(6)])
    own_cache.mkdir(parents=True, exist_ok=True)
    (own_cache / "claudesidian_synthetic_facts").write_text("a file where the folder would be")
    expected = cs.load("balanced_custom", split="train", source=path, order="source").to_list()
    (own_cache / "claudesidian_synthetic_facts").unlink()
    cs.builder("balanced_custom", source=path).plan_splits()
    [kept] = (own_cache / "claudesidian_synthetic_facts").iterdir()
    kept.write_bytes(b"not a facts file")
    assert cs.load("balanced_custom", split="train", source=path, order="source", seed=1).to_list() == expected
    assert counted_scans["scans"] == 3
