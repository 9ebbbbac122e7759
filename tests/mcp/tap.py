"""A wire tap for a stdio MCP server: ``python tap.py LOG [--stubborn] -- CMD ARGS...``.

Runs ``CMD ARGS...`` and forwards our stdin to it and its stdout to ours, line by
line, appending each line to LOG first, as ``{"dir": "c2s" | "s2c", "message": ...}``
(so a test can see what the server was sent, e.g. ``notifications/cancelled``).
``LOG.pid`` gets ``{"tap": PID, "server": PID}`` once the server runs.

``--stubborn`` makes the tap a server that will not stop politely: it ignores
SIGTERM and keeps running after its stdin closes or the server exits (only
SIGKILL ends it), for testing the shutdown bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO


def main(argv: list[str]) -> int:
    log_path, *options = argv[: argv.index("--")]
    command = argv[argv.index("--") + 1 :]
    stubborn = "--stubborn" in options
    if stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    with open(log_path + ".pid.tmp", "w") as f:
        json.dump({"tap": os.getpid(), "server": child.pid}, f)
    os.replace(log_path + ".pid.tmp", log_path + ".pid")
    lock = threading.Lock()
    log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run

    def record(direction: str, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        try:
            message: object = json.loads(text)
        except ValueError:
            message = text
        with lock:
            log.write(json.dumps({"dir": direction, "message": message}) + "\n")
            log.flush()

    def pump(direction: str, source: IO[bytes], sink: IO[bytes], close: bool) -> None:
        for line in iter(source.readline, b""):
            record(direction, line)
            try:
                sink.write(line)
                sink.flush()
            except (BrokenPipeError, ValueError):
                break
        if close:
            with contextlib.suppress(BrokenPipeError):
                sink.close()

    to_server = threading.Thread(
        target=pump, args=("c2s", sys.stdin.buffer, child.stdin, not stubborn), daemon=True
    )
    to_server.start()
    pump("s2c", child.stdout, sys.stdout.buffer, False)
    code = child.wait()
    while stubborn:
        time.sleep(3600)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
