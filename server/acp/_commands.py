"""The slash commands the adapter offers an editor (ACP ``available_commands_update``).

An editor lists them in its prompt box; a prompt that begins with one (``/compact``
and the rest of the line) is that runtime command instead of a message. Pure: the
table, the update that announces it, and what a prompt's text asks the runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sessions import JSONObject

COMPACT: Final = "compact"

# name → (description, hint for the text after it); the editor shows both.
COMMANDS: Final[Mapping[str, tuple[str, str]]] = {
    COMPACT: (
        "Summarise the oldest history now, to free the context window",
        "what the summary must keep (optional)",
    ),
}


def commands_update() -> JSONObject:
    """The ``available_commands_update`` a session gets once it is open."""
    return {
        "sessionUpdate": "available_commands_update",
        "availableCommands": [
            {"name": name, "description": description, "input": {"hint": hint}}
            for name, (description, hint) in COMMANDS.items()
        ],
    }


def prompt_command(text: str) -> JSONObject:
    """The runtime command (docs/protocol.md §4) a prompt's *text* asks for, without its id.

    ``/compact`` (alone, or followed by whitespace and instructions) is a
    ``compact``; anything else, ``/compactor`` or ``/help`` included, is the
    user's message as typed.
    """
    words = text.split(maxsplit=1)  # prompt_text stripped it: the command is first
    if words and words[0] == f"/{COMPACT}":
        instructions = words[1].strip() if len(words) > 1 else ""
        command: JSONObject = {"type": COMPACT}
        if instructions:
            command["instructions"] = instructions
        return command
    return {"type": "user_message", "content": text}
