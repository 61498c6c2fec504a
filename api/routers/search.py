"""Searching: GET /search (query string), POST /search (JSON body), and the search page at `/`."""

from __future__ import annotations

import asyncio
import functools
import time
from importlib import resources
from typing import Annotated

import anyio
import pydantic_core
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from semsearch.api.deps import JSON_BODY, loaded_index, responses
from semsearch.api.schemas import SearchQuery, SearchRequest, SearchResponse
from semsearch.search.batcher import QueryBatcher
from semsearch.search.facets import Facets, parse_fields
from semsearch.search.live import LiveSearcher
from semsearch.search.options import request_options
from semsearch.search.results import Hit
from semsearch.search.searcher import SearchOptions

router = APIRouter()


@functools.cache
def _page() -> str:
    return resources.files("semsearch.api").joinpath("static/index.html").read_text(encoding="utf-8")


def search_alone(live: LiveSearcher, query: str, k: int, options: SearchOptions) -> list[Hit]:
    """A search without the micro-batcher, on the current generation (run in a worker thread)."""
    with live.use() as searcher:
        return searcher.search(query, k, options)


def counted_alone(
    live: LiveSearcher, query: str, k: int, options: SearchOptions, fields: tuple[str, ...]
) -> tuple[list[Hit], Facets]:
    """A search and the facets of its own candidates, from one ranking of one generation (a worker thread)."""
    with live.use() as searcher:
        return searcher.search_counted(query, k, options, fields)


async def run_search(http: Request, request: SearchRequest) -> Response:
    """One search, awaited on the micro-batcher when it is on (no worker thread is held while it waits), else
    run in a worker thread. The body is serialised once, straight from the result records."""
    live = loaded_index(http)
    started = time.perf_counter()
    options = request_options(
        http.app.state.search_defaults,
        offset=request.offset,
        sort=request.sort,
        recency_half_life=request.recency_half_life,
        now=request.now,
        mode=request.mode,
        fusion=request.fusion,
        weight=request.weight,
        per_article=request.per_article,
        date_from=request.date_from,
        date_to=request.date_to,
        source=request.source,
        article_id=request.article_id,
    )
    batcher: QueryBatcher | None = http.app.state.batcher
    facets = None
    if request.facets:  # its hits and its counts come from one ranking, off the micro-batcher
        fields = parse_fields(request.facets)
        hits, facets = await anyio.to_thread.run_sync(counted_alone, live, request.query, request.k, options, fields)
    elif batcher is not None:
        hits = await asyncio.wrap_future(batcher.submit(request.query, request.k, options))
    else:
        hits = await anyio.to_thread.run_sync(search_alone, live, request.query, request.k, options)
    took = (time.perf_counter() - started) * 1000
    # The shape documented by `SearchResponse` (FastAPI does not check a returned Response; the schema
    # conformance test in tests/test_server.py does).
    body: dict[str, object] = {"query": request.query, "mode": options.mode, "took_ms": round(took, 3), "hits": hits}
    if facets is not None:
        body["facets"] = facets
    return Response(pydantic_core.to_json(body), media_type="application/json")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home() -> HTMLResponse:
    return HTMLResponse(_page())


@router.get("/search", response_model=SearchResponse, summary="Search with query parameters")
async def search_get(http: Request, request: Annotated[SearchQuery, Query()]) -> Response:
    return await run_search(http, request)


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search with a JSON body",
    dependencies=JSON_BODY,
    responses=responses(415),
)
async def search_post(http: Request, request: SearchRequest) -> Response:
    return await run_search(http, request)
