"""``execute_command`` for the chat client: a shell command with a timeout and capped output.

The command runs through the shell with stdin closed and stdout and stderr merged,
in its own process group on POSIX, so a timeout or a cancel kills the shell *and*
what it started. Output beyond the limit is cut in the middle: the first and the
last half are kept, since both the command's start and its final error matter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Final

import trio

from sessions import JSONObject

MAX_OUTPUT: Final = 64 * 1024


class ToolFailure(Exception):
    """A tool call that could not be carried out; ``str()`` is the error for the LLM."""


async def run_command(command: str, cwd: Path, seconds: float, max_output: int) -> JSONObject:
    """Run *command* in *cwd*; ``{"exit_code", "output", "truncated"?}``.

    A non-zero exit status is a result, not a failure: the agent reads it.

    Raises:
        ToolFailure: the command ran longer than *seconds* (it was killed; the
            message carries the output so far).

    Cancellation: kills the command's process group at once.
    """
    output = OutputBuffer(max_output)
    code: int | None = None
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                command,
                shell=True,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
                deliver_cancel=_kill_group,
                start_new_session=sys.platform != "win32",
            )
        )
        assert process.stdout is not None
        with trio.move_on_after(seconds):
            while chunk := await process.stdout.receive_some(65536):
                output.add(chunk)
            code = await process.wait()
        if code is None:
            await _kill_group(process)
    text = output.text()
    if code is None:
        raise ToolFailure(
            f"execute_command: timed out after {seconds:g} s; the command was killed. "
            f"Output so far:\n{text}"
        )
    result: JSONObject = {"exit_code": code, "output": text}
    if output.omitted:
        result["truncated"] = True
    return result


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
        return f"{head}\n[... {self.omitted} bytes of output omitted ...]\n{tail}"


async def _kill_group(process: trio.Process) -> None:
    """Kill *process* and, on POSIX, every process of its group (shell children too)."""
    try:
        if sys.platform != "win32":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass  # already gone
