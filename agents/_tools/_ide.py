"""The IDE tools: a round trip to the client (``tool.call`` → ``tool_result``)."""

from __future__ import annotations

from ._executor import ToolCall, TurnTools


class IdeTools:
    """Sends each call to the IDE, under the approval policy; the result arrives later."""

    async def call(self, turn: TurnTools, call: ToolCall) -> str | None:
        await turn.send_to_client(call)
        return None
