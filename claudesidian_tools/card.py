"""The dataset card and the TRL recipes of an export, rendered from what the export recorded (its
manifest) and the card template (`card_template.md`), for a place: the folder, or a Hub repository.

`export` renders them for the folder and `push` again for the repository, from the same manifest;
nothing edits rendered text. Every word that depends on where the data is comes from `location_text`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import huggingface_hub
import yaml

import claudesidian_synthetic as cs
from claudesidian_tools.infos import portable_layout
from claudesidian_tools.lengths import TRL_DEFAULT_MAX_LENGTH, long_prompt_fate, sequences
from claudesidian_tools.manifest import CARD, SCHEMAS_COPY, SCRIPT_PATH
from claudesidian_tools.stats import WELL_FORMED_BUT_FAILING, reason_text

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "card_template.md")
# The model that the card's and README's examples name; tests put a tiny local model in its place.
EXAMPLE_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
# The batch size a KTO recipe sets where its config has none of its own (not TRL's default of 8): the
# card's batch figures are counted at each recipe's batch size.
RECIPE_BATCH_SIZE = 4
# Characters per token the recipe of a tools layout assumes without a tokenizer: JSON tokenizes short.
TOOLS_CHARS_PER_TOKEN = 3
# The Hub's size categories (https://huggingface.co/docs/hub/datasets-cards), by row count.
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
                   (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T"))
_ORDER_WORDS = {
    "source": "in source order",
    "shuffle": "shuffled (seed {seed})",
    "mixed": "in mixed order: every {batch_size} consecutive rows hold both labels (seed {seed})",
}
_SELECTION_WORDS = {
    "every_row": "every source row",
    "balanced": "the published recipe on these options: one `random.Random(seed)` samples the desirable rows, "
    "then the undesirable rows (a label kept whole is not drawn), concatenated desirable then undesirable",
    "desirable_only": "every desirable row, as one `{layout}` conversation",
    "preference_pairs": "every distinct (desirable reply, undesirable reply) pair of each prompt answered both ways",
}


def size_category(rows: int) -> str:
    """The Hub's size category for a row count.

    >>> size_category(1000), size_category(1_000_000)
    ('1K<n<10K', '1M<n<10M')
    """
    return next(label for limit, label in SIZE_CATEGORIES if rows < limit)


def location_text(location: str, is_repo: bool) -> dict[str, str]:
    """The card's words that depend on where the data is: a folder (by its name, used from the folder
    that holds it, so a moved or copied export still works) or a Hub repository."""
    if not is_repo:
        # "./name", not "name": `datasets` reads a path that starts with "./" as a folder only, so a moved
        # or renamed folder is an error, never a Hub repository or a cached dataset of that name.
        return {
            "load": f"./{location}",
            "dataset_name": f"./{location}",
            "run_from": f", from the folder that holds `{location}/` (as every command below; the recipes name "
                        f"`./{location}`: after renaming the folder, change `dataset_name` in them too)",
            "offline": "This folder needs no network: every config loads from its Parquet files.",
            "script": f'script = "{location}/{SCRIPT_PATH}"',
            "builder": f'import sys\nsys.path.insert(0, "{location}/{os.path.dirname(SCRIPT_PATH)}")',
            "schemas": repr(f"{location}/{SCHEMAS_COPY}"),
            "fetch": "",
            "recipes": f"{location}/recipes",
        }
    return {
        "load": location,
        "dataset_name": location,
        "run_from": "",
        "offline": f"Offline: download the repository once (`hf download {location} --repo-type dataset "
        "--local-dir DIR`), then `load_dataset(DIR, name=...)`.",
        "script": f'from huggingface_hub import hf_hub_download\n'
                  f'script = hf_hub_download("{location}", "{SCRIPT_PATH}", repo_type="dataset")',
        "builder": f'import os\nimport sys\nfrom huggingface_hub import hf_hub_download, snapshot_download\n'
                   f'sys.path.insert(0, os.path.join(snapshot_download("{location}", repo_type="dataset", '
                   f'allow_patterns="{os.path.dirname(SCRIPT_PATH)}/*"), "{os.path.dirname(SCRIPT_PATH)}"))',
        "schemas": f'hf_hub_download("{location}", "{SCHEMAS_COPY}", repo_type="dataset")',
        "fetch": f"hf download {location} {{recipe}} --repo-type dataset --local-dir .\n",
        "recipes": "recipes",
    }


def describe(entry: Mapping) -> str:
    """How a config's rows are chosen, split and ordered, from its recorded options."""
    resolved = entry["resolved"]
    named = cs.CONFIGS[entry["config"]]
    how = _SELECTION_WORDS[named.selection].format(layout=resolved["layout"])
    if resolved.get("length_strata"):
        how += (f", with the labels' reply lengths matched: {resolved['length_strata']} strata cut at the smaller "
                "label's length quantiles, as many rows of each label per stratum as its smaller side has")
    if "test" in entry["stats"]:
        how = how.replace("every source row", "every row not held out for `test`")
    if named.family and named.selection == "balanced":
        how += (", within each member of the family (`per_member`: each member's smaller label kept whole, or the "
                "ratio), as the dataset's author balances within each category" if resolved.get("per_member") else
                ", over all the family's rows (not within each member: `per_member` is off)")
    if cs.LAYOUTS[resolved["layout"]].turns:
        how += (", each as its decisions (one assistant turn per row: every turn of a desirable reply, the one that "
                "carries the label of an undesirable reply)")
    options = ", ".join(f"{key}={value!r}" for key, value in entry["options"].items())
    origin = f"`{entry['config']}`" + (f" ({options})" if options else "") + ": " if entry["name"] != entry["config"] \
        else ""
    text = f"{origin}{how}, " + _ORDER_WORDS[resolved["order"]].format(**resolved)
    if resolved.get("dedupe"):
        text += "; exact duplicate lines dropped first"
    if resolved.get("gate", "keep") != "keep":
        text += ("; desirable rows whose tool calls fail the checks against the tool schemas "
                 + ("dropped" if resolved["gate"] == "drop" else "relabelled undesirable") + " ("
                 + "; ".join(note.removeprefix("gate: ") for notes in entry.get("notes", {}).values()
                             for note in notes.get("said", ()) if note.startswith("gate: ")) + ")")
    if "test" in entry["stats"]:
        test = entry["stats"]["test"]
        strata = ("member and label (claude's rows those claude's configs hold out)" if named.family else "label")
        text += (f". The `test` split ({test['rows']} rows) was held out of the source first: "
                 f"prompt-disjoint ({entry['shared_prompts']} prompts shared with `train`), stratified by {strata}, "
                 f"seed {resolved['seed']}, test size {resolved['test_size']}, the same prompts in every config "
                 "with these two options")
        if test["duplicates"]:
            text += (f"; {test['duplicates']} of its rows repeat another of its rows exactly (the source repeats "
                     "some lines; `dedupe=True` keeps one of each, in both splits)")
    return text


