"""Indexing throughput and footprint: a full build next to plain `SentenceTransformer.encode`, same passages.

Each measured step runs in a fresh child process (`python -m semsearch.benchmarks.indexing CHILD ...`), so its peak
RSS is its own (read with `os.wait4`) and no step warms another's caches. Runs alternate baseline and build;
then come where the embedding time goes (`semsearch.benchmarks.phases`), the planner's choice against every plan
it searches (`semsearch.benchmarks.plans`), and the model's matrix products alone in int8 and fp32
(`semsearch.benchmarks.kernels`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from semsearch.benchmarks.report import markdown_table, new_figure, save_figure
from semsearch.index.model.planning.measure import PROBE_PASSAGES

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * _PAGE


def run_child(args: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run one child step; its JSON result plus its wall seconds and peak RSS in bytes."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "semsearch.benchmarks.indexing", *args],
        stdout=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    if process.returncode != 0:
        raise RuntimeError(f"benchmark step {' '.join(args)} failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - started, 3)
    result["peak_rss_bytes"] = usage.ru_maxrss * 1024  # kilobytes on Linux
    return result


def measure_indexing(
    corpus: Path, work_dir: Path, runs: int, plan_rounds: int = 3, probe: int = PROBE_PASSAGES
) -> dict[str, Any]:
    """`runs` rounds of (baseline encode, full build), then the built index's size on disk and in memory, the
    phases of embedding, every plan against the planner's choice (`plan_rounds` rounds on a probe of `probe`
    passages), and the matrix products alone."""
    index_dir = work_dir / "indexing-run"
    texts_file = work_dir / "indexing-passages.json"
    baseline: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    for round_no in range(runs):
        shutil.rmtree(index_dir, ignore_errors=True)
        ours.append(run_child(["build", str(corpus), str(index_dir), str(texts_file)]))
        baseline.append(run_child(["encode", str(texts_file)]))
        print(
            f"round {round_no + 1}/{runs}: build {ours[-1]['embed_passages_per_second']:.1f} passages/s, "
            f"plain encode {baseline[-1]['passages_per_second']:.1f} passages/s",
            file=sys.stderr,
        )
    footprint = run_child(["load", str(index_dir)])
    phases = run_child(["phases", str(texts_file)])
    plans = run_child(["plans", str(plan_rounds), str(probe)])
    products = run_child(["products"])
    shutil.rmtree(index_dir, ignore_errors=True)
    texts_file.unlink(missing_ok=True)

    def median(rows: Sequence[Mapping[str, Any]], key: str) -> float:
        return round(statistics.median(float(r[key]) for r in rows), 3)

    def spread(rows: Sequence[Mapping[str, Any]], key: str) -> list[float]:
        return [round(min(float(r[key]) for r in rows), 3), round(max(float(r[key]) for r in rows), 3)]

    passages = int(ours[0]["passages"])
    ours_rate = median(ours, "embed_passages_per_second")
    base_rate = median(baseline, "passages_per_second")
    return {
        "passages": passages,
        "articles": int(ours[0]["articles"]),
        "runs": runs,
        "build": {
            "embed_passages_per_second": ours_rate,
            "embed_passages_per_second_spread": spread(ours, "embed_passages_per_second"),
            "build_passages_per_second": median(ours, "build_passages_per_second"),
            "build_seconds": median(ours, "build_seconds"),
            "model_load_seconds": median(ours, "model_load_seconds"),
            "process_seconds": median(ours, "process_seconds"),
            "peak_rss_bytes": int(median(ours, "peak_rss_bytes")),
            "backend": ours[0]["backend"],
            "plan": ours[0].get("plan"),
            # Reading, splitting, the vector and lexical indexes and the files: the build's time outside embedding.
            "other_seconds": round(
                statistics.median(float(r["build_seconds"]) - float(r["embed_seconds"]) for r in ours), 3
            ),
        },
        "baseline": {
            "what": "SentenceTransformer(path, device='cpu').encode(passages, batch_size=32), fp32",
            "passages_per_second": base_rate,
            "passages_per_second_spread": spread(baseline, "passages_per_second"),
            "encode_seconds": median(baseline, "encode_seconds"),
            "process_seconds": median(baseline, "process_seconds"),
            "peak_rss_bytes": int(median(baseline, "peak_rss_bytes")),
        },
        "ratio_embed_vs_baseline": round(ours_rate / base_rate, 3),
        # Each round's build against the plain encode that ran right after it.
        "ratio_embed_rounds": [
            round(float(o["embed_passages_per_second"]) / float(b["passages_per_second"]), 3)
            for o, b in zip(ours, baseline, strict=True)
        ],
        "ratio_build_vs_baseline": round(median(ours, "build_passages_per_second") / base_rate, 3),
        "disk_bytes_per_passage": round(footprint["disk_bytes"] / passages, 1),
        "memory_bytes_per_passage": round(footprint["memory_bytes"] / passages, 1),
        "disk_bytes": footprint["disk_bytes"],
        "memory_bytes": footprint["memory_bytes"],
        "phases": _without_process(phases),
        "plans": _without_process(plans),
        "products": _without_process(products),
    }


def _without_process(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("process_seconds", "peak_rss_bytes")}


def indexing_markdown(record: Mapping[str, Any]) -> str:
    b, p = record["build"], record["baseline"]
    rows = [
        [
            f"semsearch build ({b['backend']})",
            b["embed_passages_per_second"],
            b["build_passages_per_second"],
            b["build_seconds"],
            round(b["peak_rss_bytes"] / 2**20),
        ],
        [
            "plain SentenceTransformer.encode (fp32)",
            p["passages_per_second"],
            "",
            p["encode_seconds"],
            round(p["peak_rss_bytes"] / 2**20),
        ],
    ]
    return (
        f"{record['passages']} passages of {record['articles']} records ({record['corpus']}); median of "
        f"{record['runs']} alternating runs, each in a fresh process.\n\n"
        + markdown_table(["what", "embed passages/s", "whole build passages/s", "seconds", "peak RSS MiB"], rows)
        + f"\n\nRatio to plain encode: embedding {record['ratio_embed_vs_baseline']:.2f}×{_rounds(record)}, "
        f"whole build {record['ratio_build_vs_baseline']:.2f}×. Index size: "
        f"{record['disk_bytes_per_passage']:.0f} bytes per passage on disk, "
        f"{record['memory_bytes_per_passage']:.0f} bytes per passage in memory once loaded.\n"
        + _phases_lines(record)
        + _plans_lines(record.get("plans"))
        + _products_line(record.get("products"))
    )


def _phases_lines(record: Mapping[str, Any]) -> str:
    """Where the time goes: the phases of embedding per passage on one lane, the transformer's operators, and
    the build outside embedding; empty for a record without them."""
    phases = record.get("phases")
    if not phases or "ms_per_passage" not in phases:
        return ""
    ms = phases["ms_per_passage"]
    build = record["build"]
    operators = ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in phases["operators"])
    other = (
        f"; outside embedding (reading, splitting, indexes, files) the build spent {build['other_seconds']:.2f} s "
        f"of {build['build_seconds']:.2f} s"
        if "other_seconds" in build
        else ""
    )
    return (
        f"\nWhere embedding time goes ({phases['passages']} passages of {phases['tokens_per_passage']:.0f} tokens, "
        f"plan {phases['plan']}, ms per passage on one lane of {phases['lane_threads']} thread(s)): tokenising "
        f"{ms['tokenise']}, padding {ms['pad']} ({100 * phases['padding_share']:.1f}% of tokens are padding), "
        f"transformer {ms['transformer']}, pooling {ms['pool']}{other}. The transformer by operator: {operators}.\n"
    )


def _plans_lines(plans: Mapping[str, Any] | None) -> str:
    """The planner's choice against the fastest plan measured on the same probe; empty without them."""
    if not plans:
        return ""
    rows = [[p["plan"], p["passages_per_second"], "yes" if p["gate"] else "no"] for p in plans["plans"]]
    chosen = "; ".join(
        f"{name} choice {c['plan']}: {c['passages_per_second']} passages/s, {c['ratio_vs_fastest']:.2f}× the fastest"
        for name, c in plans["chosen"].items()
    )
    return (
        f"\nPlans on the planner's probe ({plans['probe']['passages']} SQuAD passages, fastest of "
        f"{plans['rounds']} alternating rounds): the planner measured afresh in {plans['first_use_seconds']:.1f} s "
        f"(first use, conversion not included); {chosen}. Fastest that passes the gate: {plans['fastest']} "
        f"({plans['fastest_passages_per_second']} passages/s).\n\n"
        + markdown_table(["plan", "probe passages/s", "passes the gate"], rows)
        + "\n"
    )


