"""What an MCP server hands back, bounded before it reaches the model or the log."""

from __future__ import annotations

import mcp_types

from agents._tools._mcp_convert import MAX_DESCRIPTION, MAX_RESULT, convert_tool, flatten


def test_a_huge_result_is_cut_and_says_so() -> None:
    text = "x" * (MAX_RESULT + 10)
    flat = flatten(
        mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=text)])
    )
    assert flat.startswith("x" * 1000) and len(flat) < MAX_RESULT + 100
    assert flat.endswith(f"[cut: the MCP server returned {MAX_RESULT + 10:,} characters]")
    small = mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text="ok")])
    assert flatten(small) == "ok"


def test_a_manual_sized_description_is_shortened() -> None:
    tool = mcp_types.Tool(name="t", input_schema={"type": "object"}, description="d" * 50_000)
    converted = convert_tool("docs", tool)
    assert len(converted.description) == MAX_DESCRIPTION
    assert converted.description.endswith("…")
    assert converted.name == "mcp__docs__t" and converted.parameters == {"type": "object"}