def card_context(manifest: Mapping, location: str, is_repo: bool) -> dict:
    """Everything the template says, from the manifest."""
    entries = manifest["configs"]
    where = location_text(location, is_repo)
    table, lengths, tool_rows, reasons = [], [], [], []
    for entry in entries:
        size = recipe_batch_size(entry)
        for split, stats in entry["stats"].items():
            labelled = "first_50" in stats
            weights = stats.get("kto_weights")
            table.append({
                "name": entry["name"], "split": split, "rows": stats["rows"],
                "desirable": stats.get("desirable", "-"), "undesirable": stats.get("undesirable", "-"),
                "first_50": f"{stats['first_50']['desirable']} / {stats['first_50']['undesirable']}" if labelled
                else "-",
                "single_label": f"{stats['homogeneous_batches'][str(size)]} of {stats['rows'] // size} ({size})"
                if labelled else "-",
                "prompt_repeats": f"{stats['prompt_repeat_batches'][str(size)]} of {stats['rows'] // size}"
                if labelled else "-",
                "weights": f"{weights['desirable_weight']}, {weights['undesirable_weight']}" if weights else "-",
            })
            tool_rows += _tool_rows(entry["name"], split, stats, cs.LAYOUTS[entry["layout"]])
            reasons += _reason_lines(entry["name"], split, stats)
        lengths.append(_length_row(entry, "train"))
    pairs = next((entry for entry in entries if cs.LAYOUTS[entry["layout"]].labels == "pairs"), None)
    evaluated = [entry["name"] for entry in entries if "test" in entry["stats"]]
    leaks = manifest["held_out_leaks"]
    untested = [f"`{entry['name']}`" for entry in entries if "test" not in entry["stats"]]
    json_values = [entry for entry in entries if cs.LAYOUTS[entry["layout"]].oldest_datasets == cs.JSON_DATASETS]
    return {
        "names": ", ".join(f"`{entry['name']}`" for entry in entries),
        "table": table,
        "lengths": lengths,
        "truncation": _truncation_text(entries, manifest.get("tokenizer")),
        "pairs": pairs and {"name": pairs["name"], "rows": sum(s["rows"] for s in pairs["stats"].values()),
                            "prompts": sum(s["prompts"] for s in pairs["stats"].values())},
        "has_pairs": pairs is not None,
        "configs": [{"name": entry["name"], "how": describe(entry), "figure": entry.get("figure")}
                    for entry in entries],
        "source": {"text": manifest["source"]["file"] if not manifest["source"]["from_hub"]
                   else cs.source_url(manifest["source"]["revision"] or "main"),
                   "sha256": manifest["source"]["sha256"]},
        "leaks": leaks if len(evaluated) > 1 else [],
        "evaluated": ", ".join(f"`{name}`" for name in evaluated),
        "untested": _listed(untested),
        "layouts": [{"title": layout.title, "columns": layout.columns}
                    for layout in cs.LAYOUTS.values() if any(entry["layout"] == layout.name for entry in entries)],
        "where": where,
        "default_config": cs.DEFAULT_CONFIG_NAME if any(e["name"] == cs.DEFAULT_CONFIG_NAME for e in entries)
        else entries[0]["name"],
        "training": _training(entries, where),
        "shards": "; ".join(f"`{entry['name']}` " + ", ".join(f"{split} {len(paths)}" for split, paths in
                                                              entry["data_files"].items()) for entry in entries),
        "script": SCRIPT_PATH,
        "source_file": cs.SOURCE_FILENAME,
        "tool_rows": tool_rows,
        "reasons": reasons,
        "schemas": manifest["tool_schemas"],
        "checks": list(cs.CHECKS),
        "well_formed": WELL_FORMED_BUT_FAILING,
        "loss_rows": [_loss_row(entry["name"], split, stats) for entry in entries
                      for split, stats in entry["stats"].items() if "loss" in stats],
        "has_sft": any(entry["trainer"] == "sft" for entry in entries),
        "decisions": _decision_lines(entries),
        "labelling_why": cs.LABELLING_WHY,
        "members": _member_files(manifest),
        "member_rows": [row for entry in entries for split, stats in entry["stats"].items()
                        for row in _member_rows(entry["name"], split, stats)],
        "member_reasons": [line for entry in entries for split, stats in entry["stats"].items()
                           for line in _member_reason_lines(entry["name"], split, stats)],
        "versions": [{"name": entry["name"], "oldest": cs.LAYOUTS[entry["layout"]].oldest_datasets}
                     for entry in entries],
        "oldest": cs.OLDEST_DATASETS,
        "json": json_values and {"names": _listed([f"`{entry['name']}`" for entry in json_values]),
                                 "version": cs.JSON_DATASETS, "block": _builder_block(json_values, manifest, where)},
    }


