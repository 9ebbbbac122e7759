"""Lock-test child: open the store, say so, and hold it until stdin closes.

Usage: ``python _hold_db.py DB``.
"""

from __future__ import annotations

import os
import sys

import trio
import trio.lowlevel

from sessions import open_sqlite_store


async def main(db: str) -> None:
    async with open_sqlite_store(db):
        print("holding", os.getpid(), flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        async with stdin:
            while await stdin.receive_some():
                pass


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