def _rounds(record: Mapping[str, Any]) -> str:
    """Each round's ratio, in brackets, when the record has them."""
    rounds = record.get("ratio_embed_rounds")
    return f" (rounds: {', '.join(f'{r:.2f}×' for r in rounds)})" if rounds else ""


def _products_line(products: Mapping[str, Any] | None) -> str:
    """The Markdown sentence on the matrix products' int8/fp32 speed; empty for a record without them."""
    if not products:
        return ""
    return (
        f"\nMatrix products alone ({products['what']}, {products['rows']} rows): int8 {products['int8_gmacs']} "
        f"GMAC/s, fp32 {products['fp32_gmacs']} GMAC/s: {products['ratio_int8_vs_fp32']:.2f}× on this CPU.\n"
    )


def indexing_plot(record: Mapping[str, Any], path: Path) -> None:
    fig, ax = new_figure("Indexing throughput (median of runs)", "", "passages/s")
    labels = ["plain encode", "semsearch embed", "semsearch whole build"]
    values = [
        record["baseline"]["passages_per_second"],
        record["build"]["embed_passages_per_second"],
        record["build"]["build_passages_per_second"],
    ]
    ax.bar(labels, values, color=["grey", "tab:blue", "tab:cyan"])
    save_figure(fig, path)


