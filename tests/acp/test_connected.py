"""The adapter over the connected link: a real server on 127.0.0.1:0, REST + WebSocket.

The scenarios of ``test_adapter.py`` (the same scripted client, every message
checked against the ACP schema), with :class:`ConnectedLink` instead of the
embedded runtime, plus a WebSocket cut mid-stream (a TCP proxy between the link
and the server drops every connection) that must resume without gap or duplicate.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import httpx
import pytest
import trio

from server import main
from server.acp import LinkError, SessionBook
from server.acp._connected import ConnectedLink, open_connected_link
from server.acp._link import ModelChoices
from sessions import JSONObject
from tests.acp.test_adapter import (
    connected,
    load_mid_reply_again,
    load_mid_reply_from_another_adapter,
    selected,
    text_of,
)
from tests.acp.test_fork import fork_then_go_on
from tests.acp.test_lifecycle import delete_then_gone
from tests.server.helpers import ALICE, LiveServer, make_config, start_server


@pytest.fixture
async def server(nursery: trio.Nursery) -> LiveServer:
    return await start_server(nursery, make_config())


@pytest.fixture
async def link(server: LiveServer) -> AsyncIterator[ConnectedLink]:
    async with open_connected_link(server.url, ALICE) as opened:
        yield opened


class Proxy:
    """Forwards TCP to *port*; :meth:`cut` drops every connection open through it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.scopes: set[trio.CancelScope] = set()
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                async with client, await trio.open_tcp_stream("127.0.0.1", self.target) as up:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, up, nursery.cancel_scope)
                        nursery.start_soon(self._pump, up, client, nursery.cancel_scope)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self.scopes.discard(scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope
    ) -> None:
        try:
            async for chunk in source:
                await sink.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()

    def cut(self) -> int:
        for scope in self.scopes:
            scope.cancel()
        return len(self.scopes)


def is_chunk(message: dict[str, object]) -> bool:
    params = message.get("params")
    update = params.get("update") if isinstance(params, dict) else None
    return isinstance(update, dict) and update.get("sessionUpdate") == "agent_message_chunk"


