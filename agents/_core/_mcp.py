"""MCP servers as a tool source: their configuration, tool names and default decisions.

Pure values; the client that talks to the servers is ``agents/_tools/_mcp_*.py``
(the one place that imports the ``mcp`` SDK).

Configuration (the server's TOML config file)::

    [mcp.servers.docs]                 # stdio: the runtime starts the process
    command = "mcp-server-docs"
    args = ["--index", "/srv/docs"]
    env = { DOCS_LANG = "en" }         # added to a minimal environment
    cwd = "/srv"
    trusted = true                     # its tool annotations set the defaults
    tools = ["search_*", "get_page"]   # allow-list of the server's tools (globs)
    timeout_s = 30                     # per call
    startup = "eager"                  # start with the runtime (default: on first use)

    [mcp.servers.tracker]              # streamable HTTP
    url = "https://tracker.example/mcp"
    headers = { "X-Team" = "core" }
    headers_env = { Authorization = "TRACKER_AUTH" }   # header <- environment variable

A mode selects servers, or some of their tools, with ``mcp = ["docs",
"tracker/search_*"]`` in the modes TOML. The model sees each tool as
``mcp__<server>__<tool>`` with the server's input schema; a call is validated
against that schema before anything is recorded, like every tool.

Approval defaults (an explicit ``[[approval.rules]]`` always wins): a **trusted**
server's annotations decide (``readOnlyHint`` → allow, ``destructiveHint`` → ask,
otherwise ask); every tool of an untrusted server asks.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, TypeAlias

from attrs import field, frozen

from sessions import JSON, JSONObject

from .._errors import ConfigError, ToolError
from ._model import ToolSpec
from ._tools import parse_arguments

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

INSTALL_HINT = "MCP servers need the 'mcp' extra: pip install 'agent-runtime[mcp]'"
PREFIX = "mcp__"
_MAX_OFFERS = 16
SEPARATOR = "__"
DEFAULT_TIMEOUT = 60.0
#: Server names become part of tool names, which models accept as ``^[a-zA-Z0-9_-]{1,64}$``.
_SERVER_NAME = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_FIELDS = frozenset(
    {"command", "args", "env", "cwd", "url", "headers", "headers_env"}
    | {"trusted", "tools", "timeout_s", "startup"}
)


@frozen
class StdioTransport:
    """A server the runtime starts as a child process and talks to over stdin/stdout."""

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(factory=lambda: MappingProxyType({}))
    cwd: str | None = None


@frozen
class HttpTransport:
    """A server reached over MCP's streamable HTTP transport."""

    url: str
    headers: Mapping[str, str] = field(factory=lambda: MappingProxyType({}))
    #: header name -> environment variable holding its value (read when connecting)
    headers_env: Mapping[str, str] = field(factory=lambda: MappingProxyType({}))


Transport: TypeAlias = StdioTransport | HttpTransport
Startup: TypeAlias = Literal["lazy", "eager"]


@frozen
class McpServerConfig:
    """One ``[mcp.servers.NAME]`` table."""

    name: str
    transport: Transport
    trusted: bool = False
    tools: tuple[str, ...] | None = None  # allow-list globs over the server's tool names
    timeout_s: float = DEFAULT_TIMEOUT
    startup: Startup = "lazy"

    def allows(self, tool: str) -> bool:
        """Whether the allow-list lets the server's tool *tool* be mounted at all."""
        return self.tools is None or any(fnmatch.fnmatchcase(tool, g) for g in self.tools)


@frozen
class ToolHints:
    """MCP tool annotations (``None``: the server did not say)."""

    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None


@frozen
class McpTool:
    """A tool of an MCP server, as the model and the policy see it."""

    server: str
    tool: str  # the server's own name for it
    description: str
    parameters: JSONObject
    hints: ToolHints = ToolHints()

    @property
    def name(self) -> str:
        return tool_name(self.server, self.tool)

    def to_spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)


def tool_name(server: str, tool: str) -> str:
    """``mcp__<server>__<tool>``: what the model calls the server's tool *tool*."""
    return f"{PREFIX}{server}{SEPARATOR}{tool}"


def split_name(name: str) -> tuple[str, str] | None:
    """``(server, tool)`` of an ``mcp__<server>__<tool>`` name, else ``None``."""
    if not name.startswith(PREFIX):
        return None
    server, sep, tool = name[len(PREFIX) :].partition(SEPARATOR)
    return (server, tool) if sep and server and tool else None


def is_mcp_name(name: str) -> bool:
    return split_name(name) is not None


