"""The Hub-ready folder: data files, card, infos, script; loading it with `datasets`; pushing it."""

import dataclasses
import os
import warnings

import datasets
import huggingface_hub
import pytest
from conftest import as_source_rows
from test_cli import run_cli

import claudesidian_synthetic as cs
from claudesidian_tools import export as exporter


@pytest.fixture(scope="module")
def exported(tmp_path_factory, source_path):
    folder = tmp_path_factory.mktemp("export")
    cache = tmp_path_factory.mktemp("export-cache")
    specs = [exporter.parse_config_spec("mixed4=full:order=mixed,batch_size=4"),
             exporter.parse_config_spec("balanced_custom:desirable=300,undesirable=200,seed=7")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
        exporter.export(str(folder), specs, source=source_path)
    return folder


def test_folder_layout(exported):
    files = sorted(str(path.relative_to(exported)) for path in exported.rglob("*") if path.is_file())
    assert files == [
        "README.md",
        "claudesidian_synthetic.py",
        "data/balanced_254/train-00000-of-00001.parquet",
        "data/balanced_custom_desirable300_seed7_undesirable200/train-00000-of-00001.parquet",
        "data/full/train-00000-of-00001.parquet",
        "data/mixed4/train-00000-of-00001.parquet",
        "dataset_infos.json",
    ]


def test_config_names(exported):
    names = datasets.get_dataset_config_names(str(exported))
    assert sorted(names) == ["balanced_254", "balanced_custom_desirable300_seed7_undesirable200", "full", "mixed4"]


@pytest.mark.parametrize(
    ("export_name", "name", "options"),
    [
        ("balanced_254", "balanced_254", {}),
        ("full", "full", {}),
        ("mixed4", "full", {"order": "mixed", "batch_size": 4}),
        ("balanced_custom_desirable300_seed7_undesirable200", "balanced_custom",
         {"desirable": 300, "undesirable": 200, "seed": 7}),
    ],
)
def test_folder_loads_the_same_rows_as_the_builder(exported, source_path, export_name, name, options):
    from_folder = datasets.load_dataset(str(exported), name=export_name, split="train")
    from_builder = cs.load(name, split="train", source=source_path, **options)
    assert from_folder.features == cs.FEATURES
    assert list(from_folder) == list(from_builder)


def test_default_config_is_balanced_254(exported, published_rows):
    dataset = datasets.load_dataset(str(exported), split="train")
    assert as_source_rows(dataset) == published_rows


def test_card_reads_without_warnings(exported):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        card = huggingface_hub.DatasetCard.load(str(exported / "README.md"))
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["size_categories"] == ["1K<n<10K"]
    assert [c["config_name"] for c in data["configs"] if c.get("default")] == ["balanced_254"]
    sizes = {info["config_name"]: info["splits"][0]["num_examples"] for info in data["dataset_info"]}
    assert sizes["balanced_254"] == 508 and sizes["full"] == 1000 and sizes["mixed4"] == 1000
    assert cs.SOURCE_SHA256 in card.text and "revision=" in card.text and "trust_remote_code=True" in card.text
    assert "| `full` | 1000 | 746 | 254 | 2.94 | 1.0 | 2.937 |" in card.text


def test_script_in_the_folder_is_the_builder(exported):
    with open(cs.__file__, encoding="utf-8") as file:
        assert (exported / "claudesidian_synthetic.py").read_text(encoding="utf-8") == file.read()


@dataclasses.dataclass
class FakeCommit:
    oid: str


class FakeHfApi:
    """Records what `push` would send to the Hub."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", sorted(os.listdir(kwargs["folder_path"])), kwargs))
        return FakeCommit("0123456789abcdef0123456789abcdef01234567")


def test_push_uploads_the_folder_in_one_commit(exported):
    api = FakeHfApi()
    sha = exporter.push(str(exported), "me/claudesidian", private=True, commit_message="v1", api=api)
    assert sha == "0123456789abcdef0123456789abcdef01234567"
    options = {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert api.calls[0] == ("create_repo", "me/claudesidian", options)
    kind, files, kwargs = api.calls[1]
    assert kind == "upload_folder" and len(api.calls) == 2
    assert files == ["README.md", "claudesidian_synthetic.py", "data", "dataset_infos.json"]
    assert kwargs["repo_id"] == "me/claudesidian" and kwargs["commit_message"] == "v1"
    lines = exporter.pinned_load_lines(str(exported), "me/claudesidian", sha)
    assert f'load_dataset("me/claudesidian", name="balanced_254", revision="{sha}")' in lines


def test_push_of_a_folder_without_card_is_refused(tmp_path):
    with pytest.raises(cs.OptionError, match="run `claudesidian-synthetic export"):
        exporter.push(str(tmp_path), "me/x", api=FakeHfApi())


def test_push_without_network_is_one_line_and_hides_the_token(exported, tmp_path):
    secret = "hf_" + "s3cr3t" * 6
    result = run_cli("push", str(exported), "me/claudesidian", cache=tmp_path / "hf",
                     env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": secret, "HF_HUB_ETAG_TIMEOUT": "2"})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert secret not in result.stderr + result.stdout


def test_cli_export(source_path, tmp_path):
    result = run_cli("export", str(tmp_path / "out"), "--source", source_path, cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert sorted(datasets.get_dataset_config_names(str(tmp_path / "out"))) == ["balanced_254", "full"]
