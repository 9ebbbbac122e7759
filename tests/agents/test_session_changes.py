"""Renaming, new instructions and deletion: one path (``Supervisor.apply_change``)."""

from __future__ import annotations

import pytest

from agents import CommandError
from sessions import JSONObject, SessionNotFound
from tests.agents.harness import open_runtime


async def test_a_deletion_ends_the_turn_then_the_log() -> None:
    async with open_runtime() as rt:
        session = await rt.session()
        await rt.message(session, "read the file a.txt")  # waits for the IDE's result
        await rt.wait_for(session, "tool.call")
        await rt.supervisor.delete_session(session)
        assert (await rt.types(session))[-2:] == ["turn.ended", "session.deleted"]
        ended = (await rt.events(session))[-2]
        assert ended.data["reason"] == "cancelled"
        assert (await rt.events(session))[-1].turn_id is None
        assert await rt.store.get_session(session.id) is None


async def test_a_stale_copy_of_a_deleted_session_cannot_bring_it_back() -> None:
    """A transport's copy from before the delete (a WebSocket opened earlier)."""
    async with open_runtime() as rt:
        session = await rt.session()
        await rt.supervisor.delete_session(session)
        with pytest.raises(SessionNotFound):
            await rt.send(session, {"type": "user_message", "content": "hello again"})
        with pytest.raises(SessionNotFound):
            await rt.supervisor.update_session(session, title="back")
        with pytest.raises(SessionNotFound):
            await rt.supervisor.set_instructions(session, "Use tabs.")
        assert await rt.store.get_session(session.id) is None
        assert (await rt.types(session))[-1] == "session.deleted"


async def test_changes_and_their_json_form() -> None:
    async with open_runtime() as rt:
        session = await rt.session()
        renamed = await rt.supervisor.update_session(session, title="  new name ")
        assert (renamed.title, renamed.instructions) == ("new name", None)
        ruled = await rt.supervisor.set_instructions(session, "Use tabs.")
        assert (ruled.title, ruled.instructions) == ("new name", "Use tabs.")
        cleared = await rt.supervisor.update_session(session, instructions=None)
        assert (cleared.title, cleared.instructions) == ("new name", None)
        bad_changes: list[JSONObject] = [
            {"change": "rename"},
            {"change": "update", "title": 3},
            {"change": "instructions", "instructions": ["x"]},
        ]
        for bad in bad_changes:
            with pytest.raises(CommandError) as refused:
                await rt.supervisor.apply_change(session, bad)
            assert refused.value.code == "invalid_request"
        assert await rt.store.get_session(session.id) == cleared
