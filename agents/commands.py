"""Client commands as typed values (docs/protocol.md §4) and their acknowledgement.

``parse_command`` validates a command's JSON (raising ``CommandError`` with a
code); ``encode_command`` is its inverse.
"""

from ._core._commands import (
    Ack,
    Answer,
    Cancel,
    Command,
    Compact,
    SendMessage,
    SubmitApproval,
    SubmitToolResult,
    SwitchAgent,
    SwitchModel,
    encode_command,
    parse_command,
)

__all__ = [
    "Ack",
    "Answer",
    "Cancel",
    "Command",
    "Compact",
    "SendMessage",
    "SubmitApproval",
    "SubmitToolResult",
    "SwitchAgent",
    "SwitchModel",
    "encode_command",
    "parse_command",
]
