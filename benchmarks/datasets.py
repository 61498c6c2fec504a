"""Labelled retrieval data in BEIR layout: corpus.jsonl, queries.jsonl and qrels.tsv."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from semsearch.errors import SemsearchError

BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels.tsv")


class DatasetError(SemsearchError):
    """A benchmark data set is missing or not in BEIR layout."""


@dataclass(frozen=True)
class Dataset:
    name: str
    corpus: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    digest: str

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "corpus": str(self.corpus),
            "queries": len(self.queries),
            "judged_pairs": sum(len(v) for v in self.qrels.values()),
            "sha256": self.digest,
        }


def load_beir(directory: Path) -> Dataset:
    """Read a BEIR folder; only queries with at least one positive judgement are kept."""
    missing = [name for name in BEIR_FILES if not (directory / name).is_file()]
    if missing:
        raise DatasetError(
            f"{directory} is not a BEIR data set: missing {', '.join(missing)} "
            "(expected corpus.jsonl with _id/title/text, queries.jsonl with _id/text, qrels.tsv)"
        )
    digest = hashlib.sha256()
    for name in BEIR_FILES:
        digest.update((directory / name).read_bytes())
    qrels = _read_qrels(directory / "qrels.tsv")
    queries: dict[str, str] = {}
    with (directory / "queries.jsonl").open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                query_id, text = str(record["_id"]), str(record["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(f"{directory / 'queries.jsonl'}:{lineno}: not a query record ({exc})") from None
            if query_id in qrels and text.strip():
                queries[query_id] = text
    if not queries:
        raise DatasetError(f"{directory}: no query has a positive judgement in qrels.tsv")
    return Dataset(directory.name, directory / "corpus.jsonl", queries, qrels, digest.hexdigest())


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise DatasetError(f"{path}: the first line must be the header 'query-id<TAB>corpus-id<TAB>score'")
        for lineno, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                query_id, doc_id, score = row[0], row[1], int(row[2])
            except (IndexError, ValueError):
                raise DatasetError(f"{path}:{lineno}: expected query-id, corpus-id and an integer score") from None
            if score > 0:
                qrels.setdefault(query_id, {})[doc_id] = score
    return qrels


def sample_queries(dataset: Dataset, count: int, seed: int) -> list[tuple[str, str]]:
    """`count` (query id, text) pairs drawn without replacement with `seed`; all of them when count is 0."""
    items = sorted(dataset.queries.items())
    if count <= 0 or count >= len(items):
        return items
    return sorted(random.Random(seed).sample(items, count))


def corpus_slice(dataset: Dataset, records: int, seed: int, directory: Path) -> Dataset:
    """A smaller data set: `records` corpus records drawn with `seed`, and the queries judged only on them."""
    lines = [line for line in dataset.corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = sorted(random.Random(seed).sample(range(len(lines)), min(records, len(lines))))
    chosen = [lines[i] for i in kept]
    ids = {str(json.loads(line)["_id"]) for line in chosen}
    directory.mkdir(parents=True, exist_ok=True)
    corpus = directory / "corpus.jsonl"
    corpus.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    qrels = {q: docs for q, docs in dataset.qrels.items() if q in dataset.queries and set(docs) <= ids}
    queries = {q: dataset.queries[q] for q in qrels}
    digest = hashlib.sha256(f"{dataset.digest}:{records}:{seed}".encode()).hexdigest()
    return Dataset(f"{dataset.name}[{len(chosen)} records]", corpus, queries, qrels, digest)
