"""The project instructions the client sends: the workspace's ``AGENTS.md`` (or the like).

The first of :data:`INSTRUCTION_FILES` in the workspace that is readable UTF-8
text is sent as the session's ``instructions``; the server makes them part of
every agent's system prompt. A file (or folder) that links outside the
workspace is skipped, as tool paths are. A file over :data:`MAX_INSTRUCTIONS_BYTES` (the
server's limit) is cut there; one that cannot be read, or is not text, is
skipped. Each of these says so in a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from ._command import ToolFailure
from ._paths import ConfinedRoot

INSTRUCTION_FILES: Final = ("AGENTS.md", "CLAUDE.md", ".agent-runtime/instructions.md")
MAX_INSTRUCTIONS_BYTES: Final = 64 * 1024  # what the server accepts (docs/protocol.md §8)


def read_instructions(
    root: Path, warn: Callable[[str], None]
) -> tuple[str, str] | tuple[None, None]:
    """``(name, text)`` of the first usable instructions file in *root*, or ``(None, None)``.

    *warn* is told about every file cut or skipped.
    """
    confined = ConfinedRoot(root)
    for name in INSTRUCTION_FILES:
        path = root / name
        if not path.is_file():
            continue
        try:
            confined.resolve(name)  # the rule tool paths follow
        except ToolFailure:
            # A cloned repository's AGENTS.md -> ~/.aws/credentials would go into
            # every system prompt, to the model's provider, with no tool call.
            warn(f"{name} links outside the workspace (to {path.resolve()}); not sending it")
            continue
        try:
            with path.open("rb") as file:
                data = file.read(MAX_INSTRUCTIONS_BYTES + 1)
        except OSError as error:
            warn(f"cannot read {name} ({error.strerror or error}); not sending it")
            continue
        text = _text(data[:MAX_INSTRUCTIONS_BYTES], cut=len(data) > MAX_INSTRUCTIONS_BYTES)
        if text is None or "\x00" in text:
            warn(f"{name} is not UTF-8 text; not sending it")
            continue
        if len(data) > MAX_INSTRUCTIONS_BYTES:
            warn(
                f"{name} is larger than {MAX_INSTRUCTIONS_BYTES} bytes; "
                f"sending only its first {len(text.encode())} bytes"
            )
        return name, text.removeprefix("\ufeff")  # a byte-order mark is no instruction
    return None, None


def _text(data: bytes, *, cut: bool) -> str | None:
    """*data* decoded as UTF-8; when *cut*, a character split by the cut is dropped."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        # Only the end of a cut file may hold a partial character (at most 3 bytes).
        if cut and error.reason == "unexpected end of data" and error.start >= len(data) - 3:
            return data[: error.start].decode("utf-8")
        return None
