"""Client → server commands of SPEC §3.1 as one tagged union, :data:`Command`, and :class:`Ack`.

:func:`parse_command` is the single gate for untrusted input: it validates
strictly (unknown fields are refused too, so a typo such as ``on_bussy`` is an
error rather than a silently ignored wish) and raises :class:`CommandError`
with a machine-readable code. Every constructed command is valid: invariants
that span fields are checked on construction as well.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias, assert_never

from attrs import frozen

from sessions import JSON, JSONObject

from .._errors import CommandError
from ._fields import Fields
from ._model_choice import check_model_name

OnBusy: TypeAlias = Literal["queue", "interrupt", "reject"]
Decision: TypeAlias = Literal["approve", "edit", "reject", "respond"]
Remember: TypeAlias = Literal["once", "session"]
# Who decided: a person, or the client's own policy (e.g. a non-interactive run).
DecidedBy: TypeAlias = Literal["user", "policy"]
AckStatus: TypeAlias = Literal["accepted", "duplicate", "rejected"]

ON_BUSY: tuple[OnBusy, ...] = ("queue", "interrupt", "reject")
DECISIONS: tuple[Decision, ...] = ("approve", "edit", "reject", "respond")
REMEMBER: tuple[Remember, ...] = ("once", "session")
DECIDED_BY: tuple[DecidedBy, ...] = ("user", "policy")
ACK_STATUSES: tuple[AckStatus, ...] = ("accepted", "duplicate", "rejected")

MAX_ID_LENGTH = 200


@frozen
class SendMessage:
    type: ClassVar[str] = "user_message"
    id: str
    content: str
    agent: str | None = None
    on_busy: OnBusy = "queue"


@frozen
class SubmitToolResult:
    """The IDE's answer to a ``tool.call``: ``error`` if set, otherwise ``result`` (may be null)."""

    type: ClassVar[str] = "tool_result"
    id: str
    call_id: str
    result: JSON = None
    error: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.error is not None and self.result is not None:
            raise ValueError("a tool result carries either 'result' or 'error', not both")


@frozen
class SubmitApproval:
    type: ClassVar[str] = "approval"
    id: str
    call_id: str
    decision: Decision
    arguments: JSONObject | None = None
    feedback: str | None = None
    result: JSON = None
    remember: Remember = "once"
    by: DecidedBy = "user"

    def __attrs_post_init__(self) -> None:
        if (self.decision == "edit") != (self.arguments is not None):
            raise ValueError("'arguments' is required with decision 'edit' and only allowed there")
        if self.decision != "respond" and self.result is not None:
            raise ValueError("'result' is only allowed with decision 'respond'")


@frozen
class Answer:
    type: ClassVar[str] = "answer"
    id: str
    question_id: str
    text: str


@frozen
class Cancel:
    type: ClassVar[str] = "cancel"
    id: str
    turn_id: str | None = None


@frozen
class SwitchAgent:
    type: ClassVar[str] = "switch_agent"
    id: str
    agent: str
    content: str | None = None


@frozen
class Compact:
    """Compact the session's history now (as a turn of its own, queued like a message)."""

    type: ClassVar[str] = "compact"
    id: str
    instructions: str | None = None  # what the summary should keep in particular


@frozen
class SwitchModel:
    """Use *model* for the session's LLM calls from the next one on (``None``: the defaults)."""

    type: ClassVar[str] = "switch_model"
    id: str
    model: str | None

    def __attrs_post_init__(self) -> None:
        if self.model is not None:
            check_model_name(self.model)


Command: TypeAlias = (
    SendMessage
    | SubmitToolResult
    | SubmitApproval
    | Answer
    | Cancel
    | SwitchAgent
    | Compact
    | SwitchModel
)

_FIELDS: dict[str, frozenset[str]] = {
    "user_message": frozenset({"content", "agent", "on_busy"}),
    "tool_result": frozenset({"call_id", "result", "error"}),
    "approval": frozenset(
        {"call_id", "decision", "arguments", "feedback", "result", "remember", "by"}
    ),
    "answer": frozenset({"question_id", "text"}),
    "cancel": frozenset({"turn_id"}),
    "switch_agent": frozenset({"agent", "content"}),
    "compact": frozenset({"instructions"}),
    "switch_model": frozenset({"model"}),
}


def _invalid(message: str) -> CommandError:
    return CommandError("invalid_command", message)


