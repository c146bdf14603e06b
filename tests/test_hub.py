"""Push and load for real, against a fake Hub (tests/fake_hub.py) at HF_ENDPOINT: the CLI pushes an
export, and `datasets`, `hf download` and `huggingface_hub` read it back in fresh processes, as users
run them. Every test ends with the fake having answered every request the clients sent."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import datasets
import pytest
import yaml
from conftest import REPO
from hub_client import configs_and_splits, load, push, pushed_sha, run

from claudesidian_tools import export as exporter
from claudesidian_tools.manifest import MANIFEST

BIN = os.path.dirname(sys.executable)
V1 = ["balanced_254", "full_eval=full:test_size=0.1,order=mixed,batch_size=4"]
V2 = ["full_eval=full:test_size=0.1,order=mixed,batch_size=4,seed=7"]  # other rows; balanced_254 gone
REPO_ID = "me/kto"  # the repository most tests push to


def card_files(card: bytes) -> set[str]:
    return {path for config in yaml.safe_load(card.decode().split("---")[1])["configs"]
            for entry in config["data_files"] for path in entry["path"]}


def one_line_error(result, *words) -> str:
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("claudesidian-synthetic: error: ") and all(word in line for word in words), line
    return line


@pytest.fixture(scope="module")
def exports(tmp_path_factory, source_path):
    """Two exports (V1, then V2: other rows, one config fewer) and `full` in 300 shards."""
    folders = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("cache"))
        for name, specs, shards in (("v1", V1, None), ("v2", V2, None), ("sharded", ["full"], 300)):
            folders[name] = tmp_path_factory.mktemp(name) / "export"
            exporter.export(str(folders[name]), [exporter.parse_config_spec(spec) for spec in specs],
                            source=source_path, num_shards=shards)
    return folders


@pytest.fixture
def v1(exports, tmp_path):
    """A copy of the V1 export."""
    return shutil.copytree(exports["v1"], tmp_path / "v1")


@pytest.mark.slow
def test_every_config_and_split_loads_from_the_hub_as_from_the_folder_and_a_sha_pins_it(fake_hub, exports, v1,
                                                                                       tmp_path):
    hub, home = fake_hub, tmp_path / "home"
    first = pushed_sha(push(v1, REPO_ID, hub, home))
    assert [commit.sha for commit in hub.commits(REPO_ID)][:1] == [first] and len(hub.commits(REPO_ID)) == 2
    pairs = configs_and_splits(v1)
    assert [pair[1:] for pair in pairs] == [["balanced_254", "train"], ["full_eval", "train"], ["full_eval", "test"]]
    for streaming in (False, True):
        results = load(hub, home, REPO_ID, pairs, streaming=streaming)
        assert [(r.get("rows"), r.get("same"), r.get("features")) for r in results] == [
            (508, True, True), (900, True, True), (100, True, True)], results
    # A file of the user's own survives the next push; the files of the config V2 no longer has do not.
    code = ("from huggingface_hub import HfApi; HfApi().upload_file(path_or_fileobj=b'mine', path_in_repo='notes.md',"
            f" repo_id={REPO_ID!r}, repo_type='dataset')")
    assert run([sys.executable, "-c", code], hub, home, "hf_good").returncode == 0
    v2 = shutil.copytree(exports["v2"], tmp_path / "v2")
    second = pushed_sha(push(v2, REPO_ID, hub, home))
    assert second != first and len(hub.commits(REPO_ID)) == 4
    files = hub.files(REPO_ID)
    assert "notes.md" in files and not [path for path in files if "balanced_254" in path]
    assert {path for path in files if path.startswith("data/")} == card_files(files["README.md"])
    # The old sha still gives the old rows, the repository's head the new ones.
    old = load(hub, home, REPO_ID, pairs, revision=first)
    assert [(r.get("rows"), r.get("same")) for r in old] == [(508, True), (900, True), (100, True)], old
    assert [r.get("same") for r in load(hub, home, REPO_ID, pairs[1:], revision=first, streaming=True)] == [True] * 2
    new = load(hub, home, REPO_ID, configs_and_splits(v2))
    assert [(r.get("rows"), r.get("same")) for r in new] == [(900, True), (100, True)], new
    old_rows = load(hub, home, REPO_ID, [[str(v2), "full_eval", "train"]], revision=first)
    assert old_rows[0]["same"] is False  # seed 7 is another order: the pin is what keeps the old one
    assert hub.unanswered == []


@pytest.mark.slow
def test_three_hundred_shards_are_pushed_in_one_commit(fake_hub, exports, tmp_path):
    hub, folder, repo_id = fake_hub, shutil.copytree(exports["sharded"], tmp_path / "sharded"), "me/sharded"
    assert len(list((folder / "data" / "full").iterdir())) == 300
    sha = pushed_sha(push(folder, repo_id, hub, tmp_path / "home"))
    initial, pushed = reversed(hub.commits(repo_id))
    assert pushed.sha == sha and list(pushed.files) != list(initial.files)
    assert card_files(hub.files(repo_id, sha)["README.md"]) <= set(pushed.files)  # the card holds its shards
    assert len([path for path in pushed.files if path.startswith("data/full/")]) == 300
    (result,) = load(hub, tmp_path / "home", repo_id, [[str(folder), "full", "train"]], revision=sha)
    assert (result.get("rows"), result.get("same")) == (1000, True), result
    # huggingface_hub's own readers: the tree in pages of 50 (expanded), paths-info, ranged reads.
    code = (
        "import json\nfrom huggingface_hub import HfApi, HfFileSystem\napi = HfApi()\n"
        f"tree = api.list_repo_tree({repo_id!r}, repo_type='dataset', recursive=True, expand=True)\n"
        "files = {e.path: e.last_commit.oid for e in tree if hasattr(e, 'size')}\n"
        f"info = api.get_paths_info({repo_id!r}, ['README.md', 'data/full', 'nothing'], repo_type='dataset')\n"
        f"with HfFileSystem().open('datasets/{repo_id}/data/full/train-00299-of-00300.parquet', 'rb') as f:\n"
        "    f.seek(4)\n    head = f.read(8).hex()\n"
        "print(json.dumps([files, [e.path for e in info], head]))"
    )
    listed = run([sys.executable, "-c", code], hub, tmp_path / "home")
    assert listed.returncode == 0, listed.stderr[-3000:]
    files, info, head = json.loads(listed.stdout)
    assert files == {path: (sha if path != ".gitattributes" else initial.sha) for path in pushed.files}
    assert info == ["README.md", "data/full"]
    assert head == hub.files(repo_id)["data/full/train-00299-of-00300.parquet"][4:12].hex()
    pages = [request for request in hub.requests if request[1] == f"/api/datasets/{repo_id}/tree/main"]
    entries = {"/".join(path.split("/")[:depth]) for path in pushed.files for depth in range(1, path.count("/") + 2)}
    assert len(pages) == -(-len(entries) // 50) == 7  # files and folders, 50 to a page
    assert hub.unanswered == []


def test_commit_folder_replaces_what_an_export_wrote_and_keeps_the_users_files(fake_hub, tmp_path):
    """Remote files that the manifest of the last push lists and the folder no longer has are deleted in the
    same commit; the user's own files stay; an unchanged folder makes no commit."""
    folder = tmp_path / "folder"
    written = ["README.md", "data/a/train.parquet", "recipes/a.yaml", "dataset_infos.json"]
    for path, text in {"README.md": "---\nlicense: mit\n---\n", "data/a/train.parquet": "a", "recipes/a.yaml": "a",
                       "dataset_infos.json": "{}", "notes.md": "mine", "other/x.txt": "mine",
                       MANIFEST: json.dumps({"files": dict.fromkeys(written)})}.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    code = (
        "import json, sys\nfrom claudesidian_tools.hub import commit_folder\n"
        f"print(json.dumps(commit_folder(sys.argv[1], {REPO_ID!r}, json.loads(sys.argv[2]))))"
    )

    def commit(*paths):
        result = run([sys.executable, "-c", code, str(folder), json.dumps(paths)], fake_hub, tmp_path / "home",
                     "hf_good")
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)

    first, made = commit(*written, MANIFEST, "notes.md", "other/x.txt")
    assert made and fake_hub.head(REPO_ID) == first
    assert commit(*written, MANIFEST) == [first, False]
    (folder / "data" / "b").mkdir()
    (folder / "data" / "b" / "train.parquet").write_text("b")
    (folder / MANIFEST).write_text(json.dumps({"files": dict.fromkeys(["README.md", "data/b/train.parquet"])}))
    second, made = commit("README.md", "data/b/train.parquet", MANIFEST)
    assert made and second != first and len(fake_hub.commits(REPO_ID)) == 3  # initial commit, two pushes
    assert sorted(fake_hub.files(REPO_ID)) == [".gitattributes", "README.md", MANIFEST, "data/b/train.parquet",
                                                "notes.md", "other/x.txt"]
    assert fake_hub.unanswered == []


