"""Keeps a stdio MCP server from outliving the runtime that started it (Linux).

The runtime starts ``python -I -S _mcp_warden.py RUNTIME_PID -- COMMAND ARGS...``
in place of ``COMMAND ARGS...`` (see :mod:`~agents._tools._mcp_transports`). Why: the
MCP SDK starts each server in a session of its own, so that it can kill the
server's whole tree; but then a runtime that dies (SIGKILL, OOM) sends the server
no SIGHUP, and a server busy in a call does not notice its stdin closing. The
server, and whatever it started, would run on, orphaned, for good.

The warden starts the server as its child, with the same stdin, stdout, stderr,
environment and directory, in the warden's process group (whose leader it is:
the SDK's killpg and the runtime's shutdown still reach the server through it),
and then waits:

* the server exits: the warden exits with its status (``128 + N`` for signal N);
* the runtime exits (watched through a pidfd, which, unlike ``PR_SET_PDEATHSIG``,
  does not depend on which of the runtime's threads spawned us), or the warden
  gets SIGTERM: it SIGTERMs its group, waits :data:`GRACE` for the server, then
  SIGKILLs the group if the server is still running or the runtime is gone (no one
  is left to sweep what the server started).

The server gets ``PR_SET_PDEATHSIG`` (SIGTERM) on the warden, in case only the
warden is killed. Standard library only, run without ``site`` and isolated from
the ``PYTHON*`` environment (which the server still gets): it cannot be broken by
the environment it passes on. Without pidfds (Linux < 5.3), it becomes the server
(``exec``), which is how servers ran before it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable

#: How long the server has to exit after SIGTERM before its group is SIGKILLed.
GRACE = 2.0
#: prctl(2): the signal a process gets when its parent exits.
_PR_SET_PDEATHSIG = 1
#: The exit status of a command that cannot be run (as sh(1) says it).
_CANNOT_RUN = 127


class _Stop(Exception):
    """SIGTERM arrived (raised from the handler, so it interrupts any wait)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stop


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: _mcp_warden.py RUNTIME_PID -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    runtime_pid, command = int(argv[0]), argv[2:]
    signal.signal(signal.SIGTERM, _on_sigterm)
    server: subprocess.Popen[bytes] | None = None
    try:
        try:
            runtime = os.pidfd_open(runtime_pid)
        except OSError:
            if os.getppid() != runtime_pid:
                return 0  # the runtime is gone already: nothing to start
            return _become(command)  # no pidfds here: run the server as before
        # Checked after opening: while we are its child, the pid cannot have been reused.
        if os.getppid() != runtime_pid:
            return 0
        # Blocked across the spawn, so that a SIGTERM cannot land between the fork
        # and `server` being set (unblocked in the child: the mask is inherited).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            server = subprocess.Popen(command, preexec_fn=_child_setup(os.getpid()))
        except OSError as exc:
            return _cannot_run(command, exc)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        _let_go_of_the_pipes()
        watched = select.poll()
        watched.register(runtime, select.POLLIN)
        watched.register(os.pidfd_open(server.pid), select.POLLIN)
        if runtime in {fd for fd, _ in watched.poll()}:
            # First, even if the server exited too: what it started may still run.
            return _stop(server, runtime_gone=True)
        return _status(server.wait())
    except _Stop:
        if server is None:
            return 128 + signal.SIGTERM
        return _stop(server, runtime_gone=False)


def _become(command: list[str]) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        return _cannot_run(command, exc)


def _cannot_run(command: list[str], exc: OSError) -> int:
    print(f"cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
    return _CANNOT_RUN


def _child_setup(warden_pid: int) -> Callable[[], None]:
    def setup() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the server's own, from here on
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != warden_pid:
            os._exit(128 + signal.SIGTERM)  # the warden died before the prctl

    return setup


def _let_go_of_the_pipes() -> None:
    """Point our stdin and stdout at /dev/null: only the server's copies count.

    Ours would otherwise keep the runtime's stdout pipe open, so it would see the
    end of the server's output only when the warden exits too. Stderr stays: the
    warden's own last words go to the same log as the server's.
    """
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def _stop(server: subprocess.Popen[bytes], *, runtime_gone: bool) -> int:
    """SIGTERM the server's group, then SIGKILL it after :data:`GRACE` (see the docstring)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # killpg only when the group is ours: run by hand from a shell, it is the shell's.
    own_group = os.getpgrp() == os.getpid()
    _signal(server, signal.SIGTERM, own_group)
    try:
        status = server.wait(GRACE)
    except subprocess.TimeoutExpired:
        status = None
    if status is None or runtime_gone:
        _signal(server, signal.SIGKILL, own_group)  # the whole group: the warden too
        status = server.wait()
    return _status(status)


def _signal(server: subprocess.Popen[bytes], signum: int, own_group: bool) -> None:
    with contextlib.suppress(OSError):
        if own_group:
            os.killpg(0, signum)
        else:
            server.send_signal(signum)


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
