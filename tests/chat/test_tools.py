"""The chat client's workspace executor: every IDE tool, confinement, limits."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from server.chat import Workspace
from server.chat._command import OutputBuffer, ToolFailure
from server.chat._diff import unified_diff
from sessions import JSON, JSONObject


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def ws(root: Path) -> Workspace:
    return Workspace(root)


async def run(ws: Workspace, name: str, **arguments: JSON) -> JSON:
    return await ws.execute(name, arguments)


async def fails(ws: Workspace, name: str, **arguments: JSON) -> str:
    with pytest.raises(ToolFailure) as info:
        await ws.execute(name, arguments)
    return str(info.value)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def same_path(text: str, path: Path) -> bool:
    return Path(text).resolve() == path.resolve()


def as_dict(value: JSON) -> JSONObject:
    assert isinstance(value, dict), value
    return value


# -- read_file / write_file ------------------------------------------------------------


async def test_write_creates_parents_and_read_returns_content(ws: Workspace, root: Path) -> None:
    result = await run(ws, "write_file", path="src/pkg/mod.py", content="a = 1\n")
    assert result == "created src/pkg/mod.py (6 bytes)"
    assert (root / "src/pkg/mod.py").read_text() == "a = 1\n"
    assert await run(ws, "read_file", path="src/pkg/mod.py") == "a = 1\n"
    again = await run(ws, "write_file", path="src/pkg/mod.py", content="b")
    assert again == "overwrote src/pkg/mod.py (1 byte)"


async def test_read_line_ranges(ws: Workspace, root: Path) -> None:
    (root / "f.txt").write_text("one\ntwo\nthree\nfour\n")
    assert await run(ws, "read_file", path="f.txt", start_line=2, end_line=3) == "two\nthree\n"
    assert await run(ws, "read_file", path="f.txt", start_line=3) == "three\nfour\n"
    assert await run(ws, "read_file", path="f.txt", end_line=1) == "one\n"
    assert "past the end" in await fails(ws, "read_file", path="f.txt", start_line=9)
    assert "before start_line" in await fails(
        ws, "read_file", path="f.txt", start_line=3, end_line=2
    )


async def test_read_errors(ws: Workspace, root: Path) -> None:
    (root / "d").mkdir()
    (root / "blob.bin").write_bytes(b"\x00\x01\x02")
    assert "no such file" in await fails(ws, "read_file", path="missing.txt")
    assert "is a directory" in await fails(ws, "read_file", path="d")
    assert "binary" in await fails(ws, "read_file", path="blob.bin")


async def test_read_truncates_large_files(root: Path) -> None:
    ws = Workspace(root, max_output=100)
    (root / "big.txt").write_text("x" * 1000)
    text = await run(ws, "read_file", path="big.txt")
    assert isinstance(text, str)
    assert text.startswith("x" * 100)
    assert "truncated: 900 more bytes" in text


async def test_write_refuses_directory(ws: Workspace, root: Path) -> None:
    (root / "d").mkdir()
    assert "is a directory" in await fails(ws, "write_file", path="d", content="x")


# -- apply_diff --------------------------------------------------------------------------


async def test_apply_diff_replaces_exactly_once(ws: Workspace, root: Path) -> None:
    (root / "m.py").write_text("def f():\n    return 1\n")
    result = await run(ws, "apply_diff", path="m.py", search="return 1", replace="return 2")
    assert result == "edited m.py (-1 +1 lines)"
    assert (root / "m.py").read_text() == "def f():\n    return 2\n"


async def test_apply_diff_search_not_found_is_a_clear_error(ws: Workspace, root: Path) -> None:
    (root / "m.py").write_text("x = 1\n")
    error = await fails(ws, "apply_diff", path="m.py", search="y = 2", replace="z")
    assert "search text not found in m.py" in error
    assert (root / "m.py").read_text() == "x = 1\n"
    hint = await fails(ws, "apply_diff", path="m.py", search="  x = 1  ", replace="z")
    assert "whitespace" in hint


async def test_apply_diff_ambiguous_and_empty_search(ws: Workspace, root: Path) -> None:
    (root / "m.py").write_text("a\na\n")
    assert "occurs 2 times" in await fails(ws, "apply_diff", path="m.py", search="a", replace="b")
    assert "must not be empty" in await fails(ws, "apply_diff", path="m.py", search="", replace="b")
    assert "no such file" in await fails(ws, "apply_diff", path="n.py", search="a", replace="b")


async def test_apply_diff_accepts_lf_search_in_crlf_file(ws: Workspace, root: Path) -> None:
    (root / "w.txt").write_bytes(b"one\r\ntwo\r\n")
    await run(ws, "apply_diff", path="w.txt", search="one\ntwo", replace="1\n2")
    assert (root / "w.txt").read_bytes() == b"1\r\n2\r\n"


# -- list_files / search_files -------------------------------------------------------------


async def test_list_files(ws: Workspace, root: Path) -> None:
    (root / "src/sub").mkdir(parents=True)
    (root / "src/a.py").write_text("")
    (root / "src/sub/b.py").write_text("")
    (root / ".git").mkdir()
    (root / ".git/config").write_text("")
    (root / "top.txt").write_text("")
    assert await run(ws, "list_files", path=".") == ".git/\nsrc/\ntop.txt"
    assert await run(ws, "list_files", path="src") == "src/a.py\nsrc/sub/"
    recursive = await run(ws, "list_files", path=".", recursive=True)
    assert recursive == ".git/\nsrc/\nsrc/a.py\nsrc/sub/\nsrc/sub/b.py\ntop.txt"
    (root / "empty").mkdir()
    assert await run(ws, "list_files", path="empty") == "empty is empty"
    assert "not a directory" in await fails(ws, "list_files", path="top.txt")


async def test_search_files(ws: Workspace, root: Path) -> None:
    (root / "pkg").mkdir()
    (root / "pkg/a.py").write_text("import os\nTODO = 1\n")
    (root / "pkg/b.txt").write_text("TODO later\n")
    (root / "pkg/c.bin").write_bytes(b"\x00TODO")
    found = await run(ws, "search_files", path=".", regex=r"TODO\b")
    assert found == "pkg/a.py:2: TODO = 1\npkg/b.txt:1: TODO later"
    only_py = await run(ws, "search_files", path="pkg", regex="TODO", file_pattern="*.py")
    assert only_py == "pkg/a.py:2: TODO = 1"
    assert await run(ws, "search_files", path=".", regex="nothing here") == "no matches"
    assert "invalid regex" in await fails(ws, "search_files", path=".", regex="(")


# -- create / delete / move ----------------------------------------------------------------


async def test_create_directory(ws: Workspace, root: Path) -> None:
    assert await run(ws, "create_directory", path="a/b/c") == "created directory a/b/c"
    assert (root / "a/b/c").is_dir()
    assert await run(ws, "create_directory", path="a/b") == "directory a/b already exists"
    (root / "f").write_text("")
    assert "not a directory" in await fails(ws, "create_directory", path="f")


async def test_delete_file(ws: Workspace, root: Path) -> None:
    (root / "f.txt").write_text("x")
    (root / "d").mkdir()
    assert await run(ws, "delete_file", path="f.txt") == "deleted f.txt"
    assert not (root / "f.txt").exists()
    assert "no such file" in await fails(ws, "delete_file", path="f.txt")
    assert "is a directory" in await fails(ws, "delete_file", path="d")
    assert "workspace root" in await fails(ws, "delete_file", path=".")


async def test_move_file(ws: Workspace, root: Path) -> None:
    (root / "a.txt").write_text("A")
    (root / "b.txt").write_text("B")
    assert "already exists" in await fails(ws, "move_file", source="a.txt", destination="b.txt")
    result = await run(ws, "move_file", source="a.txt", destination="new/dir/a.txt")
    assert result == "moved a.txt to new/dir/a.txt"
    assert (root / "new/dir/a.txt").read_text() == "A"
    assert not (root / "a.txt").exists()
    assert "no such file" in await fails(ws, "move_file", source="a.txt", destination="c.txt")


# -- confinement ---------------------------------------------------------------------------

ESCAPES = ["../evil.txt", "a/../../evil.txt", "/etc/passwd", "~/evil.txt", "C:/evil.txt", ""]


@pytest.mark.parametrize("path", ESCAPES)
@pytest.mark.parametrize(
    ("tool", "extra"),
    [
        ("read_file", {}),
        ("write_file", {"content": "x"}),
        ("apply_diff", {"search": "a", "replace": "b"}),
        ("list_files", {}),
        ("search_files", {"regex": "x"}),
        ("create_directory", {}),
        ("delete_file", {}),
    ],
)
async def test_paths_outside_the_workspace_are_refused(
    ws: Workspace, tmp_path: Path, tool: str, extra: JSONObject, path: str
) -> None:
    error = await fails(ws, tool, path=path, **extra)
    assert "workspace" in error or "must not be empty" in error
    assert names(tmp_path) == ["ws"]


async def test_move_and_command_escapes_are_refused(ws: Workspace, root: Path) -> None:
    (root / "a.txt").write_text("A")
    assert "escapes" in await fails(ws, "move_file", source="a.txt", destination="../a.txt")
    assert "escapes" in await fails(ws, "move_file", source="../x", destination="b.txt")
    assert "escapes" in await fails(ws, "execute_command", command="pwd", cwd="..")
    assert (root / "a.txt").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
async def test_symlinks_pointing_outside_are_refused(
    ws: Workspace, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "link").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "secret.txt")
    assert "outside the workspace" in await fails(ws, "read_file", path="link/secret.txt")
    assert "outside the workspace" in await fails(ws, "read_file", path="file-link")
    error = await fails(ws, "write_file", path="link/new.txt", content="x")
    assert "outside the workspace" in error
    assert names(outside) == ["secret.txt"]
    # Removing the link itself is fine: the target outside is untouched.
    assert await run(ws, "delete_file", path="file-link") == "deleted file-link"
    assert (outside / "secret.txt").read_text() == "secret"


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
async def test_a_search_never_reads_through_a_symlink_pointing_outside(
    ws: Workspace, root: Path, tmp_path: Path
) -> None:
    """A planted ``notes.md -> ~/.ssh/id_rsa`` must not be searchable (a read tool:
    no approval is asked), while a link to a file inside still is."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-OUTSIDE\n")
    (root / "deep").mkdir()
    (root / "deep/notes.md").symlink_to(secret)
    (root / "link.txt").symlink_to(secret)
    (root / "own.txt").write_text("SECRET-INSIDE\n")
    (root / "own-link.txt").symlink_to(root / "own.txt")
    found = await run(ws, "search_files", path=".", regex="SECRET")
    assert found == "own-link.txt:1: SECRET-INSIDE\nown.txt:1: SECRET-INSIDE"
    assert await run(ws, "search_files", path="deep", regex=".") == "no matches"


