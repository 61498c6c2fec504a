"""The tiered merge policy: over a simulated stream of small writes, deletes and updates it keeps the segment
count logarithmic, the deleted share within its allowance and the rewriting O(log n); its groups are always
valid, deterministic and independent of input order."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semsearch.errors import ConfigError
from semsearch.index.writing.merge_policy import MergePolicy, SegmentSize

PROPERTY = settings(deadline=None, derandomize=True, database=None)


@dataclass
class Index:
    """Segments by name, merged the way a writer would: a group becomes one clean segment of its live rows."""

    segments: dict[str, SegmentSize] = field(default_factory=dict)
    added: int = 0
    rewritten: int = 0
    made: int = 0

    def write(self, rng: random.Random, delete_rate: float, most_deleted: int) -> None:
        """One article: a segment of 1..30 passages; some writes also tombstone rows of an older segment."""
        self.made += 1
        size = rng.randint(1, 30)
        self.segments[f"w{self.made:05d}"] = SegmentSize(f"w{self.made:05d}", size, 0)
        self.added += size
        holders = [s for s in self.segments.values() if s.live]
        if rng.random() < delete_rate and holders:
            target = rng.choice(holders)
            gone = min(target.live, rng.randint(1, most_deleted))
            self.segments[target.name] = SegmentSize(target.name, target.passages, target.deleted + gone)

    def merge(self, groups: list[list[str]]) -> None:
        for group in groups:
            live = sum(self.segments.pop(name).live for name in group)
            self.rewritten += live
            if live:
                self.made += 1
                self.segments[f"m{self.made:05d}"] = SegmentSize(f"m{self.made:05d}", live, 0)

    @property
    def live(self) -> int:
        return sum(s.live for s in self.segments.values())

    @property
    def deleted_pct(self) -> float:
        rows = sum(s.passages for s in self.segments.values())
        return 100.0 * sum(s.deleted for s in self.segments.values()) / rows if rows else 0.0

    @property
    def amplification(self) -> float:
        """Passages rewritten by merges per passage written."""
        return self.rewritten / self.added


def tiers(policy: MergePolicy, live: int) -> float:
    """Tiers of `merge_factor` growth between the floor and `live`, plus two: the part-filled top tier and the
    segments under the floor, which the floor counts as one tier."""
    return math.log(max(live, policy.floor_segment) / policy.floor_segment, policy.merge_factor) + 2


def check_groups(policy: MergePolicy, segments: list[SegmentSize], merging: set[str], groups: list[list[str]]) -> None:
    by_name = {s.name: s for s in segments}
    named = [name for group in groups for name in group]
    assert len(named) == len(set(named)), "groups overlap"
    assert set(named) <= set(by_name), "a group names an unknown segment"
    assert not set(named) & merging, "a group takes a segment already being merged"
    for group in groups:
        members = [by_name[name] for name in group]
        if len(group) == 1:
            assert members[0].deleted_pct > policy.deletes_pct_allowed, "a one-segment merge reclaims too little"
        else:
            assert len(group) <= policy.merge_factor
            assert sum(s.live for s in members) <= policy.max_segment


@settings(PROPERTY, max_examples=20)
@given(
    seed=st.integers(0, 2**32 - 1),
    delete_rate=st.sampled_from([0.0, 0.3, 1.0]),
    most_deleted=st.integers(1, 30),
)
def test_a_stream_of_writes_stays_logarithmic(seed: int, delete_rate: float, most_deleted: int) -> None:
    """2,000 single-article writes under the default policy. The count stays within the tier budget plus a
    tier of slack (12 at most was seen, against 19 to 32); a segment over the delete allowance is rewritten at
    once, so no segment, nor the index, stays over it; a passage is rewritten about once per tier it climbs, plus
    the rewrites that expunge deletes (5.7 at most was seen at 2,000 writes)."""
    policy = MergePolicy()
    rng = random.Random(seed)
    index = Index()
    for _ in range(2_000):
        index.write(rng, delete_rate, most_deleted)
        groups = policy.find_merges(list(index.segments.values()))
        check_groups(policy, list(index.segments.values()), set(), groups)
        index.merge(groups)
        assert len(index.segments) <= policy.segments_per_tier * tiers(policy, index.live)
        assert all(s.deleted_pct <= policy.deletes_pct_allowed for s in index.segments.values())
        assert index.deleted_pct <= policy.deletes_pct_allowed
        assert index.amplification <= 2 + math.log(index.added, policy.merge_factor)
    assert index.amplification <= 7


@settings(PROPERTY, max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    segments_per_tier=st.integers(2, 12),
    max_merge_at_once=st.integers(2, 12),
    floor_segment=st.sampled_from([1, 10, 100, 2_000]),
    max_segment=st.sampled_from([200, 3_000, 2_000_000]),
    deletes_pct_allowed=st.sampled_from([5.0, 20.0, 50.0]),
    delete_rate=st.sampled_from([0.0, 0.3, 1.0]),
    most_deleted=st.sampled_from([3, 20, 200]),
)
def test_any_settings_keep_their_bounds(
    seed: int,
    segments_per_tier: int,
    max_merge_at_once: int,
    floor_segment: int,
    max_segment: int,
    deletes_pct_allowed: float,
    delete_rate: float,
    most_deleted: int,
) -> None:
    """500 writes under drawn settings. Segments past half `max_segment` stand outside the tiers, at most
    `2 * live / max_segment` of them. A merge must grow its largest input by half, so a run of segments each more
    than twice the next cannot merge: at most log2 of the size range of them stand beyond the budget."""
    policy = MergePolicy(segments_per_tier, max_merge_at_once, floor_segment, max_segment, deletes_pct_allowed)
    rng = random.Random(seed)
    index = Index()
    for _ in range(500):
        index.write(rng, delete_rate, most_deleted)
        groups = policy.find_merges(list(index.segments.values()))
        check_groups(policy, list(index.segments.values()), set(), groups)
        index.merge(groups)
        live = index.live
        bound = segments_per_tier * tiers(policy, live) + 2 * live / max_segment + math.log2(max(live, 2))
        assert len(index.segments) <= bound
        assert all(s.deleted_pct <= deletes_pct_allowed for s in index.segments.values())
        assert index.amplification <= 2 + math.log(index.added, policy.merge_factor)


@settings(PROPERTY, max_examples=12)
@given(
    seed=st.integers(0, 2**32 - 1),
    policy=st.sampled_from([MergePolicy(), MergePolicy(segments_per_tier=4, max_merge_at_once=4, floor_segment=10)]),
    takes=st.integers(1, 10),
)
def test_merges_that_take_a_while(seed: int, policy: MergePolicy, takes: int) -> None:
    """1,000 writes while each merge runs for `takes` writes: new groups leave running ones alone, and the
    segments not being merged stay within the same bound as when merges are instant."""
    rng = random.Random(seed)
    index = Index()
    running: list[tuple[int, list[str]]] = []
    for step in range(1_000):
        index.write(rng, 0.3, 20)
        index.merge([group for end, group in running if end == step])
        running = [(end, group) for end, group in running if end > step]
        busy = {name for _, group in running for name in group}
        groups = policy.find_merges(list(index.segments.values()), busy)
        check_groups(policy, list(index.segments.values()), busy, groups)
        running += [(step + takes, group) for group in groups]
        busy |= {name for group in groups for name in group}
        assert len(index.segments) - len(busy) <= policy.segments_per_tier * tiers(policy, index.live)


segment_lists = st.lists(
    st.tuples(st.integers(0, 5_000), st.floats(0, 1)).map(lambda t: (t[0], round(t[0] * t[1]))),
    max_size=40,
).map(lambda sizes: [SegmentSize(f"s{i:02d}", rows, gone) for i, (rows, gone) in enumerate(sizes)])


@settings(PROPERTY, max_examples=300)
@given(segments=segment_lists, data=st.data())
def test_groups_are_valid_and_deterministic(segments: list[SegmentSize], data: st.DataObject) -> None:
    """Random indexes with random merges running: valid groups, the same for the same input in any order."""
    policy = MergePolicy(segments_per_tier=4, max_merge_at_once=5, floor_segment=100, max_segment=8_000)
    merging = set(data.draw(st.lists(st.sampled_from([s.name for s in segments]))) if segments else [])
    groups = policy.find_merges(segments, merging)
    check_groups(policy, segments, merging, groups)
    shuffled = data.draw(st.permutations(segments))
    assert policy.find_merges(shuffled, sorted(merging)) == groups
    assert policy.find_merges(segments, merging) == groups
    for segment in segments:
        if segment.live == 0 and segment.name not in merging:
            assert [segment.name] in groups, "a wholly deleted segment is left standing"
    assert policy.force_merge(shuffled, merging) == policy.force_merge(segments, merging)


def test_a_wholly_deleted_segment_is_always_dropped() -> None:
    policy = MergePolicy()
    segments = [SegmentSize("big", 500_000, 0), SegmentSize("gone", 12, 12), SegmentSize("clean", 9, 0)]
    assert policy.find_merges(segments) == [["gone"]]
    assert policy.find_merges(segments, merging={"gone"}) == []


def test_too_many_deletes_rewrite_a_segment_alone() -> None:
    policy = MergePolicy()
    assert policy.find_merges([SegmentSize("a", 1_000, 250)]) == [["a"]]
    assert policy.find_merges([SegmentSize("a", 1_000, 200)]) == []


def test_nothing_is_merged_within_the_budget() -> None:
    policy = MergePolicy()
    ten = [SegmentSize(f"s{i}", 15, 0) for i in range(10)]
    assert policy.find_merges(ten) == []
    groups = policy.find_merges([*ten, SegmentSize("s10", 3, 0)])
    assert len(groups) == 1 and len(groups[0]) == policy.merge_factor
    assert "s10" in groups[0], "the smallest merge of equal skew is taken"


def test_running_merges_are_left_alone_but_counted() -> None:
    """Six small segments are over a budget of five; a running merge of 400 passages raises it to ten."""
    policy = MergePolicy(segments_per_tier=4, max_merge_at_once=4, floor_segment=10)
    six = [SegmentSize(f"s{i}", 10, 0) for i in range(6)]
    assert policy.allowed_segments(60, 10) == 5 and policy.allowed_segments(460, 10) == 10
    assert policy.find_merges(six) == [["s0", "s1", "s2", "s3"]], "equal merges: the first by name"
    assert policy.find_merges([*six, SegmentSize("busy", 400, 0)], {"busy"}) == []
    assert policy.find_merges(six, {"s0", "s1"}) == []


def test_segments_near_the_largest_size_are_left_alone() -> None:
    policy = MergePolicy(max_segment=1_000, floor_segment=10)
    large = [SegmentSize(f"l{i:02d}", 600, 0) for i in range(30)]
    assert policy.find_merges(large) == []
    groups = policy.find_merges([*large[:-1], SegmentSize("l29", 600, 200)])
    assert groups == [["l29"]]


def test_force_merge_makes_one_segment() -> None:
    policy = MergePolicy()
    segments = [SegmentSize("b", 40, 3), SegmentSize("a", 7_000, 0), SegmentSize("c", 5, 5)]
    assert policy.force_merge(segments) == [["a", "b", "c"]]
    assert policy.force_merge(segments, merging={"a"}) == [["b", "c"]]
    assert policy.force_merge([SegmentSize("a", 7_000, 1)]) == [["a"]]
    assert policy.force_merge([SegmentSize("a", 7_000, 0)]) == []
    assert policy.force_merge([]) == []


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="deleted"):
        SegmentSize("a", 3, 4)
    with pytest.raises(ValueError, match="unique"):
        MergePolicy().find_merges([SegmentSize("a", 3, 0), SegmentSize("a", 4, 0)])
    with pytest.raises(ConfigError, match="segments_per_tier=1"):
        MergePolicy(segments_per_tier=1)
    with pytest.raises(ConfigError, match="deletes_pct_allowed"):
        MergePolicy(deletes_pct_allowed=120.0)
