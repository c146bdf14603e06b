"""dataset_infos.json is generated from the builder (`claudesidian-synthetic infos`) and must not drift."""

import json

from conftest import REPO

from claudesidian_tools.infos import build_infos, write_infos


def test_committed_dataset_infos_match_the_builder(source_path, tmp_path):
    write_infos(build_infos(source=source_path), str(tmp_path))
    generated = json.loads((tmp_path / "dataset_infos.json").read_text())
    committed = json.loads((REPO / "dataset_infos.json").read_text())
    assert committed == generated, (
        "dataset_infos.json drifted from the builder: run "
        "`claudesidian-synthetic infos --source ../shared/data/syngen_toolset_v1.0.0_claude.jsonl` and commit it"
    )
    assert committed["full"]["splits"]["train"]["num_examples"] == 1000
    assert committed["balanced_254"]["splits"]["train"]["num_examples"] == 508
