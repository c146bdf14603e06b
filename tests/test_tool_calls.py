"""The tool calls of a reply: the one parser of the text format, the checks against the tool schemas, the
tool definitions and the native format. Expected values are written by hand, never computed by the code
under test."""

import hashlib
import json
import math
import random

import pytest
from conftest import DATA, REPO, run_main
from tiny_model import QWEN25_TEMPLATE, need_trl

import claudesidian_synthetic as cs
import claudesidian_synthetic as tc
from claudesidian_synthetic import Call, Finding, ParsedReply, Reason, Result, RowCheck, Text

SCHEMAS_PATH = DATA / "tool_schemas.json"
FULL = DATA / "syngen_toolset_v1.0.0_claude.jsonl"
BALANCED = DATA / "syngen_toolset_v1.0.0_claude_balanced_254.jsonl"
CTX = {"sessionId": "s", "workspaceId": "w", "sessionDescription": "d", "sessionMemory": "m",
       "toolContext": "t", "primaryGoal": "p", "subgoal": "g"}
CTX_JSON = json.dumps(CTX)

needs_data = pytest.mark.skipif(not FULL.exists(), reason="the reference data is not on this machine")


@pytest.fixture(scope="module")
def schemas():
    if not SCHEMAS_PATH.exists():
        pytest.skip("the reference tool schemas are not on this machine")
    return tc.read_tool_schemas(SCHEMAS_PATH)