@pytest.mark.parametrize(
    ("token", "words"),
    [
        (None, ["no Hugging Face token", "set HF_TOKEN or run `hf auth login`"]),
        ("hf_n0t_a_t0ken", ["refused your token", "hf auth login"]),
        ("hf_read", [f"may not write to the dataset repository {REPO_ID}", "write access"]),
        ("hf_you", [f"may not write to the dataset repository {REPO_ID}", "write access"]),
    ],
)
def test_a_push_without_a_token_that_may_write_is_one_line_and_commits_nothing(fake_hub, v1, tmp_path, token,
                                                                                words):
    line = one_line_error(push(v1, REPO_ID, fake_hub, tmp_path / "home", token=token), *words)
    assert token is None or token not in line
    assert REPO_ID not in fake_hub.repos
    assert not [request for request in fake_hub.requests if request[0] == "POST" and "/commit/" in request[1]]
    assert fake_hub.unanswered == []


@pytest.mark.parametrize("repo_id", ["kto", "me/k to", "me/kto--x", "me/kto/x"])
def test_a_repository_id_that_cannot_work_is_refused_before_any_request(fake_hub, v1, tmp_path, repo_id):
    one_line_error(push(v1, repo_id, fake_hub, tmp_path / "home"), "not a dataset repository")
    assert fake_hub.requests == [] and fake_hub.unanswered == []


