"""TRL's own command line on an export, on the CPU with a tiny local model: `trl kto` from a recipe
without a test split, with nothing but the dataset named, and from the card's line of an export moved
elsewhere. (The card's `trl kto`, `trl sft` and `trl dpo` lines, which evaluate on the held-out split,
run in tests/test_docs.py.)"""

import os
import shutil
import subprocess

import pytest
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
