"""What users meet in the field, end to end through the command line: a re-export killed at any moment,
a killed build, a full disk, a count too large to build, a tampered export, a fresh clone of a Hub
repository, the recipes' batch sizes, prompts kept apart in mixed batches, and Unix manners."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet
import pytest
import yaml
from conftest import DATA, REPO, generate_source, last_line, make_row, run_cli

import claudesidian_synthetic as cs
from claudesidian_tools import export as exporter
from claudesidian_tools.export import export, parse_config_spec
from claudesidian_tools.replace import recover

OLD_SPECS = ["a=balanced_custom:order=source"]
NEW_SPECS = ["a=balanced_custom:seed=7", "b=balanced_custom:seed=8"]
USER_FILES = {"notes.txt": b"my notes\n", ".git/HEAD": b"ref: refs/heads/main\n"}


def config_args(specs: list[str]) -> list[str]:
    return [word for spec in specs for word in ("--config", spec)]


def tree(folder) -> tuple[dict[str, bytes], set[str]]:
    """Every file of `folder` with its bytes, and every folder in it (relative paths)."""
    files, folders = {}, set()
    for root, names, filenames in os.walk(folder):
        relative = os.path.relpath(root, folder)
        folders |= {os.path.normpath(os.path.join(relative, name)) for name in names}
        files.update({os.path.normpath(os.path.join(relative, name)): Path(root, name).read_bytes()
                      for name in filenames})
    return files, folders


def differences(found, *versions) -> list[list[str]]:
    """For each version, the paths where `found` differs from it (for a failure's message)."""
    return [sorted(path for path in set(found[0]) | set(version[0]) if found[0].get(path) != version[0].get(path))
            + sorted(set(found[1]) ^ set(version[1])) for version in versions]


def add_user_files(folder) -> None:
    for path, data in USER_FILES.items():
        os.makedirs(os.path.dirname(os.path.join(folder, path)) or folder, exist_ok=True)
        Path(folder, path).write_bytes(data)


def leftovers(parent, name: str = "DIR") -> list[str]:
    """The replacement's own entries beside the folder (journal, staging folders)."""
    return sorted(entry for entry in os.listdir(parent) if entry.startswith(f".{name}."))


def small_rows(count: int = 40) -> list[dict]:
    """`count` rows, every third one undesirable (40 rows: 26 desirable, 14 undesirable)."""
    return [make_row(index, index % 3 != 0) for index in range(count)]


def cache_files(cache) -> list[str]:
    return sorted(str(path.relative_to(cache)) for path in Path(cache).rglob("*") if path.is_file())


def quick_draw(path, name, stats, layout, batch_size=None) -> bool:
    """A figure as a few bytes of its stats: matplotlib takes 90% of a small export's time."""
    Path(path).write_bytes(json.dumps([name, stats["train"]["rows"], batch_size]).encode())
    return True


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """This test's own, empty `datasets` cache, in this process and the commands it runs (set after
    conftest's autouse cache fixture, so it wins whichever cache that one gives)."""
    import datasets

    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "downloads")
    return cache


# --- 1. a re-export killed at any moment leaves the old export or the new one, never a mix or a wedge ---


