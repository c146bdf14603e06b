"""One cell of the version matrix: whatever `datasets` is installed, every path that version supports
must give the published rows of `balanced_254`, and every config of the export does what its card says for
this `datasets`. `.ci/run` runs this file under datasets 3.6, 4.7 and 5.x."""

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys

import datasets
import pyarrow
import pyarrow.parquet
import pytest
from conftest import DATA, REPO, as_source_rows
from fake_hub import FakeHub
from hub_client import configs_and_splits, oldest_datasets, split_files, stops_as_the_card_says
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
    export(str(folder), source=str(DATA))
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
    source = str(DATA) if cs.CONFIGS[name].family else source_path  # a family config reads the folder's three
    scripted = datasets.load_dataset(str(REPO / "claudesidian_synthetic.py"), name=name, trust_remote_code=True,
                                     source=source)
    built = cs.load(name, source=source)
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


def parquet_rows(files) -> list[dict]:
    """The rows of Parquet files as pyarrow reads them, each decoded by the features their schema holds."""
    rows = []
    for path in files:
        table = pyarrow.parquet.read_table(path)
        features = datasets.Features.from_arrow_schema(table.schema)
        rows += [features.decode_example(row) for row in table.to_pylist()]
    return rows


def test_every_config_of_the_export_loads_from_its_folder_as_its_card_says(export_dir):
    """A config the card promises to this `datasets` loads and equals its Parquet files; one it says needs a
    newer `datasets` stops with an error the card names."""
    oldest = oldest_datasets(export_dir)
    pairs = configs_and_splits(export_dir)
    assert sorted(oldest) == sorted({name for _, name, _ in pairs})
    for _, name, split in pairs:
        if VERSION >= Version(oldest[name]):
            dataset = datasets.load_dataset(export_dir, name=name, split=split)
            assert list(dataset) == parquet_rows(split_files(export_dir, name, split)), (name, split)
            print(f"{name} {split}: loads ({len(dataset)} rows, as its Parquet)")
            continue
        with pytest.raises(Exception) as raised:
            datasets.load_dataset(export_dir, name=name, split=split)
        error = f"{type(raised.value).__name__}: {raised.value}"
        assert stops_as_the_card_says(export_dir, error), (name, split, error)
        print(f"{name} {split}: {error.split('. ')[0]} (the card says it needs datasets {oldest[name]})")


def plain_json(row: dict) -> dict:
    """A row as plain JSON, for comparing a JSON-text build with a `Json` one: the JSON text of its `tools`
    and of each call's `arguments` parsed, then keys whose value is null dropped (the message struct of
    `datasets` 3.x holds every key) and floats to 12 digits (`datasets` decodes `Json` with ujson, which
    reads some decimals one step off)."""
    row = dict(row)
    if isinstance(row.get("tools"), str):
        row["tools"] = json.loads(row["tools"])
    for name, messages in row.items():
        if isinstance(messages, list) and messages and all(isinstance(message, dict) and "role" in message
                                                           for message in messages):
            row[name] = [{**message, "tool_calls": [
                {**call, "function": {**call["function"], "arguments": json.loads(call["function"]["arguments"])
                                      if isinstance(call["function"]["arguments"], str)
                                      else call["function"]["arguments"]}}
                for call in message["tool_calls"]]} if message.get("tool_calls") else message
                for message in messages]
    return _without_nulls(row)


def _without_nulls(value):
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return float(f"{value:.12g}") if isinstance(value, float) and math.isfinite(value) else value


def json_parquet_rows(files) -> list[dict]:
    """The rows of Parquet files, their `Json` columns (JSON text, or lists of it) parsed by Python's json."""
    rows = []
    for path in files:
        table = pyarrow.parquet.read_table(path)
        values = [field.name for field in table.schema if isinstance(field.type, pyarrow.JsonType)]
        lists = [field.name for field in table.schema if pyarrow.types.is_list(field.type)
                 and isinstance(field.type.value_type, pyarrow.JsonType)]
        for row in table.to_pylist():
            rows.append({**row, **{name: json.loads(row[name]) for name in values},
                         **{name: [json.loads(item) for item in row[name]] for name in lists}})
    return rows


@contextlib.contextmanager
def source_on_a_fake_hub(tmp_path, source_path):
    """claude's file on a fake Hub at HF_ENDPOINT: the environment of a process that downloads it from there."""
    (tmp_path / "main").mkdir()
    shutil.copyfile(source_path, tmp_path / "main" / cs.SOURCE_FILENAME)
    hub = FakeHub()
    hub.add(cs.SOURCE_REPO_ID, "main", str(tmp_path / "main"))
    try:
        yield {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "home")}
    finally:
        hub.close()


