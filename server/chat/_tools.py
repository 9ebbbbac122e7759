"""The terminal client's workspace: runs the IDE tools of SPEC §4.2 inside one directory.

:class:`Workspace` executes ``read_file``, ``write_file``, ``apply_diff``,
``list_files``, ``search_files``, ``create_directory``, ``delete_file``,
``move_file`` and ``execute_command`` for real. Every path is confined to the
workspace: absolute paths, ``~``, drive letters and ``..`` escapes are refused, and
symlinks are resolved before the check, so a link pointing outside cannot be used
to escape either (``_paths``). A refusal or failure raises :class:`ToolFailure`,
whose text the client sends back as the tool result's ``error`` (the LLM reads it).

Choices where SPEC is silent (also what the LLM is told in error texts):

- ``apply_diff`` needs the search text to occur exactly once (a second occurrence
  would make the edit ambiguous); CRLF files accept LF search text.
- ``move_file`` never overwrites an existing destination.
- ``list_files``/``search_files`` print workspace-relative paths (usable as tool
  arguments) and skip VCS, cache and virtualenv directories when recursing.
- ``execute_command`` runs through the shell with stdin closed, stdout and stderr
  merged, in its own process group (killed as a whole on timeout, on cancel and
  when the user cancels the turn), and keeps the first and last half of
  ``MAX_OUTPUT`` bytes of output (``_command``). Its default timeout is the
  client's ``--command-timeout``; a call's ``timeout_s`` overrides it.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import trio

from agents import TOOLS, ToolError, validate_arguments
from sessions import JSON, JSONObject

from ._apply_diff import search_replace as search_replace  # re-exported: the ACP adapter
from ._command import KILL_GRACE, MAX_OUTPUT, ToolFailure, run_command
from ._diff import changed_lines, unified_diff
from ._paths import STATE_DIR, ConfinedRoot, in_state_dir
from ._text import plural

DEFAULT_TIMEOUT: Final = 60.0
MAX_TIMEOUT: Final = 3600.0
MAX_FILE_BYTES: Final = 10 * 1024 * 1024
MAX_ENTRIES: Final = 2000
MAX_MATCHES: Final = 500
SKIP_DIRS: Final = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        "node_modules",
        ".venv",
        "venv",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".nox",
        ".tox",
        ".agent-runtime",  # the client's own history and undo journal
    }
)

IDE_TOOLS: Final = frozenset(name for name, tool in TOOLS.items() if tool.side == "ide")


class Workspace(ConfinedRoot):
    """Executes IDE tool calls inside *root* (which must be an existing directory).

    Args:
        root: the workspace directory.
        max_output: bytes of text a result may carry before it is truncated.
        default_timeout: ``execute_command`` timeout when the call gives none.
        kill_grace: seconds between SIGTERM and SIGKILL when a command is stopped.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_output: int = MAX_OUTPUT,
        default_timeout: float = DEFAULT_TIMEOUT,
        kill_grace: float = KILL_GRACE,
    ) -> None:
        super().__init__(root)
        self.max_output = max_output
        self.default_timeout = default_timeout
        self.kill_grace = kill_grace
        self._handlers: dict[str, Callable[[JSONObject], JSON]] = {
            "read_file": self._read_file,
            "write_file": self._write_file,
            "apply_diff": self._apply_diff,
            "list_files": self._list_files,
            "search_files": self._search_files,
            "create_directory": self._create_directory,
            "delete_file": self._delete_file,
            "move_file": self._move_file,
        }

    def resolve(self, value: str, key: str = "path") -> Path:
        """Like :meth:`ConfinedRoot.resolve`, refusing the client's own state folder too."""
        return self._outside_state(super().resolve(value, key), value, key)

    def entry(self, value: str, key: str = "path") -> Path:
        """Like :meth:`ConfinedRoot.entry`, refusing the client's own state folder too."""
        return self._outside_state(super().entry(value, key), value, key)

    def _outside_state(self, path: Path, value: str, key: str) -> Path:
        """*path*, unless it is in ``.agent-runtime/`` (history and undo journal: not the
        agent's to change; a tampered journal would make ``/undo`` write anywhere)."""
        if path != self.root and in_state_dir(path.relative_to(self.root).as_posix()):
            raise ToolFailure(
                f"{key} {value!r} is inside {STATE_DIR}/, the client's own state folder "
                "(chat history and undo journal); tools may not read or change it"
            )
        return path

    async def execute(
        self, name: str, arguments: JSONObject, *, stop: trio.Event | None = None
    ) -> JSON:
        """Run tool *name* with *arguments*; returns the JSON result for the server.

        Setting *stop* kills a running ``execute_command`` (the user cancelled the
        turn); its failure then says so. File operations ignore it.

        Raises:
            ToolFailure: unknown tool, invalid arguments, a path outside the
                workspace, or the operation failed (the message says why).

        Cancellation: file operations run in a worker thread and complete even if
        cancelled (a half-written file would be worse); a running command's
        process group is killed (SIGTERM, then SIGKILL after ``kill_grace`` s).
        """
        if name not in IDE_TOOLS:
            tools = ", ".join(sorted(IDE_TOOLS))
            raise ToolFailure(f"unknown tool {name!r}; this client runs {tools}")
        try:
            arguments = validate_arguments(name, arguments)
        except ToolError as error:
            raise ToolFailure(str(error)) from None
        try:
            if name == "execute_command":
                return await self._execute_command(arguments, stop)
            return await trio.to_thread.run_sync(self._handlers[name], arguments)
        except OSError as error:  # what the handlers do not anticipate still reads well
            raise ToolFailure(f"{name}: {error.strerror or error}") from None

    # -- file tools (run in a worker thread) ----------------------------------

    def _read_text(self, path: Path, shown: str, *, exact: bool = False) -> str:
        """The file's text; undecodable bytes replaced, or refused when *exact* (an
        edit writes the whole text back: a replaced byte would change the file)."""
        if not path.exists():
            raise ToolFailure(f"{shown}: no such file")
        if path.is_dir():
            raise ToolFailure(f"{shown} is a directory; use list_files")
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                # A FIFO or a device would block the read, and with it the client.
                raise ToolFailure(f"{shown} is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise ToolFailure(f"{shown} is too large ({plural(info.st_size, 'byte')})")
            data = path.read_bytes()
        except OSError as error:
            raise ToolFailure(f"cannot read {shown}: {error.strerror}") from None
        if b"\x00" in data[:8192]:
            raise ToolFailure(f"{shown} looks like a binary file")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            if exact:
                raise ToolFailure(
                    f"{shown} is not UTF-8 text (byte {error.start}); editing it would "
                    "change bytes outside the edit: use write_file with the whole content"
                ) from None
            return data.decode("utf-8", errors="replace")

    def _read_file(self, args: JSONObject) -> JSON:
        path = self.resolve(_str(args, "path"))
        shown = self.relative(path)
        text = self._read_text(path, shown)
        start, end = args.get("start_line"), args.get("end_line")
        if start is None and end is None:
            return self._clip(text, "use start_line/end_line to read the rest")
        lines = text.splitlines(keepends=True)
        first = start if isinstance(start, int) else 1
        last = end if isinstance(end, int) else len(lines)
        if first > len(lines):
            length = plural(len(lines), "line")
            raise ToolFailure(f"start_line {first} is past the end of {shown} ({length})")
        if last < first:
            raise ToolFailure(f"end_line {last} is before start_line {first}")
        return self._clip("".join(lines[first - 1 : last]), "read fewer lines at a time")

    def _write_file(self, args: JSONObject) -> JSON:
        path = self.resolve(_str(args, "path"))
        shown = self.relative(path)
        if path.is_dir():
            raise ToolFailure(f"{shown} is a directory")
        existed = path.exists()
        if existed and not stat.S_ISREG(path.stat().st_mode):
            raise ToolFailure(f"{shown} is not a regular file")  # a FIFO would block
        data = _str(args, "content").encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as error:
            raise ToolFailure(f"cannot write {shown}: {error.strerror}") from None
        verb = "overwrote" if existed else "created"
        return f"{verb} {shown} ({plural(len(data), 'byte')})"

    def edited(self, args: JSONObject) -> tuple[Path, str, str]:
        """``(path, old text, new text)`` of an ``apply_diff`` call, without writing.

        Raises:
            ToolFailure: missing file, empty or absent search text, or ambiguous match.
        """
        path = self.resolve(_str(args, "path"))
        shown = self.relative(path)
        search, replace = _str(args, "search"), _str(args, "replace")
        if not search:
            raise ToolFailure("apply_diff: search text must not be empty")
        old = self._read_text(path, shown, exact=True)
        return path, old, search_replace(old, search, replace, shown)

    def _apply_diff(self, args: JSONObject) -> JSON:
        path, old, new = self.edited(args)
        shown = self.relative(path)
        try:
            path.write_bytes(new.encode())
        except OSError as error:
            raise ToolFailure(f"cannot write {shown}: {error.strerror}") from None
        removed, added = changed_lines(old, new)
        return f"edited {shown} (-{removed} +{added} lines)"

    def _walk(self, top: Path, recursive: bool) -> Iterator[Path]:
        """Entries under *top* in sorted order; skips noise directories when recursing."""
        try:
            children = sorted(top.iterdir(), key=lambda p: p.name)
        except OSError as error:
            raise ToolFailure(f"cannot list {self.relative(top)}: {error.strerror}") from None
        for child in children:
            yield child
            descend = recursive and child.name not in SKIP_DIRS
            if descend and child.is_dir() and not child.is_symlink():
                yield from self._walk(child, recursive)

    def _list_files(self, args: JSONObject) -> JSON:
        top = self.resolve(_str(args, "path"))
        if not top.is_dir():
            raise ToolFailure(f"{self.relative(top)} is not a directory")
        lines: list[str] = []
        more = 0
        for entry in self._walk(top, args.get("recursive") is True):
            if len(lines) >= MAX_ENTRIES:
                more += 1
                continue
            suffix = "/" if entry.is_dir() else ""
            lines.append(self.relative(entry) + suffix)
        if not lines:
            return f"{self.relative(top)} is empty"
        if more:
            lines.append(f"[... {plural(more, 'more entry', 'more entries')}; list a subdirectory]")
        return "\n".join(lines)

    def _search_files(self, args: JSONObject) -> JSON:
        top = self.resolve(_str(args, "path"))
        try:
            regex = re.compile(_str(args, "regex"))
        except re.error as error:
            raise ToolFailure(f"search_files: invalid regex: {error}") from None
        pattern = args.get("file_pattern")
        files = [top] if top.is_file() else [p for p in self._walk(top, True) if self._inside(p)]
        matches: list[str] = []
        more = 0
        for path in files:
            rel = self.relative(path)
            if isinstance(pattern, str) and not _glob_match(rel, pattern):
                continue
            try:
                text = self._read_text(path, rel)
            except ToolFailure:
                continue  # binary, huge or unreadable files are not searched
            for number, line in enumerate(text.splitlines(), 1):
                if regex.search(line):
                    if len(matches) >= MAX_MATCHES:
                        more += 1
                        continue
                    matches.append(f"{rel}:{number}: {_clip_line(line)}")
        if not matches:
            return "no matches"
        if more:
            matches.append(f"[... {plural(more, 'more match', 'more matches')}; narrow the search]")
        return self._clip("\n".join(matches), "narrow the search")

    def _inside(self, entry: Path) -> bool:
        """Whether *entry* (found by walking) is a file to search: a symlink only
        if it resolves inside the workspace, as a path the model names must."""
        if not entry.is_file():
            return False
        if not entry.is_symlink():
            return True
        try:
            self.resolve(self.relative(entry))
        except ToolFailure:
            return False
        return True

    def _create_directory(self, args: JSONObject) -> JSON:
        path = self.resolve(_str(args, "path"))
        shown = self.relative(path)
        if path.is_dir():
            return f"directory {shown} already exists"
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            raise ToolFailure(f"{shown} exists and is not a directory") from None
        except OSError as error:
            raise ToolFailure(f"cannot create {shown}: {error.strerror}") from None
        return f"created directory {shown}"

    def _delete_file(self, args: JSONObject) -> JSON:
        path = self.entry(_str(args, "path"))
        shown = self.relative(path)
        if not path.is_symlink():
            if not path.exists():
                raise ToolFailure(f"{shown}: no such file")
            if path.is_dir():
                raise ToolFailure(f"{shown} is a directory; delete_file only deletes files")
        try:
            path.unlink()
        except OSError as error:
            raise ToolFailure(f"cannot delete {shown}: {error.strerror}") from None
        return f"deleted {shown}"

    def _move_file(self, args: JSONObject) -> JSON:
        source = self.entry(_str(args, "source"), "source")
        target = self.entry(_str(args, "destination"), "destination")
        shown_source, shown_target = self.relative(source), self.relative(target)
        if not source.exists() and not source.is_symlink():
            raise ToolFailure(f"{shown_source}: no such file")
        if target.exists() or target.is_symlink():
            raise ToolFailure(f"{shown_target} already exists; delete it first to replace it")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)
        except OSError as error:
            raise ToolFailure(f"cannot move {shown_source}: {error.strerror}") from None
        return f"moved {shown_source} to {shown_target}"

    # -- commands --------------------------------------------------------------

    async def _execute_command(self, args: JSONObject, stop: trio.Event | None) -> JSON:
        command = _str(args, "command")
        cwd_arg = args.get("cwd")
        cwd = self.resolve(cwd_arg, "cwd") if isinstance(cwd_arg, str) else self.root
        if not cwd.is_dir():
            raise ToolFailure(f"cwd {self.relative(cwd)} is not a directory")
        timeout = args.get("timeout_s")
        seconds = float(timeout) if isinstance(timeout, int | float) else self.default_timeout
        seconds = min(seconds, max(MAX_TIMEOUT, self.default_timeout))
        return await run_command(
            command, cwd, seconds, self.max_output, stop=stop, grace=self.kill_grace
        )

    def _clip(self, text: str, advice: str) -> str:
        data = text.encode()
        if len(data) <= self.max_output:
            return text
        kept = data[: self.max_output].decode("utf-8", errors="ignore")
        more = plural(len(data) - self.max_output, "more byte")
        return f"{kept}\n[... truncated: {more}; {advice}]"

    # -- approval previews -----------------------------------------------------

    def preview(self, name: str, args: JSONObject) -> str | None:
        """A unified diff of what a ``write_file``/``apply_diff`` call would change.

        ``None`` for other tools; a one-line explanation when no diff can be made
        (the call would fail). Reads files synchronously: call it in a thread.
        """
        try:
            if name == "write_file":
                path = self.resolve(_str(args, "path"))
                shown = self.relative(path)
                old = self._read_text(path, shown) if path.is_file() else ""
                new = _str(args, "content")
                source = f"a/{shown}" if path.exists() else "/dev/null"
            elif name == "apply_diff":
                path, old, new = self.edited(args)
                shown = self.relative(path)
                source = f"a/{shown}"
            else:
                return None
        except (ToolFailure, KeyError) as error:
            return f"(no preview: {error})"
        return unified_diff(old, new, source, f"b/{shown}")


def _str(args: JSONObject, key: str) -> str:
    value = args[key]
    if not isinstance(value, str):
        raise ToolFailure(f"{key} must be a string")
    return value


def _glob_match(rel: str, pattern: str) -> bool:
    """``*.py`` matches by file name; a pattern with ``/`` matches the relative path."""
    if "/" in pattern:
        return fnmatch.fnmatchcase(rel, pattern)
    return fnmatch.fnmatchcase(posixpath.basename(rel), pattern)


def _clip_line(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"
