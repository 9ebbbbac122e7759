"""The pure side of MCP tools: configuration, names, selection, validation and default decisions."""

from __future__ import annotations

import pytest

from agents import ConfigError, ToolError, builtin_modes
from agents._core._mcp import (
    HttpTransport,
    McpServerConfig,
    McpTool,
    MountedTools,
    Selector,
    StdioTransport,
    ToolHints,
    parse_selector,
    parse_servers,
    split_name,
    tool_name,
)
from agents._core._policy import mcp_default
from agents.testing import parse_modes, parse_policy
from sessions import JSONObject


def test_a_stdio_and_an_http_server_parse_with_their_defaults() -> None:
    servers = parse_servers(
        {
            "mcp": {
                "servers": {
                    "docs": {
                        "command": "docs-server",
                        "args": ["--index", "x"],
                        "env": {"LANG": "en"},
                        "trusted": True,
                        "tools": ["search_*"],
                        "timeout_s": 5,
                        "startup": "eager",
                    },
                    "tracker": {
                        "url": "https://tracker.example/mcp",
                        "headers_env": {"Authorization": "TRACKER_AUTH"},
                    },
                }
            }
        },
        source="agent.toml",
    )
    docs, tracker = servers
    assert docs == McpServerConfig(
        "docs",
        StdioTransport("docs-server", ("--index", "x"), {"LANG": "en"}),
        trusted=True,
        tools=("search_*",),
        timeout_s=5.0,
        startup="eager",
    )
    assert docs.allows("search_pages") and not docs.allows("drop_index")
    assert isinstance(tracker.transport, HttpTransport)
    assert dict(tracker.transport.headers_env) == {"Authorization": "TRACKER_AUTH"}
    assert (tracker.trusted, tracker.tools, tracker.startup) == (False, None, "lazy")
    assert tracker.allows("anything")
    assert parse_servers({}, source="x") == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "give exactly one of 'command' (stdio) or 'url'"),
        ({"command": "x", "url": "http://y"}, "give exactly one of"),
        ({"command": "x", "headers": {}}, "'headers' is for 'url' servers"),
        ({"url": "http://y", "args": []}, "'args' is for 'command' servers"),
        ({"url": "ftp://y"}, "must be an http:// or https:// URL"),
        ({"command": "x", "trusted": "yes"}, "'trusted' must be true or false"),
        ({"command": "x", "timeout_s": 0}, "'timeout_s' must be a positive number"),
        ({"command": "x", "timeout_s": float("inf")}, "'timeout_s' must be a positive number"),
        ({"command": "x", "startup": "now"}, "'startup' must be 'lazy' or 'eager'"),
        ({"command": "x", "tools": "a*"}, "'tools' must be an array of strings"),
        ({"command": "x", "colour": 1}, "unknown field 'colour'"),
        ({"command": ""}, "'command' must be a non-empty string"),
    ],
)
def test_invalid_server_tables_are_refused_naming_the_server(
    table: JSONObject, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"agent\.toml: mcp\.servers\.docs") as raised:
        parse_servers({"mcp": {"servers": {"docs": table}}}, source="agent.toml")
    assert message in str(raised.value)


def test_server_names_must_fit_in_a_tool_name() -> None:
    with pytest.raises(ConfigError, match="1-32 letters, digits or '-'"):
        parse_servers({"mcp": {"servers": {"my_docs": {"command": "x"}}}}, source="a.toml")


def test_tool_names_round_trip() -> None:
    assert tool_name("docs", "search_pages") == "mcp__docs__search_pages"
    assert split_name("mcp__docs__search_pages") == ("docs", "search_pages")
    assert split_name("mcp__docs__a__b") == ("docs", "a__b")
    for name in ("read_file", "mcp__docs", "mcp____x", "mcp__docs__"):
        assert split_name(name) is None, name


