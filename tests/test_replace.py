"""A crash at any step of a replacement, then `recover()`, leaves the folder holding one whole version:
faults injected at every step in turn (as SQLite and git test theirs), real SIGKILLs, and disk errors."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from conftest import REPO

from claudesidian_tools import replace
from claudesidian_tools.replace import make_staging, recover, replace_files

OLD = {  # the previous export: a dozen files
    "README.md": b"old card",
    "claudesidian_export.json": b'{"export": 1}',
    "dataset_infos.json": b'{"old": {}}',
    "data/train-00000-of-00002.parquet": b"old train 0",
    "data/train-00001-of-00002.parquet": b"old train 1",  # deleted
    "data/test-00000-of-00001.parquet": b"same test",  # replaced by the same bytes
    "recipes/kto.yaml": b"old kto",
    "recipes/old.yaml": b"old recipe",  # deleted
    "figures/labels.png": b"old labels",
    "figures/old/hist.png": b"old hist",  # deleted, and figures/old becomes empty
    "figures/old/deep/plot.png": b"old plot",  # deleted, and figures/old/deep becomes empty
    "loading_script/x.py": b"old script",  # deleted, and loading_script becomes empty
}
NEW = {
    "README.md": b"new card",
    "claudesidian_export.json": b'{"export": 2}',
    "dataset_infos.json": b'{"new": {}}',
    "data/train-00000-of-00001.parquet": b"new train",
    "data/test-00000-of-00001.parquet": b"same test",
    "data/validation-00000-of-00001.parquet": b"new validation",
    "recipes/kto.yaml": b"new kto",
    "recipes/sft.yaml": b"new sft",
    "figures/labels.png": b"new labels",
    "figures/lengths/tokens/hist.png": b"new folders",  # folders the old version lacks
}
USER = {  # files no export wrote: never touched
    ".git/HEAD": b"ref: refs/heads/main\n",
    ".git/objects/ab/cdef": b"blob",
    ".gitattributes": b"*.parquet filter=lfs",
    "notes.txt": b"my notes",
    "data/NOTES.md": b"my notes inside an export folder",
}


class Killed(BaseException):
    """A kill: the code under test catches no BaseException, so no cleanup of its own runs."""


def fail_at(k: int):
    calls = iter(range(10**9))

    def step(name: str) -> None:
        if next(calls) == k:
            raise Killed(name)

    return step


def tree(folder: str) -> tuple[dict[str, bytes], set[str]] | None:
    """Every file with its bytes, and every folder: what "whole" is checked against."""
    if not os.path.isdir(folder):
        return None
    files, folders = {}, set()
    for root, names, filenames in os.walk(folder):
        relative = os.path.relpath(root, folder)
        folders |= {os.path.normpath(os.path.join(relative, name)) for name in names}
        files |= {os.path.normpath(os.path.join(relative, f)): Path(root, f).read_bytes() for f in filenames}
    return files, folders


def expected(*versions: dict[str, bytes]) -> tuple[dict[str, bytes], set[str]]:
    files = {path: data for version in versions for path, data in version.items()}
    return files, {str(p) for path in files for p in PurePosixPath(path).parents} - {"."}


def write(folder: str, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(folder, path)), exist_ok=True)
        Path(folder, path).write_bytes(data)


@pytest.fixture(autouse=True)
def skip_fsync(request, monkeypatch):
    """fsync matters only when the machine itself stops (power cut), which no test here can do: a killed
    process, real or simulated, leaves the page cache as it was. On a busy disk a few hundred fsyncs
    take seconds, so the sweeps skip them; a test that asks for `real_fsync` keeps them."""
    if "real_fsync" not in request.fixturenames:
        monkeypatch.setattr(replace, "_fsync", lambda path: None)


@pytest.fixture
def real_fsync() -> None:
    """Keep the module's fsync calls (files, folders, the journal)."""


