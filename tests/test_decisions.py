"""Training-right: KTO rows of one assistant turn (`kto_tools`), what each trainer's loss sees, and the chat
templates that render the tools layouts. Expected values are written by hand or read off the data by simple
code of this file, never computed by the code under test."""

import importlib.resources
import json
import os
import pathlib
import re

import numpy as np
import pytest
from conftest import run_main
from tiny_model import QWEN25_TEMPLATE, need_trl, tiny_model_and_tokenizer

import claudesidian_synthetic as cs
from claudesidian_tools.stats import count_config, split_stats

MISTRAL_TEMPLATE = pathlib.Path(__file__).parent / "chat_templates" / "mistral_v0_3.jinja"
CONTEXT = json.dumps({"sessionId": "s", "workspaceId": "w", "sessionDescription": "d", "sessionMemory": "m",
                      "toolContext": "t", "primaryGoal": "g", "subgoal": "s"})


def call(index: int, name: str = "a_b") -> dict:
    return {"type": "function", "id": f"call{index:05d}", "function": {"name": name, "arguments": {}}}


def result(index: int) -> dict:
    return {"role": "tool", "content": "{}", "tool_call_id": f"call{index:05d}", "name": "a_b"}


# ---------------------------------------------------------------- which turns are decisions


def test_every_assistant_turn_after_its_results_is_a_decision():
    reply = [{"role": "assistant", "content": "", "tool_calls": [call(1)]}, result(1),
             {"role": "assistant", "content": "Next.", "tool_calls": [call(2)]}, result(2),
             {"role": "assistant", "content": "Done."}]
    assert cs.decision_turns(reply) == [0, 2, 4]


def test_no_decision_after_a_call_that_got_no_result():
    """The answer after it was written as if the result had come: its context lacks what the model waits for."""
    reply = [{"role": "assistant", "content": "", "tool_calls": [call(1)]},
             {"role": "assistant", "content": "Work saved."}]
    assert cs.decision_turns(reply) == [0]
    # Parallel calls with one result: the other call is unanswered, so the turns stop there too.
    reply = [{"role": "assistant", "content": "", "tool_calls": [call(1), call(2)]}, result(2),
             {"role": "assistant", "content": "Both done."}]
    assert cs.decision_turns(reply) == [0]


def test_an_empty_final_answer_is_no_decision_but_an_empty_reply_is_one():
    reply = [{"role": "assistant", "content": "", "tool_calls": [call(1)]}, result(1),
             {"role": "assistant", "content": " \n"}]
    assert cs.decision_turns(reply) == [0]
    assert cs.decision_turns([{"role": "assistant", "content": ""}]) == [0]


def test_the_labelled_turn_holds_the_first_call_that_fails_else_it_is_the_first(schemas):
    opening = (f'tool_call: vaultManager_openNote\narguments: {{"path": "a.md", "context": {CONTEXT}}}\n\n'
               "Result: {}\n\n")
    parsed = cs.parse_reply(opening + "tool_call: vaultManager_noSuchTool\narguments: {}\n\nResult: {}\n\nDone.")
    decisions = cs.reply_decisions(parsed, cs.check_reply(parsed, schemas))
    assert (decisions.turns, decisions.labelled, decisions.rule) == ([0, 2, 4], 1, "first_failing_call")
    passing = cs.parse_reply(opening + "Opened.")
    checked = cs.check_reply(passing, schemas)
    assert checked.first_failed == len(cs.CHECKS)  # it passes every check
    decisions = cs.reply_decisions(passing, checked)
    assert (decisions.turns, decisions.labelled, decisions.rule) == ([0, 2], 0, "first_turn")
    # A failing call after a call without a result is past the decisions: the first turn carries the label.
    unanswered = cs.parse_reply(opening.replace("Result: {}\n\n", "") + "Then.\n\ntool_call: x_y\narguments: {}\n\nok")
    decisions = cs.reply_decisions(unanswered, cs.check_reply(unanswered, schemas))
    assert (decisions.turns, decisions.labelled, decisions.rule) == ([0], 0, "first_turn")


@pytest.fixture(scope="module")
def schemas():
    return cs.load_tool_schemas()


