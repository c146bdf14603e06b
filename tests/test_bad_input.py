"""Bad input: a ValueError subclass naming the file, the line and the fix; benign variations change nothing.

The tables call the scanner and the config check directly; one case of each runs end to end."""

import dataclasses
import json
import re

import pytest
from conftest import make_row

import claudesidian_synthetic as cs

GOOD = [make_row(i, i % 2 == 0) for i in range(6)]


def _with_bad_line(bad, at=3):
    return GOOD[: at - 1] + [bad] + GOOD[at - 1 :]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"conversations": [', "not valid JSON"),
        (b'{"label": true, "conversations": "\xff\xfe"}', "not valid UTF-8"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"conversations": GOOD[0]["conversations"]}), 'has no "label"'),
        (json.dumps({**GOOD[0], "label": "true"}), '"label" must be true or false, found "true"'),
        (json.dumps({**GOOD[0], "label": 1}), '"label" must be true or false, found 1'),
        (json.dumps({**GOOD[0], "label": None}), '"label" must be true or false, found null'),
        (json.dumps({"label": True}), '"conversations" must be a list'),
        (json.dumps({**GOOD[0], "conversations": []}), '"conversations" must be a list'),
        (json.dumps({**GOOD[0], "conversations": [{"role": "user"}, {"role": "assistant", "content": "x"}]}),
         'message 1 must be an object with exactly "role" and "content"'),
        (json.dumps({**GOOD[0], "conversations": [GOOD[0]["conversations"][1], GOOD[0]["conversations"][0]]}),
         "the last message must be from the assistant"),
        (json.dumps({**GOOD[0], "context": {"sessionId": "s", "mood": "x"}}), "\"context\" has unknown key(s) 'mood'"),
        (json.dumps({**GOOD[0], "extra": 1}), "unexpected key(s) 'extra'"),
        ('{"conversations": [{"role": "user", "content": "a \\ud800 b"}, {"role": "assistant", "content": "x"}],'
         ' "label": true}', "holds the escape \\ud800, half of a surrogate pair"),
        (json.dumps({**GOOD[0], "context": {"sessionId": "s"}}).replace('"s"', '"s\\uDFFF"'),
         "holds the escape \\udfff, half of a surrogate pair"),  # upper-case hex, in context
        ('{"conversations": [{"role": "user", "content": "\\udc00\\ud800"}, {"role": "assistant", "content": "x"}],'
         ' "label": true}', "holds the escape \\udc00, half of a surrogate pair"),  # both halves, the wrong way round
        (json.dumps({**GOOD[0], "label": 1, "conversations": GOOD[0]["conversations"][:1]}),
         '"label" must be true or false, found 1'),  # two faults: the first the strict reader meets is said
        (json.dumps(GOOD[0]) + " " + json.dumps(GOOD[1]), "not valid JSON (Extra data"),
        ("\x0c" + json.dumps(GOOD[0]), "not valid JSON (Expecting value, column 1)"),  # not JSON whitespace
    ],
)
def test_bad_line_is_named(write_source, bad_line, message):
    path = write_source(_with_bad_line(bad_line))
    with pytest.raises(cs.SourceError) as caught:
        cs.scan_source(path)
    assert isinstance(caught.value, ValueError)
    assert caught.value.path == path and caught.value.line == 3
    assert f"{path}, line 3: " in str(caught.value) and message in str(caught.value)
    assert "Fix or delete that line" in str(caught.value) and '{"conversations"' in str(caught.value)
    assert "{{" not in str(caught.value)  # the message's braces are text, written once


def test_the_first_bad_line_is_named_when_a_later_one_of_its_block_fails_otherwise(write_source):
    # Line 2 is JSON of the right types with the wrong last speaker; line 4 is not JSON at all.
    reversed_turns = json.dumps({**GOOD[0], "conversations": GOOD[0]["conversations"][::-1]})
    path = write_source([GOOD[0], reversed_turns, GOOD[1], '{"conversations": ['])
    with pytest.raises(cs.SourceError, match=f"{path}, line 2: the last message must be from the assistant, found "
                                             "role 'user'"):
        cs.scan_source(path)


