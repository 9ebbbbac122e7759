"""Runtime settings of the agent loop (values, not behaviour)."""

from __future__ import annotations

from attrs import field, frozen

from ._core._budget import ModelCatalog


@frozen
class RuntimeConfig:
    """Knobs of the turn runner and supervisor.

    Attributes:
        model: model name sent to the provider (a mode may override it).
        max_steps: LLM calls per turn before ``turn.ended {reason: "max_steps"}``:
            one budget for the turn, its subtasks' calls included.
        max_subtask_depth: how deep subtasks may nest (1: only the main context
            delegates); a ``new_task`` beyond it is refused with a tool error.
        max_switches: agent switches per turn (prevents ping-pong between modes).
        approval_timeout: seconds before an unanswered approval expires as reject.
        tool_timeout: seconds a turn waits for an IDE tool result before failing the call.
        question_timeout: seconds a turn waits for an answer to ``question.asked``.
        cancel_grace: seconds the cancel clean-up may take (SPEC §3.3 rule 5: < 1 s).
        shutdown_grace: seconds running turns get to finish on shutdown before cancel.
        max_queued: queued messages per session before ``on_busy=queue`` is refused.
        chunk_buffer: bound of the model → runner chunk channel.
        store_retry: seconds before first retrying to close a turn whose closing
            write the store refused (disk full); doubles up to ten times that.
        session_idle_ttl: seconds a session with nothing running stays loaded after
            its last use; then its state is dropped (it reloads from the log).
        max_idle_sessions: most idle sessions kept loaded; beyond it the longest
            idle is dropped at once. Sessions with turns are never dropped.
        models: context window, output reserve and prices of each model.
        compact_at: share of a model's input budget (window less output reserve)
            a request may fill; beyond it the oldest history is compacted first.
        keep_user_messages: user messages (with what followed them) a compaction
            keeps verbatim, besides the current turn.
        compaction_model: the model that writes summaries (``None``: the one the
            turn uses).
        tool_result_share: share of the input budget one tool result may take in
            a request; a longer one is sent cut (the log keeps it whole).
    """

    model: str = "scripted"
    max_steps: int = 25
    max_subtask_depth: int = 4
    max_switches: int = 3
    approval_timeout: float = 600.0
    tool_timeout: float = 600.0
    question_timeout: float = 600.0
    cancel_grace: float = 0.9
    shutdown_grace: float = 5.0
    max_queued: int = 16
    chunk_buffer: int = 256
    store_retry: float = 0.5
    session_idle_ttl: float = 60.0
    max_idle_sessions: int = 1000
    models: ModelCatalog = field(factory=ModelCatalog)
    compact_at: float = 0.8
    keep_user_messages: int = 2
    compaction_model: str | None = None
    tool_result_share: float = 0.25
