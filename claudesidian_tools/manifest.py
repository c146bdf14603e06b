"""What an export folder holds and records: the names of its fixed files and its manifest, which lists
every file the export wrote (with its sha256) and everything its card says. Export writes it; the card,
push and verify read it."""

from __future__ import annotations

import json
import os

import claudesidian_synthetic as cs

MANIFEST = "claudesidian_export.json"
MANIFEST_FORMAT = 1
CARD = "README.md"
# The loading script lives below the root: `datasets` 4 and 5 refuse a folder or repository whose
# root holds `<its name>.py`, and 3.6 would run it instead of reading the Parquet files.
SCRIPT_PATH = "loading_script/claudesidian_synthetic.py"
# Tool schemas other than the pinned copy, which the export was checked against: kept in it, so that verify
# rebuilds it anywhere the export goes (the pinned copy ships with the package and the loading script).
SCHEMAS_COPY = "tool_schemas.json"


class ExportError(cs.ClaudesidianError):
    """The folder cannot take this export (files in the way, not writable); nothing was changed."""


def read_manifest(folder: str) -> dict | None:
    """The manifest of an export in `folder`, or None when there is none."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            manifest = json.load(file)
    except (OSError, ValueError) as error:
        raise ExportError(f"{path}: not a readable export manifest ({error}); export into a new folder") from None
    if (not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT
            or not isinstance(manifest.get("files"), dict)):
        raise ExportError(f"{path}: not an export manifest this version reads; export into a new folder")
    return manifest


def config_names(manifest: dict | None) -> list[str]:
    """The names of the configs an export holds (none without a manifest)."""
    return [entry["name"] for entry in (manifest or {}).get("configs", [])]
