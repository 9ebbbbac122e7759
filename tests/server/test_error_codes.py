"""Every error code the server can produce is documented in docs/protocol.md.

The codes are collected from the source, not listed by hand, so a new code fails
this test until it is documented: §9 (rejections, HTTP and frame errors) or the
``error`` event of §6 (errors inside a turn).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from agents import Ack, CommandError
from server._errors import command_error, store_error
from server._sse import ack_response
from sessions import LeaseHeld, LeaseLost, StorageUnavailable, StoreClosed
from tests.server.helpers import LiveServer

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
PACKAGES = ("server", "agents", "sessions")

# Calls whose argument at this position is an error code.
CODE_ARGUMENT = {
    "CommandError": 0,
    "ApiError": 1,
    "bad_request": 0,
    "error_frame": 0,
    "ErrorEvent": 0,
}
CODE = re.compile(r"[a-z][a-z0-9_]*")
# Fallbacks that no code path can reach, with the reason.
UNREACHABLE = {
    "rejected": "server/_sse.py: code of a rejected ack without one; Ack.rejected always sets it",
}


def _strings(node: ast.AST) -> Iterator[str]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _code_defaults(args: ast.arguments) -> Iterator[ast.expr]:
    """Default values of parameters named ``code`` (e.g. ModelError's "model_error")."""
    positional = [*args.posonlyargs, *args.args]
    with_defaults = positional[len(positional) - len(args.defaults) :]
    pairs = list(zip(with_defaults, args.defaults, strict=True))
    pairs += [
        (arg, default)
        for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)
        if default is not None
    ]
    return (default for arg, default in pairs if arg.arg == "code")


def _call_codes(call: ast.Call) -> Iterator[str]:
    index = CODE_ARGUMENT.get(_name(call.func))
    if index is not None and len(call.args) > index:
        arg = call.args[index]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield arg.value
    for keyword in call.keywords:
        if keyword.arg == "code":
            yield from _strings(keyword.value)


def _assigned_codes(targets: list[ast.expr], value: ast.expr) -> Iterator[str]:
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    if "code" in names:
        # e.g. code = {CLOSE_NOT_FOUND: "not_found"}.get(close.code, "bad_hello")
        yield from (v for v in _strings(value) if CODE.fullmatch(v))
    elif any(name.endswith("_CODES") for name in names) and isinstance(value, ast.Dict):
        # Status -> code tables, e.g. server/_app.py's _HTTP_CODES (not ANSI codes).
        values = [v.value for v in value.values if isinstance(v, ast.Constant)]
        yield from (v for v in values if isinstance(v, str) and CODE.fullmatch(v))


def codes_in(tree: ast.AST) -> Iterator[str]:
    """String codes passed to the error constructors, as ``code=``, or assigned to a code."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield from _call_codes(node)
        elif isinstance(node, ast.arguments):
            for default in _code_defaults(node):
                yield from _strings(default)
        elif isinstance(node, ast.Assign):
            yield from _assigned_codes(node.targets, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            yield from _assigned_codes([node.target], node.value)
        elif isinstance(node, ast.Dict):
            # Literal error objects: {"code": "...", "message": ...}.
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "code"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    yield value.value


def produced_codes() -> dict[str, set[str]]:
    """code -> the files producing it."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for code in codes_in(tree):
                found.setdefault(code, set()).add(str(path.relative_to(ROOT)))
    return found


def _section(text: str, heading: str) -> str:
    """From *heading* to the next heading of the same or a higher level."""
    start = text.index(heading)
    level = heading.split(" ", 1)[0]
    pattern = rf"^#{{1,{len(level)}}} "
    following = re.search(pattern, text[start + len(heading) :], re.MULTILINE)
    end = start + len(heading) + following.start() if following else len(text)
    return text[start:end]


def documented_codes() -> set[str]:
    """Codes in backticks in §9 and in the ``error`` event's section of §6."""
    text = DOC.read_text(encoding="utf-8")
    sections = _section(text, "## 9. ") + _section(text, "### `error`\n")
    return set(re.findall(rf"`({CODE.pattern})`", sections))


def test_the_collector_sees_every_kind_of_code_source() -> None:
    source = """
CommandError("c1", "m")
ApiError(400, "c2", "m")
bad_request("c3", "m")
error_frame("c4", "m")
ErrorEvent("c5", "m", False)
ModelError("m", code="c6")
def f(code: str = "c7") -> None: ...
code = {1: "c8"}.get(x, "c9")
_HTTP_CODES = {400: "c10"}
_ANSI_CODES = {"red": "\\x1b[31m"}
frame = {"type": "error", "code": "c11"}
CommandError(variable, "not a code")
ApiError(400, name, "not a code either")
"""
    assert set(codes_in(ast.parse(source))) == {f"c{i}" for i in range(1, 12)}


def test_every_produced_code_is_documented() -> None:
    produced = produced_codes()
    assert {"already_resolved", "not_waiting", "unknown_agent", "model_timeout"} <= produced.keys()
    undocumented = {
        code: sorted(files)
        for code, files in produced.items()
        if code not in documented_codes() and code not in UNREACHABLE
    }
    assert not undocumented, f"document these codes in docs/protocol.md §9: {undocumented}"


def test_unreachable_fallbacks_are_still_in_the_code() -> None:
    assert UNREACHABLE.keys() <= produced_codes().keys()


async def test_an_unknown_agent_names_the_valid_ones(server: LiveServer) -> None:
    async with server.http() as http:
        agents = [a["name"] for a in (await http.get("/v1/agents")).json()["agents"]]
        response = await http.post("/v1/sessions", json={"agent": "nosuch"})
        empty = await http.post("/v1/sessions", json={"agent": ""})  # not "the default"
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "unknown_agent",
        "message": f"unknown agent 'nosuch'; agents: {', '.join(agents)}",
    }
    assert (empty.status_code, empty.json()["error"]["code"]) == (400, "unknown_agent")
    assert agents[:2] == ["orchestrator", "coder"]


async def test_another_replica_running_the_session_is_a_503_to_retry() -> None:
    """Whatever path reaches it (a command's ack, a session change, a lease error
    the forwarding did not absorb), ``session_elsewhere`` tells the client to retry."""
    refused = ack_response(Ack("c1", "rejected", "no answer in time", "session_elsewhere"))
    assert (refused.status_code, refused.headers["Retry-After"]) == (503, "1")
    # A refused ack says "retry" exactly as an API error with the same code does.
    for code, api in (
        ("shutting_down", store_error(StoreClosed("closed"))),
        ("storage_unavailable", store_error(StorageUnavailable("disk full"))),
        ("session_elsewhere", store_error(LeaseLost("ses_x"))),
    ):
        ack = ack_response(Ack("c2", "rejected", "no", code))
        assert api.code == code and api.retry_after is not None
        assert (ack.status_code, ack.headers["Retry-After"]) == (api.status, str(api.retry_after))
        assert (await ack.get_json())["error"]["retryable"] is True
    assert "Retry-After" not in ack_response(Ack("c3", "rejected", "no", "conflict")).headers
    for api in (
        command_error(CommandError("session_elsewhere", "no answer in time")),
        store_error(LeaseHeld("ses_x", "replica-a", 0.0)),
        store_error(LeaseLost("ses_x")),
    ):
        assert (api.status, api.code, api.retry_after) == (503, "session_elsewhere", 1)
    assert command_error(CommandError("invalid_request", "no")).status == 400
