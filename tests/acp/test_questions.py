"""Questions → ACP forms (``elicitation/create``) for a client that takes forms: one text
field without choices, a select beside it with choices. The pure pieces, and the
adapter end to end over the embedded runtime (``test_adapter.py``'s client; every
message checked against both ACP v1 schemas)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from server.acp import EmbeddedLink
from server.acp._capabilities import (
    DECLINED,
    DISMISSED,
    ClientCaps,
    form_answer,
    question_form,
)
from server.acp._work import NO_ANSWER
from sessions import JSON
from tests.acp.conformance import problems
from tests.acp.test_adapter import CAPS, Client, cancel_note, connected, prompt_params

FORM_CAPS = CAPS | {"elicitation": {"form": {}}}


@pytest.mark.parametrize(
    ("caps", "form", "compaction"),
    [
        ({"elicitation": {"form": {}}, "session": {"compaction": {}}}, True, True),
        ({"elicitation": {"form": {"_meta": {}}, "url": {}}}, True, False),
        ({"elicitation": {"url": {}}}, False, False),
        ({"elicitation": {"form": None}, "session": {"compaction": None}}, False, False),
        ({"elicitation": {"form": True}, "session": {"compaction": True}}, False, False),
        ({"elicitation": None, "session": "yes"}, False, False),
        (None, False, False),
    ],
)
def test_forms_and_compaction_updates_need_an_advertised_object(
    caps: JSON, form: bool, compaction: bool
) -> None:
    parsed = ClientCaps.from_json(caps)
    assert (parsed.elicitation_form, parsed.compaction) == (form, compaction)


def test_the_form_is_one_required_text_field_in_the_session() -> None:
    params = question_form("ses_1", "Which file should I use?")
    assert problems("CreateElicitationRequest", params) == []
    assert params["sessionId"] == "ses_1" and params["message"] == "Which file should I use?"
    assert params["requestedSchema"] == {
        "type": "object",
        "properties": {"answer": {"type": "string", "title": "Answer", "minLength": 1}},
        "required": ["answer"],
    }


@pytest.mark.parametrize(
    ("result", "answer"),
    [
        ({"action": "accept", "content": {"answer": "main.py"}}, "main.py"),
        ({"action": "accept", "content": {"answer": "  "}}, DISMISSED),
        ({"action": "accept", "content": {"answer": 3}}, DISMISSED),
        ({"action": "accept"}, DISMISSED),
        ({"action": "decline"}, DECLINED),
        ({"action": "cancel"}, DISMISSED),
        ({"action": "_custom", "content": {"answer": "main.py"}}, DISMISSED),
        ("accept", DISMISSED),
        (None, DISMISSED),
    ],
)
def test_only_an_accepted_non_blank_answer_is_an_answer(result: JSON, answer: str) -> None:
    assert form_answer(result) == answer


CHOICES = ["a.py", "b.py"]


def test_a_form_with_choices_is_a_select_beside_a_text_field() -> None:
    params = question_form("ses_1", "Which file?", CHOICES)
    assert problems("CreateElicitationRequest", params) == []
    assert params["requestedSchema"] == {
        "type": "object",
        "properties": {
            "choice": {
                "type": "string",
                "title": "Answer",
                "oneOf": [
                    {"const": "choice_0", "title": "a.py"},
                    {"const": "choice_1", "title": "b.py"},
                ],
            },
            "answer": {"type": "string", "title": "Or answer in your own words"},
        },
        "required": [],
    }


@pytest.mark.parametrize(
    ("content", "answer"),
    [
        ({"choice": "choice_1"}, "b.py"),
        ({"choice": "choice_0", "answer": "  "}, "a.py"),
        # The user's own words win over a choice left selected.
        ({"choice": "choice_0", "answer": "c.py"}, "c.py"),
        ({"answer": "c.py"}, "c.py"),
        ({"choice": "choice_2"}, DISMISSED),
        ({"choice": "b.py"}, DISMISSED),
        ({"choice": "choice_-1"}, DISMISSED),
        ({}, DISMISSED),
    ],
)
def test_a_choice_or_the_users_own_words_is_the_answer(
    content: dict[str, JSON], answer: str
) -> None:
    assert form_answer({"action": "accept", "content": content}, CHOICES) == answer
    assert form_answer({"action": "decline", "content": content}, CHOICES) == DECLINED


def answers(events: Sequence[Mapping[str, JSON]]) -> list[str]:
    return [str(e["text"]) for e in events if e["type"] == "question.answered"]


async def asked(
    client: Client, link: EmbeddedLink, prompt: str = "ask which file should I use?"
) -> tuple[str, list[str]]:
    """A new session was sent *prompt* (by default a question without choices): the
    prompt's stop reason and the answers the log has."""
    session_id = await client.new_session()
    response = await client.prompt(session_id, prompt)
    return response["result"]["stopReason"], answers(await link.read_events(session_id))


