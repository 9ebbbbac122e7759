"""A subtask closes before the parent's ``new_task`` call it answers, however it ends.

On success the runner commits ``subtask.ended`` then the parent call's
``tool.result``; a turn closed by cancel or interrupt (``close_turn``) keeps that
order, so a client nesting its view by subtask never sees the parent's call
close while the subtask it started is still open.
"""

from __future__ import annotations

from sessions import Event, Session

from .harness import Harness, open_runtime


async def closing_of(h: Harness, s: Session, turn_id: str) -> list[tuple[str, str | None]]:
    """``(type, call_id or subtask_id)`` of the turn's frames and results, in log order."""
    return [
        (ev.type, str(ev.data.get("call_id") or ev.data.get("subtask_id")))
        for ev in await h.events(s)
        if ev.turn_id == turn_id
        and ev.type in ("subtask.started", "subtask.ended", "tool.result", "turn.ended")
    ]


def ids(started: Event, inner: Event) -> tuple[str, str, str]:
    return str(started.data["subtask_id"]), str(started.data["call_id"]), str(inner.data["call_id"])


async def test_a_cancel_closes_the_subtask_before_the_parent_call() -> None:
    async with open_runtime() as h:
        s = await h.session()
        await h.message(s, "first read a.py then explain a.py")
        started = await h.wait_for(s, "subtask.started")
        call = await h.wait_for(s, "tool.call")
        ack = await h.send(s, {"type": "cancel"})
        assert ack.status == "accepted"
        sub, parent_call, child_call = ids(started, call)
        assert await closing_of(h, s, str(call.turn_id)) == [
            ("subtask.started", parent_call),
            ("tool.result", child_call),  # the child's own call first
            ("subtask.ended", sub),
            ("tool.result", parent_call),
            ("turn.ended", "None"),
        ]
        await h.assert_paired(s)


async def test_an_interrupt_closes_the_subtask_before_the_parent_call() -> None:
    async with open_runtime() as h:
        s = await h.session()
        await h.message(s, "first create a.md with x then explain it")
        started = await h.wait_for(s, "subtask.started")
        request = await h.wait_for(s, "approval.requested")
        await h.message(s, "hello", on_busy="interrupt")
        ended = await h.wait_for(s, "turn.ended", where=lambda ev: ev.turn_id == request.turn_id)
        assert ended.data["reason"] == "interrupted"
        sub, parent_call, child_call = ids(started, request)
        assert await closing_of(h, s, str(request.turn_id)) == [
            ("subtask.started", parent_call),
            ("tool.result", child_call),  # the cancelled approval's call
            ("subtask.ended", sub),
            ("tool.result", parent_call),
            ("turn.ended", "None"),
        ]
        await h.assert_paired(s)
