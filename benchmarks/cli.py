"""`semsearch bench quality|latency|indexing|ann|results`: the measuring instrument, as CLI commands.

Registered with the `semsearch` command through the `semsearch.commands` entry point, so `api/` never
imports this package. Every command writes NAME.json, NAME.md and NAME.png into --out, prints the
Markdown table, and with --check compares the run with benchmarks/expected/NAME.json (exit 1 on FAIL).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click

from semsearch.api.cli import ARGV_KEY, handle_errors, load_settings
from semsearch.benchmarks.datasets import Dataset, corpus_slice, load_beir
from semsearch.benchmarks.report import EXPECTED_DIR, RESULTS_DIR, RESULTS_MD
from semsearch.benchmarks.workspace import WORK_DIR
from semsearch.data import NEWS, SQUAD_DEV
from semsearch.index.model.planning.measure import PROBE_PASSAGES
from semsearch.settings import BACKENDS, Settings

F = TypeVar("F", bound=Callable[..., Any])
BENCHMARKS = ("quality", "quality-gate", "latency", "indexing", "ann", "load", "writes", "writes-disk")


def common_options(func: F) -> F:
    """--out, --json, --seed, --work-dir and --check, shared by every benchmark."""
    options = [
        click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            default=WORK_DIR / "results",
            show_default=True,
            help="Folder for NAME.json, NAME.md and NAME.png.",
        ),
        click.option(
            "--json",
            "json_out",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Also write the JSON record here.",
        ),
        click.option("--seed", type=int, default=13, show_default=True, help="Seed for every sample."),
        click.option(
            "--work-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=WORK_DIR,
            show_default=True,
            help="Cache of benchmark indexes (reused while corpus, model and settings are unchanged).",
        ),
        click.option("--check", is_flag=True, help="Compare with the expected figures; exit 1 on a FAIL."),
        click.option(
            "--expected",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Expected figures for --check (default: benchmarks/expected/NAME.json).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def dataset_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--dataset",
        type=click.Path(file_okay=False, path_type=Path),
        default=SQUAD_DEV,
        show_default=True,
        help=help_text,
    )


def corpus_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--corpus", type=click.Path(exists=True, path_type=Path), default=NEWS, show_default=True, help=help_text
    )


queries_option = click.option("--queries", "query_count", type=click.IntRange(1), default=200, show_default=True)


def records_option(help_text: str) -> Callable[[F], F]:
    return click.option("--records", type=click.IntRange(0), default=0, show_default=True, help=help_text)


def load_dataset(folder: Path, records: int, seed: int, work_dir: Path) -> Dataset:
    """The BEIR data set at `folder`, or a seeded slice of `records` of its corpus records (0: all)."""
    data = load_beir(folder)
    if records:
        data = corpus_slice(data, records, seed, work_dir / f"slice-{data.digest[:12]}-{records}-{seed}")
    return data


def _settings_record(settings: Settings) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}


def finish(
    name: str, record: dict[str, Any], out: Path, json_out: Path | None, check: bool, expected: Path | None
) -> None:
    from semsearch.benchmarks.environment import environment
    from semsearch.benchmarks.report import check_figures, load_expected, machine_difference, write_outputs

    settings: Settings = record.pop("_settings")
    record["environment"] = environment(settings)
    record["settings"] = _settings_record(settings)
    body, plot = _render_table()[name]  # imports matplotlib's helpers only when a run finishes
    text = body(record)
    written = write_outputs(out, name, record, text, lambda path: plot(record, path))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(json_out)
    click.echo(text)
    click.echo("Wrote " + ", ".join(map(str, written)), err=True)
    if check:
        figures = load_expected(expected or EXPECTED_DIR / f"{name}.json")
        difference = machine_difference(record["environment"]["machine"], figures.get("machine"))
        if difference:
            click.echo(
                f"Machine: not the one the expected figures came from ({difference}); figures bound to a "
                "machine are not compared."
            )
        lines = check_figures(record, figures)
        for line in lines:
            click.echo(str(line))
        failed = sum(not line.ok for line in lines)
        skipped = sum(line.skipped for line in lines)
        click.echo(f"{len(lines) - failed - skipped} OK, {failed} FAIL, {skipped} SKIP")
        if failed:
            sys.exit(1)


def _render_table() -> dict[str, tuple[Callable[[Mapping[str, Any]], str], Callable[[Mapping[str, Any], Path], None]]]:
    from semsearch.benchmarks.ann import ann_markdown, ann_plot
    from semsearch.benchmarks.indexing import indexing_markdown, indexing_plot
    from semsearch.benchmarks.latency import latency_markdown, latency_plot
    from semsearch.benchmarks.load import load_markdown, load_plot
    from semsearch.benchmarks.quality import quality_markdown, quality_plot
    from semsearch.benchmarks.writes import writes_markdown, writes_plot

    return {
        "quality": (quality_markdown, quality_plot),
        "latency": (latency_markdown, latency_plot),
        "indexing": (indexing_markdown, indexing_plot),
        "ann": (ann_markdown, ann_plot),
        "load": (load_markdown, load_plot),
        "writes": (writes_markdown, writes_plot),
    }


def base_record(name: str, settings: Settings, seed: int) -> dict[str, Any]:
    argv = click.get_current_context().meta.get(ARGV_KEY, sys.argv[1:])
    return {"benchmark": name, "command": ["semsearch", *argv], "seed": seed, "_settings": settings}


def index_record(settings: Settings, corpus: str) -> dict[str, Any]:
    from semsearch.index.storage.store import open_index

    stored = open_index(settings.index, verify=False)
    try:
        manifest = stored.manifest
        return {
            "path": str(settings.index),
            "corpus": corpus,
            "articles": manifest.counts["articles"],
            "passages": manifest.counts["passages"],
            "index_type": manifest.index_type,
            "model": manifest.model,
        }
    finally:
        stored.close()


@click.group("bench", help="Measure retrieval quality, latency, indexing speed and ANN recall.")
def bench() -> None:
    pass


@bench.command("quality", help="Recall@1/5/10/100, MRR@10 and nDCG@10 per retrieval mode on a BEIR data set.")
@dataset_option("BEIR folder: corpus.jsonl, queries.jsonl, qrels.tsv.")
@click.option("--mode", "modes", multiple=True, help="Retrieval mode (repeatable); default: every mode.")
@click.option(
    "--queries",
    "query_count",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Seeded sample of this many queries; 0 = all.",
)
@records_option("Index a seeded slice of this many corpus records (with the queries judged on them); 0 = all.")
@click.option("--latency-queries", type=click.IntRange(1), default=200, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=3, show_default=True, help="Latency runs.")
@click.option("--sweep", is_flag=True, help="Also sweep the hybrid weight on a tuning half and a held-out half.")
@click.option(
    "--gate-against",
    type=click.Choice(BACKENDS),
    default=None,
    help="Also run the reference backend on the same queries and report the quality gate of SEMSEARCH_BACKEND.",
)
@common_options
@handle_errors
def quality(
    dataset: Path,
    modes: tuple[str, ...],
    query_count: int,
    records: int,
    latency_queries: int,
    runs: int,
    sweep: bool,
    gate_against: str | None,
    out: Path,
    json_out: Path | None,
    seed: int,
    work_dir: Path,
    check: bool,
    expected: Path | None,
) -> None:
    from semsearch.benchmarks.quality import CONFIGS, measure_quality
    from semsearch.benchmarks.workspace import cached_index
    from semsearch.index.model.embedder import Embedder, model_info
    from semsearch.search.searcher import Searcher

    unknown = [m for m in modes if m not in CONFIGS]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}; modes: {', '.join(CONFIGS)}", param_hint="--mode")
    settings = load_settings()
    settings = settings.replace(backend=model_info(settings).backend)  # `auto`: the plan's choice on this machine
    data = load_dataset(dataset, records, seed, work_dir)

    def measure(backend: str) -> tuple[Settings, dict[str, Any], Any]:
        chosen = settings.replace(backend=backend)
        embedder = Embedder.load(chosen)
        index_settings = cached_index("quality", [data.corpus], chosen, work_dir, embedder)
        searcher = Searcher.open(index_settings, embedder)
        try:
            figures = measure_quality(
                data, searcher, modes or tuple(CONFIGS), seed, query_count, latency_queries, runs, sweep
            )
            return index_settings, figures, searcher.index.stored_vectors()[1]
        finally:
            searcher.close()

    index_settings, figures, vectors = measure(settings.backend)
    record = base_record("quality", index_settings, seed)
    record.update(dataset=data.describe(), index=index_record(index_settings, str(data.corpus)), **figures)
    record["backend"] = settings.backend
    if gate_against is not None and gate_against != settings.backend:
        from semsearch.benchmarks.quality import backend_gate

        _, reference, reference_vectors = measure(gate_against)
        record["gate"] = {
            "reference_backend": gate_against,
            **backend_gate(figures, reference, vectors, reference_vectors),
        }
    finish("quality", record, out, json_out, check, expected)


@bench.command("latency", help="p50/p95/p99 in-process (encode, vector search, search) and over HTTP.")
@corpus_option("Articles to index (cached) and query.")
@click.option(
    "--index",
    "index_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Query this existing index instead of building one from --corpus.",
)
@dataset_option("BEIR folder whose questions are the query load.")
@queries_option
@click.option("--runs", type=click.IntRange(1), default=3, show_default=True)
@click.option("--concurrency", default="1,4,16", show_default=True, help="HTTP client counts, comma-separated.")
@click.option(
    "--requests",
    "max_requests",
    type=click.IntRange(1),
    default=300,
    show_default=True,
    help="At most this many HTTP requests per run.",
)
@click.option(
    "--seconds",
    "max_seconds",
    type=click.FloatRange(0.1),
    default=20.0,
    show_default=True,
    help="At most this long per HTTP run.",
)
@click.option(
    "--txtai-python",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A Python with txtai installed: also time txtai's hybrid search on the same passages and questions.",
)
@common_options
@handle_errors
def latency(
    corpus: Path,
    index_dir: Path | None,
    dataset: Path,
    query_count: int,
    runs: int,
    concurrency: str,
    max_requests: int,
    max_seconds: float,
    out: Path,
    json_out: Path | None,
    seed: int,
    work_dir: Path,
    check: bool,
    expected: Path | None,
    txtai_python: Path | None,
) -> None:
    from semsearch.benchmarks.datasets import sample_queries
    from semsearch.benchmarks.latency import in_process, over_http
    from semsearch.benchmarks.server import serve_index
    from semsearch.benchmarks.workspace import cached_index
    from semsearch.index.model.embedder import Embedder
    from semsearch.search.searcher import Searcher

    try:
        levels = [int(part) for part in concurrency.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{concurrency!r} is not a comma-separated list of integers", param_hint="--concurrency"
        ) from None
    if not levels or min(levels) < 1:
        raise click.BadParameter("give at least one client count >= 1", param_hint="--concurrency")
    settings = load_settings(index=index_dir)
    texts = [text for _, text in sample_queries(load_beir(dataset), query_count, seed)]
    embedder = Embedder.load(settings)
    if index_dir is None:
        settings = cached_index("latency", [corpus], settings, work_dir, embedder)
    searcher = Searcher.open(settings, embedder)
    baselines: dict[str, Any] = {}
    try:
        stages = in_process(searcher, texts, runs)
        if txtai_python is not None:
            from semsearch.benchmarks.latency import txtai_baseline

            txtai = txtai_baseline(txtai_python, searcher, texts, runs, settings.threads)
            txtai["ratio_search_vs_txtai"] = round(stages["search"]["p50_ms"] / txtai["p50_ms"], 3)
            baselines["txtai"] = txtai
    finally:
        searcher.close()
    with serve_index(settings.index) as base:
        http = over_http(base, texts, levels, runs, max_requests, max_seconds)
    # The same top concurrency with micro-batching off: what batching buys.
    with serve_index(settings.index, {"SEMSEARCH_MICRO_BATCH": "false"}) as base:
        unbatched = over_http(base, texts, [max(levels)], runs, max_requests, max_seconds)
    record = base_record("latency", settings, seed)
    record.update(
        index=index_record(settings, str(corpus) if index_dir is None else "(given index)"),
        queries_from=str(dataset.name),
        query_count=len(texts),
        runs=runs,
        max_requests=max_requests,
        max_seconds=max_seconds,
        in_process=stages,
        http=http,
        http_unbatched=unbatched,
        baselines=baselines,
        # Measured side by side in this run, so it holds on any machine: what micro-batching buys.
        batching_ratio={
            level: round(http[level]["qps"] / off["qps"], 3) if off["qps"] else None for level, off in unbatched.items()
        },
    )
    finish("latency", record, out, json_out, check, expected)


@bench.command("indexing", help="Build throughput, peak RSS and index size, beside plain SentenceTransformer.encode.")
@dataset_option("BEIR folder whose corpus.jsonl is indexed.")
@records_option("Index a seeded slice of this many records; 0 = all.")
@click.option("--runs", type=click.IntRange(1), default=2, show_default=True)
@click.option(
    "--plan-rounds",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Rounds of every plan against the planner's choice.",
)
@click.option(
    "--probe",
    type=click.IntRange(2),
    default=PROBE_PASSAGES,
    show_default=True,
    help="Passages of the probe the plans are compared on (the planner's own probe by default).",
)
@common_options
@handle_errors
def indexing(
    dataset: Path,
    records: int,
    runs: int,
    plan_rounds: int,
    probe: int,
    out: Path,
    json_out: Path | None,
    seed: int,
    work_dir: Path,
    check: bool,
    expected: Path | None,
) -> None:
    from semsearch.benchmarks.indexing import measure_indexing

    settings = load_settings()
    data = load_dataset(dataset, records, seed, work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    figures = measure_indexing(data.corpus, work_dir, runs, plan_rounds, probe)
    record = base_record("indexing", settings, seed)
    record.update(dataset=data.describe(), corpus=str(data.corpus), **figures)
    finish("indexing", record, out, json_out, check, expected)


@bench.command("load", help="A bounded load run: concurrent queries for a fixed time while a writer updates.")
@corpus_option("Articles to index (cached; the run serves a copy) and query.")
@dataset_option("BEIR folder whose questions are the query load.")
@queries_option
@click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True, help="Clients.")
@click.option("--seconds", type=click.FloatRange(1, 3600), default=60.0, show_default=True, help="How long.")
@click.option(
    "--write-every",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="Seconds between article replacements over HTTP (0: queries only).",
)
@common_options
@handle_errors
def load(
    corpus: Path,
    dataset: Path,
    query_count: int,
    concurrency: int,
    seconds: float,
    write_every: float,
    out: Path,
    json_out: Path | None,
    seed: int,
    work_dir: Path,
    check: bool,
    expected: Path | None,
) -> None:
    import secrets
    import shutil

    from semsearch.benchmarks.datasets import sample_queries
    from semsearch.benchmarks.load import load_run
    from semsearch.benchmarks.server import serve_index
    from semsearch.benchmarks.workspace import cached_index
    from semsearch.index.model.embedder import Embedder

    settings = load_settings()
    texts = [text for _, text in sample_queries(load_beir(dataset), query_count, seed)]
    cached = cached_index("latency", [corpus], settings, work_dir, Embedder.load(settings))
    served = cached.replace(index=work_dir / "load-index")
    shutil.rmtree(served.index, ignore_errors=True)
    shutil.copytree(cached.index, served.index)
    token = secrets.token_urlsafe(16)
    env = {"SEMSEARCH_API_TOKEN": token, "SEMSEARCH_RELOAD_SECONDS": "1"}
    record = base_record("load", served, seed)
    record.update(index=index_record(served, str(corpus)))
    with serve_index(served.index, env) as base:
        result = load_run(base, texts, concurrency, seconds, token, write_every)
    shutil.rmtree(served.index, ignore_errors=True)
    record.update(
        queries_from=str(dataset.name),
        query_count=len(texts),
        concurrency=concurrency,
        seconds=seconds,
        write_every=write_every,
        load=result,
    )
    finish("load", record, out, json_out, check, expected)


@bench.command("ann", help="Recall@10 and latency of the engine's index type and ANN settings vs exact search.")
@click.option(
    "--sizes",
    default="corpus,100000,1000000",
    show_default=True,
    help="'corpus' (the data set's real vectors) and/or synthetic vector counts, comma-separated.",
)
@dataset_option("BEIR folder for the 'corpus' size: its passages and questions.")
@click.option(
    "--hnsw-max",
    type=click.IntRange(0),
    default=100_000,
    show_default=True,
    help="Build HNSW only up to this many vectors.",
)
@click.option(
    "--engine-max",
    type=click.IntRange(0),
    default=1_000_000,
    show_default=True,
    help="Build the engine's own choice (threshold, HNSW tuned to recall@10 >= 0.98) up to this many vectors.",
)
@click.option("--runs", type=click.IntRange(1), default=3, show_default=True)
@common_options
@handle_errors
def ann(
    sizes: str,
    dataset: Path,
    hnsw_max: int,
    engine_max: int,
    runs: int,
    out: Path,
    json_out: Path | None,
    seed: int,
    work_dir: Path,
    check: bool,
    expected: Path | None,
) -> None:
    import numpy as np

    from semsearch.benchmarks.ann import measure_size, size_label, synthetic_vectors
    from semsearch.benchmarks.datasets import sample_queries
    from semsearch.benchmarks.workspace import cached_index
    from semsearch.index.model.embedder import Embedder
    from semsearch.index.storage.store import open_index

    parts = [p.strip() for p in sizes.split(",") if p.strip()]
    counts = [p for p in parts if p != "corpus"]
    if not parts or not all(c.isdigit() and int(c) >= 100 for c in counts):
        raise click.BadParameter(f"{sizes!r}: use 'corpus' and/or vector counts >= 100", param_hint="--sizes")
    settings = load_settings()
    results = []
    dimension = 384

    def measure(label: str, base: np.ndarray, questions: np.ndarray) -> dict[str, Any]:
        return measure_size(
            label, base, questions, runs, seed, hnsw_max, engine_max, settings.ann_threshold, settings.threads
        )

    if "corpus" in parts:
        data = load_beir(dataset)
        embedder = Embedder.load(settings)
        dimension = embedder.dimension
        index_settings = cached_index("quality", [data.corpus], settings, work_dir, embedder)
        stored = open_index(index_settings.index, verify=False)
        try:
            _, base = stored.stored_vectors()
        finally:
            stored.close()
        questions = embedder.embed_queries([t for _, t in sample_queries(data, 500, seed)])
        results.append(measure(f"corpus ({data.name})", base, questions))
    for count in map(int, counts):
        base, questions = synthetic_vectors(count, dimension, seed)
        results.append(measure(size_label(count), base, questions))
        del base
    record = base_record("ann", settings, seed)
    record.update(
        runs=runs,
        dimension=dimension,
        hnsw_max=hnsw_max,
        engine_max=engine_max,
        ann_threshold=settings.ann_threshold,
        numpy=np.__version__,
        sizes=results,
    )
    finish("ann", record, out, json_out, check, expected)


@bench.command(
    "writes",
    help="Write cost and search cost of a segmented index at 100k and 1M passages, beside their baselines.",
)
@click.option("--sizes", default="100000,1000000", show_default=True, help="Passage counts, comma-separated.")
@corpus_option("Corpus whose articles are written and whose text the large indexes are tiled from.")
@dataset_option("BEIR folder: questions for the searches, and the corpus of the quality check.")
@click.option(
    "--writes", "write_count", type=click.IntRange(1), default=20, show_default=True, help="Timed HTTP writes."
)
@click.option("--rebuild-writes", type=click.IntRange(0), default=3, show_default=True, help="Timed baseline writes.")
@click.option(
    "--rebuild-max",
    type=click.IntRange(0),
    default=200_000,
    show_default=True,
    help="Time baseline writes only up to this many passages (above it, the one-segment build time stands in).",
)
@click.option(
    "--write-size",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Passages per write when the merge policy lays out the large index (10: a feed of one-article writes).",
)
@click.option("--load-seconds", type=click.IntRange(0), default=60, show_default=True, help="0 skips the load run.")
@click.option(
    "--load-max",
    type=click.IntRange(0),
    default=100_000,
    show_default=True,
    help="Run the load run only at sizes up to this.",
)
@click.option("--disk-writes", type=click.IntRange(0), default=1_000, show_default=True, help="0 skips the disk run.")
@click.option(
    "--disk-max",
    type=click.IntRange(0),
    default=100_000,
    show_default=True,
    help="Run the disk run only at sizes up to this.",
)
@click.option(
    "--quality-writes",
    type=click.IntRange(0),
    default=50,
    show_default=True,
    help="Writes of the SQuAD corpus for the quality check; 0 skips it.",
)
@click.option("--queries", "query_count", type=click.IntRange(1), default=200, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=3, show_default=True)
@click.option("--build-only", is_flag=True, help="Build (or find) the large indexes in --work-dir, and stop.")
@common_options
@handle_errors
def writes(
    sizes: str,
    corpus: Path,
    dataset: Path,
    write_count: int,
    rebuild_writes: int,
    rebuild_max: int,
    write_size: int,
    load_seconds: int,
    load_max: int,
    disk_writes: int,
    disk_max: int,
    quality_writes: int,
    query_count: int,
    runs: int,
    build_only: bool,
    out: Path,
    json_out: Path | None,
    seed: int,
    work_dir: Path,
    check: bool,
    expected: Path | None,
) -> None:
    import shutil
    import time

    from semsearch.benchmarks import writes as w
    from semsearch.benchmarks.datasets import sample_queries
    from semsearch.benchmarks.load import load_run
    from semsearch.benchmarks.server import serve_process
    from semsearch.benchmarks.synthetic import build_synthetic, sample_paragraphs, tiered_layout
    from semsearch.index.model.embedder import Embedder
    from semsearch.index.reading.articles import ReadReport
    from semsearch.index.reading.readers import read_corpus
    from semsearch.index.storage.manifest import FORMAT_VERSION
    from semsearch.index.storage.store import open_index
    from semsearch.index.writing.merge_policy import MergePolicy

    counts = [int(p) for p in sizes.split(",") if p.strip().isdigit()]
    if not counts or any(c < 1000 for c in counts):
        raise click.BadParameter(f"{sizes!r}: use passage counts >= 1000", param_hint="--sizes")
    settings = load_settings()
    embedder = Embedder.load(settings)
    settings = settings.replace(backend=embedder.info.backend)
    news = list(read_corpus([corpus], settings.ignore, ReadReport()))
    paragraphs, titles = sample_paragraphs(news)
    data = load_beir(dataset)
    texts = [t for _, t in sample_queries(data, query_count, seed)]
    token = "bench-writes"
    policy = MergePolicy(floor_segment=settings.merge_floor)
    # Built through the storage layer alone, so the format and the layout settings say what the index holds.
    key = f"f{FORMAT_VERSION}-t{settings.ann_threshold}-m{settings.merge_floor}-w{write_size}"
    results = []
    for count in counts:
        layout = tiered_layout(count, write_size, policy)
        built: dict[str, Settings] = {}
        build_seconds: dict[str, float] = {}
        for name, shape in (("tiered", layout), ("single", [count])):
            target = settings.replace(index=work_dir / f"writes-{name}-{count}-{seed}-{key}")
            if not (target.index / "CURRENT").is_file():
                shutil.rmtree(target.index, ignore_errors=True)
                click.echo(f"Building the {name} index of {count} passages ({len(shape)} segments)", err=True)
                started = time.perf_counter()
                build_synthetic(
                    target, embedder.info, embedder.max_tokens, paragraphs, titles, shape, seed, embedder.dimension
                )
                build_seconds[name] = round(time.perf_counter() - started, 1)
            built[name] = target
        if build_only:
            continue
        size: dict[str, Any] = {"passages": count, "layout": layout, "build_seconds": build_seconds}
        if "single" in build_seconds:
            size["single_build_seconds"] = build_seconds["single"]
        click.echo(f"{count}: hybrid search, {len(layout)} segments against one", err=True)
        tiered = w.search_p50(built["tiered"], embedder, texts, runs)
        single = w.search_p50(built["single"], embedder, texts, runs)
        size["search"] = {"tiered": tiered, "single": single}
        size["search_ratio"] = round(tiered["search_p50_ms"] / single["search_p50_ms"], 3)
        size["retrieval_ratio"] = round(tiered["retrieval_p50_ms"] / single["retrieval_p50_ms"], 3)
        live = settings.replace(index=work_dir / f"writes-live-{count}")
        shutil.rmtree(live.index, ignore_errors=True)
        shutil.copytree(built["tiered"].index, live.index)
        env = {"SEMSEARCH_API_TOKEN": token, "SEMSEARCH_BACKEND": settings.backend}
        click.echo(f"{count}: {write_count} HTTP writes", err=True)
        with serve_process(live.index, env) as (base, process):
            w.http_writes(base, token, news[:1], "warm-up")
            timings = w.http_writes(base, token, news[1 : 1 + write_count], "timed")
            size["write"] = w.summary(timings)
            size["write_p50_ms"] = size["write"]["p50_ms"]
            w.http_search_p99(base, texts, 5, 4)
            loaded = open_index(live.index, verify=False)
            try:
                parts = w.memory_parts(loaded)
                segments = len(loaded.segments)
            finally:
                loaded.close()
            size["memory"] = {"rss_bytes": w.rss_bytes(process.pid), "parts": parts, "segments": segments}
            size["rss_bytes"] = size["memory"]["rss_bytes"]
            if load_seconds and count <= load_max:
                click.echo(f"{count}: idle and loaded search runs, {load_seconds} s each", err=True)
                idle = w.http_search_p99(base, texts, load_seconds, 16)
                loaded_run = load_run(base, texts, 16, load_seconds, token, every=1.0, new_ids=True)
                size["idle"] = idle
                size["load"] = {**loaded_run, "concurrency": 16, "seconds": load_seconds, "every": 1.0}
                size["load_p99_ratio"] = round(loaded_run["p99_ms"] / idle["p99_ms"], 3)
        if rebuild_writes and count <= rebuild_max:
            click.echo(f"{count}: {rebuild_writes} writes that rewrite the whole index", err=True)
            rebuilt = settings.replace(index=work_dir / f"writes-rebuild-{count}")
            shutil.rmtree(rebuilt.index, ignore_errors=True)
            shutil.copytree(built["single"].index, rebuilt.index)
            size["rebuild"] = w.summary(w.rebuild_writes(rebuilt, embedder, news[1 : 1 + rebuild_writes], "rebuilt"))
            size["write_ratio"] = round(size["write"]["p50_ms"] / size["rebuild"]["p50_ms"], 4)
            shutil.rmtree(rebuilt.index, ignore_errors=True)
        if disk_writes and count <= disk_max:
            click.echo(f"{count}: {disk_writes} one-article writes for the disk run", err=True)
            size["disk"] = w.disk_after_writes(live, embedder, news, disk_writes, work_dir)
        shutil.rmtree(live.index, ignore_errors=True)
        results.append(size)
    if build_only:
        click.echo(f"Built the indexes in {work_dir}")
        return
    record = base_record("writes", settings, seed)
    record.update(sizes=results, write_size=write_size, queries=len(texts), runs=runs)
    if quality_writes:
        click.echo(f"Quality: SQuAD dev in one build and in {quality_writes} writes", err=True)
        record["quality"] = _quality_in_writes(settings, embedder, data, quality_writes, seed, work_dir)
    finish("writes", record, out, json_out, check, expected)


def _quality_in_writes(
    settings: Settings, embedder: Any, data: Dataset, count: int, seed: int, work_dir: Path
) -> dict[str, Any]:
    import random
    import shutil

    from semsearch.benchmarks.quality import measure_quality
    from semsearch.benchmarks.workspace import cached_index
    from semsearch.index.reading.articles import ReadReport
    from semsearch.index.reading.readers import read_corpus
    from semsearch.index.writing.builder import write_articles
    from semsearch.search.searcher import Searcher

    def ndcg(target: Settings) -> tuple[float, int, int]:
        searcher = Searcher.open(target, embedder)
        try:
            figures = measure_quality(data, searcher, ("hybrid",), seed, latency_queries=1, runs=1)
            return figures["modes"]["hybrid"]["ndcg@10"], figures["queries"], len(searcher.index.segments)
        finally:
            searcher.close()

    one = cached_index("quality", [data.corpus], settings, work_dir, embedder)
    articles = list(read_corpus([data.corpus], settings.ignore, ReadReport()))
    random.Random(seed).shuffle(articles)
    written = settings.replace(index=work_dir / "writes-quality")
    shutil.rmtree(written.index, ignore_errors=True)
    for n in range(count):
        write_articles(written, articles[n::count], embedder=embedder, merge=True)
    base, queries, _ = ndcg(one)
    after, _, segments = ndcg(written)
    shutil.rmtree(written.index, ignore_errors=True)
    return {
        "queries": queries,
        "write_count": count,
        "segments": segments,
        "one_build": round(base, 2),
        "writes": round(after, 2),
        "difference": round(after - base, 2),
        "abs_difference": round(abs(after - base), 2),
    }


@bench.command("results", help="Assemble benchmarks/RESULTS.md from the Markdown of each benchmark's latest run.")
@click.option(
    "--from", "source", type=click.Path(file_okay=False, path_type=Path), default=RESULTS_DIR, show_default=True
)
@click.option(
    "--to",
    "target",
    type=click.Path(dir_okay=False, path_type=Path),
    default=RESULTS_MD,
    show_default=True,
)
@handle_errors
def results(source: Path, target: Path) -> None:
    parts = []
    for name in BENCHMARKS:
        md = source / f"{name}.md"
        if md.is_file():
            png = source / f"{name}.png"
            text = md.read_text(encoding="utf-8").strip()
            if png.is_file():
                link = png.relative_to(target.parent).as_posix() if png.is_relative_to(target.parent) else png
                text += f"\n\n![{name}]({link})"
            parts.append(text)
    if not parts:
        raise click.ClickException(f"No benchmark results in {source}; run `semsearch bench ... --out {source}`")
    header = (
        "# Benchmark results\n\nThe latest full run of each benchmark, written by `semsearch bench results` from "
        "the files in `benchmarks/results/`. Each section starts with the exact command that produced it.\n"
    )
    target.write_text(header + "\n" + "\n\n".join(parts) + "\n", encoding="utf-8")
    click.echo(f"Wrote {target}")