async def test_prompt_with_permission_writes_through_the_client(
    link: ConnectedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        result = await client.initialize()
        assert result["protocolVersion"] == 1
        session_id = await client.new_session()
        response = await client.prompt(session_id, "create hello.py with print(1)")
        assert response["result"]["stopReason"] == "end_turn"
        assert (tmp_path / "hello.py").read_text() == "print(1)"
        assert client.requests() == [
            "session/request_permission",
            "fs/read_text_file",
            "fs/write_text_file",
        ]
        assert [u.get("status") for u in client.updates("tool_call_update")] == [
            "in_progress",
            "completed",
        ]
        text = text_of(client.updates("agent_message_chunk"))
        assert text == "Writing hello.py.Done: write_file hello.py succeeded."
        assert client.received[-1]["id"] == 3


async def test_a_title_set_over_rest_reaches_the_editor_at_the_next_message(
    link: ConnectedLink, server: LiveServer, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        assert (await client.prompt(session_id, "hello"))["result"]["stopReason"] == "end_turn"
        async with server.http() as http:
            renamed = await http.patch(f"/v1/sessions/{session_id}", json={"title": "Parser work"})
            assert renamed.status_code == 200, renamed.text
        again = await client.prompt(session_id, "stream 3 words")
        assert again["result"]["stopReason"] == "end_turn"
        titles = [u.get("title") for u in client.updates("session_info_update")]
        assert titles == ["hello", "Parser work"]


async def test_a_rejected_permission_runs_nothing(link: ConnectedLink, tmp_path: Path) -> None:
    async with connected(link, tmp_path) as client:
        client.permission = lambda _: selected("reject_once")
        await client.initialize()
        session_id = await client.new_session()
        response = await client.prompt(session_id, "create hello.py with print(1)")
        assert response["result"]["stopReason"] == "end_turn"
        assert not (tmp_path / "hello.py").exists()
        assert client.updates("tool_call_update")[-1]["status"] == "failed"


async def test_cancel_mid_stream_answers_cancelled_within_a_second(
    link: ConnectedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await client.new_session()
        prompt = [{"type": "text", "text": "slow stream 50 words"}]
        prompt_id = await client.request(
            "session/prompt", {"sessionId": session_id, "prompt": prompt}
        )
        await client.until(is_chunk)
        cancelled_at = trio.current_time()
        await client.send(
            {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session_id}}
        )
        response = await client.wait_response(prompt_id)
        assert trio.current_time() - cancelled_at < 1.0
        assert response["result"]["stopReason"] == "cancelled"
        assert 0 < len(text_of(client.updates("agent_message_chunk")).split()) < 50
        again = await client.prompt(session_id, "read hello.py")
        assert again["result"]["stopReason"] == "end_turn"


async def test_load_replays_the_history(link: ConnectedLink, tmp_path: Path) -> None:
    book = SessionBook()
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        session_id = await client.new_session()
        await client.prompt(session_id, "create hello.py with print(1)")
    async with connected(link, tmp_path, book) as client:
        await client.initialize()
        response = await client.call(
            "session/load", {"sessionId": session_id, "cwd": str(tmp_path), "mcpServers": []}
        )
        assert response["result"]["modes"]["currentModeId"] == "coder"
        assert client.updates()[0] == {
            "sessionUpdate": "user_message_chunk",
            "content": {"type": "text", "text": "create hello.py with print(1)"},
        }
        assert text_of(client.updates("agent_message_chunk")) == (
            "Writing hello.py.Done: write_file hello.py succeeded."
        )
        assert client.requests() == []
        listed = await client.call("session/list", {})
        assert [s["sessionId"] for s in listed["result"]["sessions"]] == [session_id]
        missing = await client.call(
            "session/load", {"sessionId": "ses_nope", "cwd": str(tmp_path), "mcpServers": []}
        )
        assert "error" in missing


async def test_a_dropped_websocket_resumes_without_gap_or_duplicate(
    server: LiveServer, nursery: trio.Nursery, tmp_path: Path
) -> None:
    port = httpx.URL(server.url).port
    assert port is not None
    proxy = Proxy(port)
    await nursery.start(proxy.run)
    async with (
        open_connected_link(f"http://127.0.0.1:{proxy.port}", ALICE) as link,
        connected(link, tmp_path) as client,
    ):
        await client.initialize()
        session_id = await client.new_session()
        prompt = [{"type": "text", "text": "slow stream 12 words"}]
        prompt_id = await client.request(
            "session/prompt", {"sessionId": session_id, "prompt": prompt}
        )
        await client.until(is_chunk)
        assert link.connections == 1
        assert proxy.cut() >= 1
        response = await client.wait_response(prompt_id)
        assert response["result"]["stopReason"] == "end_turn"
        assert link.connections >= 2
        # Exactly the log's text deltas, once each, in order.
        async with server.http() as http:
            page = (await http.get(f"/v1/sessions/{session_id}/events?limit=1000")).json()
        deltas = [e["text"] for e in page["events"] if e["type"] == "text.delta"]
        chunks = client.updates("agent_message_chunk")
        assert [c["content"]["text"] for c in chunks] == deltas
        assert len(text_of(chunks).split()) == 12


async def test_bad_token_and_bad_answers_are_link_errors(server: LiveServer) -> None:
    with pytest.raises(LinkError) as refused:
        async with open_connected_link(server.url, "wrong"):
            pass
    assert refused.value.code == "unauthorized"
    async with open_connected_link(server.url, ALICE) as link:
        assert await link.load_session("ses_unknown") is None
        ack = await link.submit("ses_unknown", {"type": "cancel", "id": "c1"})
        assert ack["status"] == "rejected" and ack["code"] == "not_found"
        session = await link.create_session()
        bad = await link.submit(session.id, {"type": "nonsense", "id": "c2"})
        assert bad["status"] == "rejected"
    with pytest.raises(LinkError) as not_ours:
        async with open_connected_link(server.url + "/health", ALICE):
            pass
    assert "HTTP 404" in not_ours.value.message


async def test_answers_that_are_not_the_protocol_are_link_errors() -> None:
    def garbage(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/commands"):
            return httpx.Response(200, text="<html>hello</html>")
        if request.method == "POST" and request.url.path == "/v1/sessions":
            return httpx.Response(201, json={"no": "id"})
        return httpx.Response(200, text="not json")

    transport = httpx.MockTransport(garbage)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
        link = ConnectedLink(http, "t", attempts=1)
        calls: list[Callable[[], Awaitable[object]]] = [
            link.agents,
            link.create_session,
            link.list_sessions,
            lambda: link.read_events("s"),
            lambda: link.submit("s", {"type": "cancel", "id": "c"}),
            link.models,
        ]
        for call in calls:
            with pytest.raises(LinkError) as raised:
                await call()
            assert raised.value.code == "bad_response", raised.value


def test_connect_with_db_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acp", "--connect", "http://127.0.0.1:1", "--token", "t", "--db", "x.db"]) == 2
    assert "exclude" in capsys.readouterr().err


def test_connect_needs_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENT_RUNTIME_TOKEN", raising=False)
    assert main(["acp", "--connect", "http://127.0.0.1:1"]) == 2
    assert "AGENT_RUNTIME_TOKEN" in capsys.readouterr().err


def test_an_unreachable_server_is_a_start_up_failure(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_RUNTIME_TOKEN", "t")
    # Port 1 on loopback refuses at once; the start-up check does not retry.
    assert main(["acp", "--connect", "http://127.0.0.1:1"]) == 2
    assert "127.0.0.1:1" in capsys.readouterr().err


async def test_following_a_session_ends_when_it_is_deleted(
    link: ConnectedLink, server: LiveServer
) -> None:
    """The log's ``session.deleted`` is handed over, then ``follow`` returns (the
    server closes 4404 after it, which must not be mistaken for a refusal)."""
    info = await link.create_session()
    seen: list[str] = []
    turn_seen = trio.Event()

    async def sink(batch: Sequence[JSONObject]) -> None:
        seen.extend(str(event["type"]) for event in batch)
        if "turn.ended" in seen:
            turn_seen.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(link.follow, info.id, after=0, sink=sink))
            command: JSONObject = {"type": "user_message", "id": "m", "content": "stream 3 words"}
            assert (await link.submit(info.id, command))["status"] == "accepted"
            await turn_seen.wait()  # the follower is connected and caught up
            async with server.http() as http:
                assert (await http.delete(f"/v1/sessions/{info.id}")).status_code == 204
    assert seen[-2:] == ["turn.ended", "session.deleted"]


async def test_a_load_mid_reply_from_another_adapter_shows_the_reply_whole(
    link: ConnectedLink, tmp_path: Path
) -> None:
    await load_mid_reply_from_another_adapter(link, tmp_path)


async def test_a_load_mid_reply_again_shows_the_reply_whole(
    link: ConnectedLink, tmp_path: Path
) -> None:
    await load_mid_reply_again(link, tmp_path)


async def test_delete_cancels_the_prompt_and_removes_the_session_on_the_server(
    link: ConnectedLink, server: LiveServer, tmp_path: Path
) -> None:
    await delete_then_gone(link, tmp_path)
    assert await link.delete_session("ses_nothing") is False
    assert await link.delete_session("a/b") is False  # never a path of another resource
    async with server.http() as http:
        listed = (await http.get("/v1/sessions")).json()["sessions"]
    assert len(listed) == 1  # the session the scenario kept


async def test_a_fork_goes_on_from_the_sources_history_on_the_server(
    link: ConnectedLink, server: LiveServer, tmp_path: Path
) -> None:
    await fork_then_go_on(link, tmp_path)
    assert await link.fork_session("ses_nothing") is None
    assert await link.fork_session("a/b") is None  # never a path of another resource
    async with server.http() as http:
        listed = (await http.get("/v1/sessions")).json()["sessions"]
    assert [s["title"] for s in listed] == ["stream 3 words (fork)", "stream 3 words"]


async def test_a_delete_whose_answer_was_lost_is_done_when_its_retry_finds_nothing() -> None:
    sessions = {"ses_a"}
    deletes: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        session_id = request.url.path.rsplit("/", 1)[-1]
        deletes.append(session_id)
        if session_id not in sessions:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "gone"}})
        sessions.discard(session_id)
        raise httpx.ReadError("connection reset before the answer")  # deleted, answer lost

    transport = httpx.MockTransport(server)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
        link = ConnectedLink(http, "t", backoff=0.0)
        assert await link.delete_session("ses_a") is True
        assert deletes == ["ses_a", "ses_a"]
        assert await link.delete_session("ses_b") is False  # found nothing the first time


async def test_the_models_to_offer_come_from_the_server_and_an_older_one_offers_none(
    link: ConnectedLink,
) -> None:
    assert await link.models() == ModelChoices("scripted", ("scripted",))

    def older(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no route"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(older), base_url="http://x") as http:
        assert await ConnectedLink(http, "t", attempts=1).models() is None
