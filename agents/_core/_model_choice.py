"""Which model an LLM call uses, and what counts as a model name.

Precedence, first set wins: the subtask's own model (``new_task{model}``), the
session's switched model (``switch_model``), the mode's ``model``, the server's
``config.model``. Names are not checked against any list: the provider decides
whether it knows a model (an unknown one fails the call like any model error).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._budget import MAX_MODEL_NAME, ModelCatalog

if TYPE_CHECKING:  # only for annotations
    from ._modes import Mode
    from ._state import SessionState

# The built-in table of the offline model (SCRIPTED_LIMITS): a model only when it is
# the server's, never one to offer beside a real provider's.
_BUILT_IN = "scripted"


def check_model_name(name: str) -> str:
    """*name* if it can name a model: not blank, at most :data:`MAX_MODEL_NAME` characters,
    printable (no provider names a model with a NUL, a newline or a bidi control,
    and a client shows the name back: "model switched to ...").

    Raises:
        ValueError: why it cannot.
    """
    if not name.strip():
        raise ValueError("a model name must not be empty")
    if len(name) > MAX_MODEL_NAME:
        raise ValueError(f"a model name must be at most {MAX_MODEL_NAME} characters long")
    if not name.isprintable():
        bad = next(c for c in name if not c.isprintable())
        raise ValueError(f"a model name must be printable; it has {bad!r}")
    return name


def model_for(state: SessionState, subtask_id: str | None, mode: Mode, default: str) -> str:
    """The model of the next LLM call of context *subtask_id* (``None``: the main one)."""
    subtask = state.subtask_models.get(subtask_id) if subtask_id is not None else None
    return subtask or state.model or mode.model or default


def known_models(default: str, modes: Iterable[Mode], catalog: ModelCatalog) -> tuple[str, ...]:
    """The model names this runtime is configured with, for a client to offer as
    ``switch_model`` choices: the server's *default*, each mode's ``model``, then each
    ``[models."<name>"]`` table's name, in that order, each once.

    Any other name may still be switched to (names are not checked); these are the
    ones the configuration names. The built-in ``scripted`` table counts only when
    ``scripted`` is the server's model.
    """
    names = [default, *(mode.model for mode in modes if mode.model)]
    names += [name for name in catalog.models if name != _BUILT_IN]
    return tuple(dict.fromkeys(names))
