"""Compaction live: the real server, the openai provider and the loopback fake (issue #11).

The fake's script is :class:`~tests.fakes.long_model.LongModel`, which refuses any
request over its window, writes summaries that keep every ``FACT k=v`` and checks
tool-call pairing on every request. The model's window is small (a TOML
``[models."fake-model"]`` table), so a long session compacts many times.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from agents._core._context import COMPACTION_PROMPT, SUMMARY_HEADER, fit_tool_result
from server import ServeConfig, load_config
from tests.fakes.long_model import LongModel
from tests.fakes.openai_server import (
    FakeOpenAI,
    RecordedRequest,
    error_reply,
    open_fake_openai,
)
from tests.server.helpers import (
    ALICE,
    STEP,
    Frame,
    LiveServer,
    WsClient,
    as_object,
    drive_turn,
    ended,
    make_config,
    open_sse,
    read_sse,
    small_limits,
    sse_event,
    start_server,
)
from tests.server.test_process import TOKEN, running_server

MODEL = "fake-model"
WINDOW, OUTPUT = 4096, 512
TOML = f"""
[models."{MODEL}"]
context_window = {WINDOW}
max_output_tokens = {OUTPUT}

[limits]
commands_per_second = 1000
"""
PADDING = " ".join(["alpha", "beta", "gamma", "delta", "epsilon"] * 20)  # 100 words
NOTES = "contents of notes.txt: " + "the quick brown fox jumps over the lazy dog " * 7
SSE = {"Accept": "text/event-stream"}
AUTH = {"Authorization": f"Bearer {ALICE}"}


def note(i: int) -> str:
    return f"note FACT k{i}=v{i} {PADDING}"


def config_file(tmp_path: Path, fake: FakeOpenAI) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(TOML + f'\n[llm]\nprovider = "openai"\nurl = "{fake.base_url}"\n')
    return path


def live_config(tmp_path: Path, fake: FakeOpenAI, **overrides: Any) -> ServeConfig:
    """The window from the TOML file, the rest as the other live tests have it."""
    models = load_config(config_file=config_file(tmp_path, fake)).models
    assert models.limits(MODEL).input_budget == WINDOW - OUTPUT
    return make_config(
        llm="openai",
        llm_url=fake.base_url,
        model=MODEL,
        models=models,
        limits=small_limits(commands_per_second=1000.0),
        **overrides,
    )


async def start(nursery: trio.Nursery, tmp_path: Path, fake: FakeOpenAI) -> LiveServer:
    return await start_server(nursery, live_config(tmp_path, fake))


async def note_turn(client: WsClient, i: int, result: object = NOTES) -> list[Frame]:
    ack = await client.command({"type": "user_message", "id": f"note-{i}", "content": note(i)})
    assert ack["status"] == "accepted", ack
    return await drive_turn(client, tool_result=result)


async def ask(client: WsClient, key: str) -> str:
    command = {"type": "user_message", "id": f"ask-{key}", "content": f"what is {key}?"}
    assert (await client.command(command))["status"] == "accepted"
    events = await client.until(ended)
    assert events[-1]["reason"] == "completed", events[-1]
    answer = [e["content"] for e in events if e["type"] == "message"][-1]
    assert isinstance(answer, str)
    return answer


async def all_events(server: LiveServer, session_id: str, token: str = ALICE) -> list[Frame]:
    events: list[Frame] = []
    async with server.http(token) as http:
        while True:
            url = f"/v1/sessions/{session_id}/events"
            page = (await http.get(url, params={"after": len(events), "limit": 1000})).json()
            events += page["events"]
            if not page["has_more"]:
                return events


async def messages(server: LiveServer, session_id: str, token: str = ALICE) -> list[Frame]:
    async with server.http(token) as http:
        response = await http.get(f"/v1/sessions/{session_id}/messages")
    assert response.status_code == 200, response.text
    history = response.json()["messages"]
    assert isinstance(history, list)
    return history


def of_type(events: list[Frame], type_: str) -> list[Frame]:
    return [e for e in events if e["type"] == type_]


def reasons(events: list[Frame]) -> list[str]:
    return [str(e["reason"]) for e in of_type(events, "turn.ended")]


def sent_body(request: RecordedRequest) -> Frame:
    """The JSON body of a request the fake received."""
    return as_object(json.loads(request.raw))


def is_summary_request(request: RecordedRequest) -> bool:
    content = sent_body(request)["messages"][0]["content"]
    return isinstance(content, str) and content.startswith(COMPACTION_PROMPT)


# -- a long session --------------------------------------------------------------------


async def test_hundreds_of_turns_stay_in_the_window_and_keep_their_facts(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    turns = 200
    model = LongModel(window=WINDOW - OUTPUT)
    async with open_fake_openai(model) as fake:
        server = await start(nursery, tmp_path, fake)
        session_id = await server.new_session(agent="ask")
        events: list[Frame] = []
        async with server.ws(session_id) as client:
            for i in range(turns):
                events += await note_turn(client, i)
            assert await ask(client, "k0") == "k0 is v0"
            assert await ask(client, f"k{turns - 1}") == f"k{turns - 1} is v{turns - 1}"
            assert await ask(client, "nope") == "I do not know nope"
        assert reasons(events) == ["completed"] * turns
        for end in of_type(events, "turn.ended"):
            assert end["context_window"] == WINDOW
            assert end["context_tokens"] <= (WINDOW - OUTPUT) * 0.8, end
        assert len(of_type(events, "tool.call")) == turns
        assert model.refusals == 0, model.largest  # no request was over the window
        assert model.pairing_problems == []
        compacted = of_type(events, "context.compacted")
        assert len(compacted) >= 5, len(compacted)
        assert len(of_type(events, "compaction.started")) == len(compacted)
        assert {e["reason"] for e in compacted} == {"threshold"}
        assert model.summaries == len(compacted)
        for request in filter(is_summary_request, fake.requests):
            body = sent_body(request)
            assert "tools" not in body, body.keys()
            assert [m["role"] for m in body["messages"]] == ["system", "user"]
        sent = sent_body(fake.requests[-1])["messages"]
        assert [m["role"] for m in sent[:3]] == ["system", "user", "user"]
        assert sent[1]["content"].startswith(SUMMARY_HEADER)
        compact_usage = [e for e in of_type(events, "usage") if e["purpose"] == "compact"]
        assert len(compact_usage) == len(compacted)
        # Each summary keeps every fact so far (the fake's summaries are faithful).
        last = str(compacted[-1]["summary"])
        assert "FACT k0=v0" in last and "FACT k150=v150" in last

        # Each turn's totals count its summary call too.
        turn_calls: dict[str, int] = {}
        for e in of_type(events, "usage"):
            turn_calls[e["turn_id"]] = turn_calls.get(e["turn_id"], 0) + 1
        for end in of_type(events, "turn.ended"):
            assert end["usage"]["calls"] == turn_calls[end["turn_id"]], end
        assert {turn_calls[e["turn_id"]] for e in compacted} == {3}

        async with server.http() as http:
            session = (await http.get(f"/v1/sessions/{session_id}")).json()
            first = (await http.get(f"/v1/sessions/{session_id}/events?limit=1")).json()
        assert session["usage"]["compactions"] == len(compacted)
        assert session["usage"]["calls"] == model.chats + model.summaries
        history = await messages(server, session_id)
        assert history[0]["role"] == "user"
        assert history[0]["content"].startswith(SUMMARY_HEADER)
        assert history[1]["role"] == "user"  # the verbatim tail starts at a user message
        assert len(history) < 30  # the tail, not 200 turns
        assert first["events"][0]["type"] == "user.message"
        assert first["events"][0]["content"] == note(0)
        server.shutdown.set()


# -- overflow reported by the provider ---------------------------------------------------


@pytest.mark.parametrize("step", [1, 2], ids=["first-request", "after-the-tool-result"])
async def test_a_refused_request_compacts_and_retries_once(
    nursery: trio.Nursery, tmp_path: Path, step: int
) -> None:
    model = LongModel(window=WINDOW - OUTPUT)
    async with open_fake_openai(model) as fake:
        server = await start(nursery, tmp_path, fake)
        session_id = await server.new_session(agent="ask")
        async with server.ws(session_id) as client:
            for i in range(3):
                await note_turn(client, i)
            model.refuse_step = step
            before = len(fake.requests)
            events = await note_turn(client, 3)
            model.refuse_step = 0
            assert await ask(client, "k0") == "k0 is v0"
        assert events[-1]["reason"] == "completed", events
        started = of_type(events, "compaction.started")
        compacted = of_type(events, "context.compacted")
        assert [e["reason"] for e in started] == ["overflow"]
        assert [e["reason"] for e in compacted] == ["overflow"]
        assert of_type(events, "error") == []
        # The refused request, the summary, the retry, and the other step of the turn.
        kinds = ["summary" if is_summary_request(r) else "chat" for r in fake.requests[before:]]
        expected = ["chat", "chat"]
        expected[step - 1 : step - 1] = ["chat", "summary"]
        assert kinds[:4] == expected, kinds
        assert model.forced_refusals == 1
        assert model.refusals == 0 and model.pairing_problems == []
        # The retry is the refused request with the history compacted.
        refused, retry = (sent_body(fake.requests[before + i]) for i in (step - 1, step + 1))
        assert retry["messages"][1]["content"].startswith(SUMMARY_HEADER)
        assert retry["messages"][-1] == refused["messages"][-1]
        assert len(retry["messages"]) < len(refused["messages"])
        server.shutdown.set()


async def test_a_request_that_never_fits_ends_the_turn_with_context_overflow(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    model = LongModel(window=WINDOW - OUTPUT)
    async with open_fake_openai(model) as fake:
        server = await start(nursery, tmp_path, fake)
        fresh = await server.new_session(agent="ask")
        used = await server.new_session(agent="ask")
        async with server.ws(used) as client:
            for i in range(3):
                await note_turn(client, i)
            after = client.last_seq
        model.always_refuse = True
        for session_id, seen, compactions in ((fresh, 0, 0), (used, after, 1)):
            async with server.ws(session_id, after=seen) as client:
                ack = await client.command(
                    {"type": "user_message", "id": "big", "content": note(9)}
                )
                assert ack["status"] == "accepted"
                events = await client.until(ended)
            assert events[-1]["reason"] == "error", events
            errors = of_type(events, "error")
            assert [(e["code"], e["retryable"]) for e in errors] == [("context_overflow", False)]
            assert "window" in errors[0]["message"]
            # With history to cut, one compaction was tried first (and only one).
            assert len(of_type(events, "context.compacted")) == compactions
        server.shutdown.set()


# -- the compact command -------------------------------------------------------------------


async def test_compact_over_websocket(nursery: trio.Nursery, tmp_path: Path) -> None:
    model = LongModel(window=WINDOW - OUTPUT)
    async with open_fake_openai(model) as fake:
        server = await start(nursery, tmp_path, fake)
        session_id = await server.new_session(agent="ask")
        async with server.ws(session_id) as client:
            # Nothing to cut yet: the turn ends at once, without compacting.
            await note_turn(client, 0)
            early = await client.command({"type": "compact", "id": "cmp-0"})
            assert early["status"] == "accepted", early
            nothing = await client.until(ended)
            assert [e["type"] for e in nothing] == ["turn.started", "turn.ended"], nothing
            assert nothing[-1]["reason"] == "completed"
            for i in range(1, 3):
                await note_turn(client, i)
            # Sent while a turn waits for its tool result: queued behind it.
            message = {"type": "user_message", "id": "note-3", "content": note(3)}
            running = await client.command(message)
            call = (await client.until_type("tool.call"))[-1]
            command = {"type": "compact", "id": "cmp-1", "instructions": "the FACT lines"}
            ack = await client.command(command)
            assert ack["status"] == "accepted" and ack["turn_id"], ack
            assert ack["turn_id"] != running["turn_id"]
            result = {"type": "tool_result", "id": "r3", "call_id": call["call_id"], "result": "x"}
            assert (await client.command(result))["status"] == "accepted"
            first = await client.until(ended)
            assert first[-1]["turn_id"] == running["turn_id"]
            assert first[-1]["reason"] == "completed"
            assert of_type(first, "compaction.started") == []
            events = await client.until(ended)
            assert await ask(client, "k0") == "k0 is v0"
        assert {e["turn_id"] for e in events} == {ack["turn_id"]}
        types = [e["type"] for e in events]
        assert types[0] == "turn.started" and types[-1] == "turn.ended"
        assert types.index("compaction.started") < types.index("context.compacted")
        assert of_type(events, "compaction.started")[0]["reason"] == "requested"
        assert of_type(events, "context.compacted")[0]["reason"] == "requested"
        assert events[-1]["reason"] == "completed"
        summary = [r for r in fake.requests if is_summary_request(r)]
        assert len(summary) == 1 and "the FACT lines" in summary[0].raw.decode()
        server.shutdown.set()


async def sse_note_turn(http: httpx.AsyncClient, session_id: str, i: int) -> list[Frame]:
    """``POST /messages`` as an event stream, answering the tool call with ``POST /commands``."""
    body = {"content": note(i), "id": f"note-{i}"}
    url = f"/v1/sessions/{session_id}/messages"
    events: list[Frame] = []
    async with (
        http.stream("POST", url, json=body, headers=SSE) as response,
        read_sse(response) as reader,
    ):
        while (block := await reader.block()) is not None:
            event = sse_event(block)
            events.append(event)
            if event["type"] == "tool.call":
                command = {
                    "type": "tool_result",
                    "id": f"result-{event['seq']}",
                    "call_id": event["call_id"],
                    "result": NOTES,
                }
                answered = await http.post(f"/v1/sessions/{session_id}/commands", json=command)
                assert answered.status_code == 200, answered.text
    assert events[-1]["type"] == "turn.ended" and events[-1]["reason"] == "completed", events
    return events


async def test_compact_over_sse_and_http_post(nursery: trio.Nursery, tmp_path: Path) -> None:
    model = LongModel(window=WINDOW - OUTPUT)
    async with open_fake_openai(model) as fake:
        server = await start(nursery, tmp_path, fake)
        session_id = await server.new_session(agent="ask")
        async with server.http() as http:
            for i in range(3):
                last = (await sse_note_turn(http, session_id, i))[-1]["seq"]
            path = f"/v1/sessions/{session_id}/events?after={last}"
            async with open_sse(server, path, AUTH) as (raw, reader):
                assert raw.status == 200
                response = await http.post(
                    f"/v1/sessions/{session_id}/commands", json={"type": "compact", "id": "c"}
                )
                assert response.status_code == 200, response.text
                ack = response.json()
                assert ack["status"] == "accepted" and ack["turn_id"], ack
                events = [await reader.event()]
                while not ended(events[-1]):
                    events.append(await reader.event())
            again = await http.post(
                f"/v1/sessions/{session_id}/commands", json={"type": "compact", "id": "c"}
            )
            assert again.json()["status"] == "duplicate"
        assert events[0]["seq"] == last + 1
        assert {e["turn_id"] for e in events} == {ack["turn_id"]}
        assert [e["reason"] for e in of_type(events, "context.compacted")] == ["requested"]
        assert events[-1]["reason"] == "completed"
        server.shutdown.set()


# -- an oversized tool result ---------------------------------------------------------------


async def test_an_oversized_tool_result_is_whole_in_the_log_and_cut_for_the_model(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    model = LongModel(window=WINDOW - OUTPUT)
    whole = "BEGIN " + "a line of the big file\n" * 9_000 + " END"
    assert len(whole) > 200_000
    async with open_fake_openai(model) as fake:
        server = await start(nursery, tmp_path, fake)
        session_id = await server.new_session(agent="ask")
        async with server.ws(session_id) as client:
            events = await note_turn(client, 0, result=whole)
        assert events[-1]["reason"] == "completed"
        [result] = of_type(events, "tool.result")
        assert result["ok"] is True and result["content"] == whole
        sent = fake.requests[-1].raw.decode()
        assert "characters cut" in sent and len(sent) < 40_000
        assert "BEGIN" in sent and " END" in sent
        assert model.refusals == 0 and model.pairing_problems == []
        logged = of_type(await all_events(server, session_id), "tool.result")
        assert logged[0]["content"] == whole
        server.shutdown.set()


# -- SIGKILL during a compaction ----------------------------------------------------------------


@pytest.mark.slow
async def test_sigkill_mid_compaction_then_restart(tmp_path: Path) -> None:
    db, log = tmp_path / "sessions.db", tmp_path / "server.log"
    model = LongModel(window=WINDOW - OUTPUT, stall_summaries=True)
    async with open_fake_openai(model) as fake:
        args = ("--config", str(config_file(tmp_path, fake)), "--model", MODEL)
        async with running_server(db, log, *args) as (process, server):
            session_id = await server.new_session(TOKEN, agent="ask")
            async with server.ws(session_id, TOKEN) as client:
                i = 0
                while True:
                    ack = await client.command(
                        {"type": "user_message", "id": f"note-{i}", "content": note(i)}
                    )
                    events = await client.until(
                        lambda e: ended(e) or e["type"] in ("tool.call", "compaction.started")
                    )
                    if events[-1]["type"] == "compaction.started":
                        break
                    if events[-1]["type"] == "tool.call":
                        await client.command(
                            {
                                "type": "tool_result",
                                "id": f"result-{i}",
                                "call_id": events[-1]["call_id"],
                                "result": NOTES,
                            }
                        )
                        events = await client.until(
                            lambda e: ended(e) or e["type"] == "compaction.started"
                        )
                        if events[-1]["type"] == "compaction.started":
                            break
                    assert events[-1]["reason"] == "completed", events
                    i += 1
                    assert i < 40, "no compaction"
                stalled_turn = ack["turn_id"]
                with trio.fail_after(STEP):
                    await fake.stalled.wait()  # the summary request is at the fake
                process.kill()
                await process.wait()
        assert process.returncode == -signal.SIGKILL
        assert model.summaries == 1

        model.stall_summaries = False
        async with running_server(db, log, *args) as (_, server):
            before = await all_events(server, session_id, TOKEN)
            mine = [e for e in before if e.get("turn_id") == stalled_turn]
            types = [e["type"] for e in mine]
            assert "compaction.started" in types and "context.compacted" not in types
            assert [e["reason"] for e in of_type(mine, "turn.ended")] == ["interrupted"]
            assert types[-1] == "turn.ended"
            assert [e["seq"] for e in before] == list(range(1, len(before) + 1))
            async with server.ws(session_id, TOKEN, after=len(before)) as client:
                events = await note_turn(client, 100)
                assert events[-1]["reason"] == "completed", events
                # Still over the threshold: this turn compacts, now for real.
                compacted = of_type(events, "context.compacted")
                assert [e["reason"] for e in compacted] == ["threshold"]
                assert "FACT k0=v0" in compacted[0]["summary"]
                assert await ask(client, "k0") == "k0 is v0"
            history = await messages(server, session_id, TOKEN)
            assert history[0]["content"].startswith(SUMMARY_HEADER)
            async with server.http(TOKEN) as http:
                session = (await http.get(f"/v1/sessions/{session_id}")).json()
            assert session["usage"]["compactions"] == 1  # the interrupted one changed nothing
        assert model.summaries == 2
        assert model.refusals == 0 and model.pairing_problems == []
        # A third start replays the compacted history from the log, the same.
        async with running_server(db, log, *args) as (_, server):
            assert await messages(server, session_id, TOKEN) == history


async def test_a_failed_summary_call_leaves_the_history_and_the_turn_goes_on(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    model = LongModel(window=WINDOW - OUTPUT, fail_summaries=error_reply(500, "summariser down"))
    async with open_fake_openai(model) as fake:
        server = await start_server(nursery, live_config(tmp_path, fake, llm_retries=0))
        session_id = await server.new_session(agent="ask")
        events: list[Frame] = []
        async with server.ws(session_id) as client:
            while not model.summaries:
                events += await note_turn(client, len(of_type(events, "turn.ended")))
                assert len(events) < 200, "no compaction was tried"
        # The turn whose summary call failed went on without it, and completed.
        assert reasons(events) == ["completed"] * len(reasons(events))
        assert len(of_type(events, "compaction.started")) >= 1
        assert of_type(events, "context.compacted") == []
        assert model.refusals == 0 and model.pairing_problems == []
        history = await messages(server, session_id)
        assert history[0]["content"] == note(0)  # nothing was replaced
        server.shutdown.set()


# -- a summariser with a smaller window -------------------------------------------------------

SMALL_SUMMARISER = """
[models."fake-small"]
context_window = 2048
max_output_tokens = 256

