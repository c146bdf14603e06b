"""What users run against a fake Hub (tests/fake_hub.py), each in a fresh process with HF_ENDPOINT set:
the CLI's push, and `datasets.load_dataset` by repository id compared with the exported folder. Shared
by tests/test_hub.py and the version matrix (tests/compat), so it runs under every `datasets`."""

import json
import os
import pathlib
import re
import subprocess
import sys

import yaml
from conftest import REPO

# Loads configs and splits from the Hub (argv: repo, revision, streaming, [[folder, name, split], ...]) and,
# where that worked, from the folder; prints one JSON result per pair: its error, or whether the two agree.
LOAD = r"""
import json, sys
import datasets
repo, revision, streaming, pairs = json.loads(sys.argv[1])
results = []
for folder, name, split in pairs:
    try:
        remote = datasets.load_dataset(repo, name=name, split=split, revision=revision, streaming=streaming)
        # Rows as iteration gives them (datasets 4.7's to_list() hands Json values back as text, iteration decodes them)
        rows = list(remote)
    except Exception as error:
        results.append({"error": f"{type(error).__name__}: {error}"})
        continue
    local = datasets.load_dataset(folder, name=name, split=split)
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


def configs_and_splits(folder) -> list[list[str]]:
    """[folder, config, split] of every config and split the folder's card lists."""
    card = (pathlib.Path(folder) / "README.md").read_text(encoding="utf-8")
    return [[str(folder), config["config_name"], entry["split"]]
            for config in yaml.safe_load(card.split("---")[1])["configs"] for entry in config["data_files"]]




def _card(folder) -> str:
    return (pathlib.Path(folder) / "README.md").read_text(encoding="utf-8")


def split_files(folder, name: str, split: str) -> list[pathlib.Path]:
    """The Parquet files of a config's split, in order, as the folder's card lists them."""
    (config,) = [config for config in yaml.safe_load(_card(folder).split("---")[1])["configs"]
                 if config["config_name"] == name]
    (paths,) = [entry["path"] for entry in config["data_files"] if entry["split"] == split]
    return [pathlib.Path(folder) / path for path in ([paths] if isinstance(paths, str) else paths)]


def oldest_datasets(folder) -> dict[str, str]:
    """{config: the oldest `datasets` that loads it from its Parquet files}, as the folder's card says it."""
    section = _card(folder).split("\n## Load it\n")[1].split("\n## ")[0]
    return dict(re.findall(r"^\| `(\w+)` \| (\d+\.\d+) \|$", section, flags=re.M))


def stops_as_the_card_says(folder, error: str) -> bool:
    """Whether `error` ("Type: message") is one of those the card says an older `datasets` stops with."""
    section = " ".join(_card(folder).split("\n## Load it\n")[1].split("\n## ")[0].split())
    said = re.findall(r"`(\w+Error: [^`]+)`", section)
    assert said, "the card names no error for an older datasets"
    return any(error.startswith(words) for words in said)


def as_the_card_says(folder, name: str, result: dict) -> bool:
    """A result of LOAD as the card words it for this `datasets`: a config it promises loads and agrees with
    the folder; one it says needs a newer `datasets` stops with an error the card names."""
    import datasets
    from packaging.version import Version

    if Version(datasets.__version__) >= Version(oldest_datasets(folder)[name]):
        return result.get("same") is True
    return stops_as_the_card_says(folder, result.get("error", ""))
