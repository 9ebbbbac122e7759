"""Lock and channel operations that skip trio's schedule point when they need not wait.

``trio.Lock.acquire`` and ``MemorySendChannel.send`` always yield to the scheduler,
even when the lock is free or the channel has room: the task goes to the back of
the run queue and the scheduler runs once more for it. On the per-event path (a
model delta to the turn, an append to the writer, a frame to a WebSocket) those
round trips were a large share of the CPU an event costs (docs/benchmarks.md, B1
paced). These keep trio's cancellation semantics (a cancelled caller raises
``Cancelled`` before taking anything) and wait exactly as trio does when they
must; they only leave out the schedule point of the uncontended case. Every
caller's loop still blocks elsewhere (a receive, a socket, a commit), so no task
can run forever without yielding.
"""

from __future__ import annotations

from typing import TypeVar

import trio

T = TypeVar("T")


async def acquire_quickly(lock: trio.Lock) -> None:
    """``await lock.acquire()``, without a schedule point when *lock* is free.

    Cancellation: raises ``Cancelled`` (holding nothing) if the caller is
    cancelled; otherwise as ``lock.acquire()``.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        await lock.acquire()


class held_quickly:
    """``async with held_quickly(lock):`` is ``async with lock:`` by way of
    :func:`acquire_quickly` (a class, not a generator: it runs once per event).

    Cancellation: as :func:`acquire_quickly` on entry; the lock is always released.
    """

    __slots__ = ("_lock",)

    def __init__(self, lock: trio.Lock) -> None:
        self._lock = lock

    async def __aenter__(self) -> None:
        await acquire_quickly(self._lock)

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()


async def send_quickly(channel: trio.MemorySendChannel[T], value: T) -> None:
    """``await channel.send(value)``, without a schedule point when it has room.

    Cancellation: raises ``Cancelled`` (nothing sent) if the caller is
    cancelled; otherwise as ``channel.send(value)``.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        channel.send_nowait(value)
    except trio.WouldBlock:
        await channel.send(value)
