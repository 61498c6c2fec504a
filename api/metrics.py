"""`GET /metrics` in the Prometheus text format, from a registry of the app's own (so that several apps in one
process, as in tests, count apart): requests, search stages, micro-batches, writes, and the index served."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from semsearch.errors import SemsearchError
from semsearch.search.live import LiveSearcher
from semsearch.search.stages import STAGES

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
WRITE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
UNMATCHED = "(unmatched)"  # the route label of a request no route matched (a 404): paths are not labels

router = APIRouter()


class Metrics:
    """The app's metrics and the registry that renders them."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "semsearch_http_requests",
            "HTTP requests the app answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "semsearch_http_request_duration_seconds",
            "Time from a request reaching the app to the end of its response, by method and route template.",
            ["method", "route"],
            registry=registry,
        )
        self.refused = Counter(
            "semsearch_http_refused",
            "Requests the server refused before the app, by status: 400 not HTTP, 408 headers too slow, "
            "414 URL too long, 431 headers too large, 503 too many connections.",
            ["status"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "semsearch_search_stage_duration_seconds",
            "Time per search stage, per batch of queries searched together: encode (the model), retrieve "
            "(vector index and BM25 lookups, filters) and rank (fusion, diversification, building the hits).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        self.batch_size = Histogram(
            "semsearch_search_batch_size",
            "Queries per micro-batch (encoded in one model call).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.write_seconds = Histogram(
            "semsearch_write_duration_seconds",
            "Time each HTTP write held the write lock: writing the new generation and loading it.",
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        self.writes_in_progress = Gauge(
            "semsearch_writes_in_progress",
            "HTTP writes running or waiting for the write lock.",
            registry=registry,
        )

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        method = method if method in METHODS else "OTHER"  # methods are client-chosen: keep the label set small
        route = route or UNMATCHED
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def observe_refused(self, status: int) -> None:
        self.refused.labels(str(status)).inc()

    def watch_index(self, live: Callable[[], LiveSearcher | None]) -> None:
        """Report the index that `live()` serves at each scrape."""
        self.registry.register(_IndexCollector(live))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _IndexCollector(Collector):
    """The served commit, its size and segments, and the failed reloads, read when /metrics is asked."""

    def __init__(self, live: Callable[[], LiveSearcher | None]) -> None:
        self.live = live

    def collect(self) -> Iterable[Metric]:
        live = self.live()
        generation, articles, passages, segments, deleted = None, 0, 0, 0, 0
        if live is not None and live.loaded:
            try:
                with live.use() as searcher:
                    counts = searcher.index.manifest.counts
                    generation, articles, passages = (
                        searcher.index.generation.name,
                        counts["articles"],
                        counts["passages"],
                    )
                    stats = searcher.index.segment_stats()
                    segments, deleted = len(stats), sum(s["deleted"] for s in stats)
            except (RuntimeError, SemsearchError):  # unloaded between the check and the use
                pass
        yield GaugeMetricFamily("semsearch_index_loaded", "1 when an index commit is served.", generation is not None)
        info = GaugeMetricFamily("semsearch_index_generation", "The commit served (label; value 1).", labels=["name"])
        if generation is not None:
            info.add_metric([generation], 1)
        yield info
        yield GaugeMetricFamily("semsearch_index_articles", "Articles in the served commit.", articles)
        yield GaugeMetricFamily("semsearch_index_passages", "Passages in the served commit.", passages)
        yield GaugeMetricFamily("semsearch_index_segments", "Live segments of the served commit.", segments)
        yield GaugeMetricFamily(
            "semsearch_index_deleted_passages",
            "Passages deleted from the served commit's segments and not yet merged away.",
            deleted,
        )
        yield CounterMetricFamily(
            "semsearch_index_reload_errors",
            "Attempts to load a new current commit that failed (the one held goes on serving).",
            live.reload_errors if live is not None else 0,
        )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The app's metrics in the Prometheus text format."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
