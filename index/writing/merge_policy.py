"""Which segments to merge, after the ideas of Lucene's TieredMergePolicy, with sizes in passages.

Each write adds a small segment and tombstones rows of older ones. The policy keeps the segment count about
logarithmic in the corpus (a budget of `segments_per_tier` segments per tier of similar size) and no segment's
deleted share over an allowance, preferring balanced, small merges that reclaim deletes. Pure: it reads sizes
and names groups; the writer merges them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from semsearch.errors import ConfigError

# A merge must grow its largest input by this factor unless it expunges deletes: rewriting a big segment for a
# few small ones, again and again, would make merging cost quadratic.
_MIN_GROWTH = 1.5


@dataclass(frozen=True)
class SegmentSize:
    """What the policy knows of a segment: its name, its stored rows and how many of them are tombstoned."""

    name: str
    passages: int
    deleted: int

    def __post_init__(self) -> None:
        if not 0 <= self.deleted <= self.passages:
            raise ValueError(
                f"segment {self.name!r}: need 0 <= deleted <= passages, got deleted={self.deleted}, "
                f"passages={self.passages}"
            )

    @property
    def live(self) -> int:
        return self.passages - self.deleted

    @property
    def deleted_pct(self) -> float:
        """Tombstoned share of the rows, in percent; an empty segment counts as wholly deleted."""
        return 100.0 * self.deleted / self.passages if self.passages else 100.0


@dataclass(frozen=True)
class _Candidate:
    segments: tuple[SegmentSize, ...]
    hit_max: bool
    score: float


@dataclass(frozen=True)
class MergePolicy:
    """Tiered merging, sizes in live passages.

    `segments_per_tier` segments of similar size may stand before they are merged, at most `max_merge_at_once`
    at a time; segments under `floor_segment` count as that size, so tiny ones merge together soon; a merge stays
    under `max_segment`, and segments past half of it are left alone but to expunge deletes; a segment whose
    deleted share is over `deletes_pct_allowed` percent is rewritten, alone or in a merge.
    """

    segments_per_tier: int = 10
    max_merge_at_once: int = 10
    floor_segment: int = 2_000
    max_segment: int = 2_000_000
    deletes_pct_allowed: float = 20.0

    def __post_init__(self) -> None:
        for key, value, least in (
            ("segments_per_tier", self.segments_per_tier, 2),
            ("max_merge_at_once", self.max_merge_at_once, 2),
            ("floor_segment", self.floor_segment, 1),
            ("max_segment", self.max_segment, 1),
        ):
            if value < least:
                raise ConfigError(f"merge policy {key}={value!r} is not allowed; it must be at least {least}")
        if not 0.0 <= self.deletes_pct_allowed <= 100.0:
            raise ConfigError(
                f"merge policy deletes_pct_allowed={self.deletes_pct_allowed!r} is not allowed; "
                "it must be between 0 and 100"
            )

    @property
    def merge_factor(self) -> int:
        """Segments merged at once: never more than a tier holds, or a merge would skip a tier."""
        return min(self.max_merge_at_once, self.segments_per_tier)

    def find_merges(self, segments: Sequence[SegmentSize], merging: Collection[str] = ()) -> list[list[str]]:
        """Disjoint groups of names to merge now, best first; segments in `merging` are already being merged.

        Wholly deleted segments come first, one to a group, so they disappear (a merge keeps only live rows).
        Then, while more segments stand than the tiers allow, or a segment's deleted share is over the allowance,
        the best-scoring merge is taken.
        """
        ordered = _ordered(segments)
        busy = [s for s in ordered if s.name in merging]
        idle = [s for s in ordered if s.name not in merging]
        groups = [[s.name] for s in sorted(idle, key=lambda s: s.name) if s.live == 0]
        pool = [s for s in idle if s.live > 0]
        if not pool:
            return groups

        # Busy segments count toward the budget (as Lucene's do), though they are not ours to merge.
        sizes = [s.live for s in (*pool, *busy) if s.live > 0]
        smallest, total = min(sizes), sum(sizes)
        # Segments past half the largest size are done growing: outside the budget, rewritten only for deletes.
        done = {s.name for s in pool if s.live > self.max_segment / 2 and not self._too_deleted(s)}
        total -= sum(s.live for s in pool if s.name in done)
        pool = [s for s in pool if s.name not in done]
        allowed = self.allowed_segments(total, smallest)

        while pool:
            over_count = len(pool) > allowed
            if not over_count and not any(self._too_deleted(s) for s in pool):
                break
            best = self._best(pool, reclaim_only=not over_count)
            if best is None:
                break
            groups.append([s.name for s in best.segments])
            chosen = {s.name for s in best.segments}
            pool = [s for s in pool if s.name not in chosen]
        return groups

    def force_merge(self, segments: Sequence[SegmentSize], merging: Collection[str] = ()) -> list[list[str]]:
        """One group of every segment not being merged, so the index ends as one clean segment; [] when it is."""
        idle = [s for s in _ordered(segments) if s.name not in merging]
        if len(idle) > 1 or (idle and idle[0].deleted_pct > 0):
            return [[s.name for s in idle]]
        return []

    def allowed_segments(self, total: int, smallest: int) -> int:
        """Segments an index of `total` live passages may hold: `segments_per_tier` per tier, each tier
        `merge_factor` times the one below, starting from the smallest segment or the floor."""
        level = max(smallest, self.floor_segment)
        left = float(total)
        allowed = 0
        while True:
            count = left / level
            if count < self.segments_per_tier or level >= self.max_segment:
                allowed += math.ceil(count)
                break
            allowed += self.segments_per_tier
            left -= self.segments_per_tier * level
            level = min(self.max_segment, level * self.merge_factor)
        return max(allowed, self.segments_per_tier)

    def _too_deleted(self, segment: SegmentSize) -> bool:
        return segment.deleted_pct > self.deletes_pct_allowed

    def _best(self, pool: Sequence[SegmentSize], reclaim_only: bool) -> _Candidate | None:
        """The lowest-scoring merge among runs of similar size (pool sorted largest first); ties go to the
        earlier run, so the choice depends only on sizes and names."""
        best: _Candidate | None = None
        for start in range(len(pool)):
            candidate = self._candidate(pool, start)
            if candidate is None:
                continue
            if reclaim_only and not any(self._too_deleted(s) for s in candidate.segments):
                continue
            if best is None or candidate.score < best.score:
                best = candidate
        return best

    def _candidate(self, pool: Sequence[SegmentSize], start: int) -> _Candidate | None:
        """The merge led by `pool[start]`: it and the next smaller segments, packed up to `max_segment`."""
        first = pool[start]
        chosen = [first]
        size = first.live
        hit_max = size > self.max_segment
        for segment in pool[start + 1 :]:
            if len(chosen) >= self.merge_factor or size >= self.max_segment:
                break
            if size + segment.live > self.max_segment:
                hit_max = True
                continue
            chosen.append(segment)
            size += segment.live
        if len(chosen) == 1 and not self._too_deleted(first):
            return None
        if not hit_max and size < _MIN_GROWTH * first.live and not self._too_deleted(first):
            return None
        return _Candidate(tuple(chosen), hit_max, self._score(chosen, hit_max, size))

    def _score(self, chosen: Sequence[SegmentSize], hit_max: bool, size: int) -> float:
        """Lower is better: balanced inputs (skew, over floored sizes) above all, then a small result, then
        many deletes reclaimed. A merge that reaches the largest size cannot cascade, so its skew is moot."""
        if hit_max:
            skew = 1.0 / self.merge_factor
        else:
            floored = [max(s.live, self.floor_segment) for s in chosen]
            skew = floored[0] / sum(floored)
        kept = size / sum(s.passages for s in chosen)
        return skew * math.pow(size, 0.05) * kept * kept


def _ordered(segments: Sequence[SegmentSize]) -> list[SegmentSize]:
    """Largest live size first, ties by name: the one order every decision reads, whatever order came in."""
    names = [s.name for s in segments]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"segment names must be unique; repeated: {duplicates}")
    return sorted(segments, key=lambda s: (-s.live, s.name))
