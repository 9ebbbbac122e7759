"""Crash-test child: append forever, print each committed seq, until SIGKILLed.

Usage: ``python _crash_appender.py DB SESSION_ID``. Several tasks append
concurrently (so batches hold several appends); after each commit, a task
prints ``<seq> <task> <n>`` and flushes, so every printed line is a promise the
parent checks after the kill. Stops by itself after a bounded number of appends.
"""

from __future__ import annotations

import sys

import trio

from sessions import Append, NewEvent, Session, open_sqlite_store

TASKS = 8
APPENDS_PER_TASK = 5_000


async def main(db: str, session_id: str) -> None:
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

        async with trio.open_nursery() as nursery:
            for task in range(TASKS):
                nursery.start_soon(appender, task)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
