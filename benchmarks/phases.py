"""Where embedding time goes, phase by phase, on the machine that runs `semsearch bench indexing`.

A sample of the build's passages runs through the plan's batches on one lane's session, with each phase timed
apart: tokenising, padding (the model's inputs), the transformer (onnxruntime), mean pooling. A second pass with
onnxruntime's profiler splits the transformer's time by operator type. Times are per passage on one lane; the
lanes of a build run side by side.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.index.model.batching import batches_by_length
from semsearch.index.model.embedder import Embedder, OnnxEmbedder
from semsearch.index.model.onnx_runtime import OnnxEncoder, TokenIds, mean_pool
from semsearch.settings import Settings

SAMPLE = 256
PROFILED = 64  # passages of the profiled pass: the profile holds an event per operator per call
TOP_OPERATORS = 8


def measure_phases(settings: Settings, texts: list[str], sample: int = SAMPLE) -> dict[str, Any]:
    embedder = Embedder.load(settings)
    if not isinstance(embedder, OnnxEmbedder) or embedder.plan is None:
        return {"backend": embedder.info.backend, "note": "phases are measured for the ONNX backends only"}
    plan, encoder = embedder.plan, embedder.encoder
    texts = texts[:: max(1, len(texts) // sample)][:sample]
    started = time.perf_counter()
    ids = encoder.tokenize(texts)
    tokenise = time.perf_counter() - started
    session = encoder._session(plan.lane_threads)
    batches = [[ids[n] for n in rows] for rows in batches_by_length([len(i) for i in ids], plan.rows, plan.tokens)]
    _timed_pass(session, encoder, batches[:1])  # warm-up
    pad, model, pool = _timed_pass(session, encoder, batches)
    per = 1000 / len(texts)
    return {
        "plan": plan.name,
        "passages": len(texts),
        "tokens_per_passage": round(float(np.mean([len(i) for i in ids])), 1),
        "padding_share": round(1 - sum(len(i) for i in ids) / sum(len(b) * max(map(len, b)) for b in batches), 4),
        "lane_threads": plan.lane_threads,
        "ms_per_passage": {
            "tokenise": round(tokenise * per, 3),
            "pad": round(pad * per, 3),
            "transformer": round(model * per, 3),
            "pool": round(pool * per, 3),
        },
        "operators": _operators(encoder, plan.lane_threads, batches, PROFILED, model * per),
    }


def _timed_pass(session: Any, encoder: OnnxEncoder, batches: list[list[TokenIds]]) -> tuple[float, float, float]:
    """Seconds spent making inputs, running the model and pooling, over `batches` one after the other."""
    pad = model = pool = 0.0
    for batch in batches:
        t0 = time.perf_counter()
        feeds = encoder.feeds(batch)
        t1 = time.perf_counter()
        hidden = session.run(None, feeds)[0]
        t2 = time.perf_counter()
        mean_pool(hidden, feeds["attention_mask"])
        t3 = time.perf_counter()
        pad, model, pool = pad + t1 - t0, model + t2 - t1, pool + t3 - t2
    return pad, model, pool


def _operators(
    encoder: OnnxEncoder, threads: int, batches: list[list[TokenIds]], passages: int, model_ms: float
) -> list[dict[str, Any]]:
    """The transformer's kernel time by operator type (onnxruntime's profiler), as shares and as ms per passage
    of the unprofiled pass, largest first; the rest summed as `other`."""
    import onnxruntime as ort

    step = max(1, sum(map(len, batches)) // passages)  # batches spread over the sample, about `passages` texts
    chosen = batches[::step]
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(encoder.onnx_file), options, providers=["CPUExecutionProvider"])
        for batch in chosen:
            session.run(None, encoder.feeds(batch))
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            totals[str(event.get("args", {}).get("op_name", "?"))] += float(event.get("dur", 0))
    whole = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    top = ranked[:TOP_OPERATORS]
    rest = sum(v for _, v in ranked[TOP_OPERATORS:])
    rows = [*top, *([("other", rest)] if rest else [])]
    return [
        {"op": op, "share": round(value / whole, 4), "ms_per_passage": round(model_ms * value / whole, 3)}
        for op, value in rows
    ]
