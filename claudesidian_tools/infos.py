"""`dataset_infos.json`: features, split sizes and checksums per config, which `datasets<4` checks a
loading script's output against. Written next to the loading script (the repository root, and an
export's folder) from the builder itself, in a form every `datasets` from 3.x reads."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import datasets
from datasets.info import DatasetInfosDict

import claudesidian_synthetic as cs

INFOS_FILENAME = "dataset_infos.json"


def portable_layout(layout: str) -> bool:
    """Whether the layout's infos belong in a card or a `dataset_infos.json` that every `datasets` reads: the
    oldest loads its Parquet. A tools layout's features hold `Json`, which an older `datasets` cannot even
    parse, and one such entry would stop it from loading any config; the `datasets` that reads `Json` reads
    those features from the Parquet files' own types."""
    return cs.LAYOUTS[layout].oldest_datasets == cs.OLDEST_DATASETS


def dataset_info(features: datasets.Features, name: str, splits: dict, download_size: int) -> datasets.DatasetInfo:
    """Features and split sizes (`{split: (rows, bytes)}`), without fields that vary per machine."""
    return datasets.DatasetInfo(
        description=cs.DESCRIPTION,
        citation=cs.CITATION,
        homepage=cs.HOMEPAGE,
        license=cs.LICENSE,
        features=features,
        builder_name="claudesidian_synthetic",
        dataset_name="claudesidian_synthetic",
        config_name=name,
        version=cs.ClaudesidianSynthetic.VERSION,
        splits=datasets.SplitDict({split: datasets.SplitInfo(name=split, num_bytes=nbytes, num_examples=rows)
                                   for split, (rows, nbytes) in splits.items()}),
        download_size=download_size,
        dataset_size=sum(nbytes for _, nbytes in splits.values()),
    )


def build_infos(source: str | None = None, revision: str | None = None) -> DatasetInfosDict:
    """DatasetInfo of every builder config with its defaults, as the loading script's
    `dataset_infos.json` records them: what the script downloads is the source (`source`: claude's file, or
    a folder of the family's files for the family configs too)."""
    infos = DatasetInfosDict()
    for name in (name for name, named in cs.CONFIGS.items() if portable_layout(named.option_defaults()["layout"])):
        dataset_dict = cs.load(name, source=source, revision=revision)
        first = next(iter(dataset_dict.values()))
        splits = {split: (len(dataset), dataset.data.nbytes) for split, dataset in dataset_dict.items()}
        members = [cs.MEMBERS[member] for member in cs.CONFIGS[name].members]
        info = dataset_info(first.features, name, splits, download_size=sum(member.size for member in members))
        info.download_checksums = {cs.member_url(member.name): {"num_bytes": member.size, "checksum": member.sha256}
                                   for member in members}
        infos[name] = info
    return infos


def _portable(value: Any) -> Any:
    """Spell 5.x's `{"_type": "List", "feature": X}` as `[X]` and leave out unset (None) fields such as
    5.x's `original_shard_lengths`: what remains every `datasets` from 3.x reads."""
    if isinstance(value, dict):
        if value.get("_type") == "List" and value.get("length", -1) == -1:
            return [_portable(value["feature"])]
        return {key: _portable(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_portable(item) for item in value]
    return value


def portable_info(info: datasets.DatasetInfo) -> dict:
    return _portable(dataclasses.asdict(info))


def write_infos(infos: DatasetInfosDict, folder: str) -> str:
    """Write `dataset_infos.json` deterministically (sorted keys) into `folder`."""
    path = os.path.join(folder, INFOS_FILENAME)
    payload = {name: portable_info(info) for name, info in infos.items()}
    with open(path, "w", encoding="utf-8") as file:
        json.dump(payload, file, indent=2, sort_keys=True)
        file.write("\n")
    return path
