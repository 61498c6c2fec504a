"""A loaded commit: its live segments searched together as one index, answering lookups by stable passage id.

Search fans out over the segments and merges exactly: each segment keeps every candidate tied with its k-th,
and the union is cut by (score, passage id). BM25 uses index-wide statistics over the live rows of every
segment (`postings.Bm25`), so a passage scores the same whichever segment holds it. Article rows are numbered
over the live articles of all segments, in commit order; passage ids are stable across commits (deletes and
updates never renumber), so arrays indexed by id have holes, and nothing ever returns a hole.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.errors import CorruptIndexError
from semsearch.index.reading.articles import Article, StoredPassage
from semsearch.index.reading.folding import fold, normalize_id
from semsearch.index.storage.commits import SegmentRef, live_rows, segment_refs
from semsearch.index.storage.generations import build_command_hint, current_generation, current_name
from semsearch.index.storage.manifest import MANIFEST, Manifest, check_format
from semsearch.index.storage.postings import Bm25
from semsearch.index.storage.segment import Segment, stored_article, stored_passage
from semsearch.index.storage.topk import merge_top, top_positions
from semsearch.index.storage.vectors import VectorIndexInfo

__all__ = ["ArticleFacts", "PassageRow", "StoredIndex", "open_index"]
_OPEN_ATTEMPTS = 3
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_PASSAGE_JOIN = "passages p JOIN articles a ON a.id = p.article_id"
_PASSAGE_COLUMNS = 'p.id, p.article_id, p.ordinal, p.start, p."end", p.text, a.title, a.date, a.source, a.url'


@dataclass(frozen=True)
class ArticleFacts:
    """What ranking, filters and facets read of every article, by article row."""

    times: npt.NDArray[np.float64]
    months: list[str | None]
    sources: list[str | None]
    first_passage: npt.NDArray[np.int64]  # the article's lowest passage id (-1: none)
    days: npt.NDArray[np.str_]  # ISO day ("" when undated)
    folded_sources: list[str | None]


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
    """The live segments of one commit, loaded; segments are shared with the commit loaded before it."""

    def __init__(
        self,
        root: Path,
        generation: Path,
        manifest: Manifest,
        segments: list[Segment],
        refs: list[SegmentRef],
        threads: int = 1,
        reuse: StoredIndex | None = None,
    ) -> None:
        self.root = root
        self._threads = threads
        self._closed = False
        self.generation = generation
        self.manifest = manifest
        self.segments = segments
        self.refs = refs
        self.live = [live_rows(s.owners, s.info.articles, r.deleted) for s, r in zip(segments, refs, strict=True)]
        id_space = manifest.next_passage_id
        self.passage_articles = np.full(id_space, -1, dtype=np.int32)  # indexed by passage id; -1 in holes
        self._segment_of = np.full(id_space, -1, dtype=np.int32)
        self._row_of = np.full(id_space, -1, dtype=np.int32)
        article_ids: list[str] = []
        vectors: list[npt.NDArray[np.float32]] = []
        places: list[tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]] = []
        for n, (segment, ref, live) in enumerate(zip(segments, refs, self.live, strict=True)):
            alive = np.ones(segment.info.articles, dtype=np.bool_)
            alive[list(ref.deleted)] = False
            local = np.flatnonzero(alive)
            row_of_local = np.full(segment.info.articles, -1, dtype=np.int32)
            row_of_local[local] = len(article_ids) + np.arange(len(local), dtype=np.int32)
            article_ids.extend(segment.article_ids[r] for r in local)
            vectors.append(self._article_vectors_of(segment, local, reuse))
            places.append((np.full(len(local), n, dtype=np.int32), local))
            rows = np.arange(segment.rows) if live is None else np.flatnonzero(live)
            ids = segment.ids[rows]
            if len(ids) and (int(ids.max()) >= id_space or (self._segment_of[ids] >= 0).any()):
                raise CorruptIndexError(f"The segment {segment.folder} holds passage ids another segment holds")
            self.passage_articles[ids] = row_of_local[segment.owners[rows]]
            self._segment_of[ids] = n
            self._row_of[ids] = rows
        self.article_ids = article_ids
        dimension = manifest.dimension
        self.article_vectors = np.concatenate(vectors) if vectors else np.zeros((0, dimension), dtype=np.float32)
        self._article_segment = np.concatenate([p[0] for p in places]) if places else np.zeros(0, dtype=np.int32)
        self._article_local = np.concatenate([p[1] for p in places]) if places else np.zeros(0, dtype=np.int64)
        self._article_row = {a: n for n, a in enumerate(article_ids)}
        if len(self._article_row) != len(article_ids):
            raise CorruptIndexError(f"Two live segments of {generation} hold the same article")
        self.size = int(np.count_nonzero(self.passage_articles >= 0))
        parts = [(s.postings, live) for s, live in zip(segments, self.live, strict=True) if s.postings is not None]
        if len(parts) != len(segments):
            raise ValueError("a searchable index needs every segment loaded in full")
        self.bm25 = Bm25(parts)
        self.vector_info = VectorIndexInfo.from_dict(manifest.vector_index)
        self._facts: ArticleFacts | None = None
        self._facts_lock = threading.Lock()

    @staticmethod
    def _article_vectors_of(
        segment: Segment, local: npt.NDArray[np.int64], reuse: StoredIndex | None
    ) -> npt.NDArray[np.float32]:
        """The article vectors of a segment's live rows `local`: taken from the commit loaded before when it
        shares the segment (a reload after a write then reads only the new segments'), else read from disk."""
        if reuse is not None and segment in reuse.segments:
            n = reuse.segments.index(segment)
            rows = np.flatnonzero(reuse._article_segment == n)
            position = np.full(segment.info.articles, -1, dtype=np.int64)
            position[reuse._article_local[rows]] = rows
            taken = position[local]
            if (taken >= 0).all():  # deletes only grow: every row live now was live then
                return reuse.article_vectors[taken]
        return segment.read_article_vectors()[local]

    @property
    def id_space(self) -> int:
        """One more than the largest passage id: the length of masks over ids."""
        return len(self.passage_articles)

    def article_id_of(self, passage_id: int) -> str:
        return self.article_ids[int(self.passage_articles[passage_id])]

    def disk_bytes(self) -> int:
        folders = [self.generation, *(s.folder for s in self.segments)]
        return sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())

    def _masks(self, allowed: npt.NDArray[np.bool_] | None) -> list[npt.NDArray[np.bool_] | None]:
        """Each segment's rows to search: its live rows, within `allowed` (a mask over passage ids)."""
        if allowed is None:
            return list(self.live)
        masks: list[npt.NDArray[np.bool_] | None] = []
        for segment, live in zip(self.segments, self.live, strict=True):
            mask = allowed[segment.ids]
            masks.append(mask if live is None else mask & live)
        return masks

    def search(
        self, queries: npt.NDArray[np.float32], k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-k (scores, passage ids) per query row, ties by passage id; ids are -1 (scores -inf) where fewer
        than k exist. With `allowed` only those passages are searched, exactly where that is affordable, so a
        selective filter still gets its full k."""
        k = min(k, max(1, self.size))
        work = [
            (segment, mask)
            for segment, mask in zip(self.segments, self._masks(allowed), strict=True)
            if segment.rows and (mask is None or mask.any())
        ]
        graphs = sum(1 for segment, _ in work if segment.approximate)
        if graphs > 1 and self._threads > 1:  # FAISS lets go of the GIL: the graphs are searched side by side
            parts = list(_pool(self._threads).map(lambda job: job[0].search(queries, k, job[1]), work))
        else:
            parts = [segment.search(queries, k, mask) for segment, mask in work]
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        for n in range(len(queries)):
            if not parts:
                break
            scores, ids = merge_top(
                np.concatenate([p[0][n] for p in parts]), np.concatenate([p[1][n] for p in parts]), k
            )
            out_scores[n, : len(ids)] = scores
            out_ids[n, : len(ids)] = ids
        return out_scores, out_ids

    def lexical_search(
        self, terms: Sequence[str], k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """BM25 top-k (scores, passage ids) with a positive score, best first, ties by passage id; `allowed` is
        a mask over passage ids."""
        found_scores, found_ids = [], []
        for segment, scores in zip(self.segments, self.bm25.scores(terms), strict=True):
            if allowed is not None:
                scores = np.where(allowed[segment.ids], scores, 0.0).astype(np.float32)
            positive = np.flatnonzero(scores > 0)
            top = positive[top_positions(scores[positive], k, ties=True)]
            found_scores.append(scores[top])
            found_ids.append(segment.ids[top])
        if not found_ids:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        return merge_top(np.concatenate(found_scores), np.concatenate(found_ids), k)

    def passages_with(self, terms: Sequence[str]) -> npt.NDArray[np.bool_]:
        """A mask over passage ids: the live passages whose BM25 document (with its title when the index was
        built with `lexical_title`) holds every one of `terms`; no terms select every live passage."""
        mask = self.passage_articles >= 0
        for term in dict.fromkeys(terms):
            mask &= self._holding([term])
        return mask

    def passages_without(self, terms: Sequence[str]) -> npt.NDArray[np.bool_]:
        """A mask over passage ids: the live passages whose BM25 document holds none of `terms` (an exclusion's
        pre-filter); no terms select every live passage."""
        return (self.passage_articles >= 0) & ~self._holding(terms)

    def _holding(self, terms: Sequence[str]) -> npt.NDArray[np.bool_]:
        """A mask over passage ids: the live passages whose BM25 document holds one of `terms`. Only live rows
        count: an updated article's unchanged passages keep their ids, so a deleted row may share its id with
        the live row of the new version, whose document (its title) can differ."""
        mask = np.zeros(self.id_space, dtype=np.bool_)
        for segment, live in zip(self.segments, self.live, strict=True):
            if segment.postings is not None:
                rows = segment.postings.rows_with_any(terms)
                mask[segment.ids[rows if live is None else rows & live]] = True
        return mask

    def vectors_of(self, ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """The stored vectors of these live passages, one row each."""
        wanted = np.asarray(ids, dtype=np.int64)
        out = np.zeros((len(wanted), self.manifest.dimension), dtype=np.float32)
        if not len(wanted):
            return out
        owners = self._segment_of[wanted]
        if (owners < 0).any():
            raise KeyError(f"no live passage with id {int(wanted[owners < 0][0])}")
        for n in np.unique(owners):
            at = np.flatnonzero(owners == n)
            out[at] = self.segments[int(n)].vectors_at(self._row_of[wanted[at]].astype(np.int64))
        return out

    def matching_passages(
        self,
        date_from: str | None = None,
        date_to: str | None = None,
        source: str | None = None,
        article_id: str | None = None,
    ) -> npt.NDArray[np.bool_]:
        """A mask over passage ids: live passages whose article matches every given condition.

        Dates compare on their ISO day (an article without a date fails any date condition); the source
        compares folded (`folding.fold`: Unicode case folding and NFKC, so "радио" matches "Радио"); the
        article id as `article` looks it up.
        """
        chosen = np.ones(len(self.article_ids), dtype=np.bool_)
        facts = self.article_facts() if (date_from, date_to, source) != (None, None, None) else None
        if facts is not None:
            if date_from is not None or date_to is not None:
                chosen &= facts.days != ""
            if date_from is not None:
                chosen &= facts.days >= date_from
            if date_to is not None:
                chosen &= facts.days <= date_to
            if source is not None:
                wanted = fold(source.strip())
                chosen &= np.array([s == wanted for s in facts.folded_sources], dtype=np.bool_)
        if article_id is not None:
            row = self._article_row.get(self._stored_id(article_id))
            only = np.zeros_like(chosen)
            if row is not None:
                only[row] = True
            chosen &= only
        owners = self.passage_articles
        return (owners >= 0) & chosen[np.maximum(owners, 0)]

    def article_facts(self) -> ArticleFacts:
        """Each article's date (as Unix seconds, NaN when undated), month, day and source, by article row; read
        once (a commit never changes, and each segment reads its own once)."""
        facts = self._facts
        if facts is not None:
            return facts
        with self._facts_lock:  # built once, whichever requests ask first at the same time
            if self._facts is None:
                self._facts = self._build_facts()
            return self._facts

    def _build_facts(self) -> ArticleFacts:
        parts = [(segment.article_columns(), local) for segment, local in self._article_places()]
        first = np.full(len(self.article_ids), -1, dtype=np.int64)
        held = np.flatnonzero(self.passage_articles >= 0)
        owners, at = np.unique(self.passage_articles[held], return_index=True)
        first[owners] = held[at]

        def joined(name: str) -> npt.NDArray[Any]:
            taken = [getattr(columns, name)[local] for columns, local in parts]
            return np.concatenate(taken) if taken else np.zeros(0)

        return ArticleFacts(
            times=joined("times").astype(np.float64),
            months=joined("months").tolist(),
            sources=joined("sources").tolist(),
            first_passage=first,
            days=joined("days").astype(np.str_),
            folded_sources=joined("folded").tolist(),
        )

    def _article_places(self) -> list[tuple[Segment, npt.NDArray[np.int64]]]:
        """Each segment with the local rows of its live articles, in article-row order."""
        return [(s, self._article_local[self._article_segment == n]) for n, s in enumerate(self.segments)]

    def _stored_id(self, article_id: str) -> str:
        """The id as stored: ids are NFC since ingest normalises them, but an index written before keeps its own."""
        normal = normalize_id(article_id)
        return article_id if normal != article_id and article_id in self._article_row else normal

    def stored_vectors(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(passage ids, their vectors) of every live passage, in ascending id order."""
        ids = np.flatnonzero(self.passage_articles >= 0).astype(np.int64)
        return ids, self.vectors_of(ids.tolist())

    def stored_articles(self) -> list[Article]:
        """Every live article as it was indexed, in article-row order."""
        out: list[Article] = []
        for segment, local in self._article_places():
            rows = segment.sql(
                "SELECT id, title, body, date, source, url, author, path, metadata FROM articles ORDER BY rowid"
            )
            out.extend(stored_article(rows[int(r)]) for r in local)
        return out

    def stored_passages(self) -> list[StoredPassage]:
        """Every live passage with its stable id and embedded-text hash, in ascending id order."""
        found: list[StoredPassage] = []
        for segment, live in zip(self.segments, self.live, strict=True):
            rows = segment.sql('SELECT id, article_id, ordinal, start, "end", text, embed_hash FROM passages')
            keep = set(segment.ids.tolist() if live is None else segment.ids[live].tolist())
            found.extend(stored_passage(r) for r in rows if r[0] in keep)
        return sorted(found, key=lambda s: s.id)

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]:
        wanted = [int(i) for i in ids if 0 <= int(i) < self.id_space and self._segment_of[int(i)] >= 0]
        out: dict[int, PassageRow] = {}
        owners = self._segment_of[wanted] if wanted else np.zeros(0, dtype=np.int32)
        for n in np.unique(owners):
            chosen = [i for i, o in zip(wanted, owners.tolist(), strict=True) if o == n]
            marks = ",".join("?" * len(chosen))
            sql = f"SELECT {_PASSAGE_COLUMNS} FROM {_PASSAGE_JOIN} WHERE p.id IN ({marks})"
            out.update((row[0], PassageRow(*row)) for row in self.segments[int(n)].sql(sql, chosen))
        return out

    def article(self, article_id: str) -> tuple[dict[str, Any], list[PassageRow]] | None:
        """An article's fields and its passages in order, or None. The id is NFC-normalised as at ingest."""
        stored = self._stored_id(article_id)
        row = self._article_row.get(stored)
        if row is None:
            return None
        segment = self.segments[int(self._article_segment[row])]
        names = ("id", "title", "date", "source", "url", "author", "path", "metadata", "body")
        found = segment.sql(f"SELECT {', '.join(names)} FROM articles WHERE id = ?", (stored,))
        record = dict(zip(names, found[0], strict=True))
        record["metadata"] = json.loads(record["metadata"])
        ids = [r[0] for r in segment.sql("SELECT id FROM passages WHERE article_id = ? ORDER BY ordinal", (stored,))]
        rows = self.passages(ids)
        return record, [rows[i] for i in ids]

    def segment_stats(self) -> list[dict[str, Any]]:
        """Each live segment: its passages, those deleted from it, and its vector index (for /stats)."""
        out = []
        for segment, ref, live in zip(self.segments, self.refs, self.live, strict=True):
            live_count = segment.rows if live is None else int(np.count_nonzero(live))
            out.append(
                {
                    "name": segment.name,
                    "passages": live_count,
                    "deleted": segment.rows - live_count,
                    "articles": segment.info.articles - len(ref.deleted),
                    "vector_index": segment.vector_info.type,
                }
            )
        return out

    def close(self) -> None:
        """Release the segments (each closes once no commit loaded after this one shares it); lookups on a
        closed index raise RuntimeError. Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        for segment in self.segments:
            segment.release()


def _pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count for the whole process: every loaded commit shares it."""
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="semsearch-segments")
        return pool


