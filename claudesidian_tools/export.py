"""Materialize configs into a Hub-ready dataset folder (Parquet, dataset card, infos, script) and push it.

Everything in the folder is produced by the builder through `claudesidian_synthetic.load`, so the
card, the data files and the script cannot disagree.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

import datasets
import huggingface_hub
import pyarrow.parquet
import yaml
from datasets.info import DatasetInfosDict

import claudesidian_synthetic as cs
from claudesidian_tools.kto import dataset_stats

DEFAULT_EXPORTS = ("balanced_254", "full")
INFOS_FILENAME = "dataset_infos.json"
_REPO_ID_PLACEHOLDER = "professorsynapse/claudesidian-synthetic-dataset"


class PushError(cs.ClaudesidianError):
    """The upload to the Hub failed (network, permissions); nothing is half-committed on the Hub."""


@dataclasses.dataclass
class ConfigSpec:
    """One exported config: its name in the folder, the builder config it comes from, and options."""

    export_name: str
    config_name: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_config_spec(spec: str) -> ConfigSpec:
    """`[EXPORT_NAME=]CONFIG[:option=value,...]`, e.g. `mixed4=full:order=mixed,batch_size=4`."""
    head, _, option_text = spec.partition(":")
    export_name, _, config_name = head.rpartition("=")
    config_name = config_name.strip()
    options = {}
    for item in filter(None, (part.strip() for part in option_text.split(","))):
        key, equals, value = item.partition("=")
        if not equals:
            raise cs.OptionError(f"--config {spec!r}: option {item!r} needs the form option=value")
        options[key.strip()] = _parse_value(value.strip())
    if not export_name and options:
        export_name = config_name + "_" + "_".join(f"{k}{v}" for k, v in sorted(options.items()))
    return ConfigSpec(export_name or config_name, config_name, options)


def build_infos(source: str | None = None, revision: str | None = None) -> DatasetInfosDict:
    """DatasetInfo of every builder config with its defaults, as `dataset_infos.json` records them."""
    infos = DatasetInfosDict()
    for name in cs.ClaudesidianSynthetic.builder_configs:
        dataset = cs.load(name, split="train", source=source, revision=revision)
        infos[name] = _info_of(dataset, name)
    return infos


def _info_of(dataset: datasets.Dataset, export_name: str) -> datasets.DatasetInfo:
    """Features, split size and the pinned download checksum, without fields that vary per machine."""
    split = datasets.SplitInfo(name="train", num_bytes=dataset.data.nbytes, num_examples=len(dataset))
    return datasets.DatasetInfo(
        description=dataset.info.description,
        citation=dataset.info.citation,
        homepage=dataset.info.homepage,
        license=dataset.info.license,
        features=cs.FEATURES,
        builder_name="claudesidian_synthetic",
        dataset_name="claudesidian_synthetic",
        config_name=export_name,
        version=cs.ClaudesidianSynthetic.VERSION,
        splits=datasets.SplitDict({"train": split}),
        download_checksums={
            cs.SOURCE_URL.format(revision="main"): {"num_bytes": cs.SOURCE_NUM_BYTES, "checksum": cs.SOURCE_SHA256}
        },
        download_size=cs.SOURCE_NUM_BYTES,
        dataset_size=dataset.data.nbytes,
    )


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


def write_infos(infos: DatasetInfosDict, folder: str) -> str:
    """Write `dataset_infos.json` deterministically (sorted keys) into `folder`."""
    path = os.path.join(folder, INFOS_FILENAME)
    payload = {name: _portable(dataclasses.asdict(info)) for name, info in infos.items()}
    with open(path, "w", encoding="utf-8") as file:
        json.dump(payload, file, indent=2, sort_keys=True)
        file.write("\n")
    return path


@dataclasses.dataclass
class ExportedConfig:
    spec: ConfigSpec
    data_path: str  # relative to the folder
    info: datasets.DatasetInfo
    stats: dict


def export(
    folder: str,
    specs: Sequence[ConfigSpec] = (),
    *,
    source: str | None = None,
    revision: str | None = None,
) -> list[ExportedConfig]:
    """Write every config of `specs` (plus `full` and `balanced_254`) into `folder`, ready to upload."""
    wanted = [parse_config_spec(name) for name in DEFAULT_EXPORTS] + list(specs)
    unique = {spec.export_name: spec for spec in wanted}
    os.makedirs(folder, exist_ok=True)
    exported = []
    for spec in unique.values():
        dataset = cs.load(spec.config_name, split="train", source=source, revision=revision, **spec.options)
        data_path = f"data/{spec.export_name}/train-00000-of-00001.parquet"
        os.makedirs(os.path.dirname(os.path.join(folder, data_path)), exist_ok=True)
        # The Arrow schema is the builder's explicit one, so no reader infers types from rows. The
        # `datasets` feature metadata is left out: `datasets<4` cannot read 5.x's `List` type, and the
        # card's `dataset_info:` carries the features for every version.
        table = dataset.flatten_indices().data.table.replace_schema_metadata(None)
        pyarrow.parquet.write_table(table, os.path.join(folder, data_path))
        exported.append(ExportedConfig(spec, data_path, _info_of(dataset, spec.export_name), dataset_stats(dataset)))
    infos = DatasetInfosDict({item.spec.export_name: item.info for item in exported})
    write_infos(infos, folder)
    shutil.copyfile(cs.__file__, os.path.join(folder, "claudesidian_synthetic.py"))
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as file:
        file.write(render_card(exported, infos, source=source, revision=revision))
    return exported


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return label
    return "n>1M"


_SELECTIONS = {
    "full": "every source row",
    "balanced_254": (
        "the published file, exactly: every undesirable row plus `random.Random(42).sample` of as many "
        "desirable rows, concatenated desirable then undesirable"
    ),
    "balanced_custom": (
        "the published recipe on your options: one `random.Random(seed)` samples the desirable rows, then the "
        "undesirable rows (a class kept whole is not drawn), concatenated desirable then undesirable"
    ),
}


def _recipe(spec: ConfigSpec) -> str:
    """One sentence on how a config's rows are chosen and ordered, from its options."""
    config = cs.ClaudesidianSyntheticConfig(name=spec.config_name, **{**cs.OPTION_DEFAULTS, **spec.options})
    chosen = ", ".join(f"{key}={value!r}" for key, value in spec.options.items())
    order = {
        "source": "in source order",
        "shuffle": f"shuffled with the same generator (seed {config.seed})",
        "mixed": f"in mixed order: every {config.batch_size} consecutive rows hold both labels (seed {config.seed})",
    }[config.resolved_order]
    dedupe = "; exact duplicate lines dropped first" if config.dedupe else ""
    origin = ""
    if spec.export_name != spec.config_name:
        origin = f"`{spec.config_name}`" + (f" ({chosen})" if chosen else "") + ": "
    return f"{origin}{_SELECTIONS[spec.config_name]}, {order}{dedupe}"


