"""B13 upstream HTTP: CPU per streamed model call through each HTTP path, 1 and 100 at once.

Run: ``python -m bench.b13_upstream_http [--workers 1,100] [--calls 20] [--runs 3]``.

Against ``bench.fake_llm --tokens 5`` (its own process), W concurrent workers
each make ``--calls`` streamed ``POST /v1/chat/completions`` one after the other
(a small body; the response read to its end and closed), after one warm-up call
per worker. The CPU of this process (``getrusage``: all of it is the client side)
is divided by the number of calls. Paths, run in turn within each run:

- ``httpx-client``: ``httpx.AsyncClient`` with its default transport
  (httpcore's connection pool), ``max_connections = max_keepalive = 100``: what
  the ``openai`` provider used before;
- ``httpx-transport``: the same default transport, called directly;
- ``keepalive``: :class:`agents._providers._http_pool.KeepAliveTransport` (an
  O(1) pool over httpcore connections and our trio network backend), called
  directly, as the provider does now.
"""

from __future__ import annotations

import argparse
import resource
from collections.abc import Awaitable, Callable
from importlib.metadata import version

import httpx
import trio

from agents._providers._http_pool import KeepAliveTransport

from ._common import median, open_child, parse_counts, print_header

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}
TIMEOUT = {"connect": 10.0, "read": None, "write": 10.0, "pool": None}
PATHS = ("httpx-client", "httpx-transport", "keepalive")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drain(response: httpx.Response) -> None:
    async for _ in response.aiter_raw():
        pass
    await response.aclose()


def _caller(
    path: str, url: str
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """One streamed call through *path*, and how to close what it opened."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    if path == "httpx-client":
        client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10, read=None, pool=None))

        async def through_client() -> None:
            request = client.build_request("POST", url, content=BODY, headers=HEADERS)
            await _drain(await client.send(request, stream=True))

        return through_client, client.aclose
    transport: httpx.AsyncBaseTransport
    if path == "httpx-transport":
        transport = httpx.AsyncHTTPTransport(limits=limits)
    else:
        transport = KeepAliveTransport(max_connections=100, max_keepalive=100)

    async def through_transport() -> None:
        request = httpx.Request(
            "POST", url, content=BODY, headers=HEADERS, extensions={"timeout": TIMEOUT}
        )
        await _drain(await transport.handle_async_request(request))

    return through_transport, transport.aclose


async def measure(path: str, url: str, workers: int, calls: int) -> float:
    """Microseconds of CPU per call."""
    call, close = _caller(path, url)

    async def worker() -> None:
        for _ in range(calls):
            await call()

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(call)  # warm-up: connections opened
        before = _cpu()
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(worker)
        return (_cpu() - before) / (workers * calls) * 1e6
    finally:
        await close()


async def main(counts: list[int], calls: int, runs: int) -> None:
    print_header("B13 upstream HTTP: CPU per streamed call", "bench.b13_upstream_http", runs)
    print(f"httpcore {version('httpcore')}, h11 {version('h11')}\n")
    results: dict[tuple[int, str], list[float]] = {}
    async with open_child("fake-llm", ["bench.fake_llm", "--tokens", "5"]) as fake:
        url = fake.url + "/chat/completions"
        for workers in counts:
            for run in range(runs):
                for path in PATHS:
                    value = await measure(path, url, workers, calls)
                    results.setdefault((workers, path), []).append(value)
                    print(f"W={workers} run {run + 1} {path}: {value:,.0f} us CPU per call")
    print("\n| concurrent calls | path | CPU µs per call (median) | runs | vs httpx-client |")
    print("|---:|---|---:|---|---:|")
    for workers in counts:
        base = median(results[(workers, "httpx-client")])
        for path in PATHS:
            values = results[(workers, path)]
            ratio = median(values) / base
            runs_text = " / ".join(f"{v:,.0f}" for v in values)
            print(f"| {workers} | {path} | {median(values):,.0f} | {runs_text} | {ratio:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=parse_counts, default=[1, 100])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    trio.run(main, options.workers, options.calls, options.runs)