def test_modes_select_servers_and_tools() -> None:
    modes = parse_modes(
        {"modes": {"coder": {"mcp": ["docs", "tracker/search_*"]}}},
        source="m.toml",
        base=builtin_modes(),
    )
    coder = modes.get("coder")
    assert coder.mcp == (Selector("docs"), Selector("tracker", "search_*"))
    assert [str(s) for s in coder.mcp] == ["docs", "tracker/search_*"]
    # Other fields of the built-in mode are kept; an edit without mcp keeps it.
    assert coder.tool_groups == builtin_modes().get("coder").tool_groups
    again = parse_modes({"modes": {"coder": {"model": "m"}}}, source="m2.toml", base=modes)
    assert again.get("coder").mcp == coder.mcp
    assert builtin_modes().get("coder").mcp == ()
    with pytest.raises(ConfigError, match="must be 'SERVER' or 'SERVER/TOOL_GLOB'"):
        parse_selector("tracker/", "m.toml")
    with pytest.raises(ConfigError, match=r"m\.toml: modes\.coder\.mcp"):
        parse_modes({"modes": {"coder": {"mcp": ["no_underscores"]}}}, source="m.toml")


SCHEMA: JSONObject = {
    "type": "object",
    "properties": {"query": {"type": "string"}},
    "required": ["query"],
    "additionalProperties": False,
}


def test_arguments_are_checked_against_the_servers_schema() -> None:
    mounted = MountedTools.of((McpTool("docs", "search", "d", SCHEMA),))
    assert mounted.validate("mcp__docs__search", '{"query": "x"}') == {"query": "x"}
    with pytest.raises(ToolError, match="'query' is a required property"):
        mounted.validate("mcp__docs__search", "")
    with pytest.raises(ToolError, match="arguments are not valid JSON"):
        mounted.validate("mcp__docs__search", "{")
    with pytest.raises(ToolError, match="unknown tool 'mcp__docs__drop'"):
        mounted.validate("mcp__docs__drop", "{}")
    with pytest.raises(ToolError, match="Additional properties are not allowed"):
        mounted.check_named("mcp__docs__search", {"query": "x", "extra": 1})


def test_a_broken_server_schema_falls_back_to_an_object_check() -> None:
    broken = McpTool("docs", "odd", "d", {"type": "no-such-type"})
    mounted = MountedTools.of((broken,))
    assert mounted.validate("mcp__docs__odd", '{"a": 1}') == {"a": 1}
    with pytest.raises(ToolError, match="must be a JSON object"):
        mounted.validate("mcp__docs__odd", "[1]")


@pytest.mark.parametrize(
    ("trusted", "hints", "action", "wording"),
    [
        (False, ToolHints(read_only=True), "ask", "MCP server docs is not trusted"),
        (True, ToolHints(read_only=True), "allow", "has readOnlyHint"),
        (True, ToolHints(read_only=False, destructive=True), "ask", "has destructiveHint"),
        (True, ToolHints(), "ask", "not read-only"),
    ],
)
def test_hints_set_the_default_only_for_trusted_servers(
    trusted: bool, hints: ToolHints, action: str, wording: str
) -> None:
    decision = mcp_default(McpTool("docs", "search", "d", SCHEMA, hints), trusted)
    assert decision.action == action and wording in decision.rule_text


def test_rules_name_mcp_tools_by_name_or_glob_and_win_over_the_default() -> None:
    policy = parse_policy(
        {
            "approval": {
                "rules": [
                    {"tool": "mcp__tracker__*", "action": "deny", "reason": "read-only week"},
                    {"tool": "mcp__docs__search", "action": "allow"},
                ]
            }
        },
        source="p.toml",
    )
    untrusted = mcp_default(McpTool("docs", "search", "d", SCHEMA), False)
    assert policy.evaluate("mcp__docs__search", {}, untrusted).action == "allow"
    assert policy.evaluate("mcp__tracker__close", {}, untrusted).action == "deny"
    assert policy.evaluate("mcp__other__x", {}, untrusted) == untrusted


def test_a_schema_with_a_dangling_ref_falls_back_to_an_object_check() -> None:
    dangling: JSONObject = {
        "type": "object",
        "properties": {"q": {"$ref": "#/$defs/missing"}},
    }
    remote: JSONObject = {"$ref": "https://example.invalid/schema.json"}
    for schema in (dangling, remote):
        mounted = MountedTools.of((McpTool("docs", "odd", "d", schema),))
        assert mounted.validate("mcp__docs__odd", '{"q": 1}') == {"q": 1}
        with pytest.raises(ToolError, match="is not of type 'object'"):
            mounted.check_named("mcp__docs__odd", [])  # type: ignore[arg-type]
