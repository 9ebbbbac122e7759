"""What one :class:`~sessions.Append` means, applied inside a batch transaction.

Both stores run this same synchronous code against their own :class:`Tx`, so the
in-memory fake and SQLite agree on every rule: duplicate commands, approval
transitions, session liveness and seq numbering. Which seq a session's next
event gets is not decided here but by the batch's
:class:`~sessions._seqs.SeqAllocator`, the seam a store with several writers
replaces. It is synchronous on purpose:
the SQLite store runs a whole batch as one function on the database thread (one
bridge crossing per batch), and the memory store runs it without a checkpoint so
readers never observe half a batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from attrs import frozen

from ._errors import Conflict, SessionLimitReached, SessionNotFound, StoreError
from ._json import JSONObject, dumps
from ._models import (
    Append,
    Approval,
    ApprovalStatus,
    CommandRecord,
    Committed,
    Event,
    Session,
    Turn,
)
from ._seqs import SeqAllocator


@frozen
class StoredCommand:
    """An idempotency record as stored: the ack and the seqs its append produced."""

    ack: JSONObject
    first_seq: int | None
    last_seq: int | None


class Tx(Protocol):
    """One open write transaction of a backend.

    Reads see the transaction's own earlier writes (that is how duplicates and
    approval transitions inside one batch are caught).
    """

    def savepoint(self, needed: bool) -> AbstractContextManager[None]:
        """Undo every write made inside the block if it raises, then re-raise.

        ``needed`` is False when the block makes at most one write statement,
        which the database undoes on its own if it fails; a backend may then
        skip the savepoint. A backend may translate its own integrity errors to
        :class:`StoreError` here so that one bad append fails alone.
        """
        ...

    def load_session(self, session_id: str) -> Session | None: ...

    def load_command(self, session_id: str, command_id: str) -> StoredCommand | None: ...

    def load_events(self, session_id: str, first_seq: int, last_seq: int) -> list[Event]: ...

    def load_approval(self, session_id: str, call_id: str) -> Approval | None: ...

    def save_session(self, session: Session) -> None: ...

    def live_sessions(self, owner: str) -> int:
        """How many live (not deleted) sessions *owner* has: a maintained count, O(1)."""
        ...

    def add_live_sessions(self, owner: str, delta: int) -> None:
        """Adjust *owner*'s maintained count of live sessions by *delta*."""
        ...

    def save_events(self, events: Sequence[Event]) -> None: ...

    def save_command(
        self, record: CommandRecord, first_seq: int | None, last_seq: int | None
    ) -> None:
        """Insert a new record (the caller already checked it is not a duplicate)."""
        ...

    def save_turn(self, turn: Turn) -> None: ...

    def save_approval(self, approval: Approval) -> None:
        """Insert or replace (the caller already checked the transition)."""
        ...


@frozen
class Known:
    """What the single writer already knows from earlier commits (saves reads).

    Valid only because every write goes through that writer (one writer process
    per database, enforced by a file lock): a session's row or last seq cannot
    change behind its back. ``seqs`` feeds the in-process
    :class:`~sessions._seqs_local.LocalSeqAllocator`; ``sessions`` spares
    loading the rows of sessions the writer wrote. A store whose sessions
    another process may write must ignore both (or pass empty mappings).
    """

    seqs: Mapping[str, int]
    sessions: Mapping[str, Session]


@frozen
class BatchResult:
    """Per-append outcomes, in order, and what the writer may now cache.

    ``last_seqs`` and ``sessions`` are true once this transaction committed.
    """

    outcomes: list[Committed | StoreError]
    last_seqs: dict[str, int]
    sessions: dict[str, Session]


def check_append(append: Append) -> None:
    """Refuse an append whose parts name another session (a caller bug).

    Raises:
        ValueError: a part's ``session_id`` (or the session's ``id``) differs.
    """
    sid = append.session_id
    parts: list[tuple[str, str]] = []
    if append.session is not None:
        parts.append(("session", append.session.id))
    if append.command is not None:
        parts.append(("command", append.command.session_id))
    if append.turn is not None:
        parts.append(("turn", append.turn.session_id))
    if append.approval is not None:
        parts.append(("approval", append.approval.session_id))
    for name, other in parts:
        if other != sid:
            raise ValueError(f"append for session {sid!r} carries a {name} of session {other!r}")


def apply_batch(
    tx: Tx, appends: Sequence[Append], known: Known, ts: float, *, seqs: SeqAllocator
) -> BatchResult:
    """Apply *appends* in order inside the open transaction *tx*.

    Each append runs in its own savepoint: a :class:`StoreError` (conflict,
    unknown session, integrity error) undoes that append alone and becomes its
    outcome. Any other exception escapes, and the caller rolls the whole
    transaction back.

    *known* holds cached sessions; a session missing from it is loaded
    (``load_session``) on first use. *seqs* decides the seqs of new events; it
    belongs to this transaction alone.
    """
    batch = _Batch(tx, known, seqs)
    outcomes: list[Committed | StoreError] = []
    for append in appends:
        try:
            with tx.savepoint(_writes(append) > 1):
                outcome, new_last = batch.apply_one(append, ts)
        except StoreError as exc:
            # The savepoint undid the append; reload its session from the
            # transaction if anything needs it again.
            batch.forget_session(append.session_id)
            outcomes.append(exc)
            continue
        if new_last is not None:
            # Only now, with the append's savepoint released: a failed append
            # uses no seq.
            seqs.advance(append.session_id, new_last)
        outcomes.append(outcome)
    sessions = {sid: s for sid, s in batch.sessions.items() if s is not None}
    return BatchResult(outcomes=outcomes, last_seqs=seqs.last_seqs(), sessions=sessions)


