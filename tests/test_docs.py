"""Documentation is code: every code block of the README and of the generated dataset card runs here,
every figure of the README's tables is what `stats` reports, and its lists of configs and options are
the builder's.

Where a block names the example model (`EXAMPLE_MODEL`) a tiny local model is put in its place, the
source path `../shared/data/...` becomes the test's source, and training gets a step limit; nothing
else of a block is changed."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import DATA, REPO, config_source
from fake_hub import FakeHub
from tiny_model import need_trl

import claudesidian_synthetic as cs
from claudesidian_tools import export as exporter
from claudesidian_tools.card import EXAMPLE_MODEL, render_texts
from claudesidian_tools.cli import option_default_text
from claudesidian_tools.stats import WELL_FORMED_BUT_FAILING, split_stats

README = (REPO / "README.md").read_text(encoding="utf-8")
README_SOURCE = "../shared/data/syngen_toolset_v1.0.0_claude.jsonl"
BIN = os.path.dirname(sys.executable)
TRAIN_LIMIT = ["--max_steps", "2", "--eval_steps", "1", "--report_to", "none", "--save_strategy", "no",
               "--max_length", "128"]
TOOLS_TRAIN_LIMIT = ["--max_steps", "2", "--eval_steps", "2", "--report_to", "none", "--save_strategy", "no",
                     "--max_length", "1024"]
CPU = ["--use_cpu", "true"]  # the card's block is for a GPU and says to add this without one


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def model(tmp_path_factory, source_path):
    """The README's dry-run model (`tiny-model`), its chat template Qwen2.5's: it renders `tools` and
    `tool_calls` as Qwen's does, and TRL marks its assistant turns for `assistant_only_loss`."""
    need_trl()
    from claudesidian_tools.tiny_model import write_tiny_model

    return write_tiny_model(str(tmp_path_factory.mktemp("models") / "tiny"), source_path)


def marked(code: str, model: str, source: str) -> str:
    """A block as run here: the tiny model for the example model, the test's data for `../shared/data`."""
    return code.replace(EXAMPLE_MODEL, model).replace(README_SOURCE, source).replace("../shared/data", str(DATA))



def run(command, cwd, **kwargs) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **kwargs.pop("env", {})}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result.stdout + result.stderr


def test_the_readme_has_the_blocks_this_file_runs():
    assert len(blocks(README, "bash")) == 5 and len(blocks(README, "python")) == 3 and len(blocks(README, "text")) == 1


@pytest.mark.slow
def test_readme_python_blocks_run(model, source_path, tmp_path):
    for number, code in enumerate(blocks(README, "python")):
        code = marked(code, model, source_path).replace(
            "KTOConfig(", 'KTOConfig(max_steps=2, max_length=128, report_to="none", save_strategy="no", '
        ).replace("SFTConfig(", 'SFTConfig(max_steps=2, report_to="none", save_strategy="no", ').replace(
            "max_length=8192", "max_length=1024")
        (tmp_path / f"block{number}.py").write_text(code, encoding="utf-8")
        run([sys.executable, f"block{number}.py"], cwd=tmp_path, env={"PYTHONPATH": str(REPO)})


@pytest.mark.slow
def test_readme_quickstart_and_stages_run(model, source_path, tmp_path):
    """The quickstart's commands, then the staged training's (SFT, then KTO and DPO from the SFT model, then
    the held-out check), then the dry run's (the tiny model, a recipe), in one folder as a user types them."""
    quickstart, stages, dry_run = [block for block in blocks(README, "bash") if "trl " in block]
    outputs = []
    for line in (quickstart + stages + dry_run).strip().splitlines():
        if "pip install" in line:
            print(f"not run: {line!r}: this test environment is that install (.ci/run installs .[test,kto,plots])")
            continue
        line = marked(line, model, source_path).replace(".venv/bin/", BIN + "/")
        if " trl " in f" {line}" or line.startswith(BIN + "/trl"):
            assert line.endswith("--use_cpu true")  # as written, it runs on a machine without a GPU
            # A tools recipe's prompts carry the tools block: on the CPU its rows are cut to 1024 tokens (the rows
            # whose prompt alone reaches that drop out) and evaluated once, at the end.
            limit = TRAIN_LIMIT if "_tools.yaml" not in line else TOOLS_TRAIN_LIMIT
            line += " " + " ".join(limit)
        outputs.append(run(["bash", "-c", line], cwd=tmp_path))
    trained = [output for output in outputs if "Training completed" in output]
    assert len(trained) == 5 and all("'eval_loss'" in output for output in trained)  # kto; sft, kto, dpo; sft
    assert (tmp_path / "tiny-model" / "tokenizer.json").is_file()
    held_out = [line for line in outputs[-3].splitlines() if line.startswith("prompts of ")]
    assert len(held_out) == 12 and all(line.endswith(": 0") for line in held_out)