def test_a_key_given_twice_keeps_its_last_value_as_json_does(write_source):
    # msgspec refuses the first "label" (1 is no boolean) and the first "role"; JSON keeps the last of each,
    # which makes a good row, and the strict reader takes it as Python's json reads it.
    twice = ('{"label": 1, "conversations": [{"role": 7, "content": "question 9", "role": "user"}, '
             '{"role": "assistant", "content": "answer 9"}], "label": false}')
    path = write_source(GOOD[:2] + [twice] + GOOD[2:])
    assert cs.scan_source(path).labels.tolist() == [True, False, False, True, False, True, False]
    rows = cs.load("balanced_custom", split="train", source=path, order="source", desirable=3, undesirable=4)
    assert rows[2] == {"prompt": [{"role": "user", "content": "question 9"}],
                       "completion": [{"role": "assistant", "content": "answer 9"}], "label": False, "context": None}


def test_a_line_longer_than_a_read_block_and_a_last_line_without_newline(tmp_path):
    # The scan reads the file a block (1 MiB) at a time: a 3 MB line spans blocks; the file's end has no "\n".
    long_row = make_row(7, True)
    long_row["conversations"][1]["content"] = "x" * 3_000_000
    lines = [json.dumps(row).encode() for row in [GOOD[0], long_row, GOOD[1]]]
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"\n".join(lines))
    scan = cs.scan_source(str(path))
    assert scan.offsets.tolist() == [0, len(lines[0]) + 1, len(lines[0]) + len(lines[1]) + 2]
    assert scan.lengths.tolist() == [len(lines[0]) + 1, len(lines[1]) + 1, len(lines[2])]
    assert scan.completion_chars.tolist() == [len("answer 0"), 3_000_000, len("answer 1")]
    rows = cs.load("balanced_custom", split="train", source=str(path), order="source", desirable=2, undesirable=1)
    assert [len(row["completion"][0]["content"]) for row in rows] == [8, 3_000_000, 8]


def test_the_scans_digests_are_those_of_the_messages(source_path, source_rows):
    """The typed reader digests its own message objects; the value is `messages_digest` of the rows as dicts."""
    scan = cs.scan_source(source_path, keys=("prompts", "replies"))
    assert scan.prompts.tolist() == [cs.messages_digest(row["conversations"][:-1]) for row in source_rows]
    assert scan.replies.tolist() == [cs.messages_digest(row["conversations"][-1:]) for row in source_rows]


def test_a_bad_line_stops_the_whole_load(write_source):
    path = write_source(_with_bad_line('{"conversations": ['))
    with pytest.raises(cs.SourceError, match=f"{path}, line 3: is not valid JSON"):
        cs.load("balanced_custom", source=path)


def test_empty_file(write_source, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"\n\n")
    with pytest.raises(cs.SourceError, match="holds no rows"):
        cs.load("balanced_custom", source=str(path))


def test_missing_file():
    with pytest.raises(cs.SourceError, match="no such file"):
        cs.load("full", source="/nonexistent/file.jsonl")


def test_single_label_source_names_the_file(write_source):
    path = write_source([make_row(i, True) for i in range(4)])
    with pytest.raises(cs.OptionError, match=f"{path}: a balanced subset needs both labels"):
        cs.load("balanced_custom", source=path)


def test_benign_variations_change_nothing(write_source, tmp_path):
    clean = cs.load("balanced_custom", split="train", source=write_source(GOOD, name="clean.jsonl"))
    crlf = write_source(GOOD, name="crlf.jsonl", newline="\r\n")
    blank = write_source(GOOD[:3] + ["", "   "] + GOOD[3:], name="blank.jsonl")
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + open(write_source(GOOD, name="plain.jsonl"), "rb").read())
    for path in (crlf, blank, str(bom)):
        assert list(cs.load("balanced_custom", split="train", source=path)) == list(clean)


