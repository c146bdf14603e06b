"""TRL's own command line on an export, on the CPU with a tiny local model: `trl kto` from a recipe,
with evaluation on the held-out split, and with nothing but the dataset named; `trl sft` and `trl dpo`
from their recipes; a recipe of an export that was moved elsewhere."""

import os
import shutil
import subprocess

import pytest
import yaml
from tiny_model import need_trl, save_tiny_model

from claudesidian_tools import export as exporter

pytestmark = pytest.mark.kto
QUICK = ["--max_steps", "3", "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no",
         "--max_length", "128", "--logging_steps", "1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, source_path):
    need_trl()
    folder = tmp_path_factory.mktemp("trl") / "dataset"
    exporter.export(str(folder), source=source_path)
    return folder, save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def trl_kto(*args, cwd, command="kto"):
    trl = shutil.which("trl") or os.path.join(os.path.dirname(os.sys.executable), "trl")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([trl, command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    print(output[-3000:])  # the lines TRL printed, for the record (pytest -s or a failure shows them)
    assert result.returncode == 0, output[-5000:]
    assert "Training completed" in output
    return output


def test_recipe_with_evaluation(setup, tmp_path):
    folder, model = setup
    recipe = folder / "recipes" / "kto_full_eval.yaml"
    assert yaml.safe_load(recipe.read_text())["eval_strategy"] == "steps"
    output = trl_kto("--config", str(recipe), "--model_name_or_path", model, "--output_dir", str(tmp_path / "o"),
                     "--eval_steps", "2", *QUICK, cwd=folder.parent)  # the recipe names the folder from its parent
    assert "'eval_loss'" in output
    assert "25/25" in output  # the 100 test rows in eval batches of the recipe's 4


def test_recipe_without_a_test_split(setup, tmp_path):
    folder, model = setup
    output = trl_kto("--config", str(folder / "recipes" / "kto_balanced_254.yaml"), "--model_name_or_path", model,
                     "--output_dir", str(tmp_path / "o"), *QUICK, cwd=folder.parent)
    assert "'eval_loss'" not in output


def test_evaluation_with_nothing_but_the_dataset_named(setup, tmp_path):
    folder, model = setup
    output = trl_kto("--model_name_or_path", model, "--dataset_name", str(folder), "--dataset_config", "full_eval",
                     "--eval_strategy", "steps", "--eval_steps", "2", "--output_dir", str(tmp_path / "o"), *QUICK,
                     cwd=tmp_path)
    assert "'eval_loss'" in output


@pytest.mark.parametrize(("command", "recipe", "test_rows"), [("sft", "sft_sft.yaml", 75), ("dpo", "dpo_pairs.yaml", 3)])
def test_sft_and_dpo_recipes_train_and_evaluate(setup, tmp_path, command, recipe, test_rows):
    folder, model = setup
    assert yaml.safe_load((folder / "recipes" / recipe).read_text())["dataset_test_split"] == "test"
    output = trl_kto("--config", str(folder / "recipes" / recipe), "--model_name_or_path", model, "--output_dir",
                     str(tmp_path / "o"), "--eval_steps", "2", "--per_device_eval_batch_size", "4", *QUICK,
                     cwd=folder.parent, command=command)
    assert "'eval_loss'" in output
    assert f"{-(-test_rows // 4)}/{-(-test_rows // 4)}" in output  # every test row evaluated, in batches of 4


def test_a_moved_export_trains_from_its_new_place(setup, tmp_path):
    folder, model = setup
    moved = tmp_path / "elsewhere" / folder.name
    shutil.copytree(folder, moved)
    card = (moved / "README.md").read_text(encoding="utf-8")
    (line,) = [line for line in card.splitlines() if line.startswith("trl kto --config")]
    args = line.split()[2:]
    args[args.index("--model_name_or_path") + 1] = model
    output = trl_kto(*args, "--eval_steps", "2", *QUICK, cwd=moved.parent)  # the card's line, from the new place
    assert "'eval_loss'" in output
