"""The control tools, which the turn carries out itself (SPEC §4.1, §4.3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from ._executor import ToolCall, TurnTools

_Handler = Callable[[TurnTools, ToolCall], Awaitable[str | None]]


async def _switch_mode(turn: TurnTools, call: ToolCall) -> str | None:
    mode = str(call.arguments["mode"])
    refusal = await turn.switch(mode, str(call.arguments.get("reason", "")), call.subtask_id)
    text = refusal or f"switched to {mode}"
    await turn.tool_result(call.call.call_id, refusal is None, text, call.subtask_id)
    return None


async def _attempt_completion(turn: TurnTools, call: ToolCall) -> str | None:
    result = str(call.arguments["result"])
    await turn.tool_result(call.call.call_id, True, result, call.subtask_id)
    return result


async def _ask_followup_question(turn: TurnTools, call: ToolCall) -> str | None:
    options = call.arguments.get("options")
    choices = tuple(str(o) for o in options) if isinstance(options, list) else None
    await turn.ask(call, str(call.arguments["question"]), choices)
    return None


async def _new_task(turn: TurnTools, call: ToolCall) -> str | None:
    await turn.delegate(call, str(call.arguments["mode"]), str(call.arguments["message"]))
    return None


class ControlTools:
    """``switch_mode``, ``attempt_completion``, ``ask_followup_question``, ``new_task``."""

    HANDLERS: Final[dict[str, _Handler]] = {
        "switch_mode": _switch_mode,
        "attempt_completion": _attempt_completion,
        "ask_followup_question": _ask_followup_question,
        "new_task": _new_task,
    }

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.HANDLERS)

    async def call(self, turn: TurnTools, call: ToolCall) -> str | None:
        return await self.HANDLERS[call.name](turn, call)
