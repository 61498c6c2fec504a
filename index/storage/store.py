"""A loaded generation: vectors, BM25 and metadata, answering lookups by stable passage id.

Passage ids are stable across generations (deletes and updates never renumber), so arrays indexed by
id have holes where passages were removed; nothing ever returns a hole.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from semsearch.errors import CorruptIndexError
from semsearch.index.reading.articles import Article, Passage, StoredPassage
from semsearch.index.storage.generations import (
    ARTICLE_VECTORS,
    DATA_FILES,
    LEXICAL_FILES,
    METADATA,
    PASSAGE_ARTICLES,
    VECTORS,
    build_command_hint,
    current_generation,
    current_name,
)
from semsearch.index.storage.lexical import LEXICAL_DIR, LexicalIndex
from semsearch.index.storage.manifest import MANIFEST, Manifest, check_format, file_sha256
from semsearch.index.storage.vectors import VectorIndexInfo, configure, is_exact

__all__ = ["DATA_FILES", "LEXICAL_FILES", "PassageRow", "StoredIndex", "open_index"]
# A filtered search on an approximate index scores the allowed passages exactly up to this many.
EXACT_FILTER_LIMIT = 50_000
_OPEN_ATTEMPTS = 3


@dataclass(frozen=True)
class PassageRow:
    """A passage with the fields of its article that a hit shows."""

    passage_id: int
    article_id: str
    ordinal: int
    start: int
    end: int
    text: str
    title: str
    date: str | None
    source: str | None
    url: str | None


class StoredIndex:
    """A loaded generation: vectors in memory, metadata through a read-only SQLite connection."""

    def __init__(
        self,
        root: Path,
        generation: Path,
        manifest: Manifest,
        vectors: Any,
        con: sqlite3.Connection,
        article_vectors: npt.NDArray[np.float32],
        passage_articles: npt.NDArray[np.int32],
        lexical: LexicalIndex,
    ):
        self.root = root
        self.generation = generation
        self.manifest = manifest
        self.vector_info = VectorIndexInfo.from_dict(manifest.vector_index)
        configure(vectors, self.vector_info)
        self._vectors = vectors
        self._con = con
        self.article_vectors = article_vectors
        self.passage_articles = passage_articles  # indexed by passage id; -1 in holes
        self.lexical = lexical
        self._lock = threading.Lock()
        # Lexical row r holds passage id row_ids[r]: generations store passages in ascending id order.
        self.row_ids = faiss.vector_to_array(vectors.id_map).astype(np.int64)
        self.article_ids = [row[0] for row in con.execute("SELECT id FROM articles ORDER BY rowid")]

    def article_id_of(self, passage_id: int) -> str:
        return str(self.article_ids[int(self.passage_articles[passage_id])])

    @property
    def size(self) -> int:
        """How many passages the generation holds."""
        return int(self._vectors.ntotal)

    @property
    def id_space(self) -> int:
        """One more than the largest passage id: the length of masks over ids."""
        return len(self.passage_articles)

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.generation.rglob("*") if f.is_file())

    def search(
        self, queries: npt.NDArray[np.float32], k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-k (scores, passage ids) per query row; ids are -1 where fewer than k exist.

        With `allowed` (a mask over passage ids) only those passages are searched, and exactly where
        that is affordable, so a selective filter still gets its full k.
        """
        k = min(k, max(1, self.size))
        # OpenMP's thread count is per thread: a server's worker thread would otherwise start with
        # OMP_NUM_THREADS and spin beside the encoder (a 0.6 ms search took 3 ms that way).
        faiss.omp_set_num_threads(1)
        if allowed is None:
            scores, ids = self._vectors.search(queries, k)
            return scores, ids
        if not is_exact(self.vector_info):
            chosen = np.flatnonzero(allowed)
            if len(chosen) <= EXACT_FILTER_LIMIT:
                return _exact_top_k(queries, self.vectors_of(chosen.tolist()), chosen, k)
        bits = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        if is_exact(self.vector_info):
            params = faiss.SearchParameters()
        else:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(k, self.vector_info.params.get("efSearch", k))
        params.sel = selector
        scores, ids = self._vectors.search(queries, k, params=params)
        return scores, ids

    def lexical_search(
        self, terms: Sequence[str], k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """BM25 top-k (scores, passage ids); `allowed` is a mask over passage ids."""
        scores, rows = self.lexical.search(terms, k, None if allowed is None else allowed[self.row_ids])
        return scores, self.row_ids[rows]

    def vectors_of(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """The stored vectors of these passages, one row each."""
        if not len(ids):
            return np.zeros((0, self.manifest.dimension), dtype=np.float32)
        return np.asarray(self._vectors.reconstruct_batch(np.asarray(ids, dtype=np.int64)), dtype=np.float32)

    def matching_passages(
        self,
        date_from: str | None = None,
        date_to: str | None = None,
        source: str | None = None,
        article_id: str | None = None,
    ) -> npt.NDArray[np.bool_]:
        """A mask over passage ids: passages whose article matches every given condition.

        Dates compare on their ISO day (an article without a date fails any date condition);
        the source compares without case.
        """
        given = [
            ("substr(a.date, 1, 10) >= ?", date_from),
            ("substr(a.date, 1, 10) <= ?", date_to),
            ("lower(a.source) = lower(?)", source),
            ("a.id = ?", article_id),
        ]
        conditions = [sql for sql, value in given if value is not None]
        values = [value for _, value in given if value is not None]
        sql = "SELECT p.id FROM passages p JOIN articles a ON a.id = p.article_id"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        with self._lock:
            ids = np.fromiter((row[0] for row in self._con.execute(sql, values)), dtype=np.int64)
        mask = np.zeros(self.id_space, dtype=np.bool_)
        mask[ids] = True
        return mask

    def stored_vectors(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(passage ids, their vectors) as held by the vector index, in ascending id order."""
        return self.row_ids, self.vectors_of(self.row_ids.tolist())

    def stored_articles(self) -> list[Article]:
        """Every article as it was indexed, in stored order."""
        with self._lock:
            rows = self._con.execute(
                "SELECT id, title, body, date, source, url, author, path, metadata FROM articles ORDER BY rowid"
            ).fetchall()
        return [
            Article(
                id=row[0],
                title=row[1],
                body=row[2],
                date=row[3],
                source=row[4],
                url=row[5],
                author=row[6],
                path=row[7],
                metadata=json.loads(row[8]),
            )
            for row in rows
        ]

    def stored_passages(self) -> list[StoredPassage]:
        """Every passage with its stable id and embedded-text hash, in ascending id order."""
        with self._lock:
            rows = self._con.execute(
                'SELECT id, article_id, ordinal, start, "end", text, embed_hash FROM passages ORDER BY id'
            ).fetchall()
        return [StoredPassage(row[0], Passage(*row[1:6]), row[6]) for row in rows]

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        sql = (
            'SELECT p.id, p.article_id, p.ordinal, p.start, p."end", p.text, a.title, a.date, a.source, a.url '
            f"FROM passages p JOIN articles a ON a.id = p.article_id WHERE p.id IN ({marks})"
        )
        with self._lock:
            rows = self._con.execute(sql, [int(i) for i in ids]).fetchall()
        return {row[0]: PassageRow(*row) for row in rows}

    def article(self, article_id: str) -> tuple[dict[str, Any], list[PassageRow]] | None:
        """An article's fields and its passages in order, or None."""
        with self._lock:
            cur = self._con.execute(
                "SELECT id, title, date, source, url, author, path, metadata, body FROM articles WHERE id = ?",
                (article_id,),
            )
            row = cur.fetchone()
            if row is None:
                return None
            names = [d[0] for d in cur.description]
            ids = [
                r[0]
                for r in self._con.execute(
                    "SELECT id FROM passages WHERE article_id = ? ORDER BY ordinal", (article_id,)
                )
            ]
        record = dict(zip(names, row, strict=True))
        record["metadata"] = json.loads(record["metadata"])
        rows = self.passages(ids)
        return record, [rows[i] for i in ids]

    def close(self) -> None:
        with self._lock:
            self._con.close()


def _exact_top_k(
    queries: npt.NDArray[np.float32], vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64], k: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Top-k by inner product over the given vectors, padded with (-inf, -1) like FAISS."""
    scores = queries @ vectors.T
    out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    take = min(k, len(ids))
    for n, row in enumerate(scores):
        top = np.argpartition(-row, take - 1)[:take] if take < len(row) else np.arange(len(row))
        top = top[np.lexsort((ids[top], -row[top]))]
        out_scores[n, : len(top)] = row[top]
        out_ids[n, : len(top)] = ids[top]
    return out_scores, out_ids


def open_index(root: Path, verify: bool = True) -> StoredIndex:
    """Load the current generation, checking its format and (with `verify`) its file checksums.

    A writer may switch generations and remove the old one while this reads; then it reads the new one.
    """
    for attempt in range(_OPEN_ATTEMPTS):
        generation = current_generation(root)
        try:
            return _open_generation(root, generation, verify)
        except CorruptIndexError:
            if attempt + 1 < _OPEN_ATTEMPTS and current_name(root) != generation.name:
                continue
            raise
    raise AssertionError("unreachable")


def _open_generation(root: Path, generation: Path, verify: bool) -> StoredIndex:
    manifest = Manifest.from_file(generation / MANIFEST)
    check_format(manifest, root)
    for name in sorted({*DATA_FILES, *manifest.files}):
        path = generation / name
        if not path.is_file():
            raise CorruptIndexError(f"The index file {path} is missing; rebuild with {build_command_hint(root)}")
        if verify and file_sha256(path) != manifest.files.get(name):
            raise CorruptIndexError(
                f"The index file {path} does not match its checksum (truncated or corrupt); "
                f"rebuild with {build_command_hint(root)}"
            )
    try:
        vectors = faiss.read_index(str(generation / VECTORS))
        article_vectors = np.load(generation / ARTICLE_VECTORS, allow_pickle=False)
        passage_articles = np.load(generation / PASSAGE_ARTICLES, allow_pickle=False)
        lexical = LexicalIndex.load(generation / LEXICAL_DIR)
        con = sqlite3.connect(f"file:{generation / METADATA}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    except (RuntimeError, ValueError, OSError, KeyError, sqlite3.Error) as exc:
        raise CorruptIndexError(f"Cannot read the index files in {generation}: {exc}") from None
    if (
        lexical.size != vectors.ntotal
        or article_vectors.shape[0] != manifest.counts["articles"]
        or vectors.ntotal != manifest.counts["passages"]
        or len(passage_articles) != manifest.next_passage_id
    ):
        con.close()
        raise CorruptIndexError(
            f"The index files in {generation} disagree in size; rebuild with {build_command_hint(root)}"
        )
    return StoredIndex(root, generation, manifest, vectors, con, article_vectors, passage_articles, lexical)
