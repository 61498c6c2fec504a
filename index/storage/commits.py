"""What a commit says of each live segment, and the mask of its live rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.errors import CorruptIndexError


@dataclass(frozen=True)
class SegmentRef:
    """A live segment as a commit names it: the checksum of its record, its size, and the article rows
    deleted from it since it was written (tombstones, ascending)."""

    name: str
    checksum: str
    passages: int
    articles: int
    deleted: tuple[int, ...] = ()
    deleted_passages: int = 0
    vector_index: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checksum": self.checksum,
            "passages": self.passages,
            "articles": self.articles,
            "deleted": list(self.deleted),
            "deleted_passages": self.deleted_passages,
            "vector_index": self.vector_index,
        }

    @classmethod
    def from_dict(cls, data: Any) -> SegmentRef:
        try:
            ref = cls(
                name=data["name"],
                checksum=data["checksum"],
                passages=data["passages"],
                articles=data["articles"],
                deleted=tuple(data.get("deleted", ())),
                deleted_passages=data.get("deleted_passages", 0),
                vector_index=dict(data.get("vector_index", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptIndexError(f"A commit names a segment it does not describe ({exc!r})") from None
        numbers = (ref.passages, ref.articles, ref.deleted_passages, *ref.deleted)
        if not (isinstance(ref.name, str) and isinstance(ref.checksum, str)) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers
        ):
            raise CorruptIndexError(f"A commit describes the segment {str(ref.name)[:80]!r} with a wrong field")
        if any(row >= ref.articles for row in ref.deleted):
            raise CorruptIndexError(f"A commit deletes article rows that the segment {ref.name} does not have")
        return ref

    def with_deleted(self, rows: Sequence[int], passages: int) -> SegmentRef:
        """This segment with `rows` (not deleted before, holding `passages` passages between them) deleted too."""
        deleted = tuple(sorted({*self.deleted, *map(int, rows)}))
        return replace(self, deleted=deleted, deleted_passages=self.deleted_passages + passages)

    @property
    def fully_deleted(self) -> bool:
        return len(self.deleted) >= self.articles


def segment_refs(entries: Sequence[Any]) -> list[SegmentRef]:
    refs = [SegmentRef.from_dict(e) for e in entries]
    if len({r.name for r in refs}) != len(refs):
        raise CorruptIndexError("A commit names one segment twice")
    return refs


def live_rows(owners: npt.NDArray[np.int32], articles: int, deleted: Sequence[int]) -> npt.NDArray[np.bool_] | None:
    """A mask over a segment's passage rows: those whose article is not deleted; None when none is."""
    if not deleted:
        return None
    dead = np.zeros(articles, dtype=np.bool_)
    dead[list(deleted)] = True
    return ~dead[owners]
