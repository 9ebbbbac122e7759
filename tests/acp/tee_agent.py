"""Run an ACP agent with its stdio forwarded byte for byte, recording every line.

Usage: ``python tee_agent.py LOG -- COMMAND [ARG...]``

The real ACP clients the tests drive (acpx, the official Python SDK) spawn this
script as their "agent". It starts COMMAND, copies its own stdin to COMMAND's stdin
and COMMAND's stdout to its own stdout unchanged, chunk by chunk as they arrive,
and appends one JSON record per complete line to LOG (opened with ``O_APPEND``,
one ``write`` per record, so several agents may share a file)::

    {"pid": <this process>, "from": "agent" | "client", "line": "<the line, no newline>"}

A line that is not UTF-8 is recorded as ``{"pid", "from", "hex": ...}``; bytes left
without a newline at end of stream as ``{"pid", "from", "unterminated": ...}``, so
the conformance check sees them. stderr is inherited. SIGINT, SIGTERM and SIGHUP
are passed on to COMMAND; closing this script's stdin closes COMMAND's; the script
exits with COMMAND's status once COMMAND's stdout is closed and it has exited.

Standard library only: it must start fast and never depend on the code under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from types import FrameType
from typing import IO

CHUNK = 65536


class _Recorder:
    """Splits one direction's byte stream into lines and appends their records."""

    def __init__(self, log_fd: int, lock: threading.Lock, source: str) -> None:
        self._log_fd = log_fd
        self._lock = lock
        self._source = source
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._write(line)

    def close(self) -> None:
        if self._pending:
            self._write(self._pending, unterminated=True)
            self._pending = b""

    def _write(self, line: bytes, *, unterminated: bool = False) -> None:
        record: dict[str, object] = {"pid": os.getpid(), "from": self._source}
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            record["hex"] = line.hex()
        else:
            record["unterminated" if unterminated else "line"] = text
        data = (json.dumps(record) + "\n").encode()
        with self._lock:
            os.write(self._log_fd, data)


def _pump(source: int, sink: IO[bytes] | int, recorder: _Recorder) -> None:
    """Copy *source* to *sink* until end of stream (or the sink is gone), recording lines."""
    try:
        while data := os.read(source, CHUNK):
            recorder.feed(data)
            try:
                if isinstance(sink, int):
                    view = memoryview(data)
                    while view:
                        view = view[os.write(sink, view) :]
                else:
                    sink.write(data)
                    sink.flush()
            except (BrokenPipeError, ValueError):
                break  # the reader went away: keep nothing more to forward
    finally:
        recorder.close()


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: tee_agent.py LOG -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    log_path, command = argv[0], argv[2:]
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = threading.Lock()
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert child.stdin is not None and child.stdout is not None
    child_stdin, child_stdout = child.stdin, child.stdout

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)

    def client_to_agent() -> None:
        try:
            _pump(sys.stdin.fileno(), child_stdin, _Recorder(log_fd, lock, "client"))
        finally:
            with contextlib.suppress(BrokenPipeError):
                child_stdin.close()

    # A daemon thread: a client that never closes our stdin must not keep us alive
    # once the agent has exited.
    threading.Thread(target=client_to_agent, daemon=True).start()
    _pump(child_stdout.fileno(), sys.stdout.fileno(), _Recorder(log_fd, lock, "agent"))
    status = child.wait()
    os.close(log_fd)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
