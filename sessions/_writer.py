"""The group-commit writer: one task commits every pending append in one transaction.

Appenders put a request on a bounded channel and wait for its commit. The writer
takes one request, drains whatever else is already queued (up to ``max_batch``),
commits the lot in one backend transaction, completes every waiter and then
publishes the committed events. Throughput comes from amortising one commit
over many appends; back-pressure from the channel's bound.

An appender that must not wait (a turn streaming text: waking once per commit
would cost it a task step per event) *submits* instead: its request carries a
callback that the writer calls, in its own task and in queue order, with the
outcome.

One bad append never stops the writer. The backend fails an append whose data
cannot be stored on its own, inside the transaction; and if a whole batch fails
for any other reason than the storage (a bug, an unclassified error), the writer
retries its appends one by one, so only the culprit fails. A storage failure
(:class:`~sessions.StorageUnavailable`: disk full, I/O error) fails its batch
and marks the store degraded; the writer keeps running, and the next batch that
commits marks it healthy again, as does a probe write (a backend's
:class:`WriteProbe`) every :data:`PROBE_INTERVAL` while no append comes, and once
at start.

Seqs are not decided here: the backend's transaction asks its seq allocator
(:mod:`sessions._seqs`), which for SQLite and memory starts from what this
writer remembers of its earlier commits. Publishing goes to the fan-out seam
(:mod:`sessions._fanout`), after the commit and before any checkpoint.

The writer runs in a shielded cancel scope. It is stopped by closing the send
side (it then drains what is queued), or, when the drain deadline passes, by
cancelling that scope; even then a batch already in the backend finishes,
because each commit is shielded on its own. It is never cancelled
mid-transaction.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import trio
from attrs import define, frozen

from ._batch import BatchResult, Known
from ._errors import StorageUnavailable, StoreClosed, StoreError, Unstorable
from ._fanout import Publisher
from ._models import Append, Committed, Session, now
from ._quick import send_quickly

log = logging.getLogger("agent_runtime.store")

V = TypeVar("V")


def _remember(cache: OrderedDict[str, V], fresh: Mapping[str, V], limit: int) -> None:
    """Put *fresh* into the LRU *cache* as most recent, keeping at most *limit* entries."""
    for key, value in fresh.items():
        cache[key] = value
        cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


class BatchBackend(Protocol):
    async def commit(self, appends: Sequence[Append], known: Known, ts: float) -> BatchResult:
        """Apply *appends* in ONE transaction (see :func:`sessions._batch.apply_batch`).

        Raises:
            StoreError: the transaction failed as a whole; nothing was written.
        """
        ...


@runtime_checkable
class WriteProbe(Protocol):
    """What a backend whose storage can fill up or fail offers (SQLite)."""

    async def probe_write(self) -> None:
        """Commit one write transaction that leaves nothing behind.

        Raises:
            StorageUnavailable: the storage cannot write (as a batch would fail).
        """
        ...


# While degraded, how often the writer probes the storage between appends: so
# the store recovers (and /health says so) without waiting for a client's write.
PROBE_INTERVAL = 2.0


@frozen
class WriterStats:
    """Counters of the group-commit writer (for metrics and benchmarks)."""

    batches: int
    appends: int
    failed_batches: int
    largest_batch: int
    storage_failures: int = 0


@frozen
class StoreHealth:
    """Whether the storage accepts writes, as the last commit found.

    ``degraded_since`` (monotonic trio time) and ``error`` are set while the last
    batch failed with :class:`~sessions.StorageUnavailable`.
    """

    ok: bool = True
    degraded_since: float | None = None
    error: str | None = None


OnOutcome = Callable[[Committed | StoreError], None]
"""Called by the writer with a submitted append's outcome; it must not raise or block."""


@define(eq=False)
class _Request:
    append: Append
    done: trio.Event | None  # set on completion (append), or None (submit: on_outcome)
    on_outcome: OnOutcome | None = None
    outcome: Committed | StoreError | None = None

    def finish(self, outcome: Committed | StoreError) -> None:
        self.outcome = outcome
        if self.done is not None:
            self.done.set()
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:
                # A bug in the callback must not stop the writer: every other
                # session's appends go through this task.
                log.exception("a submitted append's callback failed")


