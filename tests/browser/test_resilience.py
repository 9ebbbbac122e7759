"""The console across a server crash, and from another origin (CORS).

Restart: the server runs in its own cancel scope on a SQLite file; cancelling
that scope is the crash (its sockets close, nothing is flushed on purpose beyond
what was committed), and a second ``serve`` on the same file and the same port
(the one the first bound) is the restart. The page is the same tab throughout,
so what it shows must be exactly the log: the events before the crash once, the
ones the restart commits (the interrupted turn's end) once, none missing.

CORS: a second, minimal HTTP server on another port serves a plain page (no
CSP, so only CORS decides); the browser on that origin calls the runtime with
``fetch`` (a bearer header: a preflight) and ``EventSource``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from agents._providers._scripted import stream_words
from tests.browser.cdp import Page
from tests.browser.console import (
    assert_rendered_log,
    js,
    log,
    open_session,
    sign_in,
    start_stoppable,
)
from tests.server.gates import hold
from tests.server.helpers import ALICE, make_config, start_server

TEXT = "[...document.querySelectorAll('#conversation .stream-text')].map(e => e.textContent)"


async def test_server_crash_and_restart_mid_stream(tmp_path: Path, page: Page) -> None:
    """A crash cuts the event stream (the browser logs an incomplete body): expected."""
    db = str(tmp_path / "runtime.db")
    async with trio.open_nursery() as outer:
        first = await start_stoppable(outer, make_config(db=db))
        server = first.server
        session_id = await server.new_session()
        await sign_in(page, server)
        await open_session(page, server, session_id)
        await page.fill("#message", hold("crashgate", 40))
        await page.click("#send")
        await page.wait_for(f"{TEXT}.join('') === {js(stream_words(40))}", "40 words")
        before = await log(server, session_id)

        first.stop.cancel()
        with trio.fail_after(10):
            await first.stopped.wait()  # every socket of the first server is closed
        await page.wait_for(
            "document.querySelector('#conversation').dataset.stream === 'reconnecting'",
            "the page to notice the crash",
        )
        port = httpx.URL(server.url).port
        restarted = await start_server(outer, make_config(db=db, port=port))
        assert restarted.url == server.url

        # The restart ends the turn that streamed as interrupted; the page shows it.
        await page.wait_for(
            "!!document.querySelector('#conversation .turn-end .reason.interrupted')",
            "the interrupted turn's end",
        )
        await page.wait_for("document.querySelector('#conversation').dataset.stream === 'live'")
        events = await assert_rendered_log(page, restarted, session_id)
        assert events[: len(before)] == before
        assert int(await page.eval("document.querySelector('#conversation').dataset.after")) >= len(
            before
        )
        assert (await page.text("#conversation .msg.truncated .md")).startswith(
            stream_words(40).strip()
        )

        # Still usable: a new message streams on the restarted server.
        await page.fill("#message", "stream 5 words")
        await page.click("#send")
        await page.wait_for(
            "document.querySelectorAll('#conversation .turn-end .reason.completed').length === 1"
        )
        await assert_rendered_log(page, restarted, session_id)
        # The streams the crash cut, and the one the shutdown ends, are the only problems.
        cut = [p for p in page.problems if "ERR_INCOMPLETE_CHUNKED_ENCODING" in p]
        assert cut, page.problems
        page.problems[:] = [p for p in page.problems if p not in cut]
        await page.call("Page.navigate", url="about:blank")
        restarted.shutdown.set()


PAGE = b"<!doctype html><title>other origin</title><p>another site</p>"


async def serve_page(task_status: trio.TaskStatus[str]) -> None:
    """A one-page HTTP/1.1 server on 127.0.0.1:0 (a different origin); its URL."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                data += chunk
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(PAGE)}\r\nConnection: close\r\n\r\n"
            )
            await stream.send_all(head.encode() + PAGE)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started(f"http://127.0.0.1:{port}")


CROSS_ORIGIN = """
(async () => {
  const out = {};
  const base = %(base)s, token = %(token)s;
  try {
    const r = await fetch(base + "/v1/sessions", {
      method: "POST",
      headers: {Authorization: "Bearer " + token, "Content-Type": "application/json"},
      body: "{}",
    });
    out.created = r.status;
    const session = await r.json();
    const c = await fetch(base + "/v1/sessions/" + session.id + "/commands", {
      method: "POST",
      headers: {Authorization: "Bearer " + token, "Content-Type": "application/json"},
      body: JSON.stringify({type: "user_message", id: "m1", content: "stream 3 words"}),
    });
    out.command = (await c.json()).status;
    out.events = await new Promise((resolve) => {
      const seen = [];
      const es = new EventSource(
        base + "/v1/sessions/" + session.id + "/events?stream=1&access_token=" + token);
      es.addEventListener("turn.ended", () => { es.close(); resolve(seen.concat("turn.ended")); });
      es.addEventListener("text.delta", () => seen.push("text.delta"));
      es.onerror = () => { es.close(); resolve(seen.concat("error")); };
    });
  } catch (error) {
    out.error = error.name;
  }
  return out;
})()
"""


async def test_another_origin_with_and_without_cors(nursery: trio.Nursery, page: Page) -> None:
    origin = await nursery.start(serve_page)
    allowed = await start_server(nursery, make_config(cors_origins=(origin,)))
    closed = await start_server(nursery, make_config())
    await page.navigate(origin + "/")

    result = await page.eval(CROSS_ORIGIN % {"base": js(allowed.url), "token": js(ALICE)})
    assert result == {
        "created": 201,
        "command": "accepted",
        "events": result["events"],
    }, result
    assert set(result["events"][:-1]) == {"text.delta"} and result["events"][-1] == "turn.ended"

    result = await page.eval(CROSS_ORIGIN % {"base": js(closed.url), "token": js(ALICE)})
    assert result == {"error": "TypeError"}, result
    async with closed.http() as http:
        sessions = (await http.get("/v1/sessions")).json()["sessions"]
    # The preflight failed, so the POST never reached the server.
    assert sessions == []
    # The browser reported the blocked requests; nothing else went wrong.
    assert any("CORS" in p for p in page.problems), page.problems
    blocked = [p for p in page.problems if closed.url in p]
    page.problems[:] = [p for p in page.problems if p not in blocked]
