"""Modes as data, their restrictions, TOML overrides and routing (SPEC §4.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents._core._modes import (
    ModeRegistry,
    builtin_modes,
    load_modes,
    parse_route_answer,
    route_by_keywords,
)
from agents._core._tools import TOOLS
from agents._errors import ConfigError, ToolError
from sessions import JSONObject

READ = {"read_file", "list_files", "search_files"}
EDIT = {"write_file", "apply_diff", "create_directory", "delete_file", "move_file"}
IDE = READ | EDIT | {"execute_command"}
HANDBACK = {"switch_mode", "ask_followup_question", "attempt_completion"}

SPEC_TABLE = {
    "orchestrator": {"new_task"} | HANDBACK,
    "coder": IDE | HANDBACK,
    "architect": READ | {"write_file", "new_task"} | HANDBACK,
    "debug": READ | {"execute_command"} | HANDBACK,
    "ask": READ | HANDBACK,
}


@pytest.fixture
def modes() -> ModeRegistry:
    return builtin_modes()


# Arguments for any tool: check_call looks only at the ones it restricts.
ARGS: JSONObject = {
    "path": "docs/a.md",
    "source": "docs/a.md",
    "destination": "docs/b.md",
    "command": "ls",
    "mode": "coder",
    "reason": "r",
    "message": "m",
    "result": "r",
    "question": "q",
}


def test_builtins_match_the_spec_table(modes: ModeRegistry) -> None:
    assert modes.names() == ("orchestrator", "coder", "architect", "debug", "ask")
    for name, tools in SPEC_TABLE.items():
        mode = modes.get(name)
        assert set(mode.tool_names()) == tools, name
        assert [spec.name for spec in modes.tools_for(name)] == list(mode.tool_names())
        assert mode.description and mode.system_prompt == mode.system_prompt.strip()
        assert mode.model is None
    assert modes.get("architect").file_regex == r"\.mdx?$"
    assert {m: modes.get(m).file_regex for m in modes.names() if m != "architect"} == dict.fromkeys(
        ("orchestrator", "coder", "debug", "ask")
    )
    assert load_modes(None) is modes


@pytest.mark.parametrize(("name", "tools"), SPEC_TABLE.items())
def test_every_mode_may_call_exactly_its_tools(
    modes: ModeRegistry, name: str, tools: set[str]
) -> None:
    for tool in TOOLS:
        if tool in tools:
            modes.check_call(name, tool, ARGS)
        else:
            with pytest.raises(ToolError, match=f"^{name} may not use {tool}"):
                modes.check_call(name, tool, ARGS)


@pytest.mark.parametrize("path", ["docs/plan.md", "README.md", "site/page.mdx", "a\\b.md"])
def test_architect_may_write_markdown(modes: ModeRegistry, path: str) -> None:
    modes.check_call("architect", "write_file", {"path": path, "content": "# plan"})


@pytest.mark.parametrize("path", ["src/app.py", "notes.md.py", "plan.markdown", "md"])
def test_architect_may_not_write_other_files(modes: ModeRegistry, path: str) -> None:
    with pytest.raises(ToolError) as info:
        modes.check_call("architect", "write_file", {"path": path, "content": "x"})
    assert str(info.value) == rf"architect may only write files matching \.mdx?$ (got {path!r})"


def test_refusals_quote_the_restriction(modes: ModeRegistry) -> None:
    with pytest.raises(ToolError, match="ask may not use write_file") as info:
        modes.check_call("ask", "write_file", {"path": "a", "content": ""})
    assert "ask is read-only" in str(info.value)
    assert "its tools are: read_file, list_files, search_files" in str(info.value)
    with pytest.raises(ToolError, match=r"\(debug never writes files\)"):
        modes.check_call("debug", "apply_diff", {"path": "a", "search": "", "replace": ""})
    modes.check_call("debug", "execute_command", {"command": "pytest -x"})
    for tool in IDE:
        with pytest.raises(ToolError, match="orchestrator never edits or runs anything itself"):
            modes.check_call("orchestrator", tool, ARGS)


def test_mode_arguments_must_name_a_known_mode(modes: ModeRegistry) -> None:
    modes.check_call("coder", "switch_mode", {"mode": "ask", "reason": "r"})
    modes.check_call("orchestrator", "new_task", {"mode": "architect", "message": "m"})
    with pytest.raises(ToolError, match="switch_mode: unknown mode 'nope'; modes: orchestrator"):
        modes.check_call("coder", "switch_mode", {"mode": "nope", "reason": "r"})
    with pytest.raises(ToolError, match="new_task: unknown mode 'nope'"):
        modes.check_call("orchestrator", "new_task", {"mode": "nope", "message": "m"})


def test_unknown_tool_and_mode(modes: ModeRegistry) -> None:
    with pytest.raises(ToolError, match="unknown tool 'hack'"):
        modes.check_call("coder", "hack", {})
    with pytest.raises(KeyError, match="unknown agent 'nope'"):
        modes.get("nope")
    assert "coder" in modes and "nope" not in modes


def test_tools_for_helps_a_real_llm(modes: ModeRegistry) -> None:
    specs = {spec.name: spec for spec in modes.tools_for(modes.get("architect"))}
    assert r"\.mdx?$" in specs["write_file"].description
    mode_arg = specs["new_task"].parameters["properties"]
    assert isinstance(mode_arg, dict)
    assert mode_arg["mode"] == {
        "type": "string",
        "description": "Name of the agent.",
        "enum": list(modes.names()),
    }
    assert "enum" not in str(TOOLS["new_task"].parameters)  # the catalogue is untouched


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_overrides_and_extends(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        port = 1

        [approval]
        rules = []

        [modes.tester]
        description = "Write and run tests."
        system_prompt = "You are the tester."
        tool_groups = ["read", "command"]
        tools = ["write_file", "switch_mode"]
        file_regex = '^tests/'
        model = "small"

        [modes.debug]
        model = "big"
        tool_groups = ["read"]

        [modes.architect]
        file_regex = ""
        restriction = ""
        """,
    )
    modes = load_modes(path)
    assert modes.names() == ("orchestrator", "coder", "architect", "debug", "ask", "tester")
    tester = modes.get("tester")
    assert tester.tool_names() == (
        "read_file",
        "list_files",
        "search_files",
        "write_file",
        "execute_command",
        "switch_mode",
    )
    assert (tester.model, tester.file_regex) == ("small", "^tests/")
    modes.check_call("tester", "write_file", {"path": "tests/test_a.py", "content": ""})
    with pytest.raises(ToolError, match=r"tester may only write files matching \^tests/"):
        modes.check_call("tester", "write_file", {"path": "src/a.py", "content": ""})
    debug = modes.get("debug")
    assert debug.model == "big"
    assert debug.system_prompt == builtin_modes().get("debug").system_prompt
    with pytest.raises(ToolError, match="debug may not use execute_command"):
        modes.check_call("debug", "execute_command", {"command": "ls"})
    modes.check_call("architect", "write_file", {"path": "src/app.py", "content": ""})
    assert modes.get("architect").restriction is None
    assert builtin_modes().get("architect").file_regex == r"\.mdx?$"  # defaults unchanged