def test_decision_rows_give_every_turn_of_a_desirable_row_and_one_of_an_undesirable_row():
    facts = cs.TurnFacts(counts=np.array([3, 2, 1, 0]), assistant_turns=np.array([3, 3, 1, 0]),
                         labelled=np.array([0, 1, 0, 0]), rules=np.array([1, 0, 1, 1], dtype=np.uint8),
                         starts=np.array([0, 3, 5, 6]), chars=np.array([10, 11, 12, 20, 21, 30]))
    labels = np.array([True, False, True, False])
    rows, turns, chars = cs.decision_rows(facts, labels, np.array([1, 0, 2, 3]))
    assert rows.tolist() == [1, 0, 0, 0, 2]  # row 3's calls do not parse: it has no decision
    assert turns.tolist() == [1, 0, 1, 2, 0]  # row 1 is undesirable: its labelled turn only
    assert chars.tolist() == [21, 10, 11, 12, 30]


# ---------------------------------------------------------------- kto_tools on v1.0.0


@pytest.fixture(scope="module")
def kto_tools(source_path):
    return cs.load("kto_tools", source=source_path)


def test_kto_tools_holds_one_assistant_turn_per_row(kto_tools, source_path):
    for split in ("train", "test"):
        for row in kto_tools[split]:
            (completion,) = row["completion"]
            assert completion["role"] == "assistant"
            assert row["prompt"][-1]["role"] in ("user", "tool")  # the model speaks after the request or a result
            assert not any(message["role"] == "tool" for message in row["completion"])
    built = cs.builder("kto_tools", source=source_path)
    notes = {split: plan.notes["decisions"] for split, plan in built.plan_splits().items()}
    # Pinned figures of v1.0.0 (their rules are tested above on hand-made replies).
    assert notes["train"] == {"desirable_rows": 567, "desirable_turns": 1236, "turns_left_out": 0,
                              "undesirable_rows": 304, "labelled_by": {"first_failing_call": 141, "first_turn": 163}}
    assert notes["test"]["labelled_by"] == {"first_failing_call": 9, "first_turn": 23}
    assert (len(kto_tools["train"]), sum(kto_tools["train"]["label"])) == (1236 + 304, 1236)
    assert (len(kto_tools["test"]), sum(kto_tools["test"]["label"])) == (141 + 32, 141)


def test_a_desirable_rows_decisions_are_its_assistant_turns_in_order(kto_tools, source_rows, schemas):
    """Read on its own here: the source row's reply as chat messages, each assistant message a decision."""
    by_request = {}
    for row in kto_tools["train"]:
        if row["label"]:
            by_request.setdefault(row["prompt"][0]["content"], []).append(row)
    request = "Search for notes about 'continuous integration' but limit results to 5 and include content snippets."
    (source,) = [row for row in source_rows if row["conversations"][0]["content"] == request]
    reply = cs.native_messages(cs.parse_reply(source["conversations"][-1]["content"]))
    turns = sorted(by_request[request], key=lambda row: len(row["prompt"]))
    assert [row["completion"][0] for row in turns] == [message for message in reply if message["role"] == "assistant"]
    for row in turns:  # each prompt is the request and the reply up to that turn, results included
        assert row["prompt"] == source["conversations"][:-1] + reply[: len(row["prompt"]) - 1]


def test_kto_tools_mixed_order_keeps_a_rows_turns_apart_and_holds_out_the_same_prompts(source_path):
    counted, _ = count_config("kto_tools", source=source_path)
    from claudesidian_tools.stats import config_stats, held_out_leaks

    stats = config_stats(counted, batch_size=8)
    for split in ("train", "test"):
        assert stats[split]["homogeneous_batches"]["8"] == 0
        assert stats[split]["prompt_repeat_batches"]["8"] == 0  # by source prompt: a row's turns stay apart
    assert stats["shared_prompts"] == 0
    full_eval, _ = count_config("full_eval", source=source_path)
    leaks = held_out_leaks({"kto_tools": {split: each.prompts() for split, each in counted.items()},
                            "full_eval": {split: each.prompts() for split, each in full_eval.items()}})
    assert [leak["shared"] for leak in leaks] == [0, 0]
    # Its test prompts are full_eval's (the rows whose calls do not parse aside): the same held-out prompts.
    assert set(counted["test"].prompts().tolist()) <= set(full_eval["test"].prompts().tolist())


def test_the_gate_on_decisions(source_path):
    dropped = cs.load("full", source=source_path, layout="kto_tools", gate="drop", split="train")
    assert sum(not label for label in dropped["label"]) == 254 - 5  # only the source's own undesirable rows
    with pytest.raises(cs.OptionError, match=r"layout='kto_tools' needs the tool calls of every row it holds to "
                                             r"parse, and 32 rows of the train split do not"):
        cs.load("full", source=source_path, layout="kto_tools")


# ---------------------------------------------------------------- what the loss sees


