"""Prose in the console shows bidi controls (and every other invisible character)
escaped, like approvals do: user messages, the assistant's streamed text and its
final markdown (inline text and code blocks), tool results, questions, errors.
Shown raw, U+202E or U+2066 would make a message read differently from what it
says ("Trojan Source"); dom.js's visibleBlock escapes them as ``\\u202e``.
"""

from __future__ import annotations

from tests.browser.cdp import Page
from tests.browser.console import answer_tool_call, js, open_session, say, sign_in
from tests.server.helpers import LiveServer

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: displays what follows it reversed
LRI = "\u2066"  # LEFT-TO-RIGHT ISOLATE
PDI = "\u2069"  # POP DIRECTIONAL ISOLATE
#: Every bidi control (the embeddings, overrides, isolates and marks).
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
HAS_BIDI = f"(t => /[{BIDI}]/.test(t))"


def texts(selector: str) -> str:
    """JS: the textContent of every match of *selector*, as a list."""
    return f"[...document.querySelectorAll({js(selector)})].map(e => e.textContent)"


def shown(text: str) -> str:
    """*text* as the console shows it: its bidi controls as Python escapes."""
    for char in BIDI:
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


async def test_bidi_controls_in_a_conversation_are_shown_escaped(
    server: LiveServer, page: Page
) -> None:
    """The scripted model echoes the command of ``run CMD`` ("Running CMD."), so
    the user's controls come back in the streamed text and in the final markdown;
    the IDE's result and the model's summary of it carry one too."""
    command = f"echo {RLO}x{LRI}y\n\n```\ncode {RLO}z{PDI}\n```\n\nend"
    session_id = await server.new_session(agent="coder")
    await sign_in(page, server)
    await open_session(page, server, session_id)
    await say(server, session_id, f"run {command}")
    card = "#conversation details.tool[data-call='call_1']"
    await page.click(card + " form.decide button.approve")
    await answer_tool_call(server, session_id, f"out {RLO}put")
    await page.wait_for(
        "document.querySelectorAll('#conversation .turn-end .reason.completed').length === 1",
        "the turn to end",
    )

    assert await page.eval(texts("#conversation .msg.user .text")) == [shown(f"run {command}")]
    # Streamed delta by delta (hidden once the message came, but still what streamed).
    preface = f"Running {command}."
    streamed = await page.eval(texts("#conversation .msg.assistant .stream-text"))
    assert streamed[0] == shown(preface)
    # The final message is still markdown: a paragraph, a code block, a paragraph.
    first = "#conversation .msg.assistant:first-of-type .md"
    paragraphs = await page.eval(texts(first + " > p"))
    assert paragraphs == [shown(f"Running echo {RLO}x{LRI}y"), "end."]
    assert await page.eval(texts(first + " > pre > code")) == [shown(f"code {RLO}z{PDI}\n")]
    result = await page.text(card + " .result pre.summary")
    assert shown(f"out {RLO}put") in result
    done = await page.eval(texts("#conversation .msg.assistant .md"))
    assert shown(f"(out {RLO}put)") in done[-1], done
    assert not await page.eval(f"{HAS_BIDI}(document.querySelector('#conversation').textContent)")


def feed(events: list[dict[str, object]]) -> str:
    """JS: render *events* with the console's own Conversation into a detached
    element; what it shows: its text, its tooltips and images' alt texts, the
    streamed text and the markdown's code blocks and paragraphs."""
    return f"""(async () => {{
      const {{ Conversation }} = await import('/console/render.js');
      const root = document.createElement('div');
      const conversation = new Conversation(root, {{ decide: () => {{}}, answer: () => {{}} }});
      for (const event of {js(events)}) conversation.add(event);
      const titles = [...root.querySelectorAll('[title], [alt]')]
        .flatMap(e => [e.getAttribute('title'), e.getAttribute('alt')])
        .filter(t => t !== null);
      return {{
        text: root.textContent,
        titles,
        streamed: [...root.querySelectorAll('.stream-text')].map(e => e.textContent),
        code: [...root.querySelectorAll('.md pre code')].map(e => e.textContent),
        paragraphs: [...root.querySelectorAll('.md p')].map(e => e.textContent),
      }};
    }})()"""


async def test_a_control_split_across_deltas_is_shown_as_one(
    server: LiveServer, page: Page
) -> None:
    """Deltas are appended one by one, each escaped on its own; a CRLF or a
    surrogate pair that two deltas share still shows as a newline or as the one
    character, and a CR that ends the stream shows as ``\\r``."""
    await page.navigate(server.url + "/")
    delta = {"type": "text.delta", "turn_id": "t1", "message_id": "m1"}
    parts = [f"one {RLO}", "two\r", "\nthree \ud83d", "\ude00 four", f"{LRI}\r"]
    events: list[dict[str, object]] = [
        {"seq": 1, "type": "turn.started", "turn_id": "t1", "agent": "coder"},
        *({"seq": 2 + i, **delta, "text": text} for i, text in enumerate(parts)),
        {"seq": 7, "type": "turn.ended", "turn_id": "t1", "reason": "cancelled"},
    ]
    rendered = await page.eval(feed(events))
    assert rendered["streamed"] == ["one \\u202etwo\nthree \U0001f600 four\\u2066\\r"]


