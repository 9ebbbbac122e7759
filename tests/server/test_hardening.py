"""Every reproduction of the hardening issue, against the real server on 127.0.0.1:0.

Lone surrogates in every text field, integers past SQLite's range, JSON nested past
the limit, concurrent session creation over the cap: each gets a clear 400 / 429 /
``error`` frame, the connection stays usable, and the server keeps serving.
"""

from __future__ import annotations

import httpx
import trio

from server import Limits
from tests.server.helpers import (
    BOB,
    LiveServer,
    ended,
    make_config,
    start_server,
)
from tests.server.test_ws import expect_close

LONE = "\\ud800"  # as it travels in JSON text: a valid escape, an unencodable string
BIG = 2**63


def raw_json(template: str) -> bytes:
    """A JSON body with *template*'s ``LONE`` placeholder as a real ``\\ud800`` escape."""
    return template.replace("LONE", LONE).encode()


async def post_raw(http: httpx.AsyncClient, path: str, body: bytes) -> httpx.Response:
    return await http.post(path, content=body, headers={"Content-Type": "application/json"})


async def test_lone_surrogates_are_refused_at_every_entry_naming_the_field(
    server: LiveServer,
) -> None:
    session_id = await server.new_session()
    base = f"/v1/sessions/{session_id}"
    cases: list[tuple[str, str, str, str]] = [
        (
            "POST",
            f"{base}/commands",
            '{"type":"user_message","id":"c1","content":"a LONE"}',
            "content",
        ),
        ("POST", f"{base}/commands", '{"type":"user_message","id":"LONE","content":"hi"}', "id"),
        ("POST", "/v1/sessions", '{"title":"LONE"}', "title"),
        ("PATCH", base, '{"title":"x LONE"}', "title"),
        ("POST", f"{base}/messages", '{"content":"LONE"}', "content"),
        (
            "POST",
            f"{base}/commands",
            '{"type":"tool_result","id":"c2","call_id":"x","result":{"a":["LONE"]}}',
            "result.a[0]",
        ),
        ("POST", f"{base}/commands", '{"type":"cancel","id":"c3","LONE":1}', "a key"),
    ]
    async with server.http() as http:
        for method, path, template, field in cases:
            response = await http.request(
                method,
                path,
                content=raw_json(template),
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 400, (path, template, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_text", error
            assert field in error["message"], error
        # Nothing reached the store, and the server is alive.
        page = (await http.get(f"{base}/events")).json()
        assert page["events"] == []
        assert (await http.get("/health")).status_code == 200


async def test_a_surrogate_over_websocket_gets_an_error_frame_and_the_connection_lives(
    server: LiveServer,
) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        await client.ws.send_message(
            '{"type":"user_message","id":"m1","content":"hi ' + LONE + '"}'
        )
        error = await client.error()
        assert error["code"] == "invalid_text" and "content" in error["message"], error
        ack = await client.command({"type": "user_message", "id": "m2", "content": "hello"})
        assert ack["status"] == "accepted"
        await client.until(ended)


async def test_a_key_named_twice_is_refused_over_http_and_websocket(server: LiveServer) -> None:
    """Parsers disagree on which of two equal keys counts; we take neither."""
    session_id = await server.new_session()
    base = f"/v1/sessions/{session_id}"
    cases: list[tuple[str, str, str, str]] = [
        (
            "POST",
            f"{base}/commands",
            '{"type":"approval","id":"a1","call_id":"x","decision":"deny","decision":"approve"}',
            "decision",
        ),
        (
            "POST",
            f"{base}/commands",
            '{"type":"tool_result","id":"c1","call_id":"x","result":{"ok":true,"ok":false}}',
            "ok",
        ),
        ("POST", "/v1/sessions", '{"title":"a","title":"b"}', "title"),
        ("PATCH", base, '{"title":"a","title":"a"}', "title"),  # even with equal values
        ("POST", f"{base}/messages", '{"content":"x","content":"y"}', "content"),
    ]
    async with server.http() as http:
        for method, path, body, key in cases:
            response = await http.request(
                method, path, content=body.encode(), headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400, (path, body, response.text)
            error = response.json()["error"]
            assert error["code"] == "bad_json", error
            assert f"{key!r} appears twice" in error["message"], error
        # Nothing reached the store; the session kept its title.
        assert (await http.get(f"{base}/events")).json()["events"] == []
        assert (await http.get(base)).json()["title"] != "a"
    async with server.ws(session_id) as client:
        await client.ws.send_message('{"type":"user_message","id":"m1","id":"m2","content":"hi"}')
        error = await client.error()
        assert error["code"] == "bad_json" and "'id' appears twice" in error["message"], error
        ack = await client.command({"type": "user_message", "id": "m3", "content": "hello"})
        assert ack["status"] == "accepted"
        await client.until(ended)


async def test_integers_past_sqlite_range_are_400_not_500(server: LiveServer) -> None:
    session_id = await server.new_session()
    base = f"/v1/sessions/{session_id}"
    async with server.http() as http:
        for value in (BIG, 2**64, 10**30, -1):
            response = await http.get(f"{base}/events", params={"after": str(value)})
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "bad_parameter"
        # In range, so not a bad number: refused only for being past the last event.
        last = await http.get(f"{base}/events", params={"after": str(BIG - 1)})
        assert last.status_code == 400
        assert "past the session's last event" in last.json()["error"]["message"]
        big_int = await post_raw(
            http,
            f"{base}/commands",
            f'{{"type":"tool_result","id":"c","call_id":"x","result":{2**64}}}'.encode(),
        )
        assert big_int.status_code == 400
        assert big_int.json()["error"]["code"] == "invalid_number"
        for constant in ("NaN", "Infinity", "1e999"):
            body = f'{{"type":"tool_result","id":"c","call_id":"x","result":{constant}}}'
            response = await post_raw(http, f"{base}/commands", body.encode())
            assert response.status_code == 400, (constant, response.text)
            assert response.json()["error"]["code"] == "invalid_number"
        # SSE answers 400 before starting the stream (not a 200 that then aborts).
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(BIG)}
        response = await http.get(f"{base}/events", headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_parameter"
    # WebSocket hello: a policy close, not a normal one.
    async with server.ws(session_id, after=BIG) as client:
        assert (await client.error())["code"] == "bad_hello"
        assert await expect_close(client) == 1008


def nested(depth: int, *, objects: bool = False) -> str:
    return ('{"a":' * depth + "1" + "}" * depth) if objects else ("[" * depth + "]" * depth)


async def test_deep_nesting_is_refused_over_http_and_websocket(server: LiveServer) -> None:
    session_id = await server.new_session()
    base = f"/v1/sessions/{session_id}"
    async with server.http() as http:
        for body in (nested(100_000), nested(50_000, objects=True), nested(65)):
            command = '{"type":"tool_result","id":"c","call_id":"x","result":' + body + "}"
            response = await post_raw(http, f"{base}/commands", command.encode())
            assert response.status_code == 400, response.text[:200]
            assert response.json()["error"]["code"] == "too_deep"
        at_limit = '{"type":"tool_result","id":"c","call_id":"x","result":' + nested(63) + "}"
        response = await post_raw(http, f"{base}/commands", at_limit.encode())
        assert response.status_code == 409  # parsed fine; the call is just unknown
    async with server.ws(session_id) as client:
        await client.ws.send_message(
            '{"type":"tool_result","id":"c","call_id":"x","result":' + nested(100_000) + "}"
        )
        assert (await client.error())["code"] == "too_deep"
        ack = await client.command({"type": "user_message", "id": "after", "content": "hi"})
        assert ack["status"] == "accepted"


async def test_the_session_cap_holds_against_concurrent_creation(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(limits=Limits(sessions_per_principal=10)))
    statuses: list[int] = []
    async with server.http() as http:

        async def create() -> None:
            statuses.append((await http.post("/v1/sessions", json={})).status_code)

        async with trio.open_nursery() as inner:
            for _ in range(60):
                inner.start_soon(create)
        assert sorted(statuses) == [201] * 10 + [429] * 50
        listed = (await http.get("/v1/sessions", params={"limit": 100})).json()["sessions"]
        assert len(listed) == 10
        # Deleting one frees one slot.
        assert (await http.delete(f"/v1/sessions/{listed[0]['id']}")).status_code == 204
        assert (await http.post("/v1/sessions", json={})).status_code == 201
        refused = await http.post("/v1/sessions", json={})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_sessions"
    # Another principal has its own cap.
    async with server.http(BOB) as bob:
        assert (await bob.post("/v1/sessions", json={})).status_code == 201


async def test_unknown_paths_and_methods_get_the_documented_json_error(
    server: LiveServer,
) -> None:
    async with server.http() as http:
        for method, path, status, code in (
            ("GET", "/nope", 404, "not_found"),
            ("GET", "/v1/sessions/x/nope", 404, "not_found"),
            ("POST", "/health", 405, "method_not_allowed"),
        ):
            response = await http.request(method, path)
            assert response.status_code == status
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert error["code"] == code
            assert path in error["message"] and "URL" not in error["message"], error
        session_id = await server.new_session()
        deleted = await http.delete(f"/v1/sessions/{session_id}")
        assert deleted.status_code == 204
        assert "content-type" not in deleted.headers