def card_metadata(exported: Sequence[ExportedConfig], infos: DatasetInfosDict) -> dict:
    """The card's YAML header: licence, tags, one `configs:` entry per config, and `dataset_info:`."""
    card_data = huggingface_hub.DatasetCardData(
        license="mit",
        pretty_name="Claudesidian synthetic tool-calling (KTO-ready)",
        task_categories=["text-generation"],
        tags=["kto", "preference", "tool-calling", "synthetic", "trl", "obsidian"],
        size_categories=[_size_category(max(item.stats["rows"] for item in exported))],
        language=["en"],
    )
    configs = []
    for item in exported:
        entry = {
            "config_name": item.spec.export_name,
            "data_files": [{"split": "train", "path": item.data_path}],
        }
        if item.spec.export_name == cs.ClaudesidianSynthetic.DEFAULT_CONFIG_NAME:
            entry["default"] = True
        configs.append(entry)
    card_data["configs"] = configs
    infos.to_dataset_card_data(card_data)
    return card_data.to_dict()


def render_card(
    exported: Sequence[ExportedConfig],
    infos: DatasetInfosDict,
    *,
    source: str | None = None,
    revision: str | None = None,
    repo_id: str = _REPO_ID_PLACEHOLDER,
) -> str:
    """The dataset card: YAML metadata, then what the data is, how each subset is made, and how to load it."""
    header = yaml.safe_dump(card_metadata(exported, infos), sort_keys=False, allow_unicode=True)
    source_text = source and os.path.basename(source) or cs.SOURCE_URL.format(revision=revision or "main")
    rows = "\n".join(
        f"| `{item.spec.export_name}` | {item.stats['rows']} | {item.stats['desirable']} | "
        f"{item.stats['undesirable']} | {item.stats['ratio']:.2f} | "
        f"{item.stats['kto_weights']['desirable_weight']} | {item.stats['kto_weights']['undesirable_weight']} |"
        for item in exported
    )
    recipes = "\n".join(f"- `{item.spec.export_name}`: {_recipe(item.spec)}." for item in exported)
    default = cs.ClaudesidianSynthetic.DEFAULT_CONFIG_NAME
    return f"""---
{header}---

# Claudesidian synthetic tool-calling dataset, KTO-ready

{cs.DESCRIPTION.strip()}

Columns, ready for TRL's `KTOTrainer` (unpaired preference, conversational format):

| column | type | meaning |
| --- | --- | --- |
| `prompt` | list of `{{role, content}}` | every message but the last |
| `completion` | list with one `{{role, content}}` | the assistant's reply |
| `label` | bool | `true` = desirable, `false` = undesirable |
| `context` | struct of {len(cs.CONTEXT_FIELDS)} strings, or null | session metadata ({", ".join(cs.CONTEXT_FIELDS)}) |

`prompt + completion` is the source row's `conversations`, unchanged.

## Configs

| config | rows | desirable | undesirable | ratio | `desirable_weight` | `undesirable_weight` |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

The weights keep `desirable_weight * n_desirable / (undesirable_weight * n_undesirable)` inside
[1, 4/3] (KTO paper, Eq. 8), the range TRL's KTOTrainer checks.

## How each subset is made

Source: `{source_text}`, {cs.SOURCE_NUM_BYTES:,} bytes, sha256 `{cs.SOURCE_SHA256}` (v1.0.0).
Every subset is rebuilt from it by the loading script `claudesidian_synthetic.py` in this repository.

{recipes}

## Load it

`datasets` 4.0 and later (5.x included), no remote code; pin the commit you trained on:

```python
from datasets import load_dataset
ds = load_dataset("{repo_id}", name="{default}", split="train", revision="<commit sha>")
```

`datasets` below 4.0, with the loading script (it rebuilds any config, custom options included):

```python
from datasets import load_dataset
from huggingface_hub import hf_hub_download
script = hf_hub_download("{repo_id}", "claudesidian_synthetic.py", repo_type="dataset")
ds = load_dataset(script, name="balanced_custom", desirable=300, undesirable=200, seed=7, trust_remote_code=True)
```

Offline: download this folder once (`huggingface-cli download {repo_id} --repo-type dataset --local-dir DIR`),
then `load_dataset(DIR, name="{default}")`; or, with the `claudesidian-synthetic` package,
`claudesidian_synthetic.load("{default}", source="path/to/{cs.SOURCE_FILENAME}")`.

## Licence

MIT, copyright 2025 ProfSynapse.
"""


