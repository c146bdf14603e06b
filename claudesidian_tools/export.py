"""Materialize configs into a Hub-ready dataset folder (Parquet, dataset card, TRL recipes, infos,
script) and push it.

Everything in the folder is produced by the builder through `claudesidian_synthetic.load`, so the
card, the recipes, the data files and the script cannot disagree.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import datasets
import huggingface_hub
import pyarrow.parquet
import yaml
from datasets.info import DatasetInfosDict

import claudesidian_synthetic as cs
from claudesidian_tools.hub import PushError, commit_folder  # noqa: F401 (PushError: raised by push)
from claudesidian_tools.kto import dataset_stats, kto_weights, shared_prompts

# The published file, every row, and every row with a held-out test split in mixed batches of 4.
DEFAULT_EXPORTS = ("balanced_254", "full", "full_eval=full:test_size=0.1,order=mixed,batch_size=4")
INFOS_FILENAME = "dataset_infos.json"
# The model that the card's and README's examples name; tests put a tiny local model in its place.
EXAMPLE_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


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
    """DatasetInfo of every builder config with its defaults, as the loading script's
    `dataset_infos.json` records them: what the script downloads is the source."""
    infos = DatasetInfosDict()
    for name in cs.ClaudesidianSynthetic.builder_configs:
        dataset_dict = cs.load(name, source=source, revision=revision)
        info = _info_of(dataset_dict, name, download_size=cs.SOURCE_NUM_BYTES)
        checksum = {"num_bytes": cs.SOURCE_NUM_BYTES, "checksum": cs.SOURCE_SHA256}
        info.download_checksums = {cs.source_url("main"): checksum}
        infos[name] = info
    return infos


def _info_of(dataset_dict: datasets.DatasetDict, export_name: str, download_size: int) -> datasets.DatasetInfo:
    """Features and split sizes, without fields that vary per machine."""
    splits = datasets.SplitDict(
        {
            name: datasets.SplitInfo(name=name, num_bytes=split.data.nbytes, num_examples=len(split))
            for name, split in dataset_dict.items()
        }
    )
    first = next(iter(dataset_dict.values()))
    return datasets.DatasetInfo(
        description=first.info.description,
        citation=first.info.citation,
        homepage=first.info.homepage,
        license=first.info.license,
        features=first.features,
        builder_name="claudesidian_synthetic",
        dataset_name="claudesidian_synthetic",
        config_name=export_name,
        version=cs.ClaudesidianSynthetic.VERSION,
        splits=splits,
        download_size=download_size,
        dataset_size=sum(split.data.nbytes for split in dataset_dict.values()),
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
    config: cs.ClaudesidianSyntheticConfig  # the builder config, every option resolved
    data_files: dict[str, list[str]]  # split -> its shards' paths, relative to the folder
    info: datasets.DatasetInfo
    stats: dict[str, dict]  # split -> dataset_stats
    shared_prompts: int  # prompts found in more than one split

    @property
    def recipe_path(self) -> str | None:
        """Where its TRL recipe lies (relative to the folder); None for a layout TRL does not read."""
        return f"recipes/kto_{self.spec.export_name}.yaml" if self.config.layout == "kto" else None


def export(
    folder: str,
    specs: Sequence[ConfigSpec] = (),
    *,
    source: str | None = None,
    revision: str | None = None,
    num_shards: int | None = None,
    max_shard_size: int | str | None = None,
) -> list[ExportedConfig]:
    """Write every config of `specs` (the DEFAULT_EXPORTS when there are none) into `folder`, ready to upload.

    Each split is written as `num_shards` Parquet files, or as many as keep each under `max_shard_size`
    (default: `datasets`' own for `push_to_hub`); a mixed config's shards hold whole batches. Every
    config is built (and so checked) before anything is written; the folder is then written beside its
    place and swapped in whole, so a failed export leaves the old folder as it was."""
    max_bytes = _shard_limit(num_shards, max_shard_size)
    wanted = {spec.export_name: spec for spec in (specs or map(parse_config_spec, DEFAULT_EXPORTS))}
    built = []
    for spec in wanted.values():
        options = {"source": source, "revision": revision, **spec.options}
        dataset_dict = cs.load(spec.config_name, **options)
        config = cs.ClaudesidianSyntheticConfig(name=spec.config_name, **{**cs.OPTION_DEFAULTS, **spec.options})
        shards = {
            split: shard_bounds(len(dataset), num_shards or math.ceil(dataset.data.nbytes / max_bytes),
                                config.batch_size, f"{spec.export_name}/{split}")
            for split, dataset in dataset_dict.items()
        }
        built.append((spec, config, dataset_dict, shards))
    target = os.path.abspath(folder)
    _check_replaceable(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.")
    try:
        os.chmod(staging, 0o777 & ~_umask())
        exported = [_write_config(staging, *item) for item in built]
        infos = DatasetInfosDict({item.spec.export_name: item.info for item in exported})
        write_infos(infos, staging)
        shutil.copyfile(cs.__file__, os.path.join(staging, "claudesidian_synthetic.py"))
        card = render_card(exported, infos, location=target, source=source, revision=revision)
        _write_text(staging, "README.md", card)
        for item in exported:
            if item.recipe_path:
                _write_text(staging, item.recipe_path, render_recipe(item, location=target))
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return exported


def _shard_limit(num_shards: int | None, max_shard_size: int | str | None) -> int:
    """Check the sharding options; return the byte limit per shard (used when `num_shards` is None)."""
    if num_shards is not None and max_shard_size is not None:
        raise cs.OptionError(
            f"num_shards={num_shards!r} and max_shard_size={max_shard_size!r}: give one (a count, or a size per shard)"
        )
    if num_shards is not None and (isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1):
        raise cs.OptionError(f"num_shards={num_shards!r}: must be a positive whole number")
    try:
        limit = datasets.utils.py_utils.convert_file_size_to_int(max_shard_size or datasets.config.MAX_SHARD_SIZE)
    except ValueError:
        limit = 0
    if limit < 1:
        raise cs.OptionError(f"max_shard_size={max_shard_size!r}: give a size such as 500MB or 1GB")
    return limit


def shard_bounds(rows: int, num_shards: int, batch_size: int | None = None, where: str = "") -> list[int]:
    """Row boundaries of `num_shards` contiguous shards as equal as possible; with a mixed order's
    `batch_size`, every boundary falls between batches, so no aligned batch spans two shards.

    >>> shard_bounds(10, 3)
    [0, 3, 6, 10]
    >>> shard_bounds(10, 2, batch_size=4)
    [0, 4, 10]
    """
    unit = batch_size or 1
    units = math.ceil(rows / unit)
    num_shards = max(1, num_shards)
    if num_shards > units:
        what = f"batches of {unit}" if batch_size else "rows"
        raise cs.OptionError(
            f"{where}: {num_shards} shards asked for, but it has only {units} {what}; every shard needs one: "
            f"ask for at most {units} shards"
        )
    return [min(rows, units * index // num_shards * unit) for index in range(num_shards + 1)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_replaceable(target: str) -> None:
    """Only an export (or an empty folder) is replaced: never a folder of other files."""
    if os.path.exists(target) and not os.path.isdir(target):
        raise cs.OptionError(f"{target} is a file; export writes a folder: choose a new folder name")
    if os.path.isdir(target) and os.listdir(target):
        if not os.path.isfile(os.path.join(target, INFOS_FILENAME)) or not os.path.isdir(os.path.join(target, "data")):
            raise cs.OptionError(
                f"{target} holds files that export did not write ({', '.join(sorted(os.listdir(target))[:5])}); "
                "export replaces its folder whole, so choose a new or empty folder"
            )


def _swap_in(staging: str, target: str) -> None:
    """Put the staged folder in `target`'s place; an old export there is removed only once it is."""
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    old = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.old.")
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_text(folder: str, relative: str, text: str) -> None:
    path = os.path.join(folder, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)


def _write_config(
    folder: str, spec: ConfigSpec, config, dataset_dict: datasets.DatasetDict, shards: dict[str, list[int]]
) -> ExportedConfig:
    data_files = {}
    os.makedirs(os.path.join(folder, "data", spec.export_name), exist_ok=True)
    for split, dataset in dataset_dict.items():
        # The Arrow schema is the builder's explicit one, so no reader infers types from rows. The
        # `datasets` feature metadata is left out: `datasets<4` cannot read 5.x's `List` type, and the
        # card's `dataset_info:` carries the features for every version.
        table = dataset.flatten_indices().data.table.replace_schema_metadata(None)
        bounds = shards[split]
        data_files[split] = [
            f"data/{spec.export_name}/{split}-{index:05d}-of-{len(bounds) - 1:05d}.parquet"
            for index in range(len(bounds) - 1)
        ]
        for path, start, stop in zip(data_files[split], bounds, bounds[1:]):
            pyarrow.parquet.write_table(table.slice(start, stop - start), os.path.join(folder, path))
    download_size = sum(os.path.getsize(os.path.join(folder, path)) for paths in data_files.values() for path in paths)
    return ExportedConfig(
        spec,
        config,
        data_files,
        _info_of(dataset_dict, spec.export_name, download_size=download_size),
        {split: dataset_stats(dataset) for split, dataset in dataset_dict.items()},
        shared_prompts(dataset_dict),
    )


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


def _recipe(item: ExportedConfig) -> str:
    """How a config's rows are chosen, split and ordered, from its options."""
    spec, config = item.spec, item.config
    chosen = ", ".join(f"{key}={value!r}" for key, value in spec.options.items())
    order = {
        "source": "in source order",
        "shuffle": f"shuffled with the same generator (seed {config.resolved_seed})",
        "mixed": f"in mixed order: every {config.batch_size} consecutive rows hold both labels "
        f"(seed {config.resolved_seed})",
    }[config.resolved_order]
    dedupe = "; exact duplicate lines dropped first" if config.dedupe else ""
    origin = ""
    if spec.export_name != spec.config_name:
        origin = "`" + spec.config_name + "`" + (f" ({chosen})" if chosen else "") + ": "
    selection = _SELECTIONS[spec.config_name]
    if "test" in item.stats:
        selection = selection.replace("every source row", "every row not held out for `test`")
    text = f"{origin}{selection}, {order}{dedupe}"
    if "test" in item.stats:
        text += (
            f". The `test` split ({item.stats['test']['rows']} rows) was held out of the source before that "
            f"selection: prompt-disjoint (rows that share a prompt stay together; {item.shared_prompts} prompts "
            f"shared with `train`), stratified by label (it keeps the source's label mix), "
            f"seed {config.resolved_seed}, in the same order rule"
        )
    if config.layout == "conversations":
        text += ". Columns: the published file's `conversations`, `label`, `context`"
    return text


def card_metadata(exported: Sequence[ExportedConfig], infos: DatasetInfosDict) -> dict:
    """The card's YAML header: licence, tags, one `configs:` entry per config, and `dataset_info:`."""
    card_data = huggingface_hub.DatasetCardData(
        license="mit",
        pretty_name="Claudesidian synthetic tool-calling (KTO-ready)",
        task_categories=["text-generation"],
        tags=["kto", "preference", "tool-calling", "synthetic", "trl", "obsidian"],
        size_categories=[_size_category(max(stats["rows"] for item in exported for stats in item.stats.values()))],
        language=["en"],
    )
    configs = []
    for item in exported:
        entry = {
            "config_name": item.spec.export_name,
            "data_files": [{"split": split, "path": paths} for split, paths in item.data_files.items()],
        }
        if item.spec.export_name == cs.ClaudesidianSynthetic.DEFAULT_CONFIG_NAME:
            entry["default"] = True
        configs.append(entry)
    card_data["configs"] = configs
    infos.to_dataset_card_data(card_data)
    return card_data.to_dict()


def _is_repo_id(location: str) -> bool:
    return not os.path.isabs(location)


def render_card(
    exported: Sequence[ExportedConfig],
    infos: DatasetInfosDict,
    *,
    location: str,
    source: str | None = None,
    revision: str | None = None,
) -> str:
    """The dataset card: YAML metadata, then what each exported config holds, how it is made, and how
    to load it and train on it. `location` is the folder, or the repository id once pushed."""
    header = yaml.safe_dump(card_metadata(exported, infos), sort_keys=False, allow_unicode=True)
    source_text = source and os.path.basename(source) or cs.source_url(revision or "main")
    names = ", ".join(f"`{item.spec.export_name}`" for item in exported)
    rows = "\n".join(
        f"| `{item.spec.export_name}` | `{split}` | {stats['rows']} | {stats['desirable']} | {stats['undesirable']} | "
        f"{stats['first_50']['desirable']} / {stats['first_50']['undesirable']} | "
        f"{stats['homogeneous_batches']['4']} of {stats['rows'] // 4} | "
        f"{stats['kto_weights']['desirable_weight']}, {stats['kto_weights']['undesirable_weight']} |"
        for item in exported
        for split, stats in item.stats.items()
    )
    recipes = "\n".join(f"- `{item.spec.export_name}`: {_recipe(item)}." for item in exported)
    shard_counts = "; ".join(
        f"`{item.spec.export_name}` "
        + ", ".join(f"{split} {len(paths)}" for split, paths in item.data_files.items())
        for item in exported
    )
    default = cs.ClaudesidianSynthetic.DEFAULT_CONFIG_NAME
    evaluated = next((item for item in exported if "test" in item.stats and item.recipe_path), None)
    trained = evaluated or next((item for item in exported if item.recipe_path), None)
    where = _location_text(location, trained.recipe_path if trained else None)
    training = _training_section(trained, where["train"]) if trained else ""
    return f"""---
{header}---

# Claudesidian synthetic tool-calling dataset, KTO-ready

Synthetic tool-calling conversations for the Claudesidian Obsidian agent, each labelled desirable
(`true`) or undesirable (`false`): unpaired preference data for TRL's `KTOTrainer`. This repository
holds the configs {names}, each rebuilt exactly from the source file by the loading script
`claudesidian_synthetic.py` beside this card.

## Configs

| config | split | rows | desirable | undesirable | first 50 rows (desirable / undesirable) \
| single-label batches of 4 | KTO weights (desirable, undesirable) |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

The weights keep `desirable_weight * n_desirable / (undesirable_weight * n_undesirable)` inside
[1, 4/3] (KTO paper, Eq. 8), the range TRL's KTOTrainer checks. TRL forms the KL pairs of each batch
from consecutive rows, so pick a config in mixed order and set `per_device_train_batch_size` (and
`per_device_eval_batch_size`) to its batch size; the recipes below do.

## How each config is made

Source: `{source_text}`, {cs.SOURCE_NUM_BYTES:,} bytes, sha256 `{cs.SOURCE_SHA256}` (v1.0.0).

{recipes}

Columns of the `kto` layout (TRL's unpaired preference format, conversational):

| column | type | meaning |
| --- | --- | --- |
| `prompt` | list of `{{role, content}}` | every message but the last |
| `completion` | list with one `{{role, content}}` | the assistant's reply |
| `label` | bool | `true` = desirable, `false` = undesirable |
| `context` | struct of {len(cs.CONTEXT_FIELDS)} strings, or null | session metadata ({", ".join(cs.CONTEXT_FIELDS)}) |

`prompt + completion` is the source row's `conversations`, unchanged.

## Load it

`datasets` 4.0 and later (5.x included), no remote code:

```python
from datasets import load_dataset
ds = {where["load"]}, name="{default}", split="train")
```

Pin what you trained on with `revision="<commit sha>"` once the data is on the Hub. {where["offline"]}

{training}## Several GPUs and streaming

Each split is stored as Parquet shards (the files are listed in `configs:` above), per split: {shard_counts}.
In a config in mixed order every shard holds whole batches, so no aligned batch spans two shards.

- accelerate with `split_batches=False` (TRL's default) hands each process whole batches of consecutive
  rows: every batch stays mixed. With `split_batches=True` each process gets a slice of
  `per_device_train_batch_size / processes` rows: use a config whose mixed batch size is that slice.
- `split_dataset_by_node(load_dataset(..., streaming=True)["train"], rank, world_size)` gives each rank
  whole shards when the split's shard count is a multiple of the world size, and then every batch on
  every rank is mixed. Otherwise `datasets` deals every world-size-th row to each rank, and some batches
  hold one label: export again with `--num-shards` a multiple of your world size.

## With `datasets` below 4.0 and the loading script

It rebuilds any config, custom options included:

```python
from datasets import load_dataset
from huggingface_hub import hf_hub_download
{where["script"]}
ds = load_dataset(script, name="balanced_custom", desirable=300, undesirable=200, seed=7, trust_remote_code=True)
```

## Licence

MIT, copyright 2025 ProfSynapse.
"""


def _location_text(location: str, recipe_path: str | None) -> dict[str, str]:
    """The card's words that depend on where the data is: a folder (absolute path) or a repository id.
    `push` swaps each for the repository's, so the two cannot drift apart."""
    if not _is_repo_id(location):
        return {
            "load": f'load_dataset("{location}"',
            "offline": "This folder needs no network: every config above loads from its Parquet files.",
            "script": f'script = "{location}/claudesidian_synthetic.py"',
            "train": f"trl kto --config {location}/{recipe_path}",
        }
    return {
        "load": f'load_dataset("{location}"',
        "offline": f"Offline: download the repository once (`hf download {location} --repo-type dataset "
        "--local-dir DIR`), then `load_dataset(DIR, name=...)`.",
        "script": f'script = hf_hub_download("{location}", "claudesidian_synthetic.py", repo_type="dataset")',
        "train": f"hf download {location} {recipe_path} --repo-type dataset --local-dir .\n"
        f"trl kto --config {recipe_path}",
    }


def _training_section(trained: ExportedConfig, train_command: str) -> str:
    """The card's `trl kto` section, for the config whose recipe it shows."""
    evaluation = " also evaluates on the held-out `test` split" if "test" in trained.stats else " is one of them"
    return f"""## Train with TRL's command line

Every config in the `kto` layout has a TRL recipe in `recipes/` (dataset, config, splits, batch size
and KTO weights); `{trained.recipe_path}`{evaluation}:

```bash
{train_command} --model_name_or_path {EXAMPLE_MODEL} --output_dir kto-out
```

Flags given on the command line override the recipe's values; on a machine without a GPU add
`--use_cpu true` (TRL trains in bf16 otherwise).

"""


def render_recipe(item: ExportedConfig, *, location: str) -> str:
    """A config file that `trl kto --config FILE` reads unchanged: dataset, splits, batch size, weights."""
    train = item.stats["train"]
    recipe = {
        "dataset_name": location,
        "dataset_config": item.spec.export_name,
        "dataset_train_split": "train",
        **kto_weights([True] * train["desirable"] + [False] * train["undesirable"]),
    }
    if item.config.batch_size is not None:
        recipe["per_device_train_batch_size"] = item.config.batch_size
        recipe["per_device_eval_batch_size"] = item.config.batch_size
    if "test" in item.stats:
        recipe.update({"dataset_test_split": "test", "eval_strategy": "steps", "eval_steps": 50})
    else:
        recipe["eval_strategy"] = "no"
    comment = (
        f"# TRL recipe for the `{item.spec.export_name}` config ({_recipe(item)}).\n"
        f"# trl kto --config THIS_FILE --model_name_or_path MODEL --output_dir OUT\n"
    )
    return comment + yaml.safe_dump(recipe, sort_keys=False)


_LOCATION = re.compile(r'load_dataset\("([^"]+)", name=')
_RECIPE = re.compile(r"recipes/kto_\w+\.yaml")


def _relocate(folder: str, repo_id: str) -> None:
    """Point the card and the recipes of an exported folder at `repo_id`."""
    card_path = os.path.join(folder, "README.md")
    with open(card_path, encoding="utf-8") as file:
        card = file.read()
    match = _LOCATION.search(card)
    if match is None:
        raise cs.OptionError(f"{card_path}: not a card written by export; run `claudesidian-synthetic export` again")
    recipe = _RECIPE.search(card)
    recipe_path = recipe.group(0) if recipe else None
    new = _location_text(repo_id, recipe_path)
    for key, old_text in _location_text(match.group(1), recipe_path).items():
        card = card.replace(old_text, new[key])
    with open(card_path, "w", encoding="utf-8") as file:
        file.write(card)
    recipes = os.path.join(folder, "recipes")
    for name in sorted(os.listdir(recipes)) if os.path.isdir(recipes) else []:
        path = os.path.join(recipes, name)
        with open(path, encoding="utf-8") as file:
            text = file.read()
        recipe = yaml.safe_load(text)
        text = text.replace(f"dataset_name: {yaml.safe_dump(recipe['dataset_name']).splitlines()[0]}",
                            f"dataset_name: {repo_id}", 1)
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)


