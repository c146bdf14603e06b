"""What users run against a fake Hub (tests/fake_hub.py), each in a fresh process with HF_ENDPOINT set:
the CLI's push, and `datasets.load_dataset` by repository id compared with the exported folder. Shared
by tests/test_hub.py and the version matrix (tests/compat), so it runs under every `datasets`."""

import json
import os
import pathlib
import subprocess
import sys

import yaml
from conftest import REPO

# Loads configs and splits from the Hub (argv: repo, revision, streaming, [[folder, name, split], ...]) and
# from the folder, and prints one JSON result per pair.
LOAD = r"""
import json, sys
import datasets
repo, revision, streaming, pairs = json.loads(sys.argv[1])
results = []
for folder, name, split in pairs:
    local = datasets.load_dataset(folder, name=name, split=split)
    try:
        remote = datasets.load_dataset(repo, name=name, split=split, revision=revision, streaming=streaming)
    except Exception as error:
        results.append({"error": f"{type(error).__name__}: {error}"})
        continue
    # Rows as iteration gives them (datasets 4.7's to_list() hands Json values back as text, iteration decodes them)
    rows = list(remote)
    results.append({"rows": len(rows), "same": rows == list(local), "features": remote.features == local.features})
print(json.dumps(results))
"""


def run(args, hub, home, token=None, timeout=300) -> subprocess.CompletedProcess:
    """A fresh process as a user runs it: the Hub at the fake's endpoint, caches under `home`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
    env.update({"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"})
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def push(folder, repo_id, hub, home, *options, token="hf_good") -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "claudesidian_tools", "push", str(folder), repo_id, *options], hub, home,
               token)


def pushed_sha(result) -> str:
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("commit ")]
    return line.split()[1]


def load(hub, home, repo_id, pairs, *, revision=None, streaming=False, token=None) -> list[dict]:
    result = run([sys.executable, "-c", LOAD, json.dumps([repo_id, revision, streaming, pairs])], hub, home, token)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def loadable(pairs: list[list[str]]) -> list[list[str]]:
    """The configs this `datasets` can read: the tools layouts store `Json` values, which `datasets` reads
    from 4.7 on (below, the loading script builds them, with JSON strings). Says which it leaves out."""
    import datasets

    if hasattr(datasets.features, "Json"):
        return pairs
    kept = []
    for folder, name, split in pairs:
        manifest = json.loads((pathlib.Path(folder) / "claudesidian_export.json").read_text(encoding="utf-8"))
        layout = next(entry["layout"] for entry in manifest["configs"] if entry["name"] == name)
        if layout.endswith("_tools"):
            print(f"not loaded under datasets {datasets.__version__}: {name} ({split}) stores Json values, which "
                  "datasets reads from 4.7 on")
            continue
        kept.append([folder, name, split])
    return kept


def configs_and_splits(folder) -> list[list[str]]:
    """[folder, config, split] of every config and split the folder's card lists."""
    card = (pathlib.Path(folder) / "README.md").read_text(encoding="utf-8")
    return [[str(folder), config["config_name"], entry["split"]]
            for config in yaml.safe_load(card.split("---")[1])["configs"] for entry in config["data_files"]]


