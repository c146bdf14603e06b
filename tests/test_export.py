"""The Hub-ready folder: data files, card, recipes, figures, manifest; loading it with `datasets`; keeping
every file it did not write; streaming into Parquet in bounded memory."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

import datasets
import huggingface_hub
import pyarrow.parquet
import pytest
import yaml
from conftest import DATA, REPO, as_source_rows, config_source, generate_source, run_cli, run_main, sigint_as_usual
from test_cli import interrupt_when

import claudesidian_synthetic as cs
from claudesidian_tools import export as exporter
from claudesidian_tools.card import size_category
from claudesidian_tools.cli import main
from claudesidian_tools.stats import split_stats

CUSTOM = "balanced_custom_desirable300_seed7_undesirable200"
EXPORTED = [*exporter.DEFAULT_EXPORTS, "mixed8", CUSTOM, "conv"]


@pytest.fixture
def exported(session_export):
    """The session's export (the default export and the configs of conftest.EXPORT_EXTRA): read only."""
    return session_export


def test_folder_layout(exported):
    files = sorted(str(path.relative_to(exported)) for path in exported.rglob("*") if path.is_file())
    held_out = ("full_eval", "sft", "sft_tools", "kto_tools", "pairs", "family", "family_sft_tools",
                "family_kto_tools")
    data = [f"data/{name}/{split}-00000-of-00001.parquet" for name in EXPORTED
            for split in (("train", "test") if name in held_out else ("train",))]
    trainers = {"sft": "sft", "sft_tools": "sft", "family_sft_tools": "sft", "pairs": "dpo"}
    recipes = [f"recipes/{trainers.get(name, 'kto')}_{name}.yaml"
               for name in EXPORTED if name != "conv"]  # none for `conv`: TRL does not read that layout
    script = ["loading_script/claudesidian_synthetic.py", "loading_script/tool_schemas.json",
              "loading_script/tool_schemas.LICENSE"]
    assert files == sorted(["README.md", exporter.MANIFEST, "dataset_infos.json", *script, *data,
                            *recipes, *[f"figures/{name}.png" for name in EXPORTED]])
    manifest = json.loads((exported / exporter.MANIFEST).read_text())
    assert sorted(manifest["files"]) == files  # the manifest records every file export wrote, and only those
    assert manifest["files"]["README.md"] == hashlib.sha256((exported / "README.md").read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("export_name", "name", "options"),
    [
        ("balanced_254", "balanced_254", {}),
        ("full", "full", {}),
        ("full_eval", "full_eval", {}),
        ("balanced_length_matched", "balanced_length_matched", {}),
        ("sft", "sft", {}),
        ("sft_tools", "sft_tools", {}),
        ("kto_tools", "kto_tools", {}),
        ("pairs", "pairs", {}),
        ("family", "family", {}),
        ("family_sft_tools", "family_sft_tools", {}),
        ("family_kto_tools", "family_kto_tools", {}),
        ("mixed8", "full", {"order": "mixed", "batch_size": 8}),
        (CUSTOM, "balanced_custom", {"desirable": 300, "undesirable": 200, "seed": 7}),
        ("conv", "balanced_254", {"layout": "conversations"}),
    ],
)
def test_folder_loads_the_same_rows_as_the_builder(exported, source_path, export_name, name, options):
    from_folder = datasets.load_dataset(str(exported), name=export_name)
    from_builder = cs.load(name, source=config_source(name, source_path), **options)
    assert list(from_folder) == list(from_builder)
    for split in from_builder:
        assert from_folder[split].features == from_builder[split].features
        assert list(from_folder[split]) == list(from_builder[split])


def test_default_config_is_balanced_254(exported, published_rows):
    dataset = datasets.load_dataset(str(exported), split="train")
    assert as_source_rows(dataset) == published_rows


def test_streamed_parquet_is_what_one_write_of_the_whole_split_gives(exported, source_path, tmp_path):
    """The rows stream into Parquet a row group at a time; the file is byte for byte what writing the
    builder's whole split at once gives (the export before streaming did just that)."""
    for name, split in (("full_eval", "train"), ("balanced_254", "train")):
        table = cs.load(name, split=split, source=source_path).data.table.replace_schema_metadata(None)
        pyarrow.parquet.write_table(table, tmp_path / "whole.parquet")
        written = exported / "data" / name / f"{split}-00000-of-00001.parquet"
        assert written.read_bytes() == (tmp_path / "whole.parquet").read_bytes(), name