async def test_every_event_s_text_is_shown_escaped(server: LiveServer, page: Page) -> None:
    """Each kind of event with a bidi control in each of its strings: nothing the
    conversation shows (text or tooltip) keeps one. The markdown of a final
    message is escaped after parsing, so an HTML entity (``&#x202e;``) that decodes
    to a control is escaped too, and the markdown keeps its meaning."""
    await page.navigate(server.url + "/")
    x = f"a{RLO}b{LRI}c"
    turn = {"turn_id": "t1"}
    markdown = (
        f'inline {RLO} and &#x202e; &rlm; [link](https://example.com "{x}")\n\n'
        f'```\ncode {LRI}\n```\n\n![alt {RLO}](data:image/png;base64,AA== "{x}")'
    )
    events: list[dict[str, object]] = [
        {"type": "user.message", "content": x, "agent": x},
        {"type": "turn.started", **turn, "agent": x, "model": x},
        {"type": "text.delta", **turn, "message_id": "m1", "text": x},
        {"type": "message", **turn, "message_id": "m1", "content": markdown, "agent": x},
        {"type": "agent.switched", **turn, "from": x, "to": x, "reason": x},
        {"type": "model.switched", **turn, "from": x, "to": x},
        {"type": "tool.started", **turn, "call_id": "c1", "name": x, "arguments": {}, "server": x},
        {"type": "tool.result", **turn, "call_id": "c1", "ok": True, "summary": x, "content": x},
        {
            "type": "approval.requested",
            **turn,
            "call_id": "c2",
            "name": x,
            "arguments": {"command": x},
            "rule": x,
        },
        {
            "type": "approval.resolved",
            **turn,
            "call_id": "c2",
            "decision": "reject",
            "by": x,
            "feedback": x,
        },
        {"type": "question.asked", **turn, "question_id": "q1", "text": x, "options": [x]},
        {"type": "question.answered", **turn, "question_id": "q1", "text": x},
        {"type": "question.asked", **turn, "question_id": "q2", "text": x},
        {"type": "tool.result", **turn, "call_id": "q2", "ok": False, "summary": x},
        {"type": "subtask.started", **turn, "subtask_id": "s1", "agent": x, "message": x},
        {"type": "subtask.ended", **turn, "subtask_id": "s1", "ok": False, "summary": x},
        {"type": "usage", **turn, "model": x, "prompt_tokens": 1, "completion_tokens": 1},
        {"type": "error", **turn, "code": x, "message": x},
        {"type": "compaction.started", **turn, "reason": x},
        {"type": x},
        {"type": "turn.ended", **turn, "reason": "error"},
    ]
    rendered = await page.eval(feed([{"seq": i, **e} for i, e in enumerate(events, 1)]))
    assert not await page.eval(f"{HAS_BIDI}({js(rendered['text'])})"), rendered["text"]
    assert sorted(rendered["titles"]) == sorted([shown(x), shown(x), shown(f"alt {RLO}")])
    assert shown(x) in rendered["text"]
    assert rendered["paragraphs"][0] == "inline \\u202e and \\u202e \\u200f link"
    assert rendered["code"] == ["code \\u2066\n"]


async def test_prose_keeps_the_characters_text_needs(server: LiveServer, page: Page) -> None:
    """Only controls and bidi controls are escaped in prose: joiners (an emoji
    family, Persian's ZWNJ), spaces of every kind (no-break, ideographic), soft
    hyphens and private-use characters are shown as they are, in streamed text,
    in markdown and in a tool's result."""
    await page.navigate(server.url + "/")
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # "I want", with its ZWNJ
    text = (
        f"family 👨\u200d👩\u200d👧 · {persian} · 10\u00a0km · 東京\u3000駅 · co\u00adop · \ue000"
    )
    turn = {"turn_id": "t1"}
    events: list[dict[str, object]] = [
        {"type": "turn.started", **turn, "agent": "coder"},
        {"type": "text.delta", **turn, "message_id": "m1", "text": text},
        {"type": "message", **turn, "message_id": "m1", "content": f"{text}\n\n```\n{text}\n```"},
        {"type": "tool.call", **turn, "call_id": "c1", "name": "read_file", "arguments": {}},
        {"type": "tool.result", **turn, "call_id": "c1", "ok": True, "summary": text},
    ]
    numbered = [{"seq": i, **event} for i, event in enumerate(events, start=1)]
    rendered = await page.eval(feed(numbered))
    assert rendered["paragraphs"] == [text]
    assert rendered["code"] == [text + "\n"]
    assert rendered["streamed"] == [text]
    # Streamed (kept, hidden, once the message came), paragraph, code block, result.
    assert rendered["text"].count(text) == 4, rendered["text"]


async def test_an_answer_the_provider_cut_off_is_marked(server: LiveServer, page: Page) -> None:
    await page.navigate(server.url + "/")
    turn = {"turn_id": "t1", "agent": "coder"}
    events: list[dict[str, object]] = [
        {"seq": 1, "type": "turn.started", **turn},
        {"seq": 2, "type": "message", **turn, "message_id": "m1", "content": "The first"}
        | {"cut_off": "max_tokens", "truncated": False},
        {"seq": 3, "type": "message", **turn, "message_id": "m2", "content": "Whole"}
        | {"truncated": False},
    ]
    rendered = await page.eval(feed(events))
    assert rendered["text"].count("cut off: max_tokens") == 1, rendered["text"]