def _member_files(manifest: Mapping) -> list[dict]:
    """The family's files an export read: each member's pinned name, version, rows, sha256, licence and address."""
    recorded = manifest["source"].get("members", {})
    revision = manifest["source"]["revision"] or "main"
    return [{"name": name, "file": cs.MEMBERS[name].file, "version": cs.MEMBERS[name].version,
             "rows": cs.MEMBERS[name].rows, "licence": cs.MEMBERS[name].licence, "url": cs.member_url(name, revision),
             "sha256": figures["sha256"] if figures["sha256"] == cs.MEMBERS[name].sha256 else
             f"{figures['sha256']}` (not the pinned `{cs.MEMBERS[name].sha256}`)"}
            for name, figures in recorded.items()]


def _member_rows(name: str, split: str, stats: Mapping) -> list[dict]:
    """Per member of a family split: its rows and share, each label's rows, passing every check, reply lengths."""
    rows = []
    for member, entry in stats.get("members", {}).items():
        last = cs.CHECKS[-1]
        rows.append({"name": name, "split": split, "member": member, "rows": entry["rows"],
                     "share": f"{entry['share']:.1%}",
                     **{label: entry[label]["rows"] for label in cs.LABEL_NAMES},
                     "passing": " / ".join(str(entry[label]["passing"][last]) if entry[label]["rows"] and
                                           "passing" in entry[label] else "-" for label in cs.LABEL_NAMES),
                     "medians": " / ".join(_number(entry[label]["reply_chars"]["median"]) for label in cs.LABEL_NAMES)})
    return rows


