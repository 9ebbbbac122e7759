"""The approval policy: which tool calls run at once, ask a human, or are refused (SPEC §4.4).

A :class:`Rule` names a tool (an ``fnmatch`` glob such as ``execute_command`` or
``*``), optional argument globs, an action and a reason. For one call, all
*matching* rules are collected and the strongest action wins:
``deny`` > ``ask`` > ``allow`` > the default. Rule order only decides which rule's
wording is reported when several rules of the winning action match (the first).

Defaults: ``read_file``, ``list_files``, ``search_files`` and the server-side tools
are allowed; ``write_file``, ``apply_diff``, ``create_directory``, ``delete_file``,
``move_file`` and ``execute_command`` ask; an unknown tool asks. An MCP tool's
default comes from its server (:func:`mcp_default`): untrusted asks; a trusted
server's ``readOnlyHint`` allows and ``destructiveHint`` asks. Rules name MCP tools
as ``mcp__SERVER__TOOL`` or globs such as ``mcp__tracker__*``.

Argument globs use ``fnmatch.fnmatchcase`` on the argument's text (non-string
values as their JSON text; a missing argument never matches). ``*`` also matches
``/``, so ``docs/*`` covers the whole ``docs`` tree. Because a prefix like
``pytest*`` would also match ``pytest; rm -rf ~``, an **allow** rule's ``command``
glob does not match a command containing a shell control character
(``; & | ` $ < >`` or a newline) unless the glob itself contains it; such a call
falls through to the next rule or the default (ask).

Deny and ask rules on ``command`` match the whole command *or any segment* of it:
the command is cut at ``;``, ``&``, ``|`` (so also ``&&`` and ``||``), newlines,
backticks, ``$(``, ``(`` and ``)``, and each piece is stripped, so ``rm *`` denies
``pytest -q; rm -rf build``, ``make && rm -rf ~`` and ``echo $(rm -rf x)`` alike
(a command substitution runs its contents, so they count as a segment). Quotes are
not interpreted: a separator inside quotes also cuts, which can only make a deny or
ask rule match *more* often. This catches chained commands; it is not a sandbox
(``bash -c 'rm -rf x'`` or ``sudo rm`` need rules of their own).

Globs are checked when the file is loaded: an unclosed ``[`` (``[pytest``), which
``fnmatch`` would silently read as a literal ``[``, is refused with a
:class:`ConfigError` naming the file and the rule's number (write ``[[]`` for a
literal ``[``).

``remember: session`` on an approval calls :meth:`Policy.with_session_allow`, which
allows the *tool name* (any arguments) for the rest of the session: remembering
the exact arguments would almost never match again for writes and commands, and
"don't ask me again for this tool" is what the IDE button means. Session allows
are still below every configured ``deny`` and ``ask`` rule, so an administrator's
"always ask for ``git push*``" keeps asking.

TOML format (in the same config file as the modes)::

    [[approval.rules]]
    tool = "execute_command"
    match = { command = "pytest*" }
    action = "allow"
    reason = "tests are safe"

    [[approval.rules]]
    tool = "execute_command"
    match = { command = "rm *" }
    action = "deny"
    reason = "no destructive commands"

Rules are numbered from 1 in file order; the number appears in the decision's
wording ("rule 2: deny execute_command matching command='rm *' (no destructive
commands)").
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal, TypeAlias

from attrs import field, frozen

from sessions import JSON

from .._errors import ConfigError
from ._mcp import McpTool, is_mcp_name
from ._modes import read_toml
from ._tools import TOOLS

Action: TypeAlias = Literal["allow", "ask", "deny"]
ACTIONS: tuple[Action, ...] = ("deny", "ask", "allow")  # strongest first

_SHELL_CONTROL = frozenset(";&|`$<>\n\r")
_GLOB_CHARS = frozenset("*?[")
_SEGMENT_BREAK = re.compile(r"\$\(|[;&|`()\n\r]")


@frozen
class Rule:
    """``action`` for calls of tools matching ``tool`` whose arguments match ``match``."""

    tool: str
    match: Mapping[str, str] = field(factory=dict)
    action: Action = "ask"
    reason: str = ""

    def matches(self, tool: str, arguments: Mapping[str, JSON]) -> bool:
        if not fnmatch.fnmatchcase(tool, self.tool):
            return False
        for key, glob in self.match.items():
            if key not in arguments:
                return False
            raw = arguments[key]
            value = raw if isinstance(raw, str) else json.dumps(raw)
            if key == "command" and self.action != "allow":
                # Refusing or asking must not be dodged by chaining: any segment counts.
                candidates = (value, *command_segments(value))
                if not any(fnmatch.fnmatchcase(c, glob) for c in candidates):
                    return False
            elif not fnmatch.fnmatchcase(value, glob):
                return False
            if (
                self.action == "allow"
                and key == "command"
                and (set(value) - set(glob)) & (_SHELL_CONTROL)
            ):
                return False
        return True

    def describe(self) -> str:
        """The rule in words: ``deny execute_command matching command='rm *' (why)``."""
        text = f"{self.action} {self.tool}"
        if self.match:
            text += " matching " + ", ".join(f"{k}={v!r}" for k, v in sorted(self.match.items()))
        return f"{text} ({self.reason})" if self.reason else text


def command_segments(command: str) -> tuple[str, ...]:
    """The pieces of a shell *command* that deny and ask rules also match (see above)."""
    pieces = (piece.strip() for piece in _SEGMENT_BREAK.split(command))
    return tuple(piece for piece in pieces if piece)


@frozen
class Decision:
    """The policy's answer for one call, with the deciding rule in words."""

    action: Action
    rule_text: str


