"""The slash commands an editor is offered, and what a prompt's text asks the runtime."""

from __future__ import annotations

from typing import Any

import pytest

from server.acp._commands import commands_update, prompt_command
from sessions import JSONObject
from tests.acp.conformance import problems


def test_the_announcement_conforms() -> None:
    update: dict[str, Any] = commands_update()
    assert problems("SessionUpdate", update) == []
    assert [c["name"] for c in update["availableCommands"]] == ["compact"]


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("/compact", {"type": "compact"}),
        ("/compact keep the facts", {"type": "compact", "instructions": "keep the facts"}),
        ("/compact\n  keep\n the list ", {"type": "compact", "instructions": "keep\n the list"}),
        ("/compactor", {"type": "user_message", "content": "/compactor"}),
        ("/help", {"type": "user_message", "content": "/help"}),
        ("please /compact", {"type": "user_message", "content": "please /compact"}),
        ("/Compact", {"type": "user_message", "content": "/Compact"}),
    ],
)
def test_only_slash_compact_is_a_command(text: str, command: JSONObject) -> None:
    assert prompt_command(text) == command
