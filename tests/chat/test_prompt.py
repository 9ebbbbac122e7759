"""The prompt_toolkit prompt inside trio (server.chat._prompt), with a fake line reader.

The reader runs where prompt_toolkit's ``prompt_async`` would (an asyncio loop in a
worker thread); it reports to the test through ``TrioToken.run_sync_soon`` (in
order, and before the thread's result reaches trio).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import trio
import trio.testing
from prompt_toolkit import PromptSession

from server.chat._prompt import PromptInput, PromptSettings

# A safety net only, so that a regression fails instead of hanging: nothing waits for it.
_NEVER = 30.0


class FakeReader:
    """Answers *answers[message]* at once; a message without an answer waits to be cancelled."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.log: list[str] = []
        self.started: dict[str, trio.Event] = {}
        self._token = trio.lowlevel.current_trio_token()

    def _note(self, entry: str) -> None:
        self.log.append(entry)
        message = entry.split(" ", 1)[1]
        self.started.setdefault(message, trio.Event()).set()

    async def __call__(self, session: PromptSession[str], message: str, draft: str) -> str:
        self._token.run_sync_soon(self._note, f"start {message}")
        try:
            if message in self.answers:
                return self.answers[message]
            await asyncio.wait_for(asyncio.get_running_loop().create_future(), _NEVER)
            return "never cancelled"
        finally:
            self._token.run_sync_soon(self.log.append, f"end {message}")

    async def wait_started(self, message: str) -> None:
        await self.started.setdefault(message, trio.Event()).wait()


def prompter(tmp_path: Path, reader: FakeReader) -> PromptInput:
    settings = PromptSettings(workspace=tmp_path, commands=("/quit",), agents=lambda: [])
    return PromptInput(settings, read=reader)


async def test_a_prompt_started_while_another_is_being_cancelled_waits_for_it(
    tmp_path: Path,
) -> None:
    reader = FakeReader({"approve? ": "yes"})
    prompts = prompter(tmp_path, reader)
    answers: list[str | None] = []
    chat_cancelled = trio.CancelScope()

    async def chat() -> None:
        with chat_cancelled:
            answers.append(await prompts.prompt("you> ", chat=True))

    async def approval() -> None:
        answers.append(await prompts.prompt("approve? ", chat=False))

    with trio.fail_after(_NEVER):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(chat)
            await reader.wait_started("you> ")
            nursery.start_soon(approval)
            await trio.testing.wait_all_tasks_blocked()
            assert prompts._one_at_a_time.statistics().tasks_waiting == 1  # not prompting yet
            chat_cancelled.cancel()  # the approval's arrival closes the chat prompt
    assert chat_cancelled.cancelled_caught
    assert answers == ["yes"]  # the approval prompt was not cancelled in the chat's place
    assert reader.log == ["start you> ", "end you> ", "start approve? ", "end approve? "]


async def test_each_prompt_can_be_cancelled_and_a_cancelled_wait_never_prompts(
    tmp_path: Path,
) -> None:
    reader = FakeReader({})
    prompts = prompter(tmp_path, reader)
    with trio.fail_after(_NEVER):
        async with trio.open_nursery() as nursery:
            first, second = trio.CancelScope(), trio.CancelScope()

            async def ask(scope: trio.CancelScope, message: str) -> None:
                with scope:
                    await prompts.prompt(message, chat=False)

            nursery.start_soon(ask, first, "one ")
            await reader.wait_started("one ")
            nursery.start_soon(ask, second, "two ")
            await trio.testing.wait_all_tasks_blocked()
            second.cancel()  # cancelled while waiting: it never prompts
            await trio.testing.wait_all_tasks_blocked()
            first.cancel()
    assert first.cancelled_caught and second.cancelled_caught
    assert reader.log == ["start one ", "end one "]
    reader.answers["three "] = "3"
    assert await prompts.prompt("three ", chat=True) == "3"  # nothing left held
