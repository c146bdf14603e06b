"""The download paths, for real. The default source goes through `huggingface_hub` to `HF_ENDPOINT`,
here a local fake Hub (tests/fake_hub.py), in fresh processes as users run them; a URL source goes
through the `datasets` download manager to a local HTTP server."""

import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import PUBLISHED_SHA256, REPO, as_source_rows
from fake_hub import FakeHub

import claudesidian_synthetic as cs

RESOLVE = f"/datasets/{cs.SOURCE_REPO_ID}/resolve/main/{cs.SOURCE_FILENAME}"


@pytest.fixture
def hub(tmp_path, source_path):
    """The source repository on a fake Hub: `main` holds v1.0.0, `changed` a file without its first row."""
    fake = FakeHub()
    (tmp_path / "main").mkdir()
    shutil.copyfile(source_path, tmp_path / "main" / cs.SOURCE_FILENAME)
    (tmp_path / "changed").mkdir()
    with open(source_path, encoding="utf-8") as file:
        (tmp_path / "changed" / cs.SOURCE_FILENAME).write_text("".join(file.readlines()[1:]), encoding="utf-8")
    fake.add(cs.SOURCE_REPO_ID, "main", str(tmp_path / "main"))
    fake.add(cs.SOURCE_REPO_ID, "changed", str(tmp_path / "changed"))
    yield fake
    fake.close()