def _writes(append: Append) -> int:
    """How many write statements *append* makes."""
    parts = (append.command, append.turn, append.approval)
    # A session row may also move its owner's live count: two statements.
    session_writes = 2 if append.session is not None else 0
    return len(append.events) + session_writes + sum(part is not None for part in parts)


class _Batch:
    def __init__(self, tx: Tx, known: Known, seqs: SeqAllocator) -> None:
        self.tx = tx
        self.known = known
        self.seqs = seqs
        # Sessions as this transaction sees them (read, or written by an append
        # that succeeded).
        self.sessions: dict[str, Session | None] = {}

    def forget_session(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def session(self, session_id: str) -> Session | None:
        if session_id in self.sessions:
            return self.sessions[session_id]
        found = self.known.sessions.get(session_id)
        if found is None:
            found = self.tx.load_session(session_id)
        self.sessions[session_id] = found
        return found

    def apply_one(self, append: Append, ts: float) -> tuple[Committed, int | None]:
        sid = append.session_id
        # First, before anything is read or written: may this transaction write it?
        self.seqs.fence(sid)
        cmd = append.command
        if cmd is not None:
            stored = self.tx.load_command(sid, cmd.command_id)
            if stored is not None:
                return self._duplicate(sid, stored), None

        before = self.session(sid)
        after = before
        if append.session is not None:
            self._count_liveness(before, append.session, append.max_live_sessions)
            self.tx.save_session(append.session)
            self.sessions[sid] = after = append.session
        writes_more = bool(append.events) or any(
            part is not None for part in (append.command, append.turn, append.approval)
        )
        # Live before (a write that deletes may still close turns and record a
        # final event) or made live by this very append (creation).
        live = (before is not None and not before.deleted) or (
            after is not None and not after.deleted
        )
        if writes_more and not live:
            raise SessionNotFound(sid)

        if append.approval is not None:
            self._check_approval(append.approval)

        events: tuple[Event, ...] = ()
        new_last: int | None = None
        if append.events:
            base = self.seqs.last_seq(sid)
            events = tuple(
                Event(
                    session_id=sid,
                    seq=base + i,
                    type=new.type,
                    ts=ts,
                    data=new.data,
                    turn_id=new.turn_id,
                    # Encoded here, once: the backend writes this text and every
                    # transport splices it into the event's wire form.
                    payload_text=dumps(new.data),
                )
                for i, new in enumerate(append.events, start=1)
            )
            self.tx.save_events(events)
            new_last = events[-1].seq

        if append.turn is not None:
            self.tx.save_turn(append.turn)
        if append.approval is not None:
            self.tx.save_approval(append.approval)
        ack: JSONObject | None = None
        if append.command is not None:
            ack = append.command.ack
            first = events[0].seq if events else None
            self.tx.save_command(append.command, first, new_last)
        return Committed(events=events, duplicate=False, ack=ack), new_last

    def _count_liveness(self, before: Session | None, after: Session, limit: int | None) -> None:
        """Keep the owner's live-session count true, refusing a creation over *limit*."""
        was_live = before is not None and not before.deleted
        if was_live == (not after.deleted):
            return
        if was_live:
            self.tx.add_live_sessions(after.owner, -1)
            return
        if limit is not None and self.tx.live_sessions(after.owner) >= limit:
            raise SessionLimitReached(after.owner, limit)
        self.tx.add_live_sessions(after.owner, 1)

    def _check_approval(self, approval: Approval) -> None:
        current = self.tx.load_approval(approval.session_id, approval.call_id)
        if current is None:
            if approval.status is not ApprovalStatus.PENDING:
                raise Conflict(
                    f"approval {approval.call_id!r} cannot be {approval.status.value}: "
                    "it was never requested"
                )
            return
        if current.status is not ApprovalStatus.PENDING:
            raise Conflict(
                f"approval {approval.call_id!r} is already {current.status.value}; "
                f"cannot make it {approval.status.value}"
            )
        if approval.status is ApprovalStatus.PENDING:
            raise Conflict(f"approval {approval.call_id!r} is already pending")

    def _duplicate(self, session_id: str, stored: StoredCommand) -> Committed:
        events: tuple[Event, ...] = ()
        if stored.first_seq is not None and stored.last_seq is not None:
            events = tuple(self.tx.load_events(session_id, stored.first_seq, stored.last_seq))
        return Committed(events=events, duplicate=True, ack=stored.ack)
