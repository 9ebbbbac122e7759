"""The bounded registry of live sessions: loaded on demand, pinned while used.

A live session holds its whole derived state (its history), so keeping every
session ever touched would grow the server without bound. The state is a fold
of the session's log, so a live session can be dropped when nothing needs it and
rebuilt exactly from the store on the next access.

Who needs a live session holds a :class:`Pin` on it: a command for as long as it runs
(including while it waits for the session's lock), a session's driver for as long
as it runs turns or retries closing one. A live session without pins is *idle*; idle
live sessions sit in an LRU in the order they became idle, and are evicted when idle
longer than ``idle_ttl`` (by :meth:`SessionRegistry.run_evictor`) or when more
than ``max_idle`` are idle (at once, on release). Pinning and releasing are
O(1); nothing ever scans all live sessions.

Loading is per session: different sessions load concurrently, and concurrent
first accesses of one session share a single load.

With several replicas on one database (PostgreSQL), a live session exists only
on the replica that holds the session's lease: loading takes it first (before
reading the log, so the fold sees every write), eviction releases it, and a
session whose lease another replica holds is read with :meth:`SessionRegistry.fold`
without being registered. Evictions are synchronous; their releases are done
by the evictor task (:meth:`SessionRegistry.run_evictor`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from sessions import Session, SessionNotFound, SessionStore, StoreError

from ._core._policy import Policy
from ._core._state import SessionState
from ._metrics import RuntimeMetrics
from ._session import LiveSession

log = logging.getLogger("agent_runtime.registry")

LOAD_PAGE = 512  # events read per query when a session is loaded


@attrs.define(eq=False)
class _Entry:
    live: LiveSession
    pins: int = 0


@attrs.define(eq=False)
class Pin:
    """One use of a live session; the registry keeps it while any pin is held."""

    _registry: SessionRegistry
    _entry: _Entry | None

    def release(self) -> None:
        """Give the use up (idempotent); the session may become idle."""
        entry, self._entry = self._entry, None
        if entry is not None:
            self._registry._unpin(entry)


@attrs.define(eq=False)
class SessionRegistry:
    """The live :class:`LiveSession` of each session that has one.

    Attributes:
        idle_ttl: seconds a live session may stay idle before it is evicted.
        max_idle: most idle live sessions kept; beyond it the longest idle is evicted.
        evictions: live sessions evicted so far.
    """

    store: SessionStore
    policy: Policy
    metrics: RuntimeMetrics
    idle_ttl: float
    max_idle: int
    load_page: int = LOAD_PAGE
    evictions: int = attrs.field(default=0, init=False)
    _live: dict[str, _Entry] = attrs.field(factory=dict)
    # Unpinned entries, longest idle first, with the trio time they became idle.
    _idle: OrderedDict[str, float] = attrs.field(factory=OrderedDict)
    _loading: dict[str, trio.Event] = attrs.field(factory=dict)  # set when the load ends
    _idle_added: trio.Event = attrs.field(factory=trio.Event)
    _evictor: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    # Called with each newly loaded live session, registered and pinned, before
    # its first user gets it (the supervisor recovers orphaned turns there).
    on_load: Callable[[LiveSession], Awaitable[None]] | None = None
    _to_release: list[str] = attrs.field(factory=list)  # evicted: leases to let go

    def __attrs_post_init__(self) -> None:
        if self.idle_ttl < 0 or self.max_idle < 0:
            raise ValueError("idle_ttl and max_idle must not be negative")

    def __len__(self) -> int:
        return len(self._live)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def get(self, session_id: str) -> LiveSession | None:
        """The live session of *session_id*, if any (does not load, pin or touch it)."""
        entry = self._live.get(session_id)
        return entry.live if entry is not None else None

    def live(self) -> list[LiveSession]:
        return [entry.live for entry in self._live.values()]

    @asynccontextmanager
    async def use(self, session: Session) -> AsyncIterator[LiveSession]:
        """The session's :class:`LiveSession` (loaded if needed), kept for the block.

        Raises:
            StoreError: loading failed (a later use loads again).

        Cancellation: safe; a cancelled load is abandoned and any waiter for it
        loads again.
        """
        entry = await self._acquire(session)
        try:
            yield entry.live
        finally:
            self._unpin(entry)

    def pin(self, live: LiveSession) -> Pin:
        """Keep *live* registered until the pin is released (synchronous, for a task to start).

        A live session no longer registered (its session was deleted) gets an inert pin.
        """
        entry = self._live.get(live.session.id)
        if entry is None or entry.live is not live:
            return Pin(self, None)
        return Pin(self, self._pin(entry))

    def discard(self, live: LiveSession) -> None:
        """Forget *live* now (its session is deleted, or another replica took it over);
        its pins stay harmless."""
        entry = self._live.get(live.session.id)
        if entry is not None and entry.live is live:
            del self._live[live.session.id]
            self._idle.pop(live.session.id, None)
            self._release_later(live.session.id)

    async def fold(self, session: Session) -> SessionState:
        """The session's state: its live one if loaded here, else folded from the log
        without registering it (another replica may be its writer)."""
        entry = self._live.get(session.id)
        if entry is not None:
            return entry.live.state
        return await self._fold(session.id)

    async def run_evictor(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Evict live sessions idle longer than ``idle_ttl``, until :meth:`stop_evictor`.

        Sleeps until the longest idle session expires (or until one becomes idle),
        so an idle server does not wake up for nothing.
        """
        with self._evictor:
            task_status.started()
            while True:
                await self._release_evicted()
                if not self._idle:
                    self._idle_added = trio.Event()
                    await self._idle_added.wait()
                    continue
                since = next(iter(self._idle.values()))
                await trio.sleep_until(since + self.idle_ttl)
                self._evict_expired(trio.current_time())

    def stop_evictor(self) -> None:
        self._evictor.cancel()

    def _release_later(self, session_id: str) -> None:
        if self.store.replica is not None:
            self._to_release.append(session_id)
            self._idle_added.set()  # wakes the evictor, which releases

    async def _release_evicted(self) -> None:
        """Let go of the leases of sessions evicted since (unless loaded again meanwhile)."""
        while self._to_release:
            session_id = self._to_release.pop()
            if session_id in self._live or session_id in self._loading:
                continue
            try:
                await self.store.release(session_id)
            except StoreError as exc:  # it lapses by itself after its TTL
                log.info("could not release the lease of %s: %s", session_id, exc)

    # -- internals ---------------------------------------------------------------

    async def _acquire(self, session: Session) -> _Entry:
        """The session's entry, loaded if needed, with one more pin."""
        while True:
            entry = self._live.get(session.id)
            if entry is not None:
                return self._pin(entry)
            loading = self._loading.get(session.id)
            if loading is not None:
                # Share the load under way; then look again (it may have failed,
                # or been cancelled, and then this task loads).
                await loading.wait()
                continue
            loading = self._loading[session.id] = trio.Event()
            try:
                live = await self._load(session)
            finally:
                del self._loading[session.id]
                loading.set()
            # No checkpoint between the load and the pin: nothing can evict it.
            entry = self._live[session.id] = _Entry(live)
            pinned = self._pin(entry)
            if self.on_load is not None:
                try:
                    await self.on_load(live)
                except BaseException:
                    self._unpin(pinned)
                    raise
            return pinned

    async def _load(self, session: Session) -> LiveSession:
        """A fresh live session whose state is the fold of the session's whole log.

        The session row is read too: the caller's copy may be older than the
        session's last write (an evicted one had the newest one).

        Raises:
            SessionNotFound: the session was deleted (or never stored): the
                caller's copy, e.g. a WebSocket's from before the delete, must not
                bring it back.
        """
        # The lease first (several replicas): from then on nobody else writes it,
        # so the fold below is complete and stays true.
        await self.store.acquire(session.id)
        stored = await self.store.get_session(session.id)
        if stored is None:
            await self.store.release(session.id)
            raise SessionNotFound(session.id)
        state = await self._fold(session.id)
        return LiveSession(stored, state, self.store, self.policy, self.metrics)

    async def _fold(self, session_id: str) -> SessionState:
        state = SessionState(session_id)
        while True:
            page = await self.store.read_events(
                session_id, after=state.last_seq, limit=self.load_page
            )
            state.apply_all(page)
            if len(page) < self.load_page:
                return state

    def _pin(self, entry: _Entry) -> _Entry:
        entry.pins += 1
        self._idle.pop(entry.live.session.id, None)
        return entry

    def _unpin(self, entry: _Entry) -> None:
        entry.pins -= 1
        session_id = entry.live.session.id
        if entry.pins > 0 or self._live.get(session_id) is not entry:
            return
        if not self._idle:
            self._idle_added.set()
        self._idle[session_id] = trio.current_time()
        self._evict_over_cap()

    def _evict_over_cap(self) -> None:
        # Each entry is looked at once at most: one that is not quiet goes to the back.
        for _ in range(len(self._idle)):
            if len(self._idle) <= self.max_idle:
                return
            self._evict_oldest(trio.current_time())

    def _evict_expired(self, now: float) -> None:
        for _ in range(len(self._idle)):
            since = next(iter(self._idle.values()))
            if since + self.idle_ttl > now:
                return
            self._evict_oldest(now)

    def _evict_oldest(self, now: float) -> None:
        session_id, _ = self._idle.popitem(last=False)
        entry = self._live[session_id]
        if entry.live.quiet:
            del self._live[session_id]
            self.evictions += 1
            self._release_later(session_id)
        else:
            # Unpinned yet not quiet should not happen; keep it and look again later.
            self._idle[session_id] = now