def _member_reason_lines(name: str, split: str, stats: Mapping) -> list[str]:
    """`family` `train`, copilot: the most common reasons its calls fail, per label."""
    lines = []
    for member, entry in stats.get("members", {}).items():
        said = "; ".join(f"{label}: " + ", ".join(f"`{reason_text(reason)}` {reason['count']}"
                                                  for reason in entry[label]["top_reasons"])
                         for label in cs.LABEL_NAMES if entry[label].get("top_reasons"))
        if said:
            lines.append(f"`{name}` `{split}`, {member}: {said}")
    return lines


def _loss_row(name: str, split: str, stats: Mapping) -> dict:
    """What the trainer's loss sees of a split: its share of the training sequences, and of tool output in it."""
    loss = stats["loss"]
    return {"name": name, "split": split, "trainer": f"`trl {loss['trainer']}`", "sees": loss["sees"],
            "characters": f"{loss['characters']['share']:.1%}",
            "tokens": f"{loss['tokens']['share']:.1%}" if "tokens" in loss else "-",
            "tool_output": f"{loss['tool_output_share']:.1%}"}


def _decision_lines(entries: list) -> list[str]:
    """For each config of one decision per row, what its splits' rows became, and how many undesirable rows
    each labelling rule labelled."""
    lines = []
    for entry in entries:
        for split, notes in entry.get("notes", {}).items():
            counts = notes.get("decisions")
            if counts:
                rules = "; ".join(f"{words}: {counts['labelled_by'][rule]:,}"
                                  for rule, words in cs.LABELLING_RULES.items())
                left_out = counts["turns_left_out"]
                lines.append(f"`{entry['name']}` `{split}`: {counts['desirable_rows']:,} desirable rows gave "
                             f"{counts['desirable_turns']:,} rows, one per turn"
                             + (f" ({left_out:,} turns after a call without a result, or empty final answers, left "
                                "out)" if left_out else "")
                             + f"; {counts['undesirable_rows']:,} undesirable rows gave one each ({rules})")
    return lines

def _listed(names: list[str]) -> str:
    """`a`, `b` and `c`."""
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def _builder_block(entries: list, manifest: Mapping, where: Mapping) -> str:
    """Python that builds these configs as the export did, on any `datasets`, with the builder the export
    holds beside its loading script: the card's way for a `datasets` too old to read their Parquet."""
    wide = {}
    if manifest["source"]["revision"] not in (None, "main"):
        wide["revision"] = repr(manifest["source"]["revision"])
    if not manifest["tool_schemas"]["pinned"]:  # the copy the export keeps
        wide["tool_schemas"] = where["schemas"]
    calls = []
    for entry in entries:
        given = {key: repr(value) for key, value in entry["options"].items()}
        options = "".join(f", {key}={value}" for key, value in {**given, **wide}.items())
        calls.append(f'    "{entry["name"]}": cs.load("{entry["config"]}", source=source{options}),')
    folder = "source = None  # the source files download; offline, the folder that holds them"
    return "\n".join([where["builder"], "import claudesidian_synthetic as cs", folder, "built = {", *calls, "}"])