@pytest.fixture
def memory_path(tmp_path) -> Iterator[Path]:
    """A folder in RAM (tmpfs) where there is one, for the sweeps: they check the order of renames, which
    no local filesystem changes, and on a busy disk their thousands of small files take half a minute.
    The tests of one replacement, of disk errors and of SIGKILL use the disk (`tmp_path`)."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    folder = tempfile.mkdtemp(dir="/dev/shm", prefix="test_replace.")
    yield Path(folder)
    shutil.rmtree(folder)


@pytest.fixture(scope="session")
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def make_case(base: Path, pid: int, target_exists: bool = True) -> tuple[str, str, list[str], list[str]]:
    """An old version plus user files in `base/exports/DIR`, and the new one staged beside it by the
    process `pid` (a dead one: the simulated kill took it)."""
    target = str(base / "exports" / "DIR")
    os.makedirs(os.path.dirname(target))
    if target_exists:
        write(target, {**OLD, **USER})
    staging = os.path.join(os.path.dirname(target), f".DIR.{pid}.staging")
    write(staging, NEW)
    return target, staging, sorted(NEW), sorted(OLD) if target_exists else []


def versions(target_exists: bool):
    before = expected(OLD, USER) if target_exists else None
    return before, expected(NEW, USER) if target_exists else expected(NEW)


def assert_whole(target: str, allowed: list) -> str:
    """One whole version, and nothing of the replacement's own beside it."""
    found = tree(target)
    assert found in allowed, "the folder holds neither version whole"
    assert sorted(os.listdir(os.path.dirname(target))) == (["DIR"] if found else [])
    return "old" if found == allowed[0] else "new"


def test_replace(tmp_path, dead_pid, real_fsync):
    target, staging, new, old = make_case(tmp_path, dead_pid)
    replace_files(target, staging, new, old)
    assert assert_whole(target, list(versions(True))) == "new"
    assert recover(target) is None


@pytest.mark.parametrize("target_exists", [True, False], ids=["replace", "first-export"])
def test_kill_at_every_step(memory_path, dead_pid, target_exists):
    names = []
    case = make_case(memory_path / "count", dead_pid, target_exists)
    replace_files(*case, step=names.append)
    commit = names.index("commit")
    outcomes = []
    for k, name in enumerate(names):
        target, *rest = make_case(memory_path / str(k), dead_pid, target_exists)
        with pytest.raises(Killed):
            replace_files(target, *rest, step=fail_at(k))
        said = recover(target)
        outcome = assert_whole(target, list(versions(target_exists)))
        assert outcome == ("old" if k < commit else "new"), f"killed after {name!r}"
        assert (said is None) == (k == len(names) - 1), said  # only a kill after the last step leaves nothing
        assert recover(target) is None
        outcomes.append(outcome)
    print(f"\n{len(names)} kill points ({target_exists=}): {outcomes.count('old')} old, {outcomes.count('new')} new")
    assert len(names) > 2 * len(NEW) and "old" in outcomes and "new" in outcomes


@pytest.mark.parametrize("kill_after", ["move aside figures/old/hist.png", "make folder figures/lengths",
                                        "place data/validation-00000-of-00001.parquet",
                                        "commit: temporary written", "commit", "remove emptied folder figures/old"])
def test_kill_during_recovery(memory_path, dead_pid, kill_after):
    names = []
    replace_files(*make_case(memory_path / "count", dead_pid), step=names.append)
    k = names.index(kill_after)
    steps = []
    target, *rest = make_case(memory_path / "count-recovery", dead_pid)
    with pytest.raises(Killed):
        replace_files(target, *rest, step=fail_at(k))
    recover(target, step=steps.append)
    want = assert_whole(target, list(versions(True)))
    for j, name in enumerate(steps):
        target, *rest = make_case(memory_path / f"r{j}", dead_pid)
        with pytest.raises(Killed):
            replace_files(target, *rest, step=fail_at(k))
        with pytest.raises(Killed):
            recover(target, step=fail_at(j))
        recover(target)
        assert assert_whole(target, list(versions(True))) == want, f"recovery killed after {name!r}"
        assert recover(target) is None
    assert steps


