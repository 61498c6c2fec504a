"""Generations on disk: how a write becomes current atomically, one writer at a time.

Layout: `ROOT/CURRENT` names the live generation `ROOT/gen-*/`. A write builds a new generation in a
temporary folder, fsyncs every file, renames the folder into place, then switches `CURRENT` with an
atomic rename, so a crash at any moment leaves the previous generation whole and current. The
generation before the current one is kept for readers still holding it; older ones are removed. Every
folder a write makes carries a marker (`folder.py`), and clean-up removes nothing without one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from semsearch.errors import CorruptIndexError, IndexBusyError, NoIndexError
from semsearch.index.reading.articles import Article, StoredPassage
from semsearch.index.storage.folder import CURRENT as CURRENT
from semsearch.index.storage.folder import ENTRY_MARKER, claim, is_marked, mark, unmake, write_errors
from semsearch.index.storage.folder import LOCK as LOCK
from semsearch.index.storage.lexical import LEXICAL_DIR, LexicalIndex
from semsearch.index.storage.manifest import MANIFEST, Manifest, file_sha256

# The next CURRENT, written inside the new generation and renamed over CURRENT, so no temporary file is ever left
# in the index folder itself.
NEXT_CURRENT = "CURRENT.next"
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
    ordinal INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL,
    embed_hash TEXT NOT NULL
);
CREATE INDEX passages_by_article ON passages(article_id, ordinal);
"""


def build_command_hint(root: Path) -> str:
    return f"`semsearch index PATH --index {root}` (or `semsearch index --demo --index {root}` for the bundled news)"


def current_generation(root: Path) -> Path:
    """The live generation folder of the index at `root`."""
    pointer = root / CURRENT
    if os.path.lexists(root) and not root.is_dir():
        raise NoIndexError(f"No index at {root}: it is a file, not an index folder; give --index an index folder")
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise NoIndexError(f"No index at {root}; build one with {build_command_hint(root)}") from None
    except (OSError, ValueError) as exc:
        raise CorruptIndexError(f"Cannot read {pointer} ({exc}); rebuild with {build_command_hint(root)}") from None
    generation = root / name
    if not name.startswith("gen-") or "/" in name or not generation.is_dir():
        raise CorruptIndexError(
            f"{pointer} names a generation {name!r} that does not exist; rebuild with {build_command_hint(root)}"
        )
    return generation


def current_name(root: Path) -> str | None:
    """The name `CURRENT` holds now, or None; cheap enough to poll."""
    try:
        return (root / CURRENT).read_text(encoding="utf-8").strip() or None
    except (OSError, ValueError):
        return None


@contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """Hold the index's single-writer lock; a second writer gets IndexBusyError at once.

    `root` must be a new or empty folder or an index (`folder.claim`); anything else is refused untouched. The
    folders created here for a new index are removed again if no generation was written.
    """
    created = claim(root)
    try:
        with write_errors(root):
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
    finally:
        if created is not None and not (root / CURRENT).exists():
            unmake(root, created)


def write_generation(
    root: Path,
    articles: Sequence[Article],
    passages: Sequence[StoredPassage],
    vectors: npt.NDArray[np.float32],
    vector_index: Any,
    lexical: LexicalIndex,
    manifest: Manifest,
) -> Path:
    """Write a complete generation and make it current; call under `writer_lock`.

    `passages` are in ascending id order; `vectors` and the lexical rows follow that order.
    """
    if not len(passages) == vectors.shape[0] == lexical.size == vector_index.ntotal:
        raise ValueError("one vector and one lexical row per passage are required")
    if passages and passages[-1].id >= manifest.next_passage_id:
        raise ValueError("next_passage_id must be above every passage id")
    previous = current_name(root)
    folder = staging = root / f"tmp-{token_hex(6)}"
    made = False
    with write_errors(root):
        try:
            staging.mkdir()  # never an existing folder
            made = True
            mark(staging, root_marker=False)
            _write_metadata(staging / METADATA, articles, passages)
            with (staging / VECTORS).open("wb") as handle:  # through Python, so a refused write has its errno
                faiss.write_index(vector_index, faiss.PyCallbackIOWriter(handle.write))  # type: ignore[attr-defined]
            passage_articles, article_vectors = article_centroids(articles, passages, vectors, manifest.next_passage_id)
            np.save(staging / ARTICLE_VECTORS, article_vectors)
            np.save(staging / PASSAGE_ARTICLES, passage_articles)
            (staging / LEXICAL_DIR).mkdir()
            lexical.save(staging / LEXICAL_DIR)
            written = sorted(
                name
                for name in (p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
                if name != ENTRY_MARKER
            )
            files = {name: file_sha256(staging / name) for name in written}
            (staging / MANIFEST).write_text(replace(manifest, files=files).to_json(), encoding="utf-8")
            generation = _generation_name(root)
            (staging / NEXT_CURRENT).write_text(generation.name + "\n", encoding="utf-8")
            for name in (*written, MANIFEST, ENTRY_MARKER, NEXT_CURRENT):
                _fsync(staging / name)
            _fsync(staging / LEXICAL_DIR)
            _fsync(staging)
            staging.rename(generation)
            folder = generation
            _fsync(root)
            os.replace(generation / NEXT_CURRENT, root / CURRENT)
        except BaseException:
            if made:
                shutil.rmtree(folder, ignore_errors=True)
            raise
    _fsync(root)
    _remove_stale(root, keep={generation.name, previous or generation.name})
    return generation


def _generation_name(root: Path) -> Path:
    """A name for the next generation that nothing in `root` has."""
    while True:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        generation = root / f"gen-{stamp}-{token_hex(3)}"
        if not os.path.lexists(generation):
            return generation


def article_centroids(
    articles: Sequence[Article],
    passages: Sequence[StoredPassage],
    vectors: npt.NDArray[np.float32],
    id_space: int,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Each passage id's article row (-1 for ids no passage holds), and each article's normalised mean
    passage vector (its topic)."""
    row = {a.id: n for n, a in enumerate(articles)}
    owners = np.full(id_space, -1, dtype=np.int32)
    rows = np.array([row[p.passage.article_id] for p in passages], dtype=np.int32)
    owners[[p.id for p in passages]] = rows
    centroids = np.zeros((len(articles), vectors.shape[1]), dtype=np.float32)
    np.add.at(centroids, rows, vectors)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return owners, centroids / np.maximum(norms, 1e-12)


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
            "INSERT INTO passages VALUES (?,?,?,?,?,?,?)",
            (
                (
                    s.id,
                    s.passage.article_id,
                    s.passage.ordinal,
                    s.passage.start,
                    s.passage.end,
                    s.passage.text,
                    s.embed_hash,
                )
                for s in passages
            ),
        )
        con.commit()
    finally:
        con.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale(root: Path, keep: set[str]) -> None:
    """Drop generations older than `keep` and leftovers of interrupted writes (we hold the writer lock): only
    folders that carry the engine's marker, whatever else is named like them."""
    for entry in root.iterdir():
        if entry.name not in keep and entry.name.startswith(("gen-", "tmp-")) and is_marked(entry, root_marker=False):
            shutil.rmtree(entry, ignore_errors=True)
