"""One segment of an index: a folder of passages that never changes once written.

A segment holds its passages' vectors (`vectors.npy`; with an HNSW graph beside them at or above the ANN
threshold), their BM25 postings, and their articles' metadata in its own SQLite file. Every article lives
wholly in one segment. A commit (`commits.py`) names the live segments and, for each, the article rows deleted
from it since it was written (tombstones): a segment itself is never edited, only written whole, read, and
removed once no commit and no reader needs it.

Readers hold a shared lock on the segment's marker file while it is open, so clean-up (which takes the lock
exclusively first) never removes a segment a reader in any process still uses.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex
from typing import Any, TypeVar

import faiss
import numpy as np
import numpy.typing as npt

from semsearch.errors import CorruptIndexError
from semsearch.index.reading.articles import Article, Passage, StoredPassage
from semsearch.index.reading.dates import timestamp
from semsearch.index.reading.folding import fold
from semsearch.index.storage.commits import SegmentRef
from semsearch.index.storage.folder import ENTRY_MARKER, is_marked, mark, remove_entry, write_errors
from semsearch.index.storage.manifest import file_sha256
from semsearch.index.storage.postings import Postings
from semsearch.index.storage.topk import top_positions
from semsearch.index.storage.vectors import VectorIndexInfo, build_vector_index, configure, is_exact

Vectors = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

SEGMENT_PREFIX = "seg-"
SEGMENT_MANIFEST = "segment.json"
VECTORS = "vectors.npy"
IDS = "ids.npy"
OWNERS = "owners.npy"
ARTICLE_VECTORS = "article_vectors.npy"
GRAPH = "hnsw.faiss"
METADATA = "meta.sqlite"
POSTINGS_DIR = "postings"
# A filtered search on an approximate segment scores the allowed passages exactly up to this many.
EXACT_FILTER_LIMIT = 50_000

_SCHEMA = """
CREATE TABLE articles (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, date TEXT, source TEXT, url TEXT, author TEXT,
    path TEXT, metadata TEXT NOT NULL, body TEXT NOT NULL, content_hash TEXT NOT NULL
);
CREATE TABLE passages (
    id INTEGER PRIMARY KEY, article_id TEXT NOT NULL REFERENCES articles(id),
    ordinal INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL,
    embed_hash TEXT NOT NULL, "row" INTEGER NOT NULL
);
CREATE INDEX passages_by_article ON passages(article_id, ordinal);
CREATE INDEX passages_by_hash ON passages(embed_hash);
"""


@dataclass(frozen=True)
class ArticleColumns:
    """What ranking, filters and facets read of a segment's articles, by local row."""

    times: npt.NDArray[np.float64]
    days: npt.NDArray[np.str_]
    months: npt.NDArray[np.object_]
    sources: npt.NDArray[np.object_]
    folded: npt.NDArray[np.object_]


@dataclass(frozen=True)
class SegmentInfo:
    """What `segment.json` records: the counts, the vector index chosen, and a checksum of every file."""

    passages: int
    articles: int
    dimension: int
    vector_index: dict[str, Any]
    created_at: str
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> SegmentInfo:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            info = cls(**data)
        except FileNotFoundError:
            raise CorruptIndexError(f"The index file {path} is missing") from None
        except (OSError, ValueError, TypeError) as exc:
            raise CorruptIndexError(f"The index file {path} is unreadable ({exc})") from None
        numbers = (info.passages, info.articles, info.dimension)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            raise CorruptIndexError(f"The index file {path} holds counts that are not numbers")
        if not isinstance(info.files, dict) or not isinstance(info.vector_index, dict):
            raise CorruptIndexError(f"The index file {path} is not a segment's record")
        return info


@dataclass
class Written:
    """A segment just written: its name, its record, and the checksum of that record (kept in the commit).
    Clean-up leaves it alone until `release` (after the commit naming it, or giving it up)."""

    name: str
    info: SegmentInfo
    checksum: str
    hold: int | None

    def ref(self) -> SegmentRef:
        """The segment as a commit names it, nothing deleted yet."""
        return SegmentRef(
            self.name,
            self.checksum,
            self.info.passages,
            self.info.articles,
            vector_index=self.info.vector_index,
        )

    def release(self) -> None:
        if self.hold is not None:
            os.close(self.hold)
            self.hold = None