def test_escaped_surrogate_pairs_are_characters(write_source):
    line = json.dumps({**GOOD[0], "conversations": [{"role": "user", "content": "smile \U0001F600"},
                                                    GOOD[0]["conversations"][1]]})
    assert "\\ud83d\\ude00" in line  # json.dumps escapes it as a surrogate pair
    dataset = cs.load("balanced_custom", split="train", source=write_source([line] + GOOD[1:]), order="source")
    assert dataset[0]["prompt"][0]["content"] == "smile \U0001F600"


def test_an_escaped_backslash_before_ud800_is_text(write_source):
    line = json.dumps({**GOOD[0], "conversations": [{"role": "user", "content": "path C:\\ud800"},
                                                    GOOD[0]["conversations"][1]]})
    assert "C:\\\\ud800" in line  # a backslash, then the letters u d 8 0 0: no escape at all
    dataset = cs.load("balanced_custom", split="train", source=write_source([line] + GOOD[1:]), order="source")
    assert dataset[0]["prompt"][0]["content"] == "path C:\\ud800"


# One table of option errors, checked in both voices: (config, options, what Python says, what the command
# line says). The Python column alone where the command line cannot give the value (a string seed).
OPTION_ERRORS = [
    ("balanced_custom", {"desirable": -1}, "desirable=-1: must be a positive whole number",
     "--desirable -1: must be a positive whole number"),
    ("balanced_custom", {"undesirable": 0}, "undesirable=0: must be a positive whole number",
     "--undesirable 0: must be a positive whole number"),
    ("balanced_custom", {"ratio": 0}, "ratio=0: must be a finite number above 0", "--ratio 0: must be a finite number"),
    ("balanced_custom", {"ratio": -2.0}, "ratio=-2.0: must be a finite number above 0",
     "--ratio -2.0: must be a finite number above 0"),
    ("balanced_custom", {"ratio": float("inf")}, "ratio=inf: must be a finite number above 0",
     "--ratio inf: must be a finite number above 0"),
    ("balanced_custom", {"ratio": 2.0, "desirable": 10}, "ratio=2.0 with desirable=10: give either counts or a ratio",
     "--ratio 2.0 with --desirable 10: give either counts or a ratio, not both"),
    ("balanced_custom", {"order": "random"}, "order='random': must be one of source, shuffle, mixed", None),
    ("balanced_custom", {"order": "mixed"}, "order='mixed' needs batch_size", "--order mixed needs --batch-size"),
    ("balanced_custom", {"batch_size": 4}, "batch_size=4 applies only to order='mixed'",
     "--batch-size 4 applies only to --order mixed"),
    ("balanced_custom", {"order": "source", "batch_size": 4}, "applies only to order='mixed', not order='source'",
     "--batch-size 4 applies only to --order mixed, not --order source"),
    ("balanced_custom", {"length_strata": 5, "desirable": 3}, "length_strata=5 decides how many rows",
     "--length-strata 5 decides how many rows of each label it keeps, so --desirable 3 cannot apply"),
    ("balanced_custom", {"length_strata": 1}, "length_strata=1: must be a whole number of strata, at least 2",
     "--length-strata 1: must be a whole number of strata, at least 2"),
    ("balanced_custom", {"seed": "7"}, "seed='7': must be a whole number", None),
    ("balanced_custom", {"dedupe": "yes"}, "dedupe='yes': must be True or False", None),
    ("balanced_custom", {"desirable": 800}, "desirable=800 but there are only 746 desirable rows to draw from",
     "--desirable 800 but there are only 746 desirable rows to draw from: ask for at most 746, or add --replacement"),
    ("balanced_custom", {"ratio": 1000}, "ratio=1000 asks for 254000 desirable and 254 undesirable rows, and the "
     "source has 746 and 254: give a ratio at most 2.937", "--ratio 1000 asks for 254000 desirable and 254 "
     "undesirable rows, and the source has 746 and 254: give a ratio at most 2.937"),
    ("balanced_custom", {"length_strata": 2, "ratio": 0.001}, "length_strata=2 leaves 0 desirable",
     "--length-strata 2 leaves 0 desirable"),
    ("balanced_254", {"seed": 7}, "seed=7 is not an option of name='balanced_254'",
     "--seed 7 is not an option of the config balanced_254"),
    ("balanced_254", {"dedupe": True}, "dedupe=True is not an option of name='balanced_254'",
     "--dedupe is not an option of the config balanced_254"),
    ("balanced_254", {"test_size": 0.1}, "use name='balanced_custom' to choose test_size, or name='full_eval'",
     "use the config balanced_custom to choose --test-size, or the config full_eval"),
    ("full", {"desirable": 10}, "desirable=10 is not an option of name='full' (every source row)",
     "--desirable 10 is not an option of the config full (every source row)"),
    ("full", {"seed": 7}, "seed=7 has no effect on name='full' in source order",
     "--seed 7 has no effect on the config full in source order: give --order shuffle"),
    ("full", {"test_size": -1}, "test_size=-1: must be a fraction of the source between 0 and 1",
     "--test-size -1: must be a fraction of the source between 0 and 1"),
    ("full", {"test_size": 1.0}, "test_size=1.0: must be a fraction", "--test-size 1.0: must be a fraction"),
    ("full", {"test_size": True}, "test_size=True: must be a fraction", None),
    ("full", {"test_size": 1}, "test_size=1 leaves the test split with one label",
     "--test-size 1 leaves the test split with one label"),
    ("full", {"test_size": 1000}, "test_size=1000 asks for 1000 of the 1000 source rows",
     "--test-size 1000 asks for 1000 of the 1000 source rows"),
    ("full", {"source": "x.jsonl", "revision": "v1"}, "source='x.jsonl' and revision='v1': the revision picks the "
     "Hub file, the source replaces it; give one of them", None),
    ("full", {"order": "mixed", "batch_size": 3}, "batch_size=3 cannot give every batch both labels with 746 "
     "desirable and 254 undesirable rows: the smallest batch size that works is 4",
     "--batch-size 3 cannot give every batch both labels with 746 desirable and 254 undesirable rows: the smallest "
     "batch size that works is 4"),
    ("full", {"order": "mixed", "batch_size": 2000}, "batch_size=2000 is more than the 1000 rows to arrange",
     "--batch-size 2000 is more than the 1000 rows to arrange: every batch would be the whole split; give at most "
     "1000"),
    ("full", {"test_size": 0.1, "order": "mixed", "batch_size": 2},
     "the test split: batch_size=2 cannot give every batch both labels",
     "the test split: --batch-size 2 cannot give every batch both labels"),
    ("full", {"tool_schemas": "x.json"}, "tool_schemas='x.json' changes nothing here: the gate and the tools layouts "
     "check calls against it", "--tool-schemas x.json changes nothing here: the gate and the tools layouts check "
     "calls against it, and this build has neither; give --gate drop|relabel or a tools --layout"),
    ("full", {"layout": "kto_tools"}, "layout='kto_tools' needs the tool calls of every row it holds to parse, "
     "and 32 rows of the train split do not (source rows 900, ", "--layout kto_tools needs the tool calls of every "
     "row it holds to parse, and 32 rows of the train split do not (source rows 900, "),
    ("sft", {"undesirable": 10}, "undesirable=10 is not an option of name='sft'",
     "--undesirable 10 is not an option of the config sft"),
    ("sft", {"order": "mixed"}, "order='mixed' does not apply to name='sft'",
     "--order mixed does not apply to the config sft"),
    ("sft", {"layout": "kto"}, "layout='kto' does not apply to name='sft'",
     "--layout kto does not apply to the config sft"),
    ("sft", {"gate": "relabel"}, "gate='relabel' on name='sft': it holds desirable rows only",
     "--gate relabel on the config sft: it holds desirable rows only, so a relabelled row leaves it as a dropped one "
     "does; give --gate drop"),
    ("pairs", {"ratio": 2}, "ratio=2 is not an option of name='pairs'",
     "--ratio 2 is not an option of the config pairs"),
    ("pairs", {"dedupe": True}, "dedupe=True is not an option of name='pairs'",
     "--dedupe is not an option of the config pairs"),
]


