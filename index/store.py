"""The index directory on disk: generations of (FAISS vectors, SQLite metadata, manifest).

Layout: `ROOT/CURRENT` names the live generation `ROOT/gen-*/`. A build writes a new generation
in a temporary folder, fsyncs it, renames it into place and then switches `CURRENT` with an
atomic rename, so a crash at any moment leaves the previous generation whole and current.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index.articles import Article, Passage
from index.errors import CorruptIndexError, IndexBusyError, NoIndexError
from index.lexical import LEXICAL_DIR, LexicalIndex
from index.manifest import MANIFEST, Manifest, check_format, file_sha256

CURRENT = "CURRENT"
LOCK = ".lock"
VECTORS = "vectors.faiss"
METADATA = "meta.sqlite"
ARTICLE_VECTORS = "article_vectors.npy"
PASSAGE_ARTICLES = "passage_articles.npy"
LEXICAL_FILES = tuple(
    f"{LEXICAL_DIR}/{name}"
    for name in (
        "params.index.json",
        "vocab.index.json",
        "data.csc.index.npy",
        "indices.csc.index.npy",
        "indptr.csc.index.npy",
    )
)
DATA_FILES = (VECTORS, METADATA, ARTICLE_VECTORS, PASSAGE_ARTICLES, *LEXICAL_FILES)

_SCHEMA = """
CREATE TABLE articles (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, date TEXT, source TEXT, url TEXT, author TEXT,
    path TEXT, metadata TEXT NOT NULL, body TEXT NOT NULL, content_hash TEXT NOT NULL
);
CREATE TABLE passages (
    id INTEGER PRIMARY KEY, article_id TEXT NOT NULL REFERENCES articles(id),
    ordinal INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL
);
CREATE INDEX passages_by_article ON passages(article_id, ordinal);
"""


def build_command_hint(root: Path) -> str:
    return f"`semsearch index PATH --index {root}`"


def current_generation(root: Path) -> Path:
    """The live generation folder of the index at `root`."""
    pointer = root / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise NoIndexError(f"No index at {root}; build one with {build_command_hint(root)}") from None
    except OSError as exc:
        raise CorruptIndexError(f"Cannot read {pointer}: {exc}") from None
    generation = root / name
    if not name.startswith("gen-") or "/" in name or not generation.is_dir():
        raise CorruptIndexError(
            f"{pointer} names a generation {name!r} that does not exist; rebuild with {build_command_hint(root)}"
        )
    return generation


@contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """Hold the index's single-writer lock; a second writer gets IndexBusyError at once.

    A folder created here for a new index is removed again if no generation was written.
    """
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    handle = (root / LOCK).open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBusyError(
                f"The index at {root} is being written by another process; try again when it is done"
            ) from None
        yield
    finally:
        handle.close()
        if created and not (root / CURRENT).exists():
            shutil.rmtree(root, ignore_errors=True)


def write_generation(
    root: Path,
    articles: Sequence[Article],
    passages: Sequence[Passage],
    vectors: npt.NDArray[np.float32],
    lexical: LexicalIndex,
    manifest: Manifest,
) -> Path:
    """Write a complete generation and make it current; call under `writer_lock`."""
    if not len(passages) == vectors.shape[0] == lexical.size:
        raise ValueError("one vector and one lexical row per passage are required")
    staging = root / f"tmp-{token_hex(6)}"
    staging.mkdir()
    try:
        _write_metadata(staging / METADATA, articles, passages)
        _write_vectors(staging / VECTORS, vectors)
        passage_articles, article_vectors = article_centroids(articles, passages, vectors)
        np.save(staging / ARTICLE_VECTORS, article_vectors)
        np.save(staging / PASSAGE_ARTICLES, passage_articles)
        (staging / LEXICAL_DIR).mkdir()
        lexical.save(staging / LEXICAL_DIR)
        written = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        files = {name: file_sha256(staging / name) for name in written}
        (staging / MANIFEST).write_text(replace(manifest, files=files).to_json(), encoding="utf-8")
        for name in (*written, MANIFEST):
            _fsync_file(staging / name)
        _fsync_dir(staging / LEXICAL_DIR)
        _fsync_dir(staging)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        generation = root / f"gen-{stamp}-{token_hex(3)}"
        staging.rename(generation)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pointer_tmp = root / f"{CURRENT}.{token_hex(4)}.tmp"
    pointer_tmp.write_text(generation.name + "\n", encoding="utf-8")
    _fsync_file(pointer_tmp)
    os.replace(pointer_tmp, root / CURRENT)
    _fsync_dir(root)
    _remove_stale(root, keep=generation.name)
    return generation


def article_centroids(
    articles: Sequence[Article], passages: Sequence[Passage], vectors: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Each passage's article row, and each article's normalised mean passage vector (its topic)."""
    row = {a.id: n for n, a in enumerate(articles)}
    owners = np.array([row[p.article_id] for p in passages], dtype=np.int32)
    centroids = np.zeros((len(articles), vectors.shape[1]), dtype=np.float32)
    np.add.at(centroids, owners, vectors)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return owners, centroids / np.maximum(norms, 1e-12)


