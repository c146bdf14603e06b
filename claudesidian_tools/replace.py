"""Replace the files of one version in a folder by the next so that, once `recover()` has run, a crash
at any moment leaves one whole version (POSIX only).

As SQLite, git, dpkg and pip do it: the new version is complete and synced in a staging folder beside
the target; a journal of what moves where is durable before the first move; old files are moved aside,
not deleted; rewriting the journal as "committed" is the one atomic write that makes the new version the
real one; only then do the old files go. The next run reads a journal left behind and undoes or finishes.

For a target `PARENT/DIR` (one filesystem, so every move is a rename): `PARENT/.DIR.<pid>.staging/` holds
the new files and, in `.replace-backup/`, the old ones set aside; `PARENT/.DIR.journal` is the journal,
beside DIR as SQLite's `db-journal` is beside `db`. Not inside: DIR may not exist yet when the journal
must; DIR is often a git clone of a Hub repo, where it would show in `git status` and could be pushed;
a copy of DIR (cp, rsync, upload) must never carry a half-done record; DIR holds only the export and the
user's files. The cost: DIR moved away after a crash, before the next run, leaves its journal behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any

FORMAT = 1
BACKUP = ".replace-backup"  # inside staging: the old files set aside
JOURNAL_TEMP = ".replace-journal.tmp"  # inside staging, so a crash never leaves it beside DIR
_RESERVED = {BACKUP, JOURNAL_TEMP}


def make_staging(target: str) -> str:
    """Create and return the staging folder for `target`, named with this process's id so that
    `recover()` can tell a leftover of a dead process from one still being filled."""
    parent, name = os.path.split(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{name}.{os.getpid()}.staging")
    os.mkdir(staging)
    return staging


def replace_files(
    target: str, staging: str, new: Sequence[str], old: Sequence[str], *, step: Callable[[str], None] | None = None
) -> None:
    """Make `target` hold the files of `staging` at paths `new` in place of the previous version's `old`
    files; every other file of `target` stays as it was, and `staging` is removed. `staging` must be beside
    `target` (see `make_staging`); `target` may not exist yet.

    Any `Exception` before the commit point (an `OSError`: disk full, permission) puts the old version
    back in this process and is raised again. After the commit point the new version stays; an error
    while cleaning up is raised, and `recover()` finishes the cleanup. `step(name)` is called after
    each file-system operation, for tests that inject faults. Bad paths raise ValueError, and a journal
    left by an earlier run FileExistsError, before anything is touched."""
    step = step or (lambda name: None)
    target = os.path.abspath(target)
    parent, name = os.path.split(target)
    staging = os.path.abspath(staging)
    new, old = _checked(new, "new", reserved=True), _checked(old, "old")
    if os.path.dirname(staging) != parent:
        raise ValueError(f"staging={staging!r} must be a folder beside target={target!r}, so that moves are renames")
    journal = os.path.join(parent, f".{name}.journal")
    with _locked(parent):
        if os.path.lexists(journal):
            raise FileExistsError(f"{target}: {journal} records an unfinished replacement; run recover() first")
        plan = _plan(target, staging, new, old)
        try:
            for path in new:  # the new version is durable before anything refers to it
                _fsync(os.path.join(staging, path))
            step("sync staged files")
            _write_journal(journal, staging, plan, step, "write journal")
            for path in plan["aside"]:
                _move(os.path.join(target, path), os.path.join(staging, BACKUP, path))
                step(f"move aside {path}")
            for path in plan["created"]:
                os.mkdir(os.path.join(target, path))
                step(f"make folder {path or '.'}")
            for path in new:
                os.replace(os.path.join(staging, path), os.path.join(target, path))
                step(f"place {path}")
            _sync_folders(target, staging, plan)
            step("sync folders")
            _write_journal(journal, staging, dict(plan, state="committed"), step, "commit")
        except Exception as error:  # the journal on disk decides, as it would for recover()
            _undo_after(error, target, staging, journal)
            raise
        _finish(target, staging, journal, plan, step)


@contextlib.contextmanager
def one_at_a_time(target: str) -> Iterator[None]:
    """Hold `target` for one writer: two exports into one folder at once would each replace the other's
    files. An advisory lock on `.DIR.lock` beside it (the kernel drops it with its process; `recover()`
    removes a lock file nobody holds); BlockingIOError while another process holds it."""
    parent, name = os.path.split(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    path = os.path.join(parent, f".{name}.lock")
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise
        except OSError:  # a filesystem without flock (some NFS): go on unlocked
            pass
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)


def pending(target: str) -> bool:
    """Whether a replacement of `target` has a journal: its staging folder (with the old files set aside)
    belongs to `recover()` now, and nobody else may remove it."""
    parent, name = os.path.split(os.path.abspath(target))
    return os.path.lexists(os.path.join(parent, f".{name}.journal"))


def recover(target: str, *, step: Callable[[str], None] | None = None) -> str | None:
    """Finish or undo a replacement of `target` that a crash interrupted, remove leftover staging
    folders of processes that no longer run, and say in one line what was done (None: nothing).

    Safe to interrupt: the next call finishes the job. `step(name)` is as in `replace_files`."""
    step = step or (lambda name: None)
    target = os.path.abspath(target)
    parent, name = os.path.split(target)
    if not os.path.isdir(parent):
        return None
    journal = os.path.join(parent, f".{name}.journal")
    with _locked(parent):  # a journal seen under the lock has no live owner: its owner held the lock
        said = None
        if os.path.lexists(journal):
            plan = _read_journal(journal, target)
            staging = os.path.join(parent, plan["staging"])
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(plan["started"]))
            what = f"{target}: an export started {when} (process {plan['pid']}) was interrupted"
            if plan["state"] == "committed":
                _finish(target, staging, journal, plan, step)
                said = f"{what} after its commit point and has been completed; {target} holds that export"
            else:
                _undo(target, staging, journal, plan, step)
                before = "holds the export before it" if plan["aside"] else "is as it was before it"
                said = f"{what} and has been undone; {target} {before}"
        stale = _remove_stale_staging(parent, name, step)
        _remove_stale_lock(os.path.join(parent, f".{name}.lock"))
    if stale:
        folders = "1 leftover staging folder of an export" if stale == 1 else \
            f"{stale} leftover staging folders of exports"
        leftovers = f"removed {folders} that did not finish"
        said = f"{said}; {leftovers}" if said else f"{target}: {leftovers}; {target} was not touched"
    return said


def _checked(paths: Sequence[str], what: str, *, reserved: bool = False) -> list[str]:
    """Relative POSIX paths that stay inside the folder: a journal must never point outside it."""
    for path in paths:
        parts = path.split("/") if isinstance(path, str) and "\\" not in path else [""]
        if {"", ".", ".."} & set(parts):
            raise ValueError(f"{what}: {path!r} is not a relative POSIX path inside the folder, like 'data/x.parquet'")
        if reserved and parts[0] in _RESERVED:
            raise ValueError(f"{what}: {path!r} uses a name kept for the replacement's own files: {sorted(_RESERVED)}")
    if len(set(paths)) != len(paths):
        raise ValueError(f"{what}: a path is listed twice")
    return list(paths)


def _plan(target: str, staging: str, new: list[str], old: list[str]) -> dict[str, Any]:
    """The journal: what moves where, and the folders to make, so that any step can be undone."""
    full = {path: os.path.join(target, path) for path in old + new}
    # A file at a new path is set aside too, even one no export wrote: an undo puts it back.
    aside = sorted(path for path in full if os.path.lexists(full[path]) and not os.path.isdir(full[path]))
    folders = {str(p) for path in new for p in PurePosixPath(path).parents} - {"."}
    created = [""] if not os.path.isdir(target) else []
    created += [f for f in sorted(folders, key=_depth) if not os.path.isdir(os.path.join(target, f))]
    return {"format": FORMAT, "state": "moving", "pid": os.getpid(), "started": time.time(),
            "staging": os.path.basename(staging), "new": new, "old": old,
            "aside": aside, "created": created}


def _write_journal(journal: str, staging: str, plan: dict[str, Any], step: Callable[[str], None], label: str) -> None:
    """Write temp, fsync, rename over, fsync the folder: the journal on disk is always whole."""
    os.makedirs(staging, exist_ok=True)
    temporary = os.path.join(staging, JOURNAL_TEMP)
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(plan, file)
        file.flush()
        os.fsync(file.fileno())
    step(f"{label}: temporary written")
    os.replace(temporary, journal)
    _fsync(os.path.dirname(journal))
    step(label)


def _read_journal(journal: str, target: str) -> dict[str, Any]:
    try:
        with open(journal, encoding="utf-8") as file:
            plan = json.load(file)
        if plan["format"] != FORMAT or plan["state"] not in ("moving", "committed", "undone"):
            raise ValueError(f"format {plan['format']!r}, state {plan['state']!r}")
        for key in ("new", "old", "aside", "created", "staging"):  # never a path outside the folder
            _checked([path for path in ([plan[key]] if key == "staging" else plan[key]) if path], key)
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # never guess what to move: say so
        raise ValueError(f"{journal}: not a journal this version can read ({error}); check {target} by hand, "
                         "then move the journal away") from None
    return plan


def _undo_after(error: Exception, target: str, staging: str, journal: str) -> None:
    try:
        if not os.path.lexists(journal):
            shutil.rmtree(staging, ignore_errors=True)
        elif (plan := _read_journal(journal, target))["state"] != "committed":
            _undo(target, staging, journal, plan, lambda name: None)
        elif hasattr(error, "add_note"):
            error.add_note(f"{target} holds the new version; recover() will finish cleaning up")
    except (OSError, ValueError) as failed:  # the journal stays: recover() retries
        if hasattr(error, "add_note"):
            error.add_note(f"putting the old version back failed too ({failed}); recover() will retry")


def _undo(target: str, staging: str, journal: str, plan: dict[str, Any], step: Callable[[str], None]) -> None:
    """Before the commit point: new files back into staging, old files back from the backup."""
    if plan["state"] == "moving":
        for path in plan["new"]:  # a new file is in staging or in target, never both
            if not os.path.lexists(os.path.join(staging, path)) and os.path.lexists(os.path.join(target, path)):
                _move(os.path.join(target, path), os.path.join(staging, path))
                step(f"undo: take back {path}")
        for path in reversed(plan["created"]):
            if _remove_if_empty(os.path.join(target, path)):
                step(f"undo: remove folder {path or '.'}")
        for path in plan["aside"]:
            if os.path.lexists(os.path.join(staging, BACKUP, path)):
                _move(os.path.join(staging, BACKUP, path), os.path.join(target, path))
                step(f"undo: restore {path}")
        _sync_folders(target, staging, plan)
        step("undo: sync folders")
        # Said before staging goes: once parts of it are gone, "not in staging" no longer means "placed".
        _write_journal(journal, staging, dict(plan, state="undone"), step, "undone")
    _clean_up(staging, journal, step)


def _finish(target: str, staging: str, journal: str, plan: dict[str, Any], step: Callable[[str], None]) -> None:
    """After the commit point, every new file is in place: remove the old version's emptied folders and
    the old files set aside."""
    folders = {str(p) for path in plan["old"] for p in PurePosixPath(path).parents} - {"."}
    for folder in sorted(folders, key=_depth, reverse=True):
        if _remove_if_empty(os.path.join(target, folder)):
            step(f"remove emptied folder {folder}")
    _clean_up(staging, journal, step)


def _clean_up(staging: str, journal: str, step: Callable[[str], None]) -> None:
    if os.path.lexists(staging):
        shutil.rmtree(staging)
    step("remove staging")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(journal)
    _fsync(os.path.dirname(journal))
    step("remove journal")


def _remove_stale_lock(path: str) -> None:
    """A lock file left by a killed export: removed when nobody holds it."""
    if not os.path.exists(path):
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # held: an export is running
        with contextlib.suppress(OSError):
            os.unlink(path)


def _remove_stale_staging(parent: str, name: str, step: Callable[[str], None]) -> int:
    """Staging folders whose process is gone: a kill before the journal was written leaves one."""
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+)\.staging")
    removed = 0
    for entry in sorted(os.listdir(parent)):
        match = pattern.fullmatch(entry)
        full = os.path.join(parent, entry)
        if match and os.path.isdir(full) and not process_running(int(match[1]), os.stat(full).st_mtime):
            shutil.rmtree(full)
            removed += 1
            step(f"remove stale staging {entry}")
    return removed


def process_running(pid: int, seen: float) -> bool:
    """Whether process `pid` may still own something last changed at `seen`: not when the pid is
    free, nor when the machine has booted since (after a power cut the pid may be another program's)."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/stat", encoding="ascii") as file:
        if seen < int(next(line for line in file if line.startswith("btime ")).split()[1]):
            return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def _depth(path: str) -> tuple[int, str]:
    return path.count("/") + bool(path), path


def _move(source: str, destination: str) -> None:
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    os.replace(source, destination)


def _remove_if_empty(folder: str) -> bool:
    if not os.path.lexists(folder):  # a read-only file system refuses even the rmdir of nothing
        return False
    try:
        os.rmdir(folder)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            return False
        raise
    return True


def _sync_folders(target: str, staging: str, plan: dict[str, Any]) -> None:
    """Make every rename so far durable before the journal says more."""
    roots = {target: plan["new"] + plan["aside"], staging: plan["new"], os.path.join(staging, BACKUP): plan["aside"]}
    folders = {os.path.dirname(target)}
    for root, paths in roots.items():
        folders |= {os.path.join(root, str(p)) for path in paths for p in PurePosixPath(path).parents}
    for folder in sorted(folders):
        if os.path.isdir(folder):
            _fsync(folder)


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)  # a file or a folder
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _locked(parent: str) -> Iterator[None]:
    """One replacement or recovery at a time among the folders of `parent`. The kernel drops the lock
    when its process dies, so a journal found by the lock holder is one no running process owns."""
    descriptor = os.open(parent, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a filesystem without flock (some NFS): go on unlocked
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock
