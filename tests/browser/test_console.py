"""The web console in a real browser (headless Chromium over CDP) against a live server.

Each test signs in like a person (the token typed into the page), drives the page
by clicking and typing, plays the IDE over WebSocket where a tool call waits for
it, and checks what the page shows against the session's log over REST: every
event rendered exactly once (``data-seq``), nothing executed that came from the
model. Screenshots of the main views go to ``tests/browser/artifacts/``.
"""

from __future__ import annotations

import trio

from agents._core._budget import SCRIPTED_LIMITS, ModelCatalog, ModelLimits
from agents._providers._scripted import stream_words
from tests.browser.cdp import Page
from tests.browser.console import (
    answer_tool_call,
    assert_rendered_log,
    js,
    log,
    open_session,
    sign_in,
    wait_event,
)
from tests.fakes.openai_server import error_reply, open_fake_openai
from tests.server.gates import hold, release
from tests.server.helpers import LiveServer, make_config, start_server

CONVERSATION_TEXT = (
    "[...document.querySelectorAll('#conversation .stream-text')].map(e => e.textContent)"
)


async def send(page: Page, text: str) -> None:
    await page.fill("#message", text)
    await page.click("#send")
    await page.wait_for("document.querySelector('#message').value === ''", "the message to be sent")


async def current_session(page: Page) -> str:
    session_id = await page.wait_for(
        "(/^#\\/session\\/(.+)$/.exec(location.hash) || [])[1]", "a session page"
    )
    assert isinstance(session_id, str)
    return session_id


def card(call_id: str) -> str:
    return f"#conversation details.tool[data-call={js(call_id)}]"


async def wait_status(page: Page, call_id: str, status: str) -> None:
    await page.wait_for(
        f"document.querySelector({js(card(call_id))})?.dataset.status === {js(status)}",
        f"{call_id} {status}",
    )


async def wait_session_status(page: Page, text: str) -> None:
    await page.wait_for(
        f"document.querySelector('#session-status')?.textContent === {js(text)}", text
    )


async def wait_turn_end(page: Page, reason: str, count: int = 1) -> None:
    await page.wait_for(
        f"document.querySelectorAll('#conversation .turn-end .reason.{reason}').length >= {count}",
        f"{count} turn(s) ended {reason}",
    )


async def test_create_approve_then_the_ide_answers(server: LiveServer, page: Page) -> None:
    await sign_in(page, server)
    await page.click("#new-session")
    session_id = await current_session(page)
    await page.wait_for("document.querySelector('#conversation').dataset.stream === 'live'")
    await send(page, "create hello.py with print('hi')")

    # The streamed text, then the approval with the rule that asked and the diff.
    await page.wait_for(f"{CONVERSATION_TEXT}.includes('Writing hello.py.')", "the streamed text")
    await wait_status(page, "call_1", "approval")
    panel = card("call_1") + " .approval-panel"
    assert "default: write_file asks for approval" in await page.text(panel + " .rule")
    assert await page.eval(
        f"[...document.querySelectorAll({js(panel + ' .diff-line.add')})].map(e => e.textContent)"
    ) == ["+print('hi')"]
    await wait_session_status(page, "waiting for approval")
    await page.screenshot("approval-with-diff")

    await page.click(panel + " button.approve")
    # Approved, the call waits for the IDE: the console does not run it.
    await wait_status(page, "call_1", "ide")
    assert "Waiting for the IDE" in await page.text(card("call_1"))
    await wait_session_status(page, "waiting for the IDE")
    resolved = [e for e in await log(server, session_id) if e["type"] == "approval.resolved"]
    assert [(e["decision"], e["by"]) for e in resolved] == [("approve", "user")]

    call = await answer_tool_call(server, session_id, {"written": 11})
    assert call["arguments"] == {"path": "hello.py", "content": "print('hi')"}
    await wait_status(page, "call_1", "ok")
    await wait_turn_end(page, "completed")
    assert '{"written":11}' in await page.text(card("call_1") + " .result")
    await wait_session_status(page, "idle")
    await assert_rendered_log(page, server, session_id)
    await page.screenshot("session-view")

    await page.click("a.back")
    await page.wait_for(
        f"document.querySelector('[data-session={js(session_id)}] .chip')?.textContent === 'idle'"
    )
    assert "create hello.py" in await page.text(f"[data-session={js(session_id)}] .title")


