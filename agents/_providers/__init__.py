"""Model providers, one module per implementation of :class:`~agents.model.ModelClient`.

The registry maps a provider's name to its factory, which opens the provider
from neutral :class:`ProviderSettings`; the server opens whichever its
configuration names with :func:`open_provider`, and validates that name
against :data:`PROVIDERS`. A new provider is a new module here with an
``open_from_settings`` factory and one entry below.

- ``_openai.py`` / ``_openai_stream.py`` / ``_openai_wire.py`` /
  ``_openai_response.py``: OpenAI-compatible ``/chat/completions`` (the client
  and its failure policy / one completion's I/O / the request's wire format /
  decoding the event stream, the last two without I/O);
- ``_scripted.py`` / ``_scripted_rules.py`` / ``_scripted_gates.py``: the
  deterministic offline model, its rules and its gates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import MappingProxyType
from typing import TypeAlias

from .._core._model import ModelClient
from .._errors import ConfigError
from . import _scripted
from ._settings import ProviderSettings

ProviderFactory: TypeAlias = Callable[[ProviderSettings], AbstractAsyncContextManager[ModelClient]]
"""Opens a provider; leaving the context closes it (its connections, at once)."""


@asynccontextmanager
async def _open_openai(settings: ProviderSettings) -> AsyncIterator[ModelClient]:
    # Imported when chosen: httpx (which loads its own CLI's click, rich and pygments)
    # and httpcore are a large share of start-up, which the scripted model and the
    # ACP adapter's connected mode never use.
    from . import _openai

    async with _openai.open_from_settings(settings) as client:
        yield client


PROVIDERS: Mapping[str, ProviderFactory] = MappingProxyType(
    {
        "scripted": _scripted.open_from_settings,
        "openai": _open_openai,
    }
)
"""Every provider by name (the first is the default)."""


@asynccontextmanager
async def open_provider(settings: ProviderSettings) -> AsyncIterator[ModelClient]:
    """The provider ``settings.name``, opened from *settings* and closed on exit.

    Raises (on entering):
        ConfigError: an unknown provider (the message lists the known ones), or
            settings the provider refuses (a URL that is not http(s), a timeout
            that is not positive, ...), naming the provider.

    Cancellation: leaving, also by cancellation, closes the provider at once.
    """
    factory = PROVIDERS.get(settings.name)
    if factory is None:
        known = ", ".join(PROVIDERS)
        raise ConfigError(f"unknown model provider {settings.name!r}; providers: {known}")
    async with AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(factory(settings))
        except ValueError as error:
            # Only opening is translated: a ValueError from the caller's block is its own.
            raise ConfigError(f"model provider {settings.name!r}: {error}") from None
        yield client


__all__ = ["PROVIDERS", "ProviderFactory", "ProviderSettings", "open_provider"]
