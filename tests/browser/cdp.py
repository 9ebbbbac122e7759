"""Headless Chromium driven over the DevTools protocol (CDP) with trio-websocket.

No WebDriver: :func:`launch` starts ``chromium --headless=new
--remote-debugging-port=0`` with a throw-away profile, reads the DevTools port from
the ``DevTools listening on ws://...`` line it prints on stderr, and connects to
its first page target. :class:`Page` then navigates, evaluates JavaScript (with
``awaitPromise``) to click, type and read the DOM, and captures screenshots.

The browser is another process, so waiting for the page is a bounded poll of an
observable condition (:meth:`Page.wait_for`), never a fixed sleep. Everything the
page logs as an error (an uncaught exception, a CSP violation, a failed request)
is collected in :attr:`Page.problems`, which the tests assert empty.

``AGENT_RUNTIME_TEST_CHROMIUM`` names the executable (default ``/usr/bin/chromium``);
without one the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.components import require_executable

CHROMIUM_ENV = "AGENT_RUNTIME_TEST_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: Bound of every wait on the browser (a cold Chromium start included).
WAIT = 15.0
POLL = 0.05
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


class JsError(AssertionError):
    """An exception thrown by evaluated JavaScript."""


def require_chromium() -> str:
    reason = f"no Chromium: set {CHROMIUM_ENV} or install chromium ({DEFAULT_CHROMIUM})"
    return str(require_executable(CHROMIUM_ENV, Path(DEFAULT_CHROMIUM), reason))


class Page:
    """One page target: commands by id, events into :attr:`problems` and :attr:`console`."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._next = 0
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.problems: list[str] = []
        self.console: list[str] = []

    async def _reader(self) -> None:
        while True:
            message: dict[str, Any] = json.loads(await self._ws.get_message())
            if "id" in message:
                channel = self._waiting.pop(message["id"], None)
                if channel is not None:
                    channel.send_nowait(message)
                continue
            self._event(message.get("method", ""), message.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.problems.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"{params['type']}: {args}")
            if params["type"] == "error":
                self.problems.append(f"console.error: {args}")
        elif method == "Log.entryAdded":
            entry = params["entry"]
            if entry["level"] == "error":
                self.problems.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}")

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        command_id = self._next
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[command_id] = send
        await self._ws.send_message(
            json.dumps({"id": command_id, "method": method, "params": params})
        )
        with trio.fail_after(WAIT):
            reply = await receive.receive()
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def eval(self, expression: str) -> Any:
        """The value of *expression* (awaited if it is a promise), as JSON."""
        result = await self.call(
            "Runtime.evaluate",
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
            userGesture=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise JsError(f"{expression!r}: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str = "") -> Any:
        """Poll *expression* until it is truthy (as JSON); its value. Fails after WAIT."""
        value: Any = None
        with trio.move_on_after(WAIT):
            while True:
                value = await self.eval(expression)
                if value:
                    return value
                await trio.sleep(POLL)
        raise AssertionError(
            f"timed out waiting for {what or expression} (last: {value!r});"
            f" page problems: {self.problems}; console: {self.console[-10:]}"
        )

    async def navigate(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
            f"{url} to load",
        )

    async def reload(self) -> None:
        await self.eval("window.__reloading = true")
        await self.call("Page.reload")
        await self.wait_for(
            "!window.__reloading && document.readyState === 'complete'", "the page to reload"
        )

    async def click(self, selector: str) -> None:
        """Click the first element matching *selector* (waits for it, visible and enabled)."""
        sel = json.dumps(selector)
        await self.wait_for(
            f"(() => {{ const e = document.querySelector({sel});"
            " return !!e && !e.disabled && e.offsetParent !== null; })()",
            f"{selector} to be clickable",
        )
        await self.eval(f"document.querySelector({sel}).click()")

    async def fill(self, selector: str, text: str) -> None:
        sel = json.dumps(selector)
        await self.wait_for(f"!!document.querySelector({sel})", selector)
        await self.eval(
            f"(() => {{ const e = document.querySelector({sel}); e.focus();"
            f" e.value = {json.dumps(text)};"
            " e.dispatchEvent(new Event('input', {bubbles: true})); })()"
        )

    async def text(self, selector: str) -> str:
        value = await self.eval(
            f"document.querySelector({json.dumps(selector)})?.textContent ?? ''"
        )
        assert isinstance(value, str)
        return value

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        result = await self.call(
            "Page.captureScreenshot", format="png", captureBeyondViewport=False
        )
        path = ARTIFACTS / f"{name}.png"
        path.write_bytes(base64.b64decode(result["data"]))
        return path


@asynccontextmanager
async def launch(
    *, width: int = 1280, height: int = 900, dark: bool = False
) -> AsyncIterator[Page]:
    """A headless Chromium with one page (viewport *width* by *height*)."""
    executable = require_chromium()
    # Chromium's helper processes may still write to the profile as the browser exits.
    with tempfile.TemporaryDirectory(
        prefix="agent-runtime-chromium-", ignore_cleanup_errors=True
    ) as profile:
        args = [
            executable,
            "--headless=new",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--no-sandbox",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        process = await trio.lowlevel.open_process(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            async with trio.open_nursery() as nursery:
                found: list[str] = []
                listening = trio.Event()

                async def drain() -> None:
                    # Read stderr to its end, so Chromium never blocks on a full pipe.
                    assert process.stderr is not None
                    buffer = b""
                    async for chunk in process.stderr:
                        if not listening.is_set():
                            buffer += chunk
                            match = _LISTENING.search(buffer)
                            if match:
                                found.append(match.group(1).decode())
                                listening.set()

                nursery.start_soon(drain)
                with trio.fail_after(WAIT):
                    await listening.wait()
                port = httpx.URL(found[0]).port
                async with httpx.AsyncClient(timeout=WAIT) as http:
                    with trio.fail_after(WAIT):
                        while True:
                            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                            pages = [t for t in targets if t["type"] == "page"]
                            if pages:
                                break
                            await trio.sleep(POLL)
                url = pages[0]["webSocketDebuggerUrl"]
                async with open_websocket_url(url, max_message_size=64 * 2**20) as ws:
                    page = Page(ws)
                    nursery.start_soon(page._reader)
                    for domain in ("Page", "Runtime", "Log"):
                        await page.call(f"{domain}.enable")
                    await page.call(
                        "Emulation.setDeviceMetricsOverride",
                        width=width,
                        height=height,
                        deviceScaleFactor=1,
                        mobile=False,
                    )
                    await page.call(
                        "Emulation.setEmulatedMedia",
                        features=[
                            {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}
                        ],
                    )
                    yield page
                    nursery.cancel_scope.cancel()
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(5):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
