r"""Agents (modes) as data: which tools each may use and on which files (SPEC §4.1).

The built-in modes live in the packaged ``agents/modes.toml``. A user config file
uses the same format; its ``[modes.NAME]`` tables change built-in modes field by
field or add new ones (other top-level tables, e.g. ``[approval]``, are ignored
here, so one config file can hold everything). Fields of a ``[modes.NAME]`` table:

================  ========================================================================
field             meaning
================  ========================================================================
description       one line for ``GET /v1/agents`` (required for a new mode)
system_prompt     the LLM's system prompt (required for a new mode; surrounding blank
                  lines are stripped)
tool_groups       groups granted whole: ``read``, ``edit``, ``command``, ``mode``
tools             extra single tools granted on top of the groups
file_regex        edit tools may touch only paths where this regex matches (``re.search``
                  on the path with ``/`` separators); ``""`` removes a built-in one
model             model name used for this mode instead of the server's; ``""`` removes it
restriction       a sentence quoted when a call is refused; ``""`` removes it
mcp               MCP servers (or ``SERVER/TOOL_GLOB``) whose tools the mode may use, e.g.
                  ``["docs", "tracker/search_*"]`` (servers: ``[mcp.servers.NAME]``)
================  ========================================================================

Example (a custom mode, and the debug agent on a bigger model)::

    [modes.tester]
    description = "Write and run tests."
    system_prompt = "You are the tester agent. You only touch files under tests/."
    tool_groups = ["read", "command"]
    tools = ["write_file", "apply_diff", "switch_mode", "attempt_completion"]
    file_regex = '^tests/'

    [modes.debug]
    model = "gpt-4.1"

Mode names match ``[a-z][a-z0-9_-]*``. Unknown fields, unknown groups or tools, and
invalid regexes are refused with :class:`ConfigError` naming the file and the field.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from attrs import field, frozen

from sessions import JSON, JSONObject

from .._errors import ConfigError, ToolError
from ._mcp import Selector, parse_selector
from ._model import ToolSpec
from ._tools import GROUPS, TOOLS, tool_def

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_FIELDS = (
    "description",
    "system_prompt",
    "tool_groups",
    "tools",
    "file_regex",
    "model",
    "restriction",
    "mcp",
)
_OPTIONAL_TEXT = ("file_regex", "model", "restriction")
# Arguments naming a file an edit tool changes; ``cwd`` is never an edit target.
_EDIT_TARGETS = ("path", "source", "destination")


@frozen
class Mode:
    """One agent: prompt, granted tools and restrictions."""

    name: str
    description: str
    system_prompt: str
    tool_groups: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    file_regex: str | None = None
    model: str | None = None
    restriction: str | None = None
    mcp: tuple[Selector, ...] = ()  # the MCP servers (and tools) it may use

    def tool_names(self) -> tuple[str, ...]:
        """Every tool this mode may call, in catalogue order."""
        return tuple(
            name
            for name, tool in TOOLS.items()
            if tool.group in self.tool_groups or name in self.tools
        )


@frozen
class ModeRegistry:
    """The available modes by name."""

    modes: Mapping[str, Mode]
    # tools_for's answers, per mode name: the same tuple every step, so a
    # provider can encode a mode's tools once (modes do not change once loaded).
    _tool_specs: dict[str, tuple[ToolSpec, ...]] = field(
        factory=dict, init=False, eq=False, repr=False
    )

    def get(self, name: str) -> Mode:
        """The mode called *name*.

        Raises:
            KeyError: no such mode (the message lists the known ones).
        """
        try:
            return self.modes[name]
        except KeyError:
            raise KeyError(f"unknown agent {name!r}; agents: {', '.join(self.modes)}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self.modes)

    def __contains__(self, name: object) -> bool:
        return name in self.modes

    def tools_for(self, mode: str | Mode) -> tuple[ToolSpec, ...]:
        """The tool specs offered to the model in *mode*.

        ``mode`` arguments carry the known mode names as an ``enum`` and edit tools
        mention the mode's ``file_regex``, so a real LLM can avoid refused calls.
        """
        spec = mode if isinstance(mode, Mode) else self.get(mode)
        known = self._tool_specs.get(spec.name)
        if known is not None and self.modes.get(spec.name) is spec:
            return known
        out: list[ToolSpec] = []
        for name in spec.tool_names():
            tool = TOOLS[name]
            parameters = tool.parameters
            description = tool.description
            if name in ("switch_mode", "new_task"):
                parameters = _with_mode_enum(parameters, self.names())
            if spec.file_regex is not None and tool.group == "edit":
                description += f" Only paths matching the regex {spec.file_regex} are allowed."
            out.append(ToolSpec(name, description, parameters))
        specs = tuple(out)
        if self.modes.get(spec.name) is spec:
            self._tool_specs[spec.name] = specs
        return specs

    def check_call(self, mode: str | Mode, tool_name: str, arguments: Mapping[str, JSON]) -> None:
        """Refuse a call *mode* may not make, before anything is recorded.

        *arguments* should already be schema-valid (``validate_call``).

        Raises:
            ToolError: unknown tool, a tool the mode lacks, an edit outside the mode's
                ``file_regex``, or ``switch_mode`` / ``new_task`` to an unknown mode.
            KeyError: *mode* itself is unknown (a bug of the caller).
        """
        spec = mode if isinstance(mode, Mode) else self.get(mode)
        tool = tool_def(tool_name)
        allowed = spec.tool_names()
        if tool_name not in allowed:
            why = f" ({spec.restriction})" if spec.restriction else ""
            raise ToolError(
                f"{spec.name} may not use {tool_name}{why}; its tools are: {', '.join(allowed)}"
            )
        if spec.file_regex is not None and tool.group == "edit":
            for key in _EDIT_TARGETS:
                value = arguments.get(key)
                if isinstance(value, str) and not re.search(
                    spec.file_regex, value.replace("\\", "/")
                ):
                    raise ToolError(
                        f"{spec.name} may only write files matching {spec.file_regex} "
                        f"(got {value!r})"
                    )
        if tool_name in ("switch_mode", "new_task"):
            target = arguments.get("mode")
            if isinstance(target, str) and target not in self.modes:
                raise ToolError(
                    f"{tool_name}: unknown mode {target!r}; modes: {', '.join(self.modes)}"
                )


def _with_mode_enum(parameters: JSONObject, names: tuple[str, ...]) -> JSONObject:
    out = copy.deepcopy(parameters)
    properties = out.get("properties")
    if isinstance(properties, dict) and isinstance(mode := properties.get("mode"), dict):
        mode["enum"] = list(names)
    return out


# --------------------------------------------------------------------------- loading


@functools.cache
def builtin_modes() -> ModeRegistry:
    """The packaged defaults (``agents/modes.toml``)."""
    text = resources.files("agents").joinpath("modes.toml").read_text(encoding="utf-8")
    return parse_modes(tomllib.loads(text), source="agents/modes.toml", base=ModeRegistry({}))


def load_modes(path: Path | None) -> ModeRegistry:
    """The built-in modes, overridden and extended by the TOML file at *path*.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or its modes are invalid.
    """
    if path is None:
        return builtin_modes()
    return parse_modes(read_toml(path), source=str(path))


def read_toml(path: Path) -> dict[str, object]:
    """Parse a TOML file.

    Raises:
        ConfigError: unreadable or invalid TOML (the message names the file).
    """
    try:
        with path.open("rb") as file:
            return dict(tomllib.load(file))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; tomllib lets this through
        raise ConfigError(f"{path}: invalid TOML (not UTF-8 at byte {exc.start})") from None


def parse_modes(
    data: Mapping[str, object], *, source: str, base: ModeRegistry | None = None
) -> ModeRegistry:
    """Apply the ``modes`` table of a parsed TOML document on top of *base*.

    *base* defaults to the built-in modes; other top-level keys are ignored.

    Raises:
        ConfigError: an invalid ``modes`` table (the message names *source* and field).
    """
    modes = dict((base if base is not None else builtin_modes()).modes)
    table = data.get("modes", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: 'modes' must be a table of [modes.NAME] tables")
    for name, fields in table.items():
        where = f"{source}: modes.{name}"
        if not _NAME.match(name):
            raise ConfigError(f"{where}: a mode name must match {_NAME.pattern}")
        if not isinstance(fields, dict):
            raise ConfigError(f"{where}: must be a table")
        modes[name] = _parse_mode(name, fields, modes.get(name), where)
    return ModeRegistry(modes)


def _parse_mode(name: str, fields: dict[str, object], old: Mode | None, where: str) -> Mode:
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(_FIELDS)})")
    lists = ("tool_groups", "tools", "mcp")
    text = {key: _text(fields, key, where) for key in fields if key not in lists}
    groups = _names(fields, "tool_groups", where)
    tools = _names(fields, "tools", where)
    selectors = _names(fields, "mcp", where)
    mcp = (
        old.mcp
        if old is not None and selectors is None
        else tuple(parse_selector(s, f"{where}.mcp") for s in selectors or ())
    )
    for group in groups or ():
        if group not in GROUPS:
            raise ConfigError(f"{where}.tool_groups: unknown group {group!r} ({', '.join(GROUPS)})")
    for tool in tools or ():
        if tool not in TOOLS:
            raise ConfigError(f"{where}.tools: unknown tool {tool!r} ({', '.join(TOOLS)})")
    if text.get("file_regex"):
        try:
            re.compile(text["file_regex"])
        except re.error as exc:
            raise ConfigError(f"{where}.file_regex: invalid regex ({exc})") from None
    if old is None:
        for key in ("description", "system_prompt"):
            if not text.get(key):
                raise ConfigError(f"{where}: a new mode needs a non-empty {key!r}")
        old = Mode(name, "", "")

    def optional(key: str, current: str | None) -> str | None:
        return (text[key] or None) if key in text else current

    return Mode(
        name=name,
        description=text.get("description", old.description),
        system_prompt=text.get("system_prompt", old.system_prompt).strip(),
        tool_groups=old.tool_groups if groups is None else groups,
        tools=old.tools if tools is None else tools,
        file_regex=optional("file_regex", old.file_regex),
        model=optional("model", old.model),
        restriction=optional("restriction", old.restriction),
        mcp=mcp,
    )


def _text(fields: dict[str, object], key: str, where: str) -> str:
    value = fields[key]
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: must be a string, got {type(value).__name__}")
    if key not in _OPTIONAL_TEXT and not value.strip():
        raise ConfigError(f"{where}.{key}: must not be empty")
    return value


def _names(fields: dict[str, object], key: str, where: str) -> tuple[str, ...] | None:
    if key not in fields:
        return None
    value = fields[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}.{key}: must be a list of strings")
    return tuple(str(item) for item in value)


# --------------------------------------------------------------------------- routing

#: Keyword routing, first row that matches wins (SPEC §4.1 fallback).
ROUTES: tuple[tuple[str, frozenset[str]], ...] = (
    ("architect", frozenset({"plan", "plans", "planning", "design", "designs", "architecture"})),
    ("ask", frozenset({"explain", "what", "why", "how does"})),
    (
        "debug",
        frozenset(
            {"debug", "debugging", "fix", "fixes", "error", "errors", "bug", "bugs", "traceback"}
        ),
    ),
)
_PUNCTUATION = ".,;:!?\"'()[]{}<>`*"


def _words(text: str) -> list[str]:
    # Whole words only: "docs/plan.md" or "ValueError" must not count as keywords.
    words = [raw.strip(_PUNCTUATION).lower().split("'")[0] for raw in text.split()]
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def match_keyword(text: str) -> tuple[str, str | None]:
    """``(agent, keyword)`` by :data:`ROUTES`; ``("coder", None)`` when nothing matches."""
    words = _words(text)
    for agent, keywords in ROUTES:
        for word in words:
            if word in keywords:
                return agent, word
    return "coder", None


def route_by_keywords(text: str) -> str:
    """The agent for *text*: plan/design/architecture → architect; explain/what/why/
    "how does" → ask; debug/fix/error/bug/traceback → debug; otherwise coder."""
    return match_keyword(text)[0]


def parse_route_answer(text: str, registry: ModeRegistry) -> tuple[str, str] | None:
    """``(agent, reason)`` from the LLM's routing answer ``{"agent": .., "reason": ..}``.

    Tolerates prose or code fences around the object. Returns None when there is no
    JSON object, no string ``agent`` or an unknown agent (the caller then falls back
    to :func:`route_by_keywords`); a missing reason becomes ``""``.
    """
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        value: JSON = json.loads(text[start : end + 1])
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(agent := value.get("agent"), str):
        return None
    agent = agent.strip().lower()
    if agent not in registry:
        return None
    reason = value.get("reason")
    return agent, reason.strip() if isinstance(reason, str) else ""