@pytest.mark.parametrize(("name", "options", "python", "cli"), OPTION_ERRORS,
                         ids=[f"{name}-{'-'.join(options)}" for name, options, *_ in OPTION_ERRORS])
def test_option_errors_in_python(real_scan, name, options, python, cli):
    """The config's own check, or its plan against the real source, raises the one OptionError."""
    with pytest.raises(cs.OptionError) as caught:
        config = cs.ClaudesidianSyntheticConfig(name=name, **{**cs.CONFIGS[name].option_defaults(), **options})
        cs.plan_rows(real_scan, config)
    assert python in str(caught.value)
    assert not re.search(r"--[a-z]", str(caught.value))  # keywords, not flags


SAID_ON_THE_COMMAND_LINE = [case for case in OPTION_ERRORS if case[3] is not None]


@pytest.mark.parametrize(("name", "options", "python", "cli"), SAID_ON_THE_COMMAND_LINE,
                         ids=[f"{name}-{'-'.join(options)}" for name, options, *_ in SAID_ON_THE_COMMAND_LINE])
def test_option_errors_on_the_command_line(source_path, capsys, name, options, python, cli):
    """The same errors through the command line's own `main` (in this process: the installed command runs
    the same code, tests/test_cli.py runs it in fresh processes): one line, exit 2, flags not keywords."""
    from claudesidian_tools.cli import main

    flags = []
    for option, value in options.items():
        flags += [f"--{option.replace('_', '-')}"] + ([] if value is True else [str(value)])
    assert main(["build", name, *flags, "--source", source_path]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("claudesidian-synthetic: error: ") and cli in line
    assert not re.search(r"\b(" + "|".join(cs.OPTION_DEFAULTS) + r"|name)=", line)


def test_a_bad_option_stops_the_load_before_the_source_is_read(source_path, monkeypatch):
    monkeypatch.setattr(cs, "scan_source", lambda path, **_: pytest.fail("the source was read"))
    with pytest.raises(cs.OptionError, match="order='mixed' needs batch_size"):
        cs.load("full", source=source_path, order="mixed")


@pytest.fixture(scope="module")
def real_scan(source_path):
    return cs.scan_source(source_path, keys=("prompts", "replies"), tool_schemas=cs.load_tool_schemas())


def test_unknown_config_and_options_in_load():
    with pytest.raises(cs.OptionError, match="name='nope': unknown config"):
        cs.load("nope")
    with pytest.raises(cs.OptionError, match="unknown option.s. colour"):
        cs.load("full", colour="red")


def test_the_source_names_what_it_cannot_give_end_to_end(source_path):
    with pytest.raises(cs.OptionError, match=f"{source_path}: desirable=800 but there are only 746"):
        cs.load("balanced_custom", source=source_path, desirable=800)


def test_source_rewritten_during_the_build_is_one_clear_error(write_source, monkeypatch, own_cache):
    # own_cache: the source's kept facts from an earlier test of the same bytes would spare this build its scan.
    path = write_source(GOOD)
    scan = cs.scan_source

    def scan_then_rewrite(source, **options):
        result = scan(source, **options)
        with open(source, "r+b") as file:  # another job overwrites the file between scan and generation
            text = file.read()
            file.seek(0)
            file.write(text.replace(b"{", b"#"))
        return result

    monkeypatch.setattr(cs, "scan_source", scan_then_rewrite)
    with pytest.raises(cs.SourceError, match=r"changed while it was being read .* Load again"):
        cs.load("balanced_custom", source=path)


def _scan_fields(scan) -> dict:
    return {field.name: getattr(scan, field.name).tolist() for field in dataclasses.fields(scan)
            if getattr(scan, field.name) is not None}


def test_a_byte_order_mark_crlf_and_blank_lines_change_no_scanned_row_but_its_place(tmp_path, source_path):
    """60 real lines behind a byte-order mark, with CRLF endings, blank and whitespace-only lines: the
    same rows, labels, reply lengths, duplicates and digests as the plain lines."""
    with open(source_path, "rb") as file:
        lines = [file.readline().rstrip(b"\n") for _ in range(60)]
    plain, awkward = tmp_path / "plain.jsonl", tmp_path / "awkward.jsonl"
    plain.write_bytes(b"\n".join(lines) + b"\n")
    awkward.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines[:7] + [b"", b"  \t"] + lines[7:]) + b"\r\n\n")
    clean, odd = (_scan_fields(cs.scan_source(str(path), keys=("prompts", "replies"))) for path in (plain, awkward))
    assert odd.pop("offsets")[0] == 3 and clean.pop("offsets")[0] == 0  # the first line begins after the mark
    assert [length - 1 for length in odd.pop("lengths")] == clean.pop("lengths")  # each line's \r
    assert odd == clean and len(clean["labels"]) == 60


