"""One-line descriptions for the terminal: tool calls, tool output, anything to be cut short.

Every function here returns text safe for a terminal (see :mod:`._text`).
:func:`clip` flattens text onto one line (for headers such as a command in a
``> execute_command`` line); :func:`cut_line` shortens one line of output but
keeps its whitespace, since indentation in tool output carries meaning.
"""

from __future__ import annotations

import json
import re
from typing import Final

from sessions import JSON, JSONObject

from ._text import plural, visible, visible_block

_BLANKS: Final = re.compile(r"[ \t\n]+")


def clip(text: str, limit: int = 120) -> str:
    """*text* on one line, at most about *limit* characters.

    Runs of spaces, tabs and newlines become one space; any other control
    character (a lone CR included) is escaped, not hidden.
    """
    flat = visible(_BLANKS.sub(" ", text.replace("\r\n", "\n")).strip(" "))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def cut_line(line: str, limit: int = 200) -> str:
    """One line of output, its whitespace (indentation, tabs) kept, cut after *limit* characters.

    Control characters but tabs are escaped; *line* has no newline.
    """
    shown = visible_block(line)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def describe_call(name: str, args: JSONObject) -> str:
    """A one-line human description of tool call *name* with *args*."""

    def arg(key: str) -> str:
        value = args.get(key)
        return visible(value) if isinstance(value, str) else ""

    match name:
        case "write_file":
            content = args.get("content")
            size = len(content.encode()) if isinstance(content, str) else 0
            return f"write_file {arg('path')} ({plural(size, 'byte')})"
        case "read_file":
            start, end = args.get("start_line"), args.get("end_line")
            span = f" lines {start or 1}-{end or 'end'}" if start or end else ""
            return f"read_file {arg('path')}{span}"
        case "list_files":
            return f"list_files {arg('path')}" + (" (recursive)" if args.get("recursive") else "")
        case "search_files":
            pattern = f" ({arg('file_pattern')})" if arg("file_pattern") else ""
            return f"search_files /{arg('regex')}/ in {arg('path')}{pattern}"
        case "move_file":
            return f"move_file {arg('source')} -> {arg('destination')}"
        case "execute_command":
            where = f" in {arg('cwd')}" if arg("cwd") else ""
            command = args.get("command")
            shown = clip(command if isinstance(command, str) else "", 200)
            return f"execute_command `{shown}`{where}"
        case _:
            target = arg("path") or clip(json.dumps(args), 100)
            return f"{visible(name)} {target}"


def command_summary(content: str) -> str | None:
    """``exit N`` and the output of an ``execute_command`` result, if *content* is one.

    *content* must be the result's full content: a cut summary is not valid JSON.
    """
    try:
        value: JSON = json.loads(content)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("exit_code"), int):
        return None
    output = value.get("output")
    text = output.rstrip() if isinstance(output, str) else ""
    return f"exit {value['exit_code']}" + (f"\n{text}" if text else "")