def _tool_rows(name: str, split: str, stats: Mapping, layout: cs.Layout) -> list[dict]:
    """The funnel of a split, one row per label it holds: rows passing each check in order."""
    funnel = stats.get("tool_calls")
    if not funnel:
        return []
    rows = []
    for label in cs.LABEL_NAMES:
        numbers = funnel[label]
        if numbers["rows"]:
            rows.append({"name": name, "split": split, "label": layout.label_words[label], "rows": numbers["rows"],
                         "passing": [numbers["passing"][check] for check in cs.CHECKS],
                         "bad_format": numbers.get("bad_format", "-"),
                         "elsewhere": numbers.get("well_formed_but_failing", "-"),
                         "unanswered": numbers.get("calls_without_result", "-")})
    return rows


def _reason_lines(name: str, split: str, stats: Mapping) -> list[str]:
    """`full` `train`, desirable: the five most common reasons a call fails, with their counts."""
    funnel = stats.get("tool_calls") or {}
    lines = []
    for label in cs.LABEL_NAMES:
        top = funnel.get(label, {}).get("top_reasons", [])[:5]
        if top:
            said = "; ".join(f"`{reason_text(reason)}` {reason['count']}" for reason in top)
            lines.append(f"`{name}` `{split}`, {label}: {said}")
    return lines


def recipe_batch_size(entry: Mapping) -> int:
    """The batch size a config's KTO recipe sets (and its card's batch figures are counted at): its own
    mixed batch size, or RECIPE_BATCH_SIZE."""
    return entry["resolved"]["batch_size"] or RECIPE_BATCH_SIZE


def _length_row(entry: Mapping, split: str) -> dict:
    report = entry["stats"][split]["lengths"]
    desirable, undesirable = report["desirable"], report["undesirable"]
    return {
        "name": entry["name"], "split": split,
        "counts": f"{desirable['rows']} / {undesirable['rows']}",
        "medians": f"{_number(desirable['completion_chars']['median'])} / "
                   f"{_number(undesirable['completion_chars']['median'])}",
        "distance": "-" if report.get("ks_completion_chars") is None else f"{report['ks_completion_chars']:.2f}",
    }


def _number(value) -> str:
    return "-" if value is None else f"{value:g}"


def _truncation_text(entries: list, tokenizer: str | None) -> str:
    """What `max_length` does to each config, and which figure its recipe uses and why."""
    lines = []
    for entry in entries:
        decision = entry["max_length"]
        lines.append(f"- `{entry['name']}`: {decision['why']}.")
    head = ("With the tokenizer `" + tokenizer + "` (its chat template applied as TRL applies it), in tokens:"
            if tokenizer else "Without a tokenizer the lengths are in characters; about 4 characters make a token "
            "in English text, so the figures below are estimates:")
    return "`max_length` (TRL truncates longer sequences from the right and drops a row whose prompt alone "\
           f"reaches it). {head}\n\n" + "\n".join(lines)


