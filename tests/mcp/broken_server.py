"""A stdio MCP server that breaks on request: ``python broken_server.py [OPTIONS]``.

Raw JSON-RPC on stdin/stdout (no SDK, so it can send what the SDK's server
never would). It initializes, lists one tool ``echo``, and then, as told:

* ``--garbage LINE``: answers ``tools/call`` with LINE (once ``--hold N`` calls
  wait), then keeps reading its stdin until it closes;
* ``--banner LINE``: writes LINE to stdout before reading anything;
* ``--chatter LINE``: writes LINE to stdout before each answer (a server that
  prints to its stdout, as many do);
* ``--die``: writes many stderr lines, the last without its newline, and exits 1.

An unknown option makes argparse print its usage to stderr and exit 2 (a
server started with a bad flag).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

NOISE_LINES = 40


def main() -> int:
    parser = argparse.ArgumentParser(prog="broken_server.py")
    parser.add_argument("--garbage")
    parser.add_argument("--hold", type=int, default=1)
    parser.add_argument("--banner")
    parser.add_argument("--chatter")
    parser.add_argument("--die", action="store_true")
    options = parser.parse_args()
    if options.die:
        for n in range(NOISE_LINES):
            sys.stderr.write(f"noise {n} " + "." * 300 + "\n")
        sys.stderr.write("\x1b[31mfatal: the config is broken\x1b[0m")
        return 1
    if options.banner is not None:
        send_line(options.banner)
    held = 0
    for line in sys.stdin:
        message = json.loads(line)
        method = message.get("method")
        if "id" not in message:
            continue  # a notification: nothing to answer
        if options.chatter is not None:
            send_line(options.chatter)
        if method == "initialize":
            send(message["id"], initialized(message["params"]["protocolVersion"]))
        elif method == "tools/list":
            tool = {"name": "echo", "inputSchema": {"type": "object"}}
            send(message["id"], {"tools": [tool]})
        elif method == "tools/call" and options.garbage is not None:
            held += 1
            if held == options.hold:
                send_line(options.garbage)
        else:
            send(message["id"], {"content": [{"type": "text", "text": "echoed"}]})
    return 0


def initialized(version: str) -> dict[str, Any]:
    return {
        "protocolVersion": version,
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "broken", "version": "1"},
    }


def send(request_id: object, result: dict[str, Any]) -> None:
    send_line(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}))


def send_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
