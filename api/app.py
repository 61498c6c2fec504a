"""The HTTP service: `create_app(settings)` builds a FastAPI app; the index loads once, in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Annotated

import anyio
import pydantic_core
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response

from semsearch.api.errors import (
    BodyLimitMiddleware,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    install_error_handlers,
)
from semsearch.api.schemas import (
    DAY_PATTERN,
    PARAM_HELP,
    QUERY_HELP,
    QUERY_SCHEMA,
    ArticleBatchIn,
    ArticleIn,
    ArticleOut,
    ErrorOut,
    Fusion,
    HealthOut,
    Mode,
    PassageOut,
    SearchRequest,
    SearchResponse,
    StatsOut,
    WriteOut,
)
from semsearch.errors import InvalidArticleError, SemsearchError
from semsearch.index.reading.articles import Article
from semsearch.index.reading.readers import article_from_record
from semsearch.index.writing.builder import BuildSummary, delete_articles, write_articles
from semsearch.search.batcher import QueryBatcher
from semsearch.search.filters import Filters
from semsearch.search.live import LiveSearcher, follow
from semsearch.search.results import Hit
from semsearch.search.searcher import MAX_K, Searcher, SearchOptions
from semsearch.settings import Settings


def _responses(*codes: int) -> dict[int | str, dict[str, object]]:
    text = {
        400: "Body is not UTF-8 JSON",
        401: "No bearer token",
        403: "Wrong token, or writes are off",
        404: "Not found",
        409: "Another process is writing the index",
        413: "Body too large",
        415: "Body is not JSON",
        422: "Invalid request",
        503: "No index",
    }
    return {code: {"model": ErrorOut, "description": text[code]} for code in codes}


def get_searcher(request: Request) -> Iterator[Searcher]:
    """The current generation's searcher for the length of one request, or a 503 saying why there is none."""
    live = loaded_index(request)
    with live.use() as searcher:
        yield searcher


def loaded_index(request: Request) -> LiveSearcher:
    """The app's live index, or a 503 saying why none is loaded."""
    live: LiveSearcher = request.app.state.live
    if not live.loaded:
        raise ServiceUnavailable(str(live.last_error or "The index is not loaded"))
    return live


def search_alone(live: LiveSearcher, query: str, k: int, options: SearchOptions) -> list[Hit]:
    """A search without the micro-batcher, on the current generation (run in a worker thread)."""
    with live.use() as searcher:
        return searcher.search(query, k, options)


