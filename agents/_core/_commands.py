"""Client → server commands of SPEC §3.1 as one tagged union, :data:`Command`, and :class:`Ack`.

:func:`parse_command` is the single gate for untrusted input: it validates
strictly (unknown fields are refused too, so a typo such as ``on_bussy`` is an
error rather than a silently ignored wish) and raises :class:`CommandError`
with a machine-readable code. Every constructed command is valid: invariants
that span fields are checked on construction as well.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal, TypeAlias, TypeVar, cast, get_args

from attrs import frozen

from sessions import JSON, JSONObject

from .._errors import CommandError
from ._budget import MAX_MODEL_NAME
from ._codec import OneOf, PresentIff, Record, TaggedUnion, record
from ._fields import kind
from ._model_choice import check_model_name
from ._shapes import STRING, refined

OnBusy: TypeAlias = Literal["queue", "interrupt", "reject"]
Decision: TypeAlias = Literal["approve", "edit", "reject", "respond"]
Remember: TypeAlias = Literal["once", "session"]
# Who decided: a person, or the client's own policy (e.g. a non-interactive run).
DecidedBy: TypeAlias = Literal["user", "policy"]
AckStatus: TypeAlias = Literal["accepted", "duplicate", "rejected"]

ON_BUSY: tuple[OnBusy, ...] = get_args(OnBusy)
DECISIONS: tuple[Decision, ...] = get_args(Decision)
REMEMBER: tuple[Remember, ...] = get_args(Remember)
DECIDED_BY: tuple[DecidedBy, ...] = get_args(DecidedBy)
ACK_STATUSES: tuple[AckStatus, ...] = get_args(AckStatus)

MAX_ID_LENGTH = 200
_EDIT_ARGUMENTS: Final = (
    "field 'arguments' (an object) is required with decision 'edit' and only allowed there"
)
_FEEDBACK: Final = "field 'feedback' is only allowed with decision 'reject'"
_REMEMBER: Final = "field 'remember' may be 'session' only with decision 'approve' or 'edit'"
_C = TypeVar("_C")


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
        # Refused rather than dropped: feedback on an approval, or a rejection
        # "remembered" for the session, would be a wish the runtime silently ignores.
        if self.decision != "reject" and self.feedback is not None:
            raise ValueError(_FEEDBACK)
        if self.decision not in ("approve", "edit") and self.remember != "once":
            raise ValueError(_REMEMBER)


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


def _invalid(message: str) -> CommandError:
    return CommandError("invalid_command", message)


def _check_id(command_id: str) -> None:
    if not 0 < len(command_id) <= MAX_ID_LENGTH:
        raise ValueError(f"field 'id' must be 1 to {MAX_ID_LENGTH} characters long")


def _check_model(model: str) -> None:
    try:
        check_model_name(model)
    except ValueError as exc:
        raise ValueError(f"field 'model': {exc}") from None


_COMMAND_ID: Final = refined(STRING, _check_id, minLength=1, maxLength=MAX_ID_LENGTH)
_MODEL_NAME: Final = refined(STRING, _check_model, minLength=1, maxLength=MAX_MODEL_NAME)


def _command(cls: type[_C], **table: Any) -> Record[_C]:
    """The record of command *cls*: unknown fields refused, ids checked."""
    return record(cls, shapes={"id": _COMMAND_ID, **table.pop("shapes", {})}, closed=True, **table)


# The wire form of each command (see ``_codec.record``).
COMMANDS: Final = TaggedUnion[Command](
    (
        _command(SendMessage),
        _command(SubmitToolResult, rules=(OneOf(("result", "error")),)),
        _command(
            SubmitApproval,
            order=(
                *("id", "call_id", "decision", "arguments"),
                *("feedback", "remember", "by", "result"),
            ),
            rules=(
                PresentIff(
                    "result",
                    on="decision",
                    value="respond",
                    missing="decision 'respond' requires field 'result'",
                    extra="field 'result' is only allowed with 'respond'",
                ),
                PresentIff(
                    "arguments",
                    on="decision",
                    value="edit",
                    missing=_EDIT_ARGUMENTS,
                    extra=_EDIT_ARGUMENTS,
                ),
            ),
        ),
        _command(Answer),
        _command(Cancel),
        _command(SwitchAgent),
        _command(Compact),
        # null is meaningful (back to the defaults), so the field must be sent.
        _command(SwitchModel, shapes={"model": _MODEL_NAME}),
    )
)
_BY_CLASS: Final = COMMANDS.by_class


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
    type_ = obj.get("type")
    if not isinstance(type_, str):
        if "type" not in obj:
            raise _invalid("command: missing field 'type' (expected a string)")
        raise _invalid(f"command: field 'type' must be a string, got {kind(type_)}")
    command = COMMANDS.by_type.get(type_)
    if command is None:
        raise CommandError("unknown_command", f"unknown command type {type_!r}")
    try:
        return cast(Command, command.decode(obj, f"command {type_!r}"))
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def encode_command(cmd: Command) -> JSONObject:
    """The wire form of *cmd* (what a client sends); ``parse_command`` inverts it."""
    return _BY_CLASS[cmd.__class__].encode(cmd, {"type": cmd.type})


@frozen
class Ack:
    """The server's answer to one command (an ephemeral frame, also the idempotency record)."""

    type: ClassVar[str] = "ack"
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
        return ACK.encode(self, {"type": "ack"})

    @classmethod
    def from_json(cls, obj: JSONObject) -> Ack:
        """Inverse of :meth:`to_json` (e.g. a stored ack replayed for a duplicate id).

        Raises:
            ValueError: *obj* is not an ack.
        """
        return ACK.decode(obj, "ack")


ACK: Final = record(Ack)