def _chars(messages) -> int:
    total = 0
    for message in messages:
        total += len(message["content"] or "")
        for each in message.get("tool_calls") or ():
            total += len(each["function"]["name"]) + len(json.dumps(each["function"]["arguments"]))
    return total


def test_what_the_loss_sees_in_characters(source_path, source_rows, kto_tools):
    full = split_stats(cs.load("full", source=source_path, split="train")).result()["loss"]
    results = [sum(map(len, re.findall(r"\nResult: (.*?)(?=\n\n|\Z)", "\n" + row["conversations"][-1]["content"],
                                       flags=re.S))) for row in source_rows]
    replies = sum(len(row["conversations"][-1]["content"]) for row in source_rows)
    assert full["sees"] == "the completion"
    assert abs(full["tool_output_share"] - sum(results) / replies) < 0.002  # 0.28: a quarter is tool output
    assert round(full["tool_output_share"], 2) == 0.28
    test = kto_tools["test"]
    loss = split_stats(test).result()["loss"]
    assert loss["tool_output_share"] == 0.0
    seen = sum(_chars(row["completion"]) for row in test)
    total = seen + sum(_chars(row["prompt"]) + len(json.dumps(row["tools"])) for row in test)
    assert loss["characters"] == {"in_loss": seen, "total": total, "share": round(seen / total, 4)}
    sft = split_stats(cs.load("sft_tools", source=source_path, split="test")).result()["loss"]
    assert sft["tool_output_share"] == 0.0 and sft["sees"].startswith("the assistant's turns")
    text_sft = split_stats(cs.load("sft", source=source_path, split="test")).result()["loss"]
    assert text_sft["tool_output_share"] > 0.25  # the text format writes results into the assistant's turn


def test_stats_prints_the_trainer_of_the_configs_layout(source_path):
    result = run_main("stats", "sft_tools", "--source", source_path)
    assert result.returncode == 0, result.stderr
    assert "dropped by TRL's SFTTrainer" in result.stdout and "KTOTrainer" not in result.stdout
    assert re.search(r"desirable prompt chars +min \d+.*\(the messages; the tools block apart\)", result.stdout)
    assert re.search(r"desirable tools chars +min \d+.*\(the tool definitions in every prompt", result.stdout)
    assert re.search(r"loss sees +the assistant's turns \(assistant_only_loss\): \d+\.\d% of the characters",
                     result.stdout)


# ---------------------------------------------------------------- chat templates


def _templates() -> dict:
    need_trl()
    llama = (importlib.resources.files("trl") / "chat_templates" / "llama3_1.jinja").read_text(encoding="utf-8")
    return {"qwen2.5": QWEN25_TEMPLATE, "llama3.1": llama, "mistral": MISTRAL_TEMPLATE.read_text(encoding="utf-8")}


def _conversations(row: dict) -> list:
    if "messages" in row:
        return [row["messages"]]
    if "completion" in row:
        return [row["prompt"] + row["completion"]]
    return [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]


def _parallel(conversation) -> bool:
    return any(len(message.get("tool_calls") or ()) > 1 for message in conversation)


@pytest.mark.parametrize("config, options", [("kto_tools", {}), ("sft_tools", {}),
                                             ("pairs", {"layout": "preference_tools"})])
def test_every_tools_row_renders_with_qwen_and_mistral_and_llama_refuses_only_parallel_calls(config, options,
                                                                                              source_path):
    from transformers.utils.chat_template_utils import render_jinja_template

    templates = _templates()
    for split, dataset in cs.load(config, source=source_path, **options).items():
        for name, template in templates.items():
            refused = []
            for position, row in enumerate(dataset):
                for conversation in _conversations(row):
                    try:
                        render_jinja_template(conversations=[conversation], tools=row["tools"], chat_template=template,
                                              bos_token="<s>", eos_token="</s>")
                    except Exception as error:  # noqa: BLE001 - whatever the template raises
                        refused.append((position, str(error)))
            expected = [] if name != "llama3.1" else [
                position for position, row in enumerate(dataset) for conversation in _conversations(row)
                if _parallel(conversation)]
            assert [position for position, _ in refused] == expected, (config, split, name, refused[:3])
            assert all("only supports single tool-calls" in error for _, error in refused)


