"""Kill -9 a writer at seeded moments (a rebuild, an update, a merge, a write and the merges it triggers): every
time, the index loads and answers exactly as the last completed commit did, the next writer is not locked out,
and what the killed process left behind is gone after the next commit. Readers keep the segments they hold."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from semsearch.errors import CorruptIndexError
from semsearch.index.model.embedder import Embedder
from semsearch.index.storage.folder import LOCK, ROOT_MARKER
from semsearch.index.storage.generations import CURRENT, current_name, writer_lock
from semsearch.index.storage.manifest import MANIFEST, Manifest
from semsearch.index.writing.builder import build_index, delete_articles
from semsearch.index.writing.merging import optimize
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS as RECORDS
from tests.helpers import jsonl, start_indexer, start_semsearch, write_corpus

SEED = 20261127
KILLS_PER_JOB = 10
QUERIES = ("press freedom and journalists", "elections and protests", "energy and water", "social media campaign")
Answers = list[list[tuple[str, int, str, float]]]


def ranked(searcher: Searcher) -> Answers:
    return [[(h.article_id, h.passage_id, h.text, round(h.score, 4)) for h in searcher.search(q, k=5)] for q in QUERIES]


def answers(settings: Settings, embedder: Embedder) -> Answers:
    searcher = Searcher.open(settings, embedder)
    try:
        return ranked(searcher)
    finally:
        searcher.close()


def commit(root: Path) -> Manifest:
    return Manifest.from_file(root / str(current_name(root)) / MANIFEST)


def named_segments(root: Path) -> set[str]:
    return {s["name"] for s in commit(root).segments}


def assert_clean(root: Path) -> None:
    """Nothing in the folder but the current commit, at most one commit before it, the segments the current
    commit names, and the index's own files: no staging folder and no segment of a killed write or merge. An empty
    folder holds nothing and is not counted: a kill between making a folder and marking it (or between removing
    its marker and the folder) leaves one, which clean-up, removing only marked folders, leaves alone."""
    entries = {p.name for p in root.iterdir() if not (p.is_dir() and not any(p.iterdir()))}
    commits = {e for e in entries if e.startswith("gen-")}
    assert current_name(root) in commits and len(commits) <= 2, sorted(entries)
    assert {e for e in entries if e.startswith("seg-")} == named_segments(root), sorted(entries)
    assert entries - commits - named_segments(root) <= {CURRENT, LOCK, ROOT_MARKER}, sorted(entries)


def written(root: Path) -> set[str]:
    """The commits, segments and staging folders in the index folder."""
    return {p.name for p in root.iterdir() if p.name.startswith(("gen-", "seg-", "tmp-"))}


@dataclass(frozen=True)
class Run:
    """A job's run, watched: how long it took, when its first folder appeared, when each commit became current,
    and when the first commit's clean-up was seen done."""

    duration: float
    first_write: float
    commits: list[float]
    cleaned: float


def leftovers(root: Path, previous: str | None) -> set[str] | None:
    """What clean-up has still to remove (None while the commit cannot be read: it was just replaced)."""
    try:
        current, named = current_name(root), named_segments(root)
    except CorruptIndexError:
        return None
    return written(root) - named - {current, previous}


def watch(process: subprocess.Popen[bytes], root: Path, started: float) -> Run:
    """Wait for `process` (exit 0), polling the folder every millisecond (to place kills, not to judge: a moment
    missed between two polls only moves a kill a little)."""
    before, last = written(root), current_name(root)
    previous = last
    first = cleaned = None
    commits: list[float] = []
    while process.poll() is None:
        now = time.monotonic() - started
        if first is None and written(root) - before:
            first = now
        if (name := current_name(root)) != last:
            commits.append(now)
            last = name
        if commits and cleaned is None and leftovers(root, previous) == set():
            cleaned = now
        time.sleep(0.001)
    duration = time.monotonic() - started
    if current_name(root) != last:
        commits.append(duration)
    assert process.returncode == 0 and commits and first is not None
    return Run(duration, first, commits, duration if cleaned is None else cleaned)