@pytest.mark.slow
def test_readme_main_command_runs_verbatim_in_a_fresh_copy(tmp_path):
    """The README's first command, exactly, in a copy of the repository with ../shared beside it."""
    main_command = blocks(README, "bash")[0].strip()
    assert main_command.startswith("python3 -m venv .venv") and "\n" not in main_command
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (tmp_path / "repo" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tmp_path / "repo" / name)
    (tmp_path / "shared").mkdir()
    os.symlink(DATA, tmp_path / "shared" / "data")
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(["bash", "-c", main_command], cwd=tmp_path / "repo", env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 508 train rows (254 desirable, 254 undesirable)" in result.stderr
    assert len((tmp_path / "repo" / "balanced_254.jsonl").read_text(encoding="utf-8").splitlines()) == 508
    # That install (not editable, only the core dependencies) exports too: the card's template is in the wheel.
    export = subprocess.run([".venv/bin/claudesidian-synthetic", "export", "kto-data", "--source", README_SOURCE,
                             "--config", "balanced_254"], cwd=tmp_path / "repo", env=env, capture_output=True,
                            text=True, timeout=900)
    assert export.returncode == 0, export.stderr[-3000:]
    assert "figures skipped: install the plots extra" in export.stderr  # the core install has no matplotlib
    assert "## Configs" in (tmp_path / "repo" / "kto-data" / "README.md").read_text(encoding="utf-8")


def test_readme_test_command_is_this_suite():
    print("not run: `bash .ci/run` is the command that runs this test suite; CI runs it")
    assert blocks(README, "bash")[1].strip() == "bash .ci/run"


def test_readme_command_line_synopsis_matches_the_parser():
    from claudesidian_tools.cli import make_parser

    (synopsis,) = blocks(README, "text")
    subcommands = make_parser()._subparsers._group_actions[0].choices
    for line in synopsis.splitlines():
        words = line.split()
        if words and words[0] == "claudesidian-synthetic" and words[1] in subcommands:
            command, options = words[1], set()
        options = {option for action in subcommands[command]._actions for option in action.option_strings}
        for option in re.findall(r"\[(--[a-z-]+)", line):
            assert option in options, (command, option)


def _table(section_title: str, number: int = 0) -> list[list[str]]:
    """The cells of the `number`-th table after a README heading."""
    text = README.split(section_title + "\n")[1]
    tables = [part for part in text.split("\n\n") if part.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in tables[number].splitlines()[2:]]


def test_readme_configs_list_is_the_configs_table():
    rows = _table("## Configs", 0)
    assert [re.match(r"`(\w+)`", row[0]).group(1) for row in rows] == list(cs.CONFIGS)
    for row in rows:
        named = cs.CONFIGS[re.match(r"`(\w+)`", row[0]).group(1)]
        assert row[1] == named.purpose and ("(default)" in row[0]) == (named.name == cs.DEFAULT_CONFIG_NAME)
        own = {key: value for key, value in named.option_defaults().items() if value != cs.OPTION_DEFAULTS[key]}
        stated = sorted(filter(None, row[2].strip("`").split(", ")))
        assert stated == sorted(f"{key}={value!r}".replace("'", '"') for key, value in own.items()), row
        assert row[3] == ("yes" if named.exported else "no")


def test_readme_says_which_exported_configs_each_datasets_loads_as_the_layouts_say():
    """The last column of the version table: every config of the default export whose layout's oldest
    `datasets` is at most the row's, and the others named."""
    from packaging.version import Version

    rows = _table("## Which `datasets` takes which path\n")
    assert [row[0].split()[0] for row in rows] == ["3.6", "4.7", "5.x"]
    for row in rows:
        version = Version(row[0].split()[0].replace(".x", ""))
        cell = row[3]
        assert cell.startswith("every config"), cell
        named = re.findall(r"`(\w+)`", cell.split(" but ")[1]) if " but " in cell else []
        newer = [name for name in exporter.DEFAULT_EXPORTS
                 if Version(cs.LAYOUTS[cs.CONFIGS[name].option_defaults()["layout"]].oldest_datasets) > version]
        assert named == newer, (row[0], cell)
    text = " ".join(README.split("## Which `datasets` takes which path")[1].split("\n## ")[0].split())
    assert f"`sft_tools` and `kto_tools` store `Json` values, which `datasets` reads from {cs.JSON_DATASETS} on" in text


def test_readme_option_list_is_the_declarations():
    listed = re.findall(r"^- `(\w+)` \(`(--[a-z-]+)`\): (.*)$", README.split("### Options")[1], flags=re.M)
    assert [name for name, _, _ in listed] == [field.name for field in cs.OPTIONS]
    for (name, flag, text), field in zip(listed, cs.OPTIONS):
        assert flag == "--" + name.replace("_", "-")
        assert text == f"{field.metadata['help']} {option_default_text(name)}."


def test_readme_configs_figures_are_what_stats_reports(source_path):
    rows = _table("## Configs", 1)
    assert len(rows) == 20
    for cells in rows:
        name = re.match(r"`(\w+)`", cells[0]).group(1)
        stats = split_stats(cs.load(name, split=cells[1], source=config_source(name, source_path))).result()
        weights = stats.get("kto_weights")
        expected = [str(stats["rows"]), f"{stats['desirable']} / {stats['undesirable']}" if "desirable" in stats
                    else ""]
        size = 8 if name.endswith("kto_tools") else 4  # the recipe's batch size, as the header says
        if "first_50" in stats:
            expected += [f"{stats['first_50']['desirable']} / {stats['first_50']['undesirable']}",
                         f"{stats['homogeneous_batches'][str(size)]} of {stats['rows'] // size}",
                         f"{stats['prompt_repeat_batches'][str(size)]} of {stats['rows'] // size}",
                         f"{weights['desirable_weight']}, {weights['undesirable_weight']}"]
        else:
            expected += ["", "", "", ""]
        assert cells[2:] == expected, cells


def test_readme_tool_call_figures_are_what_stats_reports(source_path):
    rows = {cells[0]: cells[1:] for cells in _table("## What the tool calls teach: the checks, the gate, the native "
                                                    "format")}
    funnel = split_stats(cs.load("full", split="train", source=source_path),
                         schemas=cs.load_tool_schemas()).result()["tool_calls"]
    for label in cs.LABEL_NAMES:
        assert rows[label] == [str(funnel[label]["rows"]), *map(str, funnel[label]["passing"].values())]
    text = " ".join(README.split("## What the tool calls teach")[1].split("## Columns")[0].split())
    top = funnel["desirable"]["top_reasons"]
    assert f"`memoryManager_createState` ({top[0]['count']} calls)" in text and top[0]["parameter"] == "snapshot"
    undesirable = funnel["undesirable"]
    assert (f"{undesirable['bad_format']} are bad by format and {undesirable['well_formed_but_failing']} are "
            f"{WELL_FORMED_BUT_FAILING}") in text
    assert (f"{funnel['desirable']['calls_without_result']} desirable and {undesirable['calls_without_result']} "
            "undesirable rows hold a call that got no result") in text


def test_readme_pairs_figures_are_what_stats_reports(source_path):
    text = " ".join(README.split("## Train in stages")[1].split("### What the loss learns from")[0].split())
    funnel = split_stats(cs.load("pairs", split="train", source=source_path),
                         schemas=cs.load_tool_schemas()).result()["tool_calls"]["desirable"]
    failing = funnel["rows"] - funnel["passing"][cs.CHECKS[-1]]
    assert f"{failing} of its {funnel['rows']} chosen replies fail a tool-call check" in text
    gated = cs.load("pairs", source=source_path, layout="preference_tools", gate="drop")
    assert f"({len(gated['train'])} train and {len(gated['test'])} test pairs whose chosen replies pass" in text
    passing = split_stats(gated["train"], schemas=cs.load_tool_schemas()).result()["tool_calls"]["desirable"]
    assert passing["passing"][cs.CHECKS[-1]] == passing["rows"] == len(gated["train"])


def test_readme_family_figures_are_what_stats_reports():
    members = _table("## The family: claude, chatgpt and copilot", 0)
    assert [cells[0] for cells in members] == [f"`{name}`" for name in cs.MEMBERS]
    for cells in members:
        member = cs.MEMBERS[cells[0].strip("`")]
        labels = [json.loads(line)["label"] for line in (DATA / member.file).read_text(encoding="utf-8").splitlines()
                  if line.strip()]
        assert cells[1:4] == [f"`{member.file}`", str(member.rows), f"{sum(labels)} / {len(labels) - sum(labels)}"]
        assert len(labels) == member.rows
    rows = _table("## The family: claude, chatgpt and copilot", 1)
    assert len(rows) == 3
    stats = split_stats(cs.load("family", split="train", source=str(DATA)),
                        schemas=cs.load_tool_schemas()).result()["members"]
    for cells in rows:
        entry = stats[cells[2]]
        passing = [entry[label]["passing"][cs.CHECKS[-1]] for label in cs.LABEL_NAMES]
        assert cells[3:] == [f"{entry['rows']} ({entry['share']:.1%})",
                             f"{entry['desirable']['rows']} / {entry['undesirable']['rows']}",
                             f"{passing[0]} / {passing[1]}",
                             f"{entry['desirable']['reply_chars']['median']:g} / "
                             f"{entry['undesirable']['reply_chars']['median']:g}"], cells


def _rows_and_their_stats(section_title: str, rows: int, source_path: str):
    """Each row of the README table under a heading whose first cells name a config and a split, with what
    `stats` reports for that split."""
    table = _table(section_title)
    assert len(table) == rows
    for cells in table:
        name = re.match(r"`(\w+)`", cells[0]).group(1)
        yield cells, split_stats(cs.load(name, split=cells[1], source=source_path)).result()


def test_readme_loss_figures_are_what_stats_reports(source_path):
    for cells, stats in _rows_and_their_stats("### What the loss learns from", 5, source_path):
        loss = stats["loss"]
        assert cells[2:] == [loss["sees"], f"{loss['characters']['share']:.1%}", f"{loss['tool_output_share']:.1%}"]
    tools = split_stats(cs.load("kto_tools", split="train", source=source_path)).result()["lengths"]
    text = " ".join(README.split("### What the loss learns from")[1].split("### A dry run")[0].split())
    assert f"a median of {tools['desirable']['tools_chars']['median']:,.0f} characters" in text


def test_readme_length_figures_are_what_stats_reports(source_path):
    for cells, stats in _rows_and_their_stats("## What a subset teaches: lengths and truncation", 4, source_path):
        lengths = stats["lengths"]
        desirable, undesirable = lengths["desirable"], lengths["undesirable"]
        assert cells[2:] == [f"{desirable['rows']} / {undesirable['rows']}",
                             f"{desirable['completion_chars']['median']:g} / "
                             f"{undesirable['completion_chars']['median']:g}",
                             f"{lengths['ks_completion_chars']:.2f}"], cells
    figures = README.split("## What a subset teaches")[1]
    assert "396 instead of the\n508 of `balanced_254`" in figures or "396 instead of the 508" in " ".join(
        figures.split())


@pytest.fixture
def card_folder(session_export):
    """The session's export (read only): the default export and three configs more."""
    return session_export


def test_card_python_blocks_run(card_folder, tmp_path):
    card = (card_folder / "README.md").read_text(encoding="utf-8")
    first, builder, legacy = blocks(card, "python")
    output = run([sys.executable, "-c", first + "\nprint('ROWS', len(ds))"], cwd=card_folder.parent)
    assert "ROWS 508" in output
    print("not run here: the builder block for a datasets without Json runs in tests/compat under each datasets "
          "of CI's matrix, the loading-script block (datasets<4) under datasets 3.6")
    assert "cs.load(" in builder and "trust_remote_code=True" in legacy


@pytest.mark.slow
def test_card_trl_blocks_run(card_folder, model, tmp_path):
    """The card's `trl kto`, `trl sft` and `trl dpo` lines, from the folder that holds a copy of the export
    made elsewhere (as on a GPU machine): each trains from its recipe and evaluates on every row of the
    held-out split."""
    card_folder = shutil.copytree(card_folder, tmp_path / "elsewhere" / card_folder.name)
    card = (card_folder / "README.md").read_text(encoding="utf-8")
    commands = blocks(card, "bash")
    assert [command.split()[1] for command in commands] == ["kto", "sft", "dpo"]
    assert "add\n`--use_cpu true`" in card or "add `--use_cpu true`" in card
    manifest = {entry["recipe"]: entry for entry in exporter.read_manifest(str(card_folder))["configs"]}
    for command in commands:
        recipe_path = command.split("--config ")[1].split()[0]
        recipe = yaml.safe_load((card_folder.parent / recipe_path).read_text(encoding="utf-8"))
        test_rows = manifest[recipe_path.split("/", 1)[1]]["stats"]["test"]["rows"]
        size = recipe.get("per_device_eval_batch_size", 8)  # TRL's default eval batch: 8
        batches = test_rows // size if recipe.get("dataloader_drop_last") else -(-test_rows // size)
        tools = recipe_path.endswith("_tools.yaml")  # its prompts carry the tools block: cut at 1024 tokens on a CPU
        command = marked(command.strip(), model, "") + " " + " ".join((TOOLS_TRAIN_LIMIT if tools else TRAIN_LIMIT)
                                                                      + CPU)
        output = run(["bash", "-c", command.replace("trl ", f"{BIN}/trl ", 1)], cwd=card_folder.parent)
        assert "Training completed" in output and "'eval_loss'" in output
        if not tools:  # at 1024 tokens TRL leaves out the tools rows whose prompt alone is that long
            assert f"{batches}/{batches}" in output, (recipe_path, batches)  # every test row, in the recipe's batches


def test_pushed_card_fetches_from_the_repository_it_names(card_folder, tmp_path):
    """The card `push` uploads: its download lines run against the Hub (a fake one at HF_ENDPOINT)."""
    repo_id, repo = "me/claudesidian-kto", tmp_path / "repo"
    shutil.copytree(card_folder, repo)
    manifest = exporter.read_manifest(str(repo))
    # What `push` uploads: the card and the recipes rendered for the repository.
    for path, text in render_texts(manifest, location=repo_id, is_repo=True).items():
        (repo / path).write_text(text)
    hub = FakeHub()
    hub.add(repo_id, "main", str(repo))
    try:
        card = (repo / "README.md").read_text(encoding="utf-8")
        for command in blocks(card, "bash"):
            fetch = command.strip().splitlines()[0]
            assert fetch.startswith(f"hf download {repo_id} recipes/")
            env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "home")}
            run(["bash", "-c", fetch.replace("hf download", f"{BIN}/hf download")], cwd=tmp_path, env=env)
            recipe = yaml.safe_load((tmp_path / fetch.split()[3]).read_text(encoding="utf-8"))
            assert recipe["dataset_name"] == repo_id
        offline = re.search(r"`(hf download [^`]+)`", card).group(1)
        run(["bash", "-c", offline.replace("DIR", "whole").replace("hf download", f"{BIN}/hf download")],
            cwd=tmp_path, env=env)
        assert (tmp_path / "whole" / "data" / "full_eval" / "test-00000-of-00001.parquet").is_file()
        # The builder block fetches the builder from the repository and builds the Json configs from the source.
        (tmp_path / "source").mkdir()
        shutil.copyfile(DATA / cs.SOURCE_FILENAME, tmp_path / "source" / cs.SOURCE_FILENAME)
        hub.add(cs.SOURCE_REPO_ID, "main", str(tmp_path / "source"))
        (builder,) = [code for code in blocks(card, "python") if "cs.load(" in code]
        builder = builder.replace("source = None", f"source = {str(DATA)!r}")  # the family's files, offline
        output = run([sys.executable, "-c", builder + "\nprint('BUILT', {name: {split: len(rows) for split, rows in "
                      "dataset.items()} for name, dataset in built.items()}, cs.__file__)"], cwd=tmp_path, env=env)
        (line,) = [line for line in output.splitlines() if line.startswith("BUILT ")]
        sizes, path = line.removeprefix("BUILT ").rsplit(" ", 1)
        assert path.startswith(str(tmp_path / "home")) and path.endswith(os.path.join("loading_script",
                                                                                       "claudesidian_synthetic.py"))
        assert sizes == str({entry["name"]: {split: stats["rows"] for split, stats in entry["stats"].items()}
                             for entry in manifest["configs"] if cs.LAYOUTS[entry["layout"]].tools})
    finally:
        hub.close()
