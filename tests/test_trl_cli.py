"""TRL's own command line (`trl kto`) on an export, on the CPU with a tiny local model: from a recipe,
with evaluation on the held-out split, and with nothing but the dataset named."""

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


def trl_kto(*args, cwd):
    trl = shutil.which("trl") or os.path.join(os.path.dirname(os.sys.executable), "trl")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([trl, "kto", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
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
                     "--eval_steps", "2", *QUICK, cwd=tmp_path)
    assert "'eval_loss'" in output
    assert "25/25" in output  # the 100 test rows in eval batches of the recipe's 4


def test_recipe_without_a_test_split(setup, tmp_path):
    folder, model = setup
    output = trl_kto("--config", str(folder / "recipes" / "kto_balanced_254.yaml"), "--model_name_or_path", model,
                     "--output_dir", str(tmp_path / "o"), *QUICK, cwd=tmp_path)
    assert "'eval_loss'" not in output


def test_evaluation_with_nothing_but_the_dataset_named(setup, tmp_path):
    folder, model = setup
    output = trl_kto("--model_name_or_path", model, "--dataset_name", str(folder), "--dataset_config", "full_eval",
                     "--eval_strategy", "steps", "--eval_steps", "2", "--output_dir", str(tmp_path / "o"), *QUICK,
                     cwd=tmp_path)
    assert "'eval_loss'" in output