def write_segment(
    root: Path,
    articles: Sequence[Article],
    passages: Sequence[StoredPassage],
    vectors: Vectors,
    postings: Postings,
    ann_threshold: int,
    threads: int = 1,
) -> Written:
    """Write a segment folder (fsynced, then renamed into place) holding these passages, one vector and one
    postings row each, in the order given; its articles are `articles`, each with at least its passages here."""
    if not len(passages) == vectors.shape[0] == postings.size:
        raise ValueError("one vector and one postings row per passage are required")
    rows = np.arange(len(passages), dtype=np.int64)
    vector_index, vector_info = build_vector_index(rows, vectors, ann_threshold, threads)
    article_row = {a.id: n for n, a in enumerate(articles)}
    owners = np.array([article_row[p.passage.article_id] for p in passages], dtype=np.int32)
    centroids = article_centroids(owners, vectors, len(articles))
    staging = root / f"tmp-{token_hex(6)}"
    name = _segment_name(root)
    made = False
    hold: int | None = None
    with write_errors(root):
        try:
            staging.mkdir()
            made = True
            hold = mark(staging, root_marker=False, hold=True)
            _write_metadata(staging / METADATA, articles, passages)
            np.save(staging / VECTORS, np.ascontiguousarray(vectors, dtype=np.float32))
            np.save(staging / IDS, np.array([p.id for p in passages], dtype=np.int64))
            np.save(staging / OWNERS, owners)
            np.save(staging / ARTICLE_VECTORS, centroids)
            if not is_exact(vector_info):
                with (staging / GRAPH).open("wb") as handle:  # through Python, so a refused write has its errno
                    faiss.write_index(vector_index, faiss.PyCallbackIOWriter(handle.write))  # type: ignore[attr-defined]
            (staging / POSTINGS_DIR).mkdir()
            postings.save(staging / POSTINGS_DIR)
            written = sorted(
                p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file() and p.name != ENTRY_MARKER
            )
            info = SegmentInfo(
                passages=len(passages),
                articles=len(articles),
                dimension=int(vectors.shape[1]),
                vector_index=vector_info.to_dict(),
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                files={n: file_sha256(staging / n) for n in written},
            )
            (staging / SEGMENT_MANIFEST).write_text(json.dumps(asdict(info), indent=2, sort_keys=True), "utf-8")
            for file in (*written, SEGMENT_MANIFEST, ENTRY_MARKER):
                fsync(staging / file)
            fsync(staging / POSTINGS_DIR)
            fsync(staging)
            staging.rename(root / name)
            fsync(root)
        except BaseException:
            if made:
                remove_entry(staging if staging.exists() else root / name)
            if hold is not None:
                os.close(hold)
            raise
    return Written(name, info, file_sha256(root / name / SEGMENT_MANIFEST), hold)


def article_centroids(owners: npt.NDArray[np.int32], vectors: Vectors, articles: int) -> Vectors:
    """Each article's normalised mean passage vector (its topic), by article row."""
    centroids = np.zeros((articles, vectors.shape[1]), dtype=np.float32)
    np.add.at(centroids, owners, vectors)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return np.asarray(centroids / np.maximum(norms, 1e-12), dtype=np.float32)


def _segment_name(root: Path) -> str:
    while True:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{SEGMENT_PREFIX}{stamp}-{token_hex(3)}"
        if not os.path.lexists(root / name):
            return name


def _write_metadata(path: Path, articles: Sequence[Article], passages: Sequence[StoredPassage]) -> None:
    con = sqlite3.connect(path)
    try:
        con.executescript(_SCHEMA)
        con.executemany(
            "INSERT INTO articles VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                (
                    a.id,
                    a.title,
                    a.date,
                    a.source,
                    a.url,
                    a.author,
                    a.path,
                    json.dumps(a.metadata, ensure_ascii=False, default=str),
                    a.body,
                    a.content_hash(),
                )
                for a in articles
            ),
        )
        con.executemany(
            "INSERT INTO passages VALUES (?,?,?,?,?,?,?,?)",
            (
                (
                    s.id,
                    s.passage.article_id,
                    s.passage.ordinal,
                    s.passage.start,
                    s.passage.end,
                    s.passage.text,
                    s.embed_hash,
                    row,
                )
                for row, s in enumerate(passages)
            ),
        )
        con.commit()
    finally:
        con.close()


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_if_unheld(folder: Path) -> bool:
    """Remove a marked segment (or leftover staging) folder unless a reader holds it; True when removed."""
    if not is_marked(folder, root_marker=False):
        return False
    try:
        handle = (folder / ENTRY_MARKER).open("rb")
    except OSError:
        return False
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        remove_entry(folder)
        return True
    finally:
        handle.close()


T = TypeVar("T")


def read_file(path: Path, load: Callable[[Path], T]) -> T:
    """`load(path)`, with any failure to read or parse it (a damaged file can raise almost anything) as a
    CorruptIndexError naming the file."""
    try:
        return load(path)
    except PermissionError as exc:
        raise CorruptIndexError(f"Cannot read the index file {path} ({exc.strerror}); let this user read it") from None
    except CorruptIndexError:
        raise
    except Exception as exc:
        raise CorruptIndexError(f"The index file {path} cannot be read ({type(exc).__name__}: {exc})") from None


