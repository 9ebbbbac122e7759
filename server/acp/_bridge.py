"""One ACP session followed in the runtime: its updates, its prompts and its open work.

A :class:`SessionBridge` runs as one task in the adapter's nursery, with a nursery
of its own for the work it does for the runtime:

- the *follower* (:meth:`SessionBridge.run`) takes the session's committed events
  in seq order, sends the ``session/update`` notifications the
  :class:`~server.acp._mapping.Translator` makes of them (and, at each
  ``user.message``, the session's title and last change as the runtime has them:
  ``session_info_update``), and tracks *open work*:
  what the runtime waits for from an IDE (a ``tool.call`` without its result, an
  ``approval.requested`` without its resolution, a ``question.asked`` without its
  answer; a turn's end closes what is left of it);
- each open item gets a *handler* task (``_work.py``: running a tool, asking for
  permission, asking a question) in its own cancel scope. When the item closes
  before the handler answered (the approval expired, the turn was cancelled), the
  scope is cancelled: a permission request is abandoned (a late answer from the
  client is then ignored), a command is killed and its terminal released;
- :meth:`SessionBridge.prompt` (called by a ``session/prompt`` request task)
  submits the prompt's command (its ``user_message``, or ``compact``) and waits
  for its turn's ``turn.ended``, which the follower records only after every
  update of that turn went out, so the answer always comes after them.

``session/cancel`` (:meth:`SessionBridge.cancel`) abandons the open work of the
prompts' turns at once and submits ``cancel`` for each; the runtime ends the turn
within 1 s and the prompt is answered ``cancelled`` (whatever the turn's end
says: the client asked to stop). A prompt whose command was still on
its way cancels its turn itself once the ack comes (the dispatcher tells it
whether a ``session/cancel`` came after it); so does one acked after
:meth:`SessionBridge.stop`.

After ``session/load`` (or ``session/resume``, which reads the log the same way
but sends none of it) the open work the log ends with (a turn that was waiting
for the IDE when the last adapter stopped) is handled like live work, once the
load is answered (:meth:`SessionBridge.adopt`). A later ``session/load`` on the
same connection replays the log again up to where the follower is, the follower
waiting meanwhile (:meth:`SessionBridge.replay_history`), and may move the
session to another cwd and other MCP servers while no turn is in progress
(:meth:`SessionBridge.move`). ``session/close`` cancels the prompts' turns and
then stops following the session (:meth:`SessionBridge.close`).

The client's MCP servers are mounted for the session by a task of the bridge's
nursery, as long as it follows the session (:meth:`RuntimeLink.session_mcp`).

Cancellation: cancelling :meth:`SessionBridge.run` cancels every handler
(commands are killed and terminals released, shielded and bounded) and wakes the
waiting prompts, which fail; the runtime's turns go on (a client going away never
stops a turn).
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import attrs
import trio

from agents.mcp import McpServerConfig
from sessions import JSON, JSONObject

from ..chat import Workspace
from ._connection import ConnectionClosed, Peer
from ._fields import str_field
from ._jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, RpcError
from ._link import LinkError, RuntimeLink
from ._mapping import Translator, session_info_update, stop_reason, turn_error
from ._tools import ToolRunner
from ._usage import prompt_usage
from ._work import Handlers, Work

log = logging.getLogger("agent_runtime.acp")

# Ended turns remembered for a prompt whose ack is still on its way.
_ENDED_KEPT: Final = 64
REPLAY_PAGE: Final = 500


@attrs.frozen
class _End:
    reason: str
    usage: JSON
    error: JSONObject | None
    cut_off: str | None = None  # why the provider cut the turn's last answer, if it did


@attrs.frozen
class _Mount:
    """The task that keeps the client's MCP servers mounted: cancel, then wait for *ended*."""

    scope: trio.CancelScope
    ended: trio.Event


