"""ACP's ``mcpServers`` (``session/new``, ``session/load``) as the runtime's MCP server configs.

An editor passes the MCP servers it wants the agent to use for a session: stdio
(``{name, command, args, env: [{name, value}]}``) or HTTP (``{type: "http", name,
url, headers: [{name, value}]}``). The adapter mounts them for that session only
(``RuntimeLink.session_mcp``): their tools are offered in every mode as
``mcp__<name>__<tool>``, never trusted (so the approval policy's default asks, and
the editor asks its user through ``session/request_permission``). SSE, MCP's
deprecated transport, is not offered (``mcpCapabilities.sse`` is false).
"""

from __future__ import annotations

import re
from types import MappingProxyType

from agents.mcp import HttpTransport, McpServerConfig, StdioTransport
from sessions import JSON, JSONObject

from ._jsonrpc import INVALID_PARAMS, RpcError

_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9-]+")


def server_name(name: str, taken: set[str]) -> str:
    """*name* as a server name models accept inside tool names (letters, digits, '-').

    ``"My Docs"`` → ``"My-Docs"``; a clash with a name in *taken* gets ``-2``, ``-3``...
    """
    base = _NOT_IN_A_NAME.sub("-", name).strip("-")[:28] or "server"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def mcp_servers(params: JSONObject) -> tuple[McpServerConfig, ...]:
    """The ``mcpServers`` of a session request (absent: none).

    Raises:
        RpcError: ``INVALID_PARAMS`` naming the entry and the field.
    """
    raw = params.get("mcpServers", [])
    if not isinstance(raw, list):
        raise RpcError(INVALID_PARAMS, '"mcpServers" must be an array')
    taken: set[str] = set()
    servers = []
    for i, entry in enumerate(raw):
        where = f"mcpServers[{i}]"
        if not isinstance(entry, dict):
            raise RpcError(INVALID_PARAMS, f"{where} must be an object")
        name = _text(entry, "name", where)
        kind = entry.get("type", "stdio")
        transport: StdioTransport | HttpTransport
        if kind == "stdio":
            transport = StdioTransport(
                _text(entry, "command", where),
                tuple(_strings(entry.get("args", []), f"{where}.args")),
                MappingProxyType(_pairs(entry.get("env", []), f"{where}.env")),
            )
        elif kind == "http":
            url = _text(entry, "url", where)
            if not url.startswith(("http://", "https://")):
                raise RpcError(INVALID_PARAMS, f"{where}.url must be an http(s) URL")
            headers = _pairs(entry.get("headers", []), f"{where}.headers")
            transport = HttpTransport(url, MappingProxyType(headers))
        else:
            raise RpcError(
                INVALID_PARAMS, f"{where}.type {kind!r} is not supported (stdio and http are)"
            )
        unique = server_name(name, taken)
        taken.add(unique)
        servers.append(McpServerConfig(unique, transport, trusted=False))
    return tuple(servers)


def _text(entry: JSONObject, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise RpcError(INVALID_PARAMS, f"{where}.{key} must be a non-empty string")
    return value


def _strings(value: JSON, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RpcError(INVALID_PARAMS, f"{where} must be an array of strings")
    return [str(v) for v in value]


def _pairs(value: JSON, where: str) -> dict[str, str]:
    """``[{name, value}]`` (ACP's environment variables and headers) as a dict."""
    if not isinstance(value, list):
        raise RpcError(INVALID_PARAMS, f"{where} must be an array of {{name, value}}")
    out: dict[str, str] = {}
    for item in value:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("value"), str)
        ):
            raise RpcError(INVALID_PARAMS, f"{where} entries must be {{name, value}} strings")
        out[str(item["name"])] = str(item["value"])
    return out