def recipe_max_length(stats: Mapping, *, tokenizer: str | None, max_length: int | None, tools: bool = False,
                      trainer: str | None = "kto") -> dict:
    """The `max_length` a config's recipe sets (None: TRL's default) and the reason the card gives,
    from the figures counted at that length (tokens with a tokenizer, else a characters estimate)."""
    reports = [split_stats["lengths"] for split_stats in stats.values()]
    if tokenizer:
        cut = sum(report["truncation"]["truncated"] for report in reports)
        dropped = sum(report["truncation"]["dropped"] for report in reports)
        longest = max(report["truncation"]["longest"] for report in reports)
        if max_length is not None:
            return {"value": max_length, "why": f"`max_length: {max_length}` as given: across its splits it truncates "
                                                f"{_rows(cut)} and drops {_rows(dropped)} (the longest row has "
                                                f"{longest} tokens)"}
        return {"value": longest, "why": f"`max_length: {longest}`, the longest row in tokens, so nothing is cut "
                                         f"(TRL's default of {TRL_DEFAULT_MAX_LENGTH} would truncate {_rows(cut)} and "
                                         f"drop {dropped} across its splits)"}
    over = sum(report["over_chars_estimate"]["desirable"] + report["over_chars_estimate"]["undesirable"]
               for report in reports)
    dropped = sum(report["over_chars_estimate"]["prompt_over"] for report in reports)
    if tools and max_length is None and dropped:
        # Every prompt carries its tools' definitions: at TRL's default most rows would lose their reply.
        longest = max(report["over_chars_estimate"]["longest_chars"] for report in reports)
        value = -(-longest // (TOOLS_CHARS_PER_TOKEN * 256)) * 256
        return {"value": value, "why": f"`max_length: {value}`, the longest row ({longest:,} characters) at "
                                       f"{TOOLS_CHARS_PER_TOKEN} characters per token, rounded up: every prompt holds "
                                       "its tools' JSON definitions, whose tokens are short, and at TRL's default of "
                                       f"{TRL_DEFAULT_MAX_LENGTH} about {sequences(dropped, trainer)} would be "
                                       f"{long_prompt_fate(trainer)} (an estimate; export with `--tokenizer` to count "
                                       "tokens)"}
    limit = max_length or TRL_DEFAULT_MAX_LENGTH
    given = f"`max_length: {limit}` as given" if max_length else f"TRL's default `max_length` ({limit} tokens)"
    longer = f"about {sequences(over, trainer)} across its splits " + ("are" if over != 1 else "is")
    drops = f", {dropped} of them {long_prompt_fate(trainer)}" if dropped else ""
    return {"value": max_length, "why": f"{given}: {longer} longer than {4 * limit} characters and would be cut{drops} "
                                        "(an estimate at 4 characters per token; export with `--tokenizer` to count "
                                        "tokens and cover every row)" if over else
            f"{given}: no row is longer than {4 * limit} characters (an estimate at 4 characters per token)"}


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _training(entries: list, where: Mapping) -> list:
    """One recipe per trainer for the card: the first config of each with a test split, else the first."""
    shown = []
    for trainer in ("kto", "sft", "dpo"):
        candidates = [entry for entry in entries if entry["trainer"] == trainer]
        if not candidates:
            continue
        # The tools layouts first: the text layouts write tool results into the replies a loss sees.
        ranked = sorted(candidates, key=lambda entry: (not cs.LAYOUTS[entry["layout"]].tools,
                                                       "test" not in entry["stats"]))
        entry = ranked[0]
        recipe = entry["recipe"] if where["fetch"] else f"{where['recipes']}/{os.path.basename(entry['recipe'])}"
        fetch = where["fetch"].format(recipe=entry["recipe"])
        evaluates = " and evaluates on its held-out `test` split" if "test" in entry["stats"] else ""
        shown.append({
            "text": f"`trl {trainer}` with `{entry['name']}` ({_TRAINER_WORDS[trainer]}){evaluates}:",
            "command": f"{fetch}trl {trainer} --config {recipe} --model_name_or_path {EXAMPLE_MODEL} "
                       f"--output_dir {trainer}-out",
        })
    return shown


_TRAINER_WORDS = {"kto": "KTO on labelled rows", "sft": "supervised fine-tuning on the desirable conversations",
                  "dpo": "DPO on preference pairs"}


def card_data(manifest: Mapping) -> huggingface_hub.DatasetCardData:
    """The card's YAML header: licence, tags, one `configs:` entry per config, and `dataset_info:`."""
    from datasets import DatasetInfo
    from datasets.info import DatasetInfosDict

    entries = manifest["configs"]
    rows = max(stats["rows"] for entry in entries for stats in entry["stats"].values())
    data = huggingface_hub.DatasetCardData(
        license="mit",
        pretty_name="Claudesidian synthetic tool-calling (training-ready)",
        task_categories=["text-generation"],
        tags=["kto", "dpo", "sft", "preference", "tool-calling", "synthetic", "trl", "obsidian"],
        size_categories=[size_category(rows)],
        language=["en"],
    )
    configs = []
    for entry in entries:
        config = {"config_name": entry["name"],
                  "data_files": [{"split": split, "path": paths} for split, paths in entry["data_files"].items()]}
        if entry["name"] == cs.DEFAULT_CONFIG_NAME:
            config["default"] = True
        configs.append(config)
    data["configs"] = configs
    infos = DatasetInfosDict({entry["name"]: DatasetInfo.from_dict(entry["info"]) for entry in entries
                              if portable_layout(entry["layout"])})
    infos.to_dataset_card_data(data)
    return data


def render_texts(manifest: Mapping, *, location: str, is_repo: bool = False) -> dict[str, str]:
    """The card and every recipe of an export, by path, for the folder named `location` or the repository
    `location`: what export writes, what push uploads, and what verify compares a repository's files with."""
    texts = {CARD: render_card(manifest, location=location, is_repo=is_repo)}
    for entry in manifest["configs"]:
        if entry["recipe"]:
            texts[entry["recipe"]] = render_recipe(entry, location=location, is_repo=is_repo)
    return texts


def render_card(manifest: Mapping, *, location: str, is_repo: bool = False) -> str:
    """The dataset card of an export, for the folder named `location` or the repository `location`."""
    card = huggingface_hub.DatasetCard.from_template(
        card_data(manifest), template_path=TEMPLATE, **card_context(manifest, location, is_repo)
    )
    return str(card)


def no_recipe(name: str, layout: str) -> str:
    """Why a config has no TRL recipe: its layout is one no trainer reads."""
    trained = ", ".join(each.name for each in cs.LAYOUTS.values() if each.trainer)
    return (f"{name} has no TRL recipe: its layout {layout} ({cs.LAYOUTS[layout].purpose} columns) is read by no TRL "
            f"trainer; export it with a layout one reads ({trained}) for a recipe")


def render_recipe(entry: Mapping, *, location: str, is_repo: bool = False) -> str:
    """A config file that `trl kto|sft|dpo --config FILE` reads unchanged; a layout no trainer reads has none."""
    if not entry["trainer"]:
        raise cs.OptionError(no_recipe(entry["name"], entry["layout"]))
    stats = entry["stats"]
    recipe = {
        "dataset_name": location_text(location, is_repo)["dataset_name"],
        "dataset_config": entry["name"],
        "dataset_train_split": "train",
    }
    warning = ""
    if entry["trainer"] == "kto":
        train = stats["train"]
        recipe.update(train["kto_weights"] or {})
        size = recipe_batch_size(entry)
        recipe["per_device_train_batch_size"] = recipe["per_device_eval_batch_size"] = size
        single = train["homogeneous_batches"][str(size)]
        if single:
            warning = (f"# {single} of the {train['rows'] // size} batches of {size} hold one label: TRL's KL term "
                       "has no pair of the other label there. For every batch mixed, train on a config in mixed "
                       f"order of {size} (full_eval, or order=mixed,batch_size={size}).\n")
        partial = [split for split, figures in stats.items() if figures["last_batch_one_label"][str(size)]]
        if partial and not single:  # every whole batch is mixed: leave out the last, partial one
            recipe["dataloader_drop_last"] = True
            left = ", ".join(cs.plural(stats[split]["rows"] % size, "row") for split in partial)
            warning = (f"# dataloader_drop_last: the last, partial batch of {' and of '.join(partial)} holds one "
                       f"label ({left}), where TRL's KL term has no pair of the other label; every whole batch holds "
                       "both.\n")
    if entry["trainer"] == "sft":  # the loss on what the model writes: its own turns (see ASSISTANT_ONLY)
        recipe["assistant_only_loss"] = True
    if entry["max_length"]["value"] is not None:
        recipe["max_length"] = entry["max_length"]["value"]
    if "test" in stats:
        recipe.update({"dataset_test_split": "test", "eval_strategy": "steps", "eval_steps": 50})
    else:
        recipe["eval_strategy"] = "no"
    comment = (
        f"# TRL recipe for the `{entry['name']}` config ({describe(entry)}).\n"
        f"# {entry['max_length']['why']}.\n{warning}"
        f"# trl {entry['trainer']} --config THIS_FILE --model_name_or_path MODEL --output_dir OUT\n"
    )
    return comment + yaml.safe_dump(recipe, sort_keys=False)
