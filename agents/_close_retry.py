"""Closing a turn the store refused to close: retried with backoff until it takes.

A session's driver waits here (nothing else of the session starts meanwhile)
until the closing write of its last turn succeeds, or until shutdown leaves the
turn open in the store for restart recovery. Separate from the supervisor, whose
driver calls it, because it is a retry loop of its own, owning no state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from sessions import StoreError

from ._core._events import ErrorEvent, TurnEndReason
from ._live_turn import LiveTurn
from ._session import LiveSession
from ._turn import close_turn

# The supervisor's logger, named as before this module was split out of it.
log = logging.getLogger("agent_runtime.supervisor")


async def close_when_writable(
    live: LiveSession,
    turn: LiveTurn,
    reason: TurnEndReason,
    error: ErrorEvent | None,
    *,
    store_retry: float,
    retrying: set[trio.CancelScope],
    closing: Callable[[], bool],
) -> None:
    """Close *turn* (with *reason*, *error*) once the store takes the write.

    Retries with exponential backoff (*store_retry*, doubling up to ten times
    that). Gives up at shutdown (*closing*): the turn then stays open in the
    store, and restart recovery closes it.

    While it waits its cancel scope is in *retrying*, for shutdown to cancel.

    Cancellation: shutdown cancels the wait between attempts; an attempt
    itself is shielded (one atomic write).
    """
    delay = store_retry
    with trio.CancelScope() as scope:
        retrying.add(scope)
        try:
            while not closing():
                await trio.sleep(delay)
                try:
                    with trio.CancelScope(shield=True):
                        await close_turn(live, turn, reason, error)
                except StoreError as exc:
                    log.info("turn %s still cannot be closed: %s", turn.turn_id, exc)
                    delay = min(2 * delay, 10 * store_retry)
                    continue
                log.warning("turn %s closed (%s) on a retry", turn.turn_id, reason)
                return
        finally:
            retrying.discard(scope)