class Segment:
    """A loaded segment. `full` loads what searching needs (postings, the graph, vectors in memory); without
    it only the metadata and the vectors (mapped, read on demand) are opened, which is all a write needs."""

    def __init__(self, root: Path, name: str, checksum: str | None, verify: bool, full: bool) -> None:
        self.name = name
        self.checksum = checksum
        self.folder = root / name
        self.full = full
        if not name.startswith(SEGMENT_PREFIX) or "/" in name or not self.folder.is_dir():
            raise CorruptIndexError(f"The segment {self.folder} named by the commit does not exist")
        self._hold = self._lock_shared()
        self._con: sqlite3.Connection | None = None
        try:
            self._load(checksum, verify)
        except BaseException:
            self._release()
            raise
        self._lock = threading.Lock()
        self._columns: ArticleColumns | None = None
        self._users = 1
        self._users_lock = threading.Lock()

    def _lock_shared(self) -> weakref.finalize[[int], Segment]:
        """Lock the marker shared until released, or until this object is collected (a reader that was never
        closed still lets clean-up go on once it is gone)."""
        try:
            fd = os.open(self.folder / ENTRY_MARKER, os.O_RDONLY)
        except OSError as exc:
            raise CorruptIndexError(f"The segment {self.folder} cannot be opened ({exc})") from None
        fcntl.flock(fd, fcntl.LOCK_SH)
        return weakref.finalize(self, os.close, fd)

    def _load(self, checksum: str | None, verify: bool) -> None:
        record = self.folder / SEGMENT_MANIFEST
        if verify and checksum is not None and read_file(record, file_sha256) != checksum:
            raise CorruptIndexError(f"The index file {record} does not match the commit's checksum")
        self.info = SegmentInfo.from_file(record)
        if verify:
            for name, digest in sorted(self.info.files.items()):
                path = self.folder / name
                if not path.is_file():
                    raise CorruptIndexError(f"The index file {path} is missing")
                if read_file(path, file_sha256) != digest:
                    raise CorruptIndexError(f"The index file {path} does not match its checksum (truncated or corrupt)")
        self.vector_info = VectorIndexInfo.from_dict(self.info.vector_index)
        self.ids: npt.NDArray[np.int64] = self._npy(IDS)
        self.owners: npt.NDArray[np.int32] = self._npy(OWNERS)
        approximate = not is_exact(self.vector_info)
        self._graph: Any = None
        if self.full and approximate:
            self._graph = read_file(self.folder / GRAPH, lambda p: faiss.read_index(str(p)))
            configure(self._graph, self.vector_info)
        # An HNSW graph holds its own copy of the vectors; the file is then only mapped, for writes and merges.
        self._vectors: Vectors = self._npy(VECTORS, mapped=approximate or not self.full)
        self.postings: Postings | None = read_file(self.folder / POSTINGS_DIR, Postings.load) if self.full else None
        self._con = read_file(self.folder / METADATA, _connect)
        listed = self._con.execute("SELECT id FROM articles ORDER BY rowid") if self.full else ()
        self.article_ids: list[str] = [r[0] for r in listed]
        rows = self.info.passages
        shapes_agree = (
            len(self.ids) == len(self.owners) == self._vectors.shape[0] == rows
            and (not self.full or len(self.article_ids) == self.info.articles)
            and (self.postings is None or self.postings.size == rows)
            and (self._graph is None or self._graph.ntotal == rows)
            and (not rows or int(self.owners.min()) >= 0 and int(self.owners.max()) < self.info.articles)
        )
        if not shapes_agree:
            raise CorruptIndexError(f"The files of the segment {self.folder} disagree in size")

    def _npy(self, name: str, mapped: bool = False) -> Any:
        return read_file(
            self.folder / name, lambda p: np.load(p, allow_pickle=False, mmap_mode="r" if mapped else None)
        )

    @property
    def rows(self) -> int:
        return len(self.ids)

    def graph_bytes(self) -> int:
        """Memory the HNSW graph's links take (its vectors aside); 0 without a graph."""
        if self._graph is None:
            return 0
        hnsw: Any = faiss.downcast_index(self._graph.index).hnsw  # type: ignore[attr-defined]
        return int(faiss.vector_to_array(hnsw.neighbors).nbytes + faiss.vector_to_array(hnsw.offsets).nbytes)

    @property
    def approximate(self) -> bool:
        """Whether searches go through an HNSW graph (loaded only when `full`)."""
        return self._graph is not None

    def acquire(self) -> Segment:
        with self._users_lock:
            if self._users == 0:
                raise RuntimeError(f"segment {self.name} is closed")
            self._users += 1
        return self

    def release(self) -> None:
        with self._users_lock:
            self._users -= 1
            last = self._users == 0
        if last:
            with self._lock:
                self._release()

    def _release(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        self._hold()

    def sql(self, query: str, values: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._con is None:
                raise RuntimeError(f"segment {self.name} is closed")
            return self._con.execute(query, list(values)).fetchall()

    def read_article_vectors(self) -> Vectors:
        """Each article's mean vector, by local row, read from disk: a loaded commit keeps one copy of every live
        article's (`StoredIndex.article_vectors`), and a segment keeps none of its own."""
        vectors: Vectors = self._npy(ARTICLE_VECTORS)
        if vectors.shape != (self.info.articles, self.info.dimension):
            raise CorruptIndexError(
                f"The index file {self.folder / ARTICLE_VECTORS} does not hold one vector per article"
            )
        return vectors

    def article_columns(self) -> ArticleColumns:
        """Each article's date (Unix seconds, NaN when undated), day, month and source, by local row; read once
        (a segment never changes), so a new commit only reads its new segments'."""
        if self._columns is None:
            rows = self.sql("SELECT date, source FROM articles ORDER BY rowid")
            dates = [r[0] for r in rows]
            sources = [r[1] for r in rows]
            self._columns = ArticleColumns(
                times=np.array([timestamp(d) if d else None for d in dates], dtype=np.float64),  # None is NaN
                days=np.array([d[:10] if d else "" for d in dates], dtype=np.str_),
                months=np.array([d[:7] if d and len(d) >= 7 else None for d in dates], dtype=object),
                sources=np.array(sources, dtype=object),
                folded=np.array([fold(x.strip()) if x is not None else None for x in sources], dtype=object),
            )
        return self._columns

    def vectors_at(self, rows: npt.NDArray[np.int64]) -> Vectors:
        if self._graph is not None:
            return np.asarray(self._graph.reconstruct_batch(rows), dtype=np.float32)
        return np.asarray(self._vectors[rows], dtype=np.float32)

    def search(self, queries: Vectors, k: int, mask: Mask | None) -> tuple[Vectors, npt.NDArray[np.int64]]:
        """The top k (scores, passage ids) per query among rows in `mask` (None: all), padded with (-inf, -1).
        Exact scores keep every row tied with the k-th, so merging segments by (score, id) is exact."""
        chosen = None if mask is None else np.flatnonzero(mask)
        if self._graph is None or (chosen is not None and len(chosen) <= EXACT_FILTER_LIMIT):
            vectors = self._vectors if chosen is None else self.vectors_at(chosen)
            rows = np.arange(self.rows) if chosen is None else chosen
            return _exact(queries, vectors, self.ids[rows], k)
        faiss.omp_set_num_threads(1)
        k = min(k, self.rows)
        if chosen is None:
            scores, found = self._graph.search(queries, k)
        else:
            assert mask is not None
            bits = np.packbits(mask, bitorder="little")
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(k, self.vector_info.params.get("efSearch", k))
            params.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
            scores, found = self._graph.search(queries, k, params=params)
        ids = np.where(found >= 0, self.ids[np.maximum(found, 0)], -1)
        return scores, ids


def _exact(
    queries: Vectors, vectors: Vectors, ids: npt.NDArray[np.int64], k: int
) -> tuple[Vectors, npt.NDArray[np.int64]]:
    """Top-k by inner product over `vectors` (held under `ids`), with every row tied at the cut kept."""
    if not len(ids):
        return np.full((len(queries), 0), -np.inf, dtype=np.float32), np.zeros((len(queries), 0), dtype=np.int64)
    # One matrix-vector product per query, never one product for the batch: BLAS sums in another order for a
    # matrix, so a query's scores would depend on the queries batched with it.
    matrix = np.asarray(vectors)
    scores = np.stack([matrix @ query for query in queries]).astype(np.float32, copy=False)
    picked = [top_positions(row, k, ties=True) for row in scores]
    width = max(len(p) for p in picked)
    out_scores = np.full((len(queries), width), -np.inf, dtype=np.float32)
    out_ids = np.full((len(queries), width), -1, dtype=np.int64)
    for n, top in enumerate(picked):
        out_scores[n, : len(top)] = scores[n, top]
        out_ids[n, : len(top)] = ids[top]
    return out_scores, out_ids


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to a segment's metadata, checked to be one (SQLite reads nothing until asked)."""
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    try:
        con.execute("SELECT id, content_hash FROM articles LIMIT 1").fetchone()
        con.execute('SELECT id, embed_hash, "row" FROM passages LIMIT 1').fetchone()
    except BaseException:
        con.close()
        raise
    return con


def stored_passage(row: tuple[Any, ...]) -> StoredPassage:
    """A `(id, article_id, ordinal, start, end, text, embed_hash)` row as a StoredPassage."""
    return StoredPassage(row[0], Passage(*row[1:6]), row[6])


def stored_article(row: tuple[Any, ...]) -> Article:
    """An `(id, title, body, date, source, url, author, path, metadata)` row as an Article."""
    return Article(
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
