"""Gates of the scripted model, for live tests that act while a turn is still streaming.

``stream N words then hold GATE then M words`` streams N words and then holds the
turn until a ``release GATE`` message (any session of the same server) lets it
finish; the rules are in the docstring of ``agents/_providers/_scripted.py``. A test that has
seen all N words knows the turn is held (it cannot end on its own), so it needs
no clock pacing to catch it mid-stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agents._providers._scripted import stream_words
from tests.server.helpers import ALICE, Frame, LiveServer, ended


def hold(gate: str, head: int, tail: int = 0) -> str:
    """The message whose reply streams *head* words, holds at *gate*, then *tail* words."""
    return f"stream {head} words then hold {gate} then {tail} words"


async def until_held(next_event: Callable[[], Awaitable[Frame]], head: int) -> list[Frame]:
    """Events up to the ``text.delta`` that completes the first *head* words.

    The reply is then at its gate: held until released, so provably still running.
    Fails if any text goes past the gate.
    """
    expected = stream_words(head)
    text = ""
    events: list[Frame] = []
    while True:
        event = await next_event()
        events.append(event)
        assert not ended(event), event
        if event["type"] == "text.delta":
            text += event["text"]
            assert expected.startswith(text), (text, expected)
            if text == expected:
                return events


async def release(server: LiveServer, gate: str, token: str = ALICE) -> str:
    """Send ``release GATE`` in a new session of *server*; the answer of that turn."""
    session_id = await server.new_session(token)
    async with server.ws(session_id, token) as client:
        ack = await client.command(
            {"type": "user_message", "id": "release", "content": f"release {gate}"}
        )
        assert ack["status"] == "accepted", ack
        events = await client.until(ended)
    assert events[-1]["reason"] == "completed", events[-1]
    content = next(e for e in events if e["type"] == "message")["content"]
    assert isinstance(content, str)
    return content


def released(gate: str, streams: int = 1) -> str:
    """The answer of ``release GATE`` when *streams* streams were held on it."""
    if streams == 1:
        return f"Released {gate}: 1 held stream continues."
    return f"Released {gate}: {streams} held streams continue."


def nothing_held(gate: str) -> str:
    """The answer of ``release GATE`` when no stream holds on it."""
    return f"No stream is held on {gate}."
