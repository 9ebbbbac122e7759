"""What the runtime waits for from the IDE, done through the ACP client: open work.

A :class:`Work` item is one ``tool.call``, ``approval.requested`` or
``question.asked`` of the session's log that nothing answered yet; the bridge
(``_bridge.py``) runs one handler per item in its own cancel scope and cancels it
when the item closes first. Each handler ends by sending the runtime its answer
(``tool_result``, ``approval``, ``answer``) through :meth:`Handlers.answer`, which
marks the item answered first, so the event that its commit causes cannot cancel
the command on its way.

- :meth:`Handlers.run_tool` runs an IDE tool (``_tools.py``); a failure is the
  ``tool_result`` error, and a bug in the adapter too (logged), so a turn never
  waits on a handler that died.
- :meth:`Handlers.ask_permission` asks ``session/request_permission`` (the four
  standard options, the policy rule that asked as the call's first content) and
  turns the outcome into the ``approval``. "Always reject" is kept here
  (:attr:`Handlers.rejected_tools`): the runtime's ``remember`` only allows.
- :meth:`Handlers.ask_question` asks a question as a form (``elicitation/create``)
  when the client takes forms: its choices as a single select beside a text field,
  or one text field when it has none. Without forms (or when the form fails) its
  choices are permission options, and a question without choices is answered at
  once with :data:`NO_ANSWER` (its text was shown as a message).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import trio

from sessions import JSONObject

from ..chat._command import ToolFailure
from ._capabilities import (
    PERMISSION_OPTIONS,
    form_answer,
    permission_answer,
    question_answer,
    question_form,
    question_options,
)
from ._connection import ConnectionClosed, Peer
from ._fields import str_field
from ._jsonrpc import RpcError
from ._mapping import Translator, preview_content, text_content, tool_call
from ._tools import ToolRunner

log = logging.getLogger("agent_runtime.acp")

NO_ANSWER: Final = (
    "(no answer: the editor could not ask the user; the user may answer in their next message)"
)


@attrs.define(eq=False)
class Work:
    """One open item: its turn, the event that opened it, the scope of its handler."""

    turn_id: str | None
    event: JSONObject
    scope: trio.CancelScope | None = None
    answered: bool = False  # its command is being submitted: closing it must not cancel that


class Handlers:
    """The handlers of one session's open work.

    *submit* sends a command to the runtime (the bridge adds its id); *update*
    sends a ``session/update``.

    Cancellation: a cancelled handler sends no answer (its item closed: the runtime
    resolved it); a permission request is abandoned, a command killed.
    """

    def __init__(
        self,
        session_id: str,
        peer: Peer,
        tools: ToolRunner,
        translator: Translator,
        *,
        submit: Callable[[JSONObject], Awaitable[JSONObject]],
        update: Callable[[JSONObject], Awaitable[None]],
    ) -> None:
        self.session_id = session_id
        self.peer = peer
        self.tools = tools
        self.translator = translator
        self._submit = submit
        self.update = update
        self.rejected_tools: set[str] = set()

    def for_kind(self, kind: str) -> Callable[[Work], Awaitable[None]]:
        """The handler of items of *kind* (``call``, ``approval``, ``question``)."""
        return {"call": self.run_tool, "approval": self.ask_permission}.get(kind, self.ask_question)

    async def _answer(self, work: Work, command: JSONObject) -> None:
        work.answered = True
        await self._submit(command)

    async def run_tool(self, work: Work) -> None:
        event = work.event
        call_id, name, arguments = (
            str_field(event, "call_id"),
            str_field(event, "name"),
            event.get("arguments"),
        )

        async def update(fields: JSONObject) -> None:
            await self.update({"sessionUpdate": "tool_call_update", **fields})

        fields: JSONObject
        try:
            outcome = await self.tools.run(
                call_id, name, arguments if isinstance(arguments, dict) else {}, update
            )
        except ToolFailure as failure:
            fields = {"error": str(failure)}
        except ConnectionClosed:
            raise
        except Exception as error:  # a bug here must not leave the turn waiting
            log.exception("session %s: tool %s failed", self.session_id, name)
            fields = {"error": f"internal error in the ACP adapter: {error!r}"}
        else:
            if outcome.content is not None:
                self.translator.note_content(call_id, outcome.content)
            fields = {"result": outcome.result}
        await self._answer(work, {"type": "tool_result", "call_id": call_id, **fields})

    async def ask_permission(self, work: Work) -> None:
        event = work.event
        call_id, name, rule = (
            str_field(event, "call_id"),
            str_field(event, "name"),
            str_field(event, "rule"),
        )
        command: JSONObject = {"type": "approval", "call_id": call_id}
        if name in self.rejected_tools:
            feedback = f"{name} is always rejected in this session (the user's choice)"
            await self._answer(
                work, command | {"decision": "reject", "feedback": feedback, "by": "policy"}
            )
            return
        arguments = event.get("arguments")
        args = arguments if isinstance(arguments, dict) else {}
        request = tool_call(call_id, name, args, self.translator.cwd, "pending")
        cwd = self.translator.cwd
        request["content"] = [
            text_content(f"Approval needed: {rule}"),
            *preview_content(name, args, cwd),
        ]
        try:
            result = await self.peer.request(
                "session/request_permission",
                {
                    "sessionId": self.session_id,
                    "toolCall": request,
                    "options": list(PERMISSION_OPTIONS),
                },
            )
        except RpcError as error:
            feedback = f"the editor could not ask the user: {error.message}"
            await self._answer(
                work, command | {"decision": "reject", "feedback": feedback, "by": "policy"}
            )
            return
        answer = permission_answer(result)
        command["decision"] = answer.decision
        if answer.decision == "approve" and answer.always:
            command["remember"] = "session"
        elif answer.decision == "reject":
            if answer.always:
                self.rejected_tools.add(name)
            command["feedback"] = (
                "cancelled in the editor" if answer.cancelled else "rejected in the editor"
            )
        await self._answer(work, command)

    async def ask_question(self, work: Work) -> None:
        event = work.event
        question_id, text = str_field(event, "question_id"), str_field(event, "text")
        options = event.get("options")
        choices = [o for o in options if isinstance(o, str)] if isinstance(options, list) else []
        answer: str | None = None
        asked = False
        if self.tools.caps.elicitation_form:
            try:
                form = await self.peer.request(
                    "elicitation/create", question_form(self.session_id, text, choices)
                )
            except RpcError as error:
                # Asked as a client without forms would be: choices as a permission
                # request, no choices as "no answer".
                log.warning("session %s: the editor could not ask: %s", self.session_id, error)
            else:
                answer, asked = form_answer(form, choices), True
        if choices and not asked:
            request: JSONObject = {
                "toolCallId": question_id,
                "title": f"Question: {text}"[:200],
                "kind": "other",
                "status": "pending",
                "content": [text_content(text)],
            }
            try:
                result = await self.peer.request(
                    "session/request_permission",
                    {
                        "sessionId": self.session_id,
                        "toolCall": request,
                        "options": question_options(choices),
                    },
                )
            except RpcError:
                result = None
            answer = question_answer(result, choices)
        await self._answer(
            work, {"type": "answer", "question_id": question_id, "text": answer or NO_ANSWER}
        )
