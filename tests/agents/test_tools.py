"""The tool catalogue and argument validation (SPEC §4.2)."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from agents._core._tools import TOOLS, tool_def, validate_arguments, validate_call
from agents._errors import ToolError
from sessions import JSONObject

GOOD: dict[str, list[JSONObject]] = {
    "read_file": [{"path": "a.py"}, {"path": "src/a.py", "start_line": 1, "end_line": 9}],
    "write_file": [{"path": "a.py", "content": ""}, {"path": "docs/x.md", "content": "# x"}],
    "apply_diff": [{"path": "a.py", "search": "x", "replace": "y"}],
    "list_files": [{"path": "."}, {"path": "src", "recursive": True}],
    "search_files": [
        {"path": ".", "regex": "TODO"},
        {"path": "s", "regex": "x", "file_pattern": "*.py"},
    ],
    "create_directory": [{"path": "new/dir"}],
    "delete_file": [{"path": "old.py"}],
    "move_file": [{"source": "a.py", "destination": "b/a.py"}],
    "execute_command": [{"command": "pytest"}, {"command": "ls", "cwd": "src", "timeout_s": 2.5}],
    "switch_mode": [{"mode": "coder", "reason": "code"}],
    "new_task": [{"mode": "coder", "message": "do it"}],
    "attempt_completion": [{"result": "done"}],
    "ask_followup_question": [{"question": "which?"}, {"question": "q", "options": ["a", "b"]}],
}

BAD: dict[str, list[JSONObject]] = {
    "read_file": [{}, {"path": 1}, {"path": "a", "start_line": 0}, {"path": "a", "x": 1}],
    "write_file": [{"path": "a.py"}, {"content": "x"}, {"path": "a", "content": 3}],
    "apply_diff": [{"path": "a", "search": "x"}, {"path": "a", "search": "x", "replace": None}],
    "list_files": [{}, {"path": ".", "recursive": "yes"}],
    "search_files": [{"path": "."}, {"path": ".", "regex": "x", "file_pattern": 1}],
    "create_directory": [{}, {"path": ["a"]}],
    "delete_file": [{}, {"path": "a", "force": True}],
    "move_file": [{"source": "a"}, {"destination": "b"}],
    "execute_command": [{}, {"command": "ls", "timeout_s": 0}, {"command": "ls", "cwd": 1}],
    "switch_mode": [{"mode": "coder"}, {"reason": "x"}],
    "new_task": [{"mode": "coder"}, {"message": "x", "mode": 1}],
    "attempt_completion": [{}, {"result": 1}],
    "ask_followup_question": [{}, {"question": "q", "options": [1]}],
}


def test_catalogue_matches_the_spec() -> None:
    groups = {name: (tool.side, tool.group) for name, tool in TOOLS.items()}
    assert groups == {
        "read_file": ("ide", "read"),
        "list_files": ("ide", "read"),
        "search_files": ("ide", "read"),
        "write_file": ("ide", "edit"),
        "apply_diff": ("ide", "edit"),
        "create_directory": ("ide", "edit"),
        "delete_file": ("ide", "edit"),
        "move_file": ("ide", "edit"),
        "execute_command": ("ide", "command"),
        "switch_mode": ("server", "mode"),
        "new_task": ("server", "mode"),
        "attempt_completion": ("server", "mode"),
        "ask_followup_question": ("server", "mode"),
    }
    assert set(GOOD) == set(TOOLS) == set(BAD)


@pytest.mark.parametrize("name", list(TOOLS))
def test_schemas_are_valid_and_closed(name: str) -> None:
    schema = TOOLS[name].parameters
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    spec = TOOLS[name].to_spec()
    assert (spec.name, spec.parameters) == (name, schema)


@pytest.mark.parametrize(("name", "args"), [(n, a) for n, cases in GOOD.items() for a in cases])
def test_good_arguments_pass(name: str, args: JSONObject) -> None:
    assert validate_call(name, json.dumps(args)) == args
    assert validate_arguments(name, args) == args


@pytest.mark.parametrize(("name", "args"), [(n, a) for n, cases in BAD.items() for a in cases])
def test_bad_arguments_are_refused(name: str, args: JSONObject) -> None:
    with pytest.raises(ToolError, match=f"^{name}: "):
        validate_call(name, json.dumps(args))
    with pytest.raises(ToolError):
        validate_arguments(name, args)


def test_messages_name_tool_and_argument() -> None:
    with pytest.raises(ToolError) as info:
        validate_call("write_file", '{"path": "a.py"}')
    assert str(info.value) == "write_file: 'content' is a required property"
    with pytest.raises(ToolError, match=r"'path': 5 is not of type 'string'"):
        validate_call("read_file", '{"path": 5}')
    with pytest.raises(ToolError, match=r"'extra' was unexpected"):
        validate_call("read_file", '{"path": "a", "extra": 1}')


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "arguments are not valid JSON"),
        ("[1, 2]", "arguments must be a JSON object"),
        ('"a.py"', "arguments must be a JSON object"),
        ("", "'path' is a required property"),
    ],
)
def test_argument_text_must_be_a_json_object(raw: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        validate_call("read_file", raw)


def test_unknown_tool() -> None:
    for check in (
        lambda: validate_call("rm_rf", "{}"),
        lambda: validate_arguments("rm_rf", {}),
        lambda: tool_def("rm_rf"),
    ):
        with pytest.raises(ToolError, match="unknown tool 'rm_rf'; known tools: read_file"):
            check()


ESCAPES = ["/etc/passwd", "../x", "a/../../x", "..", "C:\\x", "c:/x", "C:x", "\\x", "\\\\srv\\s"]
ESCAPES += ["~/.ssh/id_rsa", "a\\..\\..\\x", "", "  ", "a\x00b"]


@pytest.mark.parametrize("path", ESCAPES)
def test_paths_outside_the_workspace_are_refused(path: str) -> None:
    cases: list[tuple[str, JSONObject]] = [
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "x"}),
        ("move_file", {"source": path, "destination": "ok"}),
        ("move_file", {"source": "ok", "destination": path}),
        ("execute_command", {"command": "ls", "cwd": path}),
    ]
    for name, args in cases:
        with pytest.raises(ToolError, match=f"^{name}: "):
            validate_call(name, json.dumps(args))


def test_path_refusals_say_why() -> None:
    with pytest.raises(ToolError, match=r"path '/etc/passwd' must be relative to the workspace"):
        validate_call("read_file", '{"path": "/etc/passwd"}')
    with pytest.raises(ToolError, match=r"path 'a/../../x' escapes the workspace"):
        validate_call("read_file", '{"path": "a/../../x"}')
    with pytest.raises(ToolError, match=r"path must not be empty"):
        validate_call("read_file", '{"path": ""}')
    with pytest.raises(ToolError, match=r"NUL byte"):
        validate_arguments("read_file", {"path": "a\x00"})


@pytest.mark.parametrize(
    "path", [".", "./a", "a/../b", "a/b/../../c", "src\\app.py", "..a", "a..b"]
)
def test_relative_paths_are_accepted_unchanged(path: str) -> None:
    assert validate_arguments("read_file", {"path": path}) == {"path": path}


def test_validate_arguments_returns_a_copy() -> None:
    args: JSONObject = {"path": "a"}
    out = validate_arguments("read_file", args)
    assert out == args and out is not args
