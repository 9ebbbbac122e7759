"""The tab's cache of session logs: bounded, resumed exactly, forgotten with the token.

The cache (sessionStorage ``agent-runtime.log.<session>``) drops the ``text.delta``
events of a message that has arrived (a reload renders them as empty
placeholders, so every seq is still rendered once), caches nothing for a session
past its cap (a reload then replays the log from the server), keeps the five most
recently used sessions, and goes with the token: sign-out, or a server that no
longer accepts the token (found by probing REST, since EventSource shows no
HTTP status).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from agents._providers._scripted import stream_words
from tests.browser.cdp import Page
from tests.browser.console import (
    assert_rendered_log,
    js,
    log,
    open_session,
    say,
    sign_in,
    start_stoppable,
)
from tests.server.helpers import ALICE, BOB, LiveServer, make_config, start_server

TEXT = "[...document.querySelectorAll('#conversation .stream-text')].map(e => e.textContent)"
CACHE_KEYS = "Object.keys(sessionStorage).filter(k => k.startsWith('agent-runtime.log.')).sort()"
OWN_KEYS = "Object.keys(sessionStorage).filter(k => k.startsWith('agent-runtime.'))"
LIVE = "document.querySelector('#conversation')?.dataset.stream === 'live'"


def cache(session_id: str) -> str:
    return f"JSON.parse(sessionStorage.getItem({js('agent-runtime.log.' + session_id)}))"


async def wait_turn_end(page: Page, count: int) -> None:
    await page.wait_for(
        f"document.querySelectorAll('#conversation .turn-end .reason.completed').length"
        f" === {count}",
        f"{count} turn(s) completed",
    )


async def wait_completed(page: Page) -> None:
    await wait_turn_end(page, 1)


async def open_a_cached_session(server: LiveServer, page: Page) -> str:
    """A session with one completed turn, open in the page and in its cache; its id."""
    session_id = await server.new_session()
    await say(server, session_id, "stream 3 words")
    await sign_in(page, server)
    await open_session(page, server, session_id)
    await wait_completed(page)
    await page.wait_for(f"!!{cache(session_id)}", "the session cached")
    return session_id


async def test_the_deltas_of_a_final_message_are_not_cached(server: LiveServer, page: Page) -> None:
    session_id = await server.new_session()
    await sign_in(page, server)
    await open_session(page, server, session_id)
    await say(server, session_id, "stream 30 words")
    await wait_completed(page)
    events = await log(server, session_id)
    cached: Any = await page.wait_for(
        f"(() => {{ const c = {cache(session_id)};"
        f" return c && c.events.length + c.elided.length && c.events.at(-1).seq"
        f" === {len(events)} ? c : null; }})()",
        "the whole log cached",
    )
    deltas = [e["seq"] for e in events if e["type"] == "text.delta"]
    assert len(deltas) > 1
    assert [e["type"] for e in cached["events"] if e["type"] == "text.delta"] == []
    elided = [s for first, last, _ in cached["elided"] for s in range(first, last + 1)]
    assert elided == deltas

    await page.reload()
    await page.wait_for(LIVE, "live again")
    # Resumed after the cached log (nothing replayed), every seq rendered once.
    assert await page.eval("document.querySelector('#conversation').dataset.after") == str(
        len(events)
    )
    await assert_rendered_log(page, server, session_id)
    shown = await page.text("#conversation .msg.assistant .md")
    assert shown.strip() == stream_words(30).strip()


async def test_a_long_log_is_not_cached_and_a_reload_replays_it(
    server: LiveServer, page: Page
) -> None:
    """Two messages of 600 kB: the log's JSON passes the cache's cap of about 1 MB."""
    session_id = await server.new_session()
    await sign_in(page, server)
    await open_session(page, server, session_id)
    big = "x" * 600_000
    await say(server, session_id, "stream 3 words " + big)
    await wait_turn_end(page, 1)
    await page.wait_for(
        f"{cache(session_id)}?.events.at(-1).type === 'turn.ended'", "the first turn cached"
    )
    await say(server, session_id, "stream 4 words " + big)
    await wait_turn_end(page, 2)
    # Past the cap: nothing cached for this session any more.
    await page.wait_for(f"{CACHE_KEYS}.length === 0", "the cache dropped")

    await page.reload()
    await page.wait_for(LIVE, "live again")
    assert await page.eval("document.querySelector('#conversation').dataset.after") == "0"
    await page.wait_for("document.querySelectorAll('#conversation .turn-end').length === 2")
    await assert_rendered_log(page, server, session_id)
    assert await page.eval(CACHE_KEYS) == []


async def test_at_most_five_sessions_are_cached(server: LiveServer, page: Page) -> None:
    sessions = [await server.new_session() for _ in range(6)]
    for session_id in sessions:
        await say(server, session_id, "stream 2 words")
    await sign_in(page, server)
    for session_id in sessions:
        await open_session(page, server, session_id)
        await wait_completed(page)
    await page.click("nav a[href='#/']")  # closing the last session's view caches it
    await page.wait_for("!!document.querySelector('#sessions')")
    keys = await page.eval(CACHE_KEYS)
    # The least recently used one went.
    assert keys == sorted("agent-runtime.log." + s for s in sessions[1:]), keys


async def test_sign_out_forgets_the_cached_logs(server: LiveServer, page: Page) -> None:
    await open_a_cached_session(server, page)
    await page.click("#signout")
    await page.wait_for("!!document.querySelector('#token')", "the sign-in view")
    assert await page.eval(OWN_KEYS) == []


@pytest.mark.parametrize(
    ("tokens", "outcome"),
    [({BOB: "bob"}, "signed out"), ({ALICE: "bob"}, "no such session")],
    ids=["token-revoked", "session-gone"],
)
async def test_a_stream_refused_for_good_stops_reconnecting(
    tmp_path: Path, page: Page, tokens: dict[str, str], outcome: str
) -> None:
    """The server restarts with other tokens: ALICE's is refused (401), or now names a
    principal that owns no such session (404). The page asks REST after a few failed
    reconnects, then signs out (caches gone) or says the session is gone."""
    db = str(tmp_path / "runtime.db")
    async with trio.open_nursery() as outer:
        first = await start_stoppable(outer, make_config(db=db))
        server = first.server
        await open_a_cached_session(server, page)

        first.stop.cancel()
        with trio.fail_after(10):
            await first.stopped.wait()
        port = httpx.URL(server.url).port
        restarted = await start_server(outer, make_config(db=db, port=port, tokens=tokens))
        if outcome == "signed out":
            await page.wait_for("!!document.querySelector('#token')", "the sign-in view")
            assert "sign in again" in await page.text("#toast")
            assert await page.eval(OWN_KEYS) == []
        else:
            await page.wait_for(
                "document.querySelector('#conversation')?.dataset.stream === 'missing'",
                "the session gone",
            )
            assert await page.text("#live") == "no such session"
            assert await page.eval(CACHE_KEYS) == []
            assert await page.eval("!!sessionStorage.getItem('agent-runtime.token')")
        await page.call("Page.navigate", url="about:blank")
        # What the browser reported: the stream the restart cut, the refused requests.
        refused = [p for p in page.problems if restarted.url in p]
        assert any("ERR_INCOMPLETE_CHUNKED_ENCODING" in p for p in refused), refused
        page.problems[:] = [p for p in page.problems if p not in refused]
        restarted.shutdown.set()


async def test_a_session_deleted_elsewhere_is_closed_at_once(
    server: LiveServer, page: Page
) -> None:
    """Another client deletes the open session: its ``session.deleted`` ends the
    stream; the page says so and drops the cached log, without probing REST."""
    session_id = await open_a_cached_session(server, page)
    async with server.http() as http:
        assert (await http.delete(f"/v1/sessions/{session_id}")).status_code == 204
    await page.wait_for(
        "document.querySelector('#conversation')?.dataset.stream === 'missing'",
        "the session gone",
    )
    assert await page.text("#live") == "deleted"
    assert "This session was deleted." in await page.text("#toast")
    assert await page.eval(CACHE_KEYS) == []
