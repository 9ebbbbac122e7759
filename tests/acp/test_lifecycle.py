"""``session/resume``, ``session/close`` and ``session/delete`` end to end, over the
embedded runtime (``test_adapter.py``'s client; every message checked against both
ACP v1 schemas). ``test_connected.py`` runs :func:`delete_then_gone` over the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from agents._providers._scripted import stream_words
from server.acp import EmbeddedLink, SessionBook
from tests.acp.test_adapter import (
    Client,
    connected,
    load_params,
    prompt_params,
    session_text,
    until_text,
)

NOT_FOUND = -32002


def history_updates(client: Client) -> list[str]:
    """The kinds of update that carry a conversation's history."""
    kinds = {"user_message_chunk", "agent_message_chunk", "tool_call", "tool_call_update"}
    return [u["sessionUpdate"] for u in client.updates() if u["sessionUpdate"] in kinds]


async def test_the_agent_offers_resume_close_delete_and_fork(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        result = await client.initialize()
    assert result["agentCapabilities"]["sessionCapabilities"] == {
        "list": {},
        "resume": {},
        "close": {},
        "delete": {},
        "fork": {},  # tests/acp/test_fork.py
    }


async def test_resume_sends_no_history_and_the_session_goes_on(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as first:
        await first.initialize()
        session_id = await first.new_session()
        await first.prompt(session_id, "stream 3 words")
    async with connected(link, tmp_path) as client:
        await client.initialize()
        resumed = await client.call("session/resume", load_params(session_id, client.workspace))
        assert resumed["result"]["modes"]["currentModeId"]
        assert history_updates(client) == []
        # The session's state, not its messages: the meter and the title.
        (meter,) = client.updates("usage_update")
        assert meter["used"] > 0
        (info,) = client.updates("session_info_update")
        assert info["title"] == "stream 3 words"
        answer = await client.prompt(session_id, "stream 2 words")
        assert answer["result"]["stopReason"] == "end_turn"
        assert session_text(client, session_id) == stream_words(2)
    said = [e["content"] for e in await link.read_events(session_id) if e["type"] == "user.message"]
    assert said == ["stream 3 words", "stream 2 words"]


async def test_resume_takes_up_the_work_a_turn_waits_for(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    book = SessionBook()
    async with connected(link, tmp_path, book) as first:
        await first.initialize()
        session_id = await first.new_session()
        first.hold = {"session/request_permission"}
        await first.request("session/prompt", prompt_params(session_id, "create a.py with x=1"))
        await first.until(lambda m: m.get("method") == "session/request_permission")
    # The editor left with the approval pending; the next one resumes the session.
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        resumed = await client.call("session/resume", load_params(session_id, client.workspace))
        assert "result" in resumed, resumed
        # Allowed (the test client's default), the call runs through the client.
        await client.until(
            lambda m: m.get("params", {}).get("update", {}).get("status") == "completed"
        )
        assert client.requests().count("session/request_permission") == 1
        assert client.requests().count("fs/write_text_file") == 1
        assert (await client.prompt(session_id, "read a.py"))["result"]["stopReason"] == "end_turn"
    assert (tmp_path / "a.py").read_text() == "x=1"


async def test_a_prompt_pipelined_after_a_resume_waits_for_it(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as first:
        await first.initialize()
        session_id = await first.new_session()
    async with connected(link, tmp_path) as client:
        await client.initialize()
        resume = client.make_request("session/resume", load_params(session_id, client.workspace))
        prompt = client.make_request("session/prompt", prompt_params(session_id, "stream 2 words"))
        await client.send_together(resume, prompt)
        assert "result" in await client.response(resume["id"])
        answered = await client.response(prompt["id"])
        assert answered["result"]["stopReason"] == "end_turn"


async def test_close_cancels_the_prompt_then_stops_following(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        held = prompt_params(session_id, "stream 3 words then hold CLOSE then 3 words")
        prompt_id = await client.request("session/prompt", held)
        await until_text(client, session_id, stream_words(3))
        close_id = await client.request("session/close", {"sessionId": session_id})
        closed = await client.response(close_id)
        assert closed["result"] == {}
        prompt_answer = await client.response(prompt_id)
        assert prompt_answer["result"]["stopReason"] == "cancelled"
        assert client.received.index(prompt_answer) < client.received.index(closed)
        # Not followed here any more: a prompt is refused until it is loaded again.
        refused = await client.call("session/prompt", prompt_params(session_id, "hi"))
        assert refused["error"]["code"] == NOT_FOUND
        assert "session/load it first" in refused["error"]["message"]
        mark = len(client.received)
        loaded = await client.call("session/load", load_params(session_id, client.workspace))
        assert "result" in loaded, loaded
        assert session_text(client, session_id, after=mark) == stream_words(3)
        again = await client.prompt(session_id, "stream 2 words")
        assert again["result"]["stopReason"] == "end_turn"
    ended = [e["reason"] for e in await link.read_events(session_id) if e["type"] == "turn.ended"]
    assert ended == ["cancelled", "completed"]


async def test_close_of_a_session_not_open_here_is_done_and_of_none_not_found(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as first:
        await first.initialize()
        session_id = await first.new_session()
        assert (await first.call("session/close", {"sessionId": session_id}))["result"] == {}
        twice = await first.call("session/close", {"sessionId": session_id})
        assert twice["result"] == {}
        unknown = await first.call("session/close", {"sessionId": "ses_nothing"})
        assert unknown["error"]["code"] == NOT_FOUND
        bad = await first.call("session/close", {})
        assert bad["error"]["code"] == -32602


async def delete_then_gone(link: Any, tmp_path: Path, book: SessionBook | None = None) -> None:
    """Delete a session with a prompt running: the prompt is answered cancelled, the
    session is gone from the list and from the runtime, and a second delete is refused."""
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        session_id = await client.new_session()
        kept = await client.new_session()
        held = prompt_params(session_id, "stream 3 words then hold DELETE then 3 words")
        prompt_id = await client.request("session/prompt", held)
        await until_text(client, session_id, stream_words(3))
        deleted = await client.call("session/delete", {"sessionId": session_id})
        assert deleted["result"] == {}
        assert (await client.response(prompt_id))["result"]["stopReason"] == "cancelled"
        listed = await client.call("session/list", {})
        assert [s["sessionId"] for s in listed["result"]["sessions"]] == [kept]
        gone = await client.call("session/load", load_params(session_id, client.workspace))
        assert gone["error"]["code"] == NOT_FOUND
        again = await client.call("session/delete", {"sessionId": session_id})
        assert again["error"]["code"] == NOT_FOUND
        # The deleting client is not told "deleted by another client".
        assert "deleted" not in session_text(client, session_id)
    assert await link.load_session(session_id) is None


async def test_delete_cancels_the_prompt_and_removes_the_session(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    book = SessionBook()
    await delete_then_gone(link, tmp_path, book)
    assert len(book.cwds) == 1  # the deleted session's cwd is forgotten, the other's kept


async def test_a_close_waits_for_a_load_sent_before_it(link: EmbeddedLink, tmp_path: Path) -> None:
    async with connected(link, tmp_path) as first:
        await first.initialize()
        session_id = await first.new_session()
    async with connected(link, tmp_path) as client:
        await client.initialize()
        load = client.make_request("session/load", load_params(session_id, client.workspace))
        close = client.make_request("session/close", {"sessionId": session_id})
        await client.send_together(load, close)
        assert "result" in await client.response(load["id"])
        assert (await client.response(close["id"]))["result"] == {}
        with trio.fail_after(5):
            refused = await client.call("session/prompt", prompt_params(session_id, "hi"))
        assert refused["error"]["code"] == NOT_FOUND