# --- child steps (each in its own process) -------------------------------------------------------


def _child_build(corpus: Path, index_dir: Path, texts_file: Path) -> dict[str, Any]:
    from semsearch.api.cli import load_settings
    from semsearch.index.model.embedder import Embedder
    from semsearch.index.storage.store import open_index
    from semsearch.index.writing.builder import build_index

    settings = load_settings(index=index_dir)
    started = time.perf_counter()
    embedder = Embedder.load(settings)
    loaded = time.perf_counter() - started
    summary = build_index([corpus], settings, embedder=embedder)
    stored = open_index(index_dir)
    try:
        rows = stored.passages(list(range(stored.size)))
        texts_file.write_text(json.dumps([rows[i].text for i in sorted(rows)]), encoding="utf-8")
    finally:
        stored.close()
    return {
        "passages": summary.passages,
        "articles": summary.articles,
        "embed_passages_per_second": round(summary.passages_per_second, 3),
        "build_passages_per_second": round(summary.passages / summary.seconds, 3),
        "build_seconds": round(summary.seconds, 3),
        "model_load_seconds": round(loaded, 3),
        "embed_seconds": round(summary.embed_seconds, 3),
        "backend": embedder.info.backend,
        "plan": embedder.plan.name if embedder.plan else None,
    }


def _child_encode(texts_file: Path) -> dict[str, Any]:
    from semsearch.api.cli import load_settings
    from semsearch.index.model.embedder import configured_model

    settings = load_settings()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(settings.threads)
    transformers.logging.disable_progress_bar()
    texts = json.loads(texts_file.read_text(encoding="utf-8"))
    model = SentenceTransformer(configured_model(settings).path, device="cpu", local_files_only=True)
    started = time.perf_counter()
    model.encode(texts, batch_size=32, show_progress_bar=False)
    seconds = time.perf_counter() - started
    return {"passages": len(texts), "encode_seconds": round(seconds, 3), "passages_per_second": len(texts) / seconds}


def _child_load(index_dir: Path) -> dict[str, Any]:
    # Libraries are imported before the baseline, so only the index itself is counted.
    import faiss  # noqa: F401
    import numpy as np
    import Stemmer  # noqa: F401

    from semsearch.index.storage.store import open_index

    before = rss_bytes()
    stored = open_index(index_dir)
    float(np.sum(stored.article_vectors)) + float(np.sum(stored.passage_articles))
    stored.passages([0])
    after = rss_bytes()
    disk = stored.disk_bytes()
    stored.close()
    return {"disk_bytes": disk, "memory_bytes": after - before}


def _child_phases(texts_file: Path) -> dict[str, Any]:
    from semsearch.api.cli import load_settings
    from semsearch.benchmarks.phases import measure_phases

    return measure_phases(load_settings(), json.loads(texts_file.read_text(encoding="utf-8")))


def _child_plans(rounds: int, probe: int) -> dict[str, Any]:
    from semsearch.api.cli import load_settings
    from semsearch.benchmarks.plans import measure_plans

    return measure_plans(load_settings(), rounds, probe)


def _child_products() -> dict[str, Any]:
    from semsearch.api.cli import load_settings
    from semsearch.benchmarks.kernels import measure_products

    return measure_products(load_settings().threads)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One child step of `semsearch bench indexing`.")
    sub = parser.add_subparsers(dest="step", required=True)
    build = sub.add_parser("build")
    build.add_argument("corpus", type=Path)
    build.add_argument("index", type=Path)
    build.add_argument("texts", type=Path)
    sub.add_parser("encode").add_argument("texts", type=Path)
    sub.add_parser("load").add_argument("index", type=Path)
    sub.add_parser("phases").add_argument("texts", type=Path)
    plans = sub.add_parser("plans")
    plans.add_argument("rounds", type=int)
    plans.add_argument("probe", type=int)
    sub.add_parser("products")
    args = parser.parse_args(argv)
    if args.step == "build":
        result = _child_build(args.corpus, args.index, args.texts)
    elif args.step == "encode":
        result = _child_encode(args.texts)
    elif args.step == "load":
        result = _child_load(args.index)
    elif args.step == "phases":
        result = _child_phases(args.texts)
    elif args.step == "plans":
        result = _child_plans(args.rounds, args.probe)
    else:
        result = _child_products()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
