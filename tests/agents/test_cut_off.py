"""An answer the provider cut off (output token limit, content filter) says so on its message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest

from agents._core._model import (
    FinishDelta,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
    UsageDelta,
)

from .harness import open_runtime


@attrs.define
class Answering:
    """A model that answers every request with *text*, ended for *reason*."""

    reason: str
    text: str = "Here is the first half of"

    @property
    def name(self) -> str:
        return "cutting"

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        async def deltas() -> AsyncIterator[ModelDelta]:
            yield TextDelta(self.text)
            yield UsageDelta(10, 5, "cutting")
            yield FinishDelta(self.reason)

        yield deltas()


@pytest.mark.parametrize(
    ("reason", "cut_off"),
    [("max_tokens", "max_tokens"), ("content_filter", "content_filter"), ("stop", None)],
)
async def test_the_message_says_why_the_provider_cut_the_answer(
    reason: str, cut_off: str | None
) -> None:
    async with open_runtime(model=Answering(reason)) as h:
        s = await h.session("ask")
        await h.message(s, "explain everything")
        ended = await h.wait_for(s, "turn.ended")
        [message] = [ev for ev in await h.events(s) if ev.type == "message"]
    assert message.data["content"] == "Here is the first half of"
    assert message.data.get("cut_off") == cut_off
    assert ("cut_off" in message.data) is (cut_off is not None)  # absent when it ended well
    assert message.data["truncated"] is False  # whole as the model sent it
    assert ended.data["reason"] == "completed"


@attrs.define
class WritingTooMuch:
    """A model whose first answer is a write_file call ended for *reason* with its
    arguments cut mid-string; every later answer is plain text."""

    reason: str
    calls: int = 0

    @property
    def name(self) -> str:
        return "cutting"

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        self.calls += 1
        first = self.calls == 1

        async def deltas() -> AsyncIterator[ModelDelta]:
            if first:
                cut = '{"path": "big.py", "content": "def main():\\n    print('
                yield ToolCallDelta(ToolCallRequest("call_1", "write_file", cut))
                yield FinishDelta(self.reason)
            else:
                yield TextDelta("I will write it in parts.")
                yield FinishDelta("stop")

        yield deltas()


@pytest.mark.parametrize("reason", ["max_tokens", "tool_calls"])
async def test_a_call_cut_off_with_its_answer_is_refused_saying_why(reason: str) -> None:
    async with open_runtime(model=WritingTooMuch(reason)) as h:
        s = await h.session("coder")
        await h.message(s, "write a big file")
        await h.wait_for(s, "turn.ended")
        [result] = [ev for ev in await h.events(s) if ev.type == "tool.result"]
    assert result.data["ok"] is False
    content = str(result.data["content"])
    hinted = "cut off at the output token limit (max_tokens)" in content
    assert hinted is (reason == "max_tokens"), content