def push(
    folder: str,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str = "Upload Claudesidian synthetic dataset",
    api: huggingface_hub.HfApi | None = None,
) -> str:
    """Upload `folder` to the dataset repository `repo_id` in one commit; return the commit sha."""
    if not os.path.isfile(os.path.join(folder, "README.md")):
        raise cs.OptionError(f"{folder}: no README.md; run `claudesidian-synthetic export {folder}` first")
    api = api or huggingface_hub.HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=folder, repo_id=repo_id, repo_type="dataset", commit_message=commit_message
        )
    except Exception as error:  # any HTTP client's connection, auth or server error: one clear line
        message = " ".join(str(error).split())
        token = huggingface_hub.get_token()
        if token:
            message = message.replace(token, "***")
        raise PushError(
            f"could not push {folder} to the dataset repository {repo_id} ({type(error).__name__}: {message}). "
            "Check the network, and that your token (HF_TOKEN or `hf auth login`) may write to that repository"
        ) from None
    return commit.oid


def pinned_load_lines(folder: str, repo_id: str, sha: str) -> list[str]:
    """One `load_dataset(...)` line per config of the exported card, pinned to `sha`."""
    card = huggingface_hub.DatasetCard.load(os.path.join(folder, "README.md"))
    names = [entry["config_name"] for entry in card.data.to_dict().get("configs", [])]
    return [f'load_dataset("{repo_id}", name="{name}", revision="{sha}")' for name in names]
