"""``agent-runtime acp`` driven by acpx, a headless ACP client we did not write.

acpx (pinned in ``.ci/acp/package-lock.json``, installed by ``.ci/acp.sh``) runs as
a subprocess with ``--agent "<python> tee_agent.py LOG -- <python> -m server acp
--db DB"``. How it works, which the tests rely on:

* Sessions persist per ``(agent command, cwd, name)`` under ``$HOME/.acpx``: each
  test gets its own HOME. ``sessions new`` spawns the agent for ``initialize`` +
  ``session/new``; a ``prompt`` then hands its text to a detached "queue owner" acpx
  process (starting one if none runs), which spawns an agent process, sends
  ``initialize`` and ``session/resume`` of the saved session id (acpx prefers it to
  ``session/load`` when the agent offers both), then ``session/prompt``. The queue
  owner keeps that agent process for the prompts that follow until its TTL ends,
  so a test that needs a second invocation (one that resumes the session from our
  store) ends the queue owners between prompts.
* acpx serves ``fs/*`` and ``terminal/*`` itself, and answers permission requests
  per ``--approve-all`` / ``--deny-all`` / ``--non-interactive-permissions``.
* ``--format json`` prints every JSON-RPC message it exchanges (the replay during
  ``session/load`` excepted) on stdout. The tests read the agent side from the tee
  log instead, which also says who sent what.
* ``acpx cancel`` asks the queue owner, over its socket, to send ``session/cancel``
  (``Ctrl+C`` on the prompting acpx would do the same).

The queue owners run with ``--ttl 1`` (they exit a second after their last prompt);
the fixture terminates any still running when the test ends.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.acp.conformance import SCHEMA_PATH, UNSTABLE_SCHEMA_PATH
from tests.acp.conftest import (
    PROCESS_TIMEOUT,
    AcpTraffic,
    Connection,
    Finished,
    LineReader,
    agent_command,
    child_env,
    require_acpx,
    require_sdk_schema,
    run,
)

pytestmark = pytest.mark.slow

# acpx's exit status when every permission request of a prompt was denied.
ACPX_PERMISSION_DENIED = 5


@attrs.define
class Acpx:
    """acpx with one HOME (its session store), one work dir and one agent command."""

    executable: Path
    home: Path
    workdir: Path
    agent: str

    def argv(self, *args: str) -> list[str]:
        return [
            str(self.executable),
            "--agent",
            self.agent,
            "--cwd",
            str(self.workdir),
            "--format",
            "json",
            "--ttl",
            "1",
            *args,
        ]

    def env(self) -> dict[str, str]:
        return child_env(HOME=str(self.home))

    async def __call__(self, *args: str) -> Finished:
        """Run ``acpx [global options] ARGS`` to completion."""
        return await run(self.argv(*args), env=self.env(), cwd=self.workdir)

    async def new_session(self) -> str:
        """``sessions new``: the saved session's id (the adapter's session id)."""
        done = await self("sessions", "new")
        assert done.returncode == 0, done.describe()
        (created,) = [line for line in done.json_lines() if "acpxRecordId" in line]
        session_id = created["acpxRecordId"]
        assert isinstance(session_id, str)
        return session_id

    async def stop_queue_owners(self) -> None:
        """End the queue owners still running (their pids are in acpx's lock files)."""
        for lock in (self.home / ".acpx" / "queues").glob("*.lock"):
            try:
                pid = int(json.loads(lock.read_text())["pid"])
                handle = os.pidfd_open(pid)
            except (OSError, ValueError, KeyError):
                continue  # gone already (or the lock is being rewritten)
            try:
                os.kill(pid, signal.SIGTERM)
                with trio.move_on_after(10):
                    await trio.lowlevel.wait_readable(handle)  # readable once it exited
            except ProcessLookupError:
                pass
            finally:
                os.close(handle)


@pytest.fixture
def acpx_executable() -> Path:
    # Not in the async fixture: a skip raised inside trio loses its reason.
    return require_acpx()


@pytest.fixture
async def acpx(
    tmp_path: Path, acp_traffic: AcpTraffic, acpx_executable: Path
) -> AsyncIterator[Acpx]:
    executable = acpx_executable
    home, workdir = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    agent = shlex.join(acp_traffic.wrap(agent_command(tmp_path / "acp.db")))
    client = Acpx(executable, home, workdir, agent)
    try:
        yield client
    finally:
        await client.stop_queue_owners()


def test_vendored_schema_is_the_pinned_sdks() -> None:
    """tests/acp/schema holds the v1 schemas of the @agentclientprotocol/sdk .ci/acp pins."""
    pinned = require_sdk_schema()
    lock = json.loads((Path(__file__).parents[2] / ".ci/acp/package-lock.json").read_text())
    version = lock["packages"]["node_modules/@agentclientprotocol/sdk"]["version"]
    assert f"**version {version}**" in (SCHEMA_PATH.parent / "README.md").read_text()
    for vendored, theirs in [
        (SCHEMA_PATH, pinned),
        (UNSTABLE_SCHEMA_PATH, pinned.with_name("schema.unstable.json")),
    ]:
        assert json.loads(theirs.read_text()) == json.loads(vendored.read_text()), (
            f"{vendored} differs from {theirs} (@agentclientprotocol/sdk {version})"
        )


def prompt_connection(traffic: AcpTraffic) -> Connection:
    """The last agent process's traffic (acpx spawns one per prompt)."""
    connections = traffic.connections()
    assert connections, "acpx never started the agent"
    return connections[-1]


def resumed_and_prompted(conn: Connection, session_id: str) -> Any:
    """Check acpx's prompt sequence on *conn*; the ``session/prompt`` result."""
    assert [c.method for c in conn.calls() if c.caller == "client"][:3] == [
        "initialize",
        "session/resume",
        "session/prompt",
    ]
    assert conn.call("initialize").result["agentCapabilities"]["loadSession"] is True
    resume = conn.call("session/resume")
    assert resume.params["sessionId"] == session_id
    resume.result  # noqa: B018  (asserts the resume succeeded)
    return conn.call("session/prompt").result


async def test_file_written_by_acpx_fs(acpx: Acpx, acp_traffic: AcpTraffic) -> None:
    session_id = await acpx.new_session()
    done = await acpx("--approve-all", "prompt", "create hello.py with print(1)")
    assert done.returncode == 0, done.describe()
    printed = done.json_lines()  # acpx's output is JSON lines (fails the test otherwise)
    # acpx took the turn's context and cost meter (its SDK validates every update).
    updates = [line.get("params", {}).get("update", {}) for line in printed]
    (meter,) = [u for u in updates if u.get("sessionUpdate") == "usage_update"]
    assert meter["size"] == 4096 and meter["used"] > 0
    conn = prompt_connection(acp_traffic)
    assert resumed_and_prompted(conn, session_id)["stopReason"] == "end_turn"
    permission = conn.call("session/request_permission")
    assert permission.result["outcome"]["outcome"] == "selected"
    # acpx advertised fs.writeTextFile: the adapter must write through acpx.
    write = conn.call("fs/write_text_file")
    assert write.params == {
        "sessionId": session_id,
        "path": str(acpx.workdir / "hello.py"),
        "content": "print(1)",
    }
    write.result  # noqa: B018
    assert permission.at < write.at
    assert (acpx.workdir / "hello.py").read_text() == "print(1)"
    acp_traffic.assert_conforms()


async def test_command_runs_in_acpx_terminal(acpx: Acpx, acp_traffic: AcpTraffic) -> None:
    session_id = await acpx.new_session()
    done = await acpx("--approve-all", "prompt", "run echo hi")
    assert done.returncode == 0, done.describe()
    conn = prompt_connection(acp_traffic)
    assert resumed_and_prompted(conn, session_id)["stopReason"] == "end_turn"
    # acpx advertised terminal: the command runs in a terminal acpx created.
    create = conn.call("terminal/create")
    terminal_id = create.result["terminalId"]
    command = " ".join([create.params["command"], *create.params.get("args", [])])
    assert "echo hi" in command, create.params
    outputs = [c for c in conn.calls("terminal/output") if c.params["terminalId"] == terminal_id]
    assert outputs and "hi" in outputs[-1].result["output"], outputs
    assert [c.params["terminalId"] for c in conn.calls("terminal/release")] == [terminal_id]
    # The output reaches the model: its reply quotes it (after the terminal was read).
    assert "hi" in conn.text(after=outputs[-1].answered_at or 0), conn.text()
    acp_traffic.assert_conforms()


@pytest.mark.parametrize(
    "flags",
    [("--deny-all",), ("--non-interactive-permissions", "deny")],
    ids=["deny-all", "non-interactive-deny"],
)
async def test_refused_permission(
    acpx: Acpx, acp_traffic: AcpTraffic, flags: tuple[str, ...]
) -> None:
    session_id = await acpx.new_session()
    done = await acpx(*flags, "prompt", "create hello.py with print(1)")
    assert done.returncode == ACPX_PERMISSION_DENIED, done.describe()
    conn = prompt_connection(acp_traffic)
    # The turn still ends normally: a refused tool call is not a failed turn.
    assert resumed_and_prompted(conn, session_id)["stopReason"] == "end_turn"
    permission = conn.call("session/request_permission")
    chosen = permission.result["outcome"]
    assert chosen["outcome"] == "selected"
    kinds = {o["optionId"]: o["kind"] for o in permission.params["options"]}
    assert kinds[chosen["optionId"]].startswith("reject")
    assert not conn.calls("fs/write_text_file")
    assert not (acpx.workdir / "hello.py").exists()
    tool_call_id = permission.params["toolCall"]["toolCallId"]
    statuses = [
        u["status"]
        for u in conn.updates()
        if u.get("toolCallId") == tool_call_id and u.get("status")
    ]
    assert statuses and statuses[-1] == "failed", statuses
    acp_traffic.assert_conforms()


async def test_cancel_command_ends_the_turn_cancelled(acpx: Acpx, acp_traffic: AcpTraffic) -> None:
    # The stream stops at a gate after 3 words until released (never, here): only a
    # working cancel ends this turn, and it is provably mid-stream when cancelled.
    session_id = await acpx.new_session()
    cancel_result: list[Finished] = []
    with trio.fail_after(PROCESS_TIMEOUT):
        prompting = await trio.lowlevel.open_process(
            acpx.argv("--approve-all", "prompt", "stream 3 words then hold acpx then 3 words"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=acpx.env(),
            cwd=acpx.workdir,
        )
        try:
            assert prompting.stdout is not None
            reader = LineReader(prompting.stdout)
            # Wait for the first streamed chunk: the turn is provably running.
            while (line := await reader.next_line()) is not None:
                message = json.loads(line)
                update = message.get("params", {}).get("update", {})
                if update.get("sessionUpdate") == "agent_message_chunk":
                    break
            assert line is not None, f"no chunk before acpx ended: {reader.lines}"
            cancel_result.append(await acpx("cancel"))
            await reader.rest()
            await prompting.wait()
        finally:
            if prompting.returncode is None:
                prompting.kill()
                await prompting.wait()
    (cancelled,) = cancel_result
    assert cancelled.returncode == 0, cancelled.describe()
    assert any(line.get("cancelled") is True for line in cancelled.json_lines()), cancelled.stdout
    assert prompting.returncode == 0, reader.lines[-5:]
    conn = prompt_connection(acp_traffic)
    assert resumed_and_prompted(conn, session_id)["stopReason"] == "cancelled"
    cancels = [
        at
        for at, (source, message) in enumerate(conn.sent)
        if source == "client" and message.get("method") == "session/cancel"
    ]
    answered_at = conn.call("session/prompt").answered_at
    assert len(cancels) == 1 and answered_at is not None and answered_at > cancels[0]
    assert conn.text(after=conn.call("session/prompt").at) == "alpha beta gamma"
    acp_traffic.assert_conforms()


async def test_second_invocation_resumes_the_session(acpx: Acpx, acp_traffic: AcpTraffic) -> None:
    session_id = await acpx.new_session()
    first_prompt = "create hello.py with print(1)"
    first = await acpx("--approve-all", "prompt", first_prompt)
    assert first.returncode == 0, first.describe()
    first_conn = prompt_connection(acp_traffic)
    assert resumed_and_prompted(first_conn, session_id)["stopReason"] == "end_turn"
    first_reply = first_conn.text(after=first_conn.call("session/prompt").at)

    # acpx's queue owner keeps its agent process for the next prompt while it lives:
    # end it, so the second prompt is a new process that must resume the session.
    await acpx.stop_queue_owners()
    second = await acpx("--approve-all", "prompt", "stream 3 words")
    assert second.returncode == 0, second.describe()
    connections = acp_traffic.connections()
    # sessions new, the first prompt, the second: three agent processes on one store.
    assert len(connections) == 3, len(connections)
    assert connections[0].call("session/new").result["sessionId"] == session_id
    conn = connections[-1]
    assert resumed_and_prompted(conn, session_id)["stopReason"] == "end_turn"
    # session/resume sent none of the first turn (acpx keeps its own transcript), only
    # the session's meter and title, read from the store this new process opened.
    resume = conn.call("session/resume")
    assert resume.answered_at is not None
    start, end = resume.at, resume.answered_at
    kinds = [u["sessionUpdate"] for u in conn.updates(after=start, before=end)]
    assert kinds == ["usage_update", "session_info_update"], kinds
    (info,) = conn.updates("session_info_update", after=start, before=end)
    assert info["title"] == first_prompt
    assert first_reply  # the first turn said something, which was not sent again
    assert not conn.calls("session/request_permission")
    assert not conn.calls("fs/write_text_file")
    assert conn.text(after=conn.call("session/prompt").at) == "alpha beta gamma"
    acp_traffic.assert_conforms()


async def test_acpx_records_each_prompts_tokens(acpx: Acpx, acp_traffic: AcpTraffic) -> None:
    """acpx keeps the tokens of each prompt's answer (ACP ``usage``) in its session record."""
    session_id = await acpx.new_session()
    for words in (3, 5):
        done = await acpx("prompt", f"stream {words} words")
        assert done.returncode == 0, done.describe()
    prompts = [
        call.result["usage"]
        for conn in acp_traffic.connections()
        for call in conn.calls("session/prompt")
    ]
    assert len(prompts) == 2
    record = json.loads((acpx.home / ".acpx" / "sessions" / f"{session_id}.json").read_text())
    recorded = list(record["request_token_usage"].values())
    assert [(u["input_tokens"], u["output_tokens"], u["total_tokens"]) for u in recorded] == [
        (p["inputTokens"], p["outputTokens"], p["totalTokens"]) for p in prompts
    ]
    assert record["cumulative_token_usage"] == recorded[-1]  # acpx keeps the last one
    acp_traffic.assert_conforms()


async def test_acpx_sets_the_agent_and_the_model_as_config_options(
    acpx: Acpx, acp_traffic: AcpTraffic
) -> None:
    session_id = await acpx.new_session()
    created = acp_traffic.connections()[0].call("session/new").result
    assert [o["currentValue"] for o in created["configOptions"]] == ["orchestrator", "default"]
    done = await acpx("set", "mode", "ask")
    assert done.returncode == 0, done.describe()
    chosen = await acpx("set", "model", "scripted")
    assert chosen.returncode == 0, chosen.describe()
    set_mode, set_model = [
        c for conn in acp_traffic.connections() for c in conn.calls("session/set_config_option")
    ]
    assert set_mode.params == {"sessionId": session_id, "configId": "mode", "value": "ask"}
    assert set_mode.result["configOptions"][0]["currentValue"] == "ask"
    assert set_model.params == {"sessionId": session_id, "configId": "model", "value": "scripted"}
    assert set_model.result["configOptions"][1]["currentValue"] == "scripted"
    # A model we do not offer is refused by acpx itself (it read the options: nothing
    # is sent); a key we do not offer is sent, and refused by us.
    for refused_args in (("model", "gpt"), ("effort", "high")):
        refused = await acpx("set", *refused_args)
        assert refused.returncode != 0, refused.describe()
    sent = {
        (c.params["configId"], c.params["value"]): c.response
        for conn in acp_traffic.connections()
        for c in conn.calls("session/set_config_option")
    }
    assert ("model", "gpt") not in sent, sent
    effort = sent[("effort", "high")]
    assert effort is not None and effort["error"]["code"] == -32602, effort
    # A new agent process resumes the session on the agent and model set (kept by the runtime).
    await acpx.stop_queue_owners()
    prompted = await acpx("prompt", "what does hello.py do?")
    assert prompted.returncode == 0, prompted.describe()
    conn = prompt_connection(acp_traffic)
    resumed = conn.call("session/resume").result["configOptions"]
    assert [o["currentValue"] for o in resumed] == ["ask", "scripted"]
    assert conn.call("session/prompt").result["stopReason"] == "end_turn"
    acp_traffic.assert_conforms()