[context]
compaction_model = "fake-small"
"""


async def test_a_smaller_compaction_model_still_keeps_every_fact(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """BUG: with ``compaction_model`` smaller than the session's model, facts are lost.

    The part to summarise is planned by the session model's window, but the
    transcript must fit the summariser's: ``transcript()`` then drops the oldest
    user messages, so their facts never reach the summary.
    """
    model = LongModel(window=WINDOW - OUTPUT)
    async with open_fake_openai(model) as fake:
        path = config_file(tmp_path, fake)
        path.write_text(path.read_text() + SMALL_SUMMARISER)
        loaded = load_config(config_file=path)
        config = make_config(
            llm="openai",
            llm_url=fake.base_url,
            model=MODEL,
            models=loaded.models,
            compaction_model=loaded.compaction_model,
            limits=small_limits(commands_per_second=1000.0),
        )
        assert config.compaction_model == "fake-small"
        server = await start_server(nursery, config)
        session_id = await server.new_session(agent="ask")
        events: list[Frame] = []
        async with server.ws(session_id) as client:
            for i in range(40):
                events += await note_turn(client, i)
            answer = await ask(client, "k0")
        compacted = of_type(events, "context.compacted")
        assert compacted and {e["model"] for e in compacted} == {"fake-small"}
        summaries = [r for r in fake.requests if is_summary_request(r)]
        assert {sent_body(r)["model"] for r in summaries} == {"fake-small"}
        assert model.refusals == 0 and model.pairing_problems == []
        # What the first compaction replaced (its user messages) is all in its transcript.
        replaced = compacted[0]["to_seq"]
        notes = [e["content"] for e in of_type(events, "user.message") if e["seq"] <= replaced]
        transcript = sent_body(summaries[0])["messages"][1]["content"]
        lost = [n.split()[2] for n in notes if n.split()[2] not in transcript]
        assert lost == [], f"facts never shown to the summariser: {lost}"
        assert answer == "k0 is v0"
        server.shutdown.set()


def test_cutting_a_short_tool_result_never_makes_it_longer() -> None:
    """BUG: below ~350 chars, ``fit_tool_result`` returns more than it was given.

    Its 200-char floor (``MIN_CUT_CHARS``) plus the ~140-char marker exceed small
    limits, so ``transcript()``'s clip levels 160 and 60 lengthen the lines they
    should shorten (and user messages are dropped sooner, see the test above).
    """
    text = "TOOL RESULT: " + "x" * 287
    assert len(fit_tool_result(text, 160)) < len(text)
    assert len(fit_tool_result(text, 60)) < len(text)