async def test_reject_edit_and_approve_for_the_session(server: LiveServer, page: Page) -> None:
    session_id = await server.new_session()
    await sign_in(page, server)
    await open_session(page, server, session_id)

    # Reject with feedback: the agent hears it.
    await send(page, "create a.py with print(1)")
    await wait_status(page, "call_1", "approval")
    await page.click(card("call_1") + " button.reject")
    await page.fill(card("call_1") + " .feedback-input", "use b.py instead")
    await page.click(card("call_1") + " button.reject")
    await wait_turn_end(page, "completed")
    assert "use b.py instead" in await page.text(card("call_1"))
    events = await log(server, session_id)
    resolved = next(e for e in events if e["type"] == "approval.resolved")
    assert (resolved["decision"], resolved.get("feedback")) == ("reject", "use b.py instead")
    final = [e["content"] for e in events if e["type"] == "message"][-1]
    assert "rejected by user: use b.py instead" in final
    assert "tool.call" not in [e["type"] for e in events]

    # Edit the arguments (a JSON textarea): the IDE gets the edited call.
    await send(page, "create c.py with print(2)")
    await wait_status(page, "call_2", "approval")
    await page.click(card("call_2") + " button.edit")
    await page.fill(card("call_2") + " textarea.edit-args", '{"path": "c.py", "content": "edited"}')
    await page.click(card("call_2") + " button.edit")
    await wait_status(page, "call_2", "ide")
    call = await answer_tool_call(server, session_id)
    assert call["arguments"] == {"path": "c.py", "content": "edited"}
    await wait_turn_end(page, "completed", 2)

    # Approve for the session: the next write_file asks nobody.
    await send(page, "create d.py with print(3)")
    await wait_status(page, "call_3", "approval")
    await page.click(card("call_3") + " button.approve-session")
    await wait_status(page, "call_3", "ide")
    await answer_tool_call(server, session_id, skip=1)
    await wait_turn_end(page, "completed", 3)
    await send(page, "create e.py with print(4)")
    await wait_status(page, "call_4", "ide")
    await answer_tool_call(server, session_id, skip=2)
    await wait_turn_end(page, "completed", 4)

    events = await assert_rendered_log(page, server, session_id)
    decisions = [
        (e["decision"], e.get("remember")) for e in events if e["type"] == "approval.resolved"
    ]
    assert decisions == [("reject", None), ("edit", None), ("approve", "session")]
    assert "(for the rest of the session)" in await page.text(card("call_3"))


async def test_cancel_mid_stream_shows_the_partial_text_truncated(
    server: LiveServer, page: Page
) -> None:
    session_id = await server.new_session()
    await sign_in(page, server)
    await open_session(page, server, session_id)
    await send(page, hold("cancelgate", 50))
    # All 50 words shown: the reply is held at its gate, provably still streaming.
    await page.wait_for(
        f"{CONVERSATION_TEXT}.join('') === {js(stream_words(50))}", "50 streamed words"
    )
    assert await page.eval("!!document.querySelector('#conversation .msg.streaming')")
    await wait_session_status(page, "running")
    await page.screenshot("session-streaming")

    await page.click("#cancel")
    await wait_turn_end(page, "cancelled")
    truncated = "#conversation .msg.assistant.truncated"
    assert await page.text(truncated + " .truncated-badge") == "truncated"
    assert (await page.text(truncated + " .md")).startswith(stream_words(50).strip())
    await page.wait_for("document.querySelector('#cancel').hidden", "no cancel button")
    events = await assert_rendered_log(page, server, session_id)
    message = next(e for e in events if e["type"] == "message")
    assert message["truncated"] is True
    # The cut call's usage is the runtime's estimate, and the page says so.
    assert [e.get("estimated") for e in events if e["type"] == "usage"][-1] is True
    await page.wait_for(
        "[...document.querySelectorAll('#conversation .usage')]"
        ".some(n => n.textContent.includes('(estimated)'))",
        "an estimated usage row",
    )


async def test_reload_mid_stream_resumes_without_duplicate_or_gap(
    server: LiveServer, page: Page
) -> None:
    session_id = await server.new_session()
    await sign_in(page, server)
    await open_session(page, server, session_id)
    await send(page, hold("reloadgate", 30, 20))
    await page.wait_for(f"{CONVERSATION_TEXT}.join('') === {js(stream_words(30))}")
    before = len(await log(server, session_id))

    await page.reload()
    await page.wait_for(
        "document.querySelector('#conversation')?.dataset.stream === 'live'", "live again"
    )
    # Rendered from the tab's cache, resumed after its last seq: nothing twice.
    await page.wait_for(f"{CONVERSATION_TEXT}.join('') === {js(stream_words(30))}")
    await assert_rendered_log(page, server, session_id)
    assert await page.eval("document.querySelector('#conversation').dataset.after") == str(before)
    assert "access_token" not in await page.eval("location.href")

    await release(server, "reloadgate")
    await wait_turn_end(page, "completed")
    await page.wait_for(
        f"document.querySelector('#conversation .msg.assistant .md')?.textContent.trim()"
        f" === {js(stream_words(50).strip())}"
    )
    await assert_rendered_log(page, server, session_id)


