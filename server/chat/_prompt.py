"""The terminal prompt of ``agent-runtime chat``: prompt_toolkit line editing inside trio.

:class:`PromptInput` gives the human line editing, a persistent history per
workspace (``<workspace>/.agent-runtime/history``, the newest
:data:`MAX_HISTORY` entries), multi-line input (Esc then Enter, or a line ending
in ``\\``, starts a new line) and Tab completion of slash commands, agent names
(after ``/agent``) and workspace paths. It is used when stdin and stdout are
terminals; otherwise the client reads plain lines (``_input.TerminalInput``).

How it stays inside the client's one ``trio.run``: prompt_toolkit is asyncio
code, so each prompt runs on a private asyncio loop in a worker thread
(``trio.to_thread.run_sync``, not abandonable: the trio task always waits for
the thread). Cancelling the prompt from the trio side (the worker's ``unless``
when another client starts a turn, or quitting) cancels the asyncio task of
``prompt_async`` through ``loop.call_soon_threadsafe``; prompt_toolkit restores
the terminal and the thread returns, and only then does the cancellation
propagate. What was typed so far is kept and offered again by the next prompt.
A cancellation that arrives before the thread has started its loop is seen by
the thread (a flag under a lock, one per prompt), which then does not prompt at
all. Prompts run one at a time (a ``trio.Lock``): when an approval arrives, the
chat prompt is being closed while the approval prompt starts, and the second
waits until the first has restored the terminal.

prompt_toolkit puts the terminal in raw mode, so Ctrl-C arrives as a key, not as
SIGINT. The prompt then sends the process the SIGINT the terminal would have
sent, so Ctrl-C means the same at the prompt as anywhere else (see ``_client``);
only at the chat prompt with something typed does it clear the line instead, as
shells do, so that a line given up on does not quit the client.

The history file is never followed through a symlink (see :class:`BoundedHistory`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import signal
import stat
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Final, TypeAlias

import attrs
import trio
from prompt_toolkit import PromptSession
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.history import History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from ._paths import STATE_DIR, open_state_dir, state_dir

MAX_HISTORY: Final = 1000
HISTORY_FILE: Final = Path(STATE_DIR) / "history"


@attrs.frozen
class PromptSettings:
    """What the chat prompt offers: its history file and what Tab completes."""

    workspace: Path
    commands: tuple[str, ...]  # slash commands, with their "/"
    agents: Callable[[], Sequence[str]]  # agent names known so far

    @property
    def history(self) -> Path:
        return self.workspace / HISTORY_FILE


class BoundedHistory(History):
    """The workspace's history file, cut to the newest *limit* entries when loaded.

    The file is in prompt_toolkit's ``FileHistory`` format, but never read or written
    through a symlink: a repository can ship ``.agent-runtime`` or its ``history`` as
    a link, and everything typed (pasted secrets too) would be appended to, or the
    file cut in, a place of its choosing. When either is a symlink or not what it
    should be, the history is kept in memory for the run and one note says so
    (:meth:`take_notes`). Its methods do blocking file I/O: call them in a thread.
    """

    def __init__(self, workspace: Path, limit: int = MAX_HISTORY) -> None:
        super().__init__()
        self.workspace = workspace
        self.limit = limit
        self.off: str | None = None  # why the file is not used (then: memory only)
        self._lock = threading.Lock()
        self._notes: list[str] = []

    def check(self) -> None:
        """Turn the file off now if it cannot be used, so the note comes before any typing."""
        if self.off is None:
            try:
                os.close(self._open(os.O_RDONLY))
            except FileNotFoundError:
                pass  # made on the first entry
            except OSError as error:
                self._turn_off(error)

    def take_notes(self) -> list[str]:
        """The warning about the file, if there is a new one (at most one per run)."""
        with self._lock:
            notes, self._notes = self._notes, []
        return notes

    def load_history_strings(self) -> Iterable[str]:
        if self.off is not None:
            return []
        try:
            newest_first = self._load()
            if len(newest_first) > self.limit:
                newest_first = newest_first[: self.limit]
                self._rewrite(reversed(newest_first))
        except OSError as error:
            self._turn_off(error)
            return []
        return newest_first

    def store_string(self, string: str) -> None:
        if self.off is not None:
            return
        try:
            state_dir(self.workspace)  # with its .gitignore
            fd = self._open(os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            with os.fdopen(fd, "wb") as file:
                file.write(_entry(string))
        except OSError as error:
            self._turn_off(error)

    def _load(self) -> list[str]:
        """The entries in the file, newest first (none if it does not exist)."""
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return []
        with os.fdopen(fd, "rb") as file:
            return _entries(file.read())[::-1]

    def _rewrite(self, oldest_first: Iterable[str]) -> None:
        fd = self._open(os.O_WRONLY)
        with os.fdopen(fd, "wb") as file:
            file.truncate(0)  # only now: after _open has checked what the file is
            file.write(b"".join(_entry(entry) for entry in oldest_first))

    def _open(self, flags: int) -> int:
        """The history file opened with *flags*, never through a symlink.

        Opened inside the folder's own descriptor, so neither the folder nor the file
        can be a link; non-blocking, so a FIFO planted there cannot hang the prompt.

        Raises:
            OSError: missing, a symlink (either), or not a regular file.
        """
        folder = open_state_dir(self.workspace)
        try:
            fd = os.open(HISTORY_FILE.name, flags | _NO_LINK, 0o600, dir_fd=folder)
        finally:
            os.close(folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"{HISTORY_FILE.as_posix()} is not a regular file")
        return fd

    def _turn_off(self, error: OSError) -> None:
        with self._lock:
            if self.off is not None:
                return
            self.off = self._why(error)
            self._notes.append(
                f"[prompt history off for this run: {self.off}; "
                "what you type is kept in memory only]"
            )

    def _why(self, error: OSError) -> str:
        for rel in (Path(STATE_DIR), HISTORY_FILE):
            if (self.workspace / rel).is_symlink():
                return f"{rel.as_posix()} is a symlink (never followed)"
        if error.strerror:
            return f"{HISTORY_FILE.as_posix()}: {error.strerror}"
        return str(error)


_NO_LINK: Final = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _entry(string: str) -> bytes:
    """One history entry as prompt_toolkit's ``FileHistory`` writes it."""
    lines = "".join(f"+{line}\n" for line in string.split("\n"))
    return f"\n# {datetime.datetime.now()}\n{lines}".encode(errors="replace")


