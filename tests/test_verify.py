"""`verify`: an export, in a folder or at a Hub revision, is rebuilt from the source and compared row for row."""

import shutil
import sys

import pyarrow.parquet
import pytest
from conftest import run_cli
from hub_client import push, pushed_sha, run

from claudesidian_tools import export as exporter

SPECS = ["balanced_254", "full_eval", "pairs"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, source_path):
    folder = tmp_path_factory.mktemp("verify") / "export"
    exporter.export(str(folder), [exporter.parse_config_spec(spec) for spec in SPECS], source=source_path)
    return folder


def change_one_row(folder, config: str, split: str, row: int) -> None:
    """Rewrite one Parquet file with the reply of one row changed (what a tampered upload looks like)."""
    path = folder / "data" / config / f"{split}-00000-of-00001.parquet"
    rows = pyarrow.parquet.read_table(path).to_pylist()
    column = "completion" if "completion" in rows[row] else "chosen"
    rows[row][column][0]["content"] += " (edited)"
    schema = pyarrow.parquet.read_schema(path)
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows, schema=schema), path)


def test_a_row_of_a_sharded_split_is_named_in_its_file_and_a_missing_row_by_the_counts(source_path, tmp_path):
    folder = tmp_path / "sharded"
    exporter.export(str(folder), [exporter.parse_config_spec("full")], source=source_path, num_shards=3)
    shards = [f"data/full/train-0000{index}-of-00003.parquet" for index in range(3)]
    sizes = [pyarrow.parquet.ParquetFile(folder / shard).metadata.num_rows for shard in shards]
    assert sum(sizes) == 1000 and min(sizes) > 5
    original = pyarrow.parquet.read_table(folder / shards[1])
    rows = original.to_pylist()
    rows[5]["completion"][0]["content"] += " (edited)"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows, schema=original.schema), folder / shards[1])
    result = run_cli("verify", str(folder), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 1, result.stderr
    assert (f"full, split train, row {sizes[0] + 5} (counting from 0; row 5 of {shards[1]}): different in column "
            "completion (the first difference of the split; it holds 1,000 rows, the export wrote 1,000)"
            ) in result.stdout.splitlines()
    pyarrow.parquet.write_table(original, folder / shards[1])  # that row back, and the last row of the split gone
    last = pyarrow.parquet.read_table(folder / shards[2])
    pyarrow.parquet.write_table(last.slice(0, last.num_rows - 1), folder / shards[2])
    result = run_cli("verify", str(folder), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 1, result.stderr
    assert (f"full, split train, row 999 (counting from 0; past the end of {shards[2]}): missing (the first "
            "difference of the split; it holds 999 rows, the export wrote 1,000)") in result.stdout.splitlines()


def test_an_export_verifies(exported, source_path, tmp_path):
    result = run_cli("verify", str(exported), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    files = len(list(exported.rglob("*.*"))) - 1  # every file the export wrote but its manifest
    assert result.stdout.splitlines() == [
        f"files: {files} identical to what the export wrote",
        "balanced_254: 508 rows identical (train 508)",
        "full_eval: 1000 rows identical (train 900, test 100)",
        "pairs: 43 rows identical (train 40, test 3)",
    ]


def test_a_renamed_export_verifies_and_says_its_recipes_name_the_old_folder(exported, source_path, tmp_path):
    shutil.copytree(exported, tmp_path / "renamed")
    result = run_cli("verify", str(tmp_path / "renamed"), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert ("recipes: they name the dataset ./export, and this folder is renamed: run them from beside a folder named "
            "export, or change dataset_name in them to ./renamed") in result.stdout.splitlines()[1]
    shutil.copytree(exported, tmp_path / "copied" / "export")  # copied elsewhere under its name: nothing to say
    again = run_cli("verify", str(tmp_path / "copied" / "export"), "--source", source_path, cache=tmp_path / "hf")
    assert again.returncode == 0 and "recipes:" not in again.stdout, again.stdout


def test_one_changed_row_is_named(exported, source_path, tmp_path):
    folder = shutil.copytree(exported, tmp_path / "copy" / "export")
    change_one_row(folder, "full_eval", "test", 17)
    result = run_cli("verify", str(folder), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 1, result.stderr
    shard = "data/full_eval/test-00000-of-00001.parquet"
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{shard}: differs from what the export wrote (sha256 ")
    assert lines[1:] == [
        "balanced_254: 508 rows identical (train 508)",
        f"full_eval, split test, row 17 (counting from 0; row 17 of {shard}): different in column completion (the "
        "first difference of the split; it holds 100 rows, the export wrote 100)",
        "pairs: 43 rows identical (train 40, test 3)",
    ]
    assert result.stderr.strip().splitlines()[-1] == (
        f"claudesidian-synthetic: error: {folder}: 2 differences (each named above); export again with "
        "--replace-existing to rebuild it from the source (it replaces the files changed since)")


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_a_damaged_shard_is_one_line_and_differs(exported, source_path, tmp_path, damage):
    folder = shutil.copytree(exported, tmp_path / "copy" / "export")
    shard = folder / "data" / "pairs" / "train-00000-of-00001.parquet"
    shard.write_bytes(b"not parquet") if damage == "garbage" else shard.unlink()
    result = run_cli("verify", str(folder), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    shard = "data/pairs/train-00000-of-00001.parquet"
    file_line = f"{shard}: missing (the export wrote it)" if damage == "missing" else f"{shard}: differs from"
    words = "is missing" if damage == "missing" else "is not readable Parquet"
    assert result.stdout.splitlines()[0].startswith(file_line)
    assert any(line.startswith(f"pairs, split train: {shard} {words}") for line in result.stdout.splitlines())
    assert result.stderr.strip().splitlines()[-1].startswith(f"claudesidian-synthetic: error: {folder}: 2 differences")


def test_a_mistyped_folder_is_no_repository(tmp_path):
    for given in ("./kto-dat", str(tmp_path / "nowhere")):
        result = run_cli("verify", given, cache=tmp_path / "hf")
        assert result.returncode == 2 and "is neither a folder nor a Hub repository id" in result.stderr


def test_a_folder_that_is_not_an_export_cannot_be_verified(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "README.md").write_text("# my notes\n")
    result = run_cli("verify", str(tmp_path / "mine"), cache=tmp_path / "hf")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "is not an export of claudesidian-synthetic (no claudesidian_export.json)" in result.stderr


def test_an_export_without_its_card_cannot_be_verified(exported, tmp_path):
    folder = shutil.copytree(exported, tmp_path / "copy" / "export")
    (folder / "README.md").unlink()
    result = run_cli("verify", str(folder), cache=tmp_path / "hf")
    assert result.returncode == 2 and "(no README.md)" in result.stderr


def test_an_unknown_source_version_cannot_be_verified_without_that_source(source_path, tmp_path):
    with open(source_path, encoding="utf-8") as file:
        (tmp_path / "v2.jsonl").write_text("".join(file.readlines()[3:]), encoding="utf-8")
    folder = tmp_path / "v2-export"
    exporter.export(str(folder), [exporter.parse_config_spec("mine=balanced_custom")],
                    source=str(tmp_path / "v2.jsonl"))
    refused = run_cli("verify", str(folder), cache=tmp_path / "hf")
    assert refused.returncode == 2 and "not the v1.0.0 file this version knows; pass --source" in refused.stderr
    wrong = run_cli("verify", str(folder), "--source", source_path, cache=tmp_path / "hf")
    assert wrong.returncode == 2 and "pass the source it was made from" in wrong.stderr
    right = run_cli("verify", str(folder), "--source", str(tmp_path / "v2.jsonl"), cache=tmp_path / "hf")
    assert right.returncode == 0, right.stderr
    assert right.stdout.splitlines()[-1] == "mine: 508 rows identical (train 508)"


@pytest.mark.slow
def test_a_pushed_repository_verifies_at_a_pinned_revision(exported, fake_hub, source_path, tmp_path):
    """Through the fake Hub: the first push verifies at its sha; a later push of a changed file does not,
    and the first sha still does."""
    hub, home, repo_id = fake_hub, tmp_path / "home", "me/kto"
    folder = shutil.copytree(exported, tmp_path / "first")
    good = pushed_sha(push(folder, repo_id, hub, home))
    change_one_row(folder, "pairs", "train", 5)
    bad = pushed_sha(push(folder, repo_id, hub, home))
    assert bad != good
    verify = ["-m", "claudesidian_tools", "verify", repo_id, "--source", source_path, "--revision"]
    at_good = run([sys.executable, *verify, good], hub, home)
    assert at_good.returncode == 0, at_good.stderr
    assert at_good.stdout.splitlines()[-1] == "pairs: 43 rows identical (train 40, test 3)"
    at_bad = run([sys.executable, *verify, bad], hub, home)
    assert at_bad.returncode == 1
    assert ("pairs, split train, row 5 (counting from 0; row 5 of data/pairs/train-00000-of-00001.parquet): "
            "different in column chosen") in at_bad.stdout
    assert "data/pairs/train-00000-of-00001.parquet: differs from what the export wrote" in at_bad.stdout
    missing = run([sys.executable, "-m", "claudesidian_tools", "verify", "me/nothing", "--source", source_path],
                  hub, home)
    assert missing.returncode == 2 and "cannot download me/nothing" in missing.stderr
    assert hub.unanswered == []


def test_an_export_checked_against_other_tool_schemas_carries_them_and_verifies_anywhere(source_path, tmp_path):
    """`--tool-schemas FILE`: the export keeps that file, so a copy of it verifies where the file is not."""
    import hashlib
    import json

    from conftest import DATA

    other = json.loads((DATA / "tool_schemas.json").read_text(encoding="utf-8"))
    del other["get_tools"]
    schemas = tmp_path / "elsewhere" / "my_schemas.json"
    schemas.parent.mkdir()
    schemas.write_text(json.dumps(other), encoding="utf-8")
    exporter.export(str(tmp_path / "made"), [exporter.parse_config_spec(spec) for spec in ("sft", "full")],
                    source=source_path, tool_schemas=str(schemas))
    kept = tmp_path / "made" / "tool_schemas.json"
    assert kept.read_bytes() == schemas.read_bytes()
    manifest = json.loads((tmp_path / "made" / "claudesidian_export.json").read_text(encoding="utf-8"))
    assert manifest["tool_schemas"] == {"file": "my_schemas.json", "sha256": hashlib.sha256(schemas.read_bytes())
                                        .hexdigest(), "pinned": False, "copy": "tool_schemas.json"}
    shutil.rmtree(schemas.parent)
    copy = shutil.copytree(tmp_path / "made", tmp_path / "gpu-machine" / "made")
    result = run_cli("verify", str(copy), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[1:] == ["sft: 579 rows identical (train 521, test 58)",
                                              "full: 1000 rows identical (train 1000)"]
    (copy / "tool_schemas.json").write_text(json.dumps({**other, "x_y": other["vaultManager_openNote"]}))
    result = run_cli("verify", str(copy), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 2 and "tool_schemas.json: differs from what the export wrote" in result.stdout
    assert "the export's copy tool_schemas.json is missing or not those bytes" in result.stderr


def test_an_export_made_from_a_folder_is_told_to_verify_from_the_folder(tmp_path):
    from conftest import DATA

    folder = tmp_path / "export"
    # `full` reads claude's file alone, but the export was made from the folder of the three.
    exporter.export(str(folder), [exporter.parse_config_spec(name) for name in ("full", "family")], source=str(DATA))
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = run_cli("verify", str(folder), cache=tmp_path / "hf", env=offline)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith("pass --source the folder of the files the export was made from"), \
        result.stderr
