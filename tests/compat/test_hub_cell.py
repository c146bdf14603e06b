"""The version matrix on the Hub: `.ci/run` pushed an older export and then the CI export, under the latest
`datasets`, to a fake Hub kept in $CLAUDESIDIAN_HUB (.ci/seed_hub.py). Here, under whatever `datasets` is
installed, every config and split is loaded by repository id and by pinned revision, and does what the card
says for this `datasets`: it loads as from the exported folder, or stops with the error the card names."""

import json
import os

import datasets
import pytest
from fake_hub import FakeHub
from hub_client import as_the_card_says, configs_and_splits, load

STORAGE = os.environ.get("CLAUDESIDIAN_HUB")


@pytest.fixture(scope="module")
def hub():
    if not STORAGE:
        message = "CLAUDESIDIAN_HUB is not set: `bash .ci/run` pushes the CI export to a fake Hub there (datasets 5.x)"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI the matrix must run, never skip
        pytest.skip(message)
    served = FakeHub(storage=STORAGE)
    with open(os.path.join(STORAGE, "pushed.json"), encoding="utf-8") as file:
        yield served, json.load(file)
    served.close()


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_every_config_and_split_loads_by_repository_id_and_by_pinned_revision_as_the_card_says(hub, tmp_path,
                                                                                              streaming):
    served, pushed = hub
    old, new = pushed["pushes"]
    print(f"datasets {datasets.__version__}: {pushed['repo_id']} at {new['sha']} (head) and {old['sha']}")
    for revision, folder in [(None, new["folder"]), (new["sha"], new["folder"]), (old["sha"], old["folder"])]:
        pairs = configs_and_splits(folder)
        results = load(served, tmp_path / "home", pushed["repo_id"], pairs, revision=revision, streaming=streaming)
        assert len(results) == len(pairs)
        for (_, name, split), result in zip(pairs, results):
            print(f"  {revision or 'head'} {name} {split}: " + ("loads" if "error" not in result else result["error"]
                                                                 .split(". ")[0]))
        assert [as_the_card_says(folder, name, result) for (_, name, _), result in zip(pairs, results)] == \
            [True] * len(pairs), (revision, pairs, results)
    assert served.unanswered == []