INVALID = [
    ("[modes.x\n", "invalid TOML"),
    ("modes = 3", "'modes' must be a table"),
    ("[modes]\ncoder = 3", "modes.coder: must be a table"),
    ("[modes.coder]\ncolour = 'red'", "modes.coder: unknown field 'colour'"),
    ("[modes.coder]\ntool_groups = ['write']", "modes.coder.tool_groups: unknown group 'write'"),
    ("[modes.coder]\ntool_groups = 'read'", "modes.coder.tool_groups: must be a list of strings"),
    ("[modes.coder]\ntools = ['rm']", "modes.coder.tools: unknown tool 'rm' (read_file, "),
    ("[modes.coder]\nfile_regex = '(['", "modes.coder.file_regex: invalid regex"),
    ("[modes.coder]\nmodel = 4", "modes.coder.model: must be a string, got int"),
    ("[modes.coder]\nsystem_prompt = ' '", "modes.coder.system_prompt: must not be empty"),
    ("[modes.new]\ndescription = 'd'", "modes.new: a new mode needs a non-empty 'system_prompt'"),
    ("[modes.new]\nsystem_prompt = 'p'", "modes.new: a new mode needs a non-empty 'description'"),
    ("[modes.Bad]\ndescription = 'd'\nsystem_prompt = 'p'", "modes.Bad: a mode name must match"),
]


def test_a_file_that_is_not_utf8_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "modes.toml"
    path.write_bytes(b"\xff\xfe[modes]\n")
    with pytest.raises(ConfigError, match=r"modes.toml: invalid TOML \(not UTF-8 at byte 0\)"):
        load_modes(path)


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_files_raise_config_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_modes(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_modes(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "agent"),
    [
        ("Plan the migration", "architect"),
        ("write a design doc", "architect"),
        ("describe the architecture.", "architect"),
        ("Explain this function", "ask"),
        ("what's this?", "ask"),
        ("Why is it slow?", "ask"),
        ("how does the cache work", "ask"),
        ("debug the crash", "debug"),
        ("fix the login", "debug"),
        ("I get an error", "debug"),
        ("there is a bug", "debug"),
        ("here is the traceback:", "debug"),
        ("create hello.py", "coder"),
        ("update docs/plan.md", "coder"),  # file names are not keywords
        ("raise ValueError", "coder"),
        ("how do I add a flag", "coder"),
        ("", "coder"),
    ],
)
def test_keyword_router(text: str, agent: str) -> None:
    assert route_by_keywords(text) == agent


def test_keyword_router_precedence_is_the_table_order() -> None:
    assert route_by_keywords("fix the design") == "architect"
    assert route_by_keywords("why this error") == "ask"


@pytest.mark.parametrize(
    ("answer", "parsed"),
    [
        ('{"agent": "debug", "reason": "a crash"}', ("debug", "a crash")),
        ('```json\n{"agent": " Ask ", "reason": " q "}\n```', ("ask", "q")),
        ('Sure! {"agent": "coder"} hope that helps', ("coder", "")),
        ('{"agent": "coder", "reason": 3}', ("coder", "")),
        ('{"agent": "wizard", "reason": "x"}', None),
        ('{"agent": 1}', None),
        ('{"reason": "x"}', None),
        ('["coder"]', None),
        ("coder", None),
        ("{not json}", None),
        ("", None),
    ],
)
def test_parse_route_answer(
    modes: ModeRegistry, answer: str, parsed: tuple[str, str] | None
) -> None:
    assert parse_route_answer(answer, modes) == parsed