def moments(rng: random.Random, duration: float, window: tuple[float, float]) -> list[float]:
    """Half the kills anywhere in the run, half in `window`, the part where the commit is made."""
    spread = [rng.uniform(0.05, 1.0) * duration for _ in range(KILLS_PER_JOB // 2)]
    return spread + [rng.uniform(*window) for _ in range(KILLS_PER_JOB - len(spread))]


def kill_at(process: subprocess.Popen[bytes], moment: float) -> None:
    time.sleep(moment)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


def kill_plan(rng: random.Random, run: Run) -> list[tuple[str, float]]:
    """(anchor, seconds after it): 3 kills anywhere in the run; 3 from its first folder to a little past its
    last commit (writing segments, committing); 4 from its first commit to the end of that
    commit's clean-up (milliseconds). Anchored on what the job does, start-up time on a busy machine
    cannot move them off."""
    writing = run.commits[-1] - run.first_write
    cleaning = run.cleaned - run.commits[0]
    return (
        [("start", rng.uniform(0.05, 1.0) * run.duration) for _ in range(3)]
        + [("first folder", rng.uniform(0.0, 1.2 * writing)) for _ in range(3)]
        + [("commit", rng.uniform(0.0, cleaning + 0.001)) for _ in range(KILLS_PER_JOB - 6)]
    )


def kill_during(start: Callable[[], subprocess.Popen[bytes]], root: Path, anchor: str, moment: float) -> None:
    """Start a job and SIGKILL it `moment` seconds after the anchor: its start, its first folder in `root`, or
    its first commit."""
    before, old = written(root), current_name(root)
    process = start()
    arrived: Callable[[], bool] = {
        "start": lambda: True,
        "first folder": lambda: bool(written(root) - before),
        "commit": lambda: current_name(root) != old,
    }[anchor]
    while process.poll() is None and not arrived():
        time.sleep(0.0005)
    kill_at(process, moment)


def trace(root: Path, state: str) -> str:
    """`state`, and what the kill left for clean-up: staging folders, segments the current commit does not name."""
    now = written(root)
    staging = any(e.startswith("tmp-") for e in now)
    unnamed = {e for e in now if e.startswith("seg-")} - named_segments(root)
    return state + ", tmp-* left" * staging + ", unnamed seg-* left" * bool(unnamed)


def finish_and_check_clean(trial: Settings, embedder: Embedder, expected: Answers) -> None:
    """After a kill: the next writer gets the lock, a following optimize completes without changing an answer,
    and one more commit (deleting the first hit's article) leaves nothing of the killed process behind."""
    with writer_lock(trial.index):  # a killed writer leaves no lock behind
        pass
    optimize(trial)
    assert len(commit(trial.index).segments) == 1
    assert answers(trial, embedder) == expected
    delete_articles(trial, [expected[0][0][0]], embedder=embedder, merge=False)  # commits, so cleans up
    assert_clean(trial.index)


@pytest.fixture(scope="module")
def base(gv_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The small index, and beside it the corpora of a rebuild and an update."""
    root = tmp_path_factory.mktemp("crash")
    settings = gv_settings.replace(index=root / "base")
    shutil.copytree(gv_settings.index, settings.index)
    correction = "\n\nA later correction to this story, added by an editor."
    changed = dict(RECORDS[1], text=str(RECORDS[1]["text"]) + correction)
    # Small jobs: most of a run is starting Python and loading the model, so moments spread over all phases.
    write_corpus(root / "rebuild", {"b.jsonl": jsonl(RECORDS[4:7])})
    write_corpus(root / "update", {"c.jsonl": jsonl([RECORDS[0], changed, RECORDS[3], RECORDS[9]])})
    return settings


@pytest.fixture(scope="module")
def segmented(gv_settings: Settings, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """An index of ten segments, written without merging: the small index and nine writes of two articles, one
    of them replacing an article of the first segment; then a delete empties most of the second segment."""
    root = tmp_path_factory.mktemp("segmented")
    settings = gv_settings.replace(index=root / "index", merge=False)
    shutil.copytree(gv_settings.index, settings.index)
    changed = dict(RECORDS[1], text=str(RECORDS[1]["text"]) + "\n\nA later correction to this story.")
    for n in range(9):
        part = [*([changed] if n == 3 else []), *RECORDS[4 + 2 * n : 6 + 2 * n]]
        build_index([write_corpus(root / f"part-{n}", {"a.jsonl": jsonl(part)})], settings, embedder=embedder)
    delete_articles(settings, [str(RECORDS[5]["_id"])], embedder=embedder, merge=False)
    refs = commit(settings.index).segments
    assert len(refs) == 10 and sum(len(r["deleted"]) for r in refs) == 2
    return settings


@pytest.mark.parametrize("job", ["rebuild", "update"])
def test_kill_9_at_seeded_moments_leaves_a_whole_generation(
    job: str, base: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    corpus = base.index.parent / job
    args = [str(corpus), "--rebuild"] if job == "rebuild" else [str(corpus), "--prune"]
    old_name, old_answers = current_name(base.index), answers(base, embedder)

    reference = base.replace(index=tmp_path / "reference")
    shutil.copytree(base.index, reference.index)
    started = time.monotonic()
    assert start_indexer(reference.index, args).wait(timeout=600) == 0
    duration = time.monotonic() - started
    new_answers = answers(reference, embedder)
    assert new_answers != old_answers

    rng = random.Random(f"{SEED}-{job}")
    # The last 40% of a run is where the generation is written.
    outcomes: Counter[str] = Counter()
    for n, moment in enumerate(moments(rng, duration, (0.6 * duration, 1.05 * duration))):
        trial = base.replace(index=tmp_path / f"trial-{n}")
        shutil.copytree(base.index, trial.index)
        kill_at(start_indexer(trial.index, args), moment)
        got = answers(trial, embedder)
        if current_name(trial.index) == old_name:
            outcomes["previous"] += 1
            assert got == old_answers, f"kill at {moment:.2f} s"
        else:
            outcomes["new"] += 1
            assert got == new_answers, f"kill at {moment:.2f} s"
        finish_and_check_clean(trial, embedder, got)
        shutil.rmtree(trial.index)
    print(f"{job}: {KILLS_PER_JOB} kills over a {duration:.1f} s run: {dict(outcomes)}")
    assert sum(outcomes.values()) == KILLS_PER_JOB


def test_kill_9_during_optimize_never_changes_an_answer(
    segmented: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    old_name, old_answers = current_name(segmented.index), answers(segmented, embedder)
    reference = segmented.replace(index=tmp_path / "reference")
    shutil.copytree(segmented.index, reference.index)
    started = time.monotonic()
    run = watch(
        start_semsearch(reference.index, ["optimize", "--index", str(reference.index)]), reference.index, started
    )
    merged = commit(reference.index)
    assert len(merged.segments) == 1 and not merged.segments[0]["deleted"]
    assert answers(reference, embedder) == old_answers  # a merge changes no article, passage id, text or score
    assert_clean(reference.index)

    rng = random.Random(f"{SEED}-optimize")
    outcomes: Counter[str] = Counter()
    for n, (anchor, moment) in enumerate(kill_plan(rng, run)):
        trial = segmented.replace(index=tmp_path / f"trial-{n}")
        shutil.copytree(segmented.index, trial.index)
        job = ["optimize", "--index", str(trial.index)]
        kill_during(partial(start_semsearch, trial.index, job), trial.index, anchor, moment)
        outcomes[trace(trial.index, "merged" if current_name(trial.index) != old_name else "previous")] += 1
        assert answers(trial, embedder) == old_answers, f"kill {moment:.3f} s after {anchor}"
        finish_and_check_clean(trial, embedder, old_answers)
        shutil.rmtree(trial.index)
    print(f"optimize: {KILLS_PER_JOB} kills over a {run.duration:.2f} s run: {dict(outcomes)}")
    assert sum(outcomes.values()) == KILLS_PER_JOB


def test_kill_9_during_a_write_and_its_merges_leaves_one_of_two_answers(
    segmented: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    edited = dict(RECORDS[6], text=f"{RECORDS[6]['text']}\n\nAn editor's note.")
    corpus = write_corpus(tmp_path / "corpus", {"w.jsonl": jsonl([edited, *RECORDS[30:33]])})
    job = ["index", str(corpus)]
    env = {"SEMSEARCH_MERGE_FLOOR": "50"}  # the write makes an eleventh segment, one more than a tier holds
    old_name, old_answers = current_name(segmented.index), answers(segmented, embedder)
    reference = segmented.replace(index=tmp_path / "reference")
    shutil.copytree(segmented.index, reference.index)
    started = time.monotonic()
    run = watch(start_semsearch(reference.index, job, env), reference.index, started)
    after = commit(reference.index)
    assert after.last_merge and len(after.segments) < 11  # the write was merged after its commit
    new_answers = answers(reference, embedder)
    assert new_answers != old_answers

    rng = random.Random(f"{SEED}-write-and-merges")
    outcomes: Counter[str] = Counter()
    for n, (anchor, moment) in enumerate(kill_plan(rng, run)):
        trial = segmented.replace(index=tmp_path / f"trial-{n}")
        shutil.copytree(segmented.index, trial.index)
        kill_during(partial(start_semsearch, trial.index, job, env), trial.index, anchor, moment)
        got = answers(trial, embedder)
        if current_name(trial.index) == old_name:
            outcomes[trace(trial.index, "before the write")] += 1
            assert got == old_answers, f"kill {moment:.3f} s after {anchor}"
        else:  # the write's commit, or a merge's after it: all answer as the write did
            outcomes[trace(trial.index, "merged" if commit(trial.index).last_merge else "written")] += 1
            assert got == new_answers, f"kill {moment:.3f} s after {anchor}"
        finish_and_check_clean(trial, embedder, got)
        shutil.rmtree(trial.index)
    print(f"write and merges: {KILLS_PER_JOB} kills over a {run.duration:.1f} s run: {dict(outcomes)}")
    assert sum(outcomes.values()) == KILLS_PER_JOB


def test_clean_up_never_removes_a_segment_a_reader_holds(
    segmented: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    settings = segmented.replace(index=tmp_path / "index")
    shutil.copytree(segmented.index, settings.index)
    held = named_segments(settings.index)
    reader = Searcher.open(settings, embedder)
    try:
        before = ranked(reader)
        assert optimize(settings)
        assert held.isdisjoint(named_segments(settings.index))
        assert all((settings.index / name).is_dir() for name in held)
        assert ranked(reader) == before
        assert answers(settings, embedder) == before
        # Two commits later, the reader's commit is gone, but not the segments it holds.
        delete_articles(settings, [str(RECORDS[0]["_id"])], embedder=embedder, merge=False)
        assert all((settings.index / name).is_dir() for name in held)
        assert ranked(reader) == before
    finally:
        reader.close()
    delete_articles(settings, [str(RECORDS[2]["_id"])], embedder=embedder, merge=False)
    assert not any((settings.index / name).exists() for name in held)
    assert_clean(settings.index)