def require_json(request: Request) -> None:
    """Bodies are JSON: anything else is a 415 before it is parsed."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise UnsupportedMediaType(f"Send the body as JSON with `Content-Type: application/json` (got {kind!r})")


def require_writer(request: Request) -> None:
    """Writes need the configured bearer token: 401 without one, 403 with a wrong one or none configured."""
    expected: str = request.app.state.settings.api_token
    if not expected:
        raise Forbidden("Writes are off on this server: start it with SEMSEARCH_API_TOKEN set to a secret token")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("Writes need `Authorization: Bearer <token>`")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Forbidden("The bearer token is not the one this server accepts")


SearcherDep = Annotated[Searcher, Depends(get_searcher)]
JSON_BODY = [Depends(require_json)]
WRITER = [Depends(require_writer), Depends(require_json)]


def to_article(item: ArticleIn, where: str) -> Article:
    try:
        return article_from_record(item.model_dump(exclude_none=True), item.id, where)
    except ValueError as exc:
        raise InvalidArticleError(f"{where}: {exc}") from None


def write_out(summary: BuildSummary) -> WriteOut:
    return WriteOut(
        generation=summary.generation,
        articles=summary.articles,
        passages=summary.passages,
        added=summary.added,
        updated=summary.updated,
        removed=summary.removed,
        unchanged=summary.unchanged,
        embedded=summary.embedded,
        reused=summary.reused,
        index_type=summary.vector_index.type if summary.vector_index else None,
    )


def create_app(settings: Settings) -> FastAPI:
    """The app for the index at `settings.index`; nothing is loaded until the server starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live = app.state.live = LiveSearcher(settings)
        app.state.settings = settings
        app.state.write_lock = threading.Lock()
        # Without a loadable index the server still starts: /health says so, searches get clear 503s, and
        # the reload thread picks the index up once it is written.
        with contextlib.suppress(SemsearchError):
            await anyio.to_thread.run_sync(live.refresh)
        app.state.batcher = QueryBatcher(live, settings.batch_wait_ms) if settings.micro_batch else None
        if app.state.batcher is not None and live.loaded:
            await anyio.to_thread.run_sync(app.state.batcher.warm)
        stop = threading.Event()
        if settings.reload_seconds > 0:
            threading.Thread(
                target=follow, args=(live, settings.reload_seconds, stop), name="semsearch-reload", daemon=True
            ).start()
        yield
        stop.set()
        if app.state.batcher is not None:
            app.state.batcher.close()
        live.close()

    app = FastAPI(
        title="semsearch",
        summary="Semantic search over news passages.",
        version="0.1.0",
        lifespan=lifespan,
        responses=_responses(400, 404, 413, 422, 503),
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    page = resources.files("semsearch.api").joinpath("static/index.html").read_text(encoding="utf-8")

    defaults = SearchOptions.from_settings(settings)

    async def run_search(http: Request, request: SearchRequest) -> Response:
        """One search, awaited on the micro-batcher when it is on (no worker thread is held while it waits),
        else run in a worker thread. The body is serialised once, straight from the result records."""
        live = loaded_index(http)
        started = time.perf_counter()
        filters = Filters.parse(request.date_from, request.date_to, request.source, request.article_id)
        options = defaults.replace(
            mode=request.mode,
            fusion=request.fusion,
            weight=request.weight,
            per_article=request.per_article,
            filters=filters,
        )
        batcher: QueryBatcher | None = http.app.state.batcher
        if batcher is not None:
            hits = await asyncio.wrap_future(batcher.submit(request.query, request.k, options))
        else:
            hits = await anyio.to_thread.run_sync(search_alone, live, request.query, request.k, options)
        took = (time.perf_counter() - started) * 1000
        # The shape documented by `SearchResponse` (FastAPI does not check a returned Response; the schema
        # conformance test in tests/test_server.py does).
        body = {"query": request.query, "mode": options.mode, "took_ms": round(took, 3), "hits": hits}
        return Response(pydantic_core.to_json(body), media_type="application/json")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/search", response_model=SearchResponse, summary="Search with query parameters")
    async def search_get(
        http: Request,
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
    ) -> Response:
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
        return await run_search(http, request)

    @app.post(
        "/search",
        response_model=SearchResponse,
        summary="Search with a JSON body",
        dependencies=JSON_BODY,
        responses=_responses(415),
    )
    async def search_post(http: Request, request: SearchRequest) -> Response:
        return await run_search(http, request)

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

    def run_write(request: Request, upserts: Sequence[Article], deletes: Sequence[str] = ()) -> WriteOut:
        """One write at a time from this server (others queue); another process writing gives 409."""
        live: LiveSearcher = request.app.state.live
        with request.app.state.write_lock:
            summary = (
                write_articles(settings, upserts, embedder=live.embedder)
                if upserts
                else delete_articles(settings, deletes, embedder=live.embedder)
            )
            if summary.generation is not None:
                live.refresh()  # the response's generation is the one served from now on
        return write_out(summary)

    @app.post(
        "/articles",
        response_model=WriteOut,
        summary="Add or replace a batch of articles (bearer token)",
        dependencies=WRITER,
        responses=_responses(401, 403, 409, 415),
    )
    def post_articles(request: Request, batch: ArticleBatchIn) -> WriteOut:
        return run_write(request, [to_article(a, f"articles[{n}]") for n, a in enumerate(batch.articles)])

    @app.put(
        "/articles/{article_id:path}",
        response_model=WriteOut,
        summary="Add or replace one article (bearer token)",
        dependencies=WRITER,
        responses=_responses(401, 403, 409, 415),
    )
    def put_article(request: Request, article_id: str, article: ArticleIn) -> WriteOut:
        if article.id != article_id:
            raise InvalidArticleError(f"The body's id {article.id!r} is not the id in the path {article_id!r}")
        return run_write(request, [to_article(article, "body")])

    @app.delete(
        "/articles/{article_id:path}",
        response_model=WriteOut,
        summary="Remove an article (bearer token)",
        dependencies=[Depends(require_writer)],
        responses=_responses(401, 403, 409),
    )
    def delete_article(request: Request, article_id: str) -> WriteOut:
        return run_write(request, [], [article_id])

    @app.get("/health", response_model=HealthOut, summary="Liveness, and whether an index is loaded")
    def health(request: Request) -> HealthOut:
        return HealthOut(status="ok", index_loaded=request.app.state.live.loaded)

    @app.get("/stats", response_model=StatsOut, summary="What the loaded index holds")
    def stats(request: Request, engine: SearcherDep) -> StatsOut:
        error = request.app.state.live.last_error
        return StatsOut(**asdict(engine.stats()), reload_error=str(error) if error else None)

    return app
