"""txtai's hybrid search timed on the passages and questions given as JSON on stdin, answered as JSON on stdout.

Run by `semsearch bench latency --txtai-python PYTHON` with a Python that has txtai installed (it imports
nothing of semsearch, so that Python needs none of it): the same passages, questions, model folder, k and
threads as the engine's in-process search, so the two p50s compare side by side.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any


def main() -> None:
    job: dict[str, Any] = json.load(sys.stdin)
    import torch

    torch.set_num_threads(int(job["threads"]))
    from importlib import metadata

    from txtai import Embeddings

    embeddings = Embeddings(path=job["model"], hybrid=True, content=True)
    embeddings.index(list(job["passages"]))
    queries, k = list(job["queries"]), int(job["k"])
    for query in queries[:10]:  # warm-up
        embeddings.search(query, k)
    p50s = []
    for _ in range(int(job["runs"])):
        times = []
        for query in queries:
            started = time.perf_counter()
            embeddings.search(query, k)
            times.append((time.perf_counter() - started) * 1000)
        p50s.append(statistics.median(times))
    answer = {
        "what": "txtai Embeddings(path=model, hybrid=True, content=True).search(query, k), in its own process",
        "version": metadata.version("txtai"),
        "passages": len(job["passages"]),
        "p50_ms": round(statistics.median(p50s), 3),
        "p50_ms_spread": [round(min(p50s), 3), round(max(p50s), 3)],
        "runs": len(p50s),
    }
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
