"""What a supervisor does as one of several replicas on one database (SPEC §9).

A replica runs only the sessions whose lease it holds (``sessions/_seqs_fenced.py``).
Around that it has three duties, all no-ops for a one-writer store:

- **Forwarding**: a command for a session another replica runs is sent there
  (``GroupCommitStore.forward``) and answered with that replica's ack, so it
  keeps its contract (same ack, same idempotency, ack after the commit); if that
  replica's lease lapses first, this replica takes the session over and applies
  the command itself. A change of the session row (rename, instructions,
  deletion: it writes under the session's lock, and a deletion stops its turn)
  goes the same way.
- **Serving the inbox**: applying what other replicas forward here.
- **Watching leases**: stopping at once a session whose lease another replica
  took over, and adopting, every lease TTL, sessions whose replica died mid-turn.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import trio

from sessions import (
    JSON,
    JSONObject,
    LeaseHeld,
    LeaseLost,
    Session,
    SessionNotFound,
    SessionStore,
    StoreError,
)

from ._core._commands import Ack
from ._errors import CommandError
from ._session import LiveSession

log = logging.getLogger("agent_runtime.replica")

# How long a command forwarded to the replica running its session may wait for
# its ack (that replica's lease lapsing ends the wait sooner).
FORWARD_TIMEOUT = 30.0


class _Sessions(Protocol):
    def get(self, session_id: str) -> LiveSession | None: ...

    def use(self, session: Session) -> AbstractAsyncContextManager[LiveSession]: ...


class Host(Protocol):
    """What these duties need of the supervisor."""

    store: SessionStore

    @property
    def sessions(self) -> _Sessions: ...

    async def submit(self, session: Session, raw: JSON, *, forwarded: bool = False) -> Ack: ...

    async def apply_change(self, session: Session, change: JSONObject) -> Session | None: ...

    def step_down(self, live: LiveSession) -> None: ...


def elsewhere(exc: LeaseLost | LeaseHeld) -> str:
    """The reason of a ``session_elsewhere`` rejection."""
    if isinstance(exc, LeaseHeld):
        return (
            f"the session is being run by replica {exc.owner!r}, which did not answer the "
            "forwarded command in time; retry"
        )
    return "another replica took the session over; retry (it may be run elsewhere now)"


async def forward(host: Host, session: Session, raw: JSONObject, exc: LeaseLost | LeaseHeld) -> Ack:
    """Have the replica running *session* apply *raw*; its ack is this command's ack.

    If that replica's lease lapses first (it died), take the session over and
    apply the command here.
    """
    cmd_id = str(raw.get("id", ""))
    with trio.move_on_after(FORWARD_TIMEOUT):
        answer = await host.store.forward(session.id, raw)
        if answer is not None:
            try:
                return Ack.from_json(answer)
            except ValueError:
                log.error("session %s: a replica answered %r", session.id, answer)
                return Ack(cmd_id, "rejected", "internal error", "internal")
        return await host.submit(session, raw, forwarded=True)
    return Ack(cmd_id, "rejected", elsewhere(exc), "session_elsewhere")


async def forward_change(
    host: Host, session: Session, change: JSONObject, exc: LeaseLost | LeaseHeld
) -> Session | None:
    """Have the replica running *session* apply *change* (a session row change:
    ``{"change": "update" | "instructions" | "delete", ...}``, see
    :meth:`~agents.Supervisor.apply_change`); the session as stored after it
    (``None`` once deleted).

    If that replica's lease lapses first (it died), take the session over and
    apply the change here.

    Raises:
        CommandError: the running replica refused the change (its code), or did
            not answer in time (``session_elsewhere``).
        SessionNotFound: the session was deleted meanwhile (not for a deletion).
    """
    deleting = change.get("change") == "delete"
    with trio.move_on_after(FORWARD_TIMEOUT):
        answer = await host.store.forward(session.id, change)
        if answer is None:
            return await host.apply_change(session, change)
        code = answer.get("code")
        if answer.get("status") != "done" and not (deleting and code == "not_found"):
            if code == "not_found":
                raise SessionNotFound(session.id)
            raise CommandError(str(code or "internal"), str(answer.get("error", "")))
        # The holder answers once its write committed: a read now sees it.
        current = await host.store.get_session(session.id)
        if current is None and not deleting:
            raise SessionNotFound(session.id)
        return current
    raise CommandError("session_elsewhere", elsewhere(exc))


async def serve_replica(host: Host) -> None:
    """Serve the inbox, adopt orphaned sessions, and stop the sessions whose lease
    another replica took over; until cancelled."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            host.store.serve_inbox, lambda sid, raw: _apply_forwarded(host, sid, raw)
        )
        nursery.start_soon(_adopt_orphans, host)
        async for session_id in host.store.lost_leases():
            live = host.sessions.get(session_id)
            if live is not None:
                _give_up(host, live)


async def _apply_forwarded(host: Host, session_id: str, raw: JSONObject) -> JSONObject | None:
    """Apply a command or a session change another replica forwarded; its ack (or
    the change's outcome), or ``None`` if this replica no longer runs the session
    (left for the next holder)."""
    if "change" in raw:  # commands have a "type", changes a "change"
        return await _apply_change(host, session_id, raw)
    session = await host.store.get_session(session_id)
    if session is None:
        error = CommandError("not_found", f"session {session_id!r} not found")
        return Ack.rejected(str(raw.get("id", "")), error).to_json()
    ack = await host.submit(session, raw, forwarded=True)
    return None if ack.code == "session_elsewhere" else ack.to_json()


async def _apply_change(host: Host, session_id: str, change: JSONObject) -> JSONObject | None:
    """Apply a forwarded session change: ``{"status": "done"}`` or a refusal."""
    session = await host.store.get_session(session_id)
    try:
        if session is None:
            raise SessionNotFound(session_id)
        await host.apply_change(session, change)
    except (LeaseLost, LeaseHeld):
        return None
    except SessionNotFound:
        return {"status": "rejected", "code": "not_found", "error": "session not found"}
    except CommandError as exc:
        return {"status": "rejected", "code": exc.code, "error": str(exc)}
    return {"status": "done"}


async def _adopt_orphans(host: Host) -> None:
    """Every lease TTL: take over sessions whose replica died mid-turn, and recover
    them (loading does), so their turns end or carry on without waiting for a
    client's next command. Replicas race for each; the lease decides."""
    period = host.store.lease_ttl or 5.0
    while True:
        await trio.sleep(period)
        try:
            orphans = await host.store.orphaned_sessions()
        except StoreError as exc:
            log.info("looking for orphaned sessions failed: %s", exc)
            continue
        for session_id in orphans:
            session = await host.store.get_session(session_id)
            if session is None:
                continue
            try:
                async with host.sessions.use(session):
                    log.warning("session %s: took over from a replica that stopped", session_id)
            except LeaseHeld:
                continue  # another replica was quicker
            except StoreError as exc:
                log.info("could not take over %s: %s", session_id, exc)


def _give_up(host: Host, live: LiveSession) -> None:
    """Stop *live*'s turn without its closing write and forget the session here."""
    live.lost = True
    if live.running is not None:
        live.running.stop("interrupted", suspend=True)
    host.step_down(live)