def test_kill_while_removing_staging_after_an_undo(memory_path, dead_pid, monkeypatch):
    """rmtree is one step to the sweep, yet a kill can stop it half way: staging then lacks some new
    files, which must not be taken for new files already placed (the undo would take the old ones)."""
    names = []
    replace_files(*make_case(memory_path / "count", dead_pid), step=names.append)
    target, *rest = make_case(memory_path / "case", dead_pid)
    with pytest.raises(Killed):
        replace_files(target, *rest, step=fail_at(names.index("place recipes/sft.yaml")))
    real = shutil.rmtree

    def killed_half_way(path, *args, **kwargs):
        if path.endswith(".staging"):
            os.unlink(os.path.join(path, "README.md"))
            raise Killed("rmtree")
        real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_half_way)
    with pytest.raises(Killed):
        recover(target)
    monkeypatch.setattr(shutil, "rmtree", real)
    recover(target)
    assert assert_whole(target, list(versions(True))) == "old"


def test_recover_waits_for_a_running_replacement(memory_path, dead_pid):
    """A verify started during an export must not take the export's journal for a crashed one."""
    target, *rest = make_case(memory_path, dead_pid)
    said = []

    def in_the_middle(name: str) -> None:
        if name == "place README.md":
            other = threading.Thread(target=lambda: said.append(recover(target)))
            other.start()
            other.join(0.3)
            assert other.is_alive(), "recover() did not wait for the lock"
            said.append(other)

    replace_files(target, *rest, step=in_the_middle)
    said.pop(0).join()
    assert said == [None] and assert_whole(target, list(versions(True))) == "new"


def test_oserror_rolls_back(tmp_path, dead_pid, monkeypatch, real_fsync):
    calls = []
    real = os.replace

    def full_disk(source, destination):
        calls.append(destination)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), destination)
        real(source, destination)

    target, staging, new, old = make_case(tmp_path, dead_pid)
    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError) as raised:
        replace_files(target, staging, new, old)
    assert raised.value.errno == errno.ENOSPC
    assert assert_whole(target, list(versions(True))) == "old"
    assert recover(target) is None


# os.replace calls: 1 the journal, 2-13 the old files aside, 14-23 the new ones placed, 24 the commit
@pytest.mark.parametrize("failing_call", [1, 13, 14, 23, 24])
def test_oserror_anywhere_before_commit(tmp_path, dead_pid, monkeypatch, failing_call):
    calls = []
    real = os.replace

    def failing(source, destination):
        calls.append(destination)
        if len(calls) == failing_call:
            raise PermissionError(errno.EACCES, "Permission denied", destination)
        real(source, destination)

    target, *rest = make_case(tmp_path, dead_pid)
    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(PermissionError):
        replace_files(target, *rest)
    assert assert_whole(target, list(versions(True))) == "old"


def test_stale_staging(tmp_path, dead_pid):
    target = tmp_path / "DIR"
    write(str(target), USER)
    dead, live = tmp_path / f".DIR.{dead_pid}.staging", tmp_path / f".DIR.{os.getpid()}.staging"
    other = tmp_path / f".OTHER.{dead_pid}.staging"
    for folder in (dead, live, other):
        write(str(folder), {"data/x.parquet": b"half-written"})
    said = recover(str(target))
    assert said == (f"{target}: removed 1 leftover staging folder of an export that did not finish; "
                    f"{target} was not touched")
    assert not dead.exists() and live.exists() and other.exists()
    assert recover(str(target)) is None and live.exists()
    assert tree(str(target)) == expected(USER)