def test_rows_a_template_cannot_render_are_counted_and_named(kto_tools, tmp_path):
    """With Llama 3.1's template (one call per message), the rows holding parallel calls: no crash."""
    _, tokenizer = tiny_model_and_tokenizer(_templates()["llama3.1"])
    counted = split_stats(kto_tools["train"], tokenizer=tokenizer).result()
    expected = [position for position, row in enumerate(kto_tools["train"])
                if _parallel(row["prompt"] + row["completion"])]
    assert expected and counted["unrenderable"]["positions"] == expected
    assert counted["unrenderable"]["rows"] == len(expected)
    assert "only supports single tool-calls" in counted["unrenderable"]["reason"]
    assert counted["lengths"]["truncation"]["rows"] == len(kto_tools["train"]) - len(expected)


# ---------------------------------------------------------------- assistant-only SFT loss, through TRL itself


def _assistant_turns_as_qwen_renders_them(messages: list, tools: list) -> str:
    """The text of each assistant turn after its `<|im_start|>assistant` header, as Qwen2.5's own template
    (the copy kept in tests/tiny_model.py) renders it: what SFT with assistant-only loss should learn."""
    from transformers.utils.chat_template_utils import render_jinja_template

    def render(part):
        return render_jinja_template(conversations=[part], tools=tools, chat_template=QWEN25_TEMPLATE)[0][0]

    turns = ""
    for position, message in enumerate(messages):
        if message["role"] == "assistant":
            turn = render(messages[: position + 1])[len(render(messages[:position])):]
            assert turn.startswith("<|im_start|>assistant")
            turns += turn[len("<|im_start|>assistant"):]
    return turns


@pytest.mark.slow
def test_trl_sft_trains_from_the_recipe_and_its_loss_sees_exactly_the_assistant_turns(session_export, source_path,
                                                                                       tmp_path):
    """`trl sft --config recipes/sft_sft_tools.yaml` with the README's tiny model (Qwen2.5's template) trains;
    then the same recipe through TRL's own SFTTrainer: the tokens its loss sees decode to the assistant's
    turns and nothing else (no tool definition, user text or tool result), and `stats --tokenizer` counts
    exactly those tokens."""
    import shutil
    import subprocess
    import sys

    need_trl()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import ModelConfig, ScriptArguments, SFTConfig, SFTTrainer, TrlParser

    from claudesidian_tools.lengths import load_tokenizer

    made = run_main("tiny-model", tmp_path / "tiny", "--source", source_path)
    assert made.returncode == 0, made.stderr
    mask = os.umask(0)
    os.umask(mask)
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in (tmp_path / "tiny").iterdir()}
    assert set(modes.values()) == {oct(0o666 & ~mask)}, modes  # as the user's other files: a shared machine reads it
    shutil.copytree(session_export, tmp_path / "dataset")
    recipe = "dataset/recipes/sft_sft_tools.yaml"
    assert "assistant_only_loss: true" in (tmp_path / recipe).read_text(encoding="utf-8")
    trl = [str(pathlib.Path(sys.executable).parent / "trl"), "sft", "--config", recipe, "--model_name_or_path", "tiny",
           "--output_dir", "out", "--use_cpu", "true", "--max_steps", "1", "--max_length", "1024", "--report_to",
           "none", "--save_strategy", "no", "--eval_strategy", "no"]
    trained = subprocess.run(trl, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                             env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert trained.returncode == 0 and "Training completed" in trained.stdout + trained.stderr, trained.stderr[-3000:]

    monkey = pytest.MonkeyPatch()
    monkey.chdir(tmp_path)
    try:
        script, args, _ = TrlParser((ScriptArguments, SFTConfig, ModelConfig)).parse_args_and_config(
            ["--config", recipe, "--output_dir", "out", "--use_cpu", "true", "--report_to", "none",
             "--model_name_or_path", "tiny", "--eval_strategy", "no"])
        args.max_length = None  # every token: nothing cut
        from datasets import load_dataset

        test = load_dataset(script.dataset_name, name=script.dataset_config, split="test")
        tokenizer = AutoTokenizer.from_pretrained("tiny")
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained("tiny"), args=args, train_dataset=test,
                             processing_class=tokenizer)
    finally:
        monkey.undo()
    prepared = trainer.train_dataset
    assert len(prepared) == len(test) == 65
    seen = 0
    for row, example in zip(test, prepared):
        learned = [token for token, label in zip(example["input_ids"], example["labels"]) if label != -100]
        text = tokenizer.decode(learned)
        assert text == _assistant_turns_as_qwen_renders_them(row["messages"], row["tools"])
        assert "<tools>" not in text and "<tool_response>" not in text and "<|im_start|>user" not in text
        seen += len(learned)
    counted = split_stats(test, tokenizer=load_tokenizer(str(tmp_path / "tiny"))).result()["loss"]["tokens"]
    assert counted["in_loss"] == seen and counted["total"] == sum(len(example["input_ids"]) for example in prepared)


