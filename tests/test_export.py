"""The Hub-ready folder: data files, card, recipes, infos, script; loading it with `datasets`; pushing it."""

import os
import re
import shutil
import warnings

import datasets
import huggingface_hub
import pytest
import yaml
from conftest import as_source_rows
from hub_client import push, pushed_sha
from test_cli import run_cli

import claudesidian_synthetic as cs
from claudesidian_tools import export as exporter
from claudesidian_tools.kto import dataset_stats

EXTRA = [*exporter.DEFAULT_EXPORTS, "mixed8=full:order=mixed,batch_size=8",
         "balanced_custom:desirable=300,undesirable=200,seed=7", "conv=balanced_254:layout=conversations"]
CUSTOM = "balanced_custom_desirable300_seed7_undesirable200"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, source_path):
    folder = tmp_path_factory.mktemp("export") / "dataset"
    cache = tmp_path_factory.mktemp("export-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
        exporter.export(str(folder), [exporter.parse_config_spec(spec) for spec in EXTRA], source=source_path)
    return folder


def test_folder_layout(exported):
    files = sorted(str(path.relative_to(exported)) for path in exported.rglob("*") if path.is_file())
    assert files == [
        "README.md",
        "claudesidian_synthetic.py",
        "data/balanced_254/train-00000-of-00001.parquet",
        f"data/{CUSTOM}/train-00000-of-00001.parquet",
        "data/conv/train-00000-of-00001.parquet",
        "data/full/train-00000-of-00001.parquet",
        "data/full_eval/test-00000-of-00001.parquet",
        "data/full_eval/train-00000-of-00001.parquet",
        "data/mixed8/train-00000-of-00001.parquet",
        "dataset_infos.json",
        "recipes/kto_balanced_254.yaml",
        f"recipes/kto_{CUSTOM}.yaml",
        "recipes/kto_full.yaml",
        "recipes/kto_full_eval.yaml",
        "recipes/kto_mixed8.yaml",  # none for `conv`: TRL does not read that layout
    ]


@pytest.mark.parametrize(
    ("export_name", "name", "options"),
    [
        ("balanced_254", "balanced_254", {}),
        ("full", "full", {}),
        ("full_eval", "full", {"test_size": 0.1, "order": "mixed", "batch_size": 4}),
        ("mixed8", "full", {"order": "mixed", "batch_size": 8}),
        (CUSTOM, "balanced_custom", {"desirable": 300, "undesirable": 200, "seed": 7}),
        ("conv", "balanced_254", {"layout": "conversations"}),
    ],
)
def test_folder_loads_the_same_rows_as_the_builder(exported, source_path, export_name, name, options):
    from_folder = datasets.load_dataset(str(exported), name=export_name)
    from_builder = cs.load(name, source=source_path, **options)
    assert list(from_folder) == list(from_builder)
    for split in from_builder:
        assert from_folder[split].features == from_builder[split].features
        assert list(from_folder[split]) == list(from_builder[split])


def test_default_config_is_balanced_254(exported, published_rows):
    dataset = datasets.load_dataset(str(exported), split="train")
    assert as_source_rows(dataset) == published_rows


def test_card_figures_are_what_stats_reports(exported, source_path):
    """Every row of the card's configs table, against `stats` of the builder's own dataset."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        card = huggingface_hub.DatasetCard.load(str(exported / "README.md"))
    table = {(cells[0], cells[1]): cells[2:] for cells in (
        [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        for line in card.text.split("## Configs")[1].split("##")[0].splitlines() if line.startswith("| `"))}
    expected = {("full_eval", "test"): cs.load("full", split="test", source=source_path, test_size=0.1,
                                               order="mixed", batch_size=4)}
    expected[("full", "train")] = cs.load("full", split="train", source=source_path)
    expected[("balanced_254", "train")] = cs.load("balanced_254", split="train", source=source_path)
    for key, dataset in expected.items():
        stats = dataset_stats(dataset)
        weights = stats["kto_weights"]
        assert table[key] == [
            str(stats["rows"]), str(stats["desirable"]), str(stats["undesirable"]),
            f"{stats['first_50']['desirable']} / {stats['first_50']['undesirable']}",
            f"{stats['homogeneous_batches']['4']} of {stats['rows'] // 4}",
            f"{weights['desirable_weight']}, {weights['undesirable_weight']}",
        ]
    assert len(table) == 7  # every exported split has its row


def test_card_names_what_was_exported_and_its_sizes(exported):
    card = huggingface_hub.DatasetCard.load(str(exported / "README.md"))
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["size_categories"] == ["1K<n<10K"]
    assert [c["config_name"] for c in data["configs"] if c.get("default")] == ["balanced_254"]
    names = [entry["config_name"] for entry in data["configs"]]
    assert "holds the configs " + ", ".join(f"`{name}`" for name in names) in " ".join(card.text.split())
    assert "balanced_custom`" not in card.text.split("## Configs")[0]  # not exported under that name
    infos = {info["config_name"]: info for info in data["dataset_info"]}
    for name in names:
        files = exported / "data" / name
        assert infos[name]["download_size"] == sum(path.stat().st_size for path in files.iterdir())
    assert {split["name"]: split["num_examples"] for split in infos["full_eval"]["splits"]} == {"train": 900,
                                                                                               "test": 100}
    assert "prompt-disjoint" in card.text and "0 prompts shared" in card.text and "huggingface-cli" not in card.text


def test_recipes_name_the_dataset_the_splits_the_batch_size_and_the_weights(exported):
    recipe = yaml.safe_load((exported / "recipes/kto_full_eval.yaml").read_text(encoding="utf-8"))
    assert recipe == {
        "dataset_name": str(exported), "dataset_config": "full_eval", "dataset_train_split": "train",
        "desirable_weight": 1.0, "undesirable_weight": 2.9301,
        "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
        "dataset_test_split": "test", "eval_strategy": "steps", "eval_steps": 50,
    }
    plain = yaml.safe_load((exported / "recipes/kto_balanced_254.yaml").read_text(encoding="utf-8"))
    assert plain["eval_strategy"] == "no" and "per_device_train_batch_size" not in plain


def test_script_in_the_folder_is_the_builder(exported):
    with open(cs.__file__, encoding="utf-8") as file:
        assert (exported / "claudesidian_synthetic.py").read_text(encoding="utf-8") == file.read()


def test_a_bad_option_writes_nothing_and_a_re_export_replaces_the_folder_whole(source_path, tmp_path):
    folder = tmp_path / "out"
    result = run_cli("export", str(folder), "--source", source_path, "--config", "mixed4=full:order=mixed",
                     cache=tmp_path / "hf")
    assert result.returncode == 2 and "needs batch_size" in result.stderr and not folder.exists()
    assert run_cli("export", str(folder), "--source", source_path, "--config",
                   "mixed4=full:order=mixed,batch_size=4", cache=tmp_path / "hf").returncode == 0
    assert (folder / "data" / "mixed4").is_dir()
    result = run_cli("export", str(folder), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(folder / "data")) == ["balanced_254", "full", "full_eval"]  # mixed4 is gone
    assert not (folder / "recipes" / "kto_mixed4.yaml").exists()
    assert sorted(os.listdir(tmp_path)) == ["hf-cache", "out"]  # no staging folder left


def test_another_version_of_the_source_exports_its_balanced_custom_configs(source_path, tmp_path):
    """`full` and `balanced_254` promise the v1.0.0 bytes; --config names exactly what to export."""
    with open(source_path, encoding="utf-8") as file:
        (tmp_path / "v2.jsonl").write_text("".join(file.readlines()[5:]), encoding="utf-8")
    args = ["export", str(tmp_path / "out"), "--source", str(tmp_path / "v2.jsonl")]
    refused = run_cli(*args, cache=tmp_path / "hf")
    assert refused.returncode == 2 and "use name='balanced_custom'" in refused.stderr
    result = run_cli(*args, "--config", "mine=balanced_custom:test_size=0.1", cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path / "out" / "data") == ["mine"]
    assert datasets.get_dataset_config_names(str(tmp_path / "out")) == ["mine"]


def test_a_card_without_a_recipe_has_no_trl_section(source_path, tmp_path):
    result = run_cli("export", str(tmp_path / "out"), "--source", source_path, "--config",
                     "conv=balanced_254:layout=conversations", cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "trl kto" not in card and "## Several GPUs and streaming" in card
    assert not (tmp_path / "out" / "recipes").exists()


def test_export_refuses_a_folder_it_did_not_write(source_path, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = run_cli("export", str(tmp_path / "mine"), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 2 and "holds files that export did not write (notes.txt)" in result.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_push_uploads_the_folder_in_one_commit_naming_the_repository(exported, fake_hub, tmp_path):
    folder = shutil.copytree(exported, tmp_path / "copy")
    result = push(folder, "me/claudesidian", fake_hub, tmp_path / "home", "--private", "--commit-message", "v1")
    sha = pushed_sha(result)
    assert fake_hub.repos["me/claudesidian"].private
    pushed, _ = fake_hub.commits("me/claudesidian")  # the repository's initial commit, then the push
    assert (pushed.sha, pushed.message) == (sha, "v1")
    files = fake_hub.files("me/claudesidian")
    assert sorted({path.split("/")[0] for path in files}) == [
        ".gitattributes", "README.md", "claudesidian_synthetic.py", "data", "dataset_infos.json", "recipes"]
    card, recipe = files["README.md"].decode(), files["recipes/kto_full_eval.yaml"].decode()
    assert str(exported) not in card and str(exported) not in recipe
    assert 'load_dataset("me/claudesidian", name="balanced_254"' in card
    assert "hf download me/claudesidian recipes/kto_full_eval.yaml --repo-type dataset --local-dir ." in card
    assert 'hf_hub_download("me/claudesidian", "claudesidian_synthetic.py"' in card
    assert yaml.safe_load(recipe)["dataset_name"] == "me/claudesidian"
    assert (folder / "README.md").read_text(encoding="utf-8") == card  # the folder now says what the Hub holds
    lines = exporter.pinned_load_lines(str(folder), "me/claudesidian", sha)
    assert lines == result.stdout.splitlines()[1:]
    assert f'load_dataset("me/claudesidian", name="full_eval", revision="{sha}")' in lines
    assert re.findall(r'name="(\w+)"', " ".join(lines)) == ["balanced_254", "full", "full_eval", "mixed8", CUSTOM,
                                                             "conv"]
    assert fake_hub.unanswered == []


def test_pushing_a_pushed_folder_elsewhere_names_only_the_new_repository(exported, fake_hub, tmp_path):
    folder = shutil.copytree(exported, tmp_path / "copy")
    pushed_sha(push(folder, "me/first", fake_hub, tmp_path / "home"))
    pushed_sha(push(folder, "me/second", fake_hub, tmp_path / "home"))
    files = fake_hub.files("me/second")
    card, recipe = files["README.md"].decode(), files["recipes/kto_full_eval.yaml"].decode()
    assert "me/first" not in card + recipe and card.count("me/second") >= 4
    assert fake_hub.unanswered == []


def test_push_of_a_folder_without_card_is_refused(tmp_path):
    with pytest.raises(cs.OptionError, match="run `claudesidian-synthetic export"):
        exporter.push(str(tmp_path), "me/x")


def test_push_without_network_is_one_line_and_hides_the_token(exported, tmp_path):
    secret = "hf_" + "s3cr3t" * 6
    result = run_cli("push", str(exported), "me/claudesidian", cache=tmp_path / "hf",
                     env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": secret, "HF_HUB_ETAG_TIMEOUT": "2"})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert secret not in result.stderr + result.stdout
    assert str(exported) in (exported / "README.md").read_text(encoding="utf-8")  # a failed push changes nothing
