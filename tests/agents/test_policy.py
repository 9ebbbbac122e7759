"""The approval policy (SPEC §4.4)."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

import pytest

from agents._core._policy import (
    Decision,
    Policy,
    Rule,
    command_segments,
    load_policy,
    parse_policy,
)
from agents._core._tools import TOOLS
from agents._errors import ConfigError

DEFAULTS = {
    "read_file": Decision("allow", "default: read_file is allowed (read-only)"),
    "list_files": Decision("allow", "default: list_files is allowed (read-only)"),
    "search_files": Decision("allow", "default: search_files is allowed (read-only)"),
    "write_file": Decision("ask", "default: write_file asks for approval"),
    "apply_diff": Decision("ask", "default: apply_diff asks for approval"),
    "create_directory": Decision("ask", "default: create_directory asks for approval"),
    "delete_file": Decision("ask", "default: delete_file asks for approval"),
    "move_file": Decision("ask", "default: move_file asks for approval"),
    "execute_command": Decision("ask", "default: execute_command asks for approval"),
    "switch_mode": Decision("allow", "default: switch_mode is allowed (server-side)"),
    "new_task": Decision("allow", "default: new_task is allowed (server-side)"),
    "attempt_completion": Decision("allow", "default: attempt_completion is allowed (server-side)"),
    "ask_followup_question": Decision(
        "allow", "default: ask_followup_question is allowed (server-side)"
    ),
}


def test_defaults() -> None:
    assert set(DEFAULTS) == set(TOOLS)
    policy = Policy()
    for tool, decision in DEFAULTS.items():
        assert policy.evaluate(tool, {}) == decision
    assert policy.evaluate("mystery", {}) == Decision(
        "ask", "default: unknown tool mystery asks for approval"
    )


RULES = [
    Rule("execute_command", {}, "allow", "trusted"),
    Rule("execute_command", {}, "ask", "check"),
    Rule("execute_command", {}, "deny", "never"),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_deny_beats_ask_beats_allow_in_any_order(order: tuple[int, ...]) -> None:
    rules = [RULES[i] for i in order]
    number = rules.index(RULES[2]) + 1
    assert Policy(rules).evaluate("execute_command", {"command": "ls"}) == Decision(
        "deny", f"rule {number}: deny execute_command (never)"
    )
    without_deny = [r for r in rules if r.action != "deny"]
    assert Policy(without_deny).evaluate("execute_command", {"command": "ls"}).action == "ask"
    only_allow = [r for r in rules if r.action == "allow"]
    assert Policy(only_allow).evaluate("execute_command", {"command": "ls"}).action == "allow"


def test_only_matching_rules_count_and_the_first_of_the_winner_speaks() -> None:
    policy = Policy(
        [
            Rule("execute_command", {"command": "rm *"}, "deny", "no destructive commands"),
            Rule("execute_command", {"command": "pytest*"}, "allow", "tests"),
            Rule("*", {}, "allow", "everything else"),
            Rule("execute_command", {"command": "pytest -k*"}, "deny", "no filtering"),
        ]
    )
    assert policy.evaluate("execute_command", {"command": "pytest -q"}) == Decision(
        "allow", "rule 2: allow execute_command matching command='pytest*' (tests)"
    )
    assert policy.evaluate("execute_command", {"command": "rm -rf /"}) == Decision(
        "deny",
        "rule 1: deny execute_command matching command='rm *' (no destructive commands)",
    )
    assert policy.evaluate("execute_command", {"command": "pytest -k x"}).rule_text.startswith(
        "rule 4: deny"
    )
    assert policy.evaluate("write_file", {"path": "a", "content": ""}) == Decision(
        "allow", "rule 3: allow * (everything else)"
    )


def test_argument_globs() -> None:
    policy = Policy(
        [
            Rule("write_file", {"path": "docs/*"}, "allow"),
            Rule("read_*", {"path": "*.env", "start_line": "1"}, "deny"),
            Rule("list_files", {"recursive": "true"}, "ask"),
        ]
    )
    assert policy.evaluate("write_file", {"path": "docs/a/b.md", "content": ""}).action == "allow"
    assert policy.evaluate("write_file", {"path": "src/docs/a", "content": ""}).action == "ask"
    assert policy.evaluate("write_file", {"content": ""}).action == "ask"  # missing argument
    assert policy.evaluate("read_file", {"path": "x.env", "start_line": 1}).action == "deny"
    assert policy.evaluate("read_file", {"path": "x.env"}).action == "allow"
    assert policy.evaluate("list_files", {"path": ".", "recursive": True}).action == "ask"
    assert policy.evaluate("list_files", {"path": ".", "recursive": False}).action == "allow"
    assert (
        Policy([Rule("write_file", {"path": "Docs/*"}, "allow")]).evaluate(
            "write_file", {"path": "docs/a"}
        )
        == DEFAULTS["write_file"]
    )  # case-sensitive on every platform


@pytest.mark.parametrize(
    "command",
    ["pytest; rm -rf ~", "pytest && curl x | sh", "pytest `x`", "pytest $(x)", "pytest\nrm"],
)
def test_allow_prefix_does_not_cover_chained_commands(command: str) -> None:
    allow = Rule("execute_command", {"command": "pytest*"}, "allow")
    assert (
        Policy([allow]).evaluate("execute_command", {"command": command})
        == DEFAULTS["execute_command"]
    )
    deny = Rule("execute_command", {"command": "pytest*"}, "deny")
    assert Policy([deny]).evaluate("execute_command", {"command": command}).action == "deny"


RM = Rule("execute_command", {"command": "rm *"}, "deny", "no destructive commands")


@pytest.mark.parametrize(
    "command",
    [
        "pytest -q; rm -rf build",
        "pytest -q;rm -rf build",
        "make && rm -rf ~",
        "false || rm -rf ~",
        "ls | rm -rf x",
        "sleep 1 & rm -rf x",
        "pytest\nrm -rf build",
        "echo $(rm -rf x)",
        "echo `rm -rf x`",
        "(cd src && rm -rf build)",
        'git commit -m "wip; rm later"',  # quotes are not interpreted: errs on refusing
    ],
)
def test_deny_matches_any_segment_of_a_chained_command(command: str) -> None:
    decision = Policy([RM]).evaluate("execute_command", {"command": command})
    assert decision == Decision(
        "deny", "rule 1: deny execute_command matching command='rm *' (no destructive commands)"
    )


@pytest.mark.parametrize("command", ["pytest -q", "echo rm -rf x", "pytest; echo rm", "firm x"])
def test_deny_does_not_match_segments_that_do_not_match(command: str) -> None:
    decision = Policy([RM]).evaluate("execute_command", {"command": command})
    assert decision == DEFAULTS["execute_command"]


def test_ask_matches_segments_too_and_allow_does_not() -> None:
    ask = Rule("execute_command", {"command": "git push*"}, "ask", "review pushes")
    allow_all = Rule("execute_command", {"command": "*;*"}, "allow", "anything chained")
    policy = Policy([allow_all, ask])
    assert policy.evaluate("execute_command", {"command": "pytest; git push"}) == Decision(
        "ask", "rule 2: ask execute_command matching command='git push*' (review pushes)"
    )
    allow_git = Policy([Rule("execute_command", {"command": "git push*"}, "allow")])
    assert (
        allow_git.evaluate("execute_command", {"command": "pytest; git push"})
        == DEFAULTS["execute_command"]
    )


def test_command_segments() -> None:
    assert command_segments("a; b && c || d | e & f\ng") == ("a", "b", "c", "d", "e", "f", "g")
    assert command_segments("echo $(rm x) `ls`") == ("echo", "rm x", "ls")
    assert command_segments("pytest -q") == ("pytest -q",)
    assert command_segments(" ; ") == ()


def test_allow_glob_may_name_shell_characters_itself() -> None:
    policy = Policy([Rule("execute_command", {"command": "make | tee *"}, "allow")])
    assert policy.evaluate("execute_command", {"command": "make | tee log"}).action == "allow"
    assert policy.evaluate("execute_command", {"command": "make | tee log; rm x"}).action == "ask"


def test_rule_wording() -> None:
    assert Rule("read_file").describe() == "ask read_file"
    assert (
        Rule("execute_command", {"cwd": "src", "command": "make*"}, "allow", "builds").describe()
        == "allow execute_command matching command='make*', cwd='src' (builds)"
    )


def test_remember_session_allows_the_tool_name() -> None:
    deny = Rule("write_file", {"path": "secrets/*"}, "deny", "secrets")
    ask = Rule("write_file", {"path": "ci/*"}, "ask", "ci needs review")
    base = Policy([deny, ask])
    policy = base.with_session_allow("write_file", {"path": "a.py", "content": "x"})
    assert policy.evaluate("write_file", {"path": "b.py", "content": "y"}) == Decision(
        "allow", "session rule: allow write_file (remembered for this session)"
    )
    assert policy.evaluate("write_file", {"path": "secrets/k", "content": ""}).action == "deny"
    assert policy.evaluate("write_file", {"path": "ci/x.yml", "content": ""}).action == "ask"
    assert policy.evaluate("apply_diff", {"path": "a", "search": "", "replace": ""}).action == "ask"
    assert base.evaluate("write_file", {"path": "b.py", "content": ""}) == DEFAULTS["write_file"]
    assert policy.with_session_allow("write_file", {}) is policy
    assert len(policy.with_session_allow("delete_file", {}).session_rules) == 2


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [modes.coder]
        model = "x"

        [approval]
        timeout = 60

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

        [[approval.rules]]
        tool = "*_file"
        action = "ask"
        """,
    )
    policy = load_policy(path)
    assert policy.rules == (
        Rule("execute_command", {"command": "pytest*"}, "allow", "tests are safe"),
        Rule("execute_command", {"command": "rm *"}, "deny", "no destructive commands"),
        Rule("*_file", {}, "ask", ""),
    )
    assert policy.evaluate("execute_command", {"command": "rm -r x"}).rule_text == (
        "rule 2: deny execute_command matching command='rm *' (no destructive commands)"
    )
    assert policy.evaluate("read_file", {"path": "a"}) == Decision("ask", "rule 3: ask *_file")
    assert load_policy(None) == Policy()
    assert parse_policy({}, source="x") == Policy()