async def test_console_page_has_a_strict_csp(server: LiveServer) -> None:
    async with server.http(None) as http:
        page = await http.get("/")
        script = await http.get("/console/app.js")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert script.headers["content-type"].startswith("text/javascript")
    assert "<script>" not in page.text.replace('<script type="module" src="/console/app.js">', "")


async def test_nothing_runs_from_model_output(server: LiveServer, page: Page) -> None:
    payload = "<script>window.pwned=1</script><img src=x onerror=pwned=2>[go](javascript:pwned=3)"
    session_id = await server.new_session()
    await sign_in(page, server)
    await open_session(page, server, session_id)
    await send(page, "read notes.md")
    await wait_status(page, "call_1", "ide")
    await answer_tool_call(server, session_id, payload)
    await wait_turn_end(page, "completed")

    events = await log(server, session_id)
    final = [e["content"] for e in events if e["type"] == "message"][-1]
    assert "<script>" in final and "javascript:" in final, final
    await page.wait_for(
        "[...document.querySelectorAll('#conversation .msg.assistant .md')]"
        ".some(e => e.textContent.includes('Done: read_file'))",
        "the final message rendered",
    )
    # The markdown rendered, sanitised: no script, no handler, the link has no href.
    assert await page.eval("document.querySelectorAll('#conversation script').length") == 0
    assert await page.eval("document.querySelectorAll('#conversation [onerror]').length") == 0
    link = await page.eval(
        "(() => { const a = [...document.querySelectorAll('#conversation .md a')]"
        ".find(a => a.textContent === 'go'); return a ? [a.getAttribute('href')] : null; })()"
    )
    assert link == [None], link
    await page.eval("[...document.querySelectorAll('#conversation .md a')].forEach(a => a.click())")
    # Tool text is text: the result shows the payload literally.
    assert payload in await page.text(card("call_1") + " .result")
    assert await page.eval("typeof window.pwned") == "undefined"
    await assert_rendered_log(page, server, session_id)


async def test_inbox_gathers_what_waits_across_sessions(server: LiveServer, page: Page) -> None:
    first = await server.new_session(title="add a greeting")
    second = await server.new_session(title="rename the helper")
    idle = await server.new_session(title="an idle session")
    del idle
    async with server.http() as http:
        for session_id, text in (
            (first, "create hi.py with print('hi')"),
            (second, "edit util.py replace old_name with new_name"),
        ):
            response = await http.post(
                f"/v1/sessions/{session_id}/commands",
                json={"type": "user_message", "id": "m1", "content": text},
            )
            assert response.status_code == 200, response.text
    await sign_in(page, server)
    # The list shows each session's live status.
    for session_id, status in ((first, "approval"), (second, "approval")):
        await page.wait_for(
            f"document.querySelector('[data-session={js(session_id)}] .chip')"
            f"?.dataset.status === {js(status)}",
            f"{session_id} {status}",
        )

    await page.click("nav a[href='#/inbox']")
    await page.wait_for("document.querySelectorAll('#inbox .approval-card').length === 2")
    lines = await page.eval(
        "[...document.querySelectorAll('#inbox .diff-line')].map(e => e.textContent)"
    )
    assert sorted(lines) == ["+new_name", "+print('hi')", "-old_name"], lines
    await page.screenshot("inbox")

    approve = f"#inbox .approval-card[data-key={js(first + '/call_1')}] button.approve"
    await page.click(approve)
    await page.wait_for("document.querySelectorAll('#inbox .approval-card').length === 1")
    async with server.http() as http:
        pending = (await http.get(f"/v1/sessions/{first}/approvals")).json()["approvals"]
    assert pending == []

    await page.click("nav a[href='#/']")
    await page.wait_for(
        f"document.querySelector('[data-session={js(first)}] .chip')?.dataset.status === 'ide'",
        "the first session waiting for the IDE",
    )
    await page.screenshot("session-list")


