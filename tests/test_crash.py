"""Kill -9 the indexer at 20 seeded moments of a rebuild and an update: every time, the index loads and
answers exactly as the last completed generation did, and the next writer is not locked out."""

from __future__ import annotations

import random
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from semsearch.index.model.embedder import Embedder
from semsearch.index.storage.generations import current_name, writer_lock
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS as RECORDS
from tests.helpers import jsonl, start_indexer, write_corpus

SEED = 20261127
KILLS_PER_JOB = 10
QUERIES = ("press freedom and journalists", "elections and protests", "energy and water", "social media campaign")
Answers = list[list[tuple[str, int, float]]]


def answers(settings: Settings, embedder: Embedder) -> Answers:
    searcher = Searcher.open(settings, embedder)
    try:
        return [[(h.article_id, h.passage_id, round(h.score, 4)) for h in searcher.search(q, k=5)] for q in QUERIES]
    finally:
        searcher.close()


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
    # Half the moments anywhere in the run, half in its last 40%, where the generation is written.
    moments = [rng.uniform(0.05, 1.0) * duration for _ in range(KILLS_PER_JOB // 2)]
    moments += [rng.uniform(0.6, 1.05) * duration for _ in range(KILLS_PER_JOB - len(moments))]
    outcomes: Counter[str] = Counter()
    for n, moment in enumerate(moments):
        trial = base.replace(index=tmp_path / f"trial-{n}")
        shutil.copytree(base.index, trial.index)
        process = start_indexer(trial.index, args)
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        got = answers(trial, embedder)
        if current_name(trial.index) == old_name:
            outcomes["previous"] += 1
            assert got == old_answers, f"kill at {moment:.2f} s"
        else:
            outcomes["new"] += 1
            assert got == new_answers, f"kill at {moment:.2f} s"
        with writer_lock(trial.index):  # a killed writer leaves no lock behind
            pass
        shutil.rmtree(trial.index)
    print(f"{job}: {KILLS_PER_JOB} kills over a {duration:.1f} s run: {dict(outcomes)}")
    assert sum(outcomes.values()) == KILLS_PER_JOB
