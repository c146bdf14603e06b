"""The `claudesidian-synthetic` command, run as users run it (a subprocess)."""

import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import DATA, PUBLISHED_SHA256, REPO, last_line, run_cli, run_main, sigint_as_usual

import claudesidian_synthetic as cs
from claudesidian_tools.cli import cli_voice, main, make_parser

COMMANDS = ["configs", "build", "stats", "export", "push", "infos", "verify"]


def test_help_in_a_fresh_process():
    result = run_cli("--help")
    assert result.returncode == 0 and "usage: claudesidian-synthetic" in result.stdout


@pytest.mark.parametrize("command", [[name] for name in COMMANDS])
def test_help(command):
    result = run_main(*command, "--help")
    assert result.returncode == 0 and f"usage: claudesidian-synthetic {command[0]}" in result.stdout


def test_every_config_option_is_a_flag_with_its_declared_help_and_default():
    """The command line is built from the builder's declarations: one flag per option, its help, its
    default (and each config's own), so neither can drift from the other."""
    build = make_parser()._subparsers._group_actions[0].choices["build"]
    flags = {action.option_strings[0]: action for action in build._actions if action.option_strings}
    for field in cs.OPTIONS:
        action = flags["--" + field.name.replace("_", "-")]
        assert action.help.startswith(field.metadata["help"].replace("%", "%%")), field.name
        assert "(default: " in action.help, field.name
        for named in cs.CONFIGS.values():
            value = named.option_defaults()[field.name]
            if value != field.default:
                assert f"{value} for" in action.help and named.name in action.help, (field.name, named.name)
        rule = field.metadata["rule"]
        if rule.choices:
            assert tuple(action.choices) == rule.choices
    text = " ".join(run_cli("build", "--help").stdout.split())
    for default in ("(default: 42)", "(default: main)", "(default: train)", "(default: kto; messages for sft; "
                    "messages_tools for sft_tools, family_sft_tools; kto_tools for kto_tools, family_kto_tools; "
                    "preference for pairs)",
                    "(default: shuffle; source for full; mixed for full_eval, balanced_length_matched, kto_tools, "
                    "family, family_kto_tools)",
                    "(default: keep; drop for sft, sft_tools, family_sft_tools; relabel for kto_tools, "
                    "family_kto_tools)",
                    "(default: stdout)", "(default: off)"):
        assert default in text


def test_the_config_argument_offers_the_configs_table():
    build = make_parser()._subparsers._group_actions[0].choices["build"]
    (config,) = [action for action in build._actions if action.dest == "config"]
    assert list(config.choices) == list(cs.CONFIGS)


def test_configs_lists_the_table():
    lines = run_main("configs").stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(cs.CONFIGS)
    assert "pinned to the v1.0.0 bytes" in lines[0] and "[test_size=0.1, layout=messages, gate=drop]" in lines[5]


def test_a_misspelled_option_before_the_command_gets_the_closest_one():
    result = run_main("--verison")
    assert result.returncode == 2 and "unrecognized argument --verison (did you mean --version?)" in last_line(result)


def test_a_misspelled_option_gets_the_subcommands_usage_and_the_closest_option():
    result = run_main("build", "full", "--sorce", "x.jsonl")
    assert result.returncode == 2
    assert "usage: claudesidian-synthetic build" in result.stderr
    assert "unrecognized arguments: --sorce (did you mean --source?)" in last_line(result)


