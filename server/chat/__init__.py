"""``agent-runtime chat``: the terminal IDE client (SPEC §7).

It connects to one session over WebSocket (creating it over REST when no
``--session`` is given), renders the stream, executes every IDE tool call inside
``--workspace`` and asks the human to approve what the server's policy asks about.
Every failure ends in one line the user can act on and an exit status, never a
traceback.

:func:`run_chat` is what the CLI runs inside its ``trio.run``; :func:`chat_main`
runs the client with parsed :class:`ChatOptions` (tests replace its terminal,
input, workspace and interrupts). The client talks to the server over the network
only: it uses the public client library :mod:`server.client` (connection, resume,
outbox), the public names of :mod:`agents` (events, tool schemas) and
:mod:`sessions`, and nothing else of :mod:`server`.

Modules: ``_main`` (entry points, session creation), ``_options`` (flags, environment,
exit statuses), ``_client`` (one run: link, driver, Ctrl-C), ``_worker`` (the run's
worker: tool calls, approvals, questions), ``_link`` (the session's connection over
:mod:`server.client`, with chat's notes), ``_state`` (open work), ``_input`` (the
human's lines and approvals), ``_render`` (the transcript), ``_screen`` (writing it to
the terminal: styles, lines, live output), ``_markdown`` (final messages as markdown),
``_status`` (the status line), ``_describe`` (one-line descriptions of calls),
``_ndjson`` (``--output json``), ``_text`` (escaping what reaches the terminal),
``_tools`` (the workspace executor), ``_apply_diff`` (``apply_diff``'s search and
replace, shared with the ACP adapter), ``_paths`` (confinement to the workspace),
``_command`` (running a shell command), ``_diff`` (diffs of edits), ``_instructions``
(the workspace's ``AGENTS.md``, sent as the session's instructions), ``_prompt``
(prompt_toolkit line editing, history and completion on a terminal), ``_slash`` (the
slash commands the client handles itself), ``_slash_parse`` (their table, parsing and
outcomes), ``_session_diff`` (``/diff``'s diffs), ``_journal`` (checkpoints of the
agent's file changes, for ``/undo`` and ``/diff``), ``_journal_store`` (the journal's
index, blobs, lock and validation), ``_journal_model`` (the journal's records).
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._client import Interrupts
    from ._input import LineSource
    from ._main import chat_main, run_chat, run_chat_args
    from ._options import (
        DEFAULT_URL,
        EXIT_FAILED,
        EXIT_INTERRUPTED,
        EXIT_NOT_APPROVED,
        EXIT_OK,
        EXIT_USAGE,
        TOKEN_ENV,
        URL_ENV,
        ChatOptions,
        UsageError,
        add_chat_arguments,
        chat_parser,
        http_url,
        options_from_args,
    )
    from ._tools import Workspace

__all__ = [
    "DEFAULT_URL",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_APPROVED",
    "EXIT_OK",
    "EXIT_USAGE",
    "TOKEN_ENV",
    "URL_ENV",
    "ChatOptions",
    "Interrupts",
    "LineSource",
    "UsageError",
    "Workspace",
    "add_chat_arguments",
    "chat_main",
    "chat_parser",
    "http_url",
    "options_from_args",
    "run_chat",
    "run_chat_args",
]

# Where each public name lives. The package imports them on first use: the ACP
# adapter runs the same workspace tools (``_tools``, ``_command``, ``_diff``, ...) and
# must not pay, at every editor's start-up, for the terminal's prompt_toolkit and
# rich that the rest of the client imports.
_EXPORTS: dict[str, str] = {
    "ChatOptions": "._options",
    "DEFAULT_URL": "._options",
    "EXIT_FAILED": "._options",
    "EXIT_INTERRUPTED": "._options",
    "EXIT_NOT_APPROVED": "._options",
    "EXIT_OK": "._options",
    "EXIT_USAGE": "._options",
    "Interrupts": "._client",
    "LineSource": "._input",
    "TOKEN_ENV": "._options",
    "URL_ENV": "._options",
    "UsageError": "._options",
    "Workspace": "._tools",
    "add_chat_arguments": "._options",
    "chat_main": "._main",
    "chat_parser": "._options",
    "http_url": "._options",
    "options_from_args": "._options",
    "run_chat": "._main",
    "run_chat_args": "._main",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