class GroupCommitWriter:
    """The single writer of a store, plus the ``append`` entry point."""

    def __init__(
        self,
        backend: BatchBackend,
        publisher: Publisher,
        *,
        probe: WriteProbe | None = None,
        queue_size: int = 1024,
        max_batch: int = 1024,
        cache_size: int = 10_000,
    ) -> None:
        if queue_size < 1 or max_batch < 1 or cache_size < 1:
            raise ValueError("queue_size, max_batch and cache_size must be at least 1")
        self._backend = backend
        self._probe = probe
        self._publisher = publisher
        self._max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[_Request](queue_size)
        # What this writer knows from its own commits, handed to each batch as
        # Known: the in-process seq allocator's memory (sessions._seqs_local)
        # and the rows it wrote. True only while it is the database's one
        # writer (the SQLite store's file lock). Only the writer task touches
        # these, and only between transactions. Least recently written last
        # out, at most cache_size sessions: a session missing here is read
        # inside its next batch instead (MAX(seq), its row).
        self._cache_size = cache_size
        self._last_seqs: OrderedDict[str, int] = OrderedDict()
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._scope = trio.CancelScope(shield=True)
        self._finished = trio.Event()
        self._batches = 0
        self._appends = 0
        self._failed = 0
        self._largest = 0
        self._storage_failures = 0
        self._health = StoreHealth()

    @property
    def stats(self) -> WriterStats:
        return WriterStats(
            batches=self._batches,
            appends=self._appends,
            failed_batches=self._failed,
            largest_batch=self._largest,
            storage_failures=self._storage_failures,
        )

    @property
    def health(self) -> StoreHealth:
        return self._health

    async def append(self, append: Append) -> Committed:
        """Queue *append* and wait until its batch committed.

        Raises:
            StoreClosed: the writer no longer accepts appends.
            StoreError: its batch failed, or the append alone failed (a subclass
                such as :class:`~sessions.Conflict`).

        Cancellation: cancelled while waiting for room in the queue, nothing was
        queued and nothing is written. Cancelled after that, the append still
        commits (whole, with its seqs); only its result is lost.
        """
        done = trio.Event()
        request = _Request(append, done)
        await self._queue(request)
        await done.wait()
        outcome = request.outcome
        if isinstance(outcome, StoreError):
            raise outcome
        assert outcome is not None
        return outcome

    async def submit(self, append: Append, on_outcome: OnOutcome) -> None:
        """Queue *append*; the writer calls *on_outcome* once its batch committed or failed.

        *on_outcome* runs in the writer's task, before the batch's events are
        published and in queue order, with the :class:`Committed` or the
        :class:`StoreError` :meth:`append` would return or raise (also
        :class:`StoreClosed` if the store closes before it is written).

        Raises:
            StoreClosed: the writer no longer accepts appends (*on_outcome* is
                not called).

        Cancellation: cancelled while waiting for room in the queue, nothing was
        queued and *on_outcome* is never called.
        """
        await self._queue(_Request(append, None, on_outcome))

    async def _queue(self, request: _Request) -> None:
        try:
            await send_quickly(self._send, request)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise StoreClosed("the session store is closed") from None

    def stop_accepting(self) -> None:
        """Refuse new appends; tasks blocked on a full queue get StoreClosed.

        The writer then commits what is queued and returns.
        """
        self._send.close()

    async def wait_drained(self, deadline_s: float) -> bool:
        """Wait (shielded) up to *deadline_s* for the writer to finish; True if it did.

        If the deadline passes, the writer is cancelled between batches and the
        appends still queued fail with StoreClosed.

        Cancellation: shielded; returns after at most *deadline_s*.
        """
        with trio.move_on_after(deadline_s) as scope:
            scope.shield = True
            await self._finished.wait()
        if not self._finished.is_set():
            self._scope.cancel()
            return False
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer task: commit batches until the send side is closed."""
        with self._scope:
            # The storage as it is now, not as the last run left it (a restart
            # on a full disk must not report healthy until its first write).
            await self._probe_storage()
            task_status.started()
            try:
                await self._loop()
            finally:
                self._fail_queued()
                self._finished.set()

    async def _loop(self) -> None:
        while True:
            try:
                first = await self._next()
            except trio.EndOfChannel:
                return
            if first is None:
                continue
            # One pass of the scheduler first: appenders made runnable in the same
            # pass (tokens of several sessions, deadlines expiring together) join
            # this batch instead of each paying for a transaction of its own.
            await trio.lowlevel.cancel_shielded_checkpoint()
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await self._commit(batch)

    async def _next(self) -> _Request | None:
        """The next request; while degraded, ``None`` after probing the storage
        between requests (every :data:`PROBE_INTERVAL` without one)."""
        if self._health.ok or self._probe is None:
            return await self._receive.receive()
        with trio.move_on_after(PROBE_INTERVAL):
            return await self._receive.receive()
        await self._probe_storage()
        return None

    async def _probe_storage(self) -> None:
        """Mark the store healthy or degraded as a probe write finds the storage."""
        if self._probe is None:
            return
        try:
            with trio.CancelScope(shield=True):  # a transaction is never abandoned
                await self._probe.probe_write()
        except StorageUnavailable as exc:
            self._degraded(exc)
        except StoreError as exc:
            log.warning("the storage probe failed: %s", exc)  # not the storage's fault
        else:
            self._recovered()

    def _degraded(self, exc: StorageUnavailable) -> None:
        if self._health.ok:
            log.error("storage unavailable; appends fail until it recovers: %s", exc)
            self._health = StoreHealth(False, trio.current_time(), str(exc))

    def _recovered(self) -> None:
        if not self._health.ok:
            log.warning("storage recovered; appends commit again")
            self._health = StoreHealth()

    async def _commit(self, batch: list[_Request]) -> None:
        appends = [request.append for request in batch]
        touched = {a.session_id for a in appends}
        known = Known(
            seqs={sid: self._last_seqs[sid] for sid in touched if sid in self._last_seqs},
            sessions={sid: self._sessions[sid] for sid in touched if sid in self._sessions},
        )
        try:
            # Shielded: a transaction is never abandoned half-way, whatever
            # happens to the writer's scope meanwhile.
            with trio.CancelScope(shield=True):
                result = await self._backend.commit(appends, known, now())
        except StorageUnavailable as exc:
            self._failed += 1
            self._storage_failures += 1
            self._degraded(exc)
            for request in batch:
                request.finish(StorageUnavailable(f"nothing was written: {exc}"))
            return
        except Exception as exc:
            # Not the storage: one append (or a bug) is at fault. The transaction
            # rolled back; find the culprit by committing the appends one by one.
            self._failed += 1
            if len(batch) > 1:
                for request in batch:
                    await self._commit([request])
                return
            if type(exc) is StoreError:
                error = StoreError(f"commit failed, nothing was written: {exc}")
                error.__cause__ = exc
                batch[0].finish(error)
                return
            if isinstance(exc, StoreError):
                batch[0].finish(exc)
                return
            log.error("an append failed with an unexpected error", exc_info=exc)
            error = Unstorable(f"this append cannot be stored: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            batch[0].finish(error)
            return
        except BaseException:
            for request in batch:
                request.finish(StoreClosed("the session store failed"))
            raise
        # Nothing below checkpoints: the cache update, waking the waiters and
        # publishing happen together with the commit or not at all.
        self._recovered()
        _remember(self._last_seqs, result.last_seqs, self._cache_size)
        _remember(self._sessions, result.sessions, self._cache_size)
        self._batches += 1
        self._appends += len(batch)
        self._largest = max(self._largest, len(batch))
        for request, outcome in zip(batch, result.outcomes, strict=True):
            request.finish(outcome)
        for append, outcome in zip(appends, result.outcomes, strict=True):
            if isinstance(outcome, Committed) and outcome.events and not outcome.duplicate:
                self._publisher.publish(append.session_id, outcome.events)

    def _fail_queued(self) -> None:
        # Drain before closing: closing the receive side would discard buffered
        # requests and leave their appenders waiting forever.
        while True:
            try:
                request = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            request.finish(StoreClosed("the session store closed before this append committed"))
        self._receive.close()