def cli(*args, endpoint, home, offline=None, wait=True, extra=None):
    """The installed command in a fresh process: no --source, the Hub at `endpoint`, caches under `home`."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HF_", "HUGGINGFACE_")) and key.lower() not in ("http_proxy", "https_proxy")}
    env.update({"HF_ENDPOINT": endpoint, "HF_HOME": str(home), **(extra or {})})
    if offline:
        env[offline] = "1"
    process = subprocess.Popen([sys.executable, "-m", "claudesidian_tools", *args], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process.communicate(timeout=300) + (process.returncode,) if wait else process


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_default_source_comes_from_the_hub_endpoint_then_from_the_cache(hub, tmp_path):
    out = tmp_path / "b.jsonl"
    _, err, code = cli("build", "balanced_254", "--layout", "conversations", "--out", str(out), endpoint=hub.endpoint,
                       home=tmp_path / "home")
    assert code == 0, err
    assert sha256(out) == PUBLISHED_SHA256
    assert ("GET", RESOLVE) in hub.requests
    # A second process with a cold Arrow cache rebuilds from huggingface_hub's cache: no second download.
    shutil.rmtree(tmp_path / "home" / "datasets")
    downloads = hub.requests.count(("GET", RESOLVE))
    _, err, code = cli("build", "full", "--out", str(out), endpoint=hub.endpoint, home=tmp_path / "home")
    assert code == 0, err
    assert hub.requests.count(("GET", RESOLVE)) == downloads


def test_a_revision_is_fetched_and_checked(hub, tmp_path):
    _, err, code = cli("stats", "full", "--revision", "changed", endpoint=hub.endpoint, home=tmp_path / "home")
    assert code == 2 and "is not the v1.0.0 source" in err.strip().splitlines()[-1]
    out, err, code = cli("stats", "balanced_custom", "--revision", "changed", "--json", endpoint=hub.endpoint,
                         home=tmp_path / "home")
    assert code == 0 and '"rows": 508' in out, err


def test_a_revision_that_does_not_exist_is_one_line(hub, tmp_path):
    _, err, code = cli("build", "full", "--revision", "no-such-revision", endpoint=hub.endpoint, home=tmp_path / "h")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "RevisionNotFoundError" in err and "check --revision" in err


def _startup(tmp_path) -> float:
    """Seconds a fresh process of the command line takes to start (it imports `datasets`)."""
    start = time.monotonic()
    _, _, code = cli("configs", endpoint="http://127.0.0.1:9", home=tmp_path / "startup")
    assert code == 0
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "http://claudesidian-nowhere.invalid"],
                         ids=["closed port", "unresolvable host"])
def test_no_network_is_one_line_and_exit_2_within_3_seconds(tmp_path, endpoint):
    """Nothing answers at the endpoint: one line after one quick request, not 20 s of retries."""
    startup = _startup(tmp_path)
    for number, args in enumerate([["build", "balanced_254"], ["stats", "full"], ["export", str(tmp_path / "x")]]):
        start = time.monotonic()
        _, err, code = cli(*args, endpoint=endpoint, home=tmp_path / str(number))
        spent = time.monotonic() - start - startup
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith("claudesidian-synthetic: error: ") and "pass --source FILE" in err
        assert spent < 3, f"{args[0]}: the error came {spent:.1f} s after the start-up ({startup:.1f} s)"
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_tokenizer_from_an_unreachable_hub_is_one_line_within_3_seconds(tmp_path, source_path):
    startup = _startup(tmp_path)
    start = time.monotonic()
    _, err, code = cli("stats", "full", "--source", source_path, "--tokenizer", "someone/some-tokenizer",
                       endpoint="http://127.0.0.1:9", home=tmp_path / "home")
    spent = time.monotonic() - start - startup
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--tokenizer someone/some-tokenizer: not a local folder, and the Hub could not provide it" in err
    assert spent < 3, f"the error came {spent:.1f} s after the start-up ({startup:.1f} s)"


@pytest.mark.slow
def test_a_slow_but_working_hub_still_serves_the_source(hub, tmp_path):
    hub.delay = 1.0  # every answer a second late: slower than the no-network error, and it must work
    out = tmp_path / "b.jsonl"
    _, err, code = cli("build", "balanced_254", "--layout", "conversations", "--out", str(out), endpoint=hub.endpoint,
                       home=tmp_path / "home")
    assert code == 0, err
    assert sha256(out) == PUBLISHED_SHA256


def test_a_proxy_reaches_the_hub(hub, tmp_path):
    """HTTPS_PROXY / HTTP_PROXY: the quick first request goes through the proxy as the download does."""
    proxy = Proxy()
    try:
        out = tmp_path / "b.jsonl"
        _, err, code = cli("build", "balanced_254", "--layout", "conversations", "--out", str(out),
                           endpoint=hub.endpoint, home=tmp_path / "home",
                           extra={"HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url, "NO_PROXY": ""})
        assert code == 0, err
        assert sha256(out) == PUBLISHED_SHA256
        assert any(RESOLVE in url for url in proxy.forwarded)  # the source came through the proxy
    finally:
        proxy.close()


class Proxy:
    """A forwarding HTTP proxy on localhost: it reads the absolute URL a client asks a proxy for, fetches
    it, and answers with what it got."""

    def __init__(self):
        self.forwarded = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy.forwarded.append(self.path)
                request = urllib.request.Request(self.path, method=self.command, headers={
                    key: value for key, value in self.headers.items() if key.lower() not in ("host", "proxy-connection")
                })
                try:
                    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as answer:
                        status, headers, body = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as error:
                    status, headers, body = error.code, error.headers, error.read()
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                length = headers.get("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize("offline", ["HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_serves_a_warm_cache_and_refuses_a_cold_one_in_one_line(hub, tmp_path, offline):
    out = tmp_path / "b.jsonl"
    _, err, code = cli("build", "balanced_254", "--out", str(out), endpoint=hub.endpoint, home=tmp_path / "warm")
    assert code == 0, err
    shutil.rmtree(tmp_path / "warm" / "datasets")  # only huggingface_hub's cache of the source stays
    before = len(hub.requests)
    _, err, code = cli("build", "balanced_254", "--layout", "conversations", "--out", str(out), endpoint=hub.endpoint,
                       home=tmp_path / "warm", offline=offline)
    assert code == 0, err
    assert sha256(out) == PUBLISHED_SHA256
    assert [request for request in hub.requests[before:] if "resolve" in request[1]] == []  # nothing was asked
    _, err, code = cli("build", "balanced_254", endpoint=hub.endpoint, home=tmp_path / "cold", offline=offline)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "offline mode" in err and "pass --source FILE" in err


def test_the_python_api_raises_source_error(tmp_path):
    code = (
        "import claudesidian_synthetic as cs\n"
        "try:\n    cs.load('full')\nexcept cs.SourceError as error:\n    print('SourceError', error)"
    )
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.startswith("SourceError http://127.0.0.1:9/datasets/"), result.stderr


# --- a URL source, through the `datasets` download manager --------------------------------------


@pytest.fixture
def web(tmp_path, source_path):
    """A plain HTTP server with the source at /v1/<file name>."""
    (tmp_path / "web" / "v1").mkdir(parents=True)
    shutil.copyfile(source_path, tmp_path / "web" / "v1" / cs.SOURCE_FILENAME)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "web"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_source(web, published_rows):
    dataset = cs.load("balanced_254", split="train", source=f"{web}/v1/{cs.SOURCE_FILENAME}")
    assert as_source_rows(dataset) == published_rows


def test_streaming_a_url_source(web):
    url = f"{web}/v1/{cs.SOURCE_FILENAME}"
    streamed = cs.load("full", split="train", source=url, streaming=True)
    assert [row["label"] for row in streamed] == cs.load("full", split="train", source=url)["label"]


def test_missing_url_is_one_clear_error(web):
    with pytest.raises(cs.SourceError, match="could not be downloaded.*Check the URL"):
        cs.load("full", source=f"{web}/v2/{cs.SOURCE_FILENAME}")


def test_unreachable_host_says_to_pass_source():
    with pytest.raises(cs.SourceError, match="without network, pass source=FILE"):
        cs.load("full", source="http://127.0.0.1:9/" + cs.SOURCE_FILENAME)