def _rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    return tuple(rules)


@frozen
class Policy:
    """Configured rules plus the allows remembered during one session (immutable)."""

    rules: tuple[Rule, ...] = field(default=(), converter=_rules)
    session_rules: tuple[Rule, ...] = field(default=(), converter=_rules)

    def evaluate(
        self, tool: str, arguments: Mapping[str, JSON], default: Decision | None = None
    ) -> Decision:
        """Decide *tool* called with (validated) *arguments*.

        *default* is the decision when no rule matches (an MCP tool's, from its
        server's trust and hints); omitted, the built-in tools' defaults apply.
        """
        numbered = [(f"rule {i}", rule) for i, rule in enumerate(self.rules, 1)]
        numbered += [("session rule", rule) for rule in self.session_rules]
        matching = [(label, rule) for label, rule in numbered if rule.matches(tool, arguments)]
        for action in ACTIONS:
            for label, rule in matching:
                if rule.action == action:
                    return Decision(action, f"{label}: {rule.describe()}")
        return default if default is not None else default_decision(tool)

    def with_session_allow(self, tool: str, arguments: Mapping[str, JSON]) -> Policy:
        """A policy that also allows *tool* (any arguments) for the rest of the session.

        *arguments* is accepted for the call site's symmetry and deliberately unused
        (see the module docstring).
        """
        del arguments
        if any(rule.tool == tool and not rule.match for rule in self.session_rules):
            return self
        remembered = Rule(tool, {}, "allow", "remembered for this session")
        return Policy(self.rules, (*self.session_rules, remembered))


def default_decision(tool: str) -> Decision:
    """The decision when no rule matches."""
    spec = TOOLS.get(tool)
    if spec is None:
        return Decision("ask", f"default: unknown tool {tool} asks for approval")
    if spec.side == "server":
        return Decision("allow", f"default: {tool} is allowed (server-side)")
    if spec.group == "read":
        return Decision("allow", f"default: {tool} is allowed (read-only)")
    return Decision("ask", f"default: {tool} asks for approval")


def mcp_default(tool: McpTool, trusted: bool) -> Decision:
    """The decision for an MCP tool no rule matches (see ``agents/_core/_mcp.py``).

    Annotations are the server's claims about its own tools, so they only count
    for a server the configuration trusts.
    """
    where = f"MCP server {tool.server}"
    if not trusted:
        return Decision("ask", f"default: {tool.name} asks ({where} is not trusted)")
    if tool.hints.destructive and not tool.hints.read_only:
        return Decision("ask", f"hint: {tool.name} has destructiveHint (trusted {where})")
    if tool.hints.read_only:
        return Decision("allow", f"hint: {tool.name} has readOnlyHint (trusted {where})")
    return Decision("ask", f"default: {tool.name} asks (trusted {where}, not read-only)")