def test_version():
    result = run_main("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"claudesidian-synthetic {cs.__version__}"


def test_build_balanced_254_in_the_published_layout_is_byte_identical_to_the_published_file(source_path, tmp_path):
    out = tmp_path / "balanced.jsonl"
    result = run_cli("build", "balanced_254", "--source", source_path, "--layout", "conversations", "--out", str(out),
                     cache=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == PUBLISHED_SHA256
    assert "wrote 508 train rows (254 desirable, 254 undesirable)" in result.stderr


def test_out_file_mode_follows_the_umask(source_path, tmp_path):
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "b.jsonl"
    code = ("import os, sys; os.umask(0o027); from claudesidian_tools.cli import main; "
            f"sys.exit(main(['build', 'balanced_254', '--source', {source_path!r}, '--out', {str(out)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert os.listdir(tmp_path / "out") == ["b.jsonl"]  # no temporary file left beside it


def test_build_kto_format_to_stdout(source_path, tmp_path):
    result = run_main("build", "balanced_custom", "--source", source_path, "--desirable", "30", "--undesirable", "20",
                     "--seed", "7")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 50 and sum(row["label"] for row in rows) == 30
    assert list(rows[0]) == ["prompt", "completion", "label", "context"]


def test_build_the_test_split(source_path, tmp_path):
    result = run_main("build", "full", "--source", source_path, "--test-size", "0.1", "--split", "test")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 100 and "wrote 100 test rows" in result.stderr


def test_stats_json_of_balanced_254_reproduces_the_published_figures(source_path, tmp_path):
    result = run_main("stats", "balanced_254", "--source", source_path, "--json")
    stats = json.loads(result.stdout)
    assert list(stats) == ["train"]
    train = stats["train"]
    assert (train["rows"], train["desirable"], train["undesirable"]) == (508, 254, 254)
    assert train["first_50"] == {"desirable": 26, "undesirable": 24}  # the seed README's figure
    assert train["homogeneous_batches"]["4"] == 17  # 17 of 127 batches of 4 hold a single label
    assert train["kto_weights"] == {"desirable_weight": 1.0, "undesirable_weight": 1.0}


def test_stats_full_mixed_has_no_single_label_batch_of_4(source_path, tmp_path):
    result = run_main("stats", "--json", "full", "--order", "mixed", "--batch-size", "4", "--source", source_path)
    train = json.loads(result.stdout)["train"]
    assert train["homogeneous_batches"]["4"] == 0 and train["rows"] == 1000 and train["duplicates"] == 19
    assert train["homogeneous_batches"]["8"] == 0 and train["prompts"] == 933


def test_stats_reports_each_split_and_the_prompts_they_share(source_path, tmp_path):
    result = run_main("stats", "full", "--test-size", "0.1", "--source", source_path, "--json")
    stats = json.loads(result.stdout)
    assert stats["shared_prompts"] == 0
    assert stats["train"]["rows"] + stats["test"]["rows"] == 1000
    text = run_main("stats", "full", "--test-size", "0.1", "--source", source_path).stdout
    assert "[train]" in text and "[test]" in text and "prompts shared by splits   0" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "full", "--source", "/nonexistent.jsonl"], "no such file"),
        (["build", "balanced_254", "--test-size", "0.1"], "it is the published file"),
        (["build", "full", "--source", ""], "(empty): the source path is empty. Pass --source FILE"),
        (["build", "full", "--split", "test"], "--split test: the config full has the split(s) train; add --test-size"),
        (["build", "full", "--test-size", "0.1", "--split", "validation"],
         "--split validation: the config full has the split(s) train, test"),
        (["build", "full", "--out", "/nonexistent-folder/x.jsonl"], "the folder /nonexistent-folder does not exist"),
        (["build", "full", "--out", "/tmp"], "--out /tmp is a folder: give a file path"),
        (["build", "full", "--out", ""], "--out is empty: give a file path"),
        (["build", "full", "--gate", "drop", "--tool-schemas", "/nonexistent.json"],
         "--tool-schemas /nonexistent.json: no such file; give the path of a tool_schemas.json"),
        (["stats", "full", "--max-length", "0"], "--max-length 0: must be a positive whole number of tokens"),
        (["stats", "full", "balanced_254", "--plot", "x.png"], "--plot draws one config, and 2 were given"),
        (["stats", "full", "--plot", "x.jpg"], "--plot x.jpg: give the path of a .png file"),
        (["stats", "full", "--plot", "/nonexistent-folder/x.png"], "the folder /nonexistent-folder does not exist"),
        (["infos", "--folder", "/nonexistent-folder", "--source", str(DATA)],
         "/nonexistent-folder/dataset_infos.json: No such file or "
                                                       "directory; check the path"),
        (["stats", "full", "--tokenizer", "/nonexistent-tokenizer"], "--tokenizer /nonexistent-tokenizer: "),
    ],
)
def test_errors_are_one_line_and_exit_2(source_path, capsys, args, message):
    """The command line's own `main`, in this process (the same code as the installed command: see the
    end-to-end case below), so the table stays quick. The option errors of the builder are one table,
    checked in both voices, in tests/test_bad_input.py."""
    if "--source" not in args:
        args = [*args, "--source", source_path]
    assert main(args) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("claudesidian-synthetic: error: ") and message in line
    assert not re.search(r"\b(" + "|".join(cs.OPTION_DEFAULTS) + r"|name)=", line)  # flags, not keywords


