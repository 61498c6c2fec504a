"""HTTP request and response models (pydantic), separate from the search result types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from index.errors import EmptyQueryError
from search.searcher import MAX_K, clean_query

MAX_QUERY_CHARS = 1000
QUERY_HELP = "The question: 1 to 1,000 characters after trimming, not only whitespace or control characters."
# Documented in the schema; enforced (with clearer messages) by the validators.
QUERY_SCHEMA: dict[str, JsonValue] = {"minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": r"\S"}


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description=QUERY_HELP, json_schema_extra=QUERY_SCHEMA)
    k: int = Field(10, ge=1, le=MAX_K, description="How many passages to return.")

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


class SearchResponse(BaseModel):
    query: str
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


class StatsOut(BaseModel):
    articles: int
    passages: int
    model: dict[str, str]
    index_type: str
    built_at: str
    index_bytes: int
    generation: str


class ErrorDetail(BaseModel):
    type: str = Field(description="A stable name for the kind of error.")
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail
