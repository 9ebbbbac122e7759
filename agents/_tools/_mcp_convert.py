"""What the MCP SDK hands back, as the runtime's values: tools and call results.

Pure conversions of the SDK's (pydantic) types; only type-checking imports of the
SDK at module level, so importing this needs no ``mcp`` extra.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sessions import JSON, JSONObject

from .._core._mcp import McpTool, ToolHints

if TYPE_CHECKING:
    import mcp_types

#: Longest tool description offered to the model (a server's may be a manual).
MAX_DESCRIPTION = 2048
#: Longest result text handed on (characters): the log keeps it whole below this, as
#: it keeps an IDE's results below the message limit; beyond, the cut is said.
MAX_RESULT = 1_048_576


def convert_tool(server: str, tool: mcp_types.Tool) -> McpTool:
    notes = tool.annotations
    hints = (
        ToolHints(
            notes.read_only_hint,
            notes.destructive_hint,
            notes.idempotent_hint,
            notes.open_world_hint,
        )
        if notes is not None
        else ToolHints()
    )
    # A JSON round trip detaches the schema from the SDK's model and proves it is JSON.
    parameters: JSONObject = json.loads(json.dumps(tool.input_schema))
    description = tool.description or tool.title or (notes.title if notes else None) or ""
    if len(description) > MAX_DESCRIPTION:  # sent with every request: keep it short
        description = description[: MAX_DESCRIPTION - 1] + "…"
    return McpTool(server, tool.name, description, parameters, hints)


def flatten(result: mcp_types.CallToolResult) -> str:
    """A tool result as text for the model (binary parts as a short bracketed line)."""
    import mcp_types

    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            parts.append(f"[{block.type}: {block.mime_type}, {_decoded_size(block.data)} bytes]")
        elif isinstance(block, mcp_types.ResourceLink):
            mime = f", {block.mime_type}" if block.mime_type else ""
            parts.append(f"[resource link: {block.name} <{block.uri}>{mime}]")
        elif isinstance(block, mcp_types.EmbeddedResource):
            content = block.resource
            if isinstance(content, mcp_types.TextResourceContents):
                parts.append(content.text)
            else:
                mime = f", {content.mime_type}" if content.mime_type else ""
                parts.append(
                    f"[resource: <{content.uri}>{mime}, {_decoded_size(content.blob)} bytes]"
                )
    if not parts and result.structured_content is not None:
        structured: JSON = result.structured_content
        return _bounded(json.dumps(structured, ensure_ascii=False))
    return _bounded("\n".join(parts))


def _bounded(text: str) -> str:
    if len(text) <= MAX_RESULT:
        return text
    return text[:MAX_RESULT] + f"\n[cut: the MCP server returned {len(text):,} characters]"


def _decoded_size(base64_text: str) -> int:
    return len(base64_text.rstrip("=")) * 3 // 4
