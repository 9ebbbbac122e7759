"""The console against hostile or odd input: what an approval shows is what runs,
odd URLs and tokens get a message (not a blank page), remote media never loads,
every console response carries its security headers, no session drops out of the
list (nor stays in it once deleted), and a log shorter than the tab's copy is
replayed from the start.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import trio

from server._console import CSP
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
from tests.server.helpers import LiveServer, make_config, start_server

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: displays what follows it reversed
TOAST = "document.querySelector('#toast').textContent"
LIVE = "document.querySelector('#conversation')?.dataset.stream === 'live'"


def text_of(selector: str) -> str:
    """JS: the textContent of every match of *selector*, joined."""
    return f"[...document.querySelectorAll({js(selector)})].map(e => e.textContent).join('\\n')"


async def test_a_bidi_override_in_an_approval_is_shown_escaped(
    server: LiveServer, page: Page
) -> None:
    """``echo hello \\u202e; rm -rf ~ #`` would display as ``echo hello # ~ fr- mr ;``:
    the session view, the inbox and the titles show the override as ``\\u202e``."""
    command = f"echo hello {RLO}; rm -rf ~ #"
    session_id = await server.new_session(agent="coder")
    await sign_in(page, server)
    await open_session(page, server, session_id)
    await say(server, session_id, f"run {command}")
    card = "#conversation details.tool[data-status='approval']"
    await page.wait_for(f"!!document.querySelector({js(card + ' form.decide')})", "the approval")
    shown = await page.eval(text_of(card))
    assert RLO not in shown
    assert "echo hello \\u202e; rm -rf ~ #" in await page.text(card + " .tool-target")
    assert '"command": "echo hello \\u202e; rm -rf ~ #"' in await page.text(card + " pre.args")
    # The edit box holds JSON that parses back to the very command asked about.
    edited = await page.eval(f"JSON.parse(document.querySelector({js(card + ' textarea')}).value)")
    assert edited == {"command": command}
    await page.wait_for(
        "document.querySelector('h1.session-title').textContent.includes('\\\\u202e')",
        "the title escaped",
    )
    assert RLO not in await page.text("h1.session-title")

    await page.click("nav a[href='#/inbox']")
    inbox_card = f"#inbox .approval-card[data-key={js(session_id + '/call_1')}]"
    await page.wait_for(f"!!document.querySelector({js(inbox_card)})", "the inbox card")
    shown = await page.text(inbox_card)
    assert RLO not in shown
    assert "echo hello \\u202e; rm -rf ~ #" in shown

    await page.click("nav a[href='#/']")
    row = f"#sessions [data-session={js(session_id)}] .title"
    await page.wait_for(f"!!document.querySelector({js(row)})", "the session row")
    title = await page.text(row)
    assert RLO not in title
    assert "\\u202e" in title


async def test_a_bidi_override_in_a_diff_path_is_shown_escaped(
    server: LiveServer, page: Page
) -> None:
    session_id = await server.new_session()
    await sign_in(page, server)
    await open_session(page, server, session_id)
    await say(server, session_id, f"create a{RLO}txt.exe with x = 1 {RLO}# ok")
    diff = "#conversation details.tool[data-status='approval'] .diff"
    await page.wait_for(f"!!document.querySelector({js(diff)})", "the diff")
    assert await page.text(diff + " .diff-head") == "a\\u202etxt.exe — new content"
    assert await page.eval(text_of(diff + " .diff-line")) == "+x = 1 \\u202e# ok"


async def test_a_malformed_session_link_shows_the_session_list(
    server: LiveServer, page: Page
) -> None:
    """``%E0%A4%A`` is a truncated escape: decodeURIComponent throws a URIError."""
    await sign_in(page, server)
    await page.eval("location.hash = '#/session/%E0%A4%A'")
    await page.wait_for(f"{TOAST}.includes('not a valid link')", "the message")
    await page.wait_for("!!document.querySelector('#sessions')", "the session list")
    assert "No such session: %E0%A4%A" in await page.text("#toast")


async def test_a_token_that_is_not_printable_ascii_is_named_as_such(
    server: LiveServer, page: Page
) -> None:
    """fetch refuses a header past ISO-8859-1, which read as "cannot reach" the server."""
    await page.navigate(server.url + "/")
    await page.fill("#token", "tök€n")
    await page.click("form.signin button[type=submit]")
    await page.wait_for("document.querySelector('.form-error').textContent", "the error")
    assert await page.text(".form-error") == "A token is printable ASCII; this one has 'ö'."
    assert await page.eval("sessionStorage.getItem('agent-runtime.token')") is None


REMOTE_MEDIA = [
    '<img srcset="https://evil.example/a.png 1x">',
    '<img src="https://evil.example/b.png" srcset="https://evil.example/c.png 2x">',
    '<video poster="https://evil.example/p.png" src="https://evil.example/v.mp4"></video>',
    '<audio src="https://evil.example/a.mp3"></audio>',
    '<video><source src="https://evil.example/s.mp4"><track src="https://evil.example/t"></video>',
    '<picture><source srcset="https://evil.example/p.png"><img alt="p"></picture>',
    '<table background="https://evil.example/bg.png"><tr><td>t</td></tr></table>',
    "![t](https://evil.example/track.png)",
]


async def test_markdown_keeps_no_remote_media(server: LiveServer, page: Page) -> None:
    """The console's own renderMarkdown: no URL the page would fetch survives (only
    links, which load nothing until clicked)."""
    await page.navigate(server.url + "/")
    found = await page.eval(
        f"""(async () => {{
          const {{ renderMarkdown }} = await import('/console/markdown.js');
          const found = [];
          for (const text of {js(REMOTE_MEDIA)}) {{
            const box = document.createElement('div');
            box.append(renderMarkdown(text));
            for (const e of box.querySelectorAll('*')) {{
              if (/^(VIDEO|AUDIO|SOURCE|TRACK|PICTURE)$/.test(e.tagName)) found.push(e.tagName);
              for (const a of e.attributes) {{
                if (/evil/.test(a.value)) found.push(`${{e.tagName}} ${{a.name}}=${{a.value}}`);
              }}
            }}
          }}
          return found;
        }})()"""
    )
    assert found == []


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/vendor", "/console/", "/console"])
async def test_a_console_error_carries_the_security_headers(server: LiveServer, path: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(path)
    assert response.status_code == 404
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cross-origin-opener-policy"] == "same-origin"


async def listed(server: LiveServer) -> list[str]:
    """Every session id the server lists, newest first."""
    ids: list[str] = []
    cursor: str | None = None
    async with server.http() as http:
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            body = (await http.get("/v1/sessions", params=params)).json()
            ids += [s["id"] for s in body["sessions"]]
            cursor = body["next_cursor"]
            if not cursor:
                return ids


SHOWN = "[...document.querySelectorAll('#sessions [data-session]')].map(e => e.dataset.session)"


async def test_a_new_session_pushes_no_row_out_of_the_list(server: LiveServer, page: Page) -> None:
    """With older pages shown, a new session moves the first page's last row to the
    second page; the poll (every 3 s) must not drop it."""
    for _ in range(25):
        await server.new_session()
    await sign_in(page, server)
    await page.wait_for(f"{SHOWN}.length === 20", "the first page")
    await page.click("#more")
    await page.wait_for(f"{SHOWN}.length === 25", "the older sessions")
    newest = await server.new_session()
    await page.wait_for(f"{SHOWN}[0] === {js(newest)}", "the new session at the top")
    assert await page.eval(SHOWN) == await listed(server)


async def test_a_session_deleted_elsewhere_leaves_every_page_of_the_list(
    server: LiveServer, page: Page
) -> None:
    """Another client deletes a session of the first page and one that "Older
    sessions" loaded: both rows go (the poll rereads the list down to its oldest
    shown row), the rows past them stay, and the older pages still follow on."""
    for _ in range(45):
        await server.new_session()
    await sign_in(page, server)
    await page.wait_for(f"{SHOWN}.length === 20", "the first page")
    await page.click("#more")
    await page.wait_for(f"{SHOWN}.length === 40", "the second page")
    before = await listed(server)
    assert await page.eval(SHOWN) == before[:40]
    gone = [before[3], before[30]]
    async with server.http() as http:
        for session_id in gone:
            assert (await http.delete(f"/v1/sessions/{session_id}")).status_code == 204
    kept = [s for s in before[:40] if s not in gone]
    await page.wait_for(f"{SHOWN}.join() === {js(','.join(kept))}", "both rows gone")
    await page.click("#more")
    await page.wait_for(f"{SHOWN}.length === {len(before) - 2}", "the last page")
    assert await page.eval(SHOWN) == await listed(server)
    assert await page.eval("document.querySelector('#more').hidden")


def backup(db: Path, copy: Path) -> None:
    """A consistent copy of the live database (SQLite's online backup)."""
    with closing(sqlite3.connect(db)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)


async def test_a_log_shorter_than_the_page_s_copy_is_replayed(tmp_path: Path, page: Page) -> None:
    """The server restarts on a backup taken before the page's last turn: the
    page's cursor is past the log's end, which the server refuses (400). The page
    drops its copy, says so and renders the log it now has from seq 0."""
    db, copy = tmp_path / "runtime.db", tmp_path / "backup.db"
    async with trio.open_nursery() as outer:
        first = await start_stoppable(outer, make_config(db=str(db)))
        server = first.server
        session_id = await server.new_session()
        await say(server, session_id, "stream 3 words")
        await sign_in(page, server)
        await open_session(page, server, session_id)
        await page.wait_for("document.querySelectorAll('#conversation .turn-end').length === 1")
        await trio.to_thread.run_sync(backup, db, copy)
        await say(server, session_id, "stream 4 words")
        await page.wait_for("document.querySelectorAll('#conversation .turn-end').length === 2")
        seen = len(await log(server, session_id))
        cache = f"JSON.parse(sessionStorage.getItem({js('agent-runtime.log.' + session_id)}))"
        await page.wait_for(f"{cache}?.events.at(-1).seq === {seen}", "the whole log cached")

        first.stop.cancel()
        with trio.fail_after(10):
            await first.stopped.wait()
        port = httpx.URL(server.url).port
        restored = await start_server(outer, make_config(db=str(copy), port=port))
        await page.wait_for(f"{TOAST}.includes('shorter than this page')", "the message")
        await page.wait_for(LIVE, "live again")
        await page.wait_for("document.querySelectorAll('#conversation .turn-end').length === 1")
        events = await assert_rendered_log(page, restored, session_id)
        assert len(events) < seen
        await page.call("Page.navigate", url="about:blank")
        # What the browser reported: the stream the restart cut, the refused cursor.
        reported = [p for p in page.problems if p.startswith("network:") and restored.url in p]
        assert any(f"status of 400 () {restored.url}" in p for p in reported), reported
        page.problems[:] = [p for p in page.problems if p not in reported]
        restored.shutdown.set()
