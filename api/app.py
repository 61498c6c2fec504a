"""The HTTP service: `create_app(settings)` builds a FastAPI app; the index loads once, in the lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from api.errors import BodyLimitMiddleware, NotFound, ServiceUnavailable, install_error_handlers
from api.schemas import (
    DAY_PATTERN,
    PARAM_HELP,
    QUERY_HELP,
    QUERY_SCHEMA,
    ArticleOut,
    ErrorOut,
    Fusion,
    HealthOut,
    HitOut,
    Mode,
    PassageOut,
    SearchRequest,
    SearchResponse,
    StatsOut,
)
from index.errors import SemsearchError
from index.settings import Settings
from search.filters import Filters
from search.searcher import MAX_K, Searcher

MAX_BODY_BYTES = 64 * 1024
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in ((404, "Not found"), (413, "Body too large"), (422, "Invalid request"), (503, "No index"))
}


def get_searcher(request: Request) -> Searcher:
    """The searcher loaded at start-up, or a 503 saying why there is none."""
    loaded: Searcher | None = request.app.state.searcher
    if loaded is None:
        raise ServiceUnavailable(str(request.app.state.load_error or "The index is not loaded"))
    return loaded


SearcherDep = Annotated[Searcher, Depends(get_searcher)]


def create_app(settings: Settings) -> FastAPI:
    """The app for the index at `settings.index`; nothing is loaded until the server starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.searcher = None
        app.state.load_error = None
        try:
            app.state.searcher = await anyio.to_thread.run_sync(Searcher.open, settings)
        except SemsearchError as exc:  # serve /health and clear 503s rather than refuse to start
            app.state.load_error = exc
        yield
        if app.state.searcher is not None:
            app.state.searcher.close()

    app = FastAPI(
        title="semsearch",
        summary="Semantic search over news passages.",
        version="0.1.0",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    install_error_handlers(app)
    page = resources.files("api").joinpath("static/index.html").read_text(encoding="utf-8")

    def run_search(engine: Searcher, request: SearchRequest) -> SearchResponse:
        started = time.perf_counter()
        filters = Filters.parse(request.date_from, request.date_to, request.source, request.article_id)
        options = engine.defaults.replace(
            mode=request.mode,
            fusion=request.fusion,
            weight=request.weight,
            per_article=request.per_article,
            filters=filters,
        )
        hits = engine.search(request.query, request.k, options)
        took = (time.perf_counter() - started) * 1000
        return SearchResponse(
            query=request.query,
            mode=options.mode,  # type: ignore[arg-type]
            took_ms=round(took, 3),
            hits=[HitOut(**asdict(h)) for h in hits],
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/search", response_model=SearchResponse, summary="Search with query parameters")
    def search_get(
        engine: SearcherDep,
        q: Annotated[str, Query(description=QUERY_HELP, json_schema_extra=QUERY_SCHEMA)],
        k: Annotated[int, Query(ge=1, le=MAX_K, description=PARAM_HELP["k"])] = 10,
        mode: Annotated[Mode | None, Query(description=PARAM_HELP["mode"])] = None,
        fusion: Annotated[Fusion | None, Query(description=PARAM_HELP["fusion"])] = None,
        weight: Annotated[float | None, Query(ge=0, le=1, description=PARAM_HELP["weight"])] = None,
        per_article: Annotated[int | None, Query(ge=0, le=MAX_K, description=PARAM_HELP["per_article"])] = None,
        date_from: Annotated[str | None, Query(pattern=DAY_PATTERN, description=PARAM_HELP["date_from"])] = None,
        date_to: Annotated[str | None, Query(pattern=DAY_PATTERN, description=PARAM_HELP["date_to"])] = None,
        source: Annotated[str | None, Query(max_length=200, description=PARAM_HELP["source"])] = None,
        article_id: Annotated[str | None, Query(max_length=1000, description=PARAM_HELP["article_id"])] = None,
    ) -> SearchResponse:
        request = SearchRequest(
            query=q,
            k=k,
            mode=mode,
            fusion=fusion,
            weight=weight,
            per_article=per_article,
            date_from=date_from,
            date_to=date_to,
            source=source,
            article_id=article_id,
        )
        return run_search(engine, request)

    @app.post("/search", response_model=SearchResponse, summary="Search with a JSON body")
    def search_post(engine: SearcherDep, request: SearchRequest) -> SearchResponse:
        return run_search(engine, request)

    @app.get("/articles/{article_id:path}", response_model=ArticleOut, summary="An article and its passages")
    def get_article(engine: SearcherDep, article_id: str) -> ArticleOut:
        article = engine.article(article_id)
        if article is None:
            raise NotFound(f"No article with id {article_id!r}")
        passages = [
            PassageOut(passage_id=pid, offsets=span, text=article.body[span[0] : span[1]])
            for pid, span in article.passages
        ]
        fields = asdict(article)
        fields["passages"] = passages
        return ArticleOut(**fields)

    @app.get("/health", response_model=HealthOut, summary="Liveness, and whether an index is loaded")
    def health(request: Request) -> HealthOut:
        return HealthOut(status="ok", index_loaded=request.app.state.searcher is not None)

    @app.get("/stats", response_model=StatsOut, summary="What the loaded index holds")
    def stats(engine: SearcherDep) -> StatsOut:
        return StatsOut(**asdict(engine.stats()))

    return app
