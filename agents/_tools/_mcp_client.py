"""One live connection to one MCP server, over the official ``mcp`` SDK.

The SDK is imported by this module and :mod:`~agents._tools._mcp_transports`
(which opens the streams) only, and lazily: inside :func:`connect` (and the
functions it hands out), so ``import agents`` works without the ``mcp`` extra:
the first connection attempt raises :class:`McpUnavailable` instead.

The SDK is anyio-based and runs under trio. What it does that we rely on:

* A caller cancelled mid-request, or a request past its read timeout, makes the
  SDK send ``notifications/cancelled`` for that request id (shielded, bounded).
* When the connection ends (the stdio child exits, the HTTP transport gives up),
  every waiting request gets ``MCPError(CONNECTION_CLOSED)``. The SDK offers no
  "closed" event, so :class:`_Watched` wraps the read stream the session consumes
  and notices its end.
* A line the transport cannot parse reaches the session as an exception item,
  which the SDK only logs. Two kinds, told apart by :func:`~agents._tools._mcp_output.screened`:

  - Stray output (a banner, a ``print``, a JSON log line: anything without an
    ``id``): logged briefly and dropped, as the SDKs' own clients do, so a server
    that works elsewhere works here.
  - A JSON object with an ``id`` that is no valid JSON-RPC message: a broken
    answer. The request it answered would wait out its read timeout, and no
    such answer can ever be matched, so :class:`_Watched` ends the stream there:
    the connection fails as if the server had stopped (every waiting request is
    woken, the server restarts), and says why.
* ``notifications/tools/list_changed`` reaches the session's ``message_handler``
  (spawned in its own task, so the handler only sets a flag).
* ``tools/list`` results are validated as a whole page (one bad tool fails them
  all), and ``call_tool`` re-lists to learn a tool's output schema. So the
  connection screens every ``tools/list`` answer on its way in and drops the
  tools the SDK would refuse (logged); the SDK then sees only valid pages.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Literal, TypeAlias, TypeVar

import trio

from sessions import JSONObject

from .._core._mcp import INSTALL_HINT, McpOutcome, McpServerConfig, McpTool, tool_name
from .._errors import McpUnavailable
from ._mcp_convert import convert_tool, flatten
from ._mcp_output import StderrTail, screened
from ._mcp_transports import open_transport

if TYPE_CHECKING:
    import mcp_types
    from mcp.client._transport import ReadStream, WriteStream
    from mcp.client.session import ClientSession, IncomingMessage
    from mcp.shared.message import SessionMessage

    from ._mcp_transports import Transport

logger = logging.getLogger("agents.mcp")

MISSING_SDK = INSTALL_HINT
#: What the read stream's screen does with an item (see :class:`_Watched`).
_Verdict: TypeAlias = Literal["pass", "skip", "end"]
#: Bound on ``tools/list`` pages: a server whose cursor never ends must not hang us.
_MAX_PAGES = 64
#: Tools mounted per server: every one is in every request of the modes that select it.
MAX_TOOLS = 128
#: What model-facing tool names may look like (the providers' rule).
_MODEL_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

T = TypeVar("T")
#: The version the SDK validates results by before ``initialize`` settled one.
_HANDSHAKE_FALLBACK = "2025-11-25"


def _require_sdk() -> None:
    try:
        import mcp.client.session  # noqa: F401
    except ImportError as exc:
        raise McpUnavailable(MISSING_SDK) from exc


class _Watched(Generic[T]):
    """The session's read stream, calling *on_end* once it ends for any reason.

    The dispatcher closes its read stream when its receive loop stops (EOF, a
    broken transport, or shutdown), so ``aclose`` is the one signal covering all.
    Every item received passes *on_item* first (which may repair it in place):
    ``"pass"`` hands it on, ``"skip"`` drops it, ``"end"`` ends the stream there
    instead, as at EOF.
    """

    def __init__(
        self, inner: ReadStream[T], on_end: Callable[[], None], on_item: Callable[[T], _Verdict]
    ) -> None:
        self._inner = inner
        self._on_end = on_end
        self._on_item = on_item

    @property
    def last_context(self) -> object:
        # The dispatcher runs a message's handlers in the sender's context (HTTP).
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> T:
        import anyio

        while True:
            item = await self._inner.receive()
            verdict = self._on_item(item)
            if verdict == "pass":
                return item
            if verdict == "end":
                self._on_end()
                raise anyio.EndOfStream

    def __aiter__(self) -> _Watched[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            try:
                item = await self._inner.__anext__()
            except StopAsyncIteration:
                self._on_end()
                raise
            verdict = self._on_item(item)
            if verdict == "pass":
                return item
            if verdict == "end":
                self._on_end()
                raise StopAsyncIteration

    async def aclose(self) -> None:
        self._on_end()
        await self._inner.aclose()

    async def __aenter__(self) -> _Watched[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Noted(Generic[T]):
    """The session's write stream, showing every item to *on_item* before it is sent."""

    def __init__(self, inner: WriteStream[T], on_item: Callable[[T], None]) -> None:
        self._inner = inner
        self._on_item = on_item

    async def send(self, item: T, /) -> None:
        self._on_item(item)
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _Noted[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class McpConnection:
    """An initialized session with one server, until :attr:`closed` is set."""

    def __init__(self, config: McpServerConfig, pid: int | None) -> None:
        self.config = config
        self.pid = pid  # of the stdio child (None: HTTP, or not found)
        self.closed = trio.Event()
        self._session: ClientSession | None = None
        self._tools_stale = False
        self._wake = trio.Event()
        self._listings: set[object] = set()  # ids of the tools/list requests sent, unanswered
        #: Why the connection was failed on our side (e.g. "sent an unparseable message").
        self.fault: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def failure(self) -> str | None:
        """Why the connection was failed on our side, as a sentence, or ``None``."""
        return None if self.fault is None else f"the MCP server {self.name} {self.fault}"

    def _ended(self) -> None:
        self.closed.set()
        self._wake.set()

    async def _on_message(self, message: IncomingMessage) -> None:
        import mcp_types

        # Exceptions never get here: _received ends the connection at the first one.
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._tools_stale = True
            self._wake.set()

    def _sent(self, item: SessionMessage) -> None:
        import mcp_types

        request = item.message
        if isinstance(request, mcp_types.JSONRPCRequest) and request.method == "tools/list":
            self._listings.add(request.id)

    def _received(self, item: SessionMessage | Exception) -> _Verdict:
        """Screen *item*: hand it on, drop it (stray output) or end the connection."""
        import mcp_types

        if isinstance(item, Exception):
            fault, excerpt = screened(item)
            if fault is None:
                logger.warning(
                    "MCP server %s wrote what is not an MCP message to its output (ignored): %s",
                    self.name,
                    excerpt,
                )
                return "skip"
            # The request it answered waits in vain, and the server's answers are
            # not to be trusted from here: fail the connection like a crashed server.
            self.fault = fault
            logger.warning("MCP server %s %s; disconnecting it", self.name, fault)
            return "end"
        if isinstance(item.message, mcp_types.JSONRPCRequest):
            return "pass"
        answer = item.message
        if not isinstance(answer, mcp_types.JSONRPCNotification) and answer.id in self._listings:
            self._listings.discard(answer.id)
            if isinstance(answer, mcp_types.JSONRPCResponse):
                self._screen_listing(answer.result)
        return "pass"

    def _screen_listing(self, result: dict[str, object]) -> None:
        """Drop the tools of a ``tools/list`` result that the SDK would refuse (logged)."""
        tools = result.get("tools")
        if not isinstance(tools, list):
            return  # the page itself is broken: the SDK says so
        version = self._live().protocol_version or _HANDSHAKE_FALLBACK
        kept = []
        for tool in tools:
            problem = _invalid_tool(tool, version)
            if problem is None:
                kept.append(tool)
            else:
                name = tool.get("name") if isinstance(tool, dict) else None
                logger.warning("MCP server %s: tool %r is left out: %s", self.name, name, problem)
        result["tools"] = kept

    async def _on_log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        logger.debug("MCP server %s log (%s): %s", self.name, params.level, params.data)

    async def wait_change(self) -> bool:
        """Until the server's tool list changed (``True``) or the connection ended (``False``)."""
        while True:
            if self._tools_stale:
                self._tools_stale = False
                return True
            if self.closed.is_set():
                return False
            await self._wake.wait()
            self._wake = trio.Event()

    def _live(self) -> ClientSession:
        assert self._session is not None, "used outside connect()"
        return self._session

    async def list_tools(self) -> tuple[McpTool, ...]:
        """All pages of ``tools/list``, as our values, filtered by the config's allow-list.

        Tools whose model-facing name would be invalid (or empty), or whose listing
        the SDK would refuse (screened on the way in), are left out (logged).

        Raises:
            mcp.shared.exceptions.MCPError: the server failed the request.
        """
        import mcp_types

        session = self._live()
        tools: dict[str, McpTool] = {}
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params = None if cursor is None else mcp_types.PaginatedRequestParams(cursor=cursor)
            page = await session.list_tools(params=params)
            for tool in page.tools:
                if not self.config.allows(tool.name) or tool.name in tools:
                    continue
                full = tool_name(self.name, tool.name)
                # An empty tool part names no tool: ``mcp__fake__`` could not be called.
                if not tool.name or len(full) > 64 or not set(full) <= _MODEL_NAME:
                    logger.warning("MCP server %s: tool %r has an unusable name", self.name, full)
                    continue
                converted = convert_tool(self.name, tool)
                if converted.parameters.get("type") != "object":
                    # MCP requires an object schema; models refuse anything else.
                    logger.warning("MCP server %s: tool %r has no object schema", self.name, full)
                    continue
                if len(tools) >= MAX_TOOLS:
                    logger.warning(
                        "MCP server %s: only its first %d tools are mounted", self.name, MAX_TOOLS
                    )
                    return tuple(tools.values())
                tools[tool.name] = converted
            cursor = page.next_cursor
            if cursor is None:
                break
        else:
            logger.warning(
                "MCP server %s: tools/list stopped after %d pages", self.name, _MAX_PAGES
            )
        return tuple(tools.values())

    async def call(
        self,
        tool: str,
        arguments: JSONObject,
        read_timeout: float,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - only named in the outcome
    ) -> McpOutcome:
        """Call *tool*; every way it can end is an outcome.

        *read_timeout* is the SDK's: past it, the SDK sends ``notifications/cancelled``
        with a reason and the outcome is ``timeout`` (a cancel scope would look to
        the SDK like a cancelled caller). *timeout* is the call's whole timeout, which
        the outcome names (default: *read_timeout*); the caller may have spent some
        of it already, waiting for a slot.

        Cancellation: if the caller is cancelled, the SDK sends the server
        ``notifications/cancelled`` for the request (shielded, at most 5 s on a
        wedged transport), then ``trio.Cancelled`` propagates.
        """
        import mcp_types
        from mcp.shared.exceptions import MCPError

        unknown = "whether it took effect is unknown"
        if self.closed.is_set():
            return McpOutcome("failed", f"the MCP server {self.name} is not connected")
        try:
            result = await self._live().call_tool(
                tool, dict(arguments), read_timeout_seconds=read_timeout
            )
        except MCPError as exc:
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                return McpOutcome(
                    "timeout",
                    f"the MCP server {self.name} did not answer {tool} "
                    f"within {read_timeout if timeout is None else timeout:.3g} s; "
                    f"the call was cancelled, {unknown}",
                )
            if exc.code == mcp_types.CONNECTION_CLOSED and (
                self.closed.is_set() or exc.message == "Connection closed"
            ):
                if self.failure is not None:
                    return McpOutcome(
                        "failed", f"{self.failure}, so the call was cut off; {unknown}"
                    )
                return McpOutcome(
                    "failed", f"the MCP server {self.name} stopped during the call; {unknown}"
                )
            return McpOutcome(
                "failed",
                f"the MCP server {self.name} failed the call with error {exc.code}: "
                f"{exc.message}; {unknown}",
            )
        except Exception as exc:  # a malformed result, an SDK or transport fault
            return McpOutcome(
                "failed",
                f"the call to the MCP server {self.name} failed "
                f"({type(exc).__name__}: {exc}); {unknown}",
            )
        text = flatten(result)
        if result.is_error:
            return McpOutcome("error", text or f"{tool} reported an error without a message")
        return McpOutcome("ok", text)


def _invalid_tool(tool: object, version: str) -> str | None:
    """Why the SDK would refuse a page listing *tool* (as at protocol *version*), or ``None``."""
    import mcp_types
    import pydantic
    from mcp_types import methods

    try:
        # KeyError: a version without a surface row; the SDK skips this check too.
        with contextlib.suppress(KeyError):
            methods.validate_server_result("tools/list", version, {"tools": [tool]})
        mcp_types.Tool.model_validate(tool, by_name=False)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][2:]) or "the tool"
        return f"its listing is invalid ({where}: {first['msg']})"
    return None


