"""The IDE tools of an ACP session: through the client where it offers a method, else here.

An editor's buffers are the truth about the files it shows, so a client that
advertises ``fs.readTextFile`` / ``fs.writeTextFile`` reads and writes them
(unsaved changes included), and one that advertises ``terminal`` runs commands
where the user can watch them:

========================  =====================================================
tool                      through the client
========================  =====================================================
``read_file``             ``fs/read_text_file`` (``start_line``/``end_line`` →
                          ``line``/``limit``)
``write_file``            ``fs/read_text_file`` (the diff's old text; a failure
                          reads as a new file), then ``fs/write_text_file``
``apply_diff``            read, the search/replace of the terminal client (the
                          search text must occur exactly once), write
``execute_command``       ``terminal/create`` (``sh -c COMMAND`` in the call's
                          cwd), ``terminal/wait_for_exit`` (the call's
                          ``timeout_s``, at most the runtime's tool timeout),
                          ``terminal/kill`` on timeout or cancel,
                          ``terminal/output``, and ``terminal/release`` always
                          (a ``terminal/create`` answered after a cancel
                          included)
========================  =====================================================

Everything else (``list_files``, ``search_files``, ``create_directory``,
``delete_file``, ``move_file``), and any of the above the client did not
advertise, runs in the adapter on the session's cwd with the terminal client's
:class:`~server.chat.Workspace`. Either way every path is confined to the cwd
first, with its rules (no absolute paths, no ``..`` escapes, symlinks resolved),
and the client is only ever given absolute paths inside it.

A failure raises :class:`ToolFailure`; its text is the ``tool_result`` error the
LLM reads.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import trio
from attrs import frozen

from agents import ToolError, validate_arguments
from sessions import JSON, JSONObject

from ..chat import Workspace
from ..chat._command import MAX_OUTPUT, ToolFailure
from ..chat._diff import changed_lines
from ..chat._text import plural
from ..chat._tools import IDE_TOOLS, search_replace
from ._capabilities import ClientCaps
from ._connection import Peer, Undo
from ._jsonrpc import RpcError
from ._mapping import diff_content

# Seconds the shielded clean-up of a terminal (kill, release) may take.
RELEASE_TIMEOUT: Final = 5.0

Updater = Callable[[JSONObject], Awaitable[None]]


@frozen
class ToolOutcome:
    """A call's result for the runtime and, optionally, what the finished call shows."""

    result: JSON
    content: list[JSON] | None = None


def _clip(text: str, advice: str) -> str:
    data = text.encode()
    if len(data) <= MAX_OUTPUT:
        return text
    kept = data[:MAX_OUTPUT].decode("utf-8", errors="ignore")
    return f"{kept}\n[... truncated: {plural(len(data) - MAX_OUTPUT, 'more byte')}; {advice}]"


def _object(value: JSON) -> JSONObject:
    return value if isinstance(value, dict) else {}


