"""Console helpers for the browser tests: sign in, read what the page rendered."""

from __future__ import annotations

import json
import uuid
from typing import Any

import attrs
import trio

from server import ServeConfig
from tests.browser.cdp import Page
from tests.server.helpers import ALICE, Frame, LiveServer, WsClient, start_server


async def sign_in(page: Page, server: LiveServer, token: str = ALICE) -> None:
    await page.navigate(server.url + "/")
    await page.fill("#token", token)
    await page.click("form.signin button[type=submit]")
    await page.wait_for("!!document.querySelector('#sessions')", "the session list")


async def open_session(page: Page, server: LiveServer, session_id: str) -> None:
    url = f"{server.url}/#/session/{session_id}"
    await page.call("Page.navigate", url=url)
    await page.wait_for(
        "document.querySelector('#conversation')?.dataset.stream === 'live'",
        "the session's stream to be live",
    )


async def say(server: LiveServer, session_id: str, text: str) -> None:
    """Another client sends *text* to the session (its turn runs whatever the page does)."""
    async with server.http() as http:
        response = await http.post(
            f"/v1/sessions/{session_id}/commands",
            json={"type": "user_message", "id": f"m-{uuid.uuid4().hex}", "content": text},
        )
    assert response.json()["status"] == "accepted", response.text


async def rendered_seqs(page: Page) -> list[int]:
    """The seq of every rendered event, in document order."""
    value = await page.eval(
        "[...document.querySelectorAll('#conversation [data-seq]')].map(e => +e.dataset.seq)"
    )
    assert isinstance(value, list)
    return [int(v) for v in value]


async def log(server: LiveServer, session_id: str) -> list[Frame]:
    """The session's whole event log over REST."""
    events: list[Frame] = []
    async with server.http() as http:
        while True:
            response = await http.get(
                f"/v1/sessions/{session_id}/events", params={"after": len(events), "limit": 1000}
            )
            assert response.status_code == 200, response.text
            page = response.json()
            events += page["events"]
            if not page["has_more"]:
                return events


async def assert_rendered_log(page: Page, server: LiveServer, session_id: str) -> list[Frame]:
    """Every event of the log rendered exactly once: no duplicate, no gap."""
    events = await log(server, session_id)
    seqs = await rendered_seqs(page)
    assert sorted(seqs) == [e["seq"] for e in events], (seqs, [e["type"] for e in events])
    return events


async def wait_event(page: Page, server: LiveServer, session_id: str, type_: str) -> None:
    """Wait until the page rendered an event of *type_* (found in the log by seq)."""
    for _ in range(2):
        events = await log(server, session_id)
        matching = [e["seq"] for e in events if e["type"] == type_]
        if matching:
            await page.wait_for(
                f"!!document.querySelector('#conversation [data-seq=\"{matching[-1]}\"]')",
                f"{type_} (seq {matching[-1]}) rendered",
            )
            return
        await page.wait_for(
            f"document.querySelectorAll('#conversation [data-seq]').length > {len(events)}",
            f"more events than the {len(events)} of the log",
        )
    raise AssertionError(f"no {type_} in the log")


async def answer_tool_call(
    server: LiveServer, session_id: str, result: Any = "ok", skip: int = 0
) -> Frame:
    """Play the IDE: answer the (skip+1)-th ``tool.call`` of the session; that event."""
    async with server.ws(session_id) as client:
        seen = 0
        while True:
            event = await client.event()
            if event["type"] == "tool.call":
                if seen == skip:
                    await answer(client, event, result)
                    return event
                seen += 1


async def answer(client: WsClient, event: Frame, result: Any) -> None:
    ack = await client.command(
        {
            "type": "tool_result",
            "id": f"r-{event['call_id']}-{event['seq']}",
            "call_id": event["call_id"],
            "result": result,
        }
    )
    assert ack["status"] == "accepted", ack


def js(value: object) -> str:
    return json.dumps(value)


@attrs.frozen
class Stoppable:
    """A live server that a test can stop on its own (a crash, for the page)."""

    server: LiveServer
    stop: trio.CancelScope  # cancel it: the server dies at once, its sockets closed
    stopped: trio.Event  # set once everything of it is gone


async def start_stoppable(nursery: trio.Nursery, config: ServeConfig) -> Stoppable:
    stop, stopped = trio.CancelScope(), trio.Event()

    async def life(task_status: trio.TaskStatus[LiveServer]) -> None:
        try:
            with stop:
                async with trio.open_nursery() as inner:
                    task_status.started(await start_server(inner, config))
        finally:
            stopped.set()

    server: LiveServer = await nursery.start(life)
    return Stoppable(server, stop, stopped)