def push(
    folder: str,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str = "Upload Claudesidian synthetic dataset",
    api: huggingface_hub.HfApi | None = None,
) -> str:
    """Upload `folder` to the dataset repository `repo_id` in one commit; return the commit sha. The
    card and recipes uploaded (and, once the upload succeeded, the folder's own) name `repo_id`."""
    if not os.path.isfile(os.path.join(folder, "README.md")):
        raise cs.OptionError(f"{folder}: no README.md; run `claudesidian-synthetic export {folder}` first")
    with tempfile.TemporaryDirectory() as scratch:
        staged = os.path.join(scratch, "repo")
        shutil.copytree(folder, staged)
        _relocate(staged, repo_id)
        sha, _ = commit_folder(staged, repo_id, private=private, commit_message=commit_message, api=api)
    _relocate(folder, repo_id)
    return sha


def pinned_load_lines(folder: str, repo_id: str, sha: str) -> list[str]:
    """One `load_dataset(...)` line per config of the exported card, pinned to `sha`."""
    card = huggingface_hub.DatasetCard.load(os.path.join(folder, "README.md"))
    names = [entry["config_name"] for entry in card.data.to_dict().get("configs", [])]
    return [f'load_dataset("{repo_id}", name="{name}", revision="{sha}")' for name in names]
