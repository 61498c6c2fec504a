"""A loaded generation: vectors, BM25 and metadata, answering lookups by stable passage id.

Passage ids are stable across generations (deletes and updates never renumber), so arrays indexed by
id have holes where passages were removed; nothing ever returns a hole.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np
import numpy.typing as npt

from semsearch.errors import CorruptIndexError
from semsearch.index.reading.articles import Article, Passage, StoredPassage
from semsearch.index.reading.dates import timestamp
from semsearch.index.reading.folding import fold, normalize_id
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
from semsearch.index.storage.topk import top_positions
from semsearch.index.storage.vectors import VectorIndexInfo, configure, is_exact

__all__ = ["DATA_FILES", "LEXICAL_FILES", "PassageRow", "StoredIndex", "open_index"]
# A filtered search on an approximate index scores the allowed passages exactly up to this many.
EXACT_FILTER_LIMIT = 50_000
_OPEN_ATTEMPTS = 3


@dataclass(frozen=True)
class ArticleFacts:
    """What ranking and facets read of every article, by article row."""

    times: npt.NDArray[np.float64]
    months: list[str | None]
    sources: list[str | None]
    first_passage: npt.NDArray[np.int64]  # the article's lowest passage id (-1: none)


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
        self._source_spellings: dict[str, list[str]] | None = None
        self._article_facts: ArticleFacts | None = None
        self._facts_lock = threading.Lock()
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
        # OMP_NUM_THREADS and spin beside the encoder, which slows every search down.
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

    def passages_with(self, terms: Sequence[str]) -> npt.NDArray[np.bool_]:
        """A mask over passage ids: the passages whose BM25 document (with its title when the index was built
        with `lexical_title`) holds every one of `terms`; no terms select every passage."""
        rows = np.ones(self.lexical.size, dtype=np.bool_)
        for term in dict.fromkeys(terms):
            rows &= self.lexical.rows_with(term)
        mask = np.zeros(self.id_space, dtype=np.bool_)
        mask[self.row_ids[rows]] = True
        return mask

    def passages_without(self, terms: Sequence[str]) -> npt.NDArray[np.bool_]:
        """A mask over passage ids: the stored passages whose BM25 document holds none of `terms` (an exclusion's
        pre-filter); no terms select every stored passage."""
        mask = np.zeros(self.id_space, dtype=np.bool_)
        mask[self.row_ids[~self.lexical.rows_with_any(terms)]] = True
        return mask

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

        Dates compare on their ISO day (an article without a date fails any date condition); the source
        compares folded (`folding.fold`: Unicode case folding and NFKC, so "радио" matches "Радио"); the
        article id as `article` looks it up.
        """
        mask = np.zeros(self.id_space, dtype=np.bool_)
        conditions: list[str] = []
        values: list[str] = []
        for sql, value in (("substr(a.date, 1, 10) >= ?", date_from), ("substr(a.date, 1, 10) <= ?", date_to)):
            if value is not None:
                conditions.append(sql)
                values.append(value)
        if source is not None:
            spellings = self._sources().get(fold(source.strip()), [])
            if not spellings:
                return mask
            conditions.append(f"a.source IN ({','.join('?' * len(spellings))})")
            values.extend(spellings)
        sql = "SELECT p.id FROM passages p JOIN articles a ON a.id = p.article_id"
        with self._lock:
            if article_id is not None:
                conditions.append("a.id = ?")
                values.append(self._stored_id(article_id))
            if conditions:
                sql += " WHERE " + " AND ".join(conditions)
            ids = np.fromiter((row[0] for row in self._con.execute(sql, values)), dtype=np.int64)
        mask[ids] = True
        return mask

    def article_facts(self) -> ArticleFacts:
        """Each article's date (as Unix seconds, NaN when undated), month and source, by article row (the rows
        of `article_vectors`); read once (a generation never changes)."""
        facts = self._article_facts
        if facts is not None:
            return facts
        with self._facts_lock:  # built once; `_lock` is held only for the SQL, so passage reads go on meanwhile
            if self._article_facts is None:
                with self._lock:
                    rows = self._con.execute("SELECT date, source FROM articles ORDER BY rowid").fetchall()
                times = np.array([timestamp(d) if d else None for d, _ in rows], dtype=np.float64)  # None is NaN
                months = [d[:7] if d and len(d) >= 7 else None for d, _ in rows]
                first = np.full(len(rows), -1, dtype=np.int64)
                held = np.flatnonzero(self.passage_articles >= 0)
                owners, at = np.unique(self.passage_articles[held], return_index=True)
                first[owners] = held[at]
                self._article_facts = ArticleFacts(times, months, [s for _, s in rows], first)
            return self._article_facts

    def _sources(self) -> dict[str, list[str]]:
        """Each folded source and the spellings stored for it; read once (a generation never changes)."""
        if self._source_spellings is None:
            with self._lock:
                rows = self._con.execute("SELECT DISTINCT source FROM articles WHERE source IS NOT NULL").fetchall()
            spellings: dict[str, list[str]] = {}
            for (raw,) in rows:
                spellings.setdefault(fold(raw.strip()), []).append(raw)
            self._source_spellings = spellings
        return self._source_spellings

    def _stored_id(self, article_id: str) -> str:
        """The id as stored: ids are NFC since ingest normalises them, but an index written before keeps its own."""
        normal = normalize_id(article_id)
        if normal == article_id:
            return article_id
        found = self._con.execute("SELECT 1 FROM articles WHERE id = ?", (article_id,)).fetchone()
        return article_id if found else normal

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
        """An article's fields and its passages in order, or None. The id is NFC-normalised as at ingest."""
        with self._lock:
            article_id = self._stored_id(article_id)
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
    for n, row in enumerate(scores):
        top = top_positions(row, k)  # `ids` ascend, so ties go to the lower passage id at any k
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
        if verify and _read(path, root, file_sha256) != manifest.files.get(name):
            raise CorruptIndexError(
                f"The index file {path} does not match its checksum (truncated or corrupt); "
                f"rebuild with {build_command_hint(root)}"
            )
    vectors = _read(generation / VECTORS, root, lambda path: faiss.read_index(str(path)))
    article_vectors = _read(generation / ARTICLE_VECTORS, root, lambda path: np.load(path, allow_pickle=False))
    passage_articles = _read(generation / PASSAGE_ARTICLES, root, lambda path: np.load(path, allow_pickle=False))
    lexical = _read(generation / LEXICAL_DIR, root, LexicalIndex.load)
    con = _read(generation / METADATA, root, _connect)
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
    try:
        return StoredIndex(root, generation, manifest, vectors, con, article_vectors, passage_articles, lexical)
    except (sqlite3.Error, AttributeError, RuntimeError) as exc:  # tables that are not ours, a vector index of
        con.close()  # another kind: only a file that slipped past its checksum (or none) gets here
        raise CorruptIndexError(
            f"The index files in {generation} do not hold an index ({exc}); rebuild with {build_command_hint(root)}"
        ) from None


T = TypeVar("T")


def _read(path: Path, root: Path, load: Callable[[Path], T]) -> T:
    """`load(path)`, with any failure to read or parse it (a damaged file can raise almost anything) as a
    CorruptIndexError naming the file."""
    try:
        return load(path)
    except PermissionError as exc:
        raise CorruptIndexError(
            f"Cannot read the index file {path} ({exc.strerror}); let this user read it, or rebuild with "
            f"{build_command_hint(root)}"
        ) from None
    except Exception as exc:
        raise CorruptIndexError(
            f"The index file {path} cannot be read ({type(exc).__name__}: {exc}); it is damaged: rebuild with "
            f"{build_command_hint(root)}"
        ) from None


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to the metadata, checked to be a database (SQLite reads nothing until asked)."""
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    try:
        con.execute("SELECT id FROM articles LIMIT 1").fetchone()
        con.execute("SELECT id FROM passages LIMIT 1").fetchone()
    except BaseException:
        con.close()
        raise
    return con