async def test_a_fifo_is_refused_instead_of_blocking_the_client(ws: Workspace, root: Path) -> None:
    os.mkfifo(root / "pipe.txt")
    with trio.fail_after(5):  # no writer: opening it would block for good
        assert "not a regular file" in await fails(ws, "read_file", path="pipe.txt")
        assert "not a regular file" in await fails(ws, "write_file", path="pipe.txt", content="x")
        found = await run(ws, "search_files", path=".", regex=".")
        edit = await fails(ws, "apply_diff", path="pipe.txt", search="a", replace="b")
    assert found == "no matches"
    assert "not a regular file" in edit


async def test_an_edit_of_a_file_that_is_not_utf8_is_refused(ws: Workspace, root: Path) -> None:
    """``apply_diff`` writes the whole text back: a replaced byte would change the file
    outside the edit (and the approval's diff would not show it)."""
    (root / "latin.txt").write_bytes(b"caf\xe9 latin1\n")
    error = await fails(ws, "apply_diff", path="latin.txt", search="latin1", replace="L1")
    assert "not UTF-8 text (byte 3)" in error
    assert (root / "latin.txt").read_bytes() == b"caf\xe9 latin1\n"
    assert await run(ws, "read_file", path="latin.txt") == "caf\ufffd latin1\n"  # reading is fine


