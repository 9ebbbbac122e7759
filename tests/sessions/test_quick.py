"""acquire_quickly / send_quickly: trio's semantics, minus the uncontended schedule point."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio
import trio.testing

from sessions import acquire_quickly, held_quickly, send_quickly


@contextmanager
def no_schedule_point() -> Iterator[None]:
    """Fails unless the block passed a cancel point but no schedule point.

    trio's ``assert_checkpoints`` requires both; a block that was a cancel point
    (the cancellation tests below show it is) and fails it did not yield.
    """
    with pytest.raises(AssertionError, match="did not yield"), trio.testing.assert_checkpoints():
        yield


async def test_a_free_lock_is_taken_without_a_schedule_point() -> None:
    lock = trio.Lock()
    with no_schedule_point():
        await acquire_quickly(lock)
    assert lock.locked()
    lock.release()
    # trio's own acquire is a full checkpoint: the difference being saved.
    with trio.testing.assert_checkpoints():
        await lock.acquire()


async def test_a_held_lock_is_waited_for(nursery: trio.Nursery) -> None:
    lock = trio.Lock()
    holder_may_release = trio.Event()
    acquired = trio.Event()

    async def holder() -> None:
        async with lock:
            await holder_may_release.wait()

    async def waiter() -> None:
        await acquire_quickly(lock)
        acquired.set()
        lock.release()

    nursery.start_soon(holder)
    await trio.testing.wait_all_tasks_blocked()
    nursery.start_soon(waiter)
    await trio.testing.wait_all_tasks_blocked()
    assert not acquired.is_set()
    holder_may_release.set()
    await acquired.wait()
    assert not lock.locked()


async def test_a_cancelled_caller_takes_no_lock() -> None:
    lock = trio.Lock()
    with trio.CancelScope() as scope:
        scope.cancel()
        await acquire_quickly(lock)
    assert scope.cancelled_caught
    assert not lock.locked()


async def test_a_channel_with_room_is_sent_to_without_a_schedule_point() -> None:
    send, receive = trio.open_memory_channel[int](1)
    with no_schedule_point():
        await send_quickly(send, 1)
    assert receive.receive_nowait() == 1
    with trio.testing.assert_checkpoints():
        await send.send(2)


async def test_a_full_channel_is_waited_on(nursery: trio.Nursery) -> None:
    send, receive = trio.open_memory_channel[int](1)
    send.send_nowait(1)
    sent = trio.Event()

    async def sender() -> None:
        await send_quickly(send, 2)
        sent.set()

    nursery.start_soon(sender)
    await trio.testing.wait_all_tasks_blocked()
    assert not sent.is_set()
    assert await receive.receive() == 1
    await sent.wait()
    assert receive.receive_nowait() == 2


async def test_a_cancelled_caller_sends_nothing() -> None:
    send, receive = trio.open_memory_channel[int](1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await send_quickly(send, 1)
    assert scope.cancelled_caught
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()


async def test_held_quickly_holds_the_lock_for_the_block_and_releases_it_on_errors() -> None:
    lock = trio.Lock()
    with no_schedule_point():
        async with held_quickly(lock):
            assert lock.locked()
    assert not lock.locked()
    with pytest.raises(ValueError, match="inside"):
        async with held_quickly(lock):
            raise ValueError("inside")
    assert not lock.locked()