def test_messages_and_refusals(tmp_path, dead_pid):
    target, staging, new, old = make_case(tmp_path / "a", dead_pid)
    with pytest.raises(Killed):
        replace_files(target, staging, new, old, step=fail_at(20))
    mine = make_staging(target)
    with pytest.raises(FileExistsError, match="run recover"):
        replace_files(target, mine, [], [])
    said = recover(target)
    assert said.startswith(f"{target}: an export started ") and said.endswith(
        f"was interrupted and has been undone; {target} holds the export before it")
    assert os.path.isdir(mine)  # this process still runs: its staging folder stays
    with pytest.raises(ValueError, match="'../x'"):
        replace_files(target, mine, ["../x"], [])
    with pytest.raises(ValueError, match="beside"):
        replace_files(target, str(tmp_path), [], [])


# A child process stages ~200 files and replaces the old ones; the test kills it with SIGKILL. Its fsyncs
# are skipped as in the sweeps (see `skip_fsync`), unless argv[4] is "fsync".
DRIVER = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from claudesidian_tools import replace
from claudesidian_tools.replace import make_staging, replace_files
if sys.argv[4:] != ["fsync"]:
    replace._fsync = lambda path: None
target, spec = sys.argv[2], json.load(open(sys.argv[3]))
staging = make_staging(target)
for path, text in spec["new"].items():
    os.makedirs(os.path.dirname(f"{staging}/{path}"), exist_ok=True)
    open(f"{staging}/{path}", "w").write(text)
print("ready", flush=True)
start = time.perf_counter()
replace_files(target, staging, sorted(spec["new"]), spec["old"])
print(time.perf_counter() - start, flush=True)
"""
BIG_OLD = {f"data/shard-{i // 20:02d}/part-{i:03d}.bin": f"old {i} " * 40 for i in range(200)}
BIG_NEW = {f"data/shard-{i // 20:02d}/part-{i:03d}.bin": f"new {i} " * 40 for i in range(50, 250)}


def test_sigkill(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"new": BIG_NEW, "old": sorted(BIG_OLD)}))
    encode = {path: text.encode() for path, text in BIG_OLD.items()}
    old, new = expected(encode, USER), expected({p: t.encode() for p, t in BIG_NEW.items()}, USER)

    def start(name: str) -> tuple[str, subprocess.Popen]:
        target = str(tmp_path / name / "DIR")
        write(target, {**encode, **USER})
        child = subprocess.Popen([sys.executable, "-c", DRIVER, str(REPO), target, str(spec)], stdout=subprocess.PIPE,
                                 text=True)
        assert child.stdout.readline() == "ready\n"
        return target, child

    target, child = start("calibrate")
    duration = float(child.communicate()[0])
    assert child.returncode == 0 and assert_whole(target, [old, new]) == "new"
    rng, outcomes = random.Random(20240601), []
    for trial in range(12):
        target, child = start(f"trial{trial}")
        time.sleep(rng.uniform(0, 1.2 * duration))
        child.send_signal(signal.SIGKILL)
        child.communicate()  # reaped: its pid no longer runs
        recover(target)
        outcomes.append(assert_whole(target, [old, new]))
    print(f"\nSIGKILL after 0-{1.2 * duration * 1000:.0f} ms of a {duration * 1000:.0f} ms replacement of 200 files: "
          f"{outcomes.count('old')} ended old, {outcomes.count('new')} ended new")


def test_a_read_only_folder_is_left_as_it_was_with_no_journal(tmp_path, dead_pid, read_only_folder):
    """A read-only file system refuses even the rmdir of a folder that was never made: the undo must not
    stop there and leave a journal that blocks every later export."""
    held = sorted(os.listdir(read_only_folder))
    staging = make_staging(str(read_only_folder))
    write(staging, NEW)
    with pytest.raises(OSError) as raised:
        replace_files(str(read_only_folder), staging, list(NEW), [])
    assert raised.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    assert not replace.pending(str(read_only_folder)) and not os.path.exists(staging)
    assert sorted(os.listdir(read_only_folder)) == held
    assert recover(str(read_only_folder)) is None
