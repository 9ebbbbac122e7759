"""What a command imports before it can answer: each heavy stack only where it is used.

An editor waits for ``agent-runtime acp`` to answer ``initialize``, and most of that
wait was importing (B15 in docs/benchmarks.md). The adapter (embedded, scripted
model) needs none of the HTTP server (quart, hypercorn's app), the terminal UI
(prompt_toolkit, rich), httpx (the OpenAI provider, the connected link) or
jsonschema (validating a call, built on first use). Each check runs in a fresh
interpreter, so what this test process already imported does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Top-level packages the embedded ACP adapter must not import at start-up.
NOT_FOR_ACP = ("quart", "quart_trio", "werkzeug", "prompt_toolkit", "rich", "httpx", "jsonschema")


def _imported_by(statements: str) -> set[str]:
    """Top-level package names a fresh interpreter holds after *statements*."""
    code = f"{statements}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return {name.split(".")[0] for name in json.loads(done.stdout)}


def test_the_acp_adapter_starts_without_the_http_and_terminal_stacks() -> None:
    # What `python -m server acp` imports before its trio.run: the package, the CLI,
    # the adapter and the runtime's assembly (store, scripted model, tools).
    imported = _imported_by(
        "import server, server._cli, server.acp, server._runtime, agents.model\n"
        "import agents._providers._scripted"
    )
    assert "server" in imported and "trio" in imported  # the probe itself works
    assert not imported & set(NOT_FOR_ACP), sorted(imported & set(NOT_FOR_ACP))


@pytest.mark.parametrize(
    ("statement", "package"),
    [
        ("from server import serve", "quart"),
        ("from server.chat import chat_main", "prompt_toolkit"),
        ("from agents import open_openai_client", "httpx"),
        ("from agents.model import OpenAIClient", "httpx"),
        (
            "from agents import validate_arguments; validate_arguments('read_file', {'path': 'a'})",
            "jsonschema",
        ),
    ],
)
def test_a_deferred_name_still_imports_what_it_needs(statement: str, package: str) -> None:
    assert package in _imported_by(statement)