OutcomeKind: TypeAlias = Literal["ok", "error", "failed", "timeout"]


@frozen
class McpOutcome:
    """How one MCP call ended, as text for the model.

    ``ok``: the tool's result; ``error``: the tool said ``isError`` (its text);
    ``failed``: the call did not complete (protocol error, the server stopped or
    could not start; whether it took effect is unknown); ``timeout``: no answer
    within the server's ``timeout_s`` (cancellation was sent).
    """

    kind: OutcomeKind
    text: str

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


# --------------------------------------------------------------------------- selection


@frozen
class Selector:
    """One entry of a mode's ``mcp`` list: a server, and a glob over its tools."""

    server: str
    tools: str = "*"

    def selects(self, server: str, tool: str) -> bool:
        return server == self.server and fnmatch.fnmatchcase(tool, self.tools)

    def __str__(self) -> str:
        return self.server if self.tools == "*" else f"{self.server}/{self.tools}"


def parse_selector(text: str, where: str) -> Selector:
    """``"docs"`` or ``"tracker/search_*"``.

    Raises:
        ConfigError: an empty part or a server name that cannot be one.
    """
    server, _, tools = text.partition("/")
    if not _SERVER_NAME.match(server) or (_ and not tools):
        raise ConfigError(
            f"{where}: mcp entry {text!r} must be 'SERVER' or 'SERVER/TOOL_GLOB' "
            "(server names: letters, digits and '-')"
        )
    return Selector(server, tools or "*")


def selects(selectors: tuple[Selector, ...], tool: McpTool) -> bool:
    return any(s.selects(tool.server, tool.tool) for s in selectors)


# --------------------------------------------------------------------------- validation


@frozen
class MountedTools:
    """The MCP tools offered in one step, by model-facing name, with their validators."""

    tools: Mapping[str, McpTool] = field(factory=lambda: MappingProxyType({}))
    _validators: dict[str, Draft202012Validator] = field(
        factory=dict, init=False, eq=False, repr=False
    )
    # id(base) -> (base, base + these tools' specs), see after()
    _offers: dict[int, tuple[tuple[ToolSpec, ...], tuple[ToolSpec, ...]]] = field(
        factory=dict, init=False, eq=False, repr=False
    )

    @classmethod
    def of(cls, tools: tuple[McpTool, ...]) -> MountedTools:
        return cls(MappingProxyType({t.name: t for t in tools}))

    def validate(self, name: str, raw_arguments: str) -> JSONObject:
        """The model's arguments for MCP tool *name*, checked against the server's schema.

        Raises:
            ToolError: the tool is not offered, or the arguments break its schema.
        """
        tool = self.tools.get(name)
        if tool is None:
            offered = ", ".join(self.tools) or "none"
            raise ToolError(f"unknown tool {name!r}; MCP tools offered: {offered}")
        arguments = parse_arguments(name, raw_arguments)
        return self.check(tool, arguments)

    def after(self, base: tuple[ToolSpec, ...]) -> tuple[ToolSpec, ...]:
        """*base* (a mode's built-in tools) followed by these tools' specs.

        The same tuple for the same *base*: a provider encodes a tool list once
        per tuple (by identity), and an MCP mode's list must not be new every step.
        """
        hit = self._offers.get(id(base))
        if hit is not None and hit[0] is base:
            return hit[1]
        offer = base + tuple(tool.to_spec() for tool in self.tools.values())
        if len(self._offers) >= _MAX_OFFERS:  # a few modes share one set of servers
            self._offers.clear()
        self._offers[id(base)] = (base, offer)
        return offer

    def check_named(self, name: str, arguments: JSONObject) -> JSONObject:
        """*arguments* (e.g. edited by a human) checked against MCP tool *name*'s schema.

        Raises:
            ToolError: the tool is not offered now, or the arguments break its schema.
        """
        tool = self.tools.get(name)
        if tool is None:
            raise ToolError(f"{name} is not offered now (its MCP server's tools are not loaded)")
        return self.check(tool, arguments)

    def merged(self, other: MountedTools) -> MountedTools:
        """These tools and *other*'s (the latest wins): what a session has offered lately."""
        if not other.tools or other.tools.items() <= self.tools.items():
            return self
        return MountedTools(MappingProxyType({**self.tools, **other.tools}))

    def check(self, tool: McpTool, arguments: JSONObject) -> JSONObject:
        # Imported on first use: jsonschema is a tenth of the ACP adapter's start-up.
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        validator = self._validators.get(tool.name)
        if validator is None:
            try:
                Draft202012Validator.check_schema(tool.parameters)
                validator = Draft202012Validator(tool.parameters)
            except SchemaError:
                # A server's broken schema must not block its tool: only the object check.
                validator = Draft202012Validator({"type": "object"})
            self._validators[tool.name] = validator
        try:
            errors = sorted(validator.iter_errors(arguments), key=lambda e: list(map(str, e.path)))
        except Exception:  # a $ref the schema cannot resolve, or the like
            # The server's schema is broken (found only when used): check the object alone.
            validator = self._validators[tool.name] = Draft202012Validator({"type": "object"})
            errors = sorted(validator.iter_errors(arguments), key=lambda e: list(map(str, e.path)))
        if errors:
            problems = []
            for error in errors[:5]:
                where = "/".join(map(str, error.path))
                problems.append(f"'{where}': {error.message}" if where else error.message)
            raise ToolError(f"{tool.name}: " + "; ".join(problems))
        return dict(arguments)


