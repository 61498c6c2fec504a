"""The planner's instrument: a fixed probe set from the bundled data, and how one candidate is timed on it.

The probe is SQuAD v1.1 dev (`semsearch.data.SQUAD_DEV`): passages taken at an even stride through its corpus,
so their lengths are the corpus's, and questions at an even stride through its queries. The planner and
`semsearch bench indexing` (which measures every plan for comparison) time candidates with these functions.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from semsearch.data import SQUAD_DEV
from semsearch.index.model.batching import batches_by_length
from semsearch.index.model.onnx_runtime import OnnxEncoder, TokenIds

Vectors = npt.NDArray[np.float32]
PROBE_PASSAGES = 32
PROBE_QUERIES = 16
MICRO_BATCH = 8  # queries in the micro-batch the query plans are timed on


@dataclass(frozen=True)
class Probe:
    """The texts every candidate is timed on."""

    passages: list[str]
    queries: list[str]
    source: str

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "passages": len(self.passages), "queries": len(self.queries)}


def probe_set(passages: int = PROBE_PASSAGES, queries: int = PROBE_QUERIES, folder: Path = SQUAD_DEV) -> Probe:
    """`passages` passages and `queries` questions of the BEIR folder, each at an even stride: the same texts on
    every machine."""

    def texts(name: str, count: int) -> list[str]:
        with (folder / name).open(encoding="utf-8") as handle:
            rows = [str(json.loads(line)["text"]) for line in handle if line.strip()]
        stride = max(1, len(rows) // max(1, count))
        return rows[::stride][:count]

    return Probe(texts("corpus.jsonl", passages), texts("queries.jsonl", queries), folder.name)


def time_batches(encoder: OnnxEncoder, ids: Sequence[TokenIds], rows: int, tokens: int) -> tuple[float, Vectors]:
    """Seconds the encoder's lanes spend on `ids` cut into batches of `rows` texts and `tokens` padded tokens,
    and the vectors. The lanes' busy time is summed and divided by their number: a steady build's cost per
    probe, without the idle tail of a probe that does not split evenly across lanes."""
    lengths = [len(row) for row in ids]
    batches = batches_by_length(lengths, rows, tokens)
    out = np.empty((len(ids), encoder.dimension), dtype=np.float32)
    started: dict[int, float] = {}
    busy = 0.0

    def source() -> Iterator[tuple[int, list[TokenIds]]]:
        for n, batch in enumerate(batches):
            started[n] = time.perf_counter()  # read by the lane that takes the batch, under the encoder's lock
            yield n, [ids[i] for i in batch]

    def done(n: int, vectors: Vectors) -> None:
        nonlocal busy
        busy += time.perf_counter() - started[n]
        out[batches[n]] = vectors

    encoder.encode_batches(source(), done)
    return busy / encoder.lanes, out


def time_queries(encoder: OnnxEncoder, queries: Sequence[TokenIds]) -> list[float]:
    """Milliseconds of each query encoded alone, as a search encodes it."""
    times = []
    for query in queries:
        started = time.perf_counter()
        encoder.encode_ids([query])
        times.append((time.perf_counter() - started) * 1000)
    return times


def time_micro_batch(encoder: OnnxEncoder, queries: Sequence[TokenIds], repeats: int) -> list[float]:
    """Milliseconds of `repeats` encodings of `queries` as one micro-batch."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode_ids(list(queries))
        times.append((time.perf_counter() - started) * 1000)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))