def _entries(data: bytes) -> list[str]:
    """The entries of a history file, oldest first (``+`` lines; anything else ends one)."""
    entries: list[str] = []
    lines: list[str] = []
    for line in [*data.decode(errors="replace").splitlines(keepends=True), ""]:
        if line.startswith("+"):
            lines.append(line[1:])
        elif lines:
            entries.append("".join(lines)[:-1])  # without the last newline
            lines = []
    return entries


class ChatCompleter(Completer):
    """Slash commands, agent names after ``/agent``, else workspace paths (the last word)."""

    def __init__(self, settings: PromptSettings) -> None:
        self.settings = settings
        root = str(settings.workspace)
        self._paths = PathCompleter(get_paths=lambda: [root], expanduser=False)

    def get_completions(self, document: Document, event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if text.startswith("/") and " " not in text:
            for command in self.settings.commands:
                if command.startswith(text):
                    yield Completion(command, -len(text))
            return
        if text.startswith("/agent ") and " " not in text[7:]:
            word = text[7:]
            for name in self.settings.agents():
                if name.startswith(word):
                    yield Completion(name, -len(word))
            return
        word = text.split()[-1] if text and not text[-1].isspace() else ""
        if word:
            yield from self._paths.get_completions(Document(word, len(word)), event)


def _chat_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    continued = Condition(
        lambda: _current_text_before_cursor().endswith("\\")  # a trailing backslash
    )

    @bindings.add("enter", filter=continued)
    def _continue(event: KeyPressEvent) -> None:
        event.current_buffer.delete_before_cursor(1)
        event.current_buffer.insert_text("\n")

    # As in a shell: Ctrl-C throws away what was typed; on an empty line it is the
    # usual Ctrl-C (the chat prompt is only shown while no turn runs: it quits).
    @bindings.add("c-c", filter=Condition(lambda: bool(_current_buffer().text)))
    def _clear(event: KeyPressEvent) -> None:
        event.current_buffer.reset()

    return bindings


def _current_text_before_cursor() -> str:
    return _current_buffer().document.text_before_cursor


def _current_buffer() -> Buffer:
    from prompt_toolkit.application.current import get_app

    return get_app().current_buffer


class _Cancelled:
    """The prompt was cancelled from the trio side."""


class _Interrupted:
    """Ctrl-C was pressed at the prompt."""


_Outcome = str | None | type[_Cancelled] | type[_Interrupted]

# Reads one line on the running asyncio loop: (session, message, draft) -> the line.
Reader: TypeAlias = Callable[["PromptSession[str]", str, str], Awaitable[str]]


async def _read(session: PromptSession[str], message: str, draft: str) -> str:
    return await session.prompt_async(
        message, default=draft, handle_sigint=False, set_exception_handler=False
    )


class _Call:
    """The cancellation state of one prompt: whether it was cancelled, and what to cancel."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancel_requested = False
        self.running: tuple[asyncio.AbstractEventLoop, asyncio.Task[_Outcome]] | None = None

    def request_exit(self) -> None:
        with self.lock:
            self.cancel_requested = True
            if self.running is not None:
                loop, task = self.running
                # RuntimeError: the loop closed meanwhile, so the prompt is over anyway.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(task.cancel)


class PromptInput:
    """Reads lines with prompt_toolkit in a worker thread (see the module docstring).

    :meth:`prompt` with ``chat=True`` is the message prompt (history, completion,
    multi-line); with ``chat=False`` a plain answer prompt (approvals, questions).
    One prompt at a time: a second one waits until the first is over, thread and
    all (two prompt_toolkit applications cannot share a terminal). *read* is how a
    line is read (tests replace prompt_toolkit's ``prompt_async``).
    """

    def __init__(self, settings: PromptSettings, *, read: Reader = _read) -> None:
        self.settings = settings
        self._read = read
        self._history = BoundedHistory(settings.workspace)
        self._checked = False
        self._chat: PromptSession[str] = PromptSession(
            history=self._history,
            completer=ChatCompleter(settings),
            complete_while_typing=False,
            key_bindings=_chat_bindings(),
        )
        self._answer: PromptSession[str] = PromptSession(history=InMemoryHistory())
        self._one_at_a_time = trio.Lock()
        self._drafts: dict[int, str] = {}  # per session: what a cancelled prompt held

    async def readline(self) -> str | None:
        return await self.prompt("", chat=False)

    async def notes(self) -> list[str]:
        """Warnings to show (the history file is not used); the first call checks it.

        Cancellation: safe; a check already under way completes (a worker thread).
        """
        if not self._checked:
            self._checked = True
            await trio.to_thread.run_sync(self._history.check)
        return self._history.take_notes()

    async def prompt(self, message: str, *, chat: bool) -> str | None:
        """The line typed after *message*; ``None`` at end of input (Ctrl-D).

        Waits for a prompt already running to be over first.

        Cancellation: the prompt is closed and what was typed is kept for the next one.
        """
        session = self._chat if chat else self._answer
        while True:
            async with self._one_at_a_time:
                outcome = await self._run(session, message)
            if outcome is _Interrupted:
                os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends in cooked mode
                await trio.lowlevel.checkpoint()
                continue
            assert outcome is None or isinstance(outcome, str)
            return outcome

    async def _run(self, session: PromptSession[str], message: str) -> _Outcome:
        call = _Call()
        results: list[_Outcome] = []

        async def in_thread(done: trio.CancelScope) -> None:
            with trio.CancelScope(shield=True):  # always wait for the thread
                results.append(
                    await trio.to_thread.run_sync(self._blocking, call, session, message)
                )
            done.cancel()

        async def close_when_cancelled() -> None:
            try:
                await trio.sleep_forever()
            finally:
                call.request_exit()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_when_cancelled)
            nursery.start_soon(in_thread, nursery.cancel_scope)
        return results[0]

    def _blocking(self, call: _Call, session: PromptSession[str], message: str) -> _Outcome:
        """Runs in the worker thread: one prompt on a private asyncio loop."""
        return asyncio.run(self._prompt_async(call, session, message))

    async def _prompt_async(
        self, call: _Call, session: PromptSession[str], message: str
    ) -> _Outcome:
        task = asyncio.current_task()
        assert task is not None
        with call.lock:
            if call.cancel_requested:
                return _Cancelled
            call.running = (asyncio.get_running_loop(), task)
        draft = self._drafts.pop(id(session), "")
        try:
            return await self._read(session, message, draft)
        except asyncio.CancelledError:
            self._drafts[id(session)] = session.default_buffer.text
            return _Cancelled
        except EOFError:
            return None
        except KeyboardInterrupt:
            return _Interrupted
        finally:
            with call.lock:
                call.running = None


__all__ = ["MAX_HISTORY", "BoundedHistory", "ChatCompleter", "PromptInput", "PromptSettings"]
