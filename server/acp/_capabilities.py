"""What the two sides of an ACP connection may ask of each other, decided once.

- ``initialize``: the protocol version (ours is 1: we answer 1 whatever the
  client asks, since the spec says an agent answers the client's version if it
  supports it, else its own latest, and the client disconnects if it cannot
  speak that), our capabilities and the client's (:class:`ClientCaps`).
- Prompts are text: ``promptCapabilities`` stays all false (no images, audio or
  embedded context), and the baseline every agent must take is honoured: text
  blocks and resource links (written into the message as their URI). An embedded
  text resource a client sends anyway is inlined; anything else is refused with
  invalid params.
- A session's agent and model selectors are ``_options.py``'s.
- Approvals become ``session/request_permission`` with the four standard options
  (:data:`PERMISSION_OPTIONS`); :func:`permission_answer` reads the outcome.
  For a client that takes forms a question is a form (``elicitation/create``,
  :func:`question_form`): its choices as a select beside a free-text field, or
  the text field alone. Without forms, a question with choices becomes a
  permission request, one option per choice (:func:`question_options`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from attrs import frozen

from sessions import JSON, JSONObject

from .._startup import PROGRAM, version
from ._jsonrpc import INVALID_PARAMS, RpcError

PROTOCOL_VERSION: Final = 1


@frozen
class ClientCaps:
    """The client methods and updates the client said it takes.

    ``elicitation_form``: ``elicitation/create`` in form mode (``elicitation.form``);
    ``compaction``: ``compaction_update`` (``session.compaction``). ACP advertises
    both as an object, ``{}`` included; absent or ``null`` means unsupported.
    """

    read_text_file: bool = False
    write_text_file: bool = False
    terminal: bool = False
    elicitation_form: bool = False
    compaction: bool = False

    @classmethod
    def from_json(cls, value: JSON | None) -> ClientCaps:
        caps = value if isinstance(value, dict) else {}
        return cls(
            read_text_file=_member(caps, "fs", "readTextFile") is True,
            write_text_file=_member(caps, "fs", "writeTextFile") is True,
            terminal=caps.get("terminal") is True,
            elicitation_form=isinstance(_member(caps, "elicitation", "form"), dict),
            compaction=isinstance(_member(caps, "session", "compaction"), dict),
        )


def _member(caps: JSONObject, group: str, name: str) -> JSON | None:
    inner = caps.get(group)
    return inner.get(name) if isinstance(inner, dict) else None


def negotiate(params: JSONObject) -> tuple[JSONObject, ClientCaps]:
    """The ``initialize`` result for *params*, and the client's capabilities.

    Raises:
        RpcError: invalid params (no integer ``protocolVersion``).
    """
    requested = params.get("protocolVersion")
    if type(requested) is not int or not 0 <= requested <= 65535:
        raise RpcError(INVALID_PARAMS, '"protocolVersion" must be an integer (ACP: 1)')
    result: JSONObject = {
        "protocolVersion": PROTOCOL_VERSION,
        "agentCapabilities": {
            "loadSession": True,
            "promptCapabilities": {"image": False, "audio": False, "embeddedContext": False},
            "mcpCapabilities": {"http": True, "sse": False},
            "sessionCapabilities": {
                "list": {},
                "resume": {},
                "close": {},
                "delete": {},
                "fork": {},  # unstable in ACP v1; a client that does not know it ignores it
            },
        },
        "agentInfo": {"name": PROGRAM, "title": "agent-runtime", "version": version()},
        "authMethods": [],
    }
    return result, ClientCaps.from_json(params.get("clientCapabilities"))


def prompt_text(blocks: JSON | None) -> str:
    """The user message a ``session/prompt``'s content blocks make.

    Raises:
        RpcError: invalid params: not a list of blocks, a kind of content this
            agent does not take, or nothing but whitespace.
    """
    if not isinstance(blocks, list):
        raise RpcError(INVALID_PARAMS, '"prompt" must be a list of content blocks')
    parts: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            raise RpcError(INVALID_PARAMS, '"prompt" must be a list of content blocks')
        kind = block.get("type")
        if kind == "text" and isinstance(text := block.get("text"), str):
            parts.append(text)
        elif kind == "resource_link" and isinstance(uri := block.get("uri"), str):
            parts.append(f"\n{uri}\n")
        elif kind == "resource" and isinstance(block.get("resource"), dict):
            parts.append(_inline(block["resource"]))
        else:
            raise RpcError(
                INVALID_PARAMS,
                f"unsupported prompt content {kind!r}: this agent takes text and resource links",
            )
    text = "".join(parts).strip()
    if not text:
        raise RpcError(INVALID_PARAMS, "the prompt is empty")
    return text


def _inline(resource: JSON) -> str:
    assert isinstance(resource, dict)
    uri, text = resource.get("uri"), resource.get("text")
    if not isinstance(text, str):
        raise RpcError(INVALID_PARAMS, "binary resources are not supported: send text")
    return f"\n{uri if isinstance(uri, str) else 'resource'}:\n```\n{text}\n```\n"


PERMISSION_OPTIONS: Final[Sequence[JSON]] = (
    {"optionId": "allow_once", "name": "Allow", "kind": "allow_once"},
    {"optionId": "allow_always", "name": "Always allow in this session", "kind": "allow_always"},
    {"optionId": "reject_once", "name": "Reject", "kind": "reject_once"},
    {"optionId": "reject_always", "name": "Always reject in this session", "kind": "reject_always"},
)


@frozen
class PermissionAnswer:
    """What the client's answer to a permission request means for the ``approval`` command.

    ``always``: remember the choice for the session (approve: ``remember:
    "session"`` in the runtime; reject: the adapter rejects the tool's later
    approvals of that session itself). ``cancelled``: the client cancelled the
    request (the user dismissed it, or the prompt is being cancelled).
    """

    decision: Literal["approve", "reject"]
    always: bool = False
    cancelled: bool = False


def _selected(result: JSON) -> str | None:
    """The ``optionId`` of a selected outcome; ``None`` for cancelled or unreadable."""
    outcome = result.get("outcome") if isinstance(result, dict) else None
    if isinstance(outcome, dict) and outcome.get("outcome") == "selected":
        option = outcome.get("optionId")
        return option if isinstance(option, str) else None
    return None


def permission_answer(result: JSON) -> PermissionAnswer:
    """The decision a ``session/request_permission`` result stands for.

    A cancelled outcome, an option we did not offer or an unreadable answer
    rejects: nothing runs that the user did not allow.
    """
    match _selected(result):
        case "allow_once":
            return PermissionAnswer("approve")
        case "allow_always":
            return PermissionAnswer("approve", always=True)
        case "reject_always":
            return PermissionAnswer("reject", always=True)
        case None:
            return PermissionAnswer("reject", cancelled=True)
        case _:
            return PermissionAnswer("reject")


NO_CHOICE: Final = "no_choice"


def question_options(choices: Sequence[str]) -> list[JSON]:
    """Permission options standing for a question's *choices* (plus "none of them")."""
    options: list[JSON] = [
        {"optionId": f"choice_{index}", "name": choice, "kind": "allow_once"}
        for index, choice in enumerate(choices)
    ]
    options.append({"optionId": NO_CHOICE, "name": "None of these", "kind": "reject_once"})
    return options


