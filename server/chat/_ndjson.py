"""``chat --message ... --output json``: the session's events as NDJSON, for scripts and CI.

Standard output carries JSON objects only, one per line, each flushed as it is
written:

- every durable event of the session, in seq order, exactly as the server sent it
  (the objects ``GET /v1/sessions/{id}/events`` returns), from seq 1 for a new
  session or from the first event after the catch-up cursor for ``--session``;
- then one last line, ``{"type": "chat.exit", "code": N, "reason": R}``, with
  the exit status *N* of the process and *R* naming it (:data:`EXIT_REASONS`);
  when the client itself failed (no server, refused token, lost connection)
  it also has ``"error"``: the message printed on standard error.

Everything else (the client's notes, such as which approvals ``--yes`` gave, and
errors) goes to standard error as plain text lines, as in ``--output text``.
Standard output is JSON with ``ensure_ascii``: no control character, escaped or
not, reaches a terminal from it.
"""

from __future__ import annotations

import json
from typing import Final, TextIO

from sessions import JSONObject

from ._options import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_APPROVED, EXIT_OK, EXIT_USAGE
from ._render import Renderer

EXIT_TYPE: Final = "chat.exit"
EXIT_REASONS: Final = {
    EXIT_OK: "ok",
    EXIT_FAILED: "failed",
    EXIT_USAGE: "usage",
    EXIT_NOT_APPROVED: "not_approved",
    EXIT_INTERRUPTED: "interrupted",
}


def exit_reason(code: int) -> str:
    """The ``reason`` of a ``chat.exit`` line: see :data:`EXIT_REASONS`; 128+N is ``signal``."""
    if code in EXIT_REASONS:
        return EXIT_REASONS[code]
    return "signal" if code > 128 else "failed"


class NdjsonRenderer(Renderer):
    """A :class:`Renderer` whose events go to *events* as JSON lines, notes to *notes* as text.

    The approval and connection code talks to it as to any renderer; only
    :meth:`event` differs, and :meth:`exit` writes the final line.
    """

    def __init__(self, events: TextIO, notes: TextIO) -> None:
        super().__init__(notes)
        self.events = events
        self._exited = False

    def event(self, event: JSONObject) -> None:
        self._line(event)

    def exit(self, code: int, error: str | None = None) -> None:
        """Write the ``chat.exit`` line (once: a second call does nothing)."""
        if self._exited:
            return
        self._exited = True
        line: JSONObject = {"type": EXIT_TYPE, "code": code, "reason": exit_reason(code)}
        if error is not None:
            line["error"] = error
        self._line(line)

    def _line(self, value: JSONObject) -> None:
        self.events.write(json.dumps(value, separators=(",", ":")) + "\n")
        self.events.flush()
