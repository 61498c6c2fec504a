"""What a write reads of the current commit: point lookups into its segments' metadata and vectors, never a
pass over the whole index, so that a write costs what it adds.

Segments are opened light (`Segment(full=False)`): their SQLite metadata and their vectors mapped from disk;
no graph, no postings, no checksum pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from semsearch.errors import CorruptIndexError
from semsearch.index.reading.articles import StoredPassage
from semsearch.index.storage.commits import SegmentRef, segment_refs
from semsearch.index.storage.generations import build_command_hint, current_generation
from semsearch.index.storage.manifest import MANIFEST, Manifest, check_format
from semsearch.index.storage.segment import Segment, stored_passage

_CHUNK = 500  # SQLite's host parameters per statement stay well under its limit


@dataclass(frozen=True)
class StoredArticle:
    """Where a live article is: its segment (by position in the commit), its row there, its content hash, and
    how many passages it has."""

    segment: int
    row: int
    content_hash: str
    passages: int


class CommitView:
    """The current commit, opened for a write (under the writer lock)."""

    def __init__(
        self, root: Path, generation: Path, manifest: Manifest, refs: list[SegmentRef], segments: list[Segment]
    ):
        self.root = root
        self.generation = generation
        self.manifest = manifest
        self.refs = refs
        self.segments = segments
        self._deleted = [set(r.deleted) for r in refs]

    @classmethod
    def open(cls, root: Path) -> CommitView:
        generation = current_generation(root)
        manifest = Manifest.from_file(generation / MANIFEST)
        check_format(manifest, root)
        segments: list[Segment] = []
        try:
            refs = segment_refs(manifest.segments)
            for ref in refs:
                segments.append(Segment(root, ref.name, ref.checksum, verify=False, full=False))
        except CorruptIndexError as exc:
            for segment in segments:
                segment.release()
            raise CorruptIndexError(f"{exc}; rebuild with {build_command_hint(root)}") from None
        return cls(root, generation, manifest, refs, segments)

    def find(self, ids: Iterable[str]) -> dict[str, StoredArticle]:
        """The live articles among `ids`."""
        wanted = list(dict.fromkeys(ids))
        found: dict[str, StoredArticle] = {}
        for n, segment in enumerate(self.segments):
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                rows = segment.sql(
                    "SELECT a.id, a.rowid - 1, a.content_hash, "
                    "(SELECT count(*) FROM passages p WHERE p.article_id = a.id) "
                    f"FROM articles a WHERE a.id IN ({marks})",
                    chunk,
                )
                for article_id, row, digest, count in rows:
                    if row not in self._deleted[n]:
                        found[article_id] = StoredArticle(n, row, digest, count)
        return found

    def live_ids(self) -> list[str]:
        """Every live article id, in commit order (what a prune compares with)."""
        out: list[str] = []
        for n, segment in enumerate(self.segments):
            rows = segment.sql("SELECT id, rowid - 1 FROM articles ORDER BY rowid")
            out.extend(article_id for article_id, row in rows if row not in self._deleted[n])
        return out

    def passages_of(self, place: StoredArticle, article_id: str) -> list[StoredPassage]:
        rows = self.segments[place.segment].sql(
            'SELECT id, article_id, ordinal, start, "end", text, embed_hash FROM passages WHERE article_id = ? '
            "ORDER BY ordinal",
            (article_id,),
        )
        return [stored_passage(r) for r in rows]

    def vectors_by_hash(self, hashes: Iterable[str]) -> dict[str, npt.NDArray[np.float32]]:
        """A stored vector for each embedded-text hash any segment holds (deleted rows too: the vector of a text
        does not change)."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, npt.NDArray[np.float32]] = {}
        for segment in self.segments:
            missing = [h for h in wanted if h not in found]
            if not missing:
                break
            hits: dict[str, int] = {}
            for chunk in _chunks(missing):
                marks = ",".join("?" * len(chunk))
                for digest, row in segment.sql(
                    f'SELECT embed_hash, "row" FROM passages WHERE embed_hash IN ({marks})', chunk
                ):
                    hits.setdefault(digest, row)
            if hits:
                vectors = segment.vectors_at(np.array(list(hits.values()), dtype=np.int64))
                found.update(zip(hits, vectors, strict=True))
        return found

    def close(self) -> None:
        for segment in self.segments:
            segment.release()
        self.segments = []


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start : start + _CHUNK])