def question_answer(result: JSON, choices: Sequence[str]) -> str | None:
    """The chosen choice of a question's permission request; ``None`` for none."""
    return _choice(_selected(result), choices)


def _choice(value: JSON, choices: Sequence[str]) -> str | None:
    """The choice a ``choice_<index>`` option id or form value stands for, if any."""
    if not isinstance(value, str) or not value.startswith("choice_"):
        return None
    index = value.removeprefix("choice_")
    if not index.isdigit() or int(index) >= len(choices):
        return None
    return choices[int(index)]


ANSWER_FIELD: Final = "answer"
CHOICE_FIELD: Final = "choice"
DECLINED: Final = "(no answer: the user declined to answer)"
DISMISSED: Final = "(no answer: the user dismissed the question)"


def question_form(session_id: str, text: str, choices: Sequence[str] = ()) -> JSONObject:
    """The ``elicitation/create`` params asking *text* as a form.

    Without *choices*: one required text field, ``answer``. With them: a single
    select ``choice`` (one titled option per choice, ``choice_<index>`` as its
    value, as the permission options have) and an optional ``answer`` in the user's
    own words, since the model's choices are suggestions and any text is an answer.
    """
    properties: JSONObject
    if not choices:
        properties = {ANSWER_FIELD: {"type": "string", "title": "Answer", "minLength": 1}}
        required: list[JSON] = [ANSWER_FIELD]
    else:
        options: list[JSON] = [
            {"const": f"choice_{index}", "title": choice} for index, choice in enumerate(choices)
        ]
        properties = {
            CHOICE_FIELD: {"type": "string", "title": "Answer", "oneOf": options},
            ANSWER_FIELD: {"type": "string", "title": "Or answer in your own words"},
        }
        required = []
    return {
        "sessionId": session_id,
        "mode": "form",
        "message": text,
        "requestedSchema": {"type": "object", "properties": properties, "required": required},
    }


def form_answer(result: JSON, choices: Sequence[str] = ()) -> str:
    """The answer an ``elicitation/create`` result gives (a "no answer" note if none).

    ``accept`` with a non-blank ``answer`` is the user's text; else, with *choices*,
    the chosen ``choice``; ``decline`` says the user refused; ``cancel``, an empty
    form or anything unreadable, that they dismissed it.
    """
    action = result.get("action") if isinstance(result, dict) else None
    if action == "decline":
        return DECLINED
    content = result.get("content") if isinstance(result, dict) else None
    if action != "accept" or not isinstance(content, dict):
        return DISMISSED
    answer = content.get(ANSWER_FIELD)
    if isinstance(answer, str) and answer.strip():
        return answer
    return _choice(content.get(CHOICE_FIELD), choices) or DISMISSED