def call_reply(name, arguments):
    """One call with a result and an answer, the arguments given as a dict or as raw text."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return f"tool_call: {name}\narguments: {raw}\n\nResult: {{\"success\": true}}\n\nDone."


# ---------------------------------------------------------------- grammar


def test_reply_without_call_is_only_an_answer():
    assert tc.parse_reply("  Sure, here it is.\n") == ParsedReply((), "Sure, here it is.", ())
    assert tc.parse_reply("") == ParsedReply((), "", ())


def test_one_call_with_result_and_answer():
    text = 'tool_call: a_b\narguments: {"x": 1}\n\nResult: {"ok": true}\n\nAll done.'
    assert tc.parse_reply(text) == ParsedReply(
        (Call(1, "a_b", {"x": 1}, 0), Result(1, '{"ok": true}', 36)), "All done.", ())


def test_text_before_and_between_calls_and_back_to_back_calls():
    text = ("Let me look.\n\ntool_call: a_b\narguments: {}\n\nResult: {}\n\nNow the second.\n\n"
            "tool_call: c_d\narguments: {\"y\": [1]}\n\ntool_call: e_f\narguments: {}\n\nResult: {\"z\": 2}")
    parsed = tc.parse_reply(text)
    assert parsed.parts == (Text("Let me look."), Call(1, "a_b", {}, 14), Result(1, "{}", 44),
                            Text("Now the second."), Call(2, "c_d", {"y": [1]}, 73),
                            Call(3, "e_f", {}, 111), Result(3, '{"z": 2}', 141))
    assert parsed.answer == ""
    assert parsed.findings == ()


def test_arguments_may_span_lines():
    text = 'tool_call: a_b\narguments: {\n  "x": {\n    "y": 1\n  }\n}\n\nResult: {}\n\nok'
    parsed = tc.parse_reply(text)
    assert parsed.calls == (Call(1, "a_b", {"x": {"y": 1}}, 0),)
    assert parsed.answer == "ok"
    assert parsed.findings == ()


def test_marker_text_inside_json_strings_is_not_a_call():
    text = ('tool_call: a_b\narguments: {"note": "tool_call: fake\\narguments: {}"}\n\n'
            'Result: {"log": "tool_call: x_y\\nResult: {}"}\n\nfinal')
    parsed = tc.parse_reply(text)
    assert [c.name for c in parsed.calls] == ["a_b"]
    assert parsed.calls[0].arguments == {"note": "tool_call: fake\narguments: {}"}
    assert parsed.answer == "final"
    assert parsed.findings == ()


def test_markers_only_count_at_a_line_start():
    text = "You would write tool_call: a_b here.\nAnd Result: {} too."
    assert tc.parse_reply(text) == ParsedReply((), text, ())


def test_arguments_not_json_resynchronises_at_the_blank_line():
    # The data's own mistake (rows 913-961): a closing parenthesis instead of a brace.
    text = 'tool_call: a_b\narguments: {"x": 1)\n\nResult: {"ok": true}\n\nok'
    parsed = tc.parse_reply(text)
    assert parsed.parts == (Call(1, "a_b", None, 0), Result(1, '{"ok": true}', 36))
    assert parsed.findings == (Finding("arguments_not_json", 33, 1, "Expecting ',' delimiter"),)
    assert parsed.answer == "ok"


def test_arguments_missing_brace_before_the_answer():
    # Rows 900 and 934: the object is never closed, the answer follows after a blank line.
    text = 'tool_call: a_b\narguments: {"x": [1]\n\nGreat, saved.'
    parsed = tc.parse_reply(text)
    assert parsed.calls == (Call(1, "a_b", None, 0),)
    assert parsed.findings == (Finding("arguments_not_json", 37, 1, "Expecting ',' delimiter"),)
    assert parsed.answer == "Great, saved."


def test_text_after_the_arguments_on_the_same_line():
    text = 'tool_call: a_b\narguments: {"x": 1} please\n\nok'
    parsed = tc.parse_reply(text)
    assert parsed.calls == (Call(1, "a_b", {"x": 1}, 0),)
    assert parsed.findings == (Finding("arguments_trailing_text", 34, 1, "'please'"),)


def test_arguments_that_are_not_an_object():
    parsed = tc.parse_reply('tool_call: a_b\narguments: [1, 2]\n\nok')
    assert parsed.calls == (Call(1, "a_b", None, 0),)
    assert parsed.findings == (Finding("arguments_not_object", 26, 1, "list"),)


def test_missing_arguments_line_and_missing_name():
    parsed = tc.parse_reply("tool_call: a_b\n\nResult: {}\n\nok")
    assert parsed.parts == (Call(1, "a_b", None, 0), Result(1, "{}", 16))
    assert parsed.findings == (Finding("arguments_missing", 14, 1, "the next line must start with arguments:"),)
    parsed = tc.parse_reply("tool_call:\narguments: {}")
    assert parsed.calls == (Call(1, "", {}, 0),)
    assert parsed.findings == (Finding("name_missing", 0, 1),)


def test_nan_and_infinity_are_not_json():
    parsed = tc.parse_reply('tool_call: a_b\narguments: {"x": NaN}')
    assert [f.code for f in parsed.findings] == ["arguments_not_json"]
    assert parsed.calls[0].arguments is None


def test_result_problems_are_findings_but_keep_the_text():
    # Rows 893-913: one brace too many; rows 869/927: one too few; row 102: a raw newline inside a string.
    text = ('tool_call: a_b\narguments: {}\n\nResult: {"a": {}}}\n\n'
            'tool_call: c_d\narguments: {}\n\nResult: {"a": {}\n\n'
            'tool_call: e_f\narguments: {}\n\nResult: {"a": "x\ny"}\n\nok')
    parsed = tc.parse_reply(text)
    assert [p.text for p in parsed.parts if isinstance(p, Result)] == ['{"a": {}}}', '{"a": {}', '{"a": "x\ny"}']
    assert [(f.code, f.call) for f in parsed.findings] == [
        ("result_trailing_text", 1), ("result_not_json", 2), ("result_not_json", 3)]
    assert parsed.answer == "ok"


def test_a_value_msgspec_refuses_is_read_as_pythons_json_reads_it():
    """A one-line value is decoded by msgspec, and where msgspec refuses what Python's json accepts, or
    would read it otherwise, Python's json decides (its findings and values are the format's)."""
    huge = "9" * 5000  # more digits than Python turns into an int: not JSON to this reader
    cases = [
        ('{"x": 1e400}', {"x": math.inf}, ()),  # out of msgspec's range; Python's float() says inf
        ('{"x": "\\ud800"}', {"x": "\ud800"}, ()),  # half a surrogate pair: a str all the same
        ('{"x": 1}\u00a0', {"x": 1}, ()),  # a no-break space after the value is blank to the format
        ('{"x":\n 1}', {"x": 1}, ()),  # a value over two lines
        ('\r{"x": 1}', None, (Finding("arguments_not_json", 25, 1, "Expecting value"),)),  # json skips no \r
        ('{"x": ' + huge + "}", None, (Finding("arguments_not_json", 25, 1, "ValueError"),)),
    ]
    for arguments, value, findings in cases:
        parsed = tc.parse_reply(f"tool_call: a_b\narguments:{arguments}\n\nok")
        assert (parsed.calls[0].arguments, parsed.findings) == (value, findings), arguments


def test_result_without_a_call_is_flagged():
    parsed = tc.parse_reply("I ran it.\nResult: {}\nfine")
    assert parsed == ParsedReply((), "I ran it.\nResult: {}\nfine", (Finding("result_without_call", 10, 0),))


def test_windows_line_ends():
    parsed = tc.parse_reply('tool_call: a_b\r\narguments: {"x": 1}\r\n\r\nResult: {}\r\n\r\nok')
    assert parsed.calls[0].name == "a_b"
    assert parsed.calls[0].arguments == {"x": 1}
    assert parsed.findings == ()


def test_never_raises_on_any_string():
    pieces = ["tool_call:", " a_b", "\n", "arguments:", " {", "}", '"', "[", "]", "Result:", "\n\n", "x", "\\",
              "NaN", "1e999", ":", ",", "\r", "\t", "\u00e9", "\x00"]
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        parsed = tc.parse_reply(text)
        assert isinstance(parsed.answer, str)
    deep = tc.parse_reply("tool_call: a_b\narguments: " + "[" * 100000)
    assert [f.code for f in deep.findings] == ["arguments_not_json"]


# ---------------------------------------------------------------- checks


def check(schemas, *calls):
    return tc.check_reply(tc.parse_reply("\n\n".join(f"tool_call: {n}\narguments: {a}" for n, a in calls)), schemas)


def test_row_without_calls_passes(schemas):
    assert tc.check_reply(tc.parse_reply("Hi"), schemas) == RowCheck(6, ())


def test_valid_call_passes(schemas):
    args = json.dumps({"context": CTX, "path": "a.md", "mode": "split", "focus": True})
    assert check(schemas, ("vaultManager_openNote", args)) == RowCheck(6, ())


def test_arguments_reasons(schemas):
    assert check(schemas, ("vaultManager_openNote", '{"path": "a.md")')) == RowCheck(
        0, (Reason("arguments_not_json", 1, "vaultManager_openNote", "", "char 59 Expecting ',' delimiter"),))
    assert check(schemas, ("vaultManager_openNote", '"a.md"')).reasons == (
        Reason("arguments_not_object", 1, "vaultManager_openNote", "", "char 44 str"),)
    parsed = tc.parse_reply("tool_call: vaultManager_openNote\n\nok")
    detail = "char 32 the next line must start with arguments:"
    assert tc.check_reply(parsed, schemas).reasons == (
        Reason("arguments_missing", 1, "vaultManager_openNote", "", detail),)


def test_unknown_tool(schemas):
    assert check(schemas, ("vaultManager_readContent", "{}")) == RowCheck(
        1, (Reason("unknown_tool", 1, "vaultManager_readContent", "", ""),))


def test_missing_required_keeps_every_reason(schemas):
    result = check(schemas, ("vaultManager_moveNote", json.dumps({"context": CTX, "overwrite": "yes"})))
    assert result == RowCheck(2, (Reason("missing_required", 1, "vaultManager_moveNote", "path", ""),
                                  Reason("missing_required", 1, "vaultManager_moveNote", "newPath", "")))


def test_context_is_implied_for_every_tool(schemas):
    assert check(schemas, ("vaultManager_deleteNote", '{"path": "a.md"}')).reasons == (
        Reason("missing_required", 1, "vaultManager_deleteNote", "context", ""),)


def test_unknown_parameter(schemas):
    args = json.dumps({"context": CTX, "path": "a", "force": True, "snapshot": {}})
    assert check(schemas, ("vaultManager_deleteNote", args)) == RowCheck(
        3, (Reason("unknown_parameter", 1, "vaultManager_deleteNote", "force", ""),
                   Reason("unknown_parameter", 1, "vaultManager_deleteNote", "snapshot", "")))


@pytest.mark.parametrize(("tool", "param", "value", "ok"), [
    ("contentManager_replaceByLine", "startLine", 3, True),
    ("contentManager_replaceByLine", "startLine", 2.5, True),
    ("contentManager_replaceByLine", "startLine", "3", False),
    ("contentManager_replaceByLine", "startLine", True, False),
    ("vaultManager_openNote", "focus", False, True),
    ("vaultManager_openNote", "focus", "false", False),
    ("vaultManager_openNote", "mode", "window", True),
    ("vaultManager_openNote", "mode", "source", False),
    ("agentManager_generateImage", "provider", "google", True),
    ("agentManager_generateImage", "provider", "openai", False),
    ("agentManager_generateImage", "aspectRatio", "16:9", True),
    ("agentManager_generateImage", "aspectRatio", "21:9", False),
    ("vaultLibrarian_searchContent", "paths", ["a", "b"], True),
    ("vaultLibrarian_searchContent", "paths", ["a", 1], False),
    ("vaultLibrarian_searchContent", "paths", "a", False),
    ("vaultLibrarian_searchMemory", "memoryTypes", ["traces", "toolCalls"], True),
    ("vaultLibrarian_searchMemory", "memoryTypes", ["conversation"], False),
    ("vaultLibrarian_searchMemory", "toolCallFilters", None, True),
    ("vaultLibrarian_searchMemory", "dateRange", {"start": "2025-01-01"}, True),
    ("vaultLibrarian_searchMemory", "dateRange", "2025", False),
    ("vaultLibrarian_batch", "searches", [{"query": "a"}], True),
    ("vaultLibrarian_batch", "searches", ["a"], False),
    ("memoryManager_createSession", "workspaceContext", {"workspaceId": "w"}, True),
    ("memoryManager_createSession", "workspaceContext", "w", True),
    ("memoryManager_createSession", "workspaceContext", 3, False),
    ("agentManager_executePrompt", "action", {"type": "create"}, True),
    ("agentManager_executePrompt", "action", [], False),
    ("memoryManager_createWorkspace", "workflows", [], True),
    ("memoryManager_createWorkspace", "workflows", {}, False),
])
def test_types(schemas, tool, param, value, ok):
    tool_spec = schemas.tools[tool]
    example = {"string": "s", "number": 1, "boolean": True, "object": {}, "array": [], "string[]": ["s"],
               "'google'": "google", "UniversalSearchParams[]": [{}], "ContentOperation[]": [{}]}
    args = {p: example[t] for p, t in ((p["name"], p["type"]) for p in tool_spec["parameters"])
            if p in tool_spec["required_params"] and p != "context"}
    args.update({"context": CTX, param: value})
    result = check(schemas, (tool, json.dumps(args)))
    if ok:
        assert result == RowCheck(6, ())
    else:
        assert result.first_failed == 4
        assert [(r.code, r.parameter) for r in result.reasons] == [("wrong_type", param)]


def test_wrong_type_detail_names_type_and_value(schemas):
    args = json.dumps({"context": CTX, "limit": 5, "order": "newest"})
    assert check(schemas, ("memoryManager_listSessions", args)).reasons == (
        Reason("wrong_type", 1, "memoryManager_listSessions", "order", "expected 'asc' | 'desc', got \"newest\""),)


def test_context_reasons(schemas):
    ctx = {k: v for k, v in CTX.items() if k not in ("subgoal", "toolContext")}
    assert check(schemas, ("get_tools", json.dumps({"context": ctx, "managers": ["a"]}))) == RowCheck(
        5, (Reason("context_missing_field", 1, "get_tools", "toolContext", ""),
                   Reason("context_missing_field", 1, "get_tools", "subgoal", "")))
    ctx = dict(CTX, mood="happy", sessionMemory=3)
    assert check(schemas, ("vaultManager_deleteNote", json.dumps({"context": ctx, "path": "a"}))).reasons == (
        Reason("context_unknown_field", 1, "vaultManager_deleteNote", "mood", ""),
        Reason("context_wrong_type", 1, "vaultManager_deleteNote", "sessionMemory", "expected string, got 3"))
    # workspaceId is optional in CommonParameters and in vaultLibrarian_searchContent's context_schema...
    ctx = {k: v for k, v in CTX.items() if k != "workspaceId"}
    assert check(schemas, ("vaultLibrarian_searchContent", json.dumps({"context": ctx, "query": "q"}))).first_failed \
        == len(tc.CHECKS)
    # ...but required in get_tools' context_schema.
    assert check(schemas, ("get_tools", json.dumps({"context": ctx, "managers": []}))).reasons == (
        Reason("context_missing_field", 1, "get_tools", "workspaceId", ""),)


def test_a_call_stops_at_its_first_failing_check(schemas):
    ctx = {k: v for k, v in CTX.items() if k != "subgoal"}
    # missing `newPath` (required), `force` (unknown), path 1 (types), no subgoal (context): only `required` counts
    args = json.dumps({"context": ctx, "path": 1, "force": True})
    assert check(schemas, ("vaultManager_moveNote", args)) == RowCheck(
        2, (Reason("missing_required", 1, "vaultManager_moveNote", "newPath", ""),))
    args = json.dumps({"context": ctx, "path": 1, "newPath": "b", "force": True})
    assert check(schemas, ("vaultManager_moveNote", args)).first_failed == 3
    args = json.dumps({"context": ctx, "path": 1, "newPath": "b"})
    assert check(schemas, ("vaultManager_moveNote", args)).first_failed == 4
    args = json.dumps({"context": ctx, "path": "a", "newPath": "b"})
    assert check(schemas, ("vaultManager_moveNote", args)).first_failed == 5


def test_row_fails_at_its_earliest_check_and_keeps_each_calls_reasons(schemas):
    result = check(schemas, ("vaultManager_deleteNote", json.dumps({"context": CTX, "path": 1})),
                   ("nope_tool", "{}"),
                   ("vaultManager_deleteNote", json.dumps({"context": CTX, "path": "a"})))
    assert result == RowCheck(1, (Reason("wrong_type", 1, "vaultManager_deleteNote", "path", "expected string, got 1"),
                                  Reason("unknown_tool", 2, "nope_tool", "", "")))


# ---------------------------------------------------------------- schema file


def test_pinned_schema_file(schemas):
    assert schemas.sha256 == tc.TOOL_SCHEMAS_SHA256
    assert hashlib.sha256(SCHEMAS_PATH.read_bytes()).hexdigest() == tc.TOOL_SCHEMAS_SHA256
    assert len(schemas.tools) == 47
    assert schemas.path == str(SCHEMAS_PATH)


def test_every_distinct_type_string_is_handled(schemas):
    types = {p["type"] for t in schemas.tools.values() for p in t["parameters"]}
    assert types == {
        "string", "number", "boolean", "object", "array", "any", "string[]", "'asc' | 'desc'", "'1K' | '2K'",
        "'files' | 'folders' | 'both'", "'google'", "'imagen-4' | 'imagen-4-ultra' | 'imagen-4-fast'",
        "'semantic' | 'exact' | 'mixed'", "'tab' | 'split' | 'window' | 'current'", "AspectRatio",
        "ContentOperation[]", "DateRange", "MemoryType[]", "SessionFilterOptions", "TemporalFilterOptions",
        "UniversalSearchParams[]", "WorkspaceContext | string"}


GOOD_TOOL = {"tool_name": "a_b", "agent": "a", "mode": "b", "required_params": ["x"], "context_schema": None,
             "parameters": [{"name": "x", "optional": False, "type": "string"}]}


@pytest.mark.parametrize(("content", "expected"), [
    (b"{not json", "cannot be read as JSON"),
    (b"\xff\xfe", "cannot be read as JSON"),
    (b"[]", "non-empty JSON object"),
    (b"{}", "non-empty JSON object"),
    (json.dumps({"a_b": dict(GOOD_TOOL, parameters=None)}).encode(), "tool 'a_b': must be an object with"),
    (json.dumps({"a_b": dict(GOOD_TOOL, tool_name="zz")}).encode(), "tool 'a_b': needs 'tool_name' equal"),
    (json.dumps({"a_b": dict(GOOD_TOOL, parameters=[{"optional": False, "type": "string"}])}).encode(),
     "tool 'a_b' parameter #1: needs a non-empty string 'name'"),
    (json.dumps({"a_b": dict(GOOD_TOOL, parameters=[{"name": "x", "optional": False}])}).encode(),
     "tool 'a_b' parameter 'x': needs a string 'type'"),
    (json.dumps({"a_b": dict(GOOD_TOOL, parameters=[{"name": "x", "optional": False, "type": "Map<a, b>"}])}
                ).encode(), "tool 'a_b' parameter 'x': unsupported type"),
    (json.dumps({"a_b": dict(GOOD_TOOL, parameters=[{"name": "x", "optional": False, "type": "integer"}])}
                ).encode(), "unsupported type 'integer'"),
    (json.dumps({"a_b": dict(GOOD_TOOL, required_params=["y"])}).encode(), "tool 'a_b': 'required_params'"),
    (json.dumps({"a_b": dict(GOOD_TOOL, context_schema={"fields": [{"name": "s"}]})}).encode(),
     "tool 'a_b': 'context_schema'"),
])
def test_bad_schema_files(tmp_path, content, expected):
    path = tmp_path / "tool_schemas.json"
    path.write_bytes(content)
    with pytest.raises(tc.ToolSchemaError) as info:
        tc.read_tool_schemas(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_missing_schema_file(tmp_path):
    with pytest.raises(tc.ToolSchemaError, match="nowhere.json: file: cannot be read"):
        tc.read_tool_schemas(tmp_path / "nowhere.json")


def test_good_small_schema_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"a_b": GOOD_TOOL}))
    loaded = tc.read_tool_schemas(path)
    assert dict(loaded.tools) == {"a_b": GOOD_TOOL}
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- tool definitions

STRING_CONTEXT = {"type": "object",
                  "properties": {f: {"type": "string"} for f in ("sessionId", "workspaceId", "sessionDescription",
                                                                 "sessionMemory", "toolContext", "primaryGoal",
                                                                 "subgoal")}}


def test_function_definition_with_implied_context(schemas):
    assert tc.function_definition("vaultManager_openNote", schemas) == {
        "type": "function",
        "function": {
            "name": "vaultManager_openNote",
            "description": "Open note (vaultManager agent).",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "mode": {"type": "string", "enum": ["tab", "split", "window", "current"]},
                    "focus": {"type": "boolean"},
                    "context": dict(STRING_CONTEXT, description="Standard context object required by all tools",
                                    required=["sessionId", "sessionDescription", "sessionMemory", "toolContext",
                                              "primaryGoal", "subgoal"]),
                },
                "required": ["path", "context"],
            },
        },
    }


def test_function_definition_with_declared_context(schemas):
    assert tc.function_definition("memoryManager_listWorkspaces", schemas) == {
        "type": "function",
        "function": {
            "name": "memoryManager_listWorkspaces",
            "description": "List workspaces (memoryManager agent).",
            "parameters": {
                "type": "object",
                "properties": {
                    "sortBy": {"type": "string", "description": "Sort by: name, created, or lastAccessed"},
                    "order": {"type": "string", "description": "Sort order: asc or desc"},
                    "limit": {"type": "number", "description": "Maximum number of workspaces to return"},
                    "context": dict(STRING_CONTEXT, description="Standard context object required by all tools",
                                    required=["sessionId", "workspaceId", "sessionDescription", "sessionMemory",
                                              "toolContext", "primaryGoal", "subgoal"]),
                },
                "required": ["context"],
            },
        },
    }


def test_function_definition_of_named_and_union_types(schemas):
    image = tc.function_definition("agentManager_generateImage", schemas)["function"]["parameters"]["properties"]
    assert image["aspectRatio"] == {"type": "string", "enum": ["1:1", "3:4", "4:3", "9:16", "16:9"]}
    assert image["provider"] == {"type": "string", "enum": ["google"]}
    memory = tc.function_definition("vaultLibrarian_searchMemory", schemas)["function"]["parameters"]["properties"]
    assert memory["memoryTypes"] == {"type": "array", "items": {
        "type": "string", "enum": ["traces", "sessions", "states", "workspaces", "toolCalls"]}}
    assert memory["toolCallFilters"] == {}
    assert memory["sessionFiltering"] == {"type": "object"}
    batch = tc.function_definition("vaultLibrarian_batch", schemas)["function"]["parameters"]["properties"]
    assert batch["searches"] == {"type": "array", "items": {"type": "object"}}
    session = tc.function_definition("memoryManager_createSession", schemas)["function"]["parameters"]
    assert session["properties"]["workspaceContext"] == {"type": ["object", "string"]}
    assert session["required"] == ["context"]
    meta = tc.function_definition("get_tools", schemas)["function"]
    assert meta["description"].startswith("Meta-tool for dynamic tool discovery.")


def test_every_definition_is_json(schemas):
    for name in schemas.tools:
        definition = tc.function_definition(name, schemas)
        assert json.loads(json.dumps(definition)) == definition
        assert "context" in definition["function"]["parameters"]["required"]


def test_tools_for_row(schemas):
    parsed = tc.parse_reply("tool_call: commandManager_listCommands\narguments: {}\n\n"
                            "tool_call: made_up\narguments: {}\n\nok")
    assert tc.tools_for_row(parsed, schemas) == [
        "commandManager_executeCommand", "commandManager_listCommands", "get_tools"]
    assert tc.tools_for_row(tc.parse_reply("hello"), schemas) == ["get_tools"]


# ---------------------------------------------------------------- native messages

TWO_CALLS = ('tool_call: vaultManager_openNote\narguments: {"path": "a.md"}\n\n'
             'Result: {"success": true}\n\n'
             'Opened it; now reading.\n\n'
             'tool_call: contentManager_readContent\narguments: {"filePath": "a.md", "limit": 2}\n\n'
             'Result: {"success": true, "data": {"content": "hi"}}\n\n'
             'The note says hi.')
PROMPT = [{"role": "user", "content": "Read a.md"}]
TWO_CALLS_NATIVE = [
    {"role": "user", "content": "Read a.md"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "id": "call00001",
         "function": {"name": "vaultManager_openNote", "arguments": {"path": "a.md"}}}]},
    {"role": "tool", "content": '{"success": true}', "tool_call_id": "call00001", "name": "vaultManager_openNote"},
    {"role": "assistant", "content": "Opened it; now reading.", "tool_calls": [
        {"type": "function", "id": "call00002",
         "function": {"name": "contentManager_readContent", "arguments": {"filePath": "a.md", "limit": 2}}}]},
    {"role": "tool", "content": '{"success": true, "data": {"content": "hi"}}', "tool_call_id": "call00002",
     "name": "contentManager_readContent"},
    {"role": "assistant", "content": "The note says hi."},
]


def test_native_messages_two_calls():
    assert PROMPT + tc.native_messages(tc.parse_reply(TWO_CALLS)) == TWO_CALLS_NATIVE


def test_native_messages_back_to_back_calls_share_a_message():
    text = "First both.\n\ntool_call: a_b\narguments: {}\n\ntool_call: c_d\narguments: {\"x\": 1}\n\nResult: {}\n\nok"
    assert tc.native_messages(tc.parse_reply(text)) == [
        {"role": "assistant", "content": "First both.", "tool_calls": [
            {"type": "function", "id": "call00001", "function": {"name": "a_b", "arguments": {}}},
            {"type": "function", "id": "call00002", "function": {"name": "c_d", "arguments": {"x": 1}}}]},
        {"role": "tool", "content": "{}", "tool_call_id": "call00002", "name": "c_d"},
        {"role": "assistant", "content": "ok"},
    ]
    # A call after a result saw that result: its own message even with no text in between.
    text = "tool_call: a_b\narguments: {}\n\nResult: [1]\n\ntool_call: c_d\narguments: {}\n\nResult: [2]"
    assert tc.native_messages(tc.parse_reply(text)) == [
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "id": "call00001", "function": {"name": "a_b", "arguments": {}}}]},
        {"role": "tool", "content": "[1]", "tool_call_id": "call00001", "name": "a_b"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "id": "call00002", "function": {"name": "c_d", "arguments": {}}}]},
        {"role": "tool", "content": "[2]", "tool_call_id": "call00002", "name": "c_d"},
        {"role": "assistant", "content": ""},
    ]


def test_native_messages_without_calls_and_bad_calls():
    assert tc.native_messages(tc.parse_reply("Just text.")) == [{"role": "assistant", "content": "Just text."}]
    bad = tc.parse_reply('tool_call: a_b\narguments: {}\n\ntool_call: c_d\narguments: {"x": 1)\n\nok')
    with pytest.raises(ValueError, match=r"call 2 \(c_d\) does not parse: arguments_not_json at character 63"):
        tc.native_messages(bad)


def test_render_native_row_with_qwen25_template(schemas):
    chat_template_utils = pytest.importorskip("transformers.utils.chat_template_utils")
    parsed = tc.parse_reply(TWO_CALLS)
    tools = [tc.function_definition(name, schemas) for name in tc.tools_for_row(parsed, schemas)]
    rendered, _ = chat_template_utils.render_jinja_template(
        conversations=[PROMPT + tc.native_messages(parsed)], tools=tools, chat_template=QWEN25_TEMPLATE)
    text = rendered[0]
    assert '<tool_call>\n{"name": "vaultManager_openNote", "arguments": {"path": "a.md"}}\n</tool_call>' in text
    assert '"arguments": {"filePath": "a.md", "limit": 2}}' in text
    assert '"arguments": "{' not in text  # an object, not a JSON string
    assert "<tools>\n" + json.dumps(tools[0], ensure_ascii=False) + "\n" in text
    assert text.count('{"type": "function"') == len(tools) == 19  # get_tools + 9 contentManager + 9 vaultManager
    assert '<|im_start|>user\n<tool_response>\n{"success": true}\n</tool_response><|im_end|>' in text
    assert text.endswith("<|im_start|>assistant\nThe note says hi.<|im_end|>\n")


# ---------------------------------------------------------------- the real data


@needs_data
def test_every_real_reply_parses(schemas):
    rows = [json.loads(line) for line in FULL.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1000
    calls = bad_arguments = passing = 0
    for row in rows:
        parsed = tc.parse_reply(row["conversations"][-1]["content"])
        calls += len(parsed.calls)
        bad_arguments += sum(f.code in tc.FORMAT_CODES for f in parsed.findings)
        passing += tc.check_reply(parsed, schemas).first_failed == len(tc.CHECKS)
    assert (calls, bad_arguments, passing) == (1259, 36, 818)


@needs_data
def test_real_rows_convert_to_native_messages_when_their_arguments_parse(schemas):
    converted = 0
    for line in FULL.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        parsed = tc.parse_reply(row["conversations"][-1]["content"])
        if tc.check_reply(parsed, schemas).first_failed > 0:
            messages = tc.native_messages(parsed)
            ids = [c["id"] for m in messages for c in m.get("tool_calls", [])]
            assert all(len(i) == 9 and i.isalnum() and i.isascii() for i in ids)
            assert len(ids) == len(set(ids)) == len(parsed.calls)
            converted += 1
    assert converted == 968


# ---------------------------------------------------------------- the package's own copy, the gate, the configs


def test_the_shipped_schemas_are_the_authors_file_byte_for_byte():
    shipped = REPO / "claudesidian_tools" / tc.TOOL_SCHEMAS_FILENAME
    assert shipped.read_bytes() == SCHEMAS_PATH.read_bytes()
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == tc.TOOL_SCHEMAS_SHA256
    assert "MIT License" in (REPO / "claudesidian_tools" / "tool_schemas.LICENSE").read_text(encoding="utf-8")
    assert tc.load_tool_schemas().path == str(shipped)  # the default of `tool_schemas`


def _arguments_parse(reply: str) -> bool:
    """Every `arguments:` line of a reply holds one JSON object: an independent reading of the first check."""
    for line_start in [index for index in range(len(reply)) if reply.startswith("\narguments: ", index)]:
        text = reply[line_start + len("\narguments: "):]
        try:
            value, end = json.JSONDecoder().raw_decode(text)
        except json.JSONDecodeError:
            return False
        if not isinstance(value, dict) or text[end:].split("\n", 1)[0].strip():
            return False
    return True


def test_the_funnel_of_v1_0_0(source_rows, schemas):
    """The first two checks read here on their own (JSON objects; names of the 47 tools), the whole
    funnel as `stats` reports it, per label."""
    from claudesidian_tools.stats import count_config

    replies = {label: [row["conversations"][-1]["content"] for row in source_rows if row["label"] == label]
               for label in (True, False)}
    parsing = {label: [reply for reply in texts if _arguments_parse(reply)] for label, texts in replies.items()}
    known = {label: [reply for reply in texts if all(
        line.split("tool_call:", 1)[1].strip() in schemas.tools for line in reply.split("\n")
        if line.startswith("tool_call:"))] for label, texts in parsing.items()}
    assert [len(parsing[True]), len(known[True]), len(parsing[False]), len(known[False])] == [719, 667, 249, 236]
    counted, _ = count_config("full", source=str(FULL))
    funnel = counted["train"].result()["tool_calls"]
    assert funnel["schemas_sha256"] == tc.TOOL_SCHEMAS_SHA256
    assert list(funnel["desirable"]["passing"].values()) == [719, 667, 662, 646, 632, 632]
    assert list(funnel["undesirable"]["passing"].values()) == [249, 236, 204, 198, 191, 186]
    assert (funnel["undesirable"]["bad_format"], funnel["undesirable"]["well_formed_but_failing"]) == (5, 63)
    assert funnel["desirable"]["top_reasons"][0] == {"code": "unknown_parameter", "tool": "memoryManager_createState",
                                                    "parameter": "snapshot", "count": 32}


def test_the_gate_drops_or_relabels_the_desirable_rows_that_fail(source_path):
    """746 desirable rows, 632 of which pass every check (the funnel above): `sft` keeps those; `kto_tools`
    relabels the other 114 undesirable except the 27 whose calls do not parse, which a tools layout cannot
    hold and drops, with the 5 such undesirable rows; its rows are turns, one per undesirable row."""
    sft = cs.load("sft", source=source_path, test_size=0)
    assert len(sft["train"]) == 632
    kto = cs.load("kto_tools", source=source_path, test_size=0, order="source")["train"]
    undesirable = (254 - 5) + (114 - 27)
    assert len(kto) - sum(kto["label"]) == undesirable and sum(kto["label"]) == 1236 + 141
    kept = cs.load("full", source=source_path, gate="drop", split="train")
    assert len(kept) == 1000 - 114 and sum(kept["label"]) == 632


def test_a_tools_layout_without_the_gate_names_the_rows_that_do_not_parse(source_path):
    with pytest.raises(cs.OptionError) as caught:
        cs.load("full", source=source_path, layout="kto_tools")
    message = str(caught.value)
    assert ("layout='kto_tools' needs the tool calls of every row it holds to parse, and 32 rows of the train split "
            "do not (source rows 900, 913, 914, 917, 918, 919, 921, 922, ...)") in message
    assert "gate='drop'" in message


def test_a_bad_schema_file_is_one_line_on_the_command_line(source_path, tmp_path):
    bad = tmp_path / "tool_schemas.json"
    bad.write_text('{"a_b": {"tool_name": "a_b"}}')
    result = run_main("build", "sft", "--tool-schemas", bad, "--source", source_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"claudesidian-synthetic: error: {bad}: tool 'a_b': must be an object with a 'parameters' list; "
                    "fix the file, or leave out --tool-schemas for the pinned copy (sha256 2e741f5c0f71...)")


def test_another_schema_file_changes_the_gate_and_is_named_in_the_stats(source_path, tmp_path, schemas):
    """A version of the schemas without `get_tools`: the rows that call it fail, and sft drops them."""
    other = json.loads(SCHEMAS_PATH.read_text(encoding="utf-8"))
    del other["get_tools"]
    path = tmp_path / "tool_schemas.json"
    path.write_text(json.dumps(other))
    calling = sum("\ntool_call: get_tools\n" in "\n" + row["conversations"][-1]["content"] + "\n"
                  for row in map(json.loads, FULL.read_text(encoding="utf-8").splitlines()) if row["label"])
    result = run_main("stats", "sft", "--tool-schemas", path, "--test-size", "0", "--json", "--source", source_path)
    assert result.returncode == 0, result.stderr
    train = json.loads(result.stdout)["train"]
    assert train["tool_calls"]["schemas_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert calling > 0 and 632 - calling <= train["rows"] < 632


# ---------------------------------------------------------------- what TRL renders


def test_trl_renders_the_tools_and_keeps_the_call_in_the_completion(source_path):
    """A `kto_tools` row through TRL's own `apply_chat_template`, with a tokenizer whose template is
    Qwen2.5's: the prompt holds the tool definitions, the completion the structured call."""
    need_trl()
    from tiny_model import tiny_model_and_tokenizer
    from trl.data_utils import apply_chat_template

    _, tokenizer = tiny_model_and_tokenizer(QWEN25_TEMPLATE)
    row = cs.load("kto_tools", split="train", source=source_path)[1]
    assert row["completion"][0]["tool_calls"]  # this row's reply starts with a call
    rendered = apply_chat_template(row, tokenizer, tools=row["tools"])
    call = row["completion"][0]["tool_calls"][0]["function"]
    assert "<tools>" in rendered["prompt"] and json.dumps(row["tools"][0], ensure_ascii=False) in rendered["prompt"]
    assert '<tool_call>\n{"name": "' + call["name"] not in rendered["prompt"]
    assert rendered["completion"].startswith("<tool_call>\n{\"name\": \"" + call["name"] + "\", \"arguments\": {")
    assert json.dumps(call["arguments"], ensure_ascii=False) in rendered["completion"]
