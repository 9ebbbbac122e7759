"""The ``openai`` provider's stream against an in-memory upstream, on trio's autojump clock.

An :class:`httpx.MockTransport` answers with a body that yields its parts and
sleeps between them (virtual time), so deadlines of minutes or hours are tested
at once, and exactly: what a test reads from the clock is trio's, not the wall's.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable

import httpx
import pytest
import trio
import trio.testing

from agents._core._model import ChatMessage, FinishDelta, ModelDelta, ModelRequest, TextDelta
from agents._errors import ModelError, ModelTimeout
from agents._providers._openai import OpenAIClient
from sessions import JSONObject, dumps

REQUEST = ModelRequest(model="m", messages=(ChatMessage("user", "hi"),))
IDLE = 30.0
FIRST_TOKEN = 60.0

Part = bytes | float  # bytes are sent, a float is a pause of that many seconds


def event(data: JSONObject | str) -> bytes:
    return f"data: {data if isinstance(data, str) else dumps(data)}\n\n".encode()


def text(content: str) -> bytes:
    return event({"choices": [{"index": 0, "delta": {"content": content}}]})


def finish(reason: str = "stop") -> bytes:
    return event({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})


DONE = event("[DONE]")


class PacedBody(httpx.AsyncByteStream):
    """A response body sent part by part, pausing where a part is a number."""

    def __init__(self, parts: Iterable[Part]) -> None:
        self._parts = parts
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            # A closed body ends (an endless one would otherwise be read on forever).
            if self._closed:
                return
            if isinstance(part, float):
                await trio.sleep(part)
            else:
                yield part

    async def aclose(self) -> None:
        self._closed = True


class Upstream:
    """Answers each request with the next of *bodies* (with its content type)."""

    def __init__(self, *bodies: Iterable[Part], content_type: str = "text/event-stream") -> None:
        self._bodies = list(bodies)
        self._content_type = content_type
        self.requests = 0
        self.transport = httpx.MockTransport(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        body = self._bodies.pop(0) if len(self._bodies) > 1 else self._bodies[0]
        headers = {"content-type": self._content_type}
        return httpx.Response(200, headers=headers, stream=PacedBody(body))


def client(upstream: Upstream, *, max_retries: int = 2) -> OpenAIClient:
    return OpenAIClient(
        "http://upstream.invalid/v1",
        "m",
        first_token_timeout=FIRST_TOKEN,
        idle_timeout=IDLE,
        max_retries=max_retries,
        backoff_base=0.01,
        transport=upstream.transport,
    )


async def collect(upstream: Upstream, *, max_retries: int = 2) -> list[ModelDelta]:
    async with client(upstream, max_retries=max_retries).stream(REQUEST) as deltas:
        return [delta async for delta in deltas]


def for_an_hour(pause: float, part: bytes) -> Iterable[Part]:
    """*part* after each *pause*, for an hour (not forever: a test that does not
    time out then fails instead of hanging)."""
    return itertools.chain.from_iterable(itertools.repeat((pause, part), int(3600 / pause)))


# -- idle and first-token deadlines: they wait for events, not bytes ---------------


@pytest.mark.parametrize(
    "trickle",
    [
        pytest.param((1.0, b"x"), id="a byte a second, no line end"),
        pytest.param((1.0, b": keep-alive\n\n"), id="comments"),
        pytest.param((1.0, b"event: ping\n"), id="fields that make no event"),
    ],
)
async def test_bytes_that_complete_no_event_do_not_hold_the_stream_open(
    autojump_clock: trio.testing.MockClock, trickle: tuple[float, bytes]
) -> None:
    upstream = Upstream(itertools.chain([text("a")], for_an_hour(*trickle)))
    async with client(upstream).stream(REQUEST) as deltas:
        assert await anext(deltas) == TextDelta("a")
        start = trio.current_time()
        with pytest.raises(ModelTimeout, match="no event for 30s") as info:
            await anext(deltas)
    # The idle timeout after the last event, not an hour later.
    assert trio.current_time() - start == pytest.approx(IDLE, abs=1.0)
    assert not info.value.retryable  # text was delivered
    assert upstream.requests == 1


async def test_bytes_that_complete_no_event_do_not_stand_for_a_first_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    upstream = Upstream(for_an_hour(1.0, b": still loading\n\n"))
    with pytest.raises(ModelTimeout, match=r"no first token.*within 60s"):
        await collect(upstream, max_retries=0)
    assert trio.current_time() == pytest.approx(FIRST_TOKEN, abs=1.0)


async def test_events_slower_than_the_bytes_but_within_the_idle_timeout_are_fine(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Each event arrives in pieces over 20 s (< 30 s idle), so no gap between
    # events reaches the timeout though they take a minute in all.
    slow = [
        part for piece in (text("a"), text("b"), finish()) for part in (piece[:5], 20.0, piece[5:])
    ]
    upstream = Upstream([*slow, DONE])
    assert await collect(upstream) == [TextDelta("a"), TextDelta("b"), FinishDelta("stop")]


async def test_time_the_caller_takes_between_deltas_is_not_upstream_silence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    upstream = Upstream([text("a"), text("b"), finish(), DONE])
    async with client(upstream).stream(REQUEST) as deltas:
        assert await anext(deltas) == TextDelta("a")
        await trio.sleep(IDLE * 3)  # e.g. a slow subscriber held the turn back
        assert [d async for d in deltas] == [TextDelta("b"), FinishDelta("stop")]


# -- answers that are not a stream, and streams that say nothing -----------------


async def test_an_html_page_with_a_200_is_a_protocol_error_naming_its_content_type(
    autojump_clock: trio.testing.MockClock,
) -> None:
    upstream = Upstream([b"<html>Please log in</html>"], content_type="text/html; charset=utf-8")
    with pytest.raises(ModelError, match=r"did not stream.*text/html.*Please log in") as info:
        await collect(upstream)
    assert info.value.code == "model_protocol_error"
    assert upstream.requests == 1  # a login page will not turn into a stream


async def test_a_body_of_no_events_is_a_protocol_error_naming_what_came(
    autojump_clock: trio.testing.MockClock,
) -> None:
    upstream = Upstream([b'{"choices": []}\n\n'], content_type="text/plain")
    with pytest.raises(ModelError, match=r"without an event.*'text/plain'.*choices") as info:
        await collect(upstream)
    assert info.value.code == "model_protocol_error"
    assert upstream.requests == 1


async def test_an_empty_body_is_retried_as_a_hang_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    upstream = Upstream([b""], [text("Hi"), finish(), DONE])
    deltas = await collect(upstream)
    assert upstream.requests == 2 and TextDelta("Hi") in deltas


@pytest.mark.parametrize("end", [pytest.param(DONE, id="[DONE]"), pytest.param(b"", id="EOF")])
async def test_a_stream_of_no_output_and_no_finish_reason_is_a_protocol_error(
    autojump_clock: trio.testing.MockClock, end: bytes
) -> None:
    # Events, but none with text, a tool call or a finish_reason: ended by [DONE]
    # this used to complete with an empty answer, ended by EOF it was retried.
    role = event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    upstream = Upstream([role, event({"id": "x"}), end])
    with pytest.raises(ModelError, match="without any output or finish_reason") as info:
        await collect(upstream)
    assert info.value.code == "model_protocol_error"
    assert upstream.requests == 1


async def test_text_ended_by_done_without_a_finish_reason_is_still_a_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    upstream = Upstream([text("ok"), DONE])
    assert await collect(upstream) == [TextDelta("ok"), FinishDelta("stop")]


async def test_text_ended_by_eof_without_a_finish_reason_is_still_a_broken_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    upstream = Upstream([text("ok")])
    with pytest.raises(ModelError, match="ended before the model finished") as info:
        await collect(upstream)
    assert info.value.code == "model_stream_broken"
