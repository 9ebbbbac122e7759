"""Aids for tests of code built on agents (kept apart from the runtime API, like
``trio.testing``): fold a session's log into its derived state, check the
pairing invariant of a history, and the policy and modes' building blocks."""

from ._core._modes import Mode, parse_modes, parse_route_answer, route_by_keywords
from ._core._policy import Decision, Rule, parse_policy
from ._core._state import SessionState, check_pairing
from ._core._tools import ToolDef, validate_call

__all__ = [
    "Decision",
    "Mode",
    "Rule",
    "SessionState",
    "ToolDef",
    "check_pairing",
    "parse_modes",
    "parse_policy",
    "parse_route_answer",
    "route_by_keywords",
    "validate_call",
]