async def test_server_side_and_unknown_tools_are_refused(ws: Workspace) -> None:
    assert "unknown tool" in await fails(ws, "switch_mode", mode="coder", reason="x")
    assert "unknown tool" in await fails(ws, "rm_rf")
    assert "required property" in await fails(ws, "write_file", path="x")


# -- execute_command -------------------------------------------------------------------------


async def test_command_output_exit_code_and_cwd(ws: Workspace, root: Path) -> None:
    (root / "sub").mkdir()
    result = as_dict(await run(ws, "execute_command", command="echo out; echo err >&2; exit 3"))
    assert result == {"exit_code": 3, "output": "out\nerr\n"}
    where = as_dict(await run(ws, "execute_command", command="pwd", cwd="sub"))
    assert where["exit_code"] == 0
    assert same_path(str(where["output"]).strip(), root / "sub")
    assert "not a directory" in await fails(ws, "execute_command", command="pwd", cwd="nope")


async def test_command_output_is_truncated_keeping_head_and_tail(root: Path) -> None:
    ws = Workspace(root, max_output=1000)
    command = f"{sys.executable} -c \"print('H' * 600 + 'x' * 5000 + 'T' * 600)\""
    result = as_dict(await run(ws, "execute_command", command=command))
    output = result["output"]
    assert isinstance(output, str)
    assert result["truncated"] is True
    assert output.startswith("H" * 500)
    assert output.rstrip("\n").endswith("T" * 499)
    assert "bytes of output omitted" in output
    assert len(output) < 1200


