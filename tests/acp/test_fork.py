"""``session/fork`` end to end, over the embedded runtime (``test_adapter.py``'s
client; every message checked against the ACP v1 schemas). ``test_connected.py``
runs :func:`fork_then_go_on` over the server, ``test_python_sdk.py`` forks with
the Python SDK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents._providers._scripted import stream_words
from server.acp import EmbeddedLink, SessionBook
from tests.acp.test_adapter import Client, connected, load_params, prompt_params, session_text
from tests.acp.test_lifecycle import NOT_FOUND

INVALID_PARAMS = -32602
HISTORY = {"user_message_chunk", "agent_message_chunk", "tool_call", "tool_call_update"}


def said(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"] for e in events if e["type"] == "user.message"]


async def fork(client: Client, session_id: str) -> dict[str, Any]:
    answer = await client.call("session/fork", load_params(session_id, client.workspace))
    assert "result" in answer, answer
    result: dict[str, Any] = answer["result"]
    return result


async def fork_then_go_on(link: Any, tmp_path: Path, book: SessionBook | None = None) -> None:
    """Fork a session with one exchange: the fork is a new session with that history
    (not sent again: the client has it), it takes prompts, and the source is left as
    it was and goes on too."""
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        source = await client.new_session()
        await client.prompt(source, "stream 3 words")
        mark = len(client.received)
        forked = await fork(client, source)
        fork_id = forked["sessionId"]
        assert fork_id != source
        agent = (await link.load_session(source)).current_agent  # the log's, at its end
        assert forked["modes"]["currentModeId"] == agent
        assert forked["configOptions"][0]["currentValue"] == agent
        # Opened as a resume opens a session: its state, none of its messages.
        sent = [m["params"] for m in client.received[mark:] if m.get("method") == "session/update"]
        assert {p["sessionId"] for p in sent} == {fork_id}
        kinds = [p["update"]["sessionUpdate"] for p in sent]
        assert not set(kinds) & HISTORY, kinds
        titles = [p["update"]["title"] for p in sent if "title" in p["update"]]
        assert titles == ["stream 3 words (fork)"]
        await client.until(  # after the answer, as for a new session
            lambda m: (
                m.get("method") == "session/update"
                and m["params"]["sessionId"] == fork_id
                and m["params"]["update"]["sessionUpdate"] == "available_commands_update"
            )
        )
        answer = await client.prompt(fork_id, "stream 2 words")
        assert answer["result"]["stopReason"] == "end_turn"
        assert session_text(client, fork_id) == stream_words(2)
        again = await client.prompt(source, "stream 4 words")
        assert again["result"]["stopReason"] == "end_turn"
        listed = await client.call("session/list", {"cwd": str(client.workspace)})
        assert {s["sessionId"] for s in listed["result"]["sessions"]} == {source, fork_id}
    assert said(list(await link.read_events(fork_id))) == ["stream 3 words", "stream 2 words"]
    assert said(list(await link.read_events(source))) == ["stream 3 words", "stream 4 words"]


async def test_a_fork_goes_on_from_the_sources_history(link: EmbeddedLink, tmp_path: Path) -> None:
    await fork_then_go_on(link, tmp_path)


async def test_a_fork_of_a_session_waiting_for_approval_ends_that_turn_in_the_fork_only(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        source = await client.new_session()
        await client.call("session/set_mode", {"sessionId": source, "modeId": "coder"})
        client.hold = {"session/request_permission"}
        await client.request("session/prompt", prompt_params(source, "create a.py with x=1"))
        await client.until(lambda m: m.get("method") == "session/request_permission")
        forked = await fork(client, source)
        fork_id = forked["sessionId"]
        assert forked["modes"]["currentModeId"] == "coder"
        # Nothing of the source's open turn is asked or run again for the fork.
        client.hold = set()
        answer = await client.prompt(fork_id, "stream 2 words")
        assert answer["result"]["stopReason"] == "end_turn"
        assert client.requests().count("session/request_permission") == 1
        assert client.requests().count("fs/write_text_file") == 0
    fork_log = list(await link.read_events(fork_id))
    ended = [e["reason"] for e in fork_log if e["type"] == "turn.ended"]
    assert ended == ["interrupted", "completed"]
    source_log = list(await link.read_events(source))
    assert [e["type"] for e in source_log if e["type"] == "turn.ended"] == []
    assert source_log[-1]["type"] == "approval.requested"
    assert not (tmp_path / "a.py").exists()


async def test_a_fork_of_no_session_or_without_a_cwd_is_refused(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        source = await client.new_session()
        unknown = await client.call("session/fork", load_params("ses_nothing", client.workspace))
        assert unknown["error"]["code"] == NOT_FOUND
        for params in (
            {"sessionId": source},
            {"sessionId": source, "cwd": "relative/dir"},
            {"cwd": str(client.workspace)},
        ):
            refused = await client.call("session/fork", params)
            assert refused["error"]["code"] == INVALID_PARAMS, params
    sessions = await link.list_sessions()
    assert [s.id for s in sessions.sessions] == [source]