@pytest.fixture(scope="module")
def big_source(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    generate_source(path, 30_000)
    return str(path)


@pytest.mark.slow
def test_sigkill_during_a_reexport_leaves_the_old_or_the_new_export(tmp_path, big_source):
    """10 SIGKILLs spread over a re-export of a 30,000-row source (one at a seeded moment in each tenth of
    its run): `verify` recovers, and the folder holds the old export or the new one, byte for byte."""
    parent, target = tmp_path / "exports", tmp_path / "exports" / "DIR"
    pristine, clean = tmp_path / "pristine" / "DIR", tmp_path / "clean" / "DIR"  # the card names the folder
    result = run_cli("export", str(target), "--source", big_source, *config_args(OLD_SPECS))
    assert result.returncode == 0, result.stderr
    add_user_files(target)
    old = tree(target)
    shutil.copytree(target, pristine, symlinks=True)
    started = time.perf_counter()
    result = run_cli("export", str(clean), "--source", big_source, *config_args(NEW_SPECS))
    duration = time.perf_counter() - started  # the calibration: how long the new export runs
    assert result.returncode == 0, result.stderr
    add_user_files(clean)
    new = tree(clean)
    assert old != new and set(new[0]) - set(old[0]), "the new export must differ from the old one"

    rng, records = random.Random(20241205), []
    command = [sys.executable, "-m", "claudesidian_tools", "export", str(target), "--source", big_source,
               *config_args(NEW_SPECS)]
    delays = [(trial + rng.random()) / 10 * 1.1 * duration for trial in range(10)]
    for delay in delays:
        if tree(target) != old:  # each kill interrupts a re-export of the old export
            shutil.rmtree(target)
            shutil.copytree(pristine, target, symlinks=True)
        child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()  # reaped: its pid no longer runs
        interrupted = (parent / ".DIR.journal").exists()
        left = leftovers(parent)
        verified = run_cli("verify", str(target), "--source", big_source)
        assert verified.returncode == 0, (delay, verified.stdout, verified.stderr)
        first = verified.stdout.splitlines()[0]
        if interrupted:
            assert "has been undone" in first or "has been completed" in first, first
        elif left:
            assert "leftover staging folder" in first, first
        assert leftovers(parent) == [], f"left beside the folder after a kill at {delay:.2f} s"
        found = tree(target)
        assert found in (old, new), (f"a kill at {delay:.2f} s left neither export whole (differences from the old, "
                                     f"the new): {differences(found, old, new)}")
        outcome = "old" if found == old else "new"
        records.append(f"{delay:.2f} s: {outcome}" + (" (journal)" if interrupted else " (staging)" if left else ""))
        if interrupted:  # the command run again, as a user would: not wedged
            again = run_cli("export", str(target), "--source", big_source, *config_args(NEW_SPECS))
            assert again.returncode == 0, again.stderr
            assert tree(target) == new
    # After the last kill, a plain re-export works.
    again = run_cli("export", str(target), "--source", big_source, *config_args(OLD_SPECS))
    assert again.returncode == 0, again.stderr
    assert tree(target) == old and leftovers(parent) == []
    outcomes = [record.split(": ")[1].split()[0] for record in records]
    print(f"\nSIGKILL during a {duration:.2f} s re-export of {len(old[0]) - len(USER_FILES)} files: "
          f"{outcomes.count('old')} ended old, {outcomes.count('new')} ended new; {'; '.join(records)}")


@pytest.fixture
def quick_figures(monkeypatch):
    """Quick figures (`quick_draw`): these sweeps check how files are moved, not how they are drawn (old
    and new are exported with it too)."""
    monkeypatch.setattr(exporter, "draw_figure", quick_draw)


def sweep_case(tmp_path, write_source):
    """A small source, the old export (with user files) kept pristine, and the new export's tree."""
    source = write_source(small_rows())
    pristine = tmp_path / "pristine" / "DIR"
    export(str(pristine), [parse_config_spec(spec) for spec in OLD_SPECS], source=source)
    add_user_files(pristine)
    clean = tmp_path / "clean" / "DIR"
    export(str(clean), [parse_config_spec(spec) for spec in NEW_SPECS], source=source)
    add_user_files(clean)
    return source, pristine, tree(pristine), tree(clean)


def replace_with_step(real, step):
    def replace_files(target, staging, new, old, **kwargs):
        return real(target, staging, new, old, step=step, **kwargs)

    return replace_files


def count_steps(tmp_path, monkeypatch, source, pristine) -> list[str]:
    names, real = [], exporter.replace_files
    monkeypatch.setattr(exporter, "replace_files", replace_with_step(real, names.append))
    target = tmp_path / "count" / "DIR"
    shutil.copytree(pristine, target, symlinks=True)
    export(str(target), [parse_config_spec(spec) for spec in NEW_SPECS], source=source)
    monkeypatch.setattr(exporter, "replace_files", real)
    assert names[-1] == "remove journal" and "commit" in names
    return names


class Fault(BaseException):
    """An injected fault that no `except Exception` catches (what a kill would be, short of one)."""


def test_fault_at_every_step_of_the_export_replacement(tmp_path, write_source, monkeypatch, quick_figures):
    source, pristine, old, new = sweep_case(tmp_path, write_source)
    names, real = count_steps(tmp_path, monkeypatch, source, pristine), exporter.replace_files
    outcomes = {}
    for k, name in enumerate(names):
        calls = iter(range(10**6))

        def step(label, k=k, calls=calls):
            if next(calls) == k:
                raise Fault(label)

        target = tmp_path / f"k{k}" / "DIR"
        shutil.copytree(pristine, target, symlinks=True)
        monkeypatch.setattr(exporter, "replace_files", replace_with_step(real, step))
        with pytest.raises(Fault):
            export(str(target), [parse_config_spec(spec) for spec in NEW_SPECS], source=source)
        monkeypatch.setattr(exporter, "replace_files", real)
        recover(str(target))
        found = tree(target)
        outcomes[f"{k} {name}"] = "old" if found == old else "new" if found == new else "MIX"
        assert leftovers(target.parent) == []
    print(f"\n{len(names)} steps: {outcomes}")
    mixed = [step for step, outcome in outcomes.items() if outcome == "MIX"]
    assert not mixed, f"a fault at these steps left a mix after recover(): {mixed}"


def test_after_an_undone_export_the_next_one_names_what_it_removes(tmp_path, write_source, monkeypatch, capsys,
                                                                    quick_figures):
    """A re-export interrupted just before its commit (its files, manifest included, already in the folder) is
    undone by the next export, which then names the configs it removes from the export that is really there."""
    source = write_source(small_rows())
    target = tmp_path / "DIR"
    export(str(target), [parse_config_spec(spec) for spec in ("a=balanced_custom", "b=balanced_custom:seed=8")],
           source=source)
    real = exporter.replace_files

    def step(label):
        if label == "sync folders":  # every file moved, the commit not yet written
            raise Fault(label)

    monkeypatch.setattr(exporter, "replace_files", replace_with_step(real, step))
    with pytest.raises(Fault):
        export(str(target), [parse_config_spec("c=balanced_custom:seed=9")], source=source)
    monkeypatch.setattr(exporter, "replace_files", real)
    assert json.loads((target / exporter.MANIFEST).read_text())["configs"][0]["name"] == "c"  # the new one, moved in
    capsys.readouterr()
    export(str(target), [parse_config_spec("a=balanced_custom")], source=source)
    said = capsys.readouterr().err.splitlines()
    assert "has been undone" in said[0]
    assert said[-1] == ("removed the last export's b, which this export does not hold (name every config to keep "
                        "with --config)")


def _export_then_exit(target: str, specs: list, source: str) -> None:
    try:
        export(target, specs, source=source)
    finally:
        os._exit(3)


@pytest.mark.slow
def test_kill_at_every_step_of_the_export_replacement(tmp_path, write_source, monkeypatch, quick_figures, capsys):
    """The process dies at step k (a forked child calls os._exit: no cleanup of its own runs), for every k;
    then recover() (even k) or the next export (odd k) leaves the old or the new export whole."""
    source, pristine, old, new = sweep_case(tmp_path, write_source)
    names, real = count_steps(tmp_path, monkeypatch, source, pristine), exporter.replace_files
    specs = [parse_config_spec(spec) for spec in NEW_SPECS]
    outcomes = []
    for k in range(len(names)):
        calls = iter(range(10**6))

        def step(label, k=k, calls=calls):
            if next(calls) == k:
                os._exit(9)

        target = tmp_path / f"k{k}" / "DIR"
        shutil.copytree(pristine, target, symlinks=True)
        monkeypatch.setattr(exporter, "replace_files", replace_with_step(real, step))
        child = multiprocessing.get_context("fork").Process(target=_export_then_exit,
                                                            args=(str(target), specs, source))
        child.start()  # it dies at step k (os._exit: no cleanup of its own runs), or says it did not get there
        child.join(60)
        if child.exitcode is None:
            child.kill()
            child.join()
            pytest.fail(f"the child exporting with a kill at step {k} hung")
        monkeypatch.setattr(exporter, "replace_files", real)
        assert child.exitcode == 9, f"step {k} ({names[k]}) was not reached"
        journal = (target.parent / ".DIR.journal").exists()
        capsys.readouterr()
        said = recover(str(target)) if k % 2 == 0 else None
        if k % 2 == 0 or not journal:  # without a journal, nothing is to be undone or finished
            found = tree(target)
            assert found in (old, new), f"a kill at step {k} ({names[k]}) left a mix: {differences(found, old, new)}"
            outcome = "old" if found == old else "new"
        if k % 2:  # the next export finds what the kill left, recovers and exports
            export(str(target), specs, source=source)
            assert tree(target) == new
            if journal:
                said = capsys.readouterr().err.splitlines()[0]
                outcome = "old" if "has been undone" in said else "new"
        assert leftovers(target.parent) == []
        if journal:  # what recovery says is what it did
            assert said and ("has been undone" in said) != ("has been completed" in said), (k, said)
        outcomes.append(outcome)
    print(f"\n{len(names)} steps: " + ", ".join(f"{k} {name}: {outcome}" for k, (name, outcome)
                                                in enumerate(zip(names, outcomes))))
    commit = names.index("commit")
    assert outcomes == ["old"] * commit + ["new"] * (len(names) - commit), outcomes


def test_a_stale_staging_folder_is_one_folder_in_the_singular(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    target = tmp_path / "DIR"
    target.mkdir()
    (tmp_path / f".DIR.{dead.pid}.staging").mkdir()
    said = recover(str(target))
    assert said and "removed 1 leftover staging folder" in said and leftovers(tmp_path) == []
    assert "folder(s)" not in said, said


# --- 2. a killed build --out leaves its temporary file; the next build removes those of dead processes ---


def test_next_build_removes_the_partial_file_of_a_killed_build(tmp_path, write_source):
    big = tmp_path / "big.jsonl"
    generate_source(big, 10_000)
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "b.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-m", "claudesidian_tools", "build", "balanced_custom", "--order", "source",
         "--source", str(big), "--out", str(out)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = folder / f".b.jsonl.{child.pid}.partial"
    deadline = time.monotonic() + 120
    while not partial.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert partial.exists(), "the build ended before its partial file was seen: give it a larger source"
    assert sorted(os.listdir(folder)) == [partial.name], "the killed build leaves its partial file, no b.jsonl"
    live = folder / f".b.jsonl.{os.getpid()}.partial"  # a build still running (this process)
    live.write_text("still being written")
    other = folder / f".c.jsonl.{child.pid}.partial"  # another output's: not this build's business
    other.write_text("")

    result = run_cli("build", "balanced_custom", "--source", write_source(small_rows()), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert not partial.exists()
    assert live.read_text() == "still being written" and other.exists()
    said = [line for line in result.stderr.splitlines() if line.startswith("removed ")]
    assert len(said) == 1 and str(partial) in said[0] and f"process {child.pid}" in said[0], result.stderr
    assert len(out.read_text().splitlines()) == 28  # 14 undesirable rows kept whole, 14 desirable drawn


# --- 3. a full disk: one line, exit 2, nothing left behind ---


class Tmpfs:
    """A small tmpfs mounted at `folder` (root only); unmounted on leaving, whatever happened."""

    def __init__(self, folder: Path, size: str):
        self.folder, self.size = folder, size

    def __enter__(self) -> Path:
        self.folder.mkdir(parents=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.folder)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            reason = f"cannot mount a tmpfs of {self.size} ({mounted.stderr.strip() or mounted.returncode}): needs root"
            print(reason)
            pytest.skip(reason)
        return self.folder

    def __exit__(self, *exc):
        subprocess.run(["umount", str(self.folder)], capture_output=True)
        return False


def assert_disk_full_line(result, *names: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "disk is full" in lines[0] and "free some space" in lines[0], lines[0]
    assert any(name in lines[0] for name in names), lines[0]
    return lines[0]


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, source_path):
    try:
        with Tmpfs(tmp_path / "small", "1m") as disk:  # the source is 1.6 MB, and so is `full` as JSONL
            out = disk / "b.jsonl"
            assert_disk_full_line(run_cli("build", "full", "--source", source_path, "--out", str(out)),
                                  str(out), str(disk))
            assert os.listdir(disk) == []
        # `full` as Parquet (with its card, figure and script) takes about 760 KB: it fits in 1 MB.
        with Tmpfs(tmp_path / "smaller", "256k") as disk:
            folder = disk / "ex"
            assert_disk_full_line(run_cli("export", str(folder), "--source", source_path, "--config", "a=full"),
                                  str(folder))
            assert os.listdir(disk) == [], "no export, no staging folder, no journal"
    finally:
        for folder in ("small", "smaller"):
            subprocess.run(["umount", str(tmp_path / folder)], capture_output=True)


def test_a_full_disk_while_exporting_in_process(tmp_path, source_path, write_source, monkeypatch, capsys):
    from claudesidian_tools import cli

    target = tmp_path / "exports" / "DIR"
    code = cli.main(["export", str(target), "--source", write_source(small_rows()), "--config", "old=balanced_custom"])
    assert code == 0
    add_user_files(target)
    before = tree(target)
    capsys.readouterr()

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pyarrow.parquet.ParquetWriter, "write_table", no_space)
    code = cli.main(["export", str(target), "--source", source_path, "--config", "a=full"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and "disk is full" in lines[0] and str(target) in lines[0], lines
    assert tree(target) == before
    assert leftovers(target.parent) == []


# --- 4. a count too large to build is refused before any work, naming the largest that builds ---


def test_an_unbounded_count_is_refused_at_once(source_path, fresh_cache):
    started = time.perf_counter()
    result = run_cli("build", "balanced_custom", "--desirable", "99999999999999", "--replacement",
                     "--source", source_path)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2 and elapsed < 10, (result.returncode, elapsed)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "--desirable 99999999999999" in lines[0]
    largest = re.search(r"give at most --desirable (\d+) \(with 254 undesirable rows\)", lines[0])
    fit = re.search(r"([\d,]+) fit in the memory", lines[0])
    assert largest and fit, lines[0]
    assert int(largest[1]) + 254 == int(fit[1].replace(",", "")) and int(largest[1]) < 99999999999999
    assert result.stdout == ""
    assert not [path for path in cache_files(fresh_cache) if not path.endswith(".lock")]


@pytest.mark.parametrize("binding", ["memory", "disk"])
def test_the_row_limit_is_memory_and_disk_and_its_largest_count_builds(binding, write_source, monkeypatch,
                                                                       fresh_cache):
    path = write_source(small_rows())  # 26 desirable, 14 undesirable
    lines = Path(path).read_bytes().splitlines(keepends=True)
    mean = sum(map(len, lines)) // len(lines)
    memory_rows, disk_rows = (250, 400) if binding == "memory" else (400, 250)
    memory = memory_rows * cs.BYTES_PER_PLANNED_ROW + cs.BYTES_PER_PLANNED_ROW - 1  # rounded down: 250 or 400
    free = disk_rows * mean + mean - 1
    monkeypatch.setattr(cs, "_available_memory", lambda: memory)
    monkeypatch.setattr(cs, "_free_disk", lambda folder: free)
    limit = min(memory // cs.BYTES_PER_PLANNED_ROW, free // mean)
    assert limit == 250
    largest = limit - 14  # the undesirable rows are kept whole

    with pytest.raises(cs.OptionError) as refused:
        cs.load("balanced_custom", source=path, desirable=10**9, replacement=True)
    assert f"{limit} fit in the memory" in str(refused.value) and f"desirable={largest} " in str(refused.value)
    assert not [file for file in cache_files(fresh_cache) if not file.endswith(".lock")], "a refused build wrote"
    with pytest.raises(cs.OptionError) as one_more:
        cs.load("balanced_custom", source=path, desirable=largest + 1, replacement=True)
    assert f"asks for {limit + 1} rows" in str(one_more.value)
    train = cs.load("balanced_custom", source=path, desirable=largest, replacement=True)["train"]
    assert len(train) == limit and sum(train["label"]) == largest
    assert [file for file in cache_files(fresh_cache) if file.endswith(".arrow")], "a build that ran writes there"


def test_a_limit_below_the_label_kept_whole_names_no_count_that_cannot_work(write_source, monkeypatch):
    """Where even the label kept whole (14 rows) is more than the machine takes (10), no count of the other
    label can fit: the refusal says so, and names no value that would be refused in its turn."""
    path = write_source(small_rows())
    monkeypatch.setattr(cs, "_available_memory", lambda: 10 * cs.BYTES_PER_PLANNED_ROW)
    for options in ({"desirable": 100}, {"ratio": 100}):
        with pytest.raises(cs.OptionError) as refused:
            cs.load("balanced_custom", source=path, replacement=True, **options)
        said = str(refused.value)
        folder = re.search(r"this machine can build 10 \(in the memory available and on the disk of (.+?)\), fewer "
                           r"than the 14 rows of the other label alone", said)
        assert folder and os.path.isdir(folder[1]), said  # the folder whose disk bounds the build, named
        assert "give at most" not in said and "ratio=-" not in said


# --- 5. verify checks every file and reports every difference ---


@pytest.fixture(scope="module")
def default_export(tmp_path_factory, source_path) -> Path:
    """The default export, made once as `kto-data` (its figures as a few bytes each: these tests read the
    data, the card and the recipes): copy it to change it."""
    import datasets

    base = tmp_path_factory.mktemp("default-export")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", base / "hf-cache")
        patch.setattr(exporter, "draw_figure", quick_draw)
        export(str(base / "kto-data"), source=str(DATA))  # the folder: the family configs read three files
    return base / "kto-data"


def rewrite_row(path: Path, row: int, change) -> None:
    schema = pyarrow.parquet.read_schema(path)
    rows = pyarrow.parquet.read_table(path).to_pylist()
    change(rows[row])
    pyarrow.parquet.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_verify_reports_every_difference(default_export, tmp_path, source_path):
    folder = shutil.copytree(default_export, tmp_path / "kto-data")
    names = [entry["name"] for entry in json.loads((folder / "claudesidian_export.json").read_text())["configs"]]
    assert {"balanced_254", "full"} <= set(names) and len(names) > 2
    untouched = run_cli("verify", str(folder), "--source", str(DATA))
    assert untouched.returncode == 0, untouched.stderr
    assert sum("rows identical" in line for line in untouched.stdout.splitlines()) == len(names)

    replace_once(folder / "recipes" / "kto_full.yaml", "undesirable_weight: 2.937\n", "undesirable_weight: 3.5\n")
    replace_once(folder / "README.md", "| `balanced_254` | `train` | 508 |", "| `balanced_254` | `train` | 509 |")
    rewrite_row(folder / "data" / "full" / "train-00000-of-00001.parquet", 7,
                lambda row: row.update(label=not row["label"]))
    rewrite_row(folder / "data" / "balanced_254" / "train-00000-of-00001.parquet", 11,
                lambda row: row["completion"][0].update(content=row["completion"][0]["content"] + " (edited)"))
    result = run_cli("verify", str(folder), "--source", str(DATA))
    assert result.returncode == 1, result.stderr
    out = result.stdout.splitlines()

    def said(pattern: str) -> list[str]:
        return [line for line in out if re.match(pattern, line)]

    assert len(said(r"recipes/kto_full\.yaml: differs")) == 1, out
    assert len(said(r"README\.md: differs")) == 1, out
    assert len(said(r"full, split train, row 7 \(counting from 0; row 7 of data/full/train-00000-of-00001\.parquet\): "
                    r"different in column label")) == 1, out
    assert len(said(r"balanced_254, split train, row 11 \(counting from 0; row 11 of "
                    r"data/balanced_254/train-00000-of-00001\.parquet\): different in column completion")) == 1, out
    for name in names:
        if name not in ("full", "balanced_254"):
            assert len(said(rf"{re.escape(name)}: \d+ rows identical")) == 1, (name, out)
    # 4 changed files (recipe, card, two shards) and 2 configs' rows
    assert "6 differences" in last_line(result), result.stderr


# --- 6. a fresh clone of a Hub dataset repository ---


def git(folder, *args) -> None:
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=Hub", "-c", "user.email=hub@example.com", *args],
                   check=True, capture_output=True)


def test_export_into_a_fresh_clone_needs_replace_existing(tmp_path, write_source):
    if shutil.which("git") is None:
        print("git is not installed: cannot lay out a clone")
        pytest.skip("git is not installed: cannot lay out a clone")
    clone = tmp_path / "my-dataset"
    clone.mkdir()
    git(clone, "init", "-q")
    (clone / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    (clone / "README.md").write_text("---\nlicense: mit\n---\n# my-dataset\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "initial commit")
    source = write_source(small_rows())
    before = tree(clone)

    refused = run_cli("export", str(clone), "--source", source, "--config", "a=balanced_custom")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--replace-existing" in lines[0], refused.stderr
    assert tree(clone) == before and leftovers(tmp_path, "my-dataset") == []

    (clone / "notes.txt").write_text("mine")
    kept = {path: data for path, data in tree(clone)[0].items() if path != "README.md"}
    result = run_cli("export", str(clone), "--source", source, "--config", "a=balanced_custom", "--replace-existing")
    assert result.returncode == 0, result.stderr
    replaced = [line for line in result.stderr.splitlines() if line.startswith("replaced ")]
    assert len(replaced) == 1 and replaced[0].startswith("replaced README.md,"), result.stderr
    files = tree(clone)[0]
    assert {path: files.get(path) for path in kept} == kept, ".git, .gitattributes and notes.txt stay as they were"
    assert files["README.md"] != before[0]["README.md"] and b"balanced_custom" in files["README.md"]
    assert "data/a/train-00000-of-00001.parquet" in files

    help_text = run_cli("export", "--help")
    assert help_text.returncode == 0 and "--replace-existing" in help_text.stdout


# --- 7. the KTO recipes' batch size, and what it means for one-label batches ---


def single_label_batches(labels, size: int) -> tuple[int, int]:
    complete = len(labels) // size
    return sum(len(set(labels[start * size : (start + 1) * size])) == 1 for start in range(complete)), complete


def test_kto_recipes_set_the_batch_size_and_count_one_label_batches(default_export, source_path):
    recipes = sorted((default_export / "recipes").glob("kto_*.yaml"))
    assert {"kto_full.yaml", "kto_balanced_254.yaml"} <= {path.name for path in recipes}
    for path in recipes:
        size = yaml.safe_load(path.read_text())["per_device_train_batch_size"]
        assert isinstance(size, int) and size >= 1, path.name
    for config in ("full", "balanced_254"):
        text = (default_export / "recipes" / f"kto_{config}.yaml").read_text()
        size = yaml.safe_load(text)["per_device_train_batch_size"]
        said = re.findall(r"^# (\d+) of the (\d+) batches of (\d+) hold one label", text, re.MULTILINE)
        assert len(said) == 1, text
        labels = cs.load(config, source=source_path)["train"]["label"]
        assert (int(said[0][0]), int(said[0][1]), int(said[0][2])) == (*single_label_batches(labels, size), size)


# --- 8. mixed batches keep a prompt's rows apart where they can ---


def prompt_keys(messages_column) -> list[str]:
    return [json.dumps(messages, sort_keys=True) for messages in messages_column]


def repeat_batches(keys: list[str], size: int) -> int:
    """Complete, aligned batches of `size` rows in which one prompt occurs twice."""
    return sum(len(set(keys[start : start + size])) < size for start in range(0, len(keys) - size + 1, size))


def test_mixed_order_keeps_a_prompt_out_of_one_batch(source_path, source_rows, published_rows):
    repeated = len(source_rows) - len(set(prompt_keys(row["conversations"][:-1] for row in source_rows)))
    assert repeated > 0, "the source repeats prompts, so the check below could fail"
    full_eval = cs.load("full_eval", source=source_path)
    splits = {"full mixed 4": cs.load("full", source=source_path, order="mixed", batch_size=4)["train"],
              "full_eval train": full_eval["train"], "full_eval test": full_eval["test"]}
    for name, split in splits.items():
        keys, labels = prompt_keys(split["prompt"]), split["label"]
        assert len(keys) % 4 == 0, name  # every batch is complete
        assert repeat_batches(keys, 4) == 0, name
        assert all(len(set(labels[start : start + 4])) == 2 for start in range(len(labels) - 3)), name

    stats = json.loads(run_cli("stats", "full", "--order", "mixed", "--batch-size", "4", "--json",
                               "--source", source_path).stdout)
    assert stats["train"]["prompt_repeat_batches"]["4"] == 0
    result = run_cli("stats", "balanced_254", "--json", "--source", source_path)
    reported = json.loads(result.stdout)["train"]["prompt_repeat_batches"]
    published = prompt_keys(row["conversations"][:-1] for row in published_rows)  # the published order
    assert "4" in reported
    assert reported == {size: repeat_batches(published, int(size)) for size in reported}


# --- 9. Unix manners ---


def test_a_closed_pipe_is_quiet(source_path, tmp_path):
    errors = tmp_path / "stderr"
    script = (f"set +o pipefail; {sys.executable} -m claudesidian_tools build full --source {source_path} "
              f"2>{errors} | head -n 1; echo \"status ${{PIPESTATUS[0]}}\"")
    result = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    first, status = result.stdout.splitlines()
    assert json.loads(first)["label"] in (True, False)
    assert status in ("status 141", "status 0"), status
    said = errors.read_text()
    assert "BrokenPipe" not in said and "Traceback" not in said and "Exception ignored" not in said, said
    if status == "status 141":
        assert said == ""


def test_a_batch_size_beyond_the_rows_is_one_line(source_path):
    result = run_cli("build", "full", "--order", "mixed", "--batch-size", "2000", "--source", source_path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--batch-size 2000" in lines[0] and "1000 rows" in lines[0], result.stderr


def test_one_config_and_one_shard_are_said_in_the_singular(tmp_path, write_source):
    result = run_cli("export", str(tmp_path / "ex"), "--source", write_source(small_rows()),
                     "--config", "a=balanced_custom")
    assert result.returncode == 0, result.stderr
    assert f"exported 1 config to {tmp_path / 'ex'}" in result.stderr.splitlines()
    assert "a: train 28 rows in 1 shard -> data/a/" in result.stderr.splitlines()
    assert "configs" not in result.stderr and "shard(s)" not in result.stderr


def test_a_ratio_is_echoed_as_written(source_path):
    result = run_cli("build", "balanced_custom", "--ratio", "2", "--desirable", "3", "--source", source_path)
    assert result.returncode == 2
    line = last_line(result)
    assert re.search(r"--ratio 2(?![.\d])", line) and "2.0" not in line, line


def test_the_dedupe_note_is_said_again_when_the_cache_serves_the_build(source_path, fresh_cache):
    lines = [line.strip() for line in Path(source_path).read_bytes().splitlines() if line.strip()]
    duplicates = len(lines) - len(set(lines))
    assert duplicates > 1
    note = f"dedupe dropped {duplicates} exact duplicate lines of the {len(lines)} rows of the train split"
    first = run_cli("build", "full", "--dedupe", "--source", source_path)
    assert first.returncode == 0 and note in first.stderr.splitlines(), first.stderr
    arrows = {path: path.stat().st_mtime_ns for path in Path(fresh_cache).rglob("*.arrow")}
    assert arrows
    second = run_cli("build", "full", "--dedupe", "--source", source_path)
    assert second.returncode == 0 and second.stdout == first.stdout
    assert {path: path.stat().st_mtime_ns for path in Path(fresh_cache).rglob("*.arrow")} == arrows, "cached"
    assert note in second.stderr.splitlines(), second.stderr
