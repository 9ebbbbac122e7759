"""Crash-test child: append forever, print each committed seq, until SIGKILLed.

Usage: ``python _crash_appender.py DB SESSION_ID [poison]``. Several tasks
append concurrently (so batches hold several appends); after each commit, a task
prints ``<seq> <task> <n>`` and flushes, so every printed line is a promise the
parent checks after the kill. With ``poison`` one more task keeps appending an
event with a lone surrogate, which the database cannot store: it must fail alone
(printing ``refused``) inside batches whose other appends commit. Stops by
itself after a bounded number of appends.
"""

from __future__ import annotations

import sys

import trio

from sessions import Append, NewEvent, Session, Unstorable, open_sqlite_store

TASKS = 8
APPENDS_PER_TASK = 5_000


async def main(db: str, session_id: str, mode: str) -> None:
    async with open_sqlite_store(db) as store:
        session = Session(
            id=session_id,
            owner="crash",
            title="crash test",
            created_at=1.0,
            updated_at=1.0,
            current_agent="coder",
        )
        await store.append(Append(session_id=session_id, session=session))
        print("ready", flush=True)

        async def appender(task: int) -> None:
            for n in range(APPENDS_PER_TASK):
                event = NewEvent("text.delta", {"task": task, "n": n, "text": "x" * 200})
                result = await store.append(Append(session_id=session_id, events=(event,)))
                print(result.last_seq, task, n, flush=True)

        async def poisoner() -> None:
            for n in range(APPENDS_PER_TASK):
                event = NewEvent("text.delta", {"poison": n, "text": "lone \ud800 surrogate"})
                try:
                    await store.append(Append(session_id=session_id, events=(event,)))
                except Unstorable:
                    print("refused", flush=True)
                else:
                    raise AssertionError("a lone surrogate was stored")

        async with trio.open_nursery() as nursery:
            for task in range(TASKS):
                nursery.start_soon(appender, task)
            if mode == "poison":
                nursery.start_soon(poisoner)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
