"""Reconnect UX: the chat says when it lost the connection and when it is back, and
asks again what it was asking (an approval, a question) once it has caught up.

The human is a :class:`Keyboard`: each time the client asks for a line the test
knows it (a prompt is on screen) and types when it wants; the link runs through a
TCP proxy the test cuts.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

import httpx
import trio

from server.chat import chat_main
from server.chat._link import Link, Outbox
from server.chat._state import ChatState
from server.client import Connected, Connecting, Reconnecting, Resumed
from tests.chat.test_client import RUN_LIMIT, CountingWorkspace, DroppingProxy, options
from tests.chat.test_kill import Keyboard
from tests.server.helpers import LiveServer


async def converse(
    server: LiveServer, root: Path, message: str, answer: str
) -> tuple[int, str, Counter[str]]:
    """Ask *message*; cut the link while its prompt waits; answer the re-shown prompt."""
    proxy = DroppingProxy(server.url)
    keyboard = Keyboard()
    workspace = CountingWorkspace(root)
    out = io.StringIO()
    code: int | None = None
    async with trio.open_nursery() as nursery:
        await proxy.start(nursery)

        async def run() -> None:
            nonlocal code
            code = await chat_main(
                options(proxy.url, root),
                out=out,
                err=out,
                env={},
                lines=keyboard,
                workspace=workspace,
            )
            nursery.cancel_scope.cancel()  # the proxy

        with trio.fail_after(RUN_LIMIT):
            nursery.start_soon(run)
            await keyboard.wait_for_prompt(1)  # you>
            await keyboard.type(message)
            await keyboard.wait_for_prompt(2)  # the approval menu or the question
            proxy.drop_all()
            await keyboard.wait_for_prompt(3)  # shown again after the catch-up
            await keyboard.type(answer)
            await keyboard.wait_for_prompt(4)  # you> (the turn is over)
            await keyboard.type(None)
    assert code == 0, out.getvalue()
    return code, out.getvalue(), workspace.calls


async def test_an_approval_is_shown_again_after_a_reconnect(
    server: LiveServer, tmp_path: Path
) -> None:
    _, out, calls = await converse(server, tmp_path, "create c.txt with 3", "a")
    assert re.search(r"\[connection lost; reconnecting… \(.+\); next try in [\d.]+ s\]", out)
    resumed = re.findall(r"\[reconnected, resumed after seq (\d+)\]", out)
    assert len(resumed) == 1 and int(resumed[0]) > 0, out
    assert out.count("[still waiting for your answer:]") == 1
    assert out.count("[a]pprove") == 2  # once, then once again after the reconnect
    # The banner comes before the prompt shown again, and the prompt after the loss.
    assert out.index("[connection lost") < out.index("[reconnected") < out.rindex("[a]pprove")
    assert calls == Counter({"write_file:c.txt": 1})
    assert (tmp_path / "c.txt").read_text() == "3"


async def test_a_question_is_asked_again_after_a_reconnect(
    server: LiveServer, tmp_path: Path
) -> None:
    _, out, _ = await converse(server, tmp_path, "ask favourite colour?", "blue")
    assert out.count("[reconnected, resumed after seq") == 1
    assert out.count("[still waiting for your answer:]") == 1
    assert out.count("your answer") - 1 == 2  # the prompt, and the prompt again
    assert "= ok: blue" in out


def catching_up(state: ChatState) -> bool:
    return state.catching_up  # (read afresh: the link's calls change it)


def test_catch_up_ends_when_the_events_before_the_resume_point_are_recorded() -> None:
    """The link reports "resumed after seq N" before the chat has read events up to N
    (they wait in a channel): until it has, no work is handed out and no banner shown."""
    state = ChatState()
    notes: list[str] = []
    link = Link(
        httpx.AsyncClient(), "ws://x", "t", "s", state, Outbox(), state.record, notes.append
    )
    link._status(Connecting(1))
    link._status(Connected(after=0))
    assert not catching_up(state) and notes == []  # nothing to catch up on
    link._status(Reconnecting("cut", 0.1, 1))
    link._status(Connecting(2))
    link._status(Resumed(after=2))
    assert catching_up(state)  # events 1 and 2 are not recorded yet
    for seq in (1, 2):
        state.record({"seq": seq, "type": "user.message", "content": "hi"})
        link._check_caught_up()
        assert catching_up(state) == (seq < 2)
    assert notes[-1] == "[reconnected, resumed after seq 2]"
    assert notes[0].startswith("[connection lost; reconnecting… (cut)")
