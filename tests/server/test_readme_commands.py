"""The README's shell examples are true: curl stays quiet, and the SSE example runs."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
import trio

from tests.server.helpers import make_config, start_server

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_URL = "http://127.0.0.1:8765"


def code_blocks(text: str, language: str | None = None) -> list[str]:
    """The fenced blocks of markdown *text* (only those tagged *language*, if given)."""
    blocks: list[str] = []
    current: list[str] | None = None
    keep = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, keep = [], language is None or line[3:].strip() == language
            else:
                if keep:
                    blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def curl_commands(text: str) -> list[list[str]]:
    """Every curl invocation in *text*, as words (continuation lines joined)."""
    joined = text.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        for match in re.finditer(r"(?:^|[\s$(|;&])curl\s", line):
            rest = line[match.end() :]
            words = shlex.split(rest.split("|")[0].split(")")[0], comments=True)
            commands.append(words)
    return commands


def test_every_documented_curl_is_silent() -> None:
    checked = 0
    for path in DOCS:
        for block in code_blocks(path.read_text("utf-8")):
            for words in curl_commands(block):
                short = "".join(w[1:] for w in words if re.fullmatch(r"-[a-zA-Z]+", w))
                assert "s" in short or "--silent" in words, (path.name, words)
                checked += 1
    assert checked >= 4  # the README's SSE and REST examples were found


def readme_sse_example() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    section = text.split("SSE with curl", 1)[1]
    return code_blocks(section, "sh")[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_the_readme_sse_example_streams_a_turn_without_noise(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, make_config(tokens={"devtoken": "me"}))
    script = readme_sse_example().replace(README_URL, server.url)
    with trio.fail_after(30):
        result = await trio.run_process(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_stdout=True,
            capture_stderr=True,
        )
    # curl's progress meter goes to stderr, which a terminal interleaves with the events.
    assert result.stderr == b""
    out = result.stdout.decode()
    assert "event: turn.ended" in out or '"type":"turn.ended"' in out, out
    server.shutdown.set()
