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


def single_error(raised: BaseException) -> BaseException:
    """The error worth reporting from *raised*, looking inside exception groups.

    Nurseries wrap what their tasks raise; a group whose leaves (ignoring
    ``Cancelled``, the echo of the failure in sibling tasks) are one error is that
    error. Anything else is returned unchanged.
    """
    if not isinstance(raised, BaseExceptionGroup):
        return raised
    errors = [exc for exc in _leaves(raised) if not isinstance(exc, trio.Cancelled)]
    return errors[0] if len(errors) == 1 else raised


@contextmanager
def unwrap_single_error() -> Iterator[None]:
    """Re-raise a group's only exception (ignoring Cancelled siblings) unwrapped."""
    try:
        yield
    except BaseExceptionGroup as group:
        error = single_error(group)
        if error is not group:
            _reraise(error)
        if all(isinstance(exc, trio.Cancelled) for exc in _leaves(group)):
            _reraise(_leaves(group)[0])
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