class SessionBridge:
    """One session of the ACP connection (see the module docstring)."""

    def __init__(
        self,
        session_id: str,
        link: RuntimeLink,
        peer: Peer,
        tools: ToolRunner,
        translator: Translator,
        mcp: tuple[McpServerConfig, ...] = (),
    ) -> None:
        self.session_id = session_id
        self.link = link
        self.peer = peer
        self.tools = tools
        self.translator = translator
        self.mcp = mcp
        self.last_seq = 0
        self._open: dict[str, Work] = {}
        self._ended: OrderedDict[str, _End] = OrderedDict()
        self._errors: dict[str, JSONObject] = {}
        # The cut_off of each running turn's last answer in its main context.
        self._cut_off: dict[str, str | None] = {}
        self._running: set[str] = set()  # turns started and not ended
        self._prompts: set[str] = set()
        self._cancelling: set[str] = set()
        self._given_up: set[str] = set()  # prompts left unanswered by the turn (stopping)
        self._stopping = False
        self._changed = trio.Event()
        self._stopped = False
        self._following = trio.CancelScope()  # around run(): close() cancels it
        self._done = trio.Event()  # run() has ended
        self._nursery: trio.Nursery | None = None
        self._mount: _Mount | None = None
        self._info_told: tuple[str, float] | None = None  # title, updated_at last sent
        # Held while updates of the log go out: by the follower for each batch, by a
        # second load's replay for all of it (the follower then goes on where it ends).
        self._sending = trio.Lock()
        self._prefix = f"acp-{secrets.token_hex(4)}"
        self._count = 0
        self._handlers = Handlers(
            session_id, peer, tools, translator, submit=self.submit, update=self._update
        )

    # -- following the log -----------------------------------------------------------

    async def replay(self, *, quiet: bool = False) -> None:
        """Send the whole log as updates (``session/load``) and note its open work.

        With *quiet* (``session/resume``: the client keeps its own history) nothing
        of the log is sent, only the session's ``usage_update`` and title where the
        log leaves them; the log is still read, for the open work and for what the
        translator must know of it (the calls shown, a reply in progress).

        Call before :meth:`run`; the work is handled once :meth:`adopt` is called.
        """
        self.translator.replay = True
        while True:
            page = await self.link.read_events(
                self.session_id, after=self.last_seq, limit=REPLAY_PAGE
            )
            for event in page:
                await self._event(event, start=False, send=not quiet)
            if len(page) < REPLAY_PAGE:
                break
        # A reply the log ends in the middle of: its text so far, before the rest live
        # (resumed: the client has that text, and the rest follows live).
        for update in self.translator.end_replay():
            if not quiet or update["sessionUpdate"] == "usage_update":
                await self._update(update)
        # Read again, not taken from the load's read: a message committed since is
        # in the replay (not sent live), and so is the title it gave.
        await self._tell_info()

    async def replay_history(self) -> None:
        """Send the log up to :attr:`last_seq` as updates again (a second ``session/load``).

        This uses a translator of its own; the follower waits meanwhile, so the
        replay ends exactly where the follower goes on (the text of a reply in
        progress included): no gap, no duplicate, nothing live in between.
        """
        async with self._sending:
            translator = Translator(
                self.translator.cwd,
                replay=True,
                compaction=self.translator.compaction,
                # A copy from the log's start (default model): the replay's switches
                # must not move what the follower shows.
                options=None
                if self.translator.options is None
                else attrs.evolve(self.translator.options, model=None),
            )
            cursor, limit = 0, self.last_seq
            while cursor < limit:
                page = await self.link.read_events(self.session_id, after=cursor, limit=REPLAY_PAGE)
                if not page:
                    break
                for event in page:
                    seq = event.get("seq")
                    if not isinstance(seq, int) or seq > limit:
                        cursor = limit
                        break
                    cursor = seq
                    for update in translator.feed(event):
                        await self._update(update)
            for update in translator.end_replay():
                await self._update(update)
            await self._tell_info(again=True)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the session from :attr:`last_seq` until cancelled or the runtime stops.

        Cancellation: handlers are cancelled with it (commands killed, terminals
        released); prompts waiting here are woken and fail.
        """
        try:
            with self._following:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._mount = await nursery.start(self._mounted, self.mcp)
                    task_status.started()
                    try:
                        await self.link.follow(
                            self.session_id, after=self.last_seq, sink=self._on_events
                        )
                    except Exception:
                        log.exception("session %s: following it failed", self.session_id)
                    nursery.cancel_scope.cancel()  # the runtime stopped: so does the work
        finally:
            self._stopped = True
            self._notify()
            self._done.set()

    async def close(self, grace: float) -> None:
        """``session/close``: cancel the prompts' turns (:meth:`cancel`), give their
        answers up to *grace* seconds to go out, then stop following the session
        (:meth:`run` is cancelled: handlers too, the client's MCP servers are
        unmounted); returns once :meth:`run` has ended.

        A prompt still waiting then fails (the session stopped before its turn ended).
        """
        self.cancel()
        with trio.move_on_after(grace):
            await self._wait_until(lambda: not self._prompts)
        self._following.cancel()
        await self._done.wait()

    async def _mounted(
        self,
        servers: tuple[McpServerConfig, ...],
        *,
        task_status: trio.TaskStatus[_Mount] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep *servers* mounted for the session until cancelled (the client's ``mcpServers``)."""
        ended = trio.Event()
        try:
            with trio.CancelScope() as scope:
                async with self.link.session_mcp(self.session_id, servers):
                    task_status.started(_Mount(scope, ended))
                    await trio.sleep_forever()
        finally:
            ended.set()

    @property
    def busy(self) -> bool:
        """A turn of the session is in progress, queued by a prompt here, or waits for the IDE."""
        return bool(self._running or self._prompts or self._open)

    async def move(self, workspace: Workspace, mcp: tuple[McpServerConfig, ...]) -> None:
        """Work in *workspace* with the client's MCP servers *mcp* from now on (a later
        ``session/load`` names them).

        Raises:
            RpcError: ``INVALID_PARAMS`` when they differ from the current ones while
                :attr:`busy`: a turn's calls would run half in each directory (or see
                its tools vanish), and its paths were shown for the first.
        """
        moved = workspace.root != self.tools.workspace.root
        if not moved and mcp == self.mcp:
            return
        if self.busy:
            field = '"cwd"' if moved else '"mcpServers"'
            raise RpcError(
                INVALID_PARAMS,
                f"{field}: session {self.session_id!r} works in {self.tools.workspace.root} "
                "with the MCP servers it was opened with, and a turn is in progress; load it "
                "with those, or with new ones once the turn has ended",
            )
        if mcp != self.mcp:
            assert self._nursery is not None and self._mount is not None, "run() started"
            # Mounts are per session: the old servers are unmounted before the new ones.
            self._mount.scope.cancel()
            await self._mount.ended.wait()
            self.mcp = ()
            self._mount = await self._nursery.start(self._mounted, mcp)
            self.mcp = mcp
        self.tools.workspace = workspace
        self.translator.cwd = str(workspace.root)

    def adopt(self) -> None:
        """Start handling the open work :meth:`replay` found (a turn waiting since before)."""
        for key, work in list(self._open.items()):
            if work.scope is None:
                self._start(key, work)

    async def _on_events(self, batch: Sequence[JSONObject]) -> None:
        async with self._sending:
            for event in batch:
                await self._event(event, start=True)

    async def _event(self, event: JSONObject, *, start: bool, send: bool = True) -> None:
        seq = event.get("seq")
        if isinstance(seq, int):
            self.last_seq = seq
        for update in self.translator.feed(event):
            if send:
                await self._update(update)
        if start and event.get("type") == "user.message":
            # Committed with the session's new title (the first message names it)
            # and its new updated_at: an editor's list of sessions follows.
            await self._tell_info()
        self._track(event, start=start)

    async def _tell_info(self, *, again: bool = False) -> None:
        """Send the session's ``session_info_update`` if its title or last change moved
        since this bridge last told it (or *again*: the client replays the session)."""
        try:
            info = await self.link.load_session(self.session_id)
        except LinkError as error:
            log.warning("session %s: reading its title failed: %s", self.session_id, error)
            return
        if info is None:
            return  # deleted: its session.deleted says so
        told = (info.title, info.updated_at)
        if told != self._info_told or again:
            self._info_told = told
            await self._update(session_info_update(info))

    async def _update(self, update: JSONObject) -> None:
        await self.peer.notify("session/update", {"sessionId": self.session_id, "update": update})

    def _track(self, event: JSONObject, *, start: bool) -> None:
        kind = event.get("type")
        turn = event.get("turn_id")
        turn_id = turn if isinstance(turn, str) else None
        match kind:
            case "tool.call" | "approval.requested" | "question.asked":
                prefix = {"tool.call": "call", "approval.requested": "approval"}.get(
                    kind, "question"
                )
                item = str_field(event, "question_id" if prefix == "question" else "call_id")
                key = f"{prefix}:{item}"
                if key not in self._open:
                    self._open[key] = work = Work(turn_id, event)
                    if start:
                        self._start(key, work)
            case "tool.result":
                self._close(f"call:{str_field(event, 'call_id')}")
                self._close(f"question:{str_field(event, 'call_id')}")
            case "approval.resolved":
                self._close(f"approval:{str_field(event, 'call_id')}")
            case "question.answered":
                self._close(f"question:{str_field(event, 'question_id')}")
            case "error" if turn_id is not None:
                self._errors[turn_id] = event
            case "message" if turn_id is not None and "subtask_id" not in event:
                cut_off = event.get("cut_off")
                self._cut_off[turn_id] = cut_off if isinstance(cut_off, str) else None
            case "turn.started" if turn_id is not None:
                self._running.add(turn_id)
            case "turn.ended" if turn_id is not None:
                self._running.discard(turn_id)
                for key in [k for k, w in self._open.items() if w.turn_id == turn_id]:
                    self._close(key)
                reason = str_field(event, "reason") or "error"
                self._ended[turn_id] = _End(
                    reason,
                    event.get("usage"),
                    self._errors.pop(turn_id, None),
                    self._cut_off.pop(turn_id, None),
                )
                while len(self._ended) > _ENDED_KEPT:
                    self._ended.popitem(last=False)
                self._notify()

    # -- open work -------------------------------------------------------------------

    def _start(self, key: str, work: Work) -> None:
        assert self._nursery is not None, "run() starts the bridge first"
        work.scope = trio.CancelScope()
        handler = self._handlers.for_kind(key.partition(":")[0])
        self._nursery.start_soon(self._handle, key, work, handler)

    async def _handle(
        self, key: str, work: Work, handler: Callable[[Work], Awaitable[None]]
    ) -> None:
        assert work.scope is not None
        try:
            with work.scope:
                await handler(work)
        except ConnectionClosed:
            pass  # the client is gone; the turn waits for whoever comes next
        except Exception:
            log.exception("session %s: handling %s failed", self.session_id, key)

    def _close(self, key: str) -> None:
        work = self._open.pop(key, None)
        if work is not None and work.scope is not None and not work.answered:
            work.scope.cancel()

    def _new_id(self) -> str:
        self._count += 1
        return f"{self._prefix}-{self._count}"

    async def submit(self, command: JSONObject) -> JSONObject:
        """Submit *command* (a fresh id is added); its ack."""
        ack = await self.link.submit(self.session_id, {**command, "id": self._new_id()})
        if ack.get("status") == "rejected":
            log.info(
                "session %s: %s refused: %s", self.session_id, command.get("type"), ack.get("error")
            )
        return ack

    # -- prompts ---------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    async def prompt(self, command: JSONObject, *, cancelled: Callable[[], bool]) -> JSONObject:
        """Run one prompt turn; the ``session/prompt`` result once its turn ended.

        *command* is what the prompt asks the runtime (``_commands.prompt_command``):
        a ``user_message``, or a command that runs as a turn of its own (``compact``).

        *cancelled* says whether a ``session/cancel`` of the session came after
        this prompt: the dispatcher knows the order they came in, and this task
        may have started after both.

        Raises:
            RpcError: the runtime refused the message, the turn failed (the error
                event's code and message in ``data``), or the session stopped.

        Cancellation: stops waiting; the turn goes on in the runtime.
        """
        ack = await self.submit(command)
        turn_id = ack.get("turn_id")
        if ack.get("status") == "rejected" or not isinstance(turn_id, str):
            data: JSONObject = {"code": ack.get("code") or "internal", "message": ack.get("error")}
            raise RpcError(
                INTERNAL_ERROR, f"the runtime refused the prompt: {ack.get('error')}", data
            )
        self._prompts.add(turn_id)
        try:
            # Checked with no checkpoint since the add: stop() and cancel() see the
            # turn in _prompts, or this sees what they did (never both, never neither).
            if self._stopping:  # the adapter began stopping while the message was on its way
                await self._stop_turn(turn_id)
            elif cancelled():  # cancelled while the message was on its way
                await self._cancel_turn(turn_id)
            await self._wait_until(
                lambda: turn_id in self._ended or turn_id in self._given_up or self._stopped
            )
            end = self._ended.pop(turn_id, None)
        finally:
            self._prompts.discard(turn_id)
        if end is None and turn_id in self._given_up:
            self._given_up.discard(turn_id)
            raise RpcError(
                INTERNAL_ERROR,
                "the agent stopped while the turn waits for the editor; load the session to go on",
                {"code": "shutting_down"},
            )
        asked_to_cancel = turn_id in self._cancelling
        self._cancelling.discard(turn_id)
        if end is None:
            raise RpcError(INTERNAL_ERROR, "the session stopped before the turn ended")
        reason = "cancelled" if asked_to_cancel else stop_reason(end.reason, end.cut_off)
        if reason is None:
            raise turn_error(end.error)
        result: JSONObject = {"stopReason": reason}
        # A cancelled turn was billed too (its cut call estimated): its usage is told.
        usage = prompt_usage(end.usage)
        if usage is not None:
            result["usage"] = usage
        if isinstance(end.usage, dict):
            result["_meta"] = {"agent-runtime": {"usage": end.usage}}
        return result

    def cancel(self) -> None:
        """``session/cancel``: stop the prompts' turns (their answers say ``cancelled``).

        A prompt whose ack has not come yet sees the cancel itself (see :meth:`prompt`).
        """
        for turn_id in list(self._prompts):
            assert self._nursery is not None, "prompts wait on a running bridge"
            self._abandon_turn(turn_id)
            self._nursery.start_soon(self._cancel_turn, turn_id)

    def _abandon_turn(self, turn_id: str) -> None:
        self._cancelling.add(turn_id)
        for work in self._open.values():
            if work.turn_id == turn_id and work.scope is not None and not work.answered:
                work.scope.cancel()

    async def _cancel_turn(self, turn_id: str) -> None:
        self._abandon_turn(turn_id)
        await self.submit({"type": "cancel", "turn_id": turn_id})

    async def stop(self) -> None:
        """The adapter is stopping: cancel the prompts' turns that are streaming, and
        fail the prompts whose turns wait for the IDE; a prompt acked from now on
        does the same for its own turn (:meth:`prompt`).

        A turn waiting for a tool result or an approval is left to the runtime's
        shutdown, which suspends it: a later ``session/load`` picks its work up.
        """
        self._stopping = True  # before the snapshot, with no checkpoint in between
        for turn_id in list(self._prompts):
            await self._stop_turn(turn_id)

    async def _stop_turn(self, turn_id: str) -> None:
        if any(work.turn_id == turn_id for work in self._open.values()):
            self._given_up.add(turn_id)
            self._notify()
        else:
            await self._cancel_turn(turn_id)
