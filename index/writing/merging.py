"""Merges: several segments rewritten as one without their deleted rows, from the stored vectors and postings
(nothing is embedded again), while searches and writes go on.

A merge reads the segments as the commit of its start names them and writes the merged segment without any
lock; only its commit takes the writer lock. Articles deleted from the merged segments meanwhile are carried
over as tombstones of the merged one; a merge whose segments are gone by then (another merge, a rebuild) is
given up. A merge killed at any moment leaves the last commit whole: its half-written folder is removed by a
later clean-up.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.errors import CorruptIndexError, IndexBusyError
from semsearch.index.reading.articles import Article, StoredPassage
from semsearch.index.storage.commits import SegmentRef, live_rows, segment_refs
from semsearch.index.storage.folder import remove_entry
from semsearch.index.storage.generations import current_generation, current_name, write_generation, writer_lock
from semsearch.index.storage.manifest import MANIFEST, Manifest
from semsearch.index.storage.postings import Postings
from semsearch.index.storage.segment import (
    POSTINGS_DIR,
    Segment,
    Written,
    stored_article,
    stored_passage,
    write_segment,
)
from semsearch.index.storage.vectors import VectorIndexInfo, segment_threshold
from semsearch.index.writing.merge_policy import MergePolicy, SegmentSize
from semsearch.settings import Settings

log = logging.getLogger("semsearch.merge")
# How long a merge waits for the writer lock to commit before giving its work up (a long write holds it).
COMMIT_WAIT = 60.0
# Merges one call runs at most: each makes the segments fewer, so this is only a guard.
_MAX_MERGES = 64


@dataclass(frozen=True)
class MergeReport:
    """One merge committed: the segments merged, the one made, its passages, and how long it took."""

    merged: tuple[str, ...]
    segment: str | None  # None when every row of the merged segments was deleted
    passages: int
    expunged: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "merged": list(self.merged),
            "segment": self.segment,
            "passages": self.passages,
            "expunged": self.expunged,
            "seconds": round(self.seconds, 3),
        }


def sizes(refs: Sequence[SegmentRef]) -> list[SegmentSize]:
    return [SegmentSize(r.name, r.passages, min(r.passages, r.deleted_passages)) for r in refs]


def current_refs(root: Path) -> tuple[Manifest, list[SegmentRef]]:
    manifest = Manifest.from_file(current_generation(root) / MANIFEST)
    return manifest, segment_refs(manifest.segments)


def merge_pending(
    settings: Settings,
    policy: MergePolicy | None = None,
    gate: contextlib.AbstractContextManager[Any] | None = None,
    threads: int | None = None,
) -> list[MergeReport]:
    """Run the merges the policy asks for until it asks for none; a merge another writer got in the way of is
    left for later (the next write asks again)."""
    return _run(settings, policy or MergePolicy(floor_segment=settings.merge_floor), gate, threads, force=False)


def optimize(
    settings: Settings, gate: contextlib.AbstractContextManager[Any] | None = None, threads: int | None = None
) -> list[MergeReport]:
    """Merge the index down to one segment without deleted rows (`semsearch optimize`)."""
    return _run(settings, MergePolicy(), gate, threads, force=True)


def _run(
    settings: Settings,
    policy: MergePolicy,
    gate: contextlib.AbstractContextManager[Any] | None,
    threads: int | None,
    force: bool,
) -> list[MergeReport]:
    done: list[MergeReport] = []
    for _ in range(_MAX_MERGES):
        _, refs = current_refs(settings.index)
        groups = policy.force_merge(sizes(refs)) if force else policy.find_merges(sizes(refs))
        if not groups:
            break
        try:
            report = merge_segments(settings, groups[0], gate, threads)
        except IndexBusyError as exc:
            log.info("merge left for later: %s", exc)
            break
        if report is None:
            continue
        done.append(report)
    return done


def merge_segments(
    settings: Settings,
    names: Sequence[str],
    gate: contextlib.AbstractContextManager[Any] | None = None,
    threads: int | None = None,
) -> MergeReport | None:
    """Merge the named segments of the current commit into one and commit it; None when the commit no longer
    names them all by the time the merge is ready."""
    started = time.perf_counter()
    root = settings.index
    manifest, refs = current_refs(root)
    by_name = {r.name: r for r in refs}
    if not names or any(n not in by_name for n in names):
        return None
    group = [r for r in refs if r.name in set(names)]
    started_from = current_name(root)
    try:
        merged = _read_live(root, group)
    except CorruptIndexError:
        if current_name(root) != started_from:
            return None  # a write meanwhile dropped a segment of the group (wholly deleted): nothing to merge
        raise
    written: Written | None = None
    if merged.passages:
        written = write_segment(
            root,
            merged.articles,
            merged.passages,
            merged.vectors,
            merged.postings,
            segment_threshold(settings.ann_threshold, manifest.counts["passages"]),
            threads if threads is not None else settings.threads,
        )
    try:
        with gate if gate is not None else contextlib.nullcontext(), writer_lock(root, wait=COMMIT_WAIT):
            return _commit(root, group, merged, written, started)
    finally:
        if written is not None:
            written.release()


@dataclass(frozen=True)
class _Merged:
    articles: list[Article]
    passages: list[StoredPassage]
    vectors: np.ndarray[Any, np.dtype[np.float32]]
    postings: Postings
    article_ids: dict[str, list[str]]  # each merged segment's article ids by local row
    passage_counts: dict[str, list[int]]  # each merged segment's passages per local article row


def _read_live(root: Path, group: Sequence[SegmentRef]) -> _Merged:
    """The live rows of the segments, in commit order, as one segment's content."""
    articles: list[Article] = []
    passages: list[StoredPassage] = []
    vectors = []
    parts = []
    ids: dict[str, list[str]] = {}
    counts: dict[str, list[int]] = {}
    for ref in group:
        segment = Segment(root, ref.name, ref.checksum, verify=False, full=False)
        try:
            rows = segment.sql(
                "SELECT id, title, body, date, source, url, author, path, metadata FROM articles ORDER BY rowid"
            )
            ids[ref.name] = [r[0] for r in rows]
            counts[ref.name] = np.bincount(segment.owners, minlength=ref.articles).tolist()
            dead = set(ref.deleted)
            articles.extend(stored_article(r) for n, r in enumerate(rows) if n not in dead)
            keep = live_rows(segment.owners, ref.articles, ref.deleted)
            keep = np.ones(segment.rows, dtype=np.bool_) if keep is None else keep
            by_row = {
                r[7]: r
                for r in segment.sql(
                    'SELECT id, article_id, ordinal, start, "end", text, embed_hash, "row" FROM passages'
                )
            }
            kept = np.flatnonzero(keep)
            passages.extend(stored_passage(by_row[int(r)]) for r in kept)
            vectors.append(segment.vectors_at(kept.astype(np.int64)))
            parts.append((Postings.load(segment.folder / POSTINGS_DIR), keep))
        finally:
            segment.release()
    dimension = vectors[0].shape[1] if vectors else 0
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, dimension), dtype=np.float32)
    return _Merged(articles, passages, stacked, Postings.merge(parts), ids, counts)


