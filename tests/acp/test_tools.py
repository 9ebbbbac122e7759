"""IDE tools through the client: the terminal client's search/replace, a command's timeout,
and the workspace confinement that comes before any request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing

from server.acp._capabilities import ClientCaps
from server.acp._connection import LineReader, Peer
from server.acp._jsonrpc import Response
from server.acp._tools import ToolRunner
from server.chat import Workspace
from server.chat._command import ToolFailure
from server.chat._tools import search_replace
from sessions import JSON, JSONObject

CASES = [
    ("print(1)\n", "1", "2"),
    ("a\r\nb\r\n", "a\nb", "c\nd"),  # LF search text in a CRLF file
    ("x = 1\nx = 1\n", "x = 1", "y"),  # ambiguous
    ("x = 1\n", "y", "z"),  # missing
    ("x = 1\n", "  x = 1  ", "z"),  # missing, but with a whitespace hint
    ("x = 1\n", "", "z"),  # empty search
]


@pytest.mark.parametrize(("old", "search", "replace"), CASES)
def test_search_replace_matches_the_terminal_client(
    tmp_path: Path, old: str, search: str, replace: str
) -> None:
    (tmp_path / "f.txt").write_bytes(old.encode())
    workspace = Workspace(tmp_path)
    try:
        expected: str | Exception = workspace.edited(
            {"path": "f.txt", "search": search, "replace": replace}
        )[2]
    except ToolFailure as error:
        expected = error
    try:
        got: str | Exception = search_replace(old, search, replace, "f.txt")
    except ToolFailure as error:
        got = error
    assert str(got) == str(expected)


async def test_a_command_past_its_timeout_is_killed_and_released(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    peer = Peer()
    to_client, from_agent = trio.testing.memory_stream_one_way_pair()
    caps = ClientCaps(terminal=True)
    runner = ToolRunner(peer, "ses_1", Workspace(tmp_path), caps, tool_timeout=600.0)
    methods: list[str] = []
    updates: list[JSONObject] = []

    async def client() -> None:
        reader = LineReader(from_agent)
        while isinstance(line := await reader.next_line(), bytes):
            request = json.loads(line)
            methods.append(request["method"])
            if "id" not in request:  # a notification: nothing to answer
                continue
            results: dict[str, JSON] = {
                "terminal/create": {"terminalId": "t1"},
                "terminal/output": {"output": "started\n", "truncated": False},
            }
            if request["method"] != "terminal/wait_for_exit":  # the command never ends
                peer.deliver(Response(request["id"], results.get(request["method"], {})))

    async def update(fields: JSONObject) -> None:
        updates.append(fields)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.run_writer, to_client)
        nursery.start_soon(client)
        arguments: JSONObject = {"command": "sleep 60", "timeout_s": 5}
        with pytest.raises(ToolFailure, match="timed out after 5 s") as raised:
            await runner.run("call_1", "execute_command", arguments, update)
        peer.close()
    assert "started" in str(raised.value)
    # The wait that timed out is withdrawn ($/cancel_request), then the command killed.
    assert methods == [
        "terminal/create",
        "terminal/wait_for_exit",
        "$/cancel_request",
        "terminal/kill",
        "terminal/output",
        "terminal/release",
    ]
    assert updates == [
        {"toolCallId": "call_1", "content": [{"type": "terminal", "terminalId": "t1"}]}
    ]


async def test_paths_outside_the_cwd_are_refused_before_the_client_is_asked(
    tmp_path: Path,
) -> None:
    runner = ToolRunner(
        Peer(), "ses_1", Workspace(tmp_path), ClientCaps(True, True, True), tool_timeout=1.0
    )

    async def update(fields: JSONObject) -> None:
        raise AssertionError("no update expected")

    for name, arguments in (
        ("read_file", {"path": "../secret"}),
        ("write_file", {"path": "/etc/passwd", "content": "x"}),
        ("execute_command", {"command": "ls", "cwd": "../.."}),
    ):
        with pytest.raises(ToolFailure, match="workspace"):
            await runner.run("call_1", name, dict(arguments), update)