def load_policy(path: Path | None) -> Policy:
    """The ``[[approval.rules]]`` of the TOML file at *path* (no file: defaults only).

    Raises:
        ConfigError: unreadable file, invalid TOML or invalid rules.
    """
    if path is None:
        return Policy()
    return parse_policy(read_toml(path), source=str(path))


def parse_policy(data: Mapping[str, object], *, source: str) -> Policy:
    """The policy of a parsed TOML document; keys other than ``approval.rules`` are ignored.

    Raises:
        ConfigError: the message names *source*, the rule number and the problem.
    """
    approval = data.get("approval", {})
    if not isinstance(approval, dict):
        raise ConfigError(f"{source}: 'approval' must be a table")
    tables = approval.get("rules", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{source}: approval.rules must be an array of [[approval.rules]] tables")
    return Policy(_parse_rule(table, f"{source}: rule {i}") for i, table in enumerate(tables, 1))


def _parse_rule(table: object, where: str) -> Rule:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a [[approval.rules]] table")
    unknown = sorted(set(table) - {"tool", "match", "action", "reason"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r} (fields: tool, match, action, reason)"
        )
    tool = table.get("tool")
    if not isinstance(tool, str) or not tool:
        raise ConfigError(f"{where}: 'tool' must be a non-empty string (a tool name or glob)")
    _check_glob(tool, f"{where}: 'tool'")
    # MCP tools are known only once their server runs: any mcp__SERVER__TOOL name goes.
    exact = not (_GLOB_CHARS & set(tool)) and not is_mcp_name(tool)
    if exact and tool not in TOOLS:
        raise ConfigError(f"{where}: unknown tool {tool!r}")
    action = table.get("action")
    if action == "allow" or action == "ask" or action == "deny":
        checked: Action = action
    else:
        raise ConfigError(f"{where}: 'action' must be one of allow, ask, deny (got {action!r})")
    reason = table.get("reason", "")
    if not isinstance(reason, str):
        raise ConfigError(f"{where}: 'reason' must be a string")
    raw_match = table.get("match", {})
    if not isinstance(raw_match, dict):
        raise ConfigError(f"{where}: 'match' must be a table of argument globs")
    match: dict[str, str] = {}
    for key, glob in raw_match.items():
        if not isinstance(glob, str):
            raise ConfigError(f"{where}: match.{key} must be a string glob")
        _check_glob(glob, f"{where}: match.{key}")
        if exact and key not in _argument_names(tool):
            raise ConfigError(f"{where}: {tool} has no argument {key!r}")
        match[key] = glob
    return Rule(tool, match, checked, reason)


def _check_glob(glob: str, where: str) -> None:
    """Refuse a glob that ``fnmatch`` would quietly read as something else."""
    start = _unclosed_bracket(glob)
    if start is not None:
        raise ConfigError(
            f"{where}: glob {glob!r} has an unclosed '[' at position {start + 1} "
            "(write '[[]' for a literal '[')"
        )


def _unclosed_bracket(glob: str) -> int | None:
    """Index of the first ``[`` without its ``]``, scanning as ``fnmatch.translate`` does."""
    i, n = 0, len(glob)
    while i < n:
        if glob[i] != "[":
            i += 1
            continue
        j = i + 1
        if j < n and glob[j] == "!":
            j += 1
        if j < n and glob[j] == "]":
            j += 1  # a ']' right after '[' or '[!' is a member, not the end
        while j < n and glob[j] != "]":
            j += 1
        if j >= n:
            return i
        i = j + 1
    return None


def _argument_names(tool: str) -> frozenset[str]:
    properties = TOOLS[tool].parameters.get("properties")
    return frozenset(properties) if isinstance(properties, dict) else frozenset()
