"""Browsers on other origins (CORS), ``Origin`` on WebSocket upgrades, SSE names, the console files.

A real server on 127.0.0.1:0; httpx plays the browser's side of CORS (the
headers a browser sends and checks); tests/browser drives a real Chromium.
"""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import open_websocket_url

from server import ConfigurationError, load_config
from server._console import CSP
from server._sse import format_event, sse_name
from sessions import Event
from tests.server.helpers import ALICE, LiveServer, make_config, start_server

CONSOLE = "http://console.example:8443"
OTHER = "http://evil.example"


async def serve(nursery: trio.Nursery, *origins: str) -> LiveServer:
    return await start_server(nursery, make_config(cors_origins=origins))


async def test_an_allowed_origin_gets_cors_headers_and_a_preflight(nursery: trio.Nursery) -> None:
    server = await serve(nursery, CONSOLE)
    async with server.http() as http:
        preflight = await http.options(
            "/v1/sessions",
            headers={
                "Origin": CONSOLE,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == CONSOLE
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "last-event-id" in allowed
        assert "Access-Control-Allow-Credentials" not in preflight.headers
        created = await http.post("/v1/sessions", json={}, headers={"Origin": CONSOLE})
        assert created.status_code == 201
        assert created.headers["Access-Control-Allow-Origin"] == CONSOLE
        assert "Origin" in created.headers["Vary"]
        # Errors too: a page must be able to read why it was refused.
        missing = await http.get("/v1/sessions/ses_nope", headers={"Origin": CONSOLE})
        assert missing.status_code == 404
        assert missing.headers["Access-Control-Allow-Origin"] == CONSOLE
        # The SSE stream (EventSource, token in the query).
        session_id = created.json()["id"]
        async with http.stream(
            "GET",
            f"/v1/sessions/{session_id}/events",
            params={"stream": "1", "access_token": ALICE},
            headers={"Origin": CONSOLE, "Accept": "text/event-stream"},
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["Access-Control-Allow-Origin"] == CONSOLE


async def test_a_disallowed_origin_gets_no_cors_headers(nursery: trio.Nursery) -> None:
    for origins in ((CONSOLE,), ()):
        server = await serve(nursery, *origins)
        async with server.http() as http:
            preflight = await http.options(
                "/v1/sessions",
                headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"},
            )
            assert preflight.status_code == 204
            assert not any(k.lower().startswith("access-control-") for k in preflight.headers)
            listed = await http.get("/v1/sessions", headers={"Origin": OTHER})
            assert listed.status_code == 200  # the server answers; the browser withholds it
            assert "Access-Control-Allow-Origin" not in listed.headers
        server.shutdown.set()


async def test_websocket_upgrades_check_origin_when_origins_are_configured(
    nursery: trio.Nursery,
) -> None:
    server = await serve(nursery, CONSOLE)
    session_id = await server.new_session()
    url = f"/v1/sessions/{session_id}/ws"
    base = {
        "Authorization": f"Bearer {ALICE}",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with server.http(None) as http:
        refused = await http.get(url, headers={**base, "Origin": OTHER})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "origin_not_allowed"
    for origin in (CONSOLE, server.url):  # allowed, and the server's own
        headers = [(b"Origin", origin.encode()), (b"Authorization", f"Bearer {ALICE}".encode())]
        ws_url = server.ws_url(session_id)
        async with open_websocket_url(ws_url, extra_headers=headers) as ws:
            await ws.send_message(json.dumps({"type": "hello", "after": 0}))
            assert json.loads(await ws.get_message())["type"] == "sync", origin
    # No Origin (an IDE plugin, not a browser): the token decides, as before.
    async with server.ws(session_id) as client:
        ack = await client.command({"type": "user_message", "id": "m", "content": "hi"})
        assert ack["status"] == "accepted"


def test_origins_are_validated_and_normalised() -> None:
    config = load_config(flags={"cors_origins": "https://A.example:8443/, http://b.example"})
    assert config.cors_origins == ("https://a.example:8443", "http://b.example")
    assert load_config(env={"AGENT_RUNTIME_CORS_ORIGINS": "*"}).cors_origins == ("*",)
    # The default port is left out, as browsers leave it out of Origin.
    default_ports = load_config(flags={"cors_origins": "https://a.example:443,http://b:80"})
    assert default_ports.cors_origins == ("https://a.example", "http://b")
    for bad in ("ftp://x", "https://x/path", "console.example", "https://u:p@x"):
        with pytest.raises(ConfigurationError, match=r"--cors-origins: .* is not an origin"):
            load_config(flags={"cors_origins": bad})


def test_no_durable_event_is_sent_as_the_sse_event_named_error() -> None:
    error = Event("ses_x", 7, "error", 1.0, {"code": "model_error", "message": "x"}, "turn_x")
    text = format_event(error).decode()
    assert "\nevent: agent.error\n" in text and '"type":"error"' in text
    assert sse_name("text.delta") == "text.delta" and sse_name("error") == "agent.error"


async def test_the_console_is_served_with_a_strict_csp(nursery: trio.Nursery) -> None:
    server = await serve(nursery)
    async with server.http(None) as http:
        page = await http.get("/")
        if page.status_code == 404:
            pytest.fail("server/console/index.html is missing from the package")
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert page.headers["Content-Security-Policy"] == CSP
        assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        for bad in ("/console/../_app.py", "/console/.hidden", "/console/nope.js"):
            assert (await http.get(bad)).status_code == 404, bad
