"""Shared fixtures and helpers: the real files in ../shared/data (or $CLAUDESIDIAN_DATA), generated
sources, the command line in a subprocess, and the checks several test files make."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmarks/ is imported as a package: one way, from every test file
    sys.path.insert(0, str(REPO))
DATA = pathlib.Path(os.environ.get("CLAUDESIDIAN_DATA", REPO.parent / "shared" / "data"))
SOURCE = DATA / "syngen_toolset_v1.0.0_claude.jsonl"
PUBLISHED = DATA / "syngen_toolset_v1.0.0_claude_balanced_254.jsonl"
PUBLISHED_SHA256 = "c2b447f81455f9c75b18756420c4f8a42ac374f872ba9b5be5dcfc8605ef2959"

from benchmarks.benchmark import generate_source  # noqa: E402, F401 - re-exported for the tests


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


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("hf-datasets-cache")


@pytest.fixture(autouse=True)
def datasets_cache(request, shared_cache, tmp_path, monkeypatch):
    """Builds go to one `datasets` cache for the whole session: an entry is keyed by the config, its options
    and the source's bytes, so a test reuses what another built and sees the same rows. A test that must
    see a build happen (a patched builder, a counted regeneration) asks for `own_cache`."""
    cache = tmp_path / "hf-cache" if "own_cache" in request.fixturenames else shared_cache
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "downloads")
    return cache


@pytest.fixture
def own_cache(datasets_cache):
    """This test's own, empty `datasets` cache (see `datasets_cache`)."""
    return datasets_cache


# The configs of the session's export: the default export and three more (a mixed order of 8, custom counts,
# the published file's columns).
EXPORT_EXTRA = ["mixed8=full:order=mixed,batch_size=8", "balanced_custom:desirable=300,undesirable=200,seed=7",
                "conv=balanced_254:layout=conversations"]


@pytest.fixture(scope="session")
def session_export(tmp_path_factory, source_path, shared_cache):
    """The export every test that only reads one shares, written once, as the folder `dataset`: copy it
    (`shutil.copytree`) to change it."""
    from claudesidian_tools import export as exporter

    folder = tmp_path_factory.mktemp("session-export") / "dataset"
    with pytest.MonkeyPatch.context() as patch:
        import datasets

        patch.setattr(datasets.config, "HF_DATASETS_CACHE", shared_cache)
        specs = [exporter.parse_config_spec(spec) for spec in [*exporter.DEFAULT_EXPORTS, *EXPORT_EXTRA]]
        exporter.export(str(folder), specs, source=str(DATA))  # the folder: the family configs read three files
    return folder


def pytest_report_header(config):
    if (config.getoption("markexpr") or "").strip() == "not slow":
        return ("deselected: the slow tests (training runs, fresh virtual environments, benchmarks, memory, kill "
                "and network-timeout tests, Hub round trips of many processes); `bash .ci/run` runs them, with -m "
                "'slow or not slow'")
    return None


def config_source(name: str, source_path: str) -> str:
    """What a config reads: claude's file, or the data folder, which holds the family's three."""
    import claudesidian_synthetic as cs

    return str(DATA) if cs.CONFIGS[name].family else source_path


def as_source_rows(dataset):
    """Rows of a built dataset back in the source's shape (what the published file holds)."""
    return [
        {"conversations": row["prompt"] + row["completion"], "label": row["label"], "context": row["context"]}
        for row in dataset
    ]


def labelled_replies(dataset) -> tuple:
    """(labels, prompts, replies) of a built split in any layout, where its layout's record says they are."""
    import claudesidian_synthetic as cs

    return cs.layout_of(dataset.column_names).replies(dataset.to_dict())


def char_columns(dataset) -> tuple:
    """(labels, prompt characters, reply characters) of a built split, as numpy arrays, counted here."""
    import numpy as np

    labels, prompts, replies = labelled_replies(dataset)
    chars = [[sum(len(message["content"]) for message in messages) for messages in column]
             for column in (prompts, replies)]
    return np.array(labels, dtype=bool), np.array(chars[0], dtype=np.int64), np.array(chars[1], dtype=np.int64)


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


def run_cli(*args, cache=None, env=None, cwd=REPO):
    """The command line in a fresh process, as users run it."""
    environment = {**os.environ, **(env or {})}
    if cache:
        environment["HF_HOME"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "claudesidian_tools", *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=600,
    )


def run_main(*args):
    """The command line's own `main` in this process, for the tests about what it says and writes (the
    installed command runs the same code; the tests about processes, signals and install run it as
    users do, with `run_cli`): a CompletedProcess of (exit status, stdout, stderr)."""
    import contextlib
    import io

    from claudesidian_tools.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit:  # argparse: --help, --version, usage errors
            code = exit.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def windows_mixed(labels, batch_size: int) -> bool:
    """Every window of `batch_size` consecutive rows (not only the aligned batches) holds both labels."""
    return all(len(set(labels[start : start + batch_size])) == 2 for start in range(len(labels) - batch_size + 1))


def single_label_batches(labels, batch_size: int = 4) -> int:
    """Aligned, complete batches of `batch_size` rows that hold one label (what KTO's KL pairing fears)."""
    complete = len(labels) - len(labels) % batch_size
    return sum(len(set(labels[start : start + batch_size])) == 1 for start in range(0, complete, batch_size))


def prompt_digests(dataset) -> set:
    """The distinct prompts of a built split, in any layout."""
    import claudesidian_synthetic as cs

    columns = dataset.column_names
    if "messages" in columns:
        return {cs.json_digest(row["messages"][:-1]) for row in dataset}
    if "conversations" in columns:
        return {cs.json_digest(row["conversations"][:-1]) for row in dataset}
    return {cs.json_digest(row["prompt"]) for row in dataset}


# The fake Hub's accounts: `me` writes with `hf_good`, reads only with `hf_read`; `you` writes with `hf_you`.
HUB_TOKENS = {"hf_good": "me", "hf_read": "me", "hf_you": "you"}


@pytest.fixture
def fake_hub():
    """A fake Hub (tests/fake_hub.py) with the accounts of HUB_TOKENS; reach it through `fake_hub.endpoint`."""
    from fake_hub import FakeHub

    hub = FakeHub(tokens=HUB_TOKENS, read_only={"hf_read"})
    yield hub
    hub.close()


def sigint_as_usual() -> None:
    """For a child process (`preexec_fn`): Ctrl-C raises KeyboardInterrupt in Python, even where this
    run was started with SIGINT ignored (a background job inherits that, and Python keeps it)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def read_only_folder(tmp_path):
    """An existing folder that refuses new files while its parent takes them: a read-only mount as root (who
    writes past any mode), else mode 555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    shutil.copy(folder / "notes.txt", tmp_path / "notes.txt")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a read-only folder here as root (mount -o ro: {mounted.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
