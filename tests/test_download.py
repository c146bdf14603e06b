"""The download path, for real, against a local HTTP server: default URL, URL source, checksum, offline."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
from conftest import REPO, as_source_rows

import claudesidian_synthetic as cs


@pytest.fixture
def hub(tmp_path, source_path):
    """A local stand-in for huggingface.co: /<revision>/<file name> served over HTTP."""
    root = tmp_path / "hub"
    (root / "v1").mkdir(parents=True)
    shutil.copyfile(source_path, root / "v1" / cs.SOURCE_FILENAME)
    (root / "changed").mkdir()
    with open(source_path, encoding="utf-8") as file:
        lines = file.readlines()
    (root / "changed" / cs.SOURCE_FILENAME).write_text("".join(lines[1:]), encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_default_source_is_downloaded_at_the_revision(hub, monkeypatch, published_rows):
    monkeypatch.setattr(cs, "SOURCE_URL", hub + "/{revision}/" + cs.SOURCE_FILENAME)
    dataset = cs.load("balanced_254", split="train", revision="v1")
    assert as_source_rows(dataset) == published_rows


def test_url_source(hub, published_rows):
    dataset = cs.load("balanced_254", split="train", source=f"{hub}/v1/{cs.SOURCE_FILENAME}")
    assert as_source_rows(dataset) == published_rows


def test_streaming_a_url_source(hub):
    url = f"{hub}/v1/{cs.SOURCE_FILENAME}"
    streamed = cs.load("full", split="train", source=url, streaming=True)
    assert [row["label"] for row in streamed] == cs.load("full", split="train", source=url)["label"]


def test_downloaded_file_with_other_bytes_is_refused(hub, monkeypatch):
    monkeypatch.setattr(cs, "SOURCE_URL", hub + "/{revision}/" + cs.SOURCE_FILENAME)
    with pytest.raises(cs.SourceError, match=r"is not the v1.0.0 source .* revision="):
        cs.load("full", revision="changed")
    assert len(cs.load("balanced_custom", split="train", revision="changed")) == 508


def test_missing_revision_is_one_clear_error(hub, monkeypatch):
    monkeypatch.setattr(cs, "SOURCE_URL", hub + "/{revision}/" + cs.SOURCE_FILENAME)
    with pytest.raises(cs.SourceError, match="could not download the source.*check revision="):
        cs.load("full", revision="no-such-revision")


def test_unreachable_host_says_to_pass_source():
    with pytest.raises(cs.SourceError, match="Without network, pass source="):
        cs.load("full", source="http://127.0.0.1:9/" + cs.SOURCE_FILENAME)


def _run_offline(code: str, cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": cache}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_offline_cold_cache_without_source_is_one_clear_error(tmp_path):
    code = (
        "import claudesidian_synthetic as cs\n"
        "try:\n    cs.load('full')\nexcept cs.SourceError as e:\n    print('ERR', e)"
    )
    result = _run_offline(code, str(tmp_path / "cold"))
    assert "ERR" in result.stdout and "Without network, pass source=" in result.stdout, result.stderr


def test_offline_warm_cache_serves_the_dataset(hub, tmp_path):
    url = f"{hub}/v1/{cs.SOURCE_FILENAME}"
    code = (
        "import sys, claudesidian_synthetic as cs\n"
        f"d = cs.load('balanced_254', split='train', source={url!r})\n"
        "print('ROWS', len(d), sum(d['label']))"
    )
    env_cache = str(tmp_path / "warm")
    online = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**os.environ, "HF_HOME": env_cache},
        capture_output=True, text=True, timeout=300,
    )
    assert "ROWS 508 254" in online.stdout, online.stderr
    offline = _run_offline(code, env_cache)
    assert "ROWS 508 254" in offline.stdout, offline.stderr
    assert json.dumps(offline.returncode) == "0"