def _write_metadata(path: Path, articles: Sequence[Article], passages: Sequence[Passage]) -> None:
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
            "INSERT INTO passages VALUES (?,?,?,?,?,?)",
            ((i, p.article_id, p.ordinal, p.start, p.end, p.text) for i, p in enumerate(passages)),
        )
        con.commit()
    finally:
        con.close()


def _write_vectors(path: Path, vectors: npt.NDArray[np.float32]) -> None:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, np.arange(vectors.shape[0], dtype=np.int64))
    faiss.write_index(index, str(path))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync_file(path)


def _remove_stale(root: Path, keep: str) -> None:
    """Drop older generations and leftovers of interrupted builds (we hold the writer lock)."""
    for entry in root.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and entry.name.startswith(("gen-", "tmp-")):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(CURRENT + ".") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)


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
        self._vectors = vectors
        self._con = con
        self.article_vectors = article_vectors
        self.passage_articles = passage_articles
        self.lexical = lexical
        self._lock = threading.Lock()
        self.article_ids = [row[0] for row in con.execute("SELECT id FROM articles ORDER BY rowid")]

    def article_id_of(self, passage_id: int) -> str:
        return str(self.article_ids[int(self.passage_articles[passage_id])])

    @property
    def size(self) -> int:
        return int(self._vectors.ntotal)

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.generation.rglob("*") if f.is_file())

    def search(
        self, queries: npt.NDArray[np.float32], k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-k (scores, passage ids) per query row; ids are -1 where fewer than k exist.

        With `allowed` (a mask over passage ids) only those passages are searched, exactly, so a
        selective filter still gets its full k.
        """
        k = min(k, max(1, self.size))
        if allowed is None:
            scores, ids = self._vectors.search(queries, k)
            return scores, ids
        bits = np.packbits(allowed, bitorder="little")
        params = faiss.SearchParameters()
        params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        scores, ids = self._vectors.search(queries, k, params=params)
        return scores, ids

    def vectors_of(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """The stored vectors of these passages, one row each."""
        if not ids:
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
        mask = np.zeros(self.size, dtype=np.bool_)
        mask[ids] = True
        return mask

    def stored_vectors(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(passage ids, their vectors) as held by the vector index, in insertion order."""
        ids = faiss.vector_to_array(self._vectors.id_map).astype(np.int64)
        return ids, np.vstack([self._vectors.reconstruct(int(i)) for i in ids]).astype(np.float32)

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


def open_index(root: Path, verify: bool = True) -> StoredIndex:
    """Load the current generation, checking its format and (with `verify`) its file checksums."""
    generation = current_generation(root)
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
    except (RuntimeError, ValueError, OSError, KeyError) as exc:
        raise CorruptIndexError(f"Cannot read the index files in {generation}: {exc}") from None
    if (
        passage_articles.shape != (vectors.ntotal,)
        or lexical.size != vectors.ntotal
        or article_vectors.shape[0] != manifest.counts["articles"]
    ):
        raise CorruptIndexError(
            f"The index files in {generation} disagree in size; rebuild with {build_command_hint(root)}"
        )
    con = sqlite3.connect(f"file:{generation / METADATA}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    return StoredIndex(root, generation, manifest, vectors, con, article_vectors, passage_articles, lexical)
