"""Documentation is code: every code block of the README and of the generated dataset card runs here,
and every figure of the README's configs table is what `stats` reports.

Where a block names the example model (`EXAMPLE_MODEL`) a tiny local model is put in its place, the
source path `../shared/data/...` becomes the test's source, and training gets a step limit; nothing
else of a block is changed."""

import ast
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import DATA, REPO
from fake_hub import FakeHub
from tiny_model import need_trl, save_tiny_model

import claudesidian_synthetic as cs
from claudesidian_tools import export as exporter
from claudesidian_tools.kto import dataset_stats

README = (REPO / "README.md").read_text(encoding="utf-8")
README_SOURCE = "../shared/data/syngen_toolset_v1.0.0_claude.jsonl"
BIN = os.path.dirname(sys.executable)
TRAIN_LIMIT = ["--max_steps", "2", "--eval_steps", "1", "--report_to", "none", "--save_strategy", "no",
               "--max_length", "128"]
CPU = ["--use_cpu", "true"]  # the card's block is for a GPU and says to add this without one


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    need_trl()
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def marked(code: str, model: str, source: str) -> str:
    return code.replace(exporter.EXAMPLE_MODEL, model).replace(README_SOURCE, source)


def run(command, cwd, **kwargs) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **kwargs.pop("env", {})}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result.stdout + result.stderr


def test_the_readme_has_the_blocks_this_file_runs():
    assert len(blocks(README, "bash")) == 3 and len(blocks(README, "python")) == 2 and len(blocks(README, "text")) == 1


def test_readme_python_blocks_run(model, source_path, tmp_path):
    for number, code in enumerate(blocks(README, "python")):
        code = marked(code, model, source_path).replace(
            "KTOConfig(", 'KTOConfig(max_steps=2, max_length=128, report_to="none", save_strategy="no", '
        )
        (tmp_path / f"block{number}.py").write_text(code, encoding="utf-8")
        run([sys.executable, f"block{number}.py"], cwd=tmp_path, env={"PYTHONPATH": str(REPO)})


def test_readme_quickstart_commands_run(model, source_path, tmp_path):
    (quickstart,) = [block for block in blocks(README, "bash") if "trl kto" in block]
    for line in quickstart.strip().splitlines():
        if "pip install" in line:
            print(f"not run: {line!r}: this test environment is that install (.ci/run installs .[test,kto])")
            continue
        line = marked(line, model, source_path).replace(".venv/bin/", BIN + "/")
        if "trl kto" in line:
            assert line.endswith("--use_cpu true")  # as written, it runs on a machine without a GPU
            line += " " + " ".join(TRAIN_LIMIT)
        output = run(["bash", "-c", line], cwd=tmp_path)
        if "trl kto" in line:
            assert "Training completed" in output and "'eval_loss'" in output


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


def _readme_config_rows():
    section = README.split("## Configs")[1].split("\n\n")[1]
    for line in section.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = re.match(r"`(\w+)`", cells[0]).group(1)
        options_text = re.search(r", `(.*)`", cells[0])
        options = {}
        if options_text:
            options = ast.literal_eval("{" + re.sub(r"(\w+)=", r"'\1': ", options_text.group(1)) + "}")
        yield name, options, cells[1:]


def test_readme_configs_table_is_what_stats_reports(source_path):
    rows = list(_readme_config_rows())
    assert len(rows) == 6
    for name, options, cells in rows:
        split, figures = cells[0], cells[1:]
        stats = dataset_stats(cs.load(name, split=split, source=source_path, **options))
        weights = stats["kto_weights"]
        assert figures == [
            str(stats["rows"]), f"{stats['desirable']} / {stats['undesirable']}",
            f"{stats['first_50']['desirable']} / {stats['first_50']['undesirable']}",
            f"{stats['homogeneous_batches']['4']} of {stats['rows'] // 4}",
            f"{weights['desirable_weight']}, {weights['undesirable_weight']}",
        ], (name, options, split)


@pytest.fixture(scope="module")
def card_folder(tmp_path_factory, source_path):
    folder = tmp_path_factory.mktemp("card") / "dataset"
    exporter.export(str(folder), source=source_path)
    return folder


def test_card_python_blocks_run(card_folder, tmp_path):
    card = (card_folder / "README.md").read_text(encoding="utf-8")
    first, legacy = blocks(card, "python")
    output = run([sys.executable, "-c", first + "\nprint('ROWS', len(ds))"], cwd=tmp_path)
    assert "ROWS 508" in output
    print("not run here: the loading-script block needs datasets<4; tests/compat runs it under datasets 3.6")
    assert "trust_remote_code=True" in legacy


def test_card_trl_block_runs(card_folder, model, tmp_path):
    card = (card_folder / "README.md").read_text(encoding="utf-8")
    (command,) = blocks(card, "bash")
    assert "add\n`--use_cpu true`" in card or "add `--use_cpu true`" in card
    command = marked(command.strip(), model, "") + " " + " ".join(TRAIN_LIMIT + CPU)
    output = run(["bash", "-c", command.replace("trl kto", f"{BIN}/trl kto")], cwd=tmp_path)
    assert "Training completed" in output and "'eval_loss'" in output


def test_pushed_card_fetches_from_the_repository_it_names(card_folder, tmp_path):
    """After `push`, the card's download lines run against the Hub (a fake one at HF_ENDPOINT)."""
    repo = tmp_path / "repo"
    shutil.copytree(card_folder, repo)
    exporter._relocate(str(repo), "me/claudesidian-kto")  # what `push` uploads
    hub = FakeHub()
    hub.add("me/claudesidian-kto", "main", str(repo))
    try:
        card = (repo / "README.md").read_text(encoding="utf-8")
        (command,) = blocks(card, "bash")
        fetch = command.strip().splitlines()[0]
        assert fetch.startswith("hf download me/claudesidian-kto recipes/kto_full_eval.yaml")
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "home")}
        run(["bash", "-c", fetch.replace("hf download", f"{BIN}/hf download")], cwd=tmp_path, env=env)
        recipe = yaml.safe_load((tmp_path / "recipes" / "kto_full_eval.yaml").read_text(encoding="utf-8"))
        assert recipe["dataset_name"] == "me/claudesidian-kto"
        offline = re.search(r"`(hf download [^`]+)`", card).group(1)
        run(["bash", "-c", offline.replace("DIR", "whole").replace("hf download", f"{BIN}/hf download")],
            cwd=tmp_path, env=env)
        assert (tmp_path / "whole" / "data" / "full_eval" / "test-00000-of-00001.parquet").is_file()
    finally:
        hub.close()