async def test_command_timeout_kills_it(ws: Workspace) -> None:
    # A command that would outlive the test by far; the bound below proves it was killed.
    with trio.fail_after(20):
        error = await fails(
            ws, "execute_command", command="echo started; sleep 60 & sleep 60", timeout_s=0.5
        )
    assert "timed out after 0.5 s" in error
    assert "started" in error


async def test_command_cancellation_kills_it(ws: Workspace) -> None:
    with trio.move_on_after(0.3) as scope, trio.fail_after(20):
        await run(ws, "execute_command", command="sleep 60")
    assert scope.cancelled_caught


# -- previews and helpers ------------------------------------------------------------------


def test_preview_of_writes_and_edits(ws: Workspace, root: Path) -> None:
    (root / "m.py").write_text("a = 1\nb = 2\n")
    new = ws.preview("write_file", {"path": "new.py", "content": "x = 1\n"})
    assert new is not None
    assert new.splitlines()[:2] == ["--- /dev/null", "+++ b/new.py"]
    assert "+x = 1" in new
    edit = ws.preview("apply_diff", {"path": "m.py", "search": "b = 2", "replace": "b = 3"})
    assert edit is not None
    assert "-b = 2" in edit
    assert "+b = 3" in edit
    missing = ws.preview("apply_diff", {"path": "m.py", "search": "zzz", "replace": "y"})
    assert missing is not None
    assert "search text not found" in missing
    escape = ws.preview("write_file", {"path": "../x", "content": ""})
    assert escape is not None
    assert "escapes" in escape
    assert ws.preview("read_file", {"path": "m.py"}) is None
    assert (root / "m.py").read_text() == "a = 1\nb = 2\n"


def test_unified_diff_marks_missing_final_newline() -> None:
    diff = unified_diff("a\n", "b", "a/f", "b/f")
    assert diff.endswith("+b\n\\ No newline at end of file")
    assert unified_diff("same", "same", "a/f", "b/f") == "(no changes)"


def test_output_buffer() -> None:
    buffer = OutputBuffer(10)
    for chunk in (b"0123", b"4567", b"89ab", b"cdef"):
        buffer.add(chunk)
    assert buffer.omitted == 6
    assert buffer.text() == "01234\n[... 6 bytes of output omitted ...]\nbcdef"
    small = OutputBuffer(10)
    small.add(b"abc")
    assert small.text() == "abc"


def test_workspace_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        Workspace(tmp_path / "missing")
    assert Workspace(tmp_path).root == tmp_path.resolve()
    assert os.path.isabs(Workspace(".").root)