async def test_a_question_without_choices_is_a_form_and_its_answer_goes_to_the_model(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize(FORM_CAPS)
        client.elicit = lambda _: {"action": "accept", "content": {"answer": "main.py"}}
        assert await asked(client, link) == ("end_turn", ["main.py"])
        (form,) = [m for m in client.received if m.get("method") == "elicitation/create"]
        assert form["params"]["message"] == "which file should I use?"
        # The question is in the transcript as before; the reply quotes the answer.
        text = "".join(u["content"]["text"] for u in client.updates("agent_message_chunk"))
        assert "which file should I use?" in text and "main.py" in text


@pytest.mark.parametrize(
    ("result", "answer"), [({"action": "decline"}, DECLINED), ({"action": "cancel"}, DISMISSED)]
)
async def test_a_declined_or_dismissed_form_says_so(
    link: EmbeddedLink, tmp_path: Path, result: dict[str, Any], answer: str
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize(FORM_CAPS)
        client.elicit = lambda _: result
        assert await asked(client, link) == ("end_turn", [answer])


async def test_a_form_the_client_fails_is_no_answer(link: EmbeddedLink, tmp_path: Path) -> None:
    def fail(_: dict[str, Any]) -> dict[str, Any]:
        raise OSError("no form here")  # the test client answers a JSON-RPC error

    async with connected(link, tmp_path) as client:
        await client.initialize(FORM_CAPS)
        client.elicit = fail
        assert await asked(client, link) == ("end_turn", [NO_ANSWER])


ASK_WITH_CHOICES = (
    'call ask_followup_question {"question": "Which file?", "options": ["a.py", "b.py"]}'
)


async def test_a_question_with_choices_is_a_form_for_a_client_that_takes_forms(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize(FORM_CAPS)
        client.elicit = lambda _: {"action": "accept", "content": {"choice": "choice_1"}}
        assert await asked(client, link, ASK_WITH_CHOICES) == ("end_turn", ["b.py"])
        (form,) = [m for m in client.received if m.get("method") == "elicitation/create"]
        titles = [
            o["title"] for o in form["params"]["requestedSchema"]["properties"]["choice"]["oneOf"]
        ]
        assert form["params"]["message"] == "Which file?" and titles == CHOICES
        assert not [m for m in client.received if m.get("method") == "session/request_permission"]


async def test_a_failed_form_with_choices_falls_back_to_a_permission_request(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    def fail(_: dict[str, Any]) -> dict[str, Any]:
        raise OSError("no form here")  # the test client answers a JSON-RPC error

    async with connected(link, tmp_path) as client:
        await client.initialize(FORM_CAPS)
        client.elicit = fail
        client.permission = lambda _: {"outcome": {"outcome": "selected", "optionId": "choice_0"}}
        assert await asked(client, link, ASK_WITH_CHOICES) == ("end_turn", ["a.py"])
        (request,) = [m for m in client.received if m.get("method") == "session/request_permission"]
        names = [o["name"] for o in request["params"]["options"]]
        assert names == [*CHOICES, "None of these"]


async def test_without_forms_a_question_with_choices_is_a_permission_request(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize(CAPS)
        client.permission = lambda _: {"outcome": {"outcome": "selected", "optionId": "choice_1"}}
        assert await asked(client, link, ASK_WITH_CHOICES) == ("end_turn", ["b.py"])
        assert not [m for m in client.received if m.get("method") == "elicitation/create"]


async def test_without_forms_a_question_is_answered_at_once(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize({"elicitation": {"url": {}}})
        assert await asked(client, link) == ("end_turn", [NO_ANSWER])
        assert client.requests() == []


async def test_a_cancel_while_the_form_is_open_cancels_the_turn(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize(FORM_CAPS)
        client.hold.add("elicitation/create")  # the user never fills it in
        session_id = await client.new_session()
        prompt_id = await client.request(
            "session/prompt", prompt_params(session_id, "ask which file should I use?")
        )
        await client.until(lambda m: m.get("method") == "elicitation/create")
        await client.send(cancel_note(session_id))
        with trio.fail_after(5):
            response = await client.response(prompt_id)
        assert response["result"]["stopReason"] == "cancelled"
        # The editor is told the form is no longer waited for (it may take it down).
        (form,) = [m for m in client.received if m.get("method") == "elicitation/create"]
        told = await client.until(lambda m: m.get("method") == "$/cancel_request")
        assert told["params"] == {"requestId": form["id"]} and "id" not in told
        # The form's late answer is ignored, and the session goes on.
        accept = {"action": "accept", "content": {"answer": "too late"}}
        await client.send({"jsonrpc": "2.0", "id": form["id"], "result": accept})
        assert (await client.prompt(session_id, "stream 2 words"))["result"]["stopReason"] == (
            "end_turn"
        )
    assert "too late" not in answers(await link.read_events(session_id))