@pytest.mark.slow
def test_a_repository_named_like_the_loading_script_loads_its_parquet(fake_hub, v1, tmp_path):
    """The loading script lies below the root (loading_script/), so `datasets` 4 and 5 read the Parquet of a
    repository named after it instead of refusing it as a script."""
    hub, home, repo_id = fake_hub, tmp_path / "home", "me/claudesidian_synthetic"
    sha = pushed_sha(push(v1, repo_id, hub, home))
    assert "loading_script/claudesidian_synthetic.py" in hub.files(repo_id, sha)
    results = load(hub, home, repo_id, configs_and_splits(v1), revision=sha)
    assert [(r.get("rows"), r.get("same")) for r in results] == [(508, True), (900, True), (100, True)], results
    assert hub.unanswered == []


@pytest.mark.slow
def test_a_private_repository_loads_only_with_the_token(fake_hub, v1, tmp_path):
    hub, home, repo_id = fake_hub, tmp_path / "home", "me/private"
    sha = pushed_sha(push(v1, repo_id, hub, home, "--private"))
    assert hub.repos[repo_id].private and hub.head(repo_id) == sha
    pair = [[str(v1), "balanced_254", "train"]]
    (refused,) = load(hub, home, repo_id, pair)
    assert refused == {"error": f"DatasetNotFoundError: Dataset '{repo_id}' doesn't exist on the Hub or cannot be "
                                "accessed."}
    (loaded,) = load(hub, home, repo_id, pair, token="hf_good")
    assert (loaded.get("rows"), loaded.get("same")) == (508, True), loaded
    assert hub.unanswered == []


def test_private_is_refused_for_an_existing_public_repository(fake_hub, v1, tmp_path):
    sha = pushed_sha(push(v1, REPO_ID, fake_hub, tmp_path / "home"))
    one_line_error(push(v1, REPO_ID, fake_hub, tmp_path / "home", "--private"), "exists and is public")
    assert fake_hub.head(REPO_ID) == sha and not fake_hub.repos[REPO_ID].private
    assert fake_hub.unanswered == []


def test_pushing_an_unchanged_folder_again_makes_no_commit_and_prints_the_head(fake_hub, v1, tmp_path):
    first = push(v1, REPO_ID, fake_hub, tmp_path / "home")
    commits = len(fake_hub.commits(REPO_ID))
    again = push(v1, REPO_ID, fake_hub, tmp_path / "home")
    assert pushed_sha(again) == pushed_sha(first) == fake_hub.head(REPO_ID)
    assert len(fake_hub.commits(REPO_ID)) == commits
    assert again.stdout == first.stdout  # the same pinned load lines
    assert fake_hub.unanswered == []


def test_hf_download_gets_the_pushed_files(fake_hub, v1, tmp_path):
    pushed_sha(push(v1, REPO_ID, fake_hub, tmp_path / "home"))
    result = run([f"{BIN}/hf", "download", REPO_ID, "--repo-type", "dataset", "--local-dir", str(tmp_path / "d")],
                 fake_hub, tmp_path / "other-home")
    assert result.returncode == 0, result.stderr
    for path, data in fake_hub.files(REPO_ID).items():
        assert (tmp_path / "d" / path).read_bytes() == data, path
    card = (tmp_path / "d" / "README.md").read_text(encoding="utf-8")
    assert f'load_dataset("{REPO_ID}"' in card and 'load_dataset("./export"' not in card  # it names the repository
    assert 'load_dataset("./export"' in (v1 / "README.md").read_text(encoding="utf-8")  # the folder's own, the folder
    assert fake_hub.unanswered == []


@pytest.mark.slow
def test_an_unreachable_hub_fails_in_seconds(v1, tmp_path):
    """A host that accepts connections and never answers: one quick request, not huggingface_hub's retries."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    code = (
        "import sys, time\nfrom claudesidian_tools.hub import commit_folder, PushError\nstart = time.monotonic()\n"
        f"try:\n    commit_folder(sys.argv[1], {REPO_ID!r})\nexcept PushError as error:\n"
        "    print(round(time.monotonic() - start, 1), error)"
    )
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "home"), "HF_TOKEN": "hf_good"}
    try:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-c", code, str(v1)], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=120)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    seconds, message = result.stdout.split(" ", 1)
    assert float(seconds) < 5 and elapsed < 20, (seconds, elapsed)
    assert message.startswith(f"could not reach the Hub at {endpoint} to push the dataset repository {REPO_ID}")