def _parse_fields(type_: str, f: Fields, command_id: str) -> Command:
    data = f.data
    match type_:
        case "user_message":
            on_busy = "queue" if data.get("on_busy") is None else f.choice("on_busy", ON_BUSY)
            return SendMessage(command_id, f.string("content"), f.opt_string("agent"), on_busy)
        case "tool_result":
            error = f.opt_string("error")
            if ("result" in data) == (error is not None):
                raise _invalid(f"{f.where}: exactly one of 'result' or 'error' is required")
            return SubmitToolResult(command_id, f.string("call_id"), data.get("result"), error)
        case "approval":
            decision = f.choice("decision", DECISIONS)
            if decision == "respond" and "result" not in data:
                raise _invalid(f"{f.where}: decision 'respond' requires field 'result'")
            if decision != "respond" and "result" in data:
                raise _invalid(f"{f.where}: field 'result' is only allowed with 'respond'")
            arguments = f.opt_obj("arguments")
            if (decision == "edit") != (arguments is not None):
                raise _invalid(
                    f"{f.where}: field 'arguments' (an object) is required with decision "
                    "'edit' and only allowed there"
                )
            remember = "once" if data.get("remember") is None else f.choice("remember", REMEMBER)
            by = "user" if data.get("by") is None else f.choice("by", DECIDED_BY)
            return SubmitApproval(
                id=command_id,
                call_id=f.string("call_id"),
                decision=decision,
                arguments=arguments,
                feedback=f.opt_string("feedback"),
                result=data.get("result"),
                remember=remember,
                by=by,
            )
        case "answer":
            return Answer(command_id, f.string("question_id"), f.string("text"))
        case "cancel":
            return Cancel(command_id, f.opt_string("turn_id"))
        case "switch_agent":
            return SwitchAgent(command_id, f.string("agent"), f.opt_string("content"))
        case "compact":
            return Compact(command_id, f.opt_string("instructions"))
        case "switch_model":
            if "model" not in data:
                raise _invalid(f"{f.where}: missing field 'model' (a string, or null)")
            model = f.opt_string("model")
            if model is not None:
                try:
                    check_model_name(model)
                except ValueError as exc:
                    raise _invalid(f"{f.where}: field 'model': {exc}") from None
            return SwitchModel(command_id, model)
        case _:
            raise CommandError("unknown_command", f"unknown command type {type_!r}")


def parse_command(obj: JSON) -> Command:
    """Validate one decoded client frame and return the command it describes.

    Raises:
        CommandError: ``code`` is ``"bad_json"`` (not a JSON object),
            ``"unknown_command"`` (unknown ``type``) or ``"invalid_command"``
            (a field is missing, unexpected or of the wrong type; the message names
            the field and what it should be).
    """
    if not isinstance(obj, dict):
        raise CommandError("bad_json", "a command must be a JSON object")
    top = Fields(obj, "command")
    try:
        type_ = top.string("type")
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    allowed = _FIELDS.get(type_)
    if allowed is None:
        raise CommandError("unknown_command", f"unknown command type {type_!r}")
    f = Fields(obj, f"command {type_!r}")
    try:
        command_id = f.string("id")
        if not 0 < len(command_id) <= MAX_ID_LENGTH:
            raise ValueError(f"{f.where}: field 'id' must be 1 to {MAX_ID_LENGTH} characters long")
        unknown = sorted(obj.keys() - allowed - {"type", "id"})
        if unknown:
            raise ValueError(f"{f.where}: unknown field(s) {', '.join(map(repr, unknown))}")
        return _parse_fields(type_, f, command_id)
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _drop_none(payload: dict[str, JSON | None]) -> JSONObject:
    return {key: value for key, value in payload.items() if value is not None}


def encode_command(cmd: Command) -> JSONObject:
    """The wire form of *cmd* (what a client sends); ``parse_command`` inverts it."""
    head: JSONObject = {"type": cmd.type, "id": cmd.id}
    match cmd:
        case SendMessage():
            body = _drop_none({"content": cmd.content, "agent": cmd.agent, "on_busy": cmd.on_busy})
        case SubmitToolResult():
            if cmd.error is not None:
                body = {"call_id": cmd.call_id, "error": cmd.error}
            else:
                body = {"call_id": cmd.call_id, "result": cmd.result}
        case SubmitApproval():
            body = _drop_none(
                {
                    "call_id": cmd.call_id,
                    "decision": cmd.decision,
                    "arguments": cmd.arguments,
                    "feedback": cmd.feedback,
                    "remember": cmd.remember,
                    "by": cmd.by,
                }
            )
            if cmd.decision == "respond":
                body["result"] = cmd.result
        case Answer():
            body = {"question_id": cmd.question_id, "text": cmd.text}
        case Cancel():
            body = _drop_none({"turn_id": cmd.turn_id})
        case SwitchAgent():
            body = _drop_none({"agent": cmd.agent, "content": cmd.content})
        case Compact():
            body = _drop_none({"instructions": cmd.instructions})
        case SwitchModel():
            body = {"model": cmd.model}  # null is meaningful: back to the defaults
        case _:
            assert_never(cmd)
    return head | body


@frozen
class Ack:
    """The server's answer to one command (an ephemeral frame, also the idempotency record)."""

    id: str
    status: AckStatus
    error: str | None = None
    code: str | None = None
    turn_id: str | None = None

    @classmethod
    def accepted(cls, command_id: str, turn_id: str | None = None) -> Ack:
        return cls(command_id, "accepted", turn_id=turn_id)

    @classmethod
    def rejected(cls, command_id: str, error: CommandError) -> Ack:
        return cls(command_id, "rejected", error=str(error), code=error.code)

    def to_json(self) -> JSONObject:
        return _drop_none(
            {
                "type": "ack",
                "id": self.id,
                "status": self.status,
                "error": self.error,
                "code": self.code,
                "turn_id": self.turn_id,
            }
        )

    @classmethod
    def from_json(cls, obj: JSONObject) -> Ack:
        """Inverse of :meth:`to_json` (e.g. a stored ack replayed for a duplicate id).

        Raises:
            ValueError: *obj* is not an ack.
        """
        f = Fields(obj, "ack")
        return cls(
            id=f.string("id"),
            status=f.choice("status", ACK_STATUSES),
            error=f.opt_string("error"),
            code=f.opt_string("code"),
            turn_id=f.opt_string("turn_id"),
        )
