"""The syngen_toolset family (claude, chatgpt, copilot) as pinned sources: where the files come from, the family
configs and their guarantees across members, and the figures per member. Expected values are read off the data
files by simple code of this file, or off the data README, never computed by the code under test."""

import hashlib
import http.server
import json
import math
import re
import shutil
import threading
from collections import Counter

import pytest
from conftest import DATA, run_cli, run_main

import claudesidian_synthetic as cs
from claudesidian_tools.stats import config_stats, count_config, held_out_leaks, split_stats


def rows_of(member: str) -> list:
    lines = (DATA / cs.MEMBERS[member].file).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def prompt_key(row) -> str:
    return json.dumps(row["conversations"][:-1] if "conversations" in row else row["prompt"], sort_keys=True)


@pytest.fixture(scope="module")
def family_rows() -> dict:
    return {member: rows_of(member) for member in cs.MEMBERS}


# ---------------------------------------------------------------- the pinned members


def test_the_members_are_the_files_the_data_readme_pins():
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    for member in cs.MEMBERS.values():
        (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{member.file}` |")]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] == str(member.rows) and cells[3] == f"{member.size:,}" and cells[4] == f"`{member.sha256}`"
        data = (DATA / member.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == member.sha256 and len(data) == member.size
        if member.url:  # the pinned download address the data README gives, at the author's commit
            assert member.url.startswith("https://raw.githubusercontent.com/ProfSynapse/Synaptic-Tuner/"
                                         "3da8e857e953ba18e1177b77ae2da39da29139ab/Datasets/archived%20datasets/")
            assert member.url.endswith(member.file)


# ---------------------------------------------------------------- where the files come from


def test_a_folder_serves_every_config(published_path):
    """The single-file configs take claude's file from the folder: balanced_254 is still the published file."""
    built = cs.load("balanced_254", split="train", source=str(DATA), layout="conversations")
    published = [json.loads(line) for line in open(published_path, encoding="utf-8")]
    assert [{"conversations": row["conversations"], "label": row["label"], "context": row["context"]}
            for row in built] == published


def test_a_family_config_given_one_file_or_a_folder_without_a_member_is_one_line(source_path, tmp_path):
    result = run_main("build", "family", "--source", source_path, "--out", tmp_path / "out.jsonl")
    assert result.returncode == 2 and not (tmp_path / "out.jsonl").exists()
    assert result.stderr.strip() == (
        f"claudesidian-synthetic: error: {source_path}: is one file, and this config reads 3: "
        "syngen_toolset_v1.0.0_claude.jsonl, syngen_toolset_v1.0.0_chatgpt.jsonl, syngen_toolset_v1.0.1_copilot.jsonl. "
        "Pass --source FOLDER, the folder that holds them under those names")
    folder = tmp_path / "mirror"
    folder.mkdir()
    shutil.copyfile(source_path, folder / cs.SOURCE_FILENAME)
    result = run_main("build", "family", "--source", folder, "--out", tmp_path / "out.jsonl")
    assert result.returncode == 2 and not (tmp_path / "out.jsonl").exists()
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"claudesidian-synthetic: error: {folder}: the folder holds no "
                           "syngen_toolset_v1.0.0_chatgpt.jsonl and no syngen_toolset_v1.0.1_copilot.jsonl. Put the "
                           "files there under that name")


def test_a_member_file_with_other_bytes_is_refused_naming_it(tmp_path):
    folder = tmp_path / "mirror"
    shutil.copytree(DATA, folder)
    changed = folder / cs.MEMBERS["chatgpt"].file
    changed.chmod(0o644)
    changed.write_text(changed.read_text(encoding="utf-8").replace("true", "true ", 1), encoding="utf-8")
    result = run_main("stats", "family", "--source", folder)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"claudesidian-synthetic: error: {changed}: sha256 ")
    assert f"is not chatgpt's pinned file syngen_toolset_v1.0.0_chatgpt.jsonl {cs.MEMBERS['chatgpt'].sha256}" in line
    assert "and family promises those exact bytes. Put the pinned syngen_toolset_v1.0.0_chatgpt.jsonl there" in line
    # Any bytes for the config that promises none.
    assert run_main("stats", "family_balanced", "--source", folder, "--json").returncode == 0


@pytest.mark.parametrize("name", ["family", "family_sft_tools", "family_kto_tools"])
def test_what_a_changed_member_file_is_told_to_use_instead_works(tmp_path, name):
    folder = tmp_path / "mirror"
    shutil.copytree(DATA, folder)
    changed = folder / cs.MEMBERS["copilot"].file
    changed.chmod(0o644)
    changed.write_text(changed.read_text(encoding="utf-8").replace("true", "true ", 1), encoding="utf-8")
    (line,) = run_main("stats", name, "--source", folder).stderr.strip().splitlines()
    assert f"(it downloads from {cs.MEMBERS['copilot'].url})" in line  # where the pinned file is, said in place
    suggestion = line.split(", or for other bytes use the config ")[1]
    if suggestion.endswith(" on each member's file alone"):
        command = [suggestion.split()[0], "--source", changed]
    else:
        config, options = suggestion.split(" with ")
        command = [config, *options.replace(" and ", " ").split(), "--source", folder]
    result = run_main("stats", *command, "--json")
    assert result.returncode == 0, (command, result.stderr)
    assert json.loads(result.stdout)["train"]["rows"] > 0


def test_a_mapping_entry_the_config_does_not_read_is_refused_not_ignored():
    given = {"copilot": str(DATA / cs.MEMBERS["copilot"].file)}
    with pytest.raises(cs.OptionError, match=r"names copilot, which name='full' does not read \(it reads claude\): "
                                             r"leave it out"):
        cs.builder("full", source=given)
    both = {member: str(DATA / cs.MEMBERS[member].file) for member in cs.MEMBERS}
    with pytest.raises(cs.OptionError, match=r"names chatgpt and copilot, which name='sft_tools' does not read"):
        cs.builder("sft_tools", source=both)
    assert cs.builder("family", source=both).config.name == "family"  # every entry read: taken


def test_a_mapping_names_members_that_exist_each_with_its_own_file():
    with pytest.raises(cs.OptionError, match=r"'gpt4' is no member of the family; the members are claude, chatgpt, "
                                             r"copilot"):
        cs.builder("family", source={"gpt4": str(DATA / cs.MEMBERS["chatgpt"].file)})
    with pytest.raises(cs.OptionError, match=r"syngen_toolset_v1.0.1_copilot.jsonl is copilot's file "
                                             r"\(syngen_toolset_v1.0.1_copilot.jsonl\), given for chatgpt: give "
                                             r"chatgpt its own file, syngen_toolset_v1.0.0_chatgpt.jsonl"):
        cs.builder("family", source={"chatgpt": str(DATA / cs.MEMBERS["copilot"].file)})
    # Renamed, the same bytes are still copilot's: the pin says so.
    with pytest.raises(cs.SourceError, match=r"is copilot's file \(syngen_toolset_v1.0.1_copilot.jsonl\), not "
                                             r"chatgpt's, and family promises those exact bytes"):
        mapping = {member: str(DATA / cs.MEMBERS[member].file) for member in cs.MEMBERS}
        mapping["chatgpt"] = str(_renamed_copy(DATA / cs.MEMBERS["copilot"].file))
        cs.builder("family", source=mapping).plan_splits()


def _renamed_copy(path):
    import tempfile

    folder = tempfile.mkdtemp()
    target = f"{folder}/chatgpt-mirror.jsonl"
    shutil.copyfile(path, target)
    return target


def test_a_member_missing_from_a_mapping_downloads_and_a_url_is_fetched(tmp_path, own_cache):
    """A local server stands for the author's repository: the mapping's URL is downloaded (and cached), and a
    member the mapping leaves out, with downloads off, is one error naming `source`."""
    folder = DATA

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{cs.MEMBERS['copilot'].file}"
        mapping = {"claude": str(DATA / cs.SOURCE_FILENAME), "chatgpt": str(DATA / cs.MEMBERS["chatgpt"].file),
                   "copilot": url}
        built = cs.load("family", source=mapping, split="test")
        assert Counter(built["source"])["copilot"] > 0
    finally:
        server.shutdown()
    result = run_cli("stats", "family", "--source", str(DATA / cs.SOURCE_FILENAME), env={"HF_HUB_OFFLINE": "1"},
                     cache=tmp_path / "hf")
    assert result.returncode == 2  # one file for three
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cs.datasets.config, "HF_HUB_OFFLINE", True)
        with pytest.raises(cs.SourceError, match=r"could not be downloaded|downloads are off") as refused:
            cs.builder("family", source={"claude": mapping["claude"], "chatgpt": mapping["chatgpt"]}).plan_splits()
    assert "pass source=FOLDER, a folder holding syngen_toolset_v1.0.1_copilot.jsonl" in str(refused.value)


# ---------------------------------------------------------------- the family configs


@pytest.fixture(scope="module")
def family():
    return cs.load("family", source=str(DATA))


def test_family_holds_every_row_of_the_three_files_each_naming_its_member(family, family_rows):
    both = [row for split in family.values() for row in split]
    assert len(both) == sum(map(len, family_rows.values())) == 3225
    counted = Counter((row["source"], row["label"]) for row in both)
    for member, rows in family_rows.items():
        labels = Counter(row["label"] for row in rows)
        assert (counted[(member, True)], counted[(member, False)]) == (labels[True], labels[False])


def test_held_out_prompts_are_disjoint_across_the_family_and_stratified_by_member_and_label(family, family_rows):
    prompts = {member: {prompt_key(row) for row in rows} for member, rows in family_rows.items()}
    shared = {key for member in prompts for other in prompts if member < other
              for key in prompts[member] & prompts[other]}
    assert len(shared) == 17  # the data README: 2 claude/copilot, 15 chatgpt/copilot
    sides = {split: {prompt_key(row) for row in rows} for split, rows in family.items()}
    assert not sides["train"] & sides["test"]
    assert {key for key in shared if key in sides["test"]} | {key for key in shared if key in sides["train"]} == shared
    total = sum(map(len, family_rows.values()))
    groups = Counter(prompt_key(row) for rows in family_rows.values() for row in rows)
    largest = max(groups.values())
    test = Counter((row["source"], row["label"]) for row in family["test"])
    assert len(family["test"]) == round(0.1 * total)
    for member, rows in family_rows.items():
        for label in (True, False):
            exact = len(family["test"]) * sum(row["label"] == label for row in rows) / total
            assert abs(test[(member, label)] - exact) <= largest, (member, label)


def test_family_mixes_every_batch_and_keeps_a_prompts_rows_apart_across_members(family):
    for split in family.values():
        labels, keys = split["label"], [prompt_key(row) for row in split]
        for start in range(0, len(split) - 3):
            assert len(set(labels[start : start + 4])) == 2
        aligned = [keys[start : start + 4] for start in range(0, len(keys) - len(keys) % 4, 4)]
        assert sum(len(set(batch)) < 4 for batch in aligned) == 0


def test_duplicates_are_counted_per_member_and_dedupe_works_across_members(family_rows, tmp_path):
    lines = {member: [line for line in (DATA / cs.MEMBERS[member].file).read_bytes().splitlines() if line.strip()]
             for member in cs.MEMBERS}
    assert len(lines["copilot"]) - len(set(lines["copilot"])) == 77
    deduped = cs.load("family", source=str(DATA), dedupe=True)
    kept = Counter(row["source"] for split in deduped.values() for row in split)
    assert {member: len(set(each)) for member, each in lines.items()} == dict(kept)
    # A line of claude's repeated in chatgpt's file: one copy is left (family_balanced takes any bytes).
    folder = tmp_path / "mirror"
    shutil.copytree(DATA, folder)
    chatgpt = folder / cs.MEMBERS["chatgpt"].file
    chatgpt.chmod(0o644)
    chatgpt.write_bytes(chatgpt.read_bytes() + lines["claude"][0] + b"\n")
    planned = cs.builder("family_balanced", source=str(folder), dedupe=True).plan_splits()["train"]
    assert planned.notes["dedupe_dropped"] == 19 + 6 + 77 + 1  # each file's own, and claude's line in chatgpt's


def test_per_member_balances_the_labels_within_each_member(family_rows):
    balanced = cs.load("family_balanced", source=str(DATA), per_member=True, split="train")
    counted = Counter((row["source"], row["label"]) for row in balanced)
    for member, rows in family_rows.items():
        smaller = min(Counter(row["label"] for row in rows).values())
        assert counted[(member, True)] == counted[(member, False)] == smaller
    overall = cs.load("family_balanced", source=str(DATA), split="train")
    labels = Counter(row["label"] for rows in family_rows.values() for row in rows)
    assert Counter(overall["label"]) == {True: min(labels.values()), False: min(labels.values())}
    with pytest.raises(cs.OptionError, match=r"per_member=True balances each member by its own smaller label \(or "
                                             r"the ratio\); desirable=100 cannot apply to each member"):
        cs.builder("family_balanced", per_member=True, desirable=100)
    result = run_main("build", "balanced_custom", "--per-member")
    assert result.returncode == 2 and result.stderr.strip() == (
        "claudesidian-synthetic: error: --per-member balances the labels within each member of the family, and the "
        "config balanced_custom reads one file (syngen_toolset_v1.0.0_claude.jsonl): use the config family_balanced "
        "for the family")


def test_the_family_tools_configs_hold_the_same_prompts_out(family):
    counted = {name: count_config(name, source=str(DATA))[0] for name in ("family", "family_sft_tools",
                                                                           "family_kto_tools")}
    leaks = held_out_leaks({name: {split: each.prompts() for split, each in splits.items()}
                            for name, splits in counted.items()})
    assert len(leaks) == 6 and all(leak["shared"] == 0 for leak in leaks)
    for name, splits in counted.items():
        assert config_stats(splits)["shared_prompts"] == 0
        sources = set()
        for each in splits.values():
            sources |= set(each.result()["members"])
        assert sources == set(cs.MEMBERS), name


# ---------------------------------------------------------------- the figures per member


def test_the_figures_per_member_add_up_to_the_split(family, family_rows):
    stats = split_stats(family["train"], schemas=cs.load_tool_schemas()).result()
    members = stats["members"]
    assert sum(entry["rows"] for entry in members.values()) == stats["rows"]
    assert math.isclose(sum(entry["share"] for entry in members.values()), 1.0, abs_tol=0.001)
    for label in cs.LABEL_NAMES:
        for check in cs.CHECKS:
            assert sum(entry[label]["passing"][check] for entry in members.values()) == \
                stats["tool_calls"][label]["passing"][check]
    # Copilot's desirable replies almost all pass; chatgpt's fail most often at the first check.
    copilot, chatgpt = members["copilot"]["desirable"], members["chatgpt"]["desirable"]
    assert copilot["passing"]["context"] / copilot["rows"] > 0.95
    assert chatgpt["top_reasons"][0]["code"] == "arguments_not_json"
    replies = [len(row["completion"][0]["content"]) for row in family["train"] if row["source"] == "copilot"
               and row["label"]]
    assert copilot["reply_chars"]["max"] == max(replies)


def test_stats_and_the_card_say_the_members(tmp_path, session_export):
    result = run_main("stats", "family", "--source", DATA)
    assert result.returncode == 0, result.stderr
    assert re.search(r"member copilot +1294 rows \(44\.6% of the split\): 646 desirable, 648 undesirable; passing "
                     r"every check \d+ desirable, \d+ undesirable", result.stdout)
    card = (session_export / "README.md").read_text(encoding="utf-8")
    section = card.split("## The family: one generator, three models")[1].split("\n## ")[0]
    for member in cs.MEMBERS.values():
        listed = f"| `{member.name}` | `{member.file}` | {member.version} | {member.rows} | `{member.sha256}` |"
        assert listed in section
    assert "| `family` | `train` | copilot | 1294 | 44.6% | 646 | 648 |" in section


def test_verify_rebuilds_a_family_export_from_the_folder(tmp_path):
    from claudesidian_tools import export as exporter

    exporter.export(str(tmp_path / "made"), [exporter.parse_config_spec("family")], source=str(DATA))
    result = run_cli("verify", str(tmp_path / "made"), "--source", str(DATA), cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "family: 3225 rows identical (train 2903, test 322)"
    result = run_cli("verify", str(tmp_path / "made"), "--source", str(DATA / cs.SOURCE_FILENAME),
                     cache=tmp_path / "hf")
    assert result.returncode == 2 and "is one file, and the export was made from the family's 3" in result.stderr


def test_the_family_holds_out_the_prompts_the_claude_configs_hold_out(source_path, family):
    """Claude's rows of family's test split are full_eval's, and no stage of claude configs and family configs
    trains on a prompt another is evaluated on."""
    full_eval = cs.load("full_eval", source=source_path, split="test")
    claude_test = [row for row in family["test"] if row["source"] == "claude"]
    assert sorted(map(prompt_key, claude_test)) == sorted(map(prompt_key, full_eval))
    names = ("full_eval", "sft_tools", "kto_tools", "family", "family_sft_tools", "family_kto_tools")
    counted = {name: count_config(name, source=str(DATA))[0] for name in names}
    leaks = held_out_leaks({name: {split: each.prompts() for split, each in splits.items()}
                            for name, splits in counted.items()})
    assert len(leaks) == 30 and [leak for leak in leaks if leak["shared"]] == []


def test_a_family_held_out_split_of_hand_made_rows():
    """Claude's part is held_out_rows of claude's rows alone; another member's row goes where its prompt is."""
    import numpy as np

    labels = np.array([True, False, True, False, True, False, True, False])
    prompts = np.array(["p", "q", "r", "s", "p", "r", "x", "y"])
    members = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    claude = cs.held_out_rows(labels[:4].tolist(), prompts[:4].tolist(), 0.5, 42)
    held = cs.family_held_out(labels, prompts, members, 0.5, 42)
    assert [row for row in held if row < 4] == claude
    tested = {prompts[row] for row in claude}
    assert (4 in held) == ("p" in tested) and (5 in held) == ("r" in tested)  # with claude's row of its prompt
