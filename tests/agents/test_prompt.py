"""The system prompt composition (agents._core._prompt): pure, ordered, byte-stable."""

from __future__ import annotations

import pytest

from agents._core._prompt import (
    INSTRUCTIONS_HEADER,
    MAX_INSTRUCTIONS_BYTES,
    instructions_problem,
    normal_instructions,
    system_prompt,
)

MODE = "You are the coder."
SUBTASK = "You are a subtask: do only the task below."


def test_without_instructions_the_prompt_is_the_modes_own() -> None:
    assert system_prompt(MODE, None) == MODE
    assert system_prompt(MODE, "") == MODE
    # What the runner sent before instructions existed, byte for byte.
    assert system_prompt(MODE, None, subtask_prompt=SUBTASK) == f"{MODE}\n{SUBTASK}"


def test_instructions_follow_the_mode_prompt_under_a_fixed_header() -> None:
    instructions = "Use tabs.\nRun `make check` before committing.\n"
    prompt = system_prompt(MODE, instructions)
    assert prompt == MODE + "\n\n# Project instructions\n\n" + instructions
    assert INSTRUCTIONS_HEADER == "\n\n# Project instructions\n\n"


def test_the_subtask_prompt_comes_last() -> None:
    prompt = system_prompt(MODE, "Use tabs.", subtask_prompt=SUBTASK)
    assert prompt == f"{MODE}{INSTRUCTIONS_HEADER}Use tabs.\n\n{SUBTASK}"
    assert prompt.index(MODE) < prompt.index("Use tabs.") < prompt.index(SUBTASK)


def test_the_prompt_is_deterministic() -> None:
    instructions = "Ünïcode, tabs\tand\r\nline ends are kept verbatim. "
    prompts = {system_prompt(MODE, instructions, subtask_prompt=SUBTASK) for _ in range(3)}
    assert len(prompts) == 1
    assert instructions in prompts.pop()


def test_instructions_problems_name_the_field_and_the_limit() -> None:
    assert instructions_problem(None) is None
    assert instructions_problem("x" * MAX_INSTRUCTIONS_BYTES) is None
    assert instructions_problem(42) == "field 'instructions' must be a string or null"
    too_large = instructions_problem("é" * (MAX_INSTRUCTIONS_BYTES // 2 + 1))
    assert too_large is not None
    assert "field 'instructions'" in too_large and str(MAX_INSTRUCTIONS_BYTES) in too_large
    assert instructions_problem("\ud800") == "field 'instructions' is not valid Unicode text"
    nul = instructions_problem("a\x00b", where="hello.instructions")
    assert nul == "hello.instructions must not contain NUL characters"


@pytest.mark.parametrize(
    ("value", "stored"), [(None, None), ("", None), (" \n\t", None), (" x ", " x ")]
)
def test_blank_instructions_are_none(value: str | None, stored: str | None) -> None:
    assert normal_instructions(value) == stored