def test_the_cards_builder_block_builds_the_json_configs_on_this_datasets(export_dir, source_path, tmp_path):
    """The card's way for a `datasets` too old to read a config's `Json` values, as written, from the folder
    that holds the export (the source on a fake Hub): the builder beside the loading script builds each such
    config as its Parquet holds it, with JSON text where this `datasets` has no `Json`."""
    card = open(os.path.join(export_dir, "README.md"), encoding="utf-8").read()
    found = [code for code in re.findall(r"```python\n(.*?)```", card, flags=re.S) if "cs.load(" in code]
    if not found and len(set(oldest_datasets(export_dir).values())) == 1:
        pytest.skip("this export holds no Json config (a datasets without Json made it), so its card has no "
                    "builder block; CI's export, made under 5.x, has one")
    (block,) = found
    dump = ("\nimport json\nprint('BUILDER', cs.__file__)\n"
            "print('ROWS', json.dumps({name: {split: list(rows) for split, rows in dataset.items()} "
            "for name, dataset in built.items()}))")
    # The family's files come from the data folder (offline, as the block's comment says), claude's from a fake Hub.
    block = block.replace("source = None", f"source = {str(DATA)!r}")
    beside = os.path.dirname(os.path.abspath(export_dir))
    before = sorted(os.listdir(beside))
    with source_on_a_fake_hub(tmp_path, source_path) as env:
        result = subprocess.run([sys.executable, "-c", block + dump], cwd=beside,
                                env=env, capture_output=True, text=True, timeout=900)
    assert sorted(os.listdir(beside)) == before, "the block left a file beside the export"
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.startswith(("BUILDER ", "ROWS ")))
    assert "ROWS" in lines, result.stderr[-3000:]
    assert os.path.samefile(os.path.dirname(lines["BUILDER"]), os.path.join(export_dir, "loading_script"))
    built, oldest = json.loads(lines["ROWS"]), oldest_datasets(export_dir)
    floor = min(map(Version, oldest.values()))
    assert sorted(built) == sorted(name for name, version in oldest.items() if Version(version) > floor)
    for name, splits in built.items():
        assert sorted(splits) == sorted(split for _, each, split in configs_and_splits(export_dir) if each == name)
        for split, rows in splits.items():
            stored = json_parquet_rows(split_files(export_dir, name, split))
            assert len(rows) == len(stored), (name, split)
            assert [plain_json(row) for row in rows] == [plain_json(row) for row in stored], (name, split)
            print(f"{name} {split}: {len(rows)} rows built on datasets {datasets.__version__}, as its Parquet")


@pytest.mark.skipif(VERSION >= Version("4.0"), reason="the card's loading-script block is for datasets<4")
def test_card_loading_script_block(export_dir, source_path, tmp_path):
    """The card's `datasets<4` block, as written, with the source on a fake Hub at HF_ENDPOINT."""
    card = open(os.path.join(export_dir, "README.md"), encoding="utf-8").read()
    (block,) = [code for code in re.findall(r"```python\n(.*?)```", card, flags=re.S) if "trust_remote_code" in code]
    with source_on_a_fake_hub(tmp_path, source_path) as env:
        # From the folder that holds the export, as the card says its commands run.
        result = subprocess.run([sys.executable, "-c", block + "\nprint('ROWS', len(ds['train']))"],
                                cwd=os.path.dirname(os.path.abspath(export_dir)), env=env, capture_output=True,
                                text=True, timeout=600)
    assert "ROWS 500" in result.stdout, result.stderr[-3000:]


def test_a_folder_named_like_the_loading_script_loads_its_parquet(export_dir, tmp_path, published_rows):
    """The script lies in loading_script/, so no `datasets` takes a folder named after it for a script."""
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


@pytest.mark.skipif(VERSION < Version(cs.JSON_DATASETS), reason=f"the tools layouts store Json values, which "
                    f"datasets reads from {cs.JSON_DATASETS} on")
def test_a_tools_config_of_the_export_loads_with_its_calls_as_objects(export_dir):
    dataset = datasets.load_dataset(export_dir, name="kto_tools", split="test")
    assert len(dataset) == 173  # one assistant turn per row: 141 desirable turns, 32 undesirable rows
    call = next(message for row in dataset for message in row["completion"] if message.get("tool_calls"))
    assert isinstance(call["tool_calls"][0]["function"]["arguments"], dict) and "tool_call_id" not in call
