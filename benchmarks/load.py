"""A bounded load run: `concurrency` clients query a real server for `seconds` while a writer replaces an
article every few seconds over HTTP, so each write is a new generation the server must pick up under load.
Reports requests, errors, p50/p99 and QPS of the queries, and what the writes did."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from semsearch.benchmarks.latency import http_load
from semsearch.benchmarks.report import markdown_table, new_figure, save_figure

WRITER_ID = "load-run-writer"


def _writer(
    base: str, token: str, every: float, stop: threading.Event, out: dict[str, Any], new_ids: bool = False
) -> None:
    """PUT one article with a new closing paragraph every `every` seconds until `stop` (with `new_ids`, a new
    article each time: an index that grows)."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=120, headers=headers) as client:
        n = 0
        while not stop.wait(every):
            n += 1
            article_id = f"{WRITER_ID}-{n}" if new_ids else WRITER_ID
            article = {
                "id": article_id,
                "title": "Load run: a story that keeps changing",
                "body": "A developing story about grain freight across the Caspian Sea, updated as news arrives.\n\n"
                f"Update {n}: the ferry schedule changed again, now with {n} extra sailings a week from Aktau.",
            }
            started = time.perf_counter()
            try:
                response = client.put(f"/articles/{article_id}", json=article)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            out["write_ms"].append((time.perf_counter() - started) * 1000)
            out["writes"] += 1
            out["write_errors"] += 0 if ok else 1


def load_run(
    base: str, texts: Sequence[str], concurrency: int, seconds: float, token: str, every: float, new_ids: bool = False
) -> dict[str, Any]:
    """Queries at `concurrency` for `seconds` (it stops by itself), with a writer beside them when `every` > 0."""
    with httpx.Client(base_url=base, timeout=60) as client:
        before = client.get("/stats").json()["generation"]
    writes: dict[str, Any] = {"writes": 0, "write_errors": 0, "write_ms": []}
    stop = threading.Event()
    thread = threading.Thread(target=_writer, args=(base, token, every, stop, writes, new_ids), daemon=True)
    if every > 0:
        thread.start()
    try:
        queries = http_load(base, texts, concurrency, max_requests=10**9, max_seconds=seconds)
    finally:
        stop.set()
        if every > 0:
            thread.join(timeout=300)
    with httpx.Client(base_url=base, timeout=60) as client:
        stats = client.get("/stats").json()
        found = client.get("/articles/" + (f"{WRITER_ID}-{writes['writes']}" if new_ids else WRITER_ID))
    write_ms = sorted(writes.pop("write_ms"))
    return {
        **queries,
        **writes,
        "write_p50_ms": round(write_ms[len(write_ms) // 2], 1) if write_ms else None,
        "write_max_ms": round(write_ms[-1], 1) if write_ms else None,
        "generation_changed": int(stats["generation"] != before),
        "writer_article_served": int(found.status_code == 200 or writes["writes"] == 0),
        "reload_error": stats["reload_error"],
    }


def load_markdown(record: Mapping[str, Any]) -> str:
    r = record["load"]
    headers = ["clients", "seconds", "requests", "errors", "QPS", "p50 ms", "p99 ms", "writes", "write errors"]
    row = [
        record["concurrency"],
        r["seconds"],
        r["requests"],
        r["errors"],
        r["qps"],
        r["p50_ms"],
        r["p99_ms"],
        r["writes"],
        r["write_errors"],
    ]
    index = record["index"]
    return (
        f"A real `semsearch serve` on loopback over a copy of the index of {index['corpus']} "
        f"({index['passages']} passages): {record['concurrency']} clients send `GET /search` (k=10, "
        f"{record['query_count']} questions from {record['queries_from']}) for {record['seconds']} s, while a "
        f"writer replaces one article with `PUT /articles/{{id}}` every {record['write_every']} s (each write is "
        f"a new generation the server loads under load; write p50 {r['write_p50_ms']} ms).\n\n"
        + markdown_table(headers, [row])
    )


def load_plot(record: Mapping[str, Any], path: Path) -> None:
    r = record["load"]
    fig, ax = new_figure("Load run: query latency", "", "ms")
    ax.bar(["p50", "p95", "p99"], [r["p50_ms"], r["p95_ms"], r["p99_ms"]])
    save_figure(fig, path)
