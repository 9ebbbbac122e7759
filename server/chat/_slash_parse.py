"""The slash commands' table, how a typed line parses into one, and what running one leads to.

:data:`COMMANDS` (with the help text ``/help`` shows), :func:`parse` and
:func:`message_text`, and the outcomes :class:`~._slash.SlashCommands` returns to
the driver. Separate from :mod:`._slash` (which runs the commands) because it needs
nothing of the client: the prompt's completion and the driver use it as plain data.
"""

from __future__ import annotations

from typing import Final, TypeAlias

import attrs


@attrs.frozen
class SlashCommand:
    name: str  # with its "/"
    usage: str  # the argument, e.g. "NAME" ("" for none)
    help: str


COMMANDS: Final = (
    SlashCommand("/help", "", "this list"),
    SlashCommand("/agent", "NAME", "switch the session's agent (no NAME: list the agents)"),
    SlashCommand(
        "/model", "NAME", "switch the session's model (`/model default` to reset; no NAME: list)"
    ),
    SlashCommand("/compact", "[INSTRUCTIONS]", "summarise the session's older history now"),
    SlashCommand("/sessions", "", "list your sessions, newest first"),
    SlashCommand("/session", "ID", "continue session ID here (see /sessions)"),
    SlashCommand("/new", "", "start a new session here"),
    SlashCommand("/undo", "[N]", "revert the file changes of the agent's last turn (or N turns)"),
    SlashCommand("/diff", "", "what the agent changed in the workspace this session"),
    SlashCommand("/cost", "", "tokens and cost of this session so far"),
    SlashCommand("/auto-approve", "PATTERN", "approve tools matching the glob without asking"),
    SlashCommand("/quit", "", "exit (also /exit, Ctrl-D)"),
)
COMMAND_NAMES: Final = (*(c.name for c in COMMANDS), "/exit")
# What the keys that end things do (the startup hint and /help say it). Ctrl-C at the
# prompt clears a half-typed line, as in a shell, so a line given up on does not quit.
KEYS_HELP: Final = (
    "Ctrl-C cancels a turn or clears the line (quits on an empty one); Ctrl-D or /quit exits"
)
INPUT_HELP: Final = (
    "On a terminal: Esc then Enter (or a line ending in \\) starts a new line; "
    "Tab completes commands, agent names and paths; Up/Down recall earlier lines; "
    "// sends a message starting with /."
)


@attrs.frozen
class Parsed:
    name: str  # lower-cased, with its "/"
    argument: str  # stripped


@attrs.frozen
class Handled:
    """The command is done; prompt again."""


@attrs.frozen
class StartedTurn:
    """The command started a turn (``/compact``): wait for it to end."""

    turn_id: str


@attrs.frozen
class Quit:
    """Exit the client."""


@attrs.frozen
class SwitchSession:
    """Leave this session for another one (``/session ID``) or a new one (``/new``)."""

    session_id: str | None  # None: create a new session


Outcome: TypeAlias = Handled | StartedTurn | Quit | SwitchSession


def parse(line: str) -> Parsed | None:
    """The slash command on *line*; ``None`` if it is a message (see :func:`message_text`)."""
    text = line.strip()
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, argument = text.partition(" ")
    return Parsed(name.lower(), argument.strip())


def message_text(line: str) -> str:
    """What a line that is not a command sends: ``//x`` sends ``/x``."""
    text = line.strip()
    return text[1:] if text.startswith("//") else text


__all__ = [
    "COMMANDS",
    "COMMAND_NAMES",
    "INPUT_HELP",
    "KEYS_HELP",
    "Handled",
    "Outcome",
    "Parsed",
    "Quit",
    "SlashCommand",
    "StartedTurn",
    "SwitchSession",
    "message_text",
    "parse",
]
