"""The ACP agent: one client on a stream pair, its requests, and the sessions it opened.

:func:`serve_acp` is the whole adapter for one connection (the CLI passes stdin
and stdout; tests pass in-memory streams). Its tasks, all owned by nurseries that
end together:

- the *writer* (:meth:`Peer.run_writer`): the only task that writes to the output;
  everything else queues lines on its bounded channel;
- the *reader*: cuts the input into lines and parses them
  (:func:`~server.acp._jsonrpc.parse_line`), onto a bounded channel;
- the *dispatcher*: answers malformed lines with their JSON-RPC error, hands
  responses to the requests we sent, runs ``session/cancel`` at once and starts
  one task per client request (at most :data:`MAX_IN_FLIGHT`; beyond that a
  request is refused rather than queued, so the dispatcher never stops reading
  the responses that would unblock the others). Those tasks run in no set
  order, so what the order of the input means is decided as each request is
  read (:class:`Incoming`): a request naming a session whose ``session/load``
  came before it waits for that load (at most :data:`LOAD_WAIT`), and a prompt
  knows whether a ``session/cancel`` came after it;
- one :class:`~server.acp._bridge.SessionBridge` per session opened with
  ``session/new``, ``session/load``, ``session/resume`` or ``session/fork``, until
  the session is closed (``session/close``, ``session/delete``).

End of input (once every message read before it is dispatched), a broken output
or *shutdown* (the CLI's SIGTERM/SIGINT) end the connection the same way:
prompts whose turns are streaming are cancelled and answered so (also one whose
ack comes only after stopping began); prompts whose
turns wait for the IDE fail (the runtime suspends those turns); requests in
flight get up to :data:`STOP_TIMEOUT` to be answered; then every task is
cancelled (commands are killed, terminals released), the writer flushes what is
queued (bounded) and closes the output. The caller then closes the runtime.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import attrs
import trio

from agents.mcp import McpServerConfig
from sessions import JSON, JSONObject

from ..chat import Workspace
from ..chat._instructions import read_instructions
from ._book import SessionBook
from ._bridge import SessionBridge
from ._capabilities import ClientCaps, negotiate, prompt_text
from ._commands import commands_update, prompt_command
from ._connection import ConnectionClosed, LineReader, Peer, TooLong
from ._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    RESOURCE_NOT_FOUND,
    Malformed,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
    RpcError,
    parse_line,
)
from ._link import LinkError, RuntimeLink, SessionInfo
from ._mapping import Translator, iso_time
from ._mcp import mcp_servers
from ._options import MODE_OPTION, MODEL_OPTION, Choices, SessionOptions
from ._tools import ToolRunner

log = logging.getLogger("agent_runtime.acp")

MAX_IN_FLIGHT: Final = 64
INCOMING_BUFFER: Final = 64
# Seconds the shutdown may spend cancelling streaming turns before it stops anyway.
STOP_TIMEOUT: Final = 3.0
# Seconds a request may wait for a session/load of its session sent before it.
LOAD_WAIT: Final = 30.0
# The requests that open a session with its log (a request after one waits for it).
_LOADS: Final = frozenset({"session/load", "session/resume"})


@attrs.define(eq=False)
class _Loads:
    """The ``session/load`` requests of one session read and not answered yet."""

    count: int = 0
    done: trio.Event = attrs.field(factory=trio.Event)  # set when the count is back at 0


@attrs.frozen
class Incoming:
    """A request, with what the dispatcher had read of its session when it read it."""

    id: RequestId
    session_id: str | None = None  # its params' sessionId
    cancels: int = 0  # session/cancel notifications of that session read before it
    # A session/load: the loads it counts in; anything else: the loads running before it.
    loads: _Loads | None = None


Handler = Callable[[Incoming, JSONObject], Awaitable["JSON | _Responded"]]


class _Responded:
    """Marker: the handler sent its response itself (work follows it)."""


RESPONDED: Final = _Responded()


def _string(params: JSONObject, key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise RpcError(INVALID_PARAMS, f'"{key}" must be a non-empty string')
    return value


def _workspace(params: JSONObject, command_timeout: float) -> Workspace:
    """The session's cwd, where the tools the client cannot run run (``chat``'s executor)."""
    cwd = _string(params, "cwd")
    if not os.path.isabs(cwd):
        raise RpcError(INVALID_PARAMS, f'"cwd" must be an absolute path, not {cwd!r}')
    try:
        return Workspace(cwd, default_timeout=command_timeout)
    except ValueError as error:
        raise RpcError(INVALID_PARAMS, f'"cwd": {error}') from None


class AcpAgent:
    """The requests and sessions of one ACP connection (see the module docstring)."""

    def __init__(
        self, peer: Peer, link: RuntimeLink, book: SessionBook, nursery: trio.Nursery
    ) -> None:
        self.peer = peer
        self.link = link
        self.book = book
        self.caps = ClientCaps()
        self._nursery = nursery
        self._bridges: dict[str, SessionBridge] = {}
        # The runtime's agents and models, read once: they are fixed while it runs (its
        # configuration is read at start), and a connected link would ask each time.
        self._choice_list: Choices | None = None
        # session id -> the lock its loads take turns on (only while one runs)
        self._loading: dict[str, trio.Lock] = {}
        # session id -> its loads read and not answered (the dispatcher counts them)
        self._loads: dict[str, _Loads] = {}
        # session id -> session/cancel notifications read (open or loading sessions)
        self._cancels: dict[str, int] = {}
        self._stopping = False
        self._in_flight = 0
        self._answered = trio.Event()  # set (and replaced) whenever a request is done
        self._methods: dict[str, Handler] = {
            "initialize": self._initialize,
            "session/new": self._new_session,
            "session/load": self._load_session,
            "session/resume": self._resume_session,
            "session/fork": self._fork_session,
            "session/close": self._close_session,
            "session/delete": self._delete_session,
            "session/list": self._list_sessions,
            "session/prompt": self._prompt,
            "session/set_mode": self._set_mode,
            "session/set_config_option": self._set_config_option,
        }

    # -- dispatch ----------------------------------------------------------------------

    async def dispatch(self, incoming: trio.MemoryReceiveChannel[Message]) -> None:
        async with incoming:
            async for message in incoming:
                match message:
                    case Malformed():
                        await self.peer.respond_error(message.id, message.error)
                    case Response():
                        self.peer.deliver(message)
                    case Notification():
                        self._notification(message)
                    case Request() if self._in_flight >= MAX_IN_FLIGHT:
                        error = RpcError(
                            INTERNAL_ERROR, f"more than {MAX_IN_FLIGHT} requests in flight"
                        )
                        await self.peer.respond_error(message.id, error)
                    case Request():
                        self._in_flight += 1
                        self._nursery.start_soon(
                            self._serve_request, message, self._incoming(message)
                        )

    def _incoming(self, request: Request) -> Incoming:
        """*request* as read now, in input order (see :class:`Incoming`)."""
        params = request.params
        session_id = params.get("sessionId") if isinstance(params, dict) else None
        if not isinstance(session_id, str):
            return Incoming(request.id)
        loads = self._loads.get(session_id)
        if request.method in _LOADS:
            loads = self._loads.setdefault(session_id, _Loads())
            loads.count += 1
        return Incoming(request.id, session_id, self._cancels.get(session_id, 0), loads)

    def _load_answered(self, incoming: Incoming) -> None:
        loads, session_id = incoming.loads, incoming.session_id
        assert loads is not None and session_id is not None
        loads.count -= 1
        if loads.count == 0:
            loads.done.set()
            if self._loads.get(session_id) is loads:
                del self._loads[session_id]

    def _notification(self, note: Notification) -> None:
        if note.method == "session/cancel" and isinstance(note.params, dict):
            session_id = note.params.get("sessionId")
            if isinstance(session_id, str) and (
                session_id in self._bridges or session_id in self._loads
            ):
                self._cancel(session_id)
            else:
                log.info("session/cancel for a session not open here: %r", session_id)
        elif note.method in self._methods:  # nothing to answer it to: say so where we can
            log.warning("ignoring %r sent without an id: a request needs one", note.method)
        else:
            log.debug("ignoring notification %r", note.method)

    def _cancel(self, session_id: str) -> None:
        """Cancel the session's prompts read so far (``session/cancel``, ``session/close``)."""
        # Counted for the prompts read before it that have not submitted yet (one
        # may wait for a load): they cancel their turns themselves.
        self._cancels[session_id] = self._cancels.get(session_id, 0) + 1
        bridge = self._bridges.get(session_id)
        if bridge is not None:
            bridge.cancel()

    async def _serve_request(self, request: Request, incoming: Incoming) -> None:
        try:
            handler = self._methods.get(request.method)
            if handler is None and request.method == "session/cancel":
                raise RpcError(METHOD_NOT_FOUND, "session/cancel is a notification: send no id")
            if handler is None:
                raise RpcError(METHOD_NOT_FOUND, f"method {request.method!r} not found")
            params = {} if request.params is None else request.params
            if not isinstance(params, dict):
                raise RpcError(INVALID_PARAMS, '"params" must be an object')
            result = await handler(incoming, params)
        except RpcError as error:
            await self.peer.respond_error(request.id, error)
        except LinkError as error:
            data: JSONObject = {"code": error.code}
            await self.peer.respond_error(request.id, RpcError(INTERNAL_ERROR, error.message, data))
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("request %r failed", request.method)
            await self.peer.respond_error(request.id, RpcError(INTERNAL_ERROR, "internal error"))
        else:
            if not isinstance(result, _Responded):
                await self.peer.respond(request.id, result)
        finally:
            if request.method in _LOADS and incoming.loads is not None:
                self._load_answered(incoming)
            self._in_flight -= 1
            self._answered.set()
            self._answered = trio.Event()

    # -- methods -----------------------------------------------------------------------

    async def _initialize(self, incoming: Incoming, params: JSONObject) -> JSON | _Responded:
        result, self.caps = negotiate(params)
        return result

    async def _choices(self) -> Choices:
        if self._choice_list is None:
            agents = tuple(await self.link.agents())
            self._choice_list = Choices(agents, await self.link.models())
        return self._choice_list

    async def _open(
        self,
        info: SessionInfo,
        workspace: Workspace,
        *,
        replay: bool,
        quiet: bool = False,
        mcp: tuple[McpServerConfig, ...] = (),
    ) -> SessionBridge:
        """Follow the session here; with *replay*, its log first (*quiet*: read, not sent)."""
        session_id, cwd = info.id, str(workspace.root)
        tools = ToolRunner(
            self.peer, session_id, workspace, self.caps, tool_timeout=self.link.tool_timeout
        )
        # The model as the log starts (the defaults): a replay reads its switches.
        options = SessionOptions(await self._choices(), info.current_agent)
        translator = Translator(cwd, compaction=self.caps.compaction, options=options)
        bridge = SessionBridge(session_id, self.link, self.peer, tools, translator, mcp)
        if replay:
            await bridge.replay(quiet=quiet)
        self._bridges[session_id] = bridge
        await self._nursery.start(self._run_bridge, bridge)
        if self._stopping:  # opened by a load that was still running when stopping began
            await bridge.stop()
        return bridge

    async def _run_bridge(
        self,
        bridge: SessionBridge,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await bridge.run(task_status=task_status)
        finally:
            if self._bridges.get(bridge.session_id) is bridge:
                del self._bridges[bridge.session_id]

    async def _new_session(self, incoming: Incoming, params: JSONObject) -> JSON | _Responded:
        workspace = _workspace(params, self.link.tool_timeout)
        servers = mcp_servers(params)
        _, instructions = await trio.to_thread.run_sync(
            read_instructions, workspace.root, lambda line: log.warning("%s", line)
        )
        info = await self.link.create_session(instructions=instructions)
        await self.book.remember(info.id, str(workspace.root))
        bridge = await self._open(info, workspace, replay=False, mcp=servers)
        await self.peer.respond(incoming.id, {"sessionId": info.id, **_answer(bridge)})
        await self._announce_commands(info.id)  # after the answer: the client knows the id
        return RESPONDED

    async def _load_session(
        self, incoming: Incoming, params: JSONObject, *, resume: bool = False
    ) -> JSON | _Responded:
        session_id = _string(params, "sessionId")
        workspace = _workspace(params, self.link.tool_timeout)
        servers = mcp_servers(params)
        # One load of a session at a time: two at once would each open a bridge
        # (the first registers only after its replay), so every update would be
        # sent twice and each pending tool call asked and run twice. The second
        # waits, then replays to the bridge the first opened.
        lock = self._loading.setdefault(session_id, trio.Lock())
        try:
            async with lock:
                return await self._load_alone(
                    incoming.id, session_id, workspace, servers, resume=resume
                )
        finally:
            if not lock.locked() and self._loading.get(session_id) is lock:
                del self._loading[session_id]

    async def _load_alone(
        self,
        request_id: RequestId,
        session_id: str,
        workspace: Workspace,
        servers: tuple[McpServerConfig, ...],
        *,
        resume: bool,
    ) -> JSON | _Responded:
        info = await self.link.load_session(session_id)
        if info is None:
            raise RpcError(RESOURCE_NOT_FOUND, f"session {session_id!r} not found")
        bridge = self._bridges.get(session_id)
        if bridge is not None:
            # Already followed here: this load's cwd and MCP servers apply from now on
            # (refused while a turn is in progress), and its history is replayed
            # again, up to where the follower is.
            await bridge.move(workspace, servers)
            await self.book.remember(session_id, str(workspace.root))
            if not resume:
                await bridge.replay_history()
            return _answer(bridge)
        await self.book.remember(session_id, str(workspace.root))
        return await self._follow_from_log(
            request_id, info, workspace, servers, quiet=resume, answer={}
        )

    async def _follow_from_log(
        self,
        request_id: RequestId,
        info: SessionInfo,
        workspace: Workspace,
        servers: tuple[McpServerConfig, ...],
        *,
        quiet: bool,
        answer: JSONObject,
    ) -> _Responded:
        """Open a session not followed here from its log (*quiet*: read, not sent),
        answer *answer* with its modes, then take up the work its log ends with."""
        bridge = await self._open(info, workspace, replay=True, quiet=quiet, mcp=servers)
        await self.peer.respond(request_id, {**answer, **_answer(bridge)})
        bridge.adopt()  # the work a turn was waiting for before, after the answer
        await self._announce_commands(info.id)
        return RESPONDED

    async def _fork_session(self, incoming: Incoming, params: JSONObject) -> JSON | _Responded:
        """A new session whose log is the source's so far, opened as ``session/resume``
        opens one: the client has the history already (it forked what it shows).

        The source is only read: it need not be open here, and its turn, if one is
        running, goes on (in the fork that turn is closed as interrupted). The fork
        keeps the source's project instructions; ``systemPrompt`` is not offered
        (no ``sessionCapabilities.systemPrompt``), so it is ignored.
        """
        source = _string(params, "sessionId")
        workspace = _workspace(params, self.link.tool_timeout)
        servers = mcp_servers(params)
        info = await self.link.fork_session(source)
        if info is None:
            raise RpcError(RESOURCE_NOT_FOUND, f"session {source!r} not found")
        await self.book.remember(info.id, str(workspace.root))
        return await self._follow_from_log(
            incoming.id, info, workspace, servers, quiet=True, answer={"sessionId": info.id}
        )

    async def _resume_session(self, incoming: Incoming, params: JSONObject) -> JSON | _Responded:
        """``session/load`` without the replay: the client keeps its own history."""
        return await self._load_session(incoming, params, resume=True)

    async def _close_session(self, incoming: Incoming, params: JSONObject) -> JSON | _Responded:
        """Cancel the session's prompts and stop following it here (``{}`` also when it
        is not open here); the session stays in the runtime, to load again."""
        session_id = _string(params, "sessionId")
        if not await self._closed(incoming, session_id) and not await self.link.load_session(
            session_id
        ):
            raise RpcError(RESOURCE_NOT_FOUND, f"session {session_id!r} not found")
        return {}

    async def _delete_session(self, incoming: Incoming, params: JSONObject) -> JSON | _Responded:
        """Close the session here (if open), then delete it in the runtime."""
        session_id = _string(params, "sessionId")
        await self._closed(incoming, session_id)
        if not await self.link.delete_session(session_id):
            raise RpcError(RESOURCE_NOT_FOUND, f"session {session_id!r} not found")
        await self.book.forget(session_id)
        return {}

    async def _closed(self, incoming: Incoming, session_id: str) -> bool:
        """Close the session on this connection, once the loads of it read before the
        request are answered; whether it was open here."""
        if incoming.loads is not None:
            with trio.move_on_after(LOAD_WAIT):
                await incoming.loads.done.wait()
        bridge = self._bridges.get(session_id)
        if bridge is None:
            return False
        self._cancel(session_id)
        await bridge.close(STOP_TIMEOUT)
        if self._bridges.get(session_id) is bridge:
            del self._bridges[session_id]
        return True

    async def _announce_commands(self, session_id: str) -> None:
        await self.peer.notify(
            "session/update", {"sessionId": session_id, "update": commands_update()}
        )

    async def _list_sessions(self, incoming: Incoming, params: JSONObject) -> JSON | _Responded:
        cursor, wanted = params.get("cursor"), params.get("cwd")
        if cursor is not None and not isinstance(cursor, str):
            raise RpcError(INVALID_PARAMS, '"cursor" must be a string')
        if wanted is not None and not isinstance(wanted, str):
            raise RpcError(INVALID_PARAMS, '"cwd" must be a string')
        try:
            page = await self.link.list_sessions(cursor=cursor)
        except LinkError as error:
            if error.code != "bad_parameter":  # the runtime's word for a cursor it did not make
                raise
            raise RpcError(INVALID_PARAMS, f'"cursor": {error.message}') from None
        sessions: list[JSON] = []
        for session in page.sessions:
            cwd = self.book.cwd(session.id)
            if cwd is None or (wanted is not None and Path(cwd) != Path(wanted)):
                continue  # not an ACP session (it has no cwd), or another directory's
            sessions.append(
                {
                    "sessionId": session.id,
                    "cwd": cwd,
                    "title": session.title or None,
                    "updatedAt": iso_time(session.updated_at),
                }
            )
        return {"sessions": sessions, "nextCursor": page.next_cursor}

    async def _bridge(self, incoming: Incoming, params: JSONObject) -> SessionBridge:
        """The bridge of the session the request names, once the loads of that session
        read before the request are answered."""
        session_id = _string(params, "sessionId")
        if incoming.loads is not None:
            # Sent after a session/load of the session (pipelined): meant for what it opens.
            with trio.move_on_after(LOAD_WAIT):
                await incoming.loads.done.wait()
        bridge = self._bridges.get(session_id)
        if bridge is None:
            why = "is still loading" if session_id in self._loads else "is not open"
            raise RpcError(
                RESOURCE_NOT_FOUND, f"session {session_id!r} {why}: session/load it first"
            )
        return bridge

    async def _prompt(self, incoming: Incoming, params: JSONObject) -> JSON | _Responded:
        bridge = await self._bridge(incoming, params)
        text = prompt_text(params.get("prompt"))
        session_id = bridge.session_id

        def cancelled() -> bool:  # a session/cancel came after this prompt
            return self._cancels.get(session_id, 0) != incoming.cancels

        return await bridge.prompt(prompt_command(text), cancelled=cancelled)

    async def _set_mode(self, incoming: Incoming, params: JSONObject) -> JSON | _Responded:
        await self._switch_agent(await self._bridge(incoming, params), _string(params, "modeId"))
        return {}

    async def _set_config_option(self, incoming: Incoming, params: JSONObject) -> JSON | _Responded:
        """Switch the agent (``mode``) or the model (``model``); the answer shows the
        options as they are once the switch is committed."""
        bridge = await self._bridge(incoming, params)
        config_id, value = _string(params, "configId"), params.get("value")
        options = _options(bridge)
        if params.get("type", "value_id") != "value_id":
            raise RpcError(INVALID_PARAMS, f"config option {config_id!r} is a select")
        if config_id == MODE_OPTION:
            if not isinstance(value, str):
                raise RpcError(INVALID_PARAMS, f'"value" of {MODE_OPTION!r} must be an agent name')
            await self._switch_agent(bridge, value)
            switched = attrs.evolve(options, agent=value)
        elif config_id == MODEL_OPTION and options.choices.models is not None:
            model = options.chosen_model(value)
            ack = await bridge.submit({"type": "switch_model", "model": model})
            if ack.get("status") == "rejected":
                code = INVALID_PARAMS if ack.get("code") == "invalid_command" else INTERNAL_ERROR
                raise RpcError(code, str(ack.get("error")), {"code": ack.get("code")})
            switched = attrs.evolve(options, model=model)
        else:
            raise RpcError(INVALID_PARAMS, f"unknown config option {config_id!r}")
        return {"configOptions": switched.config_options()}

    async def _switch_agent(self, bridge: SessionBridge, agent: str) -> None:
        ack = await bridge.submit({"type": "switch_agent", "agent": agent})
        if ack.get("status") == "rejected":
            code = INVALID_PARAMS if ack.get("code") == "unknown_agent" else INTERNAL_ERROR
            raise RpcError(code, str(ack.get("error")), {"code": ack.get("code")})

    async def stop(self) -> None:
        """End every session's prompts (see :meth:`SessionBridge.stop`), then wait for
        the requests in flight to be answered.

        Cancellation: safe; what is left is cancelled with the connection.
        """
        self._stopping = True  # a bridge a load opens from now on stops at once
        for bridge in list(self._bridges.values()):
            await bridge.stop()
        while self._in_flight:
            await self._answered.wait()


def _options(bridge: SessionBridge) -> SessionOptions:
    options = bridge.translator.options
    assert options is not None  # every bridge of a connection has them (_open)
    return options


def _answer(bridge: SessionBridge) -> JSONObject:
    """``modes`` and ``configOptions`` of a session opened here, as its log says now."""
    return _options(bridge).answer()


async def _read(stream: trio.abc.ReceiveStream, out: trio.MemorySendChannel[Message]) -> None:
    reader = LineReader(stream)
    async with out:
        while (line := await reader.next_line()) is not None:
            if isinstance(line, TooLong):
                message: Message | None = Malformed(
                    None, RpcError(INVALID_REQUEST, "message too long; skipped")
                )
            else:
                message = parse_line(line)
            if message is not None:
                await out.send(message)


async def _first(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of *waits* returns."""
    async with trio.open_nursery() as nursery:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(one, wait)


async def serve_acp(
    receive: trio.abc.ReceiveStream,
    send: trio.abc.SendStream,
    link: RuntimeLink,
    *,
    book: SessionBook | None = None,
    shutdown: trio.Event | None = None,
) -> None:
    """Serve one ACP client on *receive*/*send* until end of input, or *shutdown*.

    *link* is the runtime (its owner opens and closes it around this call);
    *book* remembers each session's cwd (default: in memory only).

    Cancellation: stops at once; tool handlers still kill their commands and
    release their terminals (shielded, bounded), and *send* is closed.
    """
    book = book if book is not None else SessionBook()
    await book.load()
    stop = shutdown if shutdown is not None else trio.Event()
    peer = Peer()
    async with trio.open_nursery() as outer:
        outer.start_soon(peer.run_writer, send)
        try:
            async with trio.open_nursery() as nursery:
                agent = AcpAgent(peer, link, book, nursery)
                incoming_send, incoming_receive = trio.open_memory_channel[Message](INCOMING_BUFFER)
                dispatched = trio.Event()  # end of input, and every message read dispatched

                async def dispatch() -> None:
                    await agent.dispatch(incoming_receive)
                    dispatched.set()

                nursery.start_soon(_read, receive, incoming_send)
                nursery.start_soon(dispatch)
                await _first(dispatched.wait, peer.gone.wait, stop.wait)
                with trio.move_on_after(STOP_TIMEOUT):
                    await agent.stop()
                peer.abandon()  # the clean-up below sends, but reads no answers
                nursery.cancel_scope.cancel()
        finally:
            peer.close()
