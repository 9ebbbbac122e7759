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
        return json.dumps(structured, ensure_ascii=False)
    return "\n".join(parts)


def _decoded_size(base64_text: str) -> int:
    return len(base64_text.rstrip("=")) * 3 // 4
