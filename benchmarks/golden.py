"""Golden questions on the bundled news corpus, and a small evaluator for an index built from it.

Run: `python -m semsearch.benchmarks.golden --index DIR` prints each question's rank of its article, MRR and recall@k.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from semsearch.search.searcher import Searcher

EXAMPLE = ("energy cooperation in Central Asia", frozenset({"china-kazakhstan-cooperation.txt"}))

# (question, acceptable article ids); written against specific posts without copying their titles.
GOLDEN: list[tuple[str, frozenset[str]]] = [
    ("when will Lesotho vote in its national elections", frozenset({"gv-322227"})),
    ("bloggers rally after a married pair of reporters was killed", frozenset({"gv-321945"})),
    ("officers beating a detained migrant caught on video in Athens", frozenset({"gv-317627"})),
    ("should Kenyan companies give interns a salary", frozenset({"gv-321228", "gv-321230"})),
    ("Malawi leader wants to repeal the law against gay people", frozenset({"gv-322665"})),
    ("British envoy in Beirut to hold a Twitter conversation with a pop star", frozenset({"gv-322499"})),
    ("Mexican novelist dies and people pay tribute online", frozenset({"gv-321895"})),
    ("artwork showing the president's private parts sparks a debate about free expression", frozenset({"gv-323082"})),
    ("International Workers' Day rallies across Arab countries", frozenset({"gv-316713"})),
    ("Israeli opposition leader joins the coalition government", frozenset({"gv-319509"})),
    ("Brazilian senate passes a new forest law and bloggers respond", frozenset({"gv-318111"})),
    ("jailed former prime minister and the European football championship", frozenset({"gv-317866"})),
]


@dataclass(frozen=True)
class GoldenResult:
    question: str
    rank: int | None  # rank of the first passage from an expected article, within the top `depth`
    seconds: float


def evaluate(
    searcher: Searcher, questions: Sequence[tuple[str, frozenset[str]]], depth: int = 20
) -> list[GoldenResult]:
    results = []
    for question, expected in questions:
        started = time.perf_counter()
        hits = searcher.search(question, k=depth)
        elapsed = time.perf_counter() - started
        rank = next((h.rank for h in hits if h.article_id in expected), None)
        results.append(GoldenResult(question, rank, elapsed))
    return results


def summarise(results: Sequence[GoldenResult]) -> dict[str, float]:
    ranks = [r.rank for r in results]
    return {
        "questions": len(results),
        "mrr": statistics.fmean(1 / r if r else 0.0 for r in ranks),
        "recall@1": statistics.fmean(1.0 if r and r <= 1 else 0.0 for r in ranks),
        "recall@3": statistics.fmean(1.0 if r and r <= 3 else 0.0 for r in ranks),
        "recall@10": statistics.fmean(1.0 if r and r <= 10 else 0.0 for r in ranks),
        "median_ms": statistics.median(r.seconds for r in results) * 1000,
    }


def main(argv: Sequence[str] | None = None) -> None:
    from semsearch.api.cli import load_settings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, default=None, help="index of the bundled corpus")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    settings = load_settings(index=args.index)
    searcher = Searcher.open(settings)
    try:
        searcher.search("warm-up", k=1)
        results = evaluate(searcher, [EXAMPLE, *GOLDEN])
        embed_title = searcher.index.manifest.settings.get("embed_title")
    finally:
        searcher.close()
    for r in results:
        print(f"{r.rank if r.rank else '-':>3}  {r.question}")
    figures = {"index": str(settings.index), "embed_title": embed_title, **summarise(results)}
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