def _commit(
    root: Path, group: Sequence[SegmentRef], merged: _Merged, written: Written | None, started: float
) -> MergeReport | None:
    """Under the writer lock: swap the merged segments for the new one in the current commit."""
    manifest, refs = current_refs(root)
    now = {r.name: r for r in refs}
    if any(r.name not in now for r in group):
        if written is not None:
            remove_entry(root / written.name)
        return None
    row_of = {a.id: n for n, a in enumerate(merged.articles)}
    deleted_rows: list[int] = []
    deleted_passages = 0
    for before in group:
        for row in set(now[before.name].deleted) - set(before.deleted):
            deleted_rows.append(row_of[merged.article_ids[before.name][row]])
            deleted_passages += merged.passage_counts[before.name][row]
    first = next(n for n, r in enumerate(refs) if r.name == group[0].name)
    out = [r for r in refs if r.name not in {g.name for g in group}]
    if written is not None:
        made = written.ref().with_deleted(deleted_rows, deleted_passages)
        if not made.fully_deleted:
            out.insert(min(first, len(out)), made)
    if not out:
        return None
    expunged = sum(r.deleted_passages for r in group)
    report = MergeReport(
        tuple(r.name for r in group),
        written.name if written is not None else None,
        len(merged.passages),
        expunged,
        time.perf_counter() - started,
    )
    largest = max(out, key=lambda r: r.passages)
    vector_info = VectorIndexInfo.from_dict(largest.vector_index)
    write_generation(
        root,
        replace(
            manifest,
            segments=[r.to_dict() for r in out],
            vector_index=vector_info.to_dict(),
            index_type=vector_info.type,
            last_merge=report.to_dict(),
        ),
    )
    log.info("merged %d segments into %s (%d passages)", len(group), report.segment, report.passages)
    return report
