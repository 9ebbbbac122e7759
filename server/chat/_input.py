"""What the human says to the chat client: lines from the terminal, approvals, answers.

:class:`TerminalInput` reads lines without blocking trio. On a terminal it opens
the tty afresh and reads it through a non-blocking :class:`trio.lowlevel.FdStream`,
so a prompt can be cancelled cleanly (nothing typed is swallowed by a leftover
thread) and the non-blocking mode does not leak into stdout or into an ``$EDITOR``
we start, which use their own open file descriptions. Pipes are read the same
way; regular files, whose reads never block, through a worker thread. Once
:meth:`TerminalInput.use_prompt` has configured it and both stdin and stdout are
terminals, it reads through prompt_toolkit instead (``_prompt``: line editing,
history, completion); :func:`ask` shows a prompt and reads the answer either way.

:class:`Decider` turns an ``approval.requested`` or ``question.asked`` event into the
command fields to send: interactively (keys ``a``/``e``/``r``/``s``) or by the
non-interactive rules (``--yes``, ``--auto-approve`` globs, else reject). What a
rule decided is sent with ``by: "policy"``, so the log does not claim a person
decided; a non-interactive refusal carries the reason ``non-interactive``.

The approval prompt shows every argument in full; one with a control character
in it is shown as an escaped literal, so the terminal cannot be made to display
anything but what would run.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Final, Protocol, TextIO

import trio

from agents import ToolError, validate_arguments
from sessions import JSON, JSONObject

from ._prompt import PromptInput, PromptSettings
from ._render import Renderer
from ._text import exact, needs_escaping, visible
from ._tools import Workspace

NOT_APPROVED: Final = "non-interactive"
NO_ANSWER: Final = "no answer (non-interactive client)"
_MENU: Final = "[a]pprove  [e]dit  [r]eject  [s] approve for this session > "


class LineSource(Protocol):
    async def readline(self) -> str | None:
        """The next line without its newline, or ``None`` at end of input."""
        ...


class TerminalInput:
    """Lines typed on *stdin* (a terminal, a pipe or a file).

    Cancellation: on a terminal or pipe, cancelling :meth:`readline` loses nothing.
    """

    def __init__(self, stdin: TextIO | None = None) -> None:
        self.stdin = stdin if stdin is not None else sys.stdin
        self._stream: trio.lowlevel.FdStream | None = None
        self._buffer = b""
        self._eof = False
        self._mode: str | None = None
        self._settings: PromptSettings | None = None
        self._prompt: PromptInput | None = None

    def use_prompt(self, settings: PromptSettings) -> None:
        """Read through prompt_toolkit with *settings* if stdin and stdout are terminals."""
        self._settings = settings

    def prompter(self) -> PromptInput | None:
        """The prompt_toolkit reader, if this input uses one."""
        if self._mode is None:
            self._open()
        return self._prompt

    def _open(self) -> None:
        self._mode = "thread"
        if sys.platform == "win32":
            return
        try:
            fd = self.stdin.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, OSError, ValueError):
            return
        if os.isatty(fd) and self._settings is not None and _is_tty(sys.stdout):
            self._prompt = PromptInput(self._settings)
            self._mode = "prompt"
            return
        if os.isatty(fd):
            own = os.open(os.ttyname(fd), os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
        elif stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            own = os.dup(fd)
        else:
            return
        self._stream = trio.lowlevel.FdStream(own)
        self._mode = "stream"

    async def readline(self) -> str | None:
        """The next line without its newline, or ``None`` at end of input.

        Cancellation: on a terminal or pipe nothing typed is lost; with a regular
        file the line being read may be lost (such reads do not block anyway).
        """
        if self._mode is None:
            self._open()
        if self._prompt is not None:
            return await self._prompt.readline()
        if self._stream is None:
            line = await trio.to_thread.run_sync(self.stdin.readline, abandon_on_cancel=True)
            return line.rstrip("\r\n") if line else None
        while b"\n" not in self._buffer and not self._eof:
            chunk = await self._stream.receive_some(4096)
            if not chunk:
                self._eof = True
            self._buffer += chunk
        if not self._buffer:
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace").rstrip("\r")

    async def aclose(self) -> None:
        """Close the terminal handle.

        Cancellation: closes anyway.
        """
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


async def ask(
    lines: LineSource, renderer: Renderer, prompt: str, *, chat: bool = False
) -> str | None:
    """Show *prompt* and read the answer from *lines*; ``None`` at end of input.

    *chat* marks the message prompt (history and completion, with prompt_toolkit).

    Cancellation: as *lines*' ``readline``.
    """
    prompter = lines.prompter() if isinstance(lines, TerminalInput) else None
    if prompter is None:
        renderer.prompt(prompt)
        return await lines.readline()
    renderer.end_stream()
    _show_notes(renderer, await prompter.notes())
    with renderer.reading():  # prompt_toolkit draws the line: no status line over it
        line = await prompter.prompt(visible(prompt), chat=chat)
    _show_notes(renderer, await prompter.notes())  # storing the line may have failed
    return line


def _show_notes(renderer: Renderer, notes: list[str]) -> None:
    for text in notes:
        renderer.note(text, "yellow")


class Decider:
    """Answers approvals and questions, asking the human when *interactive*.

    Args:
        yes: approve every request.
        auto_approve: tool-name globs (``read_*``) approved without asking.
        interactive: ask the human (otherwise: reject what is not auto-approved).
        lines: where the human's answers come from (interactive only).
        env: for ``$VISUAL``/``$EDITOR``.
    """

    def __init__(
        self,
        renderer: Renderer,
        workspace: Workspace,
        *,
        yes: bool = False,
        auto_approve: Sequence[str] = (),
        interactive: bool = False,
        lines: LineSource | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.renderer = renderer
        self.workspace = workspace
        self.yes = yes
        self.auto_approve = tuple(auto_approve)
        self.session_globs: list[str] = []  # /auto-approve, for this run of the client
        self.interactive = interactive and lines is not None
        self.lines = lines
        self.env = os.environ if env is None else env
        # Approvals refused because nobody could be asked (the exit status says so).
        self.refused = 0

    def automatic(self, tool: str) -> str | None:
        """Why *tool* is approved without asking, or ``None``."""
        if self.yes:
            return "--yes"
        for glob in self.auto_approve:
            if fnmatch.fnmatchcase(tool, glob):
                return f"--auto-approve {glob}"
        for glob in self.session_globs:
            if fnmatch.fnmatchcase(tool, glob):
                return f"/auto-approve {glob}"
        return None

    def allow(self, glob: str) -> None:
        """Approve tools matching *glob* without asking, from now on (``/auto-approve``)."""
        if glob not in self.session_globs:
            self.session_globs.append(glob)

    async def approval(self, event: JSONObject) -> JSONObject:
        """The ``approval`` command fields (without ``id``) answering *event*.

        Cancellation: safe; nothing has been sent.
        """
        call_id, name = str(event.get("call_id")), str(event.get("name"))
        arguments = event.get("arguments")
        args: JSONObject = arguments if isinstance(arguments, dict) else {}
        base: JSONObject = {"type": "approval", "call_id": call_id}
        reason = self.automatic(name)
        depth = self.renderer.depth(event)
        if reason is not None:
            self.renderer.lines(f"  approving {visible(name)} ({reason})", depth, "dim")
            return base | {"decision": "approve", "by": "policy"}
        if not self.interactive:
            self.refused += 1
            self.renderer.lines(
                f"  refusing {visible(name)}: nobody to ask (non-interactive); "
                f"pass --yes or --auto-approve {visible(name)} to allow it",
                depth,
                "dim",
            )
            return base | {"decision": "reject", "feedback": NOT_APPROVED, "by": "policy"}
        await self._show(name, args)
        while True:
            answer = await self._line(_MENU)
            if answer is None:
                return base | {"decision": "reject", "feedback": "input closed"}
            key = answer.strip().lower()[:1]
            if key == "a":
                return base | {"decision": "approve"}
            if key == "s":
                return base | {"decision": "approve", "remember": "session"}
            if key == "r":
                feedback = (await self._line("feedback for the agent (optional) > ") or "").strip()
                out = base | {"decision": "reject"}
                return out | {"feedback": feedback} if feedback else out
            if key == "e":
                edited = await self._edit(name, args)
                if edited is not None:
                    return base | {"decision": "edit", "arguments": edited}
                continue
            self.renderer.note("  please type a, e, r or s")

    async def _show(self, name: str, args: JSONObject) -> None:
        """What the call would do: its arguments in full and, for edits, the diff."""
        for key, value in args.items():
            if key != "content":  # the diff shows it
                self.renderer.lines(argument_line(key, value), 1)
        preview = await trio.to_thread.run_sync(self.workspace.preview, name, args)
        if preview is not None:
            self.renderer.diff(preview)

    async def _line(self, prompt: str) -> str | None:
        assert self.lines is not None
        return await ask(self.lines, self.renderer, prompt)

    async def _edit(self, name: str, args: JSONObject) -> JSONObject | None:
        """New arguments from ``$VISUAL``/``$EDITOR`` or an inline prompt; ``None`` to go back."""
        editor = self.env.get("VISUAL") or self.env.get("EDITOR")
        if editor:
            try:
                text = await _run_editor(editor, json.dumps(args, indent=2) + "\n")
            except (OSError, ValueError) as error:
                self.renderer.note(f"  cannot run the editor {editor!r}: {error}", "red")
                return None
        else:
            self.renderer.note("  current arguments: " + json.dumps(args))
            text = await self._line("new arguments as one line of JSON (empty: back) > ")
        if text is None or not text.strip():
            return None
        try:
            value: JSON = json.loads(text)
        except ValueError as error:
            self.renderer.note(f"  not valid JSON: {error}", "red")
            return None
        if not isinstance(value, dict):
            self.renderer.note("  the arguments must be a JSON object", "red")
            return None
        try:
            return validate_arguments(name, value)
        except ToolError as error:
            self.renderer.note(f"  invalid arguments: {error}", "red")
            return None

    async def answer(self, event: JSONObject) -> JSONObject:
        """The ``answer`` command fields (without ``id``) for a ``question.asked`` event.

        Cancellation: safe; nothing has been sent.
        """
        question_id = str(event.get("question_id"))
        base: JSONObject = {"type": "answer", "question_id": question_id}
        if not self.interactive:
            self.renderer.lines(f"  answering: {NO_ANSWER}", self.renderer.depth(event), "dim")
            return base | {"text": NO_ANSWER}
        raw = event.get("options")
        options = [o for o in raw if isinstance(o, str)] if isinstance(raw, list) else []
        hint = f" (1-{len(options)} or text)" if options else ""
        while True:
            line = await self._line(f"your answer{hint} > ")
            if line is None:
                return base | {"text": "no answer (input closed)"}
            text = line.strip()
            if text.isdigit() and 1 <= int(text) <= len(options):
                text = options[int(text) - 1]
            if text:
                return base | {"text": text}


def argument_line(key: str, value: JSON) -> str:
    """``key: value`` for an approval prompt: never shortened, and exact.

    A string with a control character (newlines included) is shown as an escaped
    literal and flagged; JSON values are shown as JSON (which escapes them too).
    """
    if not isinstance(value, str):
        return f"{visible(key)}: {json.dumps(value)}"
    if needs_escaping(value):
        return f"{visible(key)} (has control characters; shown escaped): {exact(value)}"
    return f"{visible(key)}: {value}"


async def _run_editor(editor: str, text: str) -> str | None:
    """Let the user edit *text* in *editor* on our terminal; ``None`` if it failed.

    Raises:
        OSError: the editor could not be started.
        ValueError: *editor* is not a valid command line (unbalanced quotes).

    Cancellation: the editor process is terminated.
    """
    path = await trio.to_thread.run_sync(_temp_file, text)
    try:
        # stdin=None: the editor uses our terminal, not an empty pipe.
        done = await trio.run_process([*shlex.split(editor), str(path)], stdin=None, check=False)
        if done.returncode != 0:
            return None
        return await trio.to_thread.run_sync(path.read_text)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(partial(path.unlink, missing_ok=True))


def _temp_file(text: str) -> Path:
    handle, name = tempfile.mkstemp(prefix="agent-runtime-", suffix=".json")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    return Path(name)
