"""The scripted model's documented rules (SPEC §5, ``agents/_providers/_scripted.py``)."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from agents._core._model import (
    SUBTASK_MARKER,
    ChatMessage,
    FinishDelta,
    ModelClient,
    ModelDelta,
    ModelRequest,
    Purpose,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
    ToolSpec,
    UsageDelta,
)
from agents._core._modes import builtin_modes
from agents._providers._scripted import (
    MAX_OPEN_GATES,
    MAX_STREAM_WORDS,
    SLOW_PACE,
    ScriptedModel,
    stream_words,
)
from sessions import JSON, JSONObject


def request(
    *messages: ChatMessage,
    agent: str = "coder",
    purpose: Purpose = "chat",
    tools: tuple[ToolSpec, ...] | None = None,
) -> ModelRequest:
    offered = builtin_modes().tools_for(agent) if tools is None else tools
    return ModelRequest("scripted-1", messages, offered, agent, purpose)


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


Call = tuple[str, str, JSONObject]


def assistant(*calls: Call) -> ChatMessage:
    requests = tuple(ToolCallRequest(i, name, json.dumps(args)) for i, name, args in calls)
    return ChatMessage("assistant", "…", requests)


def tool(call_id: str, content: str) -> ChatMessage:
    return ChatMessage("tool", content, tool_call_id=call_id)


async def collect(req: ModelRequest, model: ScriptedModel | None = None) -> list[ModelDelta]:
    client: ModelClient = model or ScriptedModel()
    async with client.stream(req) as stream:
        return [delta async for delta in stream]


def text_of(deltas: list[ModelDelta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


def calls_of(deltas: list[ModelDelta]) -> list[tuple[str, JSON]]:
    return [
        (d.call.name, json.loads(d.call.arguments)) for d in deltas if isinstance(d, ToolCallDelta)
    ]


async def reply(req: ModelRequest) -> tuple[str, list[tuple[str, JSON]]]:
    deltas = await collect(req)
    return text_of(deltas), calls_of(deltas)


RULES: list[tuple[str, list[tuple[str, JSON]]]] = [
    (
        "create hello.py with print('hi')",
        [("write_file", {"path": "hello.py", "content": "print('hi')"})],
    ),
    (
        "Write docs/plan.md with # Plan\n\n1. step",
        [("write_file", {"path": "docs/plan.md", "content": "# Plan\n\n1. step"})],
    ),
    (
        "edit a.py replace x = 1 with x = 2",
        [("apply_diff", {"path": "a.py", "search": "x = 1", "replace": "x = 2"})],
    ),
    ("read src/app.py", [("read_file", {"path": "src/app.py"})]),
    ("list src", [("list_files", {"path": "src"})]),
    ("list", [("list_files", {"path": "."})]),
    ("search TODO|FIXME in src", [("search_files", {"regex": "TODO|FIXME", "path": "src"})]),
    ("mkdir build/out", [("create_directory", {"path": "build/out"})]),
    ("delete old.py", [("delete_file", {"path": "old.py"})]),
    ("move a.py to b.py", [("move_file", {"source": "a.py", "destination": "b.py"})]),
    ("run pytest -q tests", [("execute_command", {"command": "pytest -q tests"})]),
    ("ask Which database?", [("ask_followup_question", {"question": "Which database?"})]),
    ("switch to debug", [("switch_mode", {"mode": "debug", "reason": "the user asked for it"})]),
    ("loop", [("read_file", {"path": "loop.txt"})]),
    ("slow read a.py", [("read_file", {"path": "a.py"})]),
    # What people type in a first message: filler words and a full stop around the path.
    ("read the file a.txt", [("read_file", {"path": "a.txt"})]),
    ("Read a.txt.", [("read_file", {"path": "a.txt"})]),
    ("read file.txt", [("read_file", {"path": "file.txt"})]),
    ("read the README please", [("read_file", {"path": "README"})]),
    ("list the files", [("list_files", {"path": "."})]),
    ("list all files in src/app", [("list_files", {"path": "src/app"})]),
    ("list files.txt", [("list_files", {"path": "files.txt"})]),
    ("delete the file old.py", [("delete_file", {"path": "old.py"})]),
    ("move the file a.py to b.py.", [("move_file", {"source": "a.py", "destination": "b.py"})]),
    ("search TODO in the folder src", [("search_files", {"regex": "TODO", "path": "src"})]),
    (
        "create a new file named notes.md with # Notes",
        [("write_file", {"path": "notes.md", "content": "# Notes"})],
    ),
    ("create a with b", [("write_file", {"path": "a", "content": "b"})]),
    (
        "edit the file a.py replace x = 1 with x = 2",
        [("apply_diff", {"path": "a.py", "search": "x = 1", "replace": "x = 2"})],
    ),
    (
        "create a.py with x = 1 and create b.py with y = 2",
        [
            ("write_file", {"path": "a.py", "content": "x = 1"}),
            ("write_file", {"path": "b.py", "content": "y = 2"}),
        ],
    ),
]


@pytest.mark.parametrize(("message", "expected"), RULES)
async def test_rules_issue_tool_calls(
    autojump_clock: trio.testing.MockClock, message: str, expected: list[tuple[str, JSON]]
) -> None:
    deltas = await collect(request(user(message)))
    assert calls_of(deltas) == expected
    assert text_of(deltas).endswith(".")  # a short preface sentence
    assert [d.call.id for d in deltas if isinstance(d, ToolCallDelta)] == [
        f"call_{i}" for i in range(1, len(expected) + 1)
    ]
    assert deltas[-1] == FinishDelta("tool_calls")


async def test_delta_order_and_word_sized_chunks() -> None:
    deltas = await collect(request(user("stream 12 words")))
    chunks = [d.text for d in deltas if isinstance(d, TextDelta)]
    assert len(chunks) == 12 and all(len(c.split()) == 1 for c in chunks)
    assert "".join(chunks) == "alpha beta gamma delta epsilon zeta eta theta alpha beta gamma delta"
    assert deltas[12:] == [UsageDelta(8, 12, "scripted-1"), FinishDelta("stop")]
    create = await collect(request(user("create a.py with x")))
    kinds = [type(d).__name__ for d in create]
    assert kinds == ["TextDelta", "TextDelta", "ToolCallDelta", "UsageDelta", "FinishDelta"]


async def test_usage_estimates_prompt_tokens_and_counts_completion_words() -> None:
    deltas = await collect(request(ChatMessage("system", "two words"), user("stream 3 words")))
    # ceil(9 / 4) + 4 and ceil(14 / 4) + 4: characters / 4 and 4 per message.
    assert deltas[-2] == UsageDelta(7 + 8, 3, "scripted-1")


async def test_default_reply_names_the_agent() -> None:
    text, calls = await reply(request(user("Tell me a story."), agent="ask"))
    assert calls == []
    assert "ask agent" in text and text.count(". ") >= 2
    assert "Tell me a story." in text


async def test_rule_calls_are_issued_even_when_the_mode_lacks_the_tool() -> None:
    _, calls = await reply(request(user("create app.py with x"), agent="architect"))
    assert calls == [("write_file", {"path": "app.py", "content": "x"})]
    assert "write_file" not in {spec.name for spec in builtin_modes().tools_for("ask")}
    _, calls = await reply(request(user("create app.py with x"), agent="ask"))
    assert calls == [("write_file", {"path": "app.py", "content": "x"})]


async def test_no_tools_offered_means_text_only() -> None:
    text, calls = await reply(request(user("create a.py with x"), tools=()))
    assert calls == []
    assert text == "I am the coder agent. I would call write_file now, but no tools are offered."


async def test_switch_to_the_current_mode_is_text() -> None:
    assert await reply(request(user("switch to coder"))) == ("I am already the coder agent.", [])
    expected: tuple[str, list[tuple[str, JSON]]] = ("I am already the orchestrator agent.", [])
    assert await reply(request(user("switch to orchestrator"), agent="orchestrator")) == expected


async def test_the_orchestrator_follows_switch_to() -> None:
    _, calls = await reply(request(user("switch to Debug"), agent="orchestrator"))
    assert calls == [("switch_mode", {"mode": "debug", "reason": "the user asked for it"})]


@pytest.mark.parametrize("agent", ["coder", "architect", "debug", "ask"])
async def test_other_agents_hand_first_then_to_the_orchestrator(agent: str) -> None:
    text, calls = await reply(request(user("first read a.py then run pytest"), agent=agent))
    assert calls == [
        (
            "switch_mode",
            {
                "mode": "orchestrator",
                "reason": "two steps ('read a.py', then 'run pytest'): delegating",
            },
        )
    ]
    assert text == "Handing over to orchestrator."


async def test_a_handed_over_message_is_not_handed_on() -> None:
    history = (
        user("switch to debug"),
        assistant(("call_1", "switch_mode", {"mode": "ask", "reason": "r"})),
        tool("call_1", "switched to ask"),
    )
    text, calls = await reply(request(*history, agent="ask"))
    assert calls == []
    assert text == (
        "I am the ask agent. This message was handed over to me already, "
        "so I will not hand it on to debug."
    )
    # A failed switch is a result to report, not a hand-over.
    refused = (*history[:2], tool("call_1", "unknown mode 'ask'"))
    text, calls = await reply(request(*refused, agent="coder"))
    assert calls == [] and text.startswith("Done: switch_mode ask failed")


@pytest.mark.parametrize(
    ("message", "agent"),
    [
        ("first design the API then create app.py with x", "orchestrator"),
        ("First read a.py, then run pytest", "orchestrator"),
        ("plan the release", "architect"),
        ("design a cache", "architect"),
        ("explain the runner", "ask"),
        ("what is a turn?", "ask"),
        ("why does it hang", "ask"),
        ("debug the crash", "debug"),
        ("fix the tests", "debug"),
        ("I see an error", "debug"),
        ("create hello.py with print('hi')", "coder"),
        ("create notes.md with why we fix the error", "coder"),  # content is not instruction
        ("switch to debug", "debug"),
        ("Switch to Orchestrator please", "orchestrator"),
        ("slow stream 10 words", "coder"),
    ],
)
async def test_route_answers(
    autojump_clock: trio.testing.MockClock, message: str, agent: str
) -> None:
    req = request(ChatMessage("system", "Classify."), user(message), purpose="route", tools=())
    text, calls = await reply(req)
    assert calls == []
    answer = json.loads(text)
    assert answer["agent"] == agent and isinstance(answer["reason"], str) and answer["reason"]


async def test_orchestrator_switches_to_the_routed_mode_then_that_mode_acts() -> None:
    text, calls = await reply(request(user("explain the runner"), agent="orchestrator"))
    assert calls == [("switch_mode", {"mode": "ask", "reason": "the request mentions 'explain'"})]
    assert text == "Handing over to ask."
    history = (
        user("create a.py with x"),
        assistant(("call_1", "switch_mode", {"mode": "coder", "reason": "r"})),
        tool("call_1", "switched to coder"),
    )
    deltas = await collect(request(*history))
    assert calls_of(deltas) == [("write_file", {"path": "a.py", "content": "x"})]
    assert [d.call.id for d in deltas if isinstance(d, ToolCallDelta)] == ["call_2"]
    refused = (*history[:2], tool("call_1", "too many agent switches in one turn (limit 3)"))
    text, calls = await reply(request(*refused, agent="orchestrator"))
    assert calls == [] and text.startswith("Done: switch_mode coder failed: too many")


async def test_orchestrator_delegates_first_then() -> None:
    message = "first design the API then create app.py with x"
    step1: Call = ("call_1", "new_task", {"mode": "architect", "message": "design the API"})
    step2: Call = ("call_2", "new_task", {"mode": "coder", "message": "create app.py with x"})
    _, calls = await reply(request(user(message), agent="orchestrator"))
    assert calls == [("new_task", step1[2])]
    history = [user(message), assistant(step1), tool("call_1", "wrote docs/api.md")]
    _, calls = await reply(request(*history, agent="orchestrator"))
    assert calls == [("new_task", step2[2])]
    history += [assistant(step2), tool("call_2", "error: app.py is locked")]
    deltas = await collect(request(*history, agent="orchestrator"))
    assert calls_of(deltas) == [
        (
            "attempt_completion",
            {
                "result": "Both steps are done. Step 1 (architect): wrote docs/api.md; "
                "Step 2 (coder): error: app.py is locked"
            },
        )
    ]
    assert [d.call.id for d in deltas if isinstance(d, ToolCallDelta)] == ["call_3"]


WRITE: Call = ("call_1", "write_file", {"path": "hello.py", "content": "x"})


@pytest.mark.parametrize(
    ("call", "content", "summary"),
    [
        (WRITE, '{"ok": true}', "Done: write_file hello.py succeeded."),
        (
            WRITE,
            "rejected by user: use a.py",
            "Done: write_file hello.py was rejected by user: use a.py.",
        ),
        (WRITE, '"rejected by user"', "Done: write_file hello.py was rejected by user."),
        (WRITE, "error: disk full", "Done: write_file hello.py failed: error: disk full."),
        (WRITE, '{"error": "EACCES"}', "Done: write_file hello.py failed: EACCES."),
        (WRITE, '{"ok": false}', 'Done: write_file hello.py failed: {"ok": false}.'),
        (
            WRITE,
            "architect may only write files matching \\.mdx?$ (got 'hello.py')",
            "Done: write_file hello.py failed: architect may only write files matching "
            "\\.mdx?$ (got 'hello.py').",
        ),
        (
            WRITE,
            "denied by policy: rule 1: deny write_file",
            "Done: write_file hello.py failed: denied by policy: rule 1: deny write_file.",
        ),
        (
            ("call_1", "read_file", {"path": "a.py"}),
            "print('hi')\n",
            "Done: read_file a.py succeeded (print('hi')).",
        ),
        (
            ("call_1", "execute_command", {"command": "pytest"}),
            "3 passed",
            "Done: execute_command pytest succeeded (3 passed).",
        ),
        (
            ("call_1", "ask_followup_question", {"question": "Which?"}),
            "blue",
            "Done: ask_followup_question Which? succeeded (blue).",
        ),
    ],
)
async def test_after_tool_results_a_summary(call: Call, content: str, summary: str) -> None:
    history = (user("create hello.py with x"), assistant(call), tool("call_1", content))
    assert await reply(request(*history)) == (summary, [])


async def test_summary_covers_every_result() -> None:
    history = (
        user("create a.py with x and create b.py with y"),
        assistant(
            ("call_1", "write_file", {"path": "a.py", "content": "x"}),
            ("call_2", "write_file", {"path": "b.py", "content": "y"}),
        ),
        tool("call_1", "ok"),
        tool("call_2", "rejected by user: no"),
    )
    text, calls = await reply(request(*history))
    assert (text, calls) == (
        "Done: write_file a.py succeeded; write_file b.py was rejected by user: no.",
        [],
    )


async def test_subtask_finishes_with_attempt_completion() -> None:
    system = ChatMessage("system", f"You are the coder.\n{SUBTASK_MARKER}: do only this.")
    history = (system, user("create a.py with x"), assistant(WRITE), tool("call_1", "ok"))
    deltas = await collect(request(*history))
    assert text_of(deltas) == "Done: write_file hello.py succeeded."
    assert calls_of(deltas) == [("attempt_completion", {"result": text_of(deltas)})]
    assert [d.call.id for d in deltas if isinstance(d, ToolCallDelta)] == ["call_2"]
    text, calls = await reply(request(system, user("hello"), agent="ask"))
    assert calls == [("attempt_completion", {"result": text})]
    _, calls = await reply(request(system, user("read a.py")))
    assert calls == [("read_file", {"path": "a.py"})]


async def test_loop_keeps_reading() -> None:
    history = [user("loop")]
    for n in range(1, 4):
        deltas = await collect(request(*history))
        ids = [d.call.id for d in deltas if isinstance(d, ToolCallDelta)]
        assert calls_of(deltas) == [("read_file", {"path": "loop.txt"})] and ids == [f"call_{n}"]
        history += [assistant((ids[0], "read_file", {"path": "loop.txt"})), tool(ids[0], "x")]


async def test_call_ids_continue_the_history() -> None:
    history = (
        user("read a"),
        assistant(("call_1", "read_file", {"path": "a"})),
        tool("call_1", "a"),
        user("create a.py with x and create b.py with y"),
    )
    deltas = await collect(request(*history))
    assert [d.call.id for d in deltas if isinstance(d, ToolCallDelta)] == ["call_2", "call_3"]


async def test_same_input_same_output(autojump_clock: trio.testing.MockClock) -> None:
    req = request(user("first plan it then run make"), agent="orchestrator")
    assert await collect(req) == await collect(req) == await collect(req, ScriptedModel(0.5))


async def test_pace_sleeps_between_chunks(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    deltas = await collect(request(user("stream 5 words")), ScriptedModel(pace=1.5))
    assert len(deltas) == 7
    assert trio.current_time() - start == pytest.approx(4 * 1.5)
    start = trio.current_time()
    await collect(request(user("create a.py with x")), ScriptedModel(pace=1.0))
    assert trio.current_time() - start == pytest.approx(2.0)  # "Writing", " a.py.", the call


async def test_slow_keyword_and_zero_pace(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    await collect(request(user("stream 50 words")))
    assert trio.current_time() == start
    await collect(request(user("slow stream 11 words")))
    assert trio.current_time() - start == pytest.approx(10 * SLOW_PACE)


async def test_streaming_can_be_cancelled_mid_reply(autojump_clock: trio.testing.MockClock) -> None:
    received: list[ModelDelta] = []
    with trio.move_on_after(2.5):
        async with ScriptedModel(pace=1.0).stream(request(user("stream 100 words"))) as stream:
            async for delta in stream:
                received.append(delta)
    assert [d.text for d in received if isinstance(d, TextDelta)] == ["alpha", " beta", " gamma"]


async def test_leaving_early_closes_the_stream() -> None:
    async with ScriptedModel().stream(request(user("stream 100 words"))) as stream:
        async for _ in stream:
            break


def test_constructor() -> None:
    assert ScriptedModel().name == "scripted"
    with pytest.raises(ValueError, match="pace"):
        ScriptedModel(-1.0)


# -- gates ---------------------------------------------------------------------


class Reader:
    """Reads one scripted stream in the background, so a test can act while it is held."""

    def __init__(self, model: ScriptedModel, req: ModelRequest) -> None:
        self.model = model
        self.request = req
        self.deltas: list[ModelDelta] = []
        self.done = trio.Event()
        self.finished_at: float | None = None
        self._changed = trio.Event()

    async def run(self) -> None:
        async with self.model.stream(self.request) as stream:
            async for delta in stream:
                self.deltas.append(delta)
                self._changed.set()
                self._changed = trio.Event()
        self.finished_at = trio.current_time()
        self.done.set()

    async def until_text(self, text: str) -> None:
        """Wait until the stream has sent exactly *text* (however long its pacing takes)."""
        while self.text != text:
            assert text.startswith(self.text), (self.text, text)
            await self._changed.wait()

    @property
    def text(self) -> str:
        return text_of(self.deltas)


def start_reader(nursery: trio.Nursery, model: ScriptedModel, message: str) -> Reader:
    reader = Reader(model, request(user(message)))
    nursery.start_soon(reader.run)
    return reader


ROUTE_REASON = "no planning, question or debugging keywords: a coding task"


async def release(model: ScriptedModel, gate: str) -> str:
    text, calls = await reply_from(model, request(user(f"release {gate}")))
    assert calls == []
    return text


async def reply_from(model: ScriptedModel, req: ModelRequest) -> tuple[str, list[tuple[str, JSON]]]:
    deltas = await collect(req, model)
    return text_of(deltas), calls_of(deltas)


async def test_stream_words_is_the_stream_rule_text() -> None:
    assert stream_words(10) == "alpha beta gamma delta epsilon zeta eta theta alpha beta"
    assert stream_words(0) == ""
    assert stream_words(MAX_STREAM_WORDS + 5) == stream_words(MAX_STREAM_WORDS)
    assert text_of(await collect(request(user("stream 13 words")))) == stream_words(13)


async def test_hold_streams_then_waits_for_its_release(nursery: trio.Nursery) -> None:
    model = ScriptedModel()
    reader = start_reader(nursery, model, "stream 5 words then hold g1 then 3 words")
    # Everything that can run has run: the stream is at the gate, not finished.
    await trio.testing.wait_all_tasks_blocked()
    assert reader.text == stream_words(5)
    assert all(isinstance(d, TextDelta) for d in reader.deltas)
    assert not reader.done.is_set()
    assert await release(model, "g1") == "Released g1: 1 held stream continues."
    await reader.done.wait()
    assert reader.text == stream_words(8)
    assert [len(text_of([d]).split()) for d in reader.deltas[:8]] == [1] * 8
    assert reader.deltas[8:] == [UsageDelta(14, 8, "scripted-1"), FinishDelta("stop")]
    # The gate closed with its last stream: nothing is left to release.
    assert await release(model, "g1") == "No stream is held on g1."


async def test_hold_without_more_words_finishes_on_release(nursery: trio.Nursery) -> None:
    model = ScriptedModel()
    reader = start_reader(nursery, model, "Stream 2 words, then hold last")
    await trio.testing.wait_all_tasks_blocked()
    assert reader.text == "alpha beta" and not reader.done.is_set()
    assert await release(model, "last") == "Released last: 1 held stream continues."
    await reader.done.wait()
    assert reader.deltas[2:] == [UsageDelta(12, 2, "scripted-1"), FinishDelta("stop")]


async def test_a_release_is_not_remembered(nursery: trio.Nursery) -> None:
    model = ScriptedModel()
    assert await release(model, "early") == "No stream is held on early."
    reader = start_reader(nursery, model, "stream 0 words then hold early then 2 words")
    await trio.testing.wait_all_tasks_blocked()
    assert reader.deltas == [] and not reader.done.is_set()
    assert await release(model, "early") == "Released early: 1 held stream continues."
    await reader.done.wait()
    assert reader.text == "alpha beta"


async def test_release_frees_every_stream_of_that_gate_only(nursery: trio.Nursery) -> None:
    model = ScriptedModel()
    a = start_reader(nursery, model, "stream 2 words then hold shared then 1 word")
    b = start_reader(nursery, model, "stream 3 words then hold shared")
    other = start_reader(nursery, model, "stream 1 word then hold Shared")  # names are exact
    await trio.testing.wait_all_tasks_blocked()
    assert await release(model, "shared") == "Released shared: 2 held streams continue."
    await a.done.wait()
    await b.done.wait()
    assert (a.text, b.text) == (stream_words(3), stream_words(3))
    await trio.testing.wait_all_tasks_blocked()
    assert other.text == "alpha" and not other.done.is_set()
    assert await release(model, "Shared") == "Released Shared: 1 held stream continues."
    await other.done.wait()


async def test_a_stream_is_held_from_its_start(autojump_clock: trio.testing.MockClock) -> None:
    # Released before it reaches the gate, the stream passes it without stopping.
    model = ScriptedModel(pace=1.0)
    async with trio.open_nursery() as nursery:
        reader = start_reader(nursery, model, "stream 3 words then hold g then 2 words")
        await reader.until_text("alpha")
        start = trio.current_time()
        assert await release(model, "g") == "Released g: 1 held stream continues."
    assert reader.text == stream_words(5)
    assert reader.finished_at is not None
    assert reader.finished_at - start == pytest.approx(4 * 1.0)  # just the pacing


async def test_pacing_goes_on_after_the_gate(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel()
    async with trio.open_nursery() as nursery:
        reader = start_reader(nursery, model, "slow stream 3 words then hold g then 2 words")
        await reader.until_text(stream_words(3))
        # Held: an hour passes (autojump), no word comes.
        await trio.sleep(3600)
        assert reader.text == stream_words(3)
        start = trio.current_time()
        assert await release(model, "g") == "Released g: 1 held stream continues."
    assert reader.text == stream_words(5)
    assert reader.finished_at is not None
    assert reader.finished_at - start == pytest.approx(2 * SLOW_PACE)


async def test_a_held_stream_is_cancelled_at_once(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel()
    received: list[ModelDelta] = []
    start = trio.current_time()
    with trio.move_on_after(5.0) as scope:
        async with model.stream(request(user("stream 4 words then hold c then 4 words"))) as s:
            async for delta in s:
                received.append(delta)
    assert scope.cancelled_caught
    # Held: no word after the gate, and the deadline (not pacing) ended it.
    assert text_of(received) == stream_words(4)
    assert trio.current_time() - start == pytest.approx(5.0)
    # The cancelled stream no longer holds its gate.
    assert await release(model, "c") == "No stream is held on c."


async def test_leaving_a_held_stream_early_frees_its_gate() -> None:
    model = ScriptedModel()
    async with model.stream(request(user("stream 4 words then hold x"))) as stream:
        async for _ in stream:
            break
    assert await release(model, "x") == "No stream is held on x."


async def test_open_gates_are_capped(nursery: trio.Nursery) -> None:
    model = ScriptedModel()
    readers = [
        start_reader(nursery, model, f"stream 1 word then hold g{i}") for i in range(MAX_OPEN_GATES)
    ]
    await trio.testing.wait_all_tasks_blocked()
    text, calls = await reply_from(model, request(user("stream 1 word then hold one-more")))
    assert calls == []
    assert text == f"Too many open gates (limit {MAX_OPEN_GATES}): not holding on one-more."
    # An open gate takes more streams, and a released gate makes room for another.
    joined = start_reader(nursery, model, "stream 1 word then hold g0")
    await trio.testing.wait_all_tasks_blocked()
    assert await release(model, "g0") == "Released g0: 2 held streams continue."
    await joined.done.wait()
    late = start_reader(nursery, model, "stream 1 word then hold one-more")
    await trio.testing.wait_all_tasks_blocked()
    assert late.text == "alpha" and not late.done.is_set()
    for i in range(1, MAX_OPEN_GATES):
        assert await release(model, f"g{i}") == f"Released g{i}: 1 held stream continues."
    assert await release(model, "one-more") == "Released one-more: 1 held stream continues."
    for reader in [*readers, late]:
        await reader.done.wait()


async def test_routing_and_hand_overs_do_not_touch_gates(nursery: trio.Nursery) -> None:
    model = ScriptedModel()
    route_hold = request(user("stream 2 words then hold r"), purpose="route", tools=())
    assert json.loads((await reply_from(model, route_hold))[0])["agent"] == "coder"
    held = start_reader(nursery, model, "stream 2 words then hold r")
    await trio.testing.wait_all_tasks_blocked()
    route_release = request(user("release r"), purpose="route", tools=())
    assert json.loads((await reply_from(model, route_release))[0])["agent"] == "coder"
    _, calls = await reply_from(model, request(user("release r"), agent="orchestrator"))
    assert calls == [("switch_mode", {"mode": "coder", "reason": ROUTE_REASON})]
    _, calls = await reply_from(
        model, request(user("stream 1 word then hold o"), agent="orchestrator")
    )
    assert calls == [("switch_mode", {"mode": "coder", "reason": ROUTE_REASON})]
    assert not held.done.is_set()
    # The agent the message was handed to acts on it.
    handed = (
        user("release r"),
        assistant(("call_1", "switch_mode", {"mode": "coder", "reason": ROUTE_REASON})),
        tool("call_1", "switched to coder"),
    )
    text, calls = await reply_from(model, request(*handed))
    assert (text, calls) == ("Released r: 1 held stream continues.", [])
    await held.done.wait()
    assert await release(model, "o") == "No stream is held on o."


async def test_gate_rules_without_tools_and_in_a_subtask(nursery: trio.Nursery) -> None:
    model = ScriptedModel()
    system = ChatMessage("system", f"You are the coder.\n{SUBTASK_MARKER}: do only this.")
    reader = Reader(model, request(system, user("stream 2 words then hold sub then 1 word")))
    nursery.start_soon(reader.run)
    await trio.testing.wait_all_tasks_blocked()
    assert reader.text == "alpha beta"
    text, calls = await reply_from(model, request(user("release sub"), tools=()))
    assert (text, calls) == ("Released sub: 1 held stream continues.", [])
    await reader.done.wait()
    assert calls_of(reader.deltas) == [("attempt_completion", {"result": stream_words(3)})]
