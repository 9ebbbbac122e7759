"""Reconnecting in a real terminal: the banner lines, and the approval asked again.

The server and the client are real subprocesses (as in ``test_pty``); between
them runs a TCP proxy in this process (threads: pexpect is blocking) that the
test cuts while the client shows an approval prompt.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from pathlib import Path

import pexpect
import pytest

from tests.chat.test_pty import TIMEOUT, TOKEN, child_env
from tests.chat.test_pty import server_url as server_url  # the fixture, shared

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals need POSIX"),
]


class ThreadedProxy:
    """Forwards 127.0.0.1:<port> to *target*; :meth:`drop_all` cuts every connection."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("http://").rpartition(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for side in (source, sink):
                with contextlib.suppress(OSError):
                    side.shutdown(socket.SHUT_RDWR)

    def drop_all(self) -> None:
        with self.lock:
            cut, self.open = self.open, []
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.drop_all()


def test_a_dropped_connection_is_announced_and_the_approval_asked_again(
    server_url: str, tmp_path: Path
) -> None:
    proxy = ThreadedProxy(server_url)
    chat = pexpect.spawn(
        sys.executable,
        [
            *("-m", "server", "chat", "--url", proxy.url, "--token", TOKEN),
            *("--workspace", str(tmp_path), "--agent", "coder"),
        ],
        cwd=str(tmp_path),
        env=child_env(),
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(40, 200),
    )
    try:
        chat.expect_exact("you>")
        chat.sendline("create a.txt with hello")
        chat.expect_exact("? approval needed: write_file a.txt")
        chat.expect_exact("[a]pprove")
        proxy.drop_all()  # the network fails while the human is being asked
        chat.expect_exact("reconnecting")
        chat.expect(r"reconnected, resumed after seq \d+")
        chat.expect_exact("still waiting for your answer")
        chat.expect_exact("[a]pprove")  # asked again, after the catch-up
        chat.sendline("a")
        chat.expect_exact("= ok: created a.txt")
        chat.expect_exact("== turn completed")
        chat.expect_exact("you>")
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
        proxy.close()
    assert (tmp_path / "a.txt").read_text() == "hello"
