"""Checkpoints and undo: the journal restores the workspace byte for byte, or refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from server.chat._journal import JOURNAL_DIR, Journal, UndoRefused, journaled
from server.chat._tools import Workspace
from sessions import JSON, JSONObject


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under *root* (the journal excluded): bytes and mode of files, dirs, links."""
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".agent-runtime"):
            continue
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return out


async def run(
    workspace: Workspace, journal: Journal, turn: str, call: str, tool: str, args: JSONObject
) -> JSON:
    return await journaled(journal, turn, call, tool, args, lambda: workspace.execute(tool, args))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    (tmp_path / "keep.txt").write_bytes(b"unchanged\n")
    (tmp_path / "edit.py").write_bytes(b"a = 1\r\nb = 2\r\n")  # CRLF kept byte for byte
    (tmp_path / "gone.sh").write_bytes(b"#!/bin/sh\necho bye\n")
    (tmp_path / "gone.sh").chmod(0o755)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_bytes(b"x = 1\n")
    (tmp_path / "over.txt").write_bytes(b"old contents\n")
    return Workspace(tmp_path)


async def one_turn_of_everything(workspace: Workspace, journal: Journal, turn: str) -> None:
    calls: list[tuple[str, JSONObject]] = [
        ("write_file", {"path": "new/deep/file.txt", "content": "fresh\n"}),
        ("write_file", {"path": "over.txt", "content": "new contents\n"}),
        ("apply_diff", {"path": "edit.py", "search": "b = 2", "replace": "b = 3"}),
        ("create_directory", {"path": "made/here"}),
        ("delete_file", {"path": "gone.sh"}),
        ("move_file", {"source": "pkg", "destination": "lib/pkg"}),
        ("move_file", {"source": "keep.txt", "destination": "kept.txt"}),
        ("write_file", {"path": "kept.txt", "content": "edited after the move"}),
    ]
    for number, (tool, args) in enumerate(calls):
        await run(workspace, journal, turn, f"call_{number}", tool, args)


async def test_undo_restores_the_workspace_byte_for_byte(workspace: Workspace) -> None:
    journal = Journal(workspace, "ses_1")
    original = snapshot(workspace.root)
    await one_turn_of_everything(workspace, journal, "turn_1")
    assert snapshot(workspace.root) != original
    assert (workspace.root / "lib" / "pkg" / "mod.py").read_bytes() == b"x = 1\n"

    reverted = await trio.to_thread.run_sync(journal.undo)

    assert snapshot(workspace.root) == original
    assert reverted.turns == ("turn_1",)
    assert "removed new/" in reverted.lines
    assert "restored gone.sh (it had been removed)" in reverted.lines
    assert "restored edit.py" in reverted.lines
    assert journal.turns() == []  # undone turns leave the journal
    with pytest.raises(UndoRefused, match="nothing to undo"):
        journal.undo()


async def test_undo_takes_the_last_turns_one_or_n(workspace: Workspace) -> None:
    journal = Journal(workspace, "ses_1")
    states = [snapshot(workspace.root)]
    for turn in range(3):
        args: JSONObject = {"path": "over.txt", "content": f"version {turn}\n"}
        await run(workspace, journal, f"turn_{turn}", "c", "write_file", args)
        states.append(snapshot(workspace.root))
    assert journal.undo().turns == ("turn_2",)
    assert snapshot(workspace.root) == states[2]
    assert journal.undo(2).turns == ("turn_0", "turn_1")
    assert snapshot(workspace.root) == states[0]


async def test_undo_refuses_when_a_file_changed_since_and_changes_nothing(
    workspace: Workspace,
) -> None:
    journal = Journal(workspace, "ses_1")
    await one_turn_of_everything(workspace, journal, "turn_1")
    (workspace.root / "edit.py").write_bytes(b"someone else's edit\n")
    before = snapshot(workspace.root)
    with pytest.raises(UndoRefused, match=r"^edit\.py changed since the agent wrote it"):
        journal.undo()
    assert snapshot(workspace.root) == before  # not half undone
    assert len(journal.turns()) == 1  # still undoable once the file is put back


async def test_undo_refuses_when_someone_adds_a_file_to_a_directory_the_agent_made(
    workspace: Workspace,
) -> None:
    journal = Journal(workspace, "ses_1")
    await run(workspace, journal, "t", "c", "create_directory", {"path": "made"})
    (workspace.root / "made" / "mine.txt").write_text("not the agent's")
    with pytest.raises(UndoRefused, match=r"made/ now holds made/mine\.txt"):
        journal.undo()
    assert (workspace.root / "made" / "mine.txt").exists()


async def test_a_failed_call_and_other_sessions_are_not_undone(workspace: Workspace) -> None:
    mine, theirs = Journal(workspace, "ses_1"), Journal(workspace, "ses_2")
    await run(workspace, theirs, "t2", "c", "write_file", {"path": "theirs.txt", "content": "x"})
    with pytest.raises(Exception, match="no such file"):
        await run(workspace, mine, "t1", "c", "delete_file", {"path": "missing.txt"})
    assert mine.turns() == []
    with pytest.raises(UndoRefused):
        mine.undo()
    assert (workspace.root / "theirs.txt").exists()
    assert [t.turn_id for t in theirs.turns()] == ["t2"]


async def test_the_journal_is_bounded_dropping_the_oldest_turns_first(
    workspace: Workspace,
) -> None:
    journal = Journal(workspace, "ses_1", max_bytes=2500)
    for turn in range(5):  # each turn's pre-image is a distinct 1000-byte file
        (workspace.root / "big.bin").write_bytes(bytes([turn]) * 1000)
        args: JSONObject = {"path": "big.bin", "content": "small"}
        await run(workspace, journal, f"turn_{turn}", "c", "write_file", args)
    assert [t.turn_id for t in journal.turns()] == ["turn_3", "turn_4"]
    blobs = list((workspace.root / JOURNAL_DIR / "blobs").iterdir())
    assert sum(b.stat().st_size for b in blobs) <= 2500  # dropped turns' blobs are deleted
    assert journal.undo().turns == ("turn_4",)
    assert (workspace.root / "big.bin").read_bytes() == bytes([4]) * 1000


async def test_originals_are_what_each_path_was_before_the_first_change(
    workspace: Workspace,
) -> None:
    journal = Journal(workspace, "ses_1")
    await run(workspace, journal, "t1", "c1", "write_file", {"path": "over.txt", "content": "1"})
    await run(workspace, journal, "t2", "c2", "write_file", {"path": "over.txt", "content": "2"})
    originals = journal.originals()
    assert journal.blob(originals["over.txt"]) == b"old contents\n"


async def test_the_state_folder_keeps_itself_out_of_git(workspace: Workspace) -> None:
    journal = Journal(workspace, "ses_1")
    args: JSONObject = {"path": "a.txt", "content": "x"}
    await run(workspace, journal, "turn_1", "call_1", "write_file", args)
    ignore = workspace.root / ".agent-runtime" / ".gitignore"
    assert ignore.read_text(encoding="utf-8").splitlines()[-1] == "*"
