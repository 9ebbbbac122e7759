"""An MCP server in memory that misbehaves on request: raw JSON-RPC, no SDK server.

:meth:`MemoryServer.transport` is a ``Transport`` for ``open_mcp_servers``: each
start gets a fresh pair of in-memory streams and a task answering on them, so the
SDK's client session runs unchanged, with no process and no wall clock. Written
by hand so it can list what the SDK's own server would refuse to send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import mcp_types
import pydantic
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from agents._core._mcp import HttpTransport, McpServerConfig
from agents._tools._mcp_output import StderrTail

OBJECT: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string"}}}


def memory_config(name: str = "mem", **options: Any) -> McpServerConfig:
    """A config for a :class:`MemoryServer` (its command is never run)."""
    return McpServerConfig(name, HttpTransport("http://in-memory.invalid/mcp"), **options)


def tool(name: str, **fields: Any) -> dict[str, Any]:
    """A ``tools/list`` entry as sent on the wire (an object schema unless given)."""
    return {"name": name, "inputSchema": OBJECT, **fields}


@attrs.define
class MemoryServer:
    """Lists *tools*, answers every call with ``called NAME``; *hang_init* never initializes.

    With *garbage*, ``tools/call`` is answered with that line instead, once *hold*
    calls wait: delivered as the SDK's stdio transport delivers a line it cannot
    parse (an exception on the read stream).
    """

    tools: list[Any] = attrs.field(factory=list)
    hang_init: bool = False
    garbage: str | None = None
    hold: int = 1
    starts: int = 0

    @asynccontextmanager
    async def transport(
        self, config: McpServerConfig, stderr: StderrTail
    ) -> AsyncIterator[
        tuple[
            MemoryObjectReceiveStream[SessionMessage | Exception],
            MemoryObjectSendStream[SessionMessage],
            int | None,
        ]
    ]:
        self.starts += 1
        to_server, from_client = anyio.create_memory_object_stream[SessionMessage](16)
        to_client, from_server = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._serve, from_client, to_client)
            async with from_server, to_server:
                yield from_server, to_server, None
            nursery.cancel_scope.cancel()

    async def _serve(
        self,
        requests: MemoryObjectReceiveStream[SessionMessage],
        answers: MemoryObjectSendStream[SessionMessage | Exception],
    ) -> None:
        held = 0
        async with requests, answers:
            async for item in requests:
                message = item.message
                if not isinstance(message, mcp_types.JSONRPCRequest):
                    continue  # notifications need no answer
                if message.method == "tools/call" and self.garbage is not None:
                    held += 1
                    if held == self.hold:
                        await answers.send(unparseable(self.garbage))
                    continue
                result = self._answer(message.method, message.params or {})
                if result is not None:
                    response = mcp_types.JSONRPCResponse(
                        jsonrpc="2.0", id=message.id, result=result
                    )
                    await answers.send(SessionMessage(response))

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        if method == "initialize":
            if self.hang_init:
                return None
            return {
                "protocolVersion": params["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "memory", "version": "1"},
            }
        if method == "tools/list":
            return {"tools": self.tools}
        if method == "tools/call":
            return {"content": [{"type": "text", "text": f"called {params['name']}"}]}
        return {}


def unparseable(line: str) -> Exception:
    """What the SDK's stdio transport hands the session for *line*, which it cannot parse."""
    try:
        mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError(f"{line!r} is a JSON-RPC message")
