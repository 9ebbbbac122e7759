"""The tool catalogue (SPEC §4.2) and the validation of tool-call arguments.

IDE-executed tools are sent to the client as ``tool.call``; server-side tools
(``switch_mode``, ``new_task``, ``attempt_completion``, ``ask_followup_question``)
are handled by the turn runner. Every tool belongs to one group, and modes grant
tools by group (see ``_modes``):

=========  ==================================================================
group      tools
=========  ==================================================================
read       read_file, list_files, search_files
edit       write_file, apply_diff, create_directory, delete_file, move_file
command    execute_command
mode       switch_mode, new_task, attempt_completion, ask_followup_question
=========  ==================================================================

Validation happens before anything is recorded: a failure raises
:class:`ToolError` whose text is meant for the LLM, so it names the tool, the
argument and what is wrong.
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, TypeAlias

from attrs import frozen

from sessions import JSON, JSONObject

from .._errors import ToolError
from ._budget import MAX_MODEL_NAME
from ._model import ToolSpec

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

Side: TypeAlias = Literal["ide", "server"]
Group: TypeAlias = Literal["read", "edit", "command", "mode"]

GROUPS: tuple[Group, ...] = ("read", "edit", "command", "mode")

#: Arguments that name a file or directory; they must stay inside the workspace.
PATH_ARGUMENTS: tuple[str, ...] = ("path", "source", "destination", "cwd")


@frozen
class ToolDef:
    """One tool: its JSON schema, who executes it and which group grants it."""

    name: str
    description: str
    parameters: JSONObject
    side: Side
    group: Group

    def to_spec(self) -> ToolSpec:
        """The tool as offered to the model."""
        return ToolSpec(self.name, self.description, self.parameters)


def _schema(
    required: dict[str, JSONObject], optional: dict[str, JSONObject] | None = None
) -> JSONObject:
    properties: JSONObject = {**required, **(optional or {})}
    names: list[JSON] = list(required)
    return {
        "type": "object",
        "properties": properties,
        "required": names,
        "additionalProperties": False,
    }


def _string(description: str) -> JSONObject:
    return {"type": "string", "description": description}


_PATH = _string("Path relative to the workspace root.")

_DEFS = (
    ToolDef(
        "read_file",
        "Read a text file of the workspace, optionally only lines start_line..end_line (1-based).",
        _schema(
            {"path": _PATH},
            {
                "start_line": {"type": "integer", "minimum": 1},
                "end_line": {"type": "integer", "minimum": 1},
            },
        ),
        "ide",
        "read",
    ),
    ToolDef(
        "list_files",
        "List the files of a workspace directory ('.' is the root).",
        _schema({"path": _PATH}, {"recursive": {"type": "boolean"}}),
        "ide",
        "read",
    ),
    ToolDef(
        "search_files",
        "Search files under a directory for a regular expression.",
        _schema(
            {"path": _PATH, "regex": _string("Regular expression to search for.")},
            {"file_pattern": _string("Glob limiting which files are searched, e.g. '*.py'.")},
        ),
        "ide",
        "read",
    ),
    ToolDef(
        "write_file",
        "Create or overwrite a file with the given content.",
        _schema({"path": _PATH, "content": _string("The complete new file content.")}),
        "ide",
        "edit",
    ),
    ToolDef(
        "apply_diff",
        "Replace the exact text 'search' with 'replace' in a file.",
        _schema(
            {
                "path": _PATH,
                "search": _string("Exact text to find (must occur in the file)."),
                "replace": _string("Replacement text."),
            }
        ),
        "ide",
        "edit",
    ),
    ToolDef(
        "create_directory",
        "Create a directory (and missing parents).",
        _schema({"path": _PATH}),
        "ide",
        "edit",
    ),
    ToolDef("delete_file", "Delete a file.", _schema({"path": _PATH}), "ide", "edit"),
    ToolDef(
        "move_file",
        "Move or rename a file.",
        _schema({"source": _PATH, "destination": _PATH}),
        "ide",
        "edit",
    ),
    ToolDef(
        "execute_command",
        "Run a shell command in the workspace (or in cwd, relative to it).",
        _schema(
            {"command": _string("The command line to run.")},
            {"cwd": _PATH, "timeout_s": {"type": "number", "exclusiveMinimum": 0}},
        ),
        "ide",
        "command",
    ),
    ToolDef(
        "switch_mode",
        "Hand the conversation to another agent (mode).",
        _schema({"mode": _string("Name of the agent."), "reason": _string("Why.")}),
        "server",
        "mode",
    ),
    ToolDef(
        "new_task",
        "Delegate a subtask to an agent with its own context; its result comes back here.",
        _schema(
            {
                "mode": _string("Name of the agent."),
                "message": _string("Everything the subtask needs to know."),
            },
            {
                "model": {
                    **_string("Model for the subtask's LLM calls (default: the session's)."),
                    "minLength": 1,
                    "maxLength": MAX_MODEL_NAME,
                    "pattern": "\\S",
                }
            },
        ),
        "server",
        "mode",
    ),
    ToolDef(
        "attempt_completion",
        "Finish the task and report the result.",
        _schema({"result": _string("What was done.")}),
        "server",
        "mode",
    ),
    ToolDef(
        "ask_followup_question",
        "Ask the user a question and wait for the answer.",
        _schema(
            {"question": _string("The question.")},
            {"options": {"type": "array", "items": {"type": "string"}}},
        ),
        "server",
        "mode",
    ),
)

TOOLS: Mapping[str, ToolDef] = MappingProxyType({tool.name: tool for tool in _DEFS})


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    # Built on first use, and jsonschema imported then: it is a tenth of the ACP
    # adapter's start-up, and most processes validate no call before they answer.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(TOOLS[name].parameters)


# A drive letter ("C:", "c:/x", "C:x") is absolute or drive-relative on Windows;
# both point outside the workspace.
_DRIVE = re.compile(r"^[A-Za-z]:")


def tool_def(name: str) -> ToolDef:
    """The definition of tool *name*.

    Raises:
        ToolError: no such tool.
    """
    try:
        return TOOLS[name]
    except KeyError:
        known = ", ".join(TOOLS)
        raise ToolError(f"unknown tool {name!r}; known tools: {known}") from None


def is_ide_tool(name: str) -> bool:
    """Whether calls of *name* go to the IDE (``tool.call``) rather than run in the runtime."""
    tool = TOOLS.get(name)
    return tool is not None and tool.side == "ide"


def validate_call(name: str, raw_arguments: str) -> JSONObject:
    """Parse the model's argument text for tool *name* and validate it.

    An empty text counts as ``{}`` (some models send that for "no arguments").

    Raises:
        ToolError: unknown tool, text that is not a JSON object, arguments that break
            the schema, or a path outside the workspace.
    """
    tool_def(name)
    return validate_arguments(name, parse_arguments(name, raw_arguments))


def parse_arguments(name: str, raw_arguments: str) -> JSONObject:
    """The model's argument text for tool *name* as a JSON object (empty text: ``{}``).

    Raises:
        ToolError: the text is not JSON, or not an object.
    """
    text = raw_arguments.strip() or "{}"
    try:
        value: JSON = json.loads(text)
    except ValueError as exc:
        raise ToolError(f"{name}: arguments are not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ToolError(f"{name}: arguments must be a JSON object, got {text[:80]}")
    return value


def validate_arguments(name: str, arguments: JSONObject) -> JSONObject:
    """Validate already-parsed *arguments* (e.g. edited by a human) for tool *name*.

    Returns a shallow copy of *arguments*; path values are not rewritten.

    Raises:
        ToolError: unknown tool, schema violation or a path outside the workspace.
    """
    tool_def(name)
    errors = sorted(_validator(name).iter_errors(arguments), key=lambda e: list(map(str, e.path)))
    if errors:
        problems = []
        for error in errors:
            where = "/".join(map(str, error.path))
            problems.append(f"'{where}': {error.message}" if where else error.message)
        raise ToolError(f"{name}: " + "; ".join(problems))
    for key in PATH_ARGUMENTS:
        value = arguments.get(key)
        if isinstance(value, str):
            _check_path(name, key, value)
    return dict(arguments)


def _check_path(tool: str, key: str, value: str) -> None:
    if not value.strip():
        raise ToolError(f"{tool}: {key} must not be empty (use '.' for the workspace root)")
    if "\x00" in value:
        raise ToolError(f"{tool}: {key} {value!r} contains a NUL byte")
    # The IDE may run on Windows, so backslashes count as separators too.
    unified = value.replace("\\", "/")
    if unified.startswith(("/", "~")) or _DRIVE.match(unified):
        raise ToolError(f"{tool}: {key} {value!r} must be relative to the workspace")
    normal = posixpath.normpath(unified)
    if normal == ".." or normal.startswith("../"):
        raise ToolError(
            f"{tool}: {key} {value!r} escapes the workspace (it leads outside via '..')"
        )