async def test_a_model_error_is_shown_and_the_stream_stays_connected(
    nursery: trio.Nursery, page: Page
) -> None:
    """The durable ``error`` event arrives as SSE ``agent.error``: shown, not a disconnect."""
    # A provider that refuses every call with a non-retryable 400: the turn ends "error".
    async with open_fake_openai(lambda _: error_reply(400, "the model refused")) as fake:
        config = make_config(llm="openai", llm_url=fake.base_url, model="fake-model")
        server = await start_server(nursery, config)
        await sign_in(page, server)
        session_id = await server.new_session(agent="ask")
        await open_session(page, server, session_id)
        await send(page, "explain hello.py")
        await wait_turn_end(page, "error")
        shown = await page.text("#conversation")
        assert "the model refused" in shown
        # Still live (no reconnect was triggered), and every event shown exactly once.
        assert await page.eval("document.querySelector('#conversation').dataset.stream") == "live"
        events = await assert_rendered_log(page, server, session_id)
        assert "error" in [e["type"] for e in events]
        server.shutdown.set()


async def test_a_cancelled_question_leaves_the_page_and_the_inbox(
    server: LiveServer, page: Page
) -> None:
    """A cancel closes a question by a failed ``tool.result`` of its call: no answer."""
    session_id = await server.new_session(title="a question")
    await sign_in(page, server)
    await open_session(page, server, session_id)
    await send(page, "ask what colour?")
    form = "#conversation .question-box form"
    await page.wait_for(f"!!document.querySelector({js(form)})", "the question's form")
    await page.wait_for(
        "document.querySelector('#session-status .chip')?.dataset.status === 'question'"
    )
    asked = next(e for e in await log(server, session_id) if e["type"] == "question.asked")
    inbox_card = f"#inbox .inbox-card[data-key={js(session_id + '/q/' + asked['question_id'])}]"
    await page.click("nav a[href='#/inbox']")
    await page.wait_for(f"!!document.querySelector({js(inbox_card)})", "the question in the inbox")

    await open_session(page, server, session_id)
    await page.wait_for(f"!!document.querySelector({js(form)})", "the form again")
    async with server.http() as http:
        response = await http.post(
            f"/v1/sessions/{session_id}/commands",
            json={"type": "cancel", "id": "c1", "turn_id": asked["turn_id"]},
        )
        assert response.json()["status"] == "accepted", response.text
    await wait_turn_end(page, "cancelled")
    await page.wait_for(f"!document.querySelector({js(form)})", "the form gone")
    await page.wait_for(
        "document.querySelector('#session-status .chip')?.dataset.status === 'idle'", "idle"
    )
    assert "no answer" in await page.text("#conversation .question-box.closed")
    events = await assert_rendered_log(page, server, session_id)
    assert "question.answered" not in [e["type"] for e in events]

    await page.click("nav a[href='#/inbox']")
    await page.wait_for("document.querySelector('#inbox')?.dataset.loaded === 'true'")
    assert await page.eval(f"document.querySelectorAll({js(inbox_card)}).length") == 0


async def test_the_model_select_switches_the_model_and_follows_other_clients(
    nursery: trio.Nursery, page: Page
) -> None:
    tables = {"scripted": SCRIPTED_LIMITS, "big": ModelLimits(200_000, 8_000)}
    server = await start_server(nursery, make_config(models=ModelCatalog(tables)))
    session_id = await server.new_session(title="models")
    await sign_in(page, server)
    await open_session(page, server, session_id)
    offered = "[...document.querySelectorAll('#model option')].map(o => o.value).join(',')"
    await page.wait_for(f"{offered} === ',scripted,big'", "the server's models offered")
    assert await page.eval("document.querySelector('#model').value") == ""
    await page.eval(
        "(() => { const s = document.querySelector('#model'); s.value = 'big';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    await wait_event(page, server, session_id, "model.switched")
    # Another client switches to a model the server does not list: the select shows it.
    async with server.http() as http:
        ack = await http.post(
            f"/v1/sessions/{session_id}/commands",
            json={"type": "switch_model", "id": "c1", "model": "mine-7b"},
        )
        assert ack.json()["status"] == "accepted", ack.json()
    await page.wait_for(
        "document.querySelector('#model').value === 'mine-7b'", "the other client's model"
    )
    events = await assert_rendered_log(page, server, session_id)
    assert [e["to"] for e in events if e["type"] == "model.switched"] == ["big", "mine-7b"]
    # Leave the session page so its stream is closed before this test's server goes.
    await page.click("nav a[href='#/inbox']")
    await page.wait_for("document.querySelector('#inbox')?.dataset.loaded === 'true'")
