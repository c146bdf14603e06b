"""dataset_infos.json is generated from the builder (`claudesidian-synthetic infos`) and must not drift."""

import json

from conftest import DATA, REPO

from claudesidian_tools.infos import build_infos, write_infos


def test_committed_dataset_infos_match_the_builder(source_path, tmp_path):
    write_infos(build_infos(source=str(DATA)), str(tmp_path))
    generated = json.loads((tmp_path / "dataset_infos.json").read_text())
    committed = json.loads((REPO / "dataset_infos.json").read_text())
    assert committed == generated, (
        "dataset_infos.json drifted from the builder: run "
        "`claudesidian-synthetic infos --source ../shared/data` and commit it"
    )
    assert committed["full"]["splits"]["train"]["num_examples"] == 1000
    assert committed["balanced_254"]["splits"]["train"]["num_examples"] == 508
    assert committed["family"]["splits"]["train"]["num_examples"] + committed["family"]["splits"]["test"][
        "num_examples"] == 1000 + 787 + 1438