def test_an_error_in_a_fresh_process_is_one_line_and_exit_2(source_path, tmp_path):
    result = run_cli("build", "balanced_custom", "--source", source_path, "--desirable", "800", cache=tmp_path / "hf")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last_line(result) == (f"claudesidian-synthetic: error: {source_path}: --desirable 800 but there are only "
                                 "746 desirable rows to draw from: ask for at most 746, or add --replacement to "
                                 "oversample")


def test_python_speaks_keywords_where_the_command_line_speaks_flags(source_path):
    with pytest.raises(cs.OptionError) as caught:
        cs.load("full", source=source_path, batch_size=4)
    assert str(caught.value) == "batch_size=4 applies only to order='mixed'"
    assert caught.value.words(cli_voice) == "--batch-size 4 applies only to --order mixed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "full", "--order", "mixed", "--batch-size", "8", "--batch-size", "4"], "--batch-size given twice"),
        (["build", "full", "--layout", "chatml"], "invalid choice: 'chatml'"),
        (["build", "full", "--test-size", "a tenth"], "--test-size a tenth: must be a fraction of the source"),
    ],
)
def test_usage_errors_exit_2(source_path, tmp_path, args, message):
    result = run_main(*args, "--source", source_path)
    assert result.returncode == 2 and message in last_line(result)


@pytest.mark.parametrize(("args", "line"), [
    (["--length-strata", "2.5"], "--length-strata 2.5: must be a whole number of strata, at least 2"),
    (["--desirable", "1e2"], "--desirable 1e2: must be a positive whole number"),
])
def test_a_value_of_the_wrong_type_is_one_line_as_one_out_of_range_is(source_path, args, line):
    result = run_main("build", "balanced_custom", *args, "--source", source_path)
    assert result.returncode == 2 and result.stderr.startswith(f"claudesidian-synthetic: error: {line}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_a_folder_as_source_without_the_file_says_so(tmp_path):
    """A folder is a mirror of the source files: one without claude's names the file it lacks."""
    result = run_main("build", "full", "--source", str(tmp_path))
    assert result.returncode == 2 and last_line(result) == (
        f"claudesidian-synthetic: error: {tmp_path}: the folder holds no syngen_toolset_v1.0.0_claude.jsonl. Put the "
        "file there under that name, or pass --source another folder")


def test_bad_line_error_names_file_and_line(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"conversations": [], "label": true}\n', encoding="utf-8")
    result = run_main("build", "balanced_custom", "--source", str(source))
    assert result.returncode == 2 and f"{source}, line 1: " in result.stderr and "Traceback" not in result.stderr


def test_out_may_not_be_the_source_even_through_a_link(source_path, tmp_path):
    source = tmp_path / "source.jsonl"
    source.write_bytes(open(source_path, "rb").read())
    (tmp_path / "link.jsonl").symlink_to(source)
    before = source.read_bytes()
    for out in (source, tmp_path / "link.jsonl"):
        result = run_main("build", "balanced_custom", "--source", str(source), "--out", str(out))
        assert result.returncode == 2 and "is the source file itself" in last_line(result)
    assert source.read_bytes() == before


def test_failed_build_leaves_no_output_file(tmp_path):
    out = tmp_path / "out.jsonl"
    result = run_main("build", "full", "--source", "/nonexistent.jsonl", "--out", str(out))
    assert result.returncode == 2 and not out.exists()


def test_an_unwritable_out_folder_is_one_line_naming_it(source_path, tmp_path):
    try:
        os.close(os.open("/sys/claudesidian-probe", os.O_WRONLY | os.O_CREAT))
        pytest.skip("/sys is writable here, so it cannot stand for an unwritable folder")
    except OSError:
        pass
    result = run_cli("build", "balanced_254", "--source", source_path, "--out", "/sys/b.jsonl", cache=tmp_path / "hf")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()[-1:]) == 1
    assert "--out /sys/b.jsonl: cannot write in /sys" in last_line(result) and ".partial" not in result.stderr


