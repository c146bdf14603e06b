"""Shared fixtures: the real files in ../shared/data (or $CLAUDESIDIAN_DATA), and generated sources."""

import json
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(os.environ.get("CLAUDESIDIAN_DATA", REPO.parent / "shared" / "data"))
SOURCE = DATA / "syngen_toolset_v1.0.0_claude.jsonl"
PUBLISHED = DATA / "syngen_toolset_v1.0.0_claude_balanced_254.jsonl"
PUBLISHED_SHA256 = "c2b447f81455f9c75b18756420c4f8a42ac374f872ba9b5be5dcfc8605ef2959"


def _require(path: pathlib.Path) -> pathlib.Path:
    if not path.is_file():
        message = f"reference file {path} is missing (set CLAUDESIDIAN_DATA to the folder holding it)"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI a missing reference file is a failure, not a skip
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def source_path() -> str:
    return str(_require(SOURCE))


@pytest.fixture(scope="session")
def published_path() -> str:
    return str(_require(PUBLISHED))


@pytest.fixture(scope="session")
def source_rows(source_path):
    with open(source_path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


@pytest.fixture(scope="session")
def published_rows(published_path):
    with open(published_path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own `datasets` cache, so no test sees another's Arrow files."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "hf-cache" / "downloads")
    return tmp_path / "hf-cache"


def as_source_rows(dataset):
    """Rows of a built dataset back in the source's shape (what the published file holds)."""
    return [
        {"conversations": row["prompt"] + row["completion"], "label": row["label"], "context": row["context"]}
        for row in dataset
    ]


def make_row(index: int, label: bool, context: bool = False) -> dict:
    row = {
        "conversations": [
            {"role": "user", "content": f"question {index}"},
            {"role": "assistant", "content": f"answer {index}"},
        ],
        "label": label,
    }
    if context:
        row["context"] = {"sessionId": f"s{index}", "primaryGoal": "goal"}
    return row


@pytest.fixture
def write_source(tmp_path):
    """Write rows (dicts, or raw str/bytes lines) as a JSONL file and return its path."""

    def write(rows, name="source.jsonl", newline="\n") -> str:
        path = tmp_path / name
        lines = []
        for row in rows:
            if isinstance(row, bytes):
                lines.append(row)
            elif isinstance(row, str):
                lines.append(row.encode("utf-8"))
            else:
                lines.append(json.dumps(row).encode("utf-8"))
        path.write_bytes(newline.encode().join(lines) + newline.encode())
        return str(path)

    return write


# The fake Hub's accounts: `me` writes with `hf_good`, reads only with `hf_read`; `you` writes with `hf_you`.
HUB_TOKENS = {"hf_good": "me", "hf_read": "me", "hf_you": "you"}


@pytest.fixture
def fake_hub():
    """A fake Hub (tests/fake_hub.py) with the accounts of HUB_TOKENS; reach it through `fake_hub.endpoint`."""
    from fake_hub import FakeHub

    hub = FakeHub(tokens=HUB_TOKENS, read_only={"hf_read"})
    yield hub
    hub.close()