class ToolRunner:
    """Runs one session's IDE tool calls (see the module docstring).

    *tool_timeout* caps a command's run time (the runtime gives up on the call
    after that long anyway).
    """

    def __init__(
        self,
        peer: Peer,
        session_id: str,
        workspace: Workspace,
        caps: ClientCaps,
        *,
        tool_timeout: float,
    ) -> None:
        self.peer = peer
        self.session_id = session_id
        self.workspace = workspace
        self.caps = caps
        self.tool_timeout = tool_timeout

    async def run(
        self, call_id: str, name: str, arguments: JSONObject, update: Updater
    ) -> ToolOutcome:
        """Execute call *call_id*; *update* sends a ``tool_call_update``'s fields meanwhile.

        Raises:
            ToolFailure: unknown tool, invalid arguments, a path outside the cwd,
                or the operation failed (the message says why).
            ConnectionClosed: the client went away.

        Cancellation: a client request is abandoned; a command is killed and its
        terminal released (shielded, bounded by :data:`RELEASE_TIMEOUT`), also when
        ``terminal/create`` is answered only after the cancel (bounded by
        :data:`~._connection.UNDO_TIMEOUT`); a local file operation completes (as
        in the terminal client).
        """
        if name not in IDE_TOOLS:
            raise ToolFailure(
                f"unknown tool {name!r}; this client runs {', '.join(sorted(IDE_TOOLS))}"
            )
        try:
            args = validate_arguments(name, arguments)
        except ToolError as error:
            raise ToolFailure(str(error)) from None
        caps = self.caps
        if name == "read_file" and caps.read_text_file:
            return await self._read_file(args)
        if name == "write_file" and caps.write_text_file:
            return await self._write_file(args)
        if name == "apply_diff" and caps.read_text_file and caps.write_text_file:
            return await self._apply_diff(args)
        if name == "execute_command" and caps.terminal:
            return await self._terminal(call_id, args, update)
        return await self._local(name, args)

    # -- through the client ------------------------------------------------------------

    async def _call(
        self, method: str, params: JSONObject, *, undo: Undo | None = None
    ) -> JSONObject:
        try:
            return _object(
                await self.peer.request(method, {"sessionId": self.session_id, **params}, undo=undo)
            )
        except RpcError as error:
            raise ToolFailure(f"{method} failed in the editor: {error.message}") from None

    def _path(self, args: JSONObject, key: str = "path") -> tuple[Path, str]:
        value = args[key]
        assert isinstance(value, str)  # schema-checked
        path = self.workspace.resolve(value, key)
        return path, self.workspace.relative(path)

    async def _read_text(self, path: Path, shown: str) -> str:
        result = await self._call("fs/read_text_file", {"path": str(path)})
        content = result.get("content")
        if not isinstance(content, str):
            raise ToolFailure(f"cannot read {shown}: the editor sent no text")
        return content

    async def _read_file(self, args: JSONObject) -> ToolOutcome:
        path, shown = self._path(args)
        params: JSONObject = {"path": str(path)}
        start, end = args.get("start_line"), args.get("end_line")
        if isinstance(start, int) or isinstance(end, int):
            first = start if isinstance(start, int) else 1
            if isinstance(end, int):
                if end < first:
                    raise ToolFailure(f"end_line {end} is before start_line {first}")
                params["limit"] = end - first + 1
            params["line"] = first
        result = await self._call("fs/read_text_file", params)
        content = result.get("content")
        if not isinstance(content, str):
            raise ToolFailure(f"cannot read {shown}: the editor sent no text")
        return ToolOutcome(_clip(content, "use start_line/end_line to read the rest"))

    async def _old_text(self, path: Path, shown: str) -> str | None:
        """The file's text before an edit, ``None`` if it cannot be read (a new file)."""
        if self.caps.read_text_file:
            try:
                return await self._read_text(path, shown)
            except ToolFailure:
                return None
        return await trio.to_thread.run_sync(_local_text, path)

    async def _write_file(self, args: JSONObject) -> ToolOutcome:
        path, shown = self._path(args)
        content = args["content"]
        assert isinstance(content, str)
        old = await self._old_text(path, shown)
        await self._call("fs/write_text_file", {"path": str(path), "content": content})
        verb = "created" if old is None else "overwrote"
        size = plural(len(content.encode()), "byte")
        return ToolOutcome(f"{verb} {shown} ({size})", [diff_content(str(path), old, content)])

    async def _apply_diff(self, args: JSONObject) -> ToolOutcome:
        path, shown = self._path(args)
        search, replace = args["search"], args["replace"]
        assert isinstance(search, str) and isinstance(replace, str)
        old = await self._read_text(path, shown)
        new = search_replace(old, search, replace, shown)
        await self._call("fs/write_text_file", {"path": str(path), "content": new})
        removed, added = changed_lines(old, new)
        return ToolOutcome(
            f"edited {shown} (-{removed} +{added} lines)", [diff_content(str(path), old, new)]
        )

    async def _terminal(self, call_id: str, args: JSONObject, update: Updater) -> ToolOutcome:
        command = args["command"]
        assert isinstance(command, str)
        cwd = (
            self._path(args, "cwd")[0] if isinstance(args.get("cwd"), str) else self.workspace.root
        )
        timeout = args.get("timeout_s")
        seconds = self.tool_timeout
        if isinstance(timeout, int | float) and not isinstance(timeout, bool):
            seconds = min(float(timeout), seconds)
        shell = ["cmd", "/c"] if sys.platform == "win32" else ["sh", "-c"]
        created = await self._call(
            "terminal/create",
            {
                "command": shell[0],
                "args": [*shell[1:], command],
                "cwd": str(cwd),
                "outputByteLimit": MAX_OUTPUT,
            },
            # The editor starts the command as it reads the request: cancelled before
            # its answer, the terminal it names must still be killed and released.
            undo=self._release_abandoned,
        )
        terminal_id = created.get("terminalId")
        if not isinstance(terminal_id, str):
            raise ToolFailure("terminal/create: the editor sent no terminalId")
        ident: JSONObject = {"terminalId": terminal_id}
        exited: JSONObject | None = None
        killed = False
        try:
            await update({"toolCallId": call_id, "content": [{"type": "terminal", **ident}]})
            with trio.move_on_after(seconds):
                exited = await self._call("terminal/wait_for_exit", ident)
            if exited is None:
                await self._call("terminal/kill", ident)
                killed = True
            output = await self._call("terminal/output", ident)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT):
                await self._release(ident, kill=exited is None and not killed)
        text = output.get("output")
        text = text if isinstance(text, str) else ""
        if exited is None:
            raise ToolFailure(
                f"execute_command: timed out after {seconds:g} s; the command was killed. "
                f"Output so far:\n{text}"
            )
        status = exited or _object(output.get("exitStatus"))
        result: JSONObject = {"exit_code": status.get("exitCode"), "output": text}
        if isinstance(status.get("signal"), str):
            result["signal"] = status["signal"]
        if output.get("truncated") is True:
            result["truncated"] = True
        return ToolOutcome(result, [{"type": "terminal", **ident}])

    async def _release_abandoned(self, created: JSON) -> None:
        terminal_id = _object(created).get("terminalId")
        if isinstance(terminal_id, str):
            await self._release({"terminalId": terminal_id}, kill=True)

    async def _release(self, ident: JSONObject, *, kill: bool) -> None:
        """Kill (when still running) and release a terminal; failures are only logged."""
        for method in ("terminal/kill", "terminal/release") if kill else ("terminal/release",):
            try:
                await self._call(method, ident)
            except Exception:  # the editor already dropped it, or is gone: nothing to undo
                continue

    # -- here ------------------------------------------------------------------------

    async def _local(self, name: str, args: JSONObject) -> ToolOutcome:
        content: list[JSON] | None = None
        if name == "apply_diff":
            path, before, after = await trio.to_thread.run_sync(self.workspace.edited, args)
            content = [diff_content(str(path), before, after)]
        elif name == "write_file":
            path = self._path(args)[0]
            new = args["content"]
            assert isinstance(new, str)
            old: str | None = await trio.to_thread.run_sync(_local_text, path)
            content = [diff_content(str(path), old, new)]
        result = await self.workspace.execute(name, args)
        return ToolOutcome(result, content)


def _local_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
