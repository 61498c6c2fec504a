"""HTTP request and response models (pydantic), separate from the search result types."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from semsearch.errors import EmptyQueryError
from semsearch.index.reading.articles import MAX_ID_CHARS
from semsearch.search.searcher import MAX_K, clean_query

MAX_QUERY_CHARS = 1000
MAX_BATCH = 1000
QUERY_HELP = "The question: 1 to 1,000 characters after trimming, not only whitespace or control characters."
# Documented in the schema; enforced (with clearer messages) by the validators.
QUERY_SCHEMA: dict[str, JsonValue] = {"minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": r"\S"}


Mode = Literal["dense", "lexical", "hybrid"]
Fusion = Literal["weighted", "rrf"]
DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
# One description per search parameter, shared by GET's query parameters and POST's body.
PARAM_HELP = {
    "k": "How many passages to return.",
    "mode": "dense (embeddings), lexical (BM25) or hybrid (both fused); default from the server's settings.",
    "fusion": "How hybrid fuses: weighted (normalised scores) or rrf (reciprocal rank fusion).",
    "weight": "Dense share of a hybrid score, 0 to 1.",
    "per_article": "At most this many passages per article (0: no limit).",
    "date_from": "Only articles dated on or after this day (YYYY-MM-DD).",
    "date_to": "Only articles dated on or before this day (YYYY-MM-DD).",
    "source": "Only articles from this source (case-insensitive).",
    "article_id": "Only passages of this article.",
}


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description=QUERY_HELP, json_schema_extra=QUERY_SCHEMA)
    k: int = Field(10, ge=1, le=MAX_K, description=PARAM_HELP["k"])
    mode: Mode | None = Field(None, description=PARAM_HELP["mode"])
    fusion: Fusion | None = Field(None, description=PARAM_HELP["fusion"])
    weight: float | None = Field(None, ge=0, le=1, description=PARAM_HELP["weight"])
    per_article: int | None = Field(None, ge=0, le=MAX_K, description=PARAM_HELP["per_article"])
    date_from: str | None = Field(None, pattern=DAY_PATTERN, description=PARAM_HELP["date_from"])
    date_to: str | None = Field(None, pattern=DAY_PATTERN, description=PARAM_HELP["date_to"])
    source: str | None = Field(None, max_length=200, description=PARAM_HELP["source"])
    article_id: str | None = Field(None, max_length=1000, description=PARAM_HELP["article_id"])

    @field_validator("query")
    @classmethod
    def _query_length(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("query must not contain NUL characters")
        try:
            cleaned = clean_query(value)
        except EmptyQueryError:
            raise ValueError(f"query is empty: give 1 to {MAX_QUERY_CHARS} characters") from None
        if len(cleaned) > MAX_QUERY_CHARS:
            raise ValueError(f"query is {len(cleaned)} characters long: give at most {MAX_QUERY_CHARS}")
        return cleaned


class HitOut(BaseModel):
    rank: int
    score: float
    passage_id: int
    article_id: str
    title: str
    text: str
    date: str | None
    source: str | None
    url: str | None
    offsets: tuple[int, int] = Field(description="Character offsets of `text` in the article body.")
    highlights: list[tuple[int, int]] = Field(
        description="Character offsets in `text` of the words that match the query's terms (stems included)."
    )
    duplicates: list[str] = Field(
        description="Ids of other articles whose near-identical passage was folded into this hit."
    )


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    took_ms: float
    hits: list[HitOut]


class PassageOut(BaseModel):
    passage_id: int
    offsets: tuple[int, int]
    text: str


class ArticleOut(BaseModel):
    id: str
    title: str
    date: str | None
    source: str | None
    url: str | None
    author: str | None
    body: str
    metadata: dict[str, Any]
    passages: list[PassageOut]


class HealthOut(BaseModel):
    status: str = Field(description="`ok` while the process is up.")
    index_loaded: bool


class VectorIndexOut(BaseModel):
    type: str = Field(description="FAISS index: `IDMap2,Flat` (exact) or `IDMap2,HNSW32` (approximate).")
    params: dict[str, int]
    recall_at_10: float = Field(description="Recall@10 against exact search, measured when the index was built.")
    probe_queries: int


class StatsOut(BaseModel):
    articles: int
    passages: int
    model: dict[str, str | int | None] = Field(description="The model and backend that built the index.")
    index_type: str
    vector_index: VectorIndexOut
    built_at: str
    index_bytes: int
    generation: str
    last_write: dict[str, int] = Field(description="What the write that made this generation changed.")
    reload_error: str | None = Field(
        description="Why the newest generation on disk could not be loaded (the one shown goes on serving), or null."
    )


class ArticleIn(BaseModel):
    """An article to write: the same fields as a record of a .jsonl file; other fields are kept as metadata."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="Stable id; writing it again replaces it.")
    title: str = ""
    body: str | None = Field(None, description="The article text (`text` or `content` are accepted too).")
    date: str | None = Field(None, description="ISO 8601 date or date-time.")
    source: str | None = None
    url: str | None = None
    author: str | None = None


class ArticleBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    articles: list[ArticleIn] = Field(min_length=1, max_length=MAX_BATCH, description="Articles to add or replace.")


class WriteOut(BaseModel):
    generation: str | None = Field(description="The generation written, or null when nothing changed.")
    articles: int = Field(description="Articles in the index after the write.")
    passages: int
    added: int
    updated: int
    removed: int
    unchanged: int
    embedded: int = Field(description="Passages embedded by this write.")
    reused: int = Field(description="Passages of re-split articles whose vector was reused (same text).")
    index_type: str | None


class ErrorDetail(BaseModel):
    type: str = Field(description="A stable name for the kind of error.")
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail
