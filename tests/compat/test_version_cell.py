"""One cell of the version matrix: whatever `datasets` is installed, every path that version supports
must give the published rows of `balanced_254`. `.ci/run` runs this file under datasets 3.6, 4.7 and 5.x."""

import os

import datasets
import pytest
from conftest import REPO, as_source_rows
from packaging.version import Version

import claudesidian_synthetic as cs

VERSION = Version(datasets.__version__)
print(f"datasets {datasets.__version__}")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, source_path):
    """The folder made by `claudesidian-synthetic export` ($CLAUDESIDIAN_EXPORT in CI: made under 5.x)."""
    given = os.environ.get("CLAUDESIDIAN_EXPORT")
    if given:
        return given
    from claudesidian_tools.export import export

    folder = tmp_path_factory.mktemp("export")
    export(str(folder), source=source_path)
    return str(folder)


def test_load_helper(source_path, published_rows):
    dataset = cs.load("balanced_254", split="train", source=source_path)
    assert as_source_rows(dataset) == published_rows
    streamed = cs.load("balanced_254", split="train", source=source_path, streaming=True)
    assert [row["label"] for row in streamed] == dataset["label"]


@pytest.mark.skipif(VERSION >= Version("4.0"), reason="datasets>=4 refuses loading scripts")
@pytest.mark.parametrize("name", ["balanced_254", "full"])
def test_loading_script(source_path, published_rows, source_rows, name):
    dataset = datasets.load_dataset(
        str(REPO / "claudesidian_synthetic.py"), name=name, split="train", trust_remote_code=True, source=source_path
    )
    expected = published_rows if name == "balanced_254" else [{**r, "context": r.get("context")} for r in source_rows]
    assert as_source_rows(dataset) == expected


@pytest.mark.skipif(VERSION >= Version("4.0"), reason="datasets>=4 refuses loading scripts")
@pytest.mark.parametrize("name", [name for name in cs.CONFIGS if name not in ("balanced_254", "full")])
def test_loading_script_builds_every_config_as_load_does(source_path, name):
    """Every entry of the configs table is a config of the loading script too."""
    scripted = datasets.load_dataset(str(REPO / "claudesidian_synthetic.py"), name=name, trust_remote_code=True,
                                     source=source_path)
    built = cs.load(name, source=source_path)
    assert list(scripted) == list(built)
    for split in built:
        assert scripted[split].to_list() == built[split].to_list(), (name, split)


@pytest.mark.skipif(VERSION >= Version("4.0"), reason="datasets>=4 refuses loading scripts")
def test_loading_script_custom_options(source_path):
    dataset = datasets.load_dataset(
        str(REPO / "claudesidian_synthetic.py"), name="balanced_custom", split="train", trust_remote_code=True,
        source=source_path, desirable=300, undesirable=200, seed=7,
    )
    assert (len(dataset), sum(dataset["label"])) == (500, 300)


def test_exported_folder(export_dir, published_rows):
    assert datasets.get_dataset_config_names(export_dir)[:2] == ["balanced_254", "full"]
    dataset = datasets.load_dataset(export_dir, name="balanced_254", split="train")
    assert as_source_rows(dataset) == published_rows
    assert len(datasets.load_dataset(export_dir, name="full", split="train")) == 1000


@pytest.mark.skipif(VERSION >= Version("4.0"), reason="the card's loading-script block is for datasets<4")
def test_card_loading_script_block(export_dir, source_path, tmp_path):
    """The card's `datasets<4` block, as written, with the source on a fake Hub at HF_ENDPOINT."""
    import re
    import shutil
    import subprocess
    import sys

    from fake_hub import FakeHub

    card = open(os.path.join(export_dir, "README.md"), encoding="utf-8").read()
    (block,) = [code for code in re.findall(r"```python\n(.*?)```", card, flags=re.S) if "trust_remote_code" in code]
    (tmp_path / "main").mkdir()
    shutil.copyfile(source_path, tmp_path / "main" / cs.SOURCE_FILENAME)
    hub = FakeHub()
    hub.add(cs.SOURCE_REPO_ID, "main", str(tmp_path / "main"))
    try:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "home")}
        # From the folder that holds the export, as the card says its commands run.
        result = subprocess.run([sys.executable, "-c", block + "\nprint('ROWS', len(ds['train']))"],
                                cwd=os.path.dirname(os.path.abspath(export_dir)), env=env, capture_output=True,
                                text=True, timeout=600)
    finally:
        hub.close()
    assert "ROWS 500" in result.stdout, result.stderr[-3000:]


def test_a_folder_named_like_the_loading_script_loads_its_parquet(export_dir, tmp_path, published_rows):
    """The script lies in loading_script/, so no `datasets` takes a folder named after it for a script."""
    import shutil

    folder = shutil.copytree(export_dir, tmp_path / "claudesidian_synthetic")
    dataset = datasets.load_dataset(str(folder), name="balanced_254", split="train")
    assert as_source_rows(dataset) == published_rows


@pytest.mark.skipif(VERSION >= Version("4.0"), reason="datasets>=4 refuses loading scripts")
def test_the_exported_loading_script_builds_a_tools_config_with_the_schemas_beside_it(export_dir, source_path):
    """Copied into `datasets`' modules cache, the script finds the pinned schemas beside its original."""
    dataset = datasets.load_dataset(os.path.join(export_dir, "loading_script", "claudesidian_synthetic.py"),
                                    name="sft_tools", trust_remote_code=True, source=source_path)
    assert {split: len(rows) for split, rows in dataset.items()} == {"train": 567, "test": 65}
    call = next(message for message in dataset["train"][0]["messages"] if message["tool_calls"])["tool_calls"][0]
    assert isinstance(call["function"]["arguments"], str)  # without `Json`, arguments are JSON text


@pytest.mark.skipif(not hasattr(datasets.features, "Json"), reason="the tools layouts store Json values, which "
                    "datasets reads from 4.7 on")
def test_a_tools_config_of_the_export_loads_with_its_calls_as_objects(export_dir):
    dataset = datasets.load_dataset(export_dir, name="kto_tools", split="test")
    assert len(dataset) == 173  # one assistant turn per row: 141 desirable turns, 32 undesirable rows
    call = next(message for row in dataset for message in row["completion"] if message.get("tool_calls"))
    assert isinstance(call["tool_calls"][0]["function"]["arguments"], dict) and "tool_call_id" not in call