MEASURE_EXPORT = """
import json, sys, tracemalloc
import pyarrow
import claudesidian_synthetic as cs
from claudesidian_tools import export as exporter
exporter.ROWS_PER_ROW_GROUP = 200
source, folder = sys.argv[1:]
scan = cs.scan_source(source)
spec = exporter.parse_config_spec(f"every=balanced_custom:desirable={int(scan.labels.sum())},"
                                  f"undesirable={int((~scan.labels).sum())},order=source")
tracemalloc.start()
exporter.export(folder, [spec], source=source)
print(json.dumps([pyarrow.default_memory_pool().max_memory(), tracemalloc.get_traced_memory()[1]]))
"""


@pytest.mark.slow
def test_memory_follows_the_row_group_not_the_split(tmp_path):
    """With 200-row row groups, exporting 20,000 rows takes the Arrow memory of 2,000: rows stream
    through, and only their figures (a few bytes per row) stay in Python. Fresh processes, peaks."""
    peaks = {}
    for rows in (2_000, 20_000):
        source = tmp_path / f"rows{rows}.jsonl"
        generate_source(source, rows)
        result = subprocess.run([sys.executable, "-c", MEASURE_EXPORT, str(source), str(tmp_path / f"out{rows}")],
                                cwd=REPO, capture_output=True, text=True, timeout=600,
                                env={**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
        peaks[rows] = json.loads(result.stdout.strip().splitlines()[-1])
        written = pyarrow.parquet.ParquetFile(tmp_path / f"out{rows}/data/every/train-00000-of-00001.parquet")
        assert written.metadata.num_rows == rows and written.metadata.num_row_groups == rows // 200
    (arrow_small, python_small), (arrow_large, python_large) = peaks[2_000], peaks[20_000]
    print("peaks (Arrow pool, Python) by rows:", peaks)
    assert arrow_large <= 1.5 * arrow_small, peaks  # Arrow holds a row group, not the split
    assert python_large - python_small < 200 * 18_000, peaks  # under 200 bytes per extra row (one row's text is ~2 KB)


def test_card_figures_are_what_stats_reports(exported, source_path):
    """Every row of the card's configs table, against `stats` of the builder's own dataset."""
    card = huggingface_hub.DatasetCard.load(str(exported / "README.md"))
    table = {(cells[0], cells[1]): cells[2:] for cells in (
        [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        for line in card.text.split("## Configs")[1].split("##")[0].splitlines() if line.startswith("| `"))}
    for (name, split), options in {("full_eval", "test"): {}, ("full", "train"): {}, ("balanced_254", "train"): {},
                                   ("balanced_length_matched", "train"): {}, ("kto_tools", "train"): {}}.items():
        stats = split_stats(cs.load(name, split=split, source=source_path, **options)).result()
        weights = stats["kto_weights"]
        size = "8" if name == "kto_tools" else "4"  # each recipe's batch size: its config's mixed batch, else 4
        assert table[(name, split)] == [
            str(stats["rows"]), str(stats["desirable"]), str(stats["undesirable"]),
            f"{stats['first_50']['desirable']} / {stats['first_50']['undesirable']}",
            f"{stats['homogeneous_batches'][size]} of {stats['rows'] // int(size)} ({size})",
            f"{stats['prompt_repeat_batches'][size]} of {stats['rows'] // int(size)}",
            f"{weights['desirable_weight']}, {weights['undesirable_weight']}",
        ]
    assert len(table) == 22  # every exported split has its row (eight configs have a test split)


def test_card_tool_call_table_is_what_stats_reports(exported, source_path):
    """The card's funnel: rows passing each check in order, per config, split and label."""
    card = (exported / "README.md").read_text(encoding="utf-8")
    section = card.split("## What the tool calls teach")[1].split("##")[0]
    assert "sha256\n`2e741f5c0f718d3aa23b1de3fb9d3eee834aeb0a6260ad8936d2602c0f64cc00`" in section
    rows = {tuple(cells[:3]): cells[3:] for cells in ([cell.strip().strip("`") for cell in line.strip("|").split("|")]
                                                      for line in section.splitlines() if line.startswith("| `"))}
    schemas = cs.load_tool_schemas()
    for name, split in (("full", "train"), ("kto_tools", "test"), ("pairs", "train")):
        funnel = split_stats(cs.load(name, split=split, source=source_path), schemas=schemas).result()["tool_calls"]
        for label, shown in zip(cs.LABEL_NAMES, ("chosen", "rejected") if name == "pairs" else cs.LABEL_NAMES):
            numbers = funnel[label]
            tail = [str(numbers["bad_format"]), str(numbers["well_formed_but_failing"])] \
                if label == "undesirable" else ["-", "-"]
            tail.append(str(numbers.get("calls_without_result", "-")))  # none for kto_tools: a turn per row
            assert rows[(name, split, shown)] == [str(numbers["rows"]), *map(str, numbers["passing"].values()), *tail]
    assert rows[("full", "train", "desirable")][:3] == ["746", "719", "667"]  # the first two checks, as read here
    assert rows[("kto_tools", "test", "desirable")][-1] == "-"


def test_card_length_table_is_what_stats_reports(exported, source_path):
    card = (exported / "README.md").read_text(encoding="utf-8")
    section = card.split("## What each config teaches: lengths")[1].split("\n\n")[2]
    rows = {cells[0]: cells[2:] for cells in ([c.strip().strip("`") for c in line.strip("|").split("|")]
                                               for line in section.splitlines()[2:])}
    for name in ("balanced_254", "full", "balanced_length_matched"):
        lengths = split_stats(cs.load(name, split="train", source=source_path)).result()["lengths"]
        desirable, undesirable = lengths["desirable"], lengths["undesirable"]
        assert rows[name] == [f"{desirable['rows']} / {undesirable['rows']}",
                              f"{desirable['completion_chars']['median']:g} / "
                              f"{undesirable['completion_chars']['median']:g}",
                              f"{lengths['ks_completion_chars']:.2f}"], name
    assert rows["balanced_254"][2] == "0.54" and float(rows["balanced_length_matched"][2]) <= 0.10


def test_card_header_names_what_was_exported_and_its_sizes(exported):
    card = huggingface_hub.DatasetCard.load(str(exported / "README.md"))
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["size_categories"] == ["1K<n<10K"]
    assert [c["config_name"] for c in data["configs"] if c.get("default")] == ["balanced_254"]
    names = [entry["config_name"] for entry in data["configs"]]
    assert names == EXPORTED
    assert "into the configs " + ", ".join(f"`{name}`" for name in names) in " ".join(card.text.split())
    infos = {info["config_name"]: info for info in data["dataset_info"]}
    # The tools layouts' features hold Json, which datasets below 4.7 cannot parse: their infos are left out
    # (datasets reads their features from the Parquet files), so every other config loads everywhere.
    assert sorted(set(names) - set(infos)) == ["family_kto_tools", "family_sft_tools", "kto_tools", "sft_tools"]
    for name in infos:
        files = exported / "data" / name
        assert infos[name]["download_size"] == sum(path.stat().st_size for path in files.iterdir())
    assert {split["name"]: split["num_examples"] for split in infos["full_eval"]["splits"]} == {"train": 900,
                                                                                               "test": 100}
    assert "0 prompts shared with `train`" in card.text and "huggingface-cli" not in card.text


def test_size_categories_are_the_hubs():
    assert [size_category(rows) for rows in (999, 1000, 99_999, 999_999, 1_000_000, 10**7)] == [
        "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M"]


def test_figures_are_pngs_the_card_shows_and_draw_the_stats(exported, source_path):
    from claudesidian_tools.plots import plot_config

    card = (exported / "README.md").read_text(encoding="utf-8")
    for name in EXPORTED:
        figure = exported / "figures" / f"{name}.png"
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"](figures/{name}.png)" in card
    stats = split_stats(cs.load("full", split="train", source=source_path)).result()
    drawn = plot_config(str(exported / "redrawn.png"), title="full", histogram=stats["completion_histogram"],
                        splits={"train": {"desirable": 746, "undesirable": 254}},
                        first_labels=stats["first_labels"], batch_size=4)
    (exported / "redrawn.png").unlink()
    assert drawn["histogram"]["desirable"] == stats["completion_histogram"]["desirable"]
    assert (exported / "redrawn.png").exists() is False
    manifest = json.loads((exported / exporter.MANIFEST).read_text())
    (entry,) = [entry for entry in manifest["configs"] if entry["name"] == "full"]
    assert entry["stats"]["train"]["completion_histogram"] == stats["completion_histogram"]


def test_recipes_name_the_dataset_the_splits_the_batch_size_and_the_weights(exported):
    recipe = yaml.safe_load((exported / "recipes/kto_full_eval.yaml").read_text(encoding="utf-8"))
    assert recipe == {
        "dataset_name": "./dataset", "dataset_config": "full_eval", "dataset_train_split": "train",
        "desirable_weight": 1.0, "undesirable_weight": 2.9301,
        "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
        "dataset_test_split": "test", "eval_strategy": "steps", "eval_steps": 50,
    }
    plain_text = (exported / "recipes/kto_balanced_254.yaml").read_text(encoding="utf-8")
    plain = yaml.safe_load(plain_text)
    assert plain["eval_strategy"] == "no" and plain["per_device_train_batch_size"] == 4  # not TRL's 8, unsaid
    assert "# 17 of the 127 batches of 4 hold one label" in plain_text  # the published order's
    sft = yaml.safe_load((exported / "recipes/sft_sft.yaml").read_text(encoding="utf-8"))
    dpo = yaml.safe_load((exported / "recipes/dpo_pairs.yaml").read_text(encoding="utf-8"))
    assert sft["dataset_config"] == "sft" and dpo["dataset_config"] == "pairs"
    assert sft["dataset_test_split"] == dpo["dataset_test_split"] == "test"
    assert "max_length" not in recipe  # no tokenizer: TRL's default applies, and the card says what it cuts
    assert "TRL's default `max_length` (1024 tokens)" in (exported / "README.md").read_text(encoding="utf-8")


def test_the_loading_script_is_the_builder_below_the_root(exported):
    with open(cs.__file__, encoding="utf-8") as file:
        assert (exported / exporter.SCRIPT_PATH).read_text(encoding="utf-8") == file.read()
    assert not list(exported.glob("*.py"))


def test_a_folder_named_like_the_loading_script_loads_its_parquet(source_path, tmp_path):
    folder = tmp_path / "claudesidian_synthetic"
    exporter.export(str(folder), [exporter.parse_config_spec("balanced_254")], source=source_path)
    assert len(datasets.load_dataset(str(folder), name="balanced_254", split="train")) == 508


def test_a_moved_export_loads_and_its_card_commands_run_from_the_new_place(source_path, tmp_path):
    """Recipes and the card name the folder by its name, used from the folder that holds it."""
    exporter.export(str(tmp_path / "first" / "kto-data"), [exporter.parse_config_spec("full_eval")],
                    source=source_path)
    shutil.move(str(tmp_path / "first"), str(tmp_path / "elsewhere"))
    card = (tmp_path / "elsewhere" / "kto-data" / "README.md").read_text(encoding="utf-8")
    (python,) = [block for block in card.split("```python\n")[1:2]]
    code = python.split("```")[0] + "\nprint('ROWS', len(ds))"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "elsewhere", capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert "ROWS 900" in result.stdout, result.stderr[-2000:]
    recipe = yaml.safe_load((tmp_path / "elsewhere" / "kto-data" / "recipes" / "kto_full_eval.yaml").read_text())
    code = (f"import datasets; print('TEST', len(datasets.load_dataset({recipe['dataset_name']!r}, "
            f"name={recipe['dataset_config']!r}, split='test')))")  # as `trl kto` reads the recipe, from here
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "elsewhere", capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert "TEST 100" in result.stdout, result.stderr[-2000:]
    shutil.move(str(tmp_path / "elsewhere" / "kto-data"), str(tmp_path / "elsewhere" / "renamed"))
    renamed = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "elsewhere", capture_output=True, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}, timeout=60)
    assert renamed.returncode != 0 and "TEST" not in renamed.stdout  # an error, never another dataset of that name
    assert "trl kto --config kto-data/recipes/kto_full_eval.yaml" in card


# --- nothing lost, nothing escapes ---------------------------------------------------------------


def test_a_re_export_keeps_a_git_working_copy_and_every_file_it_did_not_write(source_path, tmp_path):
    folder = tmp_path / "re"
    first = run_cli("export", str(folder), "--source", source_path, "--config", "a=full",
                    "--config", "b=balanced_254", cache=tmp_path / "hf")
    assert first.returncode == 0, first.stderr
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    subprocess.run(["git", "-C", str(folder), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first"],
                   check=True)
    (folder / "notes.txt").write_text("keep me")
    (folder / "data" / "a" / "mine.txt").write_text("keep me too")
    result = run_cli("export", str(folder), "--source", source_path, "--config", "b=balanced_254",
                     cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert (folder / "notes.txt").read_text() == "keep me" and (folder / "data" / "a" / "mine.txt").exists()
    assert not (folder / "data" / "a" / "train-00000-of-00001.parquet").exists()  # the old export's file went
    assert not (folder / "recipes" / "kto_a.yaml").exists() and (folder / "recipes" / "kto_b.yaml").exists()
    status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain"], capture_output=True, text=True,
                            check=True).stdout
    assert "D data/a/train-00000-of-00001.parquet" in status and "?? notes.txt" in status  # .git is intact
    assert sorted(os.listdir(tmp_path)) == ["re"]  # no staging folder left


def test_an_edited_file_of_the_last_export_is_not_replaced(source_path, tmp_path):
    folder = tmp_path / "out"
    assert run_cli("export", str(folder), "--source", source_path, "--config", "a=full_eval",
                   cache=tmp_path / "hf").returncode == 0
    with open(folder / "recipes" / "kto_a.yaml", "a", encoding="utf-8") as file:
        file.write("learning_rate: 1.0e-06\n")  # a user's tuning
    edited = (folder / "recipes" / "kto_a.yaml").read_bytes()
    result = run_cli("export", str(folder), "--source", source_path, "--config", "a=full_eval",
                     cache=tmp_path / "hf")
    assert result.returncode == 2
    said = "recipes/kto_a.yaml changed since the last export wrote it, and an export would replace or remove it"
    assert said in result.stderr
    assert "copy your changes elsewhere and give --replace-existing" in result.stderr
    assert (folder / "recipes" / "kto_a.yaml").read_bytes() == edited
    again = run_main("export", folder, "--source", source_path, "--config", "a=full_eval", "--replace-existing")
    assert again.returncode == 0, again.stderr
    assert "replacing recipes/kto_a.yaml, changed since the last export wrote it" in again.stderr
    assert b"learning_rate" not in (folder / "recipes" / "kto_a.yaml").read_bytes()


def test_a_second_export_into_a_folder_that_an_export_holds_is_refused(source_path, tmp_path):
    from claudesidian_tools.replace import one_at_a_time

    folder = tmp_path / "out"
    with one_at_a_time(str(folder)):  # an export into it is running
        result = run_main("export", folder, "--source", source_path, "--config", "full")
    assert result.returncode == 2 and not folder.exists()
    assert result.stderr.strip().splitlines() == [
        f"claudesidian-synthetic: error: {folder}: another export into it is running; wait for it to finish, then "
        "export again"]
    assert run_main("export", folder, "--source", source_path, "--config", "full").returncode == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # no lock file left beside it


def test_a_config_given_options_and_no_name_is_named_after_them_in_words():
    assert exporter.parse_config_spec("family_balanced:per_member=true").export_name == "family_balanced_per_member"
    assert exporter.parse_config_spec("balanced_custom:desirable=300,dedupe=true").export_name == (
        "balanced_custom_dedupe_desirable300")
    assert exporter.parse_config_spec("full_eval:dedupe=false").export_name == "full_eval_no_dedupe"


def test_an_empty_folder_name_is_refused():
    result = run_main("export", "")
    assert result.returncode == 2 and "the folder to export into is empty" in result.stderr


def test_an_empty_git_working_copy_takes_an_export(source_path, tmp_path):
    folder = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    (folder / ".gitattributes").write_text("*.parquet filter=lfs\n")
    result = run_cli("export", str(folder), "--source", source_path, "--config", "full", cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert (folder / ".git" / "HEAD").is_file() and (folder / ".gitattributes").read_text() == "*.parquet filter=lfs\n"


def test_export_refuses_a_folder_it_did_not_write(source_path, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = run_cli("export", str(tmp_path / "mine"), "--source", str(DATA), cache=tmp_path / "hf")
    assert result.returncode == 2 and "holds files that export did not write (notes.txt)" in result.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_export_refuses_to_replace_a_file_it_did_not_write(source_path, tmp_path):
    folder = tmp_path / "out"
    assert run_cli("export", str(folder), "--source", source_path, "--config", "a=full",
                   cache=tmp_path / "hf").returncode == 0
    (folder / "recipes" / "kto_b.yaml").write_text("mine")
    result = run_cli("export", str(folder), "--source", source_path, "--config", "b=balanced_254",
                     cache=tmp_path / "hf")
    assert result.returncode == 2 and "recipes/kto_b.yaml, which export did not write" in result.stderr
    assert (folder / "recipes" / "kto_b.yaml").read_text() == "mine" and (folder / "data" / "a").is_dir()


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["../evil=full"], "'../evil' cannot name an exported config"),
        (["a/b=full"], "'a/b' cannot name an exported config"),
        (["my cfg=full"], "'my cfg' cannot name an exported config"),
        ([("x" * 300) + "=full"], "cannot name an exported config: use up to 100 letters"),
        (["=full"], "the name before '=' is empty"),
        (["x=full:seed=3,seed=4"], "seed is given twice"),
        (["x=full_eval:test-size=0.2"], "unknown option(s) test-size (did you mean test_size?)"),
        (["a=full", "a=balanced_254"], "the name a is given twice"),
        (["FULL=full", "full"], "the name full is given twice (also --config FULL=full; names that differ only in "
                                "case are one folder on macOS and Windows)"),
        (["x=nope"], "unknown config 'nope'"),
        (["x=full:colour=red"], "unknown option(s) colour"),
        (["x=full:source=/etc/passwd"], "the source and the tool schemas are one for the whole export"),
        (["mixed4=full:order=mixed"], "--config mixed4=full:order=mixed: order=mixed needs batch_size"),
    ],
)
def test_bad_specs_are_refused_before_anything_is_written(source_path, tmp_path, capsys, specs, message):
    args = [part for spec in specs for part in ("--config", spec)]
    (tmp_path / "work").mkdir()
    assert main(["export", str(tmp_path / "work" / "out"), "--source", source_path, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path / "work") == []  # nothing written, not even beside the folder


def test_another_version_of_the_source_exports_its_balanced_custom_configs(source_path, tmp_path):
    """Pinned configs promise the v1.0.0 bytes; --config names exactly what to export."""
    with open(source_path, encoding="utf-8") as file:
        (tmp_path / "v2.jsonl").write_text("".join(file.readlines()[5:]), encoding="utf-8")
    args = ["export", str(tmp_path / "out"), "--source", str(tmp_path / "v2.jsonl")]
    refused = run_cli(*args, cache=tmp_path / "hf")
    assert refused.returncode == 2 and "--config mine=balanced_custom" in refused.stderr
    result = run_cli(*args, "--config", "mine=balanced_custom:test_size=0.1", cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path / "out" / "data") == ["mine"]
    assert datasets.get_dataset_config_names(str(tmp_path / "out")) == ["mine"]


def test_a_card_without_a_recipe_has_no_trl_section(source_path, tmp_path):
    result = run_cli("export", str(tmp_path / "out"), "--source", source_path, "--config",
                     "conv=balanced_254:layout=conversations", cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "trl kto" not in card and "## Several GPUs and streaming" in card
    assert not (tmp_path / "out" / "recipes").exists()


def test_an_unwritable_folder_is_one_line(source_path, tmp_path):
    result = run_cli("export", "/sys/out", "--source", source_path, "--config", "full", cache=tmp_path / "hf")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "/sys/out: cannot write in /sys" in result.stderr and "Traceback" not in result.stderr


def test_a_read_only_folder_is_refused_before_any_work_and_leaves_nothing(source_path, tmp_path, read_only_folder):
    before = sorted(os.listdir(tmp_path))
    result = run_cli("export", str(read_only_folder), "--source", source_path, "--config", "full",
                     cache=tmp_path / "hf")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"{read_only_folder}: cannot write in {read_only_folder} (" in result.stderr, result.stderr
    assert "is as it was" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "hf").rglob("*.arrow"))  # refused before the build
    assert sorted(name for name in os.listdir(tmp_path) if name != "hf") == [n for n in before if n != "hf"]
    again = run_cli("verify", str(read_only_folder), "--source", source_path, cache=tmp_path / "hf")
    assert "interrupted" not in again.stderr, again.stderr


def test_ctrl_c_during_an_export_changes_nothing(source_path, tmp_path):
    folder = tmp_path / "out"
    assert run_cli("export", str(folder), "--source", source_path, "--config", "full",
                   cache=tmp_path / "hf").returncode == 0
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    process = subprocess.Popen([sys.executable, "-m", "claudesidian_tools", "export", str(folder), "--source",
                                str(DATA)], cwd=REPO, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HOME": str(tmp_path / "hf")}, preexec_fn=sigint_as_usual)
    err = interrupt_when(process, lambda: any(name.startswith(".out.") for name in os.listdir(tmp_path)))
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"claudesidian-synthetic: interrupted: {folder} is as it was"
    assert "Traceback" not in err
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the staging folder is gone


def test_interrupt_handling_is_deferred_while_files_move():
    from claudesidian_tools.interrupts import InterruptedAfterWrite, interrupt_deferred

    with pytest.raises(InterruptedAfterWrite, match="all moved"):
        with interrupt_deferred("all moved"):
            os.kill(os.getpid(), signal.SIGINT)  # held until the block ends
            moved = True
    assert moved


# --- figures and max_length -------------------------------------------------------------------------


def test_without_matplotlib_the_export_says_once_that_figures_were_skipped(source_path, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"  # an import of matplotlib fails, as without the extra
            "from claudesidian_tools.cli import main\n"
            f"sys.exit(main(['export', {str(tmp_path / 'out')!r}, '--source', {source_path!r}, '--config', 'full',"
            " '--config', 'pairs']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("figures skipped: install the plots extra") == 1
    assert not (tmp_path / "out" / "figures").exists()
    assert "figures/" not in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory, source_path):
    """The dry run's tiny model: its template is Qwen2.5's, which TRL patches for the SFT recipes' loss."""
    from tiny_model import need_trl

    need_trl()
    from claudesidian_tools.tiny_model import write_tiny_model

    return write_tiny_model(str(tmp_path_factory.mktemp("models") / "tiny"), source_path)


@pytest.mark.slow
def test_with_a_tokenizer_each_recipe_covers_its_longest_row(source_path, tokenizer_folder, tmp_path):
    from claudesidian_tools.lengths import load_tokenizer, token_lengths
    result = run_cli("export", str(tmp_path / "out"), "--source", source_path, "--config", "full_eval",
                     "--config", "sft", "--tokenizer", tokenizer_folder, cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    tokenizer = load_tokenizer(tokenizer_folder)
    for name, recipe_path, layout in (("full_eval", "kto_full_eval", "kto"), ("sft", "sft_sft", "messages")):
        longest = 0
        for rows in cs.load(name, source=source_path).values():
            _, prompts, replies = cs.LAYOUTS[layout].replies(rows.to_dict())
            longest = max(longest, int(token_lengths(tokenizer, prompts, replies)[1].max()))
        recipe = yaml.safe_load((tmp_path / "out" / "recipes" / f"{recipe_path}.yaml").read_text())
        assert recipe["max_length"] == longest, name
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert f"With the tokenizer `{tokenizer_folder}`" in card and "the longest row in tokens, so nothing is cut" in card


@pytest.mark.slow
def test_a_given_max_length_is_set_and_what_it_truncates_is_said(source_path, tokenizer_folder, tmp_path):
    result = run_cli("export", str(tmp_path / "out"), "--source", source_path, "--config", "full",
                     "--tokenizer", tokenizer_folder, "--max-length", "300", cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    recipe = yaml.safe_load((tmp_path / "out" / "recipes" / "kto_full.yaml").read_text())
    manifest = json.loads((tmp_path / "out" / exporter.MANIFEST).read_text())
    truncation = manifest["configs"][0]["stats"]["train"]["lengths"]["truncation"]
    assert recipe["max_length"] == 300 and truncation["max_length"] == 300 and truncation["truncated"] > 0
    card = " ".join((tmp_path / "out" / "README.md").read_text(encoding="utf-8").split())
    cut = truncation["truncated"]
    assert f"`max_length: 300` as given: across its splits it truncates {cut} rows and drops" in card


def test_the_card_says_each_desirable_only_config_in_its_own_layout(session_export):
    """`sft` and `sft_tools` pick the same rows; the card names the layout each writes them in."""
    made = {line.split("`")[1]: line for line in (session_export / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("- `sft") and "every desirable row" in line}
    assert "every desirable row, as one `messages` conversation" in made["sft"]
    assert "every desirable row, as one `messages_tools` conversation" in made["sft_tools"]