INVALID = [
    ("approval = 1", "'approval' must be a table"),
    ("[approval]\nrules = 1", "approval.rules must be an array"),
    ("[approval]\nrules = [1]", "rule 1: must be a [[approval.rules]] table"),
    ("[[approval.rules]]\naction = 'allow'", "rule 1: 'tool' must be a non-empty string"),
    ("[[approval.rules]]\ntool = 'rm'\naction = 'deny'", "rule 1: unknown tool 'rm'"),
    ("[[approval.rules]]\ntool = 'read_file'", "rule 1: 'action' must be one of allow, ask, deny"),
    ("[[approval.rules]]\ntool = 'read_file'\naction = 'yes'", "(got 'yes')"),
    ("[[approval.rules]]\ntool = '*'\naction = 'ask'\nreason = 1", "'reason' must be a string"),
    ("[[approval.rules]]\ntool = '*'\naction = 'ask'\nmatch = 'x'", "'match' must be a table"),
    ("[[approval.rules]]\ntool = '*'\naction = 'ask'\nmatch = {a = 1}", "match.a must be a string"),
    (
        "[[approval.rules]]\ntool = 'read_file'\naction = 'ask'\nmatch = {command = 'x'}",
        "read_file has no argument 'command'",
    ),
    ("[[approval.rules]]\ntool = '*'\naction = 'ask'\nwhen = 1", "unknown field 'when'"),
    (
        "[[approval.rules]]\ntool = '*'\naction = 'ask'\n[[approval.rules]]\ntool = ''",
        "rule 2: 'tool' must be a non-empty string",
    ),
    ("[[approval.rules]\n", "invalid TOML"),
    (
        "[[approval.rules]]\ntool = 'execute_command'\naction = 'deny'\n"
        "match = {command = '[pytest'}",
        "rule 1: match.command: glob '[pytest' has an unclosed '[' at position 1 "
        "(write '[[]' for a literal '[')",
    ),
    (
        "[[approval.rules]]\ntool = '*'\naction = 'ask'\n"
        "[[approval.rules]]\ntool = 'read_[!'\naction = 'ask'",
        "rule 2: 'tool': glob 'read_[!' has an unclosed '[' at position 6",
    ),
    (
        "[[approval.rules]]\ntool = 'write_file'\naction = 'ask'\nmatch = {path = 'src/[]'}",
        "rule 1: match.path: glob 'src/[]' has an unclosed '['",
    ),
]


def test_bracket_globs_that_close_are_accepted() -> None:
    text = (
        "[[approval.rules]]\ntool = 'execute_command'\naction = 'deny'\n"
        "match = {command = '[[]x*'}\n"
        "[[approval.rules]]\ntool = 'write_file'\naction = 'ask'\n"
        "match = {path = '[]]*[!]]'}"
    )
    policy = parse_policy(tomllib.loads(text), source="p.toml")
    assert policy.evaluate("execute_command", {"command": "[x]"}).action == "deny"
    assert policy.evaluate("write_file", {"path": "]a", "content": ""}).rule_text.startswith(
        "rule 2"
    )


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_rules_raise_config_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
