"""Whole turns driven by the ``openai`` provider against the loopback fake server."""

from __future__ import annotations

from agents import RuntimeConfig, open_openai_client
from tests.fakes.openai_server import (
    Done,
    Stream,
    error_reply,
    finish_chunk,
    open_fake_openai,
    stream_text,
    text_chunk,
    tool_chunk,
    tool_fragment,
    usage_chunk,
)

from .harness import open_runtime

WRITE_CALL = Stream(
    (
        text_chunk("Writing it."),
        tool_chunk(
            tool_fragment(0, call_id="call_abc", name="write_file", arguments='{"path": "a.')
        ),
        tool_chunk(tool_fragment(0, arguments='py", "content": "x = 1"}')),
        finish_chunk("tool_calls"),
        usage_chunk(50, 9),
        Done(),
    )
)


async def test_tool_call_turn_over_the_openai_protocol() -> None:
    script = [WRITE_CALL, stream_text("Done", ", wrote a.py.", usage=(80, 4))]
    async with open_fake_openai(script) as fake:
        async with open_openai_client(fake.base_url, "fake-model", "sk-test") as client:
            config = RuntimeConfig(model="fake-model")
            async with open_runtime(config, model=client) as h:
                s = await h.session("coder")
                await h.message(s, "make a.py")
                req = await h.approve_next(s)
                assert req.data["arguments"] == {"path": "a.py", "content": "x = 1"}
                await h.answer_tool(s, {"written": 5})
                end = await h.wait_for(s, "turn.ended")
                assert end.data["reason"] == "completed"
                final = [ev for ev in await h.events(s) if ev.type == "message"][-1]
                assert final.data["content"] == "Done, wrote a.py."
                usage = [ev.data for ev in await h.events(s) if ev.type == "usage"]
                assert [u["prompt_tokens"] for u in usage] == [50, 80]
                await h.assert_paired(s)
        second = fake.requests[1].json()
        messages = second["messages"]
        assert isinstance(messages, list)
        roles = [m["role"] for m in messages if isinstance(m, dict)]
        assert roles == ["system", "user", "assistant", "tool"]
        tool = messages[-1]
        assert isinstance(tool, dict)
        assert tool["tool_call_id"] == "call_abc"
        assert tool["content"] == '{"written":5}'
        assert second["model"] == "fake-model"
        assert fake.requests[0].headers.get("authorization") == "Bearer sk-test"


async def test_upstream_failure_after_first_token_ends_the_turn_with_an_error() -> None:
    script = [error_reply(500, "upstream exploded")] * 4
    async with (
        open_fake_openai(script) as fake,
        open_openai_client(
            fake.base_url, "fake-model", max_retries=1, backoff_base=0.001
        ) as client,
        open_runtime(model=client) as h,
    ):
        s = await h.session("ask")
        await h.message(s, "hello")
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "error"
        error = await h.wait_for(s, "error")
        assert "upstream exploded" in str(error.data["message"])
        assert len(fake.requests) == 2  # one retry before the first token
        assert await h.supervisor.running_turns([s.id]) == {}
