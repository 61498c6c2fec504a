"""A lean load generator for `GET` requests: keep-alive HTTP/1.1 connections over asyncio streams (on uvloop
when it is installed), reading only the status line, Content-Length and the body.

The server under test shares the machine's cores with its clients: a general-purpose client (httpx) spends
so much of them that it measures itself as much as the server.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

TIMEOUT_SECONDS = 60.0


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


async def _response_status(reader: asyncio.StreamReader) -> int:
    """Read one whole response; its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked responses are not supported")
    if length is None:
        raise ValueError("a response without Content-Length")  # its end cannot be found: the connection is dropped
    await reader.readexactly(length)
    return status


async def _client(host: str, port: int, requests: Iterator[bytes], deadline: float, result: LoadResult) -> None:
    """One connection sending requests one after another until they run out or the deadline passes; a
    failed request is counted and the next one opens a fresh connection."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        for request in requests:
            if time.perf_counter() > deadline:
                return
            started = time.perf_counter()
            try:
                if reader is None or writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                status = await asyncio.wait_for(_response_status(reader), TIMEOUT_SECONDS)
                outcome = "ok" if status == 200 else f"HTTP {status}"
            except (
                OSError,
                ValueError,
                IndexError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                TimeoutError,
            ) as exc:
                outcome = type(exc).__name__
                if writer is not None:
                    writer.close()
                reader = writer = None
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            if outcome != "ok":
                result.failures[outcome] = result.failures.get(outcome, 0) + 1
    finally:
        if writer is not None:
            writer.close()


def search_requests(base: str, texts: Sequence[str], k: int) -> tuple[str, int, list[bytes]]:
    """Host, port and one ready `GET /search` request per text."""
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    return (
        host,
        port,
        [
            f"GET /search?{urlencode({'q': text, 'k': k})} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
            for text in texts
        ],
    )


def run_load(
    base: str, texts: Sequence[str], concurrency: int, max_requests: int, max_seconds: float, k: int
) -> LoadResult:
    """`GET /search` from `concurrency` connections, cycling through `texts`, until `max_requests` are sent
    or `max_seconds` pass."""
    host, port, ready = search_requests(base, texts, k)
    shared = itertools.islice(itertools.cycle(ready), max_requests)  # one stream: each request is sent once
    result = LoadResult()

    async def main() -> None:
        started = time.perf_counter()
        deadline = started + max_seconds
        await asyncio.gather(*(_client(host, port, shared, deadline, result) for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started

    _run(main)
    return result


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