@pytest.mark.parametrize("options, said", [
    ({"test_size": 0.5, "desirable": 500}, "desirable=500 but there are only 373 desirable rows to draw from: ask for "
     "at most 373, or add replacement=True to oversample (the train split's rows, after the test split is held out)"),
    ({"gate": "drop", "desirable": 700}, "desirable=700 but there are only 632 desirable rows to draw from: ask for at "
     "most 632, or add replacement=True to oversample (the train split's rows, after the gate drops desirable rows "
     "whose calls fail)"),
    ({"dedupe": True, "desirable": 746}, "desirable=746 but there are only 745 desirable rows to draw from: ask for at "
     "most 745, or add replacement=True to oversample (the train split's rows, after dedupe drops duplicates)"),
])
def test_a_count_past_what_the_train_split_holds_says_what_made_it_fewer_than_the_source(source_path, options, said):
    with pytest.raises(cs.OptionError) as raised:
        cs.load("balanced_custom", source=source_path, **options)
    assert str(raised.value).endswith(said), str(raised.value)


def test_a_test_split_too_unmixed_for_the_batch_size_is_told_what_helps(source_path):
    with pytest.raises(cs.OptionError) as raised:
        cs.load("balanced_custom", source=source_path, order="mixed", batch_size=3, test_size=0.1)
    assert str(raised.value).endswith(
        "the test split: batch_size=3 cannot give every batch both labels with 75 desirable and 25 undesirable rows: "
        "the smallest batch size that works is 4; the test split keeps the source's mix of labels at any test_size: "
        "give a batch_size that large, or test_size=0"), str(raised.value)
    for helps, rows in (({"batch_size": 4, "test_size": 0.1}, 458), ({"batch_size": 3, "test_size": 0}, 508)):
        built = cs.load("balanced_custom", source=source_path, order="mixed", split="train", **helps)  # as it says
        assert built.num_rows == rows


def test_more_length_strata_than_the_smaller_label_has_rows_is_refused_not_ignored(source_path):
    with pytest.raises(cs.OptionError) as raised:
        cs.load("balanced_custom", source=source_path, length_strata=256)
    assert str(raised.value).endswith("length_strata=256: the smaller label has 254 undesirable rows, whose lengths "
                                      "cut at most 255 strata; give at most 255"), str(raised.value)
    assert cs.load("balanced_custom", source=source_path, length_strata=255, split="train").num_rows > 0