# --------------------------------------------------------------------------- connecting


@asynccontextmanager
async def connect(
    config: McpServerConfig,
    *,
    start_timeout: float,
    transport: Transport = open_transport,
    stderr: StderrTail | None = None,
) -> AsyncIterator[McpConnection]:
    """A connection to the server of *config*, initialized (``initialize`` done once).

    *stderr* gets the last lines a stdio server wrote to its stderr, complete
    once the block is left (so a caller can say why the server stopped).

    Raises:
        McpUnavailable: the SDK is missing, the process cannot be spawned, an
            HTTP header's environment variable is unset, or ``initialize``
            failed or took longer than *start_timeout*. Once yielded, errors of
            the transport may leave the block as other exceptions (or groups).

    Cancellation: leaving the block (cancelled or not) stops the server: the SDK
    closes a stdio child's stdin, then SIGTERMs and SIGKILLs its process group,
    shielded and bounded (about 6 s at worst); an HTTP session gets a DELETE.
    """
    _require_sdk()
    from mcp.client.session import ClientSession

    if stderr is None:
        stderr = StderrTail()
    async with transport(config, stderr) as (read, write, pid):
        connection = McpConnection(config, pid)
        session = ClientSession(
            _Watched(read, connection._ended, connection._received),
            _Noted(write, connection._sent),
            message_handler=connection._on_message,
            logging_callback=connection._on_log,
            client_info=_client_info(),
        )
        async with session:
            connection._session = session
            await _initialize(connection, session, start_timeout)
            try:
                yield connection
            finally:
                connection._ended()


async def _initialize(connection: McpConnection, session: ClientSession, limit: float) -> None:
    from mcp.shared.exceptions import MCPError

    name = connection.name
    try:
        with trio.fail_after(limit):
            await session.initialize()
    except trio.TooSlowError:
        raise McpUnavailable(
            f"the MCP server {name} did not finish initializing within {limit:g} s"
        ) from None
    except MCPError as exc:
        why = f"it {connection.fault}" if connection.fault else exc.message
        raise McpUnavailable(f"the MCP server {name} failed to initialize: {why}") from exc
    except (RuntimeError, ValueError) as exc:  # unsupported protocol version, bad result
        raise McpUnavailable(f"the MCP server {name} failed to initialize: {exc}") from exc


def _client_info() -> mcp_types.Implementation:
    import importlib.metadata

    import mcp_types

    try:
        version = importlib.metadata.version("agent-runtime")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return mcp_types.Implementation(name="agent-runtime", version=version)
