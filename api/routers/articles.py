"""Articles: read one with its passages; add, replace and remove them (bearer token, checked before the body is
read: `WriteRoute`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request

from semsearch.api.deps import SearcherDep, WriteRoute, responses
from semsearch.api.errors import NotFound
from semsearch.api.schemas import (
    ArticleBatchIn,
    ArticleIn,
    ArticleOut,
    PassageOut,
    RelatedOut,
    RelatedQuery,
    RelatedResponse,
    WriteOut,
)
from semsearch.errors import InvalidArticleError
from semsearch.index.reading.articles import Article, id_problem
from semsearch.index.reading.readers import article_from_record
from semsearch.index.writing.builder import BuildSummary, delete_articles, write_articles
from semsearch.search.filters import Filters
from semsearch.search.live import LiveSearcher

router = APIRouter()
writes = APIRouter(route_class=WriteRoute)


def links(article_id: str, *operations: str) -> dict[int | str, dict[str, object]]:
    """OpenAPI links from a write's answer to the operations on the article it wrote (`article_id` is a runtime
    expression), so that a client, or schemathesis's stateful run, can read back and delete what it wrote."""
    named = {op: {"operationId": op, "parameters": {"article_id": article_id}} for op in operations}
    return {200: {"description": "The write is done and served", "links": named}}


def to_article(item: ArticleIn, where: str) -> Article:
    # An id is the key in the article's URL: taken as sent, never trimmed as a file's may be, so that what is
    # written is read back and deleted by the id that was sent.
    problem = id_problem(item.id)
    if problem:
        raise InvalidArticleError(f"{where}: bad id {item.id[:80]!r}: {problem}")
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


def run_write(request: Request, upserts: Sequence[Article], deletes: Sequence[str] = ()) -> WriteOut:
    """One write at a time from this server (others queue); another process writing gives 409."""
    state = request.app.state
    live: LiveSearcher = state.live
    with state.write_lock:
        summary = (
            write_articles(state.settings, upserts, embedder=live.embedder, merge=False)
            if upserts
            else delete_articles(state.settings, deletes, embedder=live.embedder, merge=False)
        )
        if summary.generation is not None:
            live.refresh()  # the response's generation is the one served from now on
    if summary.generation is not None and state.settings.merge:
        state.merger.wake()
    return write_out(summary)


# Before `get_article`, whose `{article_id:path}` would take `x/related` as an id.
@router.get(
    "/articles/{article_id:path}/related",
    response_model=RelatedResponse,
    summary="The articles closest to this one as a whole",
    operation_id="get_related",
)
def get_related(engine: SearcherDep, article_id: str, query: Annotated[RelatedQuery, Query()]) -> RelatedResponse:
    filters = Filters.parse(query.date_from, query.date_to, query.source)
    found = engine.related(article_id, query.k, filters)
    return RelatedResponse(article_id=article_id, related=[RelatedOut(**asdict(r)) for r in found])


@router.get(
    "/articles/{article_id:path}",
    response_model=ArticleOut,
    summary="An article and its passages",
    operation_id="get_article",
)
def get_article(engine: SearcherDep, article_id: str) -> ArticleOut:
    article = engine.article(article_id)
    if article is None:
        raise NotFound(f"No article with id {article_id!r}")
    passages = [
        PassageOut(passage_id=pid, offsets=span, text=article.body[span[0] : span[1]]) for pid, span in article.passages
    ]
    fields = asdict(article)
    fields["passages"] = passages
    return ArticleOut(**fields)


@writes.post(
    "/articles",
    response_model=WriteOut,
    summary="Add or replace a batch of articles (bearer token)",
    operation_id="post_articles",
    responses={
        **responses(401, 403, 409, 415),
        **links("$request.body#/articles/0/id", "get_article", "delete_article"),
    },
)
def post_articles(request: Request, batch: ArticleBatchIn) -> WriteOut:
    return run_write(request, [to_article(a, f"articles[{n}]") for n, a in enumerate(batch.articles)])


@writes.put(
    "/articles/{article_id:path}",
    response_model=WriteOut,
    summary="Add or replace one article (bearer token)",
    operation_id="put_article",
    responses={**responses(401, 403, 409, 415), **links("$request.path.article_id", "get_article", "delete_article")},
)
def put_article(request: Request, article_id: str, article: ArticleIn) -> WriteOut:
    if article.id != article_id:
        raise InvalidArticleError(f"The body's id {article.id!r} is not the id in the path {article_id!r}")
    return run_write(request, [to_article(article, "body")])


@writes.delete(
    "/articles/{article_id:path}",
    response_model=WriteOut,
    summary="Remove an article (bearer token)",
    operation_id="delete_article",
    responses={**responses(401, 403, 409), **links("$request.path.article_id", "get_article")},
)
def delete_article(request: Request, article_id: str) -> WriteOut:
    return run_write(request, [], [article_id])


router.include_router(writes)