def interrupt_when(process: subprocess.Popen, ready, timeout: float = 120) -> str:
    """Send Ctrl-C (SIGINT) to `process` once `ready()` holds; return what it printed on stderr."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None and time.monotonic() < deadline, "it ended before it could be interrupted"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=timeout)[1]


@pytest.mark.slow
def test_ctrl_c_during_a_build_is_one_line_and_writes_nothing(tmp_path, own_cache):
    from conftest import generate_source

    source = tmp_path / "big.jsonl"
    generate_source(source, 80_000)
    out = tmp_path / "out.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "claudesidian_tools", "build", "balanced_custom",
                                "--source", str(source), "--out", str(out)], cwd=REPO, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "HF_HOME": str(tmp_path / "hf")},
                               preexec_fn=sigint_as_usual)
    err = interrupt_when(process, lambda: (tmp_path / "hf-cache").is_dir())  # the build has begun
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"claudesidian-synthetic: interrupted: {out} was not written", err
    assert "Traceback" not in err and sorted(os.listdir(tmp_path)) == ["big.jsonl", "hf-cache"]  # no partial file


def test_stats_of_several_configs_checks_their_held_out_prompts(source_path, tmp_path):
    result = run_main("stats", "full_eval", "sft", "pairs", "--source", source_path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report["configs"]) == ["full_eval", "sft", "pairs"]
    assert len(report["held_out_leaks"]) == 6 and {leak["shared"] for leak in report["held_out_leaks"]} == {0}


def test_stats_reports_lengths_and_truncation(source_path, tmp_path):
    result = run_main("stats", "balanced_254", "--source", source_path, "--json")
    lengths = json.loads(result.stdout)["train"]["lengths"]
    assert lengths["desirable"]["completion_chars"]["median"] == 1411
    assert lengths["undesirable"]["completion_chars"]["median"] == 628
    assert lengths["ks_completion_chars"] == pytest.approx(0.5433, abs=1e-4)
    assert lengths["over_chars_estimate"]["max_length"] == 1024
    text = run_main("stats", "balanced_length_matched", "--source", source_path).stdout
    assert "length distance            0.0" in text and "desirable reply chars      min" in text


def test_a_ctrl_c_that_python_drops_still_stops_the_write(tmp_path):
    """A KeyboardInterrupt raised inside a finalizer is printed as "Exception ignored" and lost; the command
    line remembers it, says nothing of it then, and the next point that puts files in place raises it."""
    script = textwrap.dedent("""
        import os, signal, sys, time
        from claudesidian_tools import interrupts

        class Finalized:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)  # the handler runs here, inside the finalizer

        with interrupts.watching():
            Finalized()
            print("went on", flush=True)
            try:
                with interrupts.interrupt_deferred("written"):
                    print("wrote", flush=True)
            except KeyboardInterrupt as interrupt:
                print("stopped", type(interrupt).__name__, flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                            preexec_fn=sigint_as_usual)
    assert result.stdout.split("\n")[:2] == ["went on", "stopped KeyboardInterrupt"], result
    assert result.stderr == "", result.stderr


def test_a_ctrl_c_after_the_file_is_in_place_says_it_was_written(source_path, tmp_path):
    """The interrupt comes after the rename, before the command has printed what it wrote."""
    out = tmp_path / "b.jsonl"
    out.write_text("the user's old file\n")
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from claudesidian_tools import cli

        write = cli._write_atomically

        def write_then_ctrl_c(path, lines):
            write(path, lines)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)

        cli._write_atomically = write_then_ctrl_c
        sys.exit(cli.main(["build", "balanced_254", "--source", {source_path!r}, "--out", {str(out)!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HOME": str(tmp_path / "hf")}, preexec_fn=sigint_as_usual)
    assert result.returncode == 130, result.stderr
    assert last_line(result) == f"claudesidian-synthetic: interrupted: {out} was written before the interrupt"
    assert len(out.read_text().splitlines()) == 508


def test_a_re_export_of_fewer_configs_says_which_it_removed(source_path, tmp_path):
    folder = tmp_path / "ex"
    first = run_main("export", str(folder), "--source", source_path, "--config", "a=balanced_254", "--config",
                    "b=full")
    assert first.returncode == 0, first.stderr
    again = run_main("export", str(folder), "--source", source_path, "--config", "a=balanced_254")
    assert again.returncode == 0, again.stderr
    assert "removed the last export's b, which this export does not hold" in again.stderr
    assert not (folder / "data" / "b").exists() and (folder / "data" / "a").is_dir()


def test_a_ctrl_c_once_the_command_has_returned_changes_nothing(tmp_path):
    script = textwrap.dedent("""
        import os, signal, sys, time
        from claudesidian_tools import cli, command

        cli.main = lambda: 0  # a command that did its work
        code = command.main()
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, as the process ends
        time.sleep(0.5)
        sys.exit(code)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                            preexec_fn=sigint_as_usual)
    assert result.returncode == 0 and result.stderr == "", result