# --------------------------------------------------------------------------- config


def parse_servers(data: Mapping[str, object], *, source: str) -> tuple[McpServerConfig, ...]:
    """The ``[mcp.servers.*]`` tables of a parsed TOML document (none: ``()``).

    Raises:
        ConfigError: naming *source*, the server and the problem.
    """
    mcp = data.get("mcp", {})
    if not isinstance(mcp, dict):
        raise ConfigError(f"{source}: 'mcp' must be a table")
    unknown = sorted(set(mcp) - {"servers"})
    if unknown:
        raise ConfigError(f"{source}: unknown key mcp.{unknown[0]} (expected mcp.servers.NAME)")
    servers = mcp.get("servers", {})
    if not isinstance(servers, dict):
        raise ConfigError(f"{source}: 'mcp.servers' must be a table of [mcp.servers.NAME]")
    return tuple(
        _parse_server(name, table, f"{source}: mcp.servers.{name}")
        for name, table in servers.items()
    )


def _parse_server(name: str, table: object, where: str) -> McpServerConfig:
    if not _SERVER_NAME.match(name):
        raise ConfigError(f"{where}: a server name has 1-32 letters, digits or '-'")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(_FIELDS))})"
        )
    has_command, has_url = "command" in table, "url" in table
    if has_command == has_url:
        raise ConfigError(
            f"{where}: give exactly one of 'command' (stdio) or 'url' (streamable HTTP)"
        )
    transport: Transport
    if has_command:
        for key in ("headers", "headers_env"):
            if key in table:
                raise ConfigError(f"{where}: {key!r} is for 'url' servers")
        cwd = table.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise ConfigError(f"{where}: 'cwd' must be a string")
        transport = StdioTransport(
            _string(table, "command", where),
            _strings(table, "args", where) or (),
            _string_table(table, "env", where),
            cwd,
        )
    else:
        for key in ("args", "env", "cwd"):
            if key in table:
                raise ConfigError(f"{where}: {key!r} is for 'command' servers")
        url = _string(table, "url", where)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: 'url' must be an http:// or https:// URL")
        transport = HttpTransport(
            url, _string_table(table, "headers", where), _string_table(table, "headers_env", where)
        )
    trusted = table.get("trusted", False)
    if not isinstance(trusted, bool):
        raise ConfigError(f"{where}: 'trusted' must be true or false")
    timeout = table.get("timeout_s", DEFAULT_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigError(f"{where}: 'timeout_s' must be a positive number of seconds")
    startup = table.get("startup", "lazy")
    if startup != "lazy" and startup != "eager":
        raise ConfigError(f"{where}: 'startup' must be 'lazy' or 'eager'")
    return McpServerConfig(
        name, transport, trusted, _strings(table, "tools", where), float(timeout), startup
    )


def _string(table: Mapping[str, object], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    return value


def _strings(table: Mapping[str, object], key: str, where: str) -> tuple[str, ...] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key!r} must be an array of strings")
    return tuple(str(v) for v in value)


def _string_table(table: Mapping[str, object], key: str, where: str) -> Mapping[str, str]:
    value = table.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where}: {key!r} must be a table of strings")
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def hint_json(hints: ToolHints) -> JSON:
    """The hints as JSON (``GET /v1/mcp``): only those the server gave."""
    out: JSONObject = {}
    for key, value in (
        ("readOnlyHint", hints.read_only),
        ("destructiveHint", hints.destructive),
        ("idempotentHint", hints.idempotent),
        ("openWorldHint", hints.open_world),
    ):
        if value is not None:
            out[key] = value
    return out
