"""Values the store keeps: sessions, events, turns, approvals, command records.

Every value is a frozen attrs class. Writes are described by :class:`Append`, the
single unit the group-commit writer commits atomically.
"""

from __future__ import annotations

import enum
import secrets
import time

from attrs import field, frozen

from ._json import JSONObject, dumps

_ENVELOPE = frozenset(("seq", "session_id", "type", "ts", "turn_id"))


def new_id(prefix: str) -> str:
    """An opaque, unguessable id such as ``ses_3fA9...``."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


def now() -> float:
    """Wall-clock seconds since the epoch (what ``ts`` fields hold)."""
    return time.time()


@frozen
class Session:
    """A conversation owned by one principal."""

    id: str
    owner: str
    title: str
    created_at: float
    updated_at: float
    current_agent: str
    deleted: bool = False
    # The project's instructions (its AGENTS.md), part of every mode's system
    # prompt; ``None`` when the client sent none.
    instructions: str | None = None

    def to_json(self) -> JSONObject:
        return {
            "id": self.id,
            "owner": self.owner,
            "title": self.title,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "current_agent": self.current_agent,
            "instructions": self.instructions,
        }


@frozen
class NewEvent:
    """An event to append; the store assigns ``seq`` and ``ts`` on commit."""

    type: str
    data: JSONObject = field(factory=dict)
    turn_id: str | None = None


@frozen
class Event:
    """A committed event of a session's append-only log."""

    session_id: str
    seq: int
    type: str
    ts: float
    data: JSONObject
    turn_id: str | None = None
    # The payload as JSON text, when the store has it (it encoded the payload to
    # write it, or read it as text): the wire form is then spliced, not encoded.
    payload_text: str | None = field(default=None, eq=False, repr=False, kw_only=True)

    def wire(self) -> str:
        """:meth:`to_json` as compact JSON text, encoding the payload at most once.

        Every transport sends this text, so an event is encoded once when it is
        committed (in the store's writer), not once per subscriber.
        """
        text = self.payload_text
        if text is None or not text.startswith("{") or not _ENVELOPE.isdisjoint(self.data):
            return dumps(self.to_json())
        head = (
            f'{{"seq":{self.seq},"session_id":{dumps(self.session_id)},'
            f'"type":{dumps(self.type)},"ts":{self.ts!r}'
        )
        if self.turn_id is not None:
            head += f',"turn_id":{dumps(self.turn_id)}'
        return head + ("}" if text == "{}" else "," + text[1:])

    def to_json(self) -> JSONObject:
        """The wire envelope of SPEC §3.2: envelope fields first, then the payload."""
        out: JSONObject = {
            "seq": self.seq,
            "session_id": self.session_id,
            "type": self.type,
            "ts": self.ts,
        }
        if self.turn_id is not None:
            out["turn_id"] = self.turn_id
        for key, value in self.data.items():
            out.setdefault(key, value)
        return out


class TurnStatus(enum.Enum):
    QUEUED = "queued"  # its user message is committed; it starts when the session is free
    RUNNING = "running"
    AWAITING_TOOL = "awaiting_tool"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    MAX_STEPS = "max_steps"

    @property
    def active(self) -> bool:
        return self in _ACTIVE_TURN


_ACTIVE_TURN = frozenset(
    {TurnStatus.QUEUED, TurnStatus.RUNNING, TurnStatus.AWAITING_TOOL, TurnStatus.AWAITING_APPROVAL}
)


@frozen
class Turn:
    """The work triggered by one user message.

    ``state`` is the runner's own resumable state (e.g. which tool calls it still
    waits for), so a restarted server can continue a waiting turn.
    """

    id: str
    session_id: str
    agent: str
    status: TurnStatus
    started_at: float
    updated_at: float
    state: JSONObject = field(factory=dict)


class ApprovalStatus(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    EDITED = "edited"
    REJECTED = "rejected"
    RESPONDED = "responded"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@frozen
class Approval:
    """A request for human approval of one tool call, with its explicit status.

    Only ``PENDING`` may move to another status; the store refuses any other
    transition with :class:`~sessions.Conflict`.
    """

    session_id: str
    call_id: str
    turn_id: str
    name: str
    arguments: JSONObject
    rule: str
    requested_at: float
    expires_at: float
    status: ApprovalStatus = ApprovalStatus.PENDING
    resolution: JSONObject = field(factory=dict)
    resolved_by: str | None = None


@frozen
class CommandRecord:
    """Idempotency record: a client command id and the ack it received."""

    session_id: str
    command_id: str
    ack: JSONObject


@frozen
class Append:
    """One atomic write: all of it commits in one transaction, or none of it.

    - ``session``: insert or replace the session row (create, rename, switch agent,
      soft delete all go through here, so there is a single write path).
    - ``events``: appended in order, with contiguous seqs.
    - ``command``: if a record with the same ``(session_id, command_id)`` is
      already committed, nothing of this append is written and the original ack
      is returned with ``duplicate=True``.
    - ``turn``: insert or replace the turn row.
    - ``approval``: insert a new pending approval, or resolve a pending one.
    - ``max_live_sessions``: when ``session`` creates (or revives) a live
      session, refuse it with :class:`~sessions.SessionLimitReached` if its owner
      already has that many; checked inside the transaction, so concurrent
      creations cannot overshoot.
    """

    session_id: str
    events: tuple[NewEvent, ...] = ()
    session: Session | None = None
    command: CommandRecord | None = None
    turn: Turn | None = None
    approval: Approval | None = None
    max_live_sessions: int | None = None


@frozen
class Committed:
    """What an :class:`Append` became once committed."""

    events: tuple[Event, ...] = ()
    duplicate: bool = False
    ack: JSONObject | None = None

    @property
    def last_seq(self) -> int | None:
        return self.events[-1].seq if self.events else None
