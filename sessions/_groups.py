"""Keep the store's internal nurseries from wrapping callers' exceptions in groups.

The store's context managers run nurseries (the writer's, and trio-asyncio's
loop) around their ``yield``. With strict exception groups, an error raised by
the caller's body, or by opening the database, would come out wrapped in one
group per nursery. Callers expect ``DatabaseInUse`` or their own exception, so
a group holding one real error is unwrapped at the package boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import trio


@contextmanager
def unwrap_single_error() -> Iterator[None]:
    """Re-raise a group's only exception (ignoring Cancelled siblings) unwrapped."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        errors = [exc for exc in leaves if not isinstance(exc, trio.Cancelled)]
        if len(errors) == 1:
            _reraise(errors[0])
        if not errors:
            _reraise(leaves[0])
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found


def _reraise(exc: BaseException) -> NoReturn:
    # Raising inside the except block would set the group as __context__,
    # which contains exc itself; keep the exception's own context instead.
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context
