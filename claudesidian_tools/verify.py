"""`verify`: rebuild every config an export's card lists, from the source and the options the export
recorded, and compare it row for row with the Parquet files, in a folder or at a Hub revision."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import huggingface_hub
import pyarrow
import pyarrow.parquet

import claudesidian_synthetic as cs
from claudesidian_tools.manifest import CARD, MANIFEST, read_manifest


class VerifyError(cs.ClaudesidianError):
    """What cannot be checked: no card, no manifest, an unknown source version, an unreachable repository."""


class Mismatch(cs.ClaudesidianError):
    """A file of the export holds other rows than the code builds from the source."""

    exit_code = 1


def verify(folder_or_repo: str, *, revision: str | None = None, source: str | None = None) -> Iterator[str]:
    """One line per config ("N rows identical"), as each is checked; raise Mismatch at the first row that
    differs, VerifyError for what cannot be checked."""
    folder = _local(folder_or_repo, revision)
    manifest = read_manifest(folder)
    card_path = os.path.join(folder, CARD)
    if manifest is None or not os.path.isfile(card_path):
        missing = MANIFEST if manifest is None else "README.md"
        raise VerifyError(f"{folder_or_repo} is not an export of claudesidian-synthetic (no {missing}): nothing to "
                          "verify; give a folder written by `claudesidian-synthetic export` or a repository it was "
                          "pushed to")
    source = _source_for(manifest, source)
    card = huggingface_hub.DatasetCard.load(card_path)
    recorded = {entry["name"]: entry for entry in manifest["configs"]}
    listed_configs = card.data.to_dict().get("configs", [])
    if not listed_configs:
        raise VerifyError(f"{folder_or_repo}: the card lists no configs; nothing to verify")
    for listed in listed_configs:
        name = listed["config_name"]
        if name not in recorded:
            raise VerifyError(f"{folder_or_repo}: the card lists the config {name}, which the manifest does not "
                              "record; export again")
        files = {item["split"]: item["path"] if isinstance(item["path"], list) else [item["path"]]
                 for item in listed["data_files"]}
        rows = _compare(folder, recorded[name], files, source, manifest)
        splits = ", ".join(f"{split} {count}" for split, count in rows.items())
        yield f"{name}: {sum(rows.values())} rows identical ({splits})"


def _local(folder_or_repo: str, revision: str | None) -> str:
    """The export's folder: the one given, or a download of the repository at `revision`."""
    if os.path.isdir(folder_or_repo):
        if revision is not None:
            raise VerifyError(f"--revision {revision} applies to a Hub repository, and {folder_or_repo} is a "
                              "folder; leave it out")
        return folder_or_repo
    if os.path.exists(folder_or_repo) or folder_or_repo.count("/") != 1:
        raise VerifyError(f"{folder_or_repo} is neither a folder nor a Hub repository id (owner/name)")
    try:
        return huggingface_hub.snapshot_download(
            folder_or_repo, repo_type="dataset", revision=revision, allow_patterns=["README.md", MANIFEST, "data/*/*"]
        )
    except Exception as error:  # noqa: BLE001 - repository or revision missing, no network, no access
        message = " ".join(str(error).split())[:300]
        raise VerifyError(f"cannot download {folder_or_repo}" + (f" at {revision}" if revision else "")
                          + f" ({type(error).__name__}: {message}); check the repository id, the revision and "
                          "the network (a private repository needs HF_TOKEN)") from None


def _source_for(manifest: dict, source: str | None) -> str | None:
    """The source to rebuild from: the given file, which must be the recorded bytes, or the pinned Hub file."""
    recorded = manifest["source"]["sha256"]
    if source is not None:
        actual = cs.file_sha256(source) if os.path.isfile(source) else None
        if actual is None:
            raise VerifyError(f"--source {source}: no such file")
        if recorded is not None and actual != recorded:
            raise VerifyError(f"--source {source} has sha256 {actual}, but the export was made from {recorded}; "
                              "pass the source it was made from")
        return source
    if recorded != cs.SOURCE_SHA256:
        raise VerifyError(f"the export was made from a source with sha256 {recorded}, not the v1.0.0 file this "
                          "version knows; pass --source a copy of that source")
    return None


def _compare(folder: str, entry: dict, files: dict, source: str | None, manifest: dict) -> dict[str, int]:
    options = dict(entry["options"])
    if source is not None:
        options["source"] = source
    elif manifest["source"].get("revision") not in (None, "main"):
        options["revision"] = manifest["source"]["revision"]
    try:
        built = cs.builder(entry["config"], **options)
        plan = built.plan_splits()
    except cs.SourceError as error:
        raise VerifyError("the source of " + entry["name"] + " cannot be read to rebuild it ({cause}); pass {source} a "
                          "local copy of the file the export was made from", cause=error,
                          source=cs.Mention("source")) from None
    if set(plan) != set(files):
        raise Mismatch(f"{entry['name']}: the files hold the splits {', '.join(files)}, the code builds "
                       f"{', '.join(plan)}")
    counts = {}
    for split, split_plan in plan.items():
        counts[split] = 0
        expected_rows = built.iter_examples(split_plan)
        stored = _stored_rows(folder, files[split], f"{entry['name']}, split {split}")
        for row, (expected, actual) in enumerate(itertools.zip_longest(expected_rows, stored)):
            if expected != actual:
                what = "missing" if actual is None else "extra" if expected is None else "different"
                raise Mismatch(f"{entry['name']}, split {split}, row {row}: {what} (first difference; the "
                               f"files are {', '.join(files[split])})")
            counts[split] += 1
    return counts


def _stored_rows(folder: str, paths: list, where: str) -> Iterator[dict]:
    """The rows of a split's Parquet files, in order; a file that is missing or not Parquet differs."""
    for path in paths:
        try:
            for batch in pyarrow.parquet.ParquetFile(os.path.join(folder, path)).iter_batches(batch_size=1000):
                yield from batch.to_pylist()
        except FileNotFoundError:
            raise Mismatch(f"{where}: {path} is missing") from None
        except (pyarrow.ArrowException, OSError) as error:
            raise Mismatch(f"{where}: {path} is not readable Parquet ({' '.join(str(error).split())[:200]})") \
                from None