def open_index(root: Path, verify: bool = True, reuse: StoredIndex | None = None, threads: int = 1) -> StoredIndex:
    """Load the current commit, checking its format and (with `verify`) the checksums of every segment not
    taken from `reuse` (a commit loaded before, whose segments are shared, not read again).

    A writer may switch commits and remove what the old one named while this reads; then it reads the new one.
    `threads` is how many segments one search may search side by side.
    """
    for attempt in range(_OPEN_ATTEMPTS):
        generation = current_generation(root)
        try:
            return _open_commit(root, generation, verify, reuse, threads)
        except CorruptIndexError:
            if attempt + 1 < _OPEN_ATTEMPTS and current_name(root) != generation.name:
                continue
            raise
    raise AssertionError("unreachable")


def _shared(segment: Segment | None, ref: SegmentRef) -> Segment | None:
    """`segment`, acquired once more, when it is the one `ref` names and is still open; else None."""
    if segment is None or segment.checksum != ref.checksum:
        return None
    try:
        return segment.acquire()
    except RuntimeError:  # closed meanwhile: read it again
        return None


def _open_commit(root: Path, generation: Path, verify: bool, reuse: StoredIndex | None, threads: int) -> StoredIndex:
    manifest = Manifest.from_file(generation / MANIFEST)
    check_format(manifest, root)
    held = {s.name: s for s in reuse.segments} if reuse is not None else {}
    segments: list[Segment] = []
    try:
        refs = segment_refs(manifest.segments)
        for ref in refs:
            segment = _shared(held.get(ref.name), ref) or Segment(root, ref.name, ref.checksum, verify, full=True)
            segments.append(segment)
            if (segment.info.passages, segment.info.articles) != (ref.passages, ref.articles):
                raise CorruptIndexError(f"The segment {segment.folder} is not the one the commit names")
        index = StoredIndex(root, generation, manifest, segments, refs, threads, reuse)
        if (index.size, len(index.article_ids)) != (manifest.counts["passages"], manifest.counts["articles"]):
            raise CorruptIndexError(f"The segments of {generation} do not hold what its manifest counts")
        return index
    except CorruptIndexError as exc:
        for segment in segments:
            segment.release()
        raise CorruptIndexError(f"{exc}; rebuild with {build_command_hint(root)}") from None
    except BaseException:
        for segment in segments:
            segment.release()
        raise