def test_every_sft_recipe_sets_assistant_only_loss_and_no_other_does(session_export):
    import yaml

    recipes = {path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
               for path in (session_export / "recipes").glob("*.yaml")}
    assert {"sft_sft.yaml", "sft_sft_tools.yaml"} <= set(recipes)
    for name, recipe in recipes.items():
        assert recipe.get("assistant_only_loss") is (True if name.startswith("sft_") else None), name


def test_a_layout_no_trainer_reads_has_no_recipe(session_export):
    from claudesidian_tools.card import render_recipe
    from claudesidian_tools.manifest import read_manifest

    (conv,) = [entry for entry in read_manifest(str(session_export))["configs"] if entry["name"] == "conv"]
    assert conv["recipe"] is None and not list((session_export / "recipes").glob("*conv*"))
    with pytest.raises(cs.OptionError, match=r"conv has no TRL recipe: its layout conversations \(the published "
                                             r"file's columns\) is read by no TRL trainer; export it with a layout"):
        render_recipe(conv, location="dataset")


def test_an_sft_config_with_a_template_trl_cannot_patch_is_one_line(source_path, tmp_path):
    """The loss figures of SFT need TRL's training template: a plain template is refused as TRL would."""
    need_trl()
    tiny_model_and_tokenizer()[1].save_pretrained(tmp_path / "plain")
    result = run_main("stats", "sft", "--tokenizer", tmp_path / "plain", "--source", source_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"claudesidian-synthetic: error: --tokenizer {tmp_path / 'plain'}: TRL cannot mark the "
                           "assistant's turns in this chat template")
    assert "{% generation %}" in line and result.stdout == ""


def test_tiny_model_refuses_a_folder_that_holds_files(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = run_main("tiny-model", tmp_path / "taken")
    assert result.returncode == 2 and (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    assert result.stderr.strip().endswith("holds files: the tiny model is written into a new or empty folder; "
                                          "choose another")


def test_gitignore_holds_the_folders_the_readme_writes():
    from conftest import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ignored = set((REPO / ".gitignore").read_text(encoding="utf-8").split())
    written = set(re.findall(r"--output_dir (\S+)", readme)) | set(re.findall(r"tiny-model (\S+) --source", readme))
    written |= set(re.findall(r"claudesidian-synthetic export (\S+)", readme)) - {"DIR", "\"$EXPORT\""}
    assert written and all(f"/{folder}/" in ignored for folder in written), written - ignored


def test_a_recipe_leaves_out_a_last_partial_batch_of_one_label(session_export, source_path):
    """kto_tools' whole batches of 8 are mixed; the 4 rows left after them are one label's: the recipe drops them."""
    import yaml

    labels = cs.load("kto_tools", source=source_path, split="train")["label"]
    left = len(labels) % 8
    assert left and len(set(labels[-left:])) == 1
    text = (session_export / "recipes" / "kto_kto_tools.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["dataloader_drop_last"] is True
    assert f"the last, partial batch of train and of test holds one label ({left} rows, " in text
    full_eval = yaml.safe_load((session_export / "recipes" / "kto_full_eval.yaml").read_text(encoding="utf-8"))
    assert "dataloader_drop_last" not in full_eval  # 900 and 100 rows: no partial batch of 4


def test_an_sft_config_holds_out_prompts_from_a_source_of_desirable_rows_only(write_source, source_rows):
    """SFT needs desirable rows on both sides, not both labels."""
    path = write_source([row for row in source_rows if row["label"]][:200])
    built = cs.load("sft", source=path)
    assert len(built["test"]) and len(built["train"]) + len(built["test"]) <= 200
    with pytest.raises(cs.OptionError, match=r"leaves the test split with one label"):
        cs.load("balanced_custom", source=path, test_size=0.1)  # KTO's batches need both


def test_a_chat_template_that_renders_no_tools_is_said(kto_tools, source_path):
    """The tests' plain template ignores `tools`: the model would never see the definitions, and stats says so."""
    need_trl()
    from claudesidian_tools.stats import format_lengths

    _, tokenizer = tiny_model_and_tokenizer()
    report = split_stats(kto_tools["test"].select(range(8)), tokenizer=tokenizer).result()["lengths"]
    assert report["tools_tokens"]["max"] == 0
    assert "this chat template renders no tools" in format_lengths(report, dict(zip(cs.LABEL_NAMES, cs.LABEL_NAMES)))
