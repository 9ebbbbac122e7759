"""The system prompt of one LLM call: the mode's prompt, the project's instructions, the subtask.

Providers cache a prompt's prefix (system prompt, then tools), so the text built
here must be byte-identical for every call of a mode in a session: it depends
only on its arguments, in a fixed order, with fixed separators. Nothing in it
varies per call (no time, no counters); the instructions are used verbatim.
"""

from __future__ import annotations

from typing import Final

INSTRUCTIONS_HEADER: Final = "\n\n# Project instructions\n\n"
"""What separates the mode's prompt from the project's instructions."""

MAX_INSTRUCTIONS_BYTES: Final = 64 * 1024
"""The largest project instructions a session keeps, in bytes of UTF-8."""


def system_prompt(
    mode_prompt: str, instructions: str | None, *, subtask_prompt: str | None = None
) -> str:
    """The system message: *mode_prompt*, then the project's *instructions*, then the subtask.

    Without instructions (``None`` or empty) this is the mode's prompt alone, or
    the mode's prompt and *subtask_prompt* on the next line.
    """
    prompt = mode_prompt
    if instructions:
        prompt += INSTRUCTIONS_HEADER + instructions
    if subtask_prompt is not None:
        # A blank line after the instructions, so the subtask reads as its own part.
        prompt += ("\n\n" if instructions else "\n") + subtask_prompt
    return prompt


def instructions_problem(value: object, *, where: str = "field 'instructions'") -> str | None:
    """Why *value* cannot be a session's instructions (``None``: it can).

    Accepts a string of at most :data:`MAX_INSTRUCTIONS_BYTES` bytes of UTF-8, or
    ``None`` (no instructions).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{where} must be a string or null"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{where} is not valid Unicode text"
    if size > MAX_INSTRUCTIONS_BYTES:
        return (
            f"{where} is {size} bytes of UTF-8; at most {MAX_INSTRUCTIONS_BYTES} bytes are allowed"
        )
    if "\x00" in value:
        return f"{where} must not contain NUL characters"
    return None


def normal_instructions(value: str | None) -> str | None:
    """What a session stores for *value*: blank instructions are no instructions."""
    return value if value is not None and value.strip() else None
