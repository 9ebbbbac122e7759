"""Checkpoints and undo: the journal restores the workspace byte for byte, or refuses."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

from server.chat._command import ToolFailure
from server.chat._journal import JOURNAL_DIR, Journal, Turn, UndoRefused, journaled
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


# -- the index, the state folders and the blobs are not trusted -------------------------


def index_of(journal: Journal) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((journal.dir / "index.json").read_text())
    return data


def write_index(journal: Journal, data: dict[str, Any]) -> None:
    (journal.dir / "index.json").write_text(json.dumps(data))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("outside")
    (folder / "victim").write_bytes(b"precious\n")
    return folder


async def write_over(
    workspace: Workspace, journal: Journal, notes: list[str] | None = None
) -> None:
    args: JSONObject = {"path": "over.txt", "content": "agent's\n"}
    await journaled(
        journal,
        "t1",
        "c1",
        "write_file",
        args,
        lambda: workspace.execute("write_file", args),
        note=None if notes is None else notes.append,
    )


@pytest.mark.parametrize(
    "field, value",
    [
        ("path", "OUTSIDE"),  # absolute: root / "/x" is "/x"
        ("path", "../OUTSIDE_NAME/victim"),
        ("path", "over.txt/../../OUTSIDE_NAME/victim"),
        ("path", ".agent-runtime/journal/index.json"),
        ("digest", "../../../../OUTSIDE_NAME/victim"),
        ("mode", 2**70),
        ("kind", "bogus"),
    ],
)
async def test_a_tampered_index_entry_is_dropped_with_a_note_and_nothing_outside_changes(
    workspace: Workspace, outside: Path, field: str, value: object
) -> None:
    journal = Journal(workspace, "ses_1")
    await write_over(workspace, journal)
    victim = outside / "victim"
    index = index_of(journal)
    change = index["turns"][0]["entries"][0]["changes"][0]
    if isinstance(value, str):
        value = value.replace("OUTSIDE_NAME", outside.name).replace("OUTSIDE", str(victim))
    if field == "path":  # what the check would find there: the victim, so undo would go ahead
        change["path"] = value
        change["after"] = {"kind": "file", "digest": sha(victim.read_bytes()), "mode": 0o644}
    else:
        change["before"][field] = value
    write_index(journal, index)
    state = snapshot(workspace.root)

    with pytest.raises(UndoRefused, match="nothing to undo"):
        journal.undo()

    assert victim.read_bytes() == b"precious\n"
    assert snapshot(workspace.root) == state
    [note] = journal.take_notes()
    assert "dropped call 'c1' of turn 't1' from index.json" in note


async def test_the_file_tools_refuse_the_state_folder(workspace: Workspace) -> None:
    journal = Journal(workspace, "ses_1")
    await write_over(workspace, journal)  # the journal exists
    (workspace.root / "link").symlink_to(".agent-runtime/journal")
    calls: list[tuple[str, JSONObject]] = [
        ("write_file", {"path": ".agent-runtime/journal/index.json", "content": "{}"}),
        ("write_file", {"path": "link/index.json", "content": "{}"}),
        ("apply_diff", {"path": ".agent-runtime/journal/index.json", "search": "1", "replace": ""}),
        ("read_file", {"path": ".agent-runtime/.gitignore"}),
        ("delete_file", {"path": ".agent-runtime/journal/index.json"}),
        ("create_directory", {"path": ".agent-runtime/x"}),
        ("move_file", {"source": ".agent-runtime/journal", "destination": "j"}),
        ("move_file", {"source": "over.txt", "destination": ".agent-runtime/journal/index.json"}),
    ]
    for tool, args in calls:
        with pytest.raises(ToolFailure, match="the client's own state folder"):
            await run(workspace, journal, "t2", "c", tool, args)
    assert [t.turn_id for t in journal.turns()] == ["t1"]


@pytest.mark.parametrize("linked", [".agent-runtime", ".agent-runtime/journal", JOURNAL_DIR])
async def test_a_symlinked_state_folder_turns_journaling_off_and_is_never_followed(
    workspace: Workspace, outside: Path, linked: str | Path
) -> None:
    link = workspace.root / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    journal = Journal(workspace, "ses_1")
    notes: list[str] = []

    await write_over(workspace, journal, notes)
    await write_over(workspace, journal, notes)

    assert os.listdir(outside) == ["victim"]  # nothing written, deleted
    assert (workspace.root / "over.txt").read_bytes() == b"agent's\n"  # the tool still ran
    assert len(notes) == 1 and "undo journal off for this run" in notes[0]
    assert "is a symlink" in notes[0]
    with pytest.raises(UndoRefused, match="journal is off"):
        journal.undo()


async def test_undo_changes_nothing_when_a_needed_blob_is_missing_or_damaged(
    workspace: Workspace,
) -> None:
    journal = Journal(workspace, "ses_1")
    await write_over(workspace, journal)
    blob = journal.dir / "blobs" / sha(b"old contents\n")
    for damage in ("damaged", "missing"):
        if damage == "damaged":
            blob.write_bytes(b"not the old contents\n")
        else:
            blob.unlink()
        with pytest.raises(UndoRefused, match=r"saved copy of over\.txt cannot be used"):
            journal.undo()
        assert (workspace.root / "over.txt").read_bytes() == b"agent's\n"  # not both gone
    assert len(journal.turns()) == 1


async def test_another_client_keeps_a_pending_pre_image_and_saves_under_the_lock(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, theirs = Journal(workspace, "ses_1"), Journal(workspace, "ses_2")
    args: JSONObject = {"path": "over.txt", "content": "mine\n"}
    pending = mine.before("t1", "c1", "write_file", args)  # my call is under way...
    assert pending is not None
    await workspace.execute("write_file", args)
    other: JSONObject = {"path": "edit.py", "content": "theirs\n"}
    await run(workspace, theirs, "t2", "c2", "write_file", other)  # ...when they save

    load = Journal._load
    locked: list[bool] = []

    def load_checking_the_lock(self: Journal) -> list[Turn]:
        fd = os.open(self.dir / "lock", os.O_RDWR)
        try:  # a second open file description: blocked while the journal holds the lock
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked.append(False)
        except BlockingIOError:
            locked.append(True)
        finally:
            os.close(fd)
        return load(self)

    monkeypatch.setattr(Journal, "_load", load_checking_the_lock)
    mine.after(pending)
    mine.undo()
    assert locked == [True, True]
    assert (workspace.root / "over.txt").read_bytes() == b"old contents\n"
    assert [t.turn_id for t in theirs.turns()] == ["t2"]  # their entry survived my saves


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("README.md/x", id="before-NotADirectoryError"),
        pytest.param("a/" + "n" * 300 + "/f", id="after-ENAMETOOLONG"),
    ],
)
async def test_an_os_error_while_journaling_skips_journaling_and_the_tool_answers(
    workspace: Workspace, path: str
) -> None:
    (workspace.root / "README.md").write_text("a file\n")
    journal = Journal(workspace, "ses_1")
    notes: list[str] = []
    args: JSONObject = {"path": path, "content": "x"}
    with pytest.raises(ToolFailure):  # the tool's own refusal, not an OSError
        await journaled(
            journal,
            "t1",
            "c1",
            "write_file",
            args,
            lambda: workspace.execute("write_file", args),
            note=notes.append,
        )
    assert len(notes) == 1 and notes[0].startswith("[write_file not journaled: ")
    assert journal.turns() == []


async def test_undo_refuses_a_path_whose_directory_became_a_symlink(
    workspace: Workspace, outside: Path
) -> None:
    journal = Journal(workspace, "ses_1")
    args: JSONObject = {"path": "pkg/mod.py", "content": "agent's\n"}
    await run(workspace, journal, "t1", "c1", "write_file", args)
    shutil.rmtree(workspace.root / "pkg")  # what execute_command could do: pkg -> outside
    (outside / "mod.py").write_bytes(b"agent's\n")  # as the agent left it, seen through pkg
    (workspace.root / "pkg").symlink_to(outside, target_is_directory=True)

    with pytest.raises(UndoRefused, match=r"pkg/mod\.py leads through the symlink pkg"):
        journal.undo()

    assert (outside / "mod.py").read_bytes() == b"agent's\n"
    assert len(journal.turns()) == 1
