# Typed stub for the parts of trio-asyncio that agent-runtime uses (it ships no
# type information). Only sessions/ imports trio_asyncio, to run aiosqlite.
import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

_T = TypeVar("_T")
_P = ParamSpec("_P")

__version__: str

class BaseTrioEventLoop(asyncio.SelectorEventLoop):
    async def run_aio_coroutine(self, coro: Coroutine[Any, Any, _T]) -> _T: ...
    async def synchronize(self) -> None: ...

class TrioEventLoop(BaseTrioEventLoop): ...

current_loop: ContextVar[BaseTrioEventLoop | None]

def open_loop(queue_len: int | None = None) -> AbstractAsyncContextManager[TrioEventLoop]: ...
def aio_as_trio(
    proc: Callable[_P, Awaitable[_T]], *, loop: asyncio.AbstractEventLoop | None = None
) -> Callable[_P, Coroutine[Any, Any, _T]]: ...
async def run_aio_coroutine(coro: Coroutine[Any, Any, _T]) -> _T: ...
async def run_aio_future(future: asyncio.Future[_T]) -> _T: ...
