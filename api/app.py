"""The HTTP service: `create_app(settings)` builds a FastAPI app; the index loads once, in the lifespan."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from semsearch.api.deps import responses
from semsearch.api.errors import BodyLimitMiddleware, install_error_handlers
from semsearch.api.head import HeadAsGet
from semsearch.api.merger import BackgroundMerger
from semsearch.api.metrics import Metrics
from semsearch.api.metrics import router as metrics_router
from semsearch.api.observe import ObserveMiddleware
from semsearch.api.routers import articles, health, search
from semsearch.api.write_gate import WriteGate
from semsearch.errors import SemsearchError
from semsearch.search.batcher import QueryBatcher
from semsearch.search.live import LiveSearcher, follow
from semsearch.search.searcher import SearchOptions
from semsearch.settings import Settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the index, start the micro-batcher and the thread that follows new generations; stop them at exit."""
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    live = app.state.live = LiveSearcher(settings, observe=metrics.observe_stage)
    app.state.write_lock = WriteGate(metrics.write_seconds.observe, metrics.writes_in_progress.set)
    # Without a loadable index the server still starts: /health says so, searches get clear 503s, and
    # the reload thread picks the index up once it is written.
    with contextlib.suppress(SemsearchError):
        await anyio.to_thread.run_sync(live.refresh)
    app.state.batcher = (
        QueryBatcher(live, settings.batch_wait_ms, on_batch=metrics.observe_batch) if settings.micro_batch else None
    )
    if app.state.batcher is not None and live.loaded:
        await anyio.to_thread.run_sync(app.state.batcher.warm)
    merger = app.state.merger = BackgroundMerger(settings, live, app.state.write_lock)
    if settings.merge:
        merger.start()
    stop = threading.Event()
    if settings.reload_seconds > 0:
        threading.Thread(
            target=follow, args=(live, settings.reload_seconds, stop), name="semsearch-reload", daemon=True
        ).start()
    yield
    # A write whose request is done or was cancelled may still run in its thread, holding the index's writer
    # lock: the process must not end in the middle of it.
    await anyio.to_thread.run_sync(merger.stop)
    await anyio.to_thread.run_sync(app.state.write_lock.wait_idle)
    stop.set()
    if app.state.batcher is not None:
        app.state.batcher.close()
    live.close()


def create_app(settings: Settings) -> FastAPI:
    """The app for the index at `settings.index`; nothing is loaded until the server starts. `/docs` and
    `/redoc` serve their scripts from the package, not a CDN."""
    app = FastAPIOffline(
        title="semsearch",
        summary="Semantic search over news passages.",
        version="0.1.0",
        lifespan=lifespan,
        responses=responses(400, 404, 413, 422, 503),
    )
    app.state.settings = settings
    app.state.search_defaults = SearchOptions.from_settings(settings)
    app.state.metrics = metrics = Metrics()
    metrics.watch_index(lambda: getattr(app.state, "live", None))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HeadAsGet)
    # Added last, so outermost: it sees every answer, the body limit's 413 included, and times it whole.
    app.add_middleware(ObserveMiddleware, metrics=metrics, log_queries=settings.log_queries)
    install_error_handlers(app)
    for router in (search.router, articles.router, health.router, metrics_router):
        app.include_router(router)
    return app
