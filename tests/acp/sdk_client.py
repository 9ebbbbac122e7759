"""An ACP client built on the official Python SDK (``agent-client-protocol``), for tests.

Usage::

    python sdk_client.py --workdir DIR [--permission allow|deny] [--answer TEXT] \\
        [--timeout S] STEP... -- AGENT_COMMAND...

It spawns AGENT_COMMAND (e.g. ``python -m server acp --db PATH``, usually wrapped
in ``tee_agent.py``) with the SDK's ``spawn_agent_process`` and acts as the
client: it advertises ``fs.readTextFile`` and ``fs.writeTextFile`` (served from
DIR, nothing outside it) but no terminal, answers ``session/request_permission``
as ``--permission`` says (the first ``allow_*`` or ``reject_*`` option). With
``--answer`` it also advertises form elicitation and accepts every form as a user
answering TEXT would: a single select whose option is titled TEXT gets that option
(and the form nothing else); otherwise TEXT goes in each free-text string field.
It sends ``initialize`` and ``session/new`` (cwd DIR), then runs the STEPs in order:

``prompt:TEXT``
    ``session/prompt`` TEXT and wait for its stop reason.
``cancel-after-chunk:TEXT``
    prompt TEXT and send ``session/cancel`` as soon as the first
    ``agent_message_chunk`` arrives.
``cancel-at-permission:TEXT``
    prompt TEXT; when the agent asks for permission, send ``session/cancel`` first
    and only then answer the request, with the ``cancelled`` outcome (as the spec
    requires of a client that cancelled the turn).
``reload``
    end the agent process (close its stdin), spawn AGENT_COMMAND again,
    ``initialize`` and ``session/load`` the same session.
``resume``
    the same, with ``session/resume`` (no history replayed).
``close``
    ``session/close`` the session (later prompts of it are refused).
``fork``
    ``session/fork`` the session; the later steps use the fork.
``config:ID=VALUE``
    ``session/set_config_option`` ID to VALUE (an error is printed, not raised).

It prints one JSON object per line on stdout, in the order observed, for the
pytest side (tests/acp/test_python_sdk.py) to assert on::

    {"event": "initialize", "response": {...}}        {"event": "new_session", "response": {...}}
    {"event": "recv", "method": M, "update": KIND} / {"event": "recv", "response": ID}
        (what the agent sent, in wire order: the SDK handles messages in tasks)
    {"event": "update", "step": N, "update": {...}}    {"event": "cancel_sent", "step": N}
    {"event": "permission", "step": N, "request": {...}, "outcome": {...}}
    {"event": "elicitation", "step": N, "message": M, "mode": {...}, "response": {...}}
    {"event": "write_text_file", "path": P, "content": C}   {"event": "read_text_file", ...}
    {"event": "prompt_result", "step": N, "response": {...}}
    {"event": "set_config_option", "step": N, "response": {...}} / {"event": "config_error", ...}
    {"event": "prompt_error", "step": N, "error": "..."}  {"event": "load_session", ...}
    {"event": "resume_session", ...}                   {"event": "close_session", ...}
    {"event": "fork_session", "step": N, "response": {...}}
    {"event": "agent_exit", "returncode": R}           {"event": "done"} (last, on success)

This program uses asyncio (the SDK is asyncio-only) and so runs in its own process,
never inside the trio test process. Exit status 0 when every step ran (whatever the
agent answered: the test judges that), 1 when a step timed out or failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from acp import PROTOCOL_VERSION, RequestError, spawn_agent_process, text_block
from acp.client.connection import ClientSideConnection
from acp.connection import StreamDirection, StreamEvent
from acp.schema import (
    AcceptElicitationResponse,
    AgentMessageChunk,
    AgentPlanContentUpdate,
    AgentPlanRemovedUpdate,
    AgentPlanUpdate,
    AgentThoughtChunk,
    AllowedOutcome,
    AvailableCommandsUpdate,
    ClientCapabilities,
    ConfigOptionUpdate,
    CreateElicitationResponse,
    CreateTerminalResponse,
    CurrentModeUpdate,
    DeniedOutcome,
    ElicitationCapabilities,
    ElicitationFormCapabilities,
    ElicitationMode,
    EnvVariable,
    FileSystemCapabilities,
    Implementation,
    KillTerminalResponse,
    PermissionOption,
    ReadTextFileResponse,
    ReleaseTerminalResponse,
    RequestPermissionResponse,
    SessionInfoUpdate,
    TerminalOutputResponse,
    ToolCallProgress,
    ToolCallStart,
    ToolCallUpdate,
    UsageUpdate,
    UserMessageChunk,
    WaitForTerminalExitResponse,
    WriteTextFileResponse,
)
from pydantic import BaseModel

Permission = Literal["allow", "deny"]
SessionUpdate = (
    UserMessageChunk
    | AgentMessageChunk
    | AgentThoughtChunk
    | ToolCallStart
    | ToolCallProgress
    | AgentPlanUpdate
    | AgentPlanContentUpdate
    | AgentPlanRemovedUpdate
    | AvailableCommandsUpdate
    | CurrentModeUpdate
    | ConfigOptionUpdate
    | SessionInfoUpdate
    | UsageUpdate
)


def emit(event: str, **fields: Any) -> None:
    """Print one event line (flushed: the test may read while we run)."""
    print(json.dumps({"event": event, **fields}), flush=True)


def dump(model: BaseModel | None) -> Any:
    """A schema object as the wire shows it (camelCase, no unset optional members)."""
    return (
        None if model is None else model.model_dump(mode="json", by_alias=True, exclude_none=True)
    )


class TestClient:
    """The client side: permission answers, a sandboxed file system, event output."""

    def __init__(self, workdir: Path, permission: Permission, answer: str | None) -> None:
        self.workdir = workdir.resolve()
        self.permission = permission
        self.answer = answer
        self.step = 0
        self.conn: ClientSideConnection | None = None
        self.session_id: str | None = None
        self.cancel_at_chunk = False
        self.cancel_at_permission = False
        self.cancelled = asyncio.Event()

    # -- the turn's controls ------------------------------------------------------

    async def send_cancel(self) -> None:
        if self.cancelled.is_set():
            return
        self.cancelled.set()
        assert self.conn is not None and self.session_id is not None
        await self.conn.cancel(session_id=self.session_id)
        emit("cancel_sent", step=self.step)

    # -- acp.Client ---------------------------------------------------------------

    async def request_permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption], **_: Any
    ) -> RequestPermissionResponse:
        request = {
            "sessionId": session_id,
            "toolCall": dump(tool_call),
            "options": [dump(o) for o in options],
        }
        if self.cancel_at_permission:
            # The turn is cancelled while this request is pending: the spec says the
            # client then answers it with the cancelled outcome.
            await self.send_cancel()
            response = RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        else:
            prefix = "allow" if self.permission == "allow" else "reject"
            chosen = next((o for o in options if o.kind.startswith(prefix)), None)
            if chosen is None:
                emit("permission", step=self.step, request=request, outcome=None)
                raise RequestError.internal_error({"details": f"no {prefix}_* option offered"})
            response = RequestPermissionResponse(
                outcome=AllowedOutcome(outcome="selected", option_id=chosen.option_id)
            )
        emit("permission", step=self.step, request=request, outcome=dump(response)["outcome"])
        return response

    async def session_update(self, session_id: str, update: SessionUpdate, **_: Any) -> None:
        emit("update", step=self.step, sessionId=session_id, update=dump(update))
        if (
            self.cancel_at_chunk
            and isinstance(update, AgentMessageChunk)
            and not self.cancelled.is_set()
        ):
            await self.send_cancel()

    async def write_text_file(
        self, session_id: str, path: str, content: str, **_: Any
    ) -> WriteTextFileResponse | None:
        target = self._inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        emit("write_text_file", step=self.step, sessionId=session_id, path=path, content=content)
        return WriteTextFileResponse()

    async def read_text_file(
        self,
        session_id: str,
        path: str,
        line: int | None = None,
        limit: int | None = None,
        **_: Any,
    ) -> ReadTextFileResponse:
        target = self._inside(path)
        if not target.is_file():
            raise RequestError.resource_not_found(path)
        lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
        start = max((line or 1) - 1, 0)
        chosen = lines[start : start + limit if limit is not None else None]
        emit("read_text_file", step=self.step, sessionId=session_id, path=path, line=line)
        return ReadTextFileResponse(content="".join(chosen))

    def _inside(self, path: str) -> Path:
        """*path* (absolute, per the spec) if it lies in the work dir; else an error."""
        candidate = Path(path)
        if not candidate.is_absolute():
            raise RequestError.invalid_params({"details": f"path is not absolute: {path}"})
        resolved = candidate.resolve()
        if not resolved.is_relative_to(self.workdir):
            raise RequestError.invalid_params({"details": f"outside the work dir: {path}"})
        return resolved

    # Terminals and elicitation are not advertised: an agent that asks anyway is told so.

    async def create_terminal(
        self,
        session_id: str,
        command: str,
        args: list[str] | None = None,
        env: list[EnvVariable] | None = None,
        cwd: str | None = None,
        output_byte_limit: int | None = None,
        **_: Any,
    ) -> CreateTerminalResponse:
        raise RequestError.method_not_found("terminal/create")

    async def terminal_output(
        self, session_id: str, terminal_id: str, **_: Any
    ) -> TerminalOutputResponse:
        raise RequestError.method_not_found("terminal/output")

    async def release_terminal(
        self, session_id: str, terminal_id: str, **_: Any
    ) -> ReleaseTerminalResponse | None:
        raise RequestError.method_not_found("terminal/release")

    async def wait_for_terminal_exit(
        self, session_id: str, terminal_id: str, **_: Any
    ) -> WaitForTerminalExitResponse:
        raise RequestError.method_not_found("terminal/wait_for_exit")

    async def kill_terminal(
        self, session_id: str, terminal_id: str, **_: Any
    ) -> KillTerminalResponse | None:
        raise RequestError.method_not_found("terminal/kill")

    async def create_elicitation(
        self, message: str, mode: ElicitationMode, **_: Any
    ) -> CreateElicitationResponse:
        if self.answer is None:
            raise RequestError.method_not_found("elicitation/create")
        schema = getattr(mode, "requested_schema", None)
        fields = dump(schema).get("properties", {}) if schema is not None else {}
        picked = {
            name: option["const"]
            for name, field in fields.items()
            for option in field.get("oneOf") or []
            if option.get("title") == self.answer
        }
        content = picked or {
            name: self.answer
            for name, field in fields.items()
            if field["type"] == "string" and not field.get("oneOf")
        }
        response = AcceptElicitationResponse(action="accept", content=content)
        emit(
            "elicitation", step=self.step, message=message, mode=dump(mode), response=dump(response)
        )
        return response

    async def complete_elicitation(self, elicitation_id: str, **_: Any) -> None:
        raise RequestError.method_not_found("elicitation/complete")

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        emit("ext_notification", method=method, params=params)

    def on_connect(self, conn: Any) -> None:
        pass


def observe(event: StreamEvent) -> None:
    """Wire order of what the agent sent (the SDK handles messages in tasks)."""
    if event.direction is not StreamDirection.INCOMING:
        return
    message = event.message
    if "method" in message:
        params = message.get("params")
        update = params.get("update") if isinstance(params, dict) else None
        kind = update.get("sessionUpdate") if isinstance(update, dict) else None
        emit("recv", method=message["method"], update=kind)
    else:
        emit("recv", response=message.get("id"), error="error" in message)


@asynccontextmanager
async def connect(client: TestClient, command: list[str]) -> AsyncIterator[ClientSideConnection]:
    """Spawn the agent, ``initialize``, and yield the connection; on exit end the agent."""
    async with spawn_agent_process(
        client,
        command[0],
        *command[1:],
        env=dict(os.environ),  # the SDK passes on only a few variables by default
        transport_kwargs={"stderr": None},  # the agent's stderr is ours (the test shows it)
        observers=[observe],
        # Elicitation is stable ACP v1, still "unstable" in this SDK (0.12): opt in.
        use_unstable_protocol=client.answer is not None,
    ) as (conn, process):
        client.conn = conn
        response = await conn.initialize(
            protocol_version=PROTOCOL_VERSION,
            client_capabilities=ClientCapabilities(
                fs=FileSystemCapabilities(read_text_file=True, write_text_file=True),
                terminal=False,
                elicitation=(
                    None
                    if client.answer is None
                    else ElicitationCapabilities(form=ElicitationFormCapabilities())
                ),
            ),
            client_info=Implementation(name="agent-runtime-tests", version="1"),
        )
        emit("initialize", response=dump(response))
        try:
            yield conn
        finally:
            client.conn = None
    emit("agent_exit", returncode=process.returncode)


async def prompt(client: TestClient, conn: ClientSideConnection, text: str) -> None:
    assert client.session_id is not None
    try:
        response = await conn.prompt(session_id=client.session_id, prompt=[text_block(text)])
    except RequestError as error:
        emit("prompt_error", step=client.step, error=str(error), data=error.to_error_obj())
    else:
        emit("prompt_result", step=client.step, response=dump(response))


async def set_config(client: TestClient, conn: Any, config_id: str, value: str) -> None:
    assert client.session_id is not None
    try:
        response = await conn.set_config_option(
            config_id=config_id, session_id=client.session_id, value=value
        )
    except RequestError as error:
        emit("config_error", step=client.step, data=error.to_error_obj())
    else:
        emit("set_config_option", step=client.step, response=dump(response))


async def run(args: argparse.Namespace) -> None:
    client = TestClient(Path(args.workdir), args.permission, args.answer)
    command: list[str] = args.command
    steps: list[str] = args.steps
    index = 0
    reopen = "reload"  # how a later agent process opens the session
    while True:
        async with connect(client, command) as conn:
            if client.session_id is None:
                new = await conn.new_session(cwd=str(client.workdir), mcp_servers=[])
                client.session_id = new.session_id
                emit("new_session", response=dump(new))
            elif reopen == "resume":
                resumed = await conn.resume_session(
                    cwd=str(client.workdir), session_id=client.session_id, mcp_servers=[]
                )
                emit("resume_session", step=client.step, response=dump(resumed))
            else:
                loaded = await conn.load_session(
                    cwd=str(client.workdir), session_id=client.session_id, mcp_servers=[]
                )
                emit("load_session", step=client.step, response=dump(loaded))
            while index < len(steps):
                step = steps[index]
                index += 1
                client.step = index
                if step in ("reload", "resume"):
                    reopen = step
                    break
                if step == "close":
                    assert client.session_id is not None
                    closed = await conn.close_session(session_id=client.session_id)
                    emit("close_session", step=client.step, response=dump(closed))
                    continue
                if step == "fork":
                    assert client.session_id is not None
                    forked = await conn.fork_session(
                        session_id=client.session_id, cwd=str(client.workdir), mcp_servers=[]
                    )
                    client.session_id = forked.session_id
                    emit("fork_session", step=client.step, response=dump(forked))
                    continue
                kind, _, text = step.partition(":")
                if kind == "config":
                    await set_config(client, conn, *text.split("=", 1))
                    continue
                client.cancelled = asyncio.Event()
                client.cancel_at_chunk = kind == "cancel-after-chunk"
                client.cancel_at_permission = kind == "cancel-at-permission"
                if kind not in ("prompt", "cancel-after-chunk", "cancel-at-permission"):
                    raise SystemExit(f"unknown step {step!r}")
                await prompt(client, conn, text)
            else:
                break  # every step ran: leave the agent
    emit("done")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workdir", required=True, help="the session's cwd and fs root")
    parser.add_argument("--permission", choices=["allow", "deny"], default="allow")
    parser.add_argument("--answer", help="take forms; fill every text field with this")
    parser.add_argument("--timeout", type=float, default=60.0, help="for the whole run")
    parser.add_argument("steps", nargs="*", help="prompt:TEXT, cancel-after-chunk:TEXT, ...")
    argv = sys.argv[1:]
    if "--" not in argv:
        parser.error("missing -- AGENT_COMMAND...")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1 :]
    if not args.command:
        parser.error("empty AGENT_COMMAND")
    try:
        asyncio.run(asyncio.wait_for(run(args), args.timeout))
    except TimeoutError:
        emit("timeout", seconds=args.timeout)
        return 1
    except Exception as error:
        emit("failed", error=f"{type(error).__name__}: {error}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
