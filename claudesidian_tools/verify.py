"""`verify`: check an export, in a folder or at a Hub revision, against what made it: every file its
manifest lists (the sha256 the export recorded; on the Hub the card and recipes as push rendered them
for the repository), and every config its card lists, rebuilt from the source and the options the export
recorded, row for row. Every difference is reported, not only the first."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator

import datasets
import huggingface_hub
import pyarrow
import pyarrow.parquet

import claudesidian_synthetic as cs
from claudesidian_tools.card import render_texts
from claudesidian_tools.manifest import CARD, MANIFEST, SCHEMAS_COPY, read_manifest
from claudesidian_tools.replace import recover
from claudesidian_tools.stats import schemas_option


class VerifyError(cs.ClaudesidianError):
    """What cannot be checked: no card, no manifest, an unknown source version, an unreachable repository."""


class Mismatch(cs.ClaudesidianError):
    """Files of the export differ from what the export wrote, or hold other rows than the code builds."""

    exit_code = 1


def verify(folder_or_repo: str, *, revision: str | None = None, source: str | None = None) -> Iterator[str]:
    """One line per config ("N rows identical", or the first row of each split that differs, with its
    column) and one per file that differs, as each is checked; then Mismatch when anything differed.
    VerifyError for what cannot be checked."""
    is_repo = not os.path.isdir(folder_or_repo)
    if not is_repo:
        recovered = _recovered(folder_or_repo)
        if recovered:
            yield recovered
    folder = _local(folder_or_repo, revision)
    manifest = read_manifest(folder)
    card_path = os.path.join(folder, CARD)
    if manifest is None or not os.path.isfile(card_path):
        missing = MANIFEST if manifest is None else CARD
        raise VerifyError(f"{folder_or_repo} is not an export of claudesidian-synthetic (no {missing}): nothing to "
                          "verify; give a folder written by `claudesidian-synthetic export` or a repository it was "
                          "pushed to")
    source = _source_for(manifest, source)
    listed_configs = huggingface_hub.DatasetCard.load(card_path).data.to_dict().get("configs", [])
    if not listed_configs:
        raise VerifyError(f"{folder_or_repo}: the card lists no configs; nothing to verify")
    differences = 0
    changed = _changed_files(folder, manifest, folder_or_repo if is_repo else None)
    yield from changed
    differences += len(changed)
    if not changed:
        yield f"files: {len(manifest['files']) - 1} identical to what the export wrote"
    if not is_repo and (renamed := _renamed(folder, manifest)):
        yield renamed
    recorded = {entry["name"]: entry for entry in manifest["configs"]}
    for listed in listed_configs:
        name = listed["config_name"]
        if name not in recorded:
            raise VerifyError(f"{folder_or_repo}: the card lists the config {name}, which the manifest does not "
                              "record; export again")
        files = {item["split"]: item["path"] if isinstance(item["path"], list) else [item["path"]]
                 for item in listed["data_files"]}
        rows, differ = _compare(folder, recorded[name], files, source, manifest)
        splits = ", ".join(f"{split} {count}" for split, count in rows.items())
        if differ:
            differences += len(differ)
            yield from differ
        else:
            yield f"{name}: {sum(rows.values())} rows identical ({splits})"
    if differences:
        made_by = manifest.get("package_version")
        other = (f"; the export was made by claudesidian-synthetic {made_by} and this is {cs.__version__}, which "
                 "may build a config's rows otherwise") if made_by != cs.__version__ else ""
        raise Mismatch(cs.escaped(f"{folder_or_repo}: {cs.plural(differences, 'difference')} (each named above"
                                  f"{other}); ")
                       + "export again with {replace} to rebuild it from the source (it replaces the files changed "
                       "since)", replace=cs.Mention("replace_existing", True))


def _renamed(folder: str, manifest: dict) -> str | None:
    """A folder renamed since its export still verifies (its bytes are the export's), but its recipes name the
    old folder and fail from beside it: say so, in one line, with what to do."""
    recipe = next((path for path in manifest["files"] if path.startswith("recipes/")), None)
    if recipe is None or not os.path.isfile(os.path.join(folder, recipe)):
        return None
    with open(os.path.join(folder, recipe), encoding="utf-8") as file:
        named = next((line.split(":", 1)[1].strip() for line in file if line.startswith("dataset_name:")), "")
    here = os.path.basename(os.path.abspath(folder))
    if not named.startswith("./") or named[2:] == here:
        return None
    return (f"recipes: they name the dataset {named}, and this folder is {here}: run them from beside a folder named "
            f"{named[2:]}, or change dataset_name in them to ./{here} (export again into this folder to rewrite them)")


def _recovered(folder: str) -> str | None:
    """An export into `folder` that a crash interrupted is finished or undone first, as export would."""
    try:
        return recover(folder)
    except (OSError, ValueError) as error:
        raise VerifyError(f"{folder}: an interrupted export could not be finished or undone ({error})") from None


def _local(folder_or_repo: str, revision: str | None) -> str:
    """The export's folder: the one given, or a download of the repository at `revision` (its manifest
    first, then the files it lists)."""
    if os.path.isdir(folder_or_repo):
        if revision is not None:
            raise VerifyError(f"--revision {revision} applies to a Hub repository, and {folder_or_repo} is a "
                              "folder; leave it out")
        return folder_or_repo
    if os.path.exists(folder_or_repo) or folder_or_repo.count("/") != 1 or folder_or_repo.startswith((".", "~", "/")):
        raise VerifyError(f"{folder_or_repo} is neither a folder nor a Hub repository id (owner/name)")
    try:
        folder = huggingface_hub.snapshot_download(folder_or_repo, repo_type="dataset", revision=revision,
                                                   allow_patterns=[CARD, MANIFEST])
        manifest = read_manifest(folder)
        if manifest is not None:
            folder = huggingface_hub.snapshot_download(folder_or_repo, repo_type="dataset", revision=revision,
                                                       allow_patterns=list(manifest["files"]))
        return folder
    except Exception as error:  # noqa: BLE001 - repository or revision missing, no network, no access
        message = " ".join(str(error).split())[:300]
        raise VerifyError(f"cannot download {folder_or_repo}" + (f" at {revision}" if revision else "")
                          + f" ({type(error).__name__}: {message}); check the repository id, the revision and "
                          "the network (a private repository needs HF_TOKEN)") from None


def _changed_files(folder: str, manifest: dict, repo_id: str | None) -> list[str]:
    """A line for each file the manifest lists that is missing or not what the export wrote (in a Hub
    repository, the card and recipes are compared with what push renders for it)."""
    rendered = render_texts(manifest, location=repo_id, is_repo=True) if repo_id is not None else {}
    lines = []
    for path, sha256 in manifest["files"].items():
        full = os.path.join(folder, path)
        if path == MANIFEST:
            continue
        if not os.path.isfile(full):
            lines.append(f"{path}: missing (the export wrote it)")
        elif path in rendered:
            with open(full, encoding="utf-8", newline="") as file:
                if file.read() != rendered[path]:
                    lines.append(f"{path}: differs from what push renders for {repo_id} from the manifest")
        elif cs.file_sha256(full) != sha256:
            lines.append(f"{path}: differs from what the export wrote (sha256 {cs.file_sha256(full)[:12]}..., "
                         f"written {sha256[:12]}...)")
    return lines


def _source_for(manifest: dict, source: str | None) -> str | None:
    """The source to rebuild from: the given file or folder, whose files must be the recorded bytes, or the
    pinned files (claude's from the Hub, the family's from their pinned addresses)."""
    recorded = manifest["source"]
    expected = {member: figures["sha256"] for member, figures in recorded.get("members", {}).items()}
    if recorded["sha256"] is not None or not expected:
        expected.setdefault("claude", recorded["sha256"])
    if source is not None:
        folder = os.path.isdir(source)
        if not folder and not os.path.isfile(source):
            raise VerifyError(f"--source {source}: no such file or folder")
        for member, sha256 in expected.items():
            path = os.path.join(source, cs.MEMBERS[member].file) if folder else source
            if folder and not os.path.isfile(path):
                raise VerifyError(f"--source {source}: the folder holds no {cs.MEMBERS[member].file}, which the "
                                  "export was made from; put it there")
            if not folder and len(expected) > 1:
                raise VerifyError(f"--source {source} is one file, and the export was made from the family's "
                                  f"{len(expected)}: pass the folder that holds them")
            actual = cs.file_sha256(path)
            if sha256 is not None and actual != sha256:
                raise VerifyError(f"--source {path} has sha256 {actual}, but the export was made from {sha256}; "
                                  "pass the source it was made from")
        return source
    for member, sha256 in expected.items():
        if sha256 != cs.MEMBERS[member].sha256:
            known = "v1.0.0 file" if member == "claude" else f"pinned {cs.MEMBERS[member].file}"
            raise VerifyError(f"the export was made from a source with sha256 {sha256}, not the {known} this "
                              "version knows; pass --source a copy of that source"
                              + (" (a folder, with the family's other files)" if len(expected) > 1 else ""))
    return None


def _compare(folder: str, entry: dict, files: dict, source: str | None, manifest: dict) -> tuple:
    """({split: rows compared}, [a line for each split's first differing row, naming its column])."""
    options = dict(entry["options"])
    if source is not None:
        options["source"] = source
    elif manifest["source"].get("revision") not in (None, "main"):
        options["revision"] = manifest["source"]["revision"]
    options.update(schemas_option(entry["config"], entry["options"], _schemas_for(folder, manifest, entry["name"])))
    try:
        built = cs.builder(entry["config"], **options)
        plan = built.plan_splits()
    except cs.SourceError as error:
        made_from = ("the folder of the files" if manifest["source"].get("members") else
                     "a local copy of the file")
        raise VerifyError("the source of " + entry["name"] + " cannot be read to rebuild it ({cause}); pass {source} "
                          f"{made_from} the export was made from", cause=error, source=cs.Mention("source")) from None
    if set(plan) != set(files):
        return {}, [f"{entry['name']}: the files hold the splits {', '.join(files)}, the code builds "
                    f"{', '.join(plan)}"]
    features = datasets.Features.from_dict(json.loads(json.dumps(entry["info"]["features"])))
    counts, differ = {}, []
    for split, split_plan in plan.items():
        counts[split] = 0
        where = f"{entry['name']}, split {split}"
        stored = _stored_rows(folder, files[split], features)
        for row, (expected, found) in enumerate(itertools.zip_longest(built.iter_examples(split_plan), stored)):
            if isinstance(found, str):  # a shard that cannot be read: said, and the split ends here
                differ.append(f"{where}: {found}")
                break
            path, row_in_file, actual = found or (None, None, None)
            if expected != actual:
                what = "missing" if actual is None else "extra" if expected is None else "different in column " + next(
                    column for column in expected if expected[column] != actual.get(column))
                held = f"row {row_in_file} of {path}" if path else f"past the end of {files[split][-1]}"
                differ.append(f"{where}, row {row} (counting from 0; {held}): {what} (the first difference of the "
                              f"split; it holds {cs.plural(_rows_in(folder, files[split]), 'row')}, the export wrote "
                              f"{entry['stats'][split]['rows']:,})")
                break
            counts[split] += 1
    return counts, differ


def _schemas_for(folder: str, manifest: dict, name: str) -> str | None:
    """The tool schemas the export was checked against: None for the pinned copy, else the copy the export
    keeps (`SCHEMAS_COPY`), which must be the bytes it recorded."""
    schemas = manifest.get("tool_schemas") or {}
    if schemas.get("pinned", True):
        return None
    path = os.path.join(folder, schemas.get("copy") or SCHEMAS_COPY)
    if not os.path.isfile(path) or cs.file_sha256(path) != schemas["sha256"]:
        raise VerifyError(f"{name} was built with tool schemas of sha256 {schemas['sha256']}, and the export's copy "
                          f"{schemas.get('copy') or SCHEMAS_COPY} is missing or not those bytes: export again with "
                          "--tool-schemas and that file")
    return path


def _rows_in(folder: str, paths: list) -> int:
    """The rows a split's Parquet files hold, from their footers."""
    return sum(pyarrow.parquet.ParquetFile(os.path.join(folder, path)).metadata.num_rows for path in paths)


def _stored_rows(folder: str, paths: list, features: datasets.Features) -> Iterator:
    """(file, row in that file, row) for the rows of a split's Parquet files, in order, a `Json` value
    read back exactly; a file that is missing or not Parquet yields the line that says so."""
    for path in paths:
        try:
            row_in_file = 0
            for batch in pyarrow.parquet.ParquetFile(os.path.join(folder, path)).iter_batches(batch_size=1000):
                for row in batch.to_pylist():
                    yield path, row_in_file, cs.json_values(row, features)
                    row_in_file += 1
        except FileNotFoundError:
            yield f"{path} is missing"
            return
        except (pyarrow.ArrowException, OSError, ValueError) as error:
            yield f"{path} is not readable Parquet ({' '.join(str(error).split())[:200]})"
            return
