"""Sequential latency of `GET /search` against a running server (loopback only).

Run: `python -m benchmarks.http_latency --url http://127.0.0.1:8000 --requests 300`
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from benchmarks.golden import EXAMPLE, GOLDEN

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    if urlsplit(args.url).hostname not in LOOPBACK:
        parser.error("only loopback addresses are allowed")
    questions = [q for q, _ in [EXAMPLE, *GOLDEN]]
    times: list[float] = []
    server_ms: list[float] = []
    with httpx.Client(base_url=args.url, timeout=30) as client:
        for question in questions:  # warm-up
            client.get("/search", params={"q": question, "k": args.k}).raise_for_status()
        for n in range(args.requests):
            started = time.perf_counter()
            response = client.get("/search", params={"q": questions[n % len(questions)], "k": args.k})
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            server_ms.append(response.json()["took_ms"])
    figures = {
        "requests": args.requests,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(percentile(times, 95), 2),
        "p99_ms": round(percentile(times, 99), 2),
        "server_p50_ms": round(statistics.median(server_ms), 2),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
