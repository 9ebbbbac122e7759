"""``execute_command`` for the chat client: a shell command with a timeout and capped output.

The command runs through the shell with stdin closed and stdout and stderr merged,
in its own session (so its own process group) on POSIX. Whenever it has to be
stopped — its timeout, the user cancelling the turn (*stop*), or the caller being
cancelled (a quitting client) — the whole group gets SIGTERM, and SIGKILL after
:data:`KILL_GRACE` seconds if anything in it is still alive: killing only the shell
would leave what it started running (``sh -c 'sleep 30 & wait'``).

Output beyond the limit is cut in the middle: the first and the last half are
kept, since both the command's start and its final error matter.

While it runs, each chunk of output also goes to :data:`LIVE_OUTPUT`, if set: the
chat client sets it (for its own tasks, around the whole run) to show the output
on the terminal as it comes, whoever in between calls :func:`run_command`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Final

import trio

from sessions import JSONObject

from ._text import plural

MAX_OUTPUT: Final = 64 * 1024
KILL_GRACE: Final = 2.0
# How often the group is checked for survivors during the grace period.
_POLL: Final = 0.02
_POSIX: Final = sys.platform != "win32"

LIVE_OUTPUT: ContextVar[Callable[[bytes | bytearray], None] | None] = ContextVar(
    "LIVE_OUTPUT", default=None
)


class ToolFailure(Exception):
    """A tool call that could not be carried out; ``str()`` is the error for the LLM."""


async def run_command(
    command: str,
    cwd: Path,
    seconds: float,
    max_output: int,
    *,
    stop: trio.Event | None = None,
    grace: float = KILL_GRACE,
) -> JSONObject:
    """Run *command* in *cwd*; ``{"exit_code", "output", "truncated"?}``.

    A non-zero exit status is a result, not a failure: the agent reads it.

    Raises:
        ToolFailure: the command ran longer than *seconds*, or *stop* was set
            (the turn was cancelled); either way its process group was killed, and
            the message says so and carries the output so far.
        OSError: the shell could not be started.

    Cancellation: kills the command's process group (SIGTERM, then SIGKILL after
    *grace* seconds), then re-raises.
    """
    output = OutputBuffer(max_output)
    started = trio.current_time()
    process = await trio.lowlevel.open_process(
        command,
        shell=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=_POSIX,
    )
    assert process.stdout is not None
    stdout = process.stdout
    code: int | None = None
    live = LIVE_OUTPUT.get()
    try:
        with trio.move_on_after(seconds):
            async with trio.open_nursery() as nursery:
                if stop is not None:
                    nursery.start_soon(_cancel_when_set, stop, nursery.cancel_scope)
                while chunk := await stdout.receive_some(65536):
                    output.add(chunk)
                    if live is not None:
                        live(chunk)
                code = await process.wait()
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if code is None:
                await kill_group(process, grace)
            await process.wait()
            await stdout.aclose()
    text = output.text()
    if code is None:
        ran = f"{trio.current_time() - started:.1f} s"
        why = (
            f"killed after {ran} because the user cancelled the turn"
            if stop is not None and stop.is_set()
            else f"timed out after {seconds:g} s; the command was killed"
        )
        raise ToolFailure(f"execute_command: {why}. Output so far:\n{text}")
    result: JSONObject = {"exit_code": code, "output": text}
    if output.omitted:
        result["truncated"] = True
    return result


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


class OutputBuffer:
    """Keeps the first and last half of *limit* bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.omitted = 0

    def add(self, chunk: bytes | bytearray) -> None:
        half = self.limit // 2
        room = half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > self.limit - half:
            cut = len(self.tail) - (self.limit - half)
            del self.tail[:cut]
            self.omitted += cut

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if not self.omitted:
            return head + tail
        return f"{head}\n[... {plural(self.omitted, 'byte')} of output omitted ...]\n{tail}"


async def kill_group(process: trio.Process, grace: float = KILL_GRACE) -> None:
    """Stop *process* and, on POSIX, every process of its group (what the shell started).

    SIGTERM first, so programs can clean up; SIGKILL to whatever is still alive after
    *grace* seconds. Returns once the shell itself has exited (it is our child, so
    it is reaped here); its orphans are reaped by init.

    Cancellation: call it shielded; it returns within about *grace* seconds.
    """
    if not _POSIX:
        process.kill()
        await process.wait()
        return
    group = process.pid  # the shell leads its own session, so its pid is the group id
    _signal_group(group, signal.SIGTERM)
    with trio.move_on_after(grace):
        await process.wait()
        # Nothing signals "the group is empty" (its members are not our children).
        while group_alive(group):  # noqa: ASYNC110
            await trio.sleep(_POLL)
        return
    _signal_group(group, signal.SIGKILL)
    await process.wait()
    with trio.move_on_after(grace):  # SIGKILL is not instant either
        while group_alive(group):  # noqa: ASYNC110
            await trio.sleep(_POLL)


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(group, signum)


def group_alive(group: int) -> bool:
    """Whether process group *group* has a member that is not a zombie.

    Zombies count as gone: they are dead, merely not reaped yet (by init, which in
    some containers takes seconds), and signals cannot reach them anyway.
    """
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # no cheap way to tell zombies apart here: assume the worst
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited while we looked
        if len(fields) > 2 and fields[2] == str(group) and fields[0] != "Z":
            return True
    return False
