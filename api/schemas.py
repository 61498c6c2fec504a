"""HTTP request and response models (pydantic), separate from the search result types."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from semsearch.errors import EmptyQueryError
from semsearch.index.reading.articles import MAX_ID_CHARS
from semsearch.params import (
    ARTICLE_ID,
    DATE_FROM,
    DATE_TO,
    FACETS,
    FUSION,
    MODE,
    NOW,
    OFFSET,
    PER_ARTICLE,
    RECENCY_HALF_LIFE,
    SORT,
    SOURCE,
    WEIGHT,
    Fusion,
    K,
    Mode,
    Param,
    Sort,
)
from semsearch.search.searcher import clean_query

MAX_QUERY_CHARS = 1000
MAX_BATCH = 1000
QUERY_HELP = "The question: 1 to 1,000 characters after trimming, not only whitespace or control characters."
# Documented in the schema; enforced (with clearer messages) by the validators.
QUERY_SCHEMA: dict[str, JsonValue] = {"minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": r"\S"}


def param_field(param: Param[Any]) -> Any:
    """The pydantic field of a search parameter, from its row of `semsearch.params`. Left out, a parameter that a
    server setting defaults is None: the server fills it in."""
    return Field(
        None if param.setting else param.default,
        ge=param.low,
        le=param.high,
        pattern=param.pattern,
        max_length=param.max_length,
        description=param.help,
    )


# POST /search's body: the question and every search parameter (a docstring would add to the OpenAPI schema).
# Types are strict in a JSON body (`true` or "5" is not a `k`); a query string is text, and `SearchQuery`
# parses it as such. In both, a parameter given as an empty string is left out, as an HTML form sends it.
class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = Field(description=QUERY_HELP, json_schema_extra=QUERY_SCHEMA)
    k: int = param_field(K)
    offset: int = param_field(OFFSET)
    sort: Sort = param_field(SORT)
    recency_half_life: float | None = param_field(RECENCY_HALF_LIFE)
    now: str | None = param_field(NOW)
    facets: str | None = param_field(FACETS)
    mode: Mode | None = param_field(MODE)
    fusion: Fusion | None = param_field(FUSION)
    weight: float | None = param_field(WEIGHT)
    per_article: int | None = param_field(PER_ARTICLE)
    date_from: str | None = param_field(DATE_FROM)
    date_to: str | None = param_field(DATE_TO)
    source: str | None = param_field(SOURCE)
    article_id: str | None = param_field(ARTICLE_ID)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {key: value for key, value in data.items() if key in ("query", "q") or value != ""}

    @model_validator(mode="after")
    def _clean_question(self) -> Self:
        """Checked once the fields are valid, so that the message names no field: the question is `query` in a
        body and `q` in a query string."""
        if "\x00" in self.query:
            raise ValueError("query must not contain NUL characters")
        try:
            cleaned = clean_query(self.query)
        except EmptyQueryError:
            raise ValueError(f"query is empty: give 1 to {MAX_QUERY_CHARS} characters") from None
        if len(cleaned) > MAX_QUERY_CHARS:
            raise ValueError(f"query is {len(cleaned)} characters long: give at most {MAX_QUERY_CHARS}")
        self.query = cleaned
        return self


class SearchQuery(SearchRequest):
    """GET /search's query string: the same model with the question named `q`; unknown parameters are ignored."""

    model_config = ConfigDict(extra="ignore", strict=False)

    query: str = Field(alias="q", description=QUERY_HELP, json_schema_extra=QUERY_SCHEMA)


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


class FacetValueOut(BaseModel):
    value: str
    count: int = Field(description="Matching articles with this value.")


class FacetsOut(BaseModel):
    articles: int = Field(description="Matching articles: those of the passages this request's ranking drew on.")
    source: list[FacetValueOut] | None = Field(None, description="Per source (compared folded), most first.")
    month: list[FacetValueOut] | None = Field(None, description="Per month (YYYY-MM), newest first.")


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    took_ms: float
    hits: list[HitOut]
    facets: FacetsOut | None = Field(None, description="Present when the request asked for `facets`.")


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


# GET /articles/{id}/related's query string: `k` bounded as a search's, the search filters; an empty value is
# left out, and unknown parameters are ignored, as in `SearchQuery`.
class RelatedQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    k: int = Field(K.default, ge=K.low, le=K.high, description="How many related articles to return.")
    date_from: str | None = param_field(DATE_FROM)
    date_to: str | None = param_field(DATE_TO)
    source: str | None = param_field(SOURCE)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        return {key: value for key, value in data.items() if value != ""} if isinstance(data, dict) else data


class RelatedOut(BaseModel):
    rank: int
    score: float = Field(description="Cosine of the two articles' vectors (each the mean of its passages).")
    article_id: str
    title: str
    date: str | None
    source: str | None
    url: str | None
    duplicates: list[str] = Field(description="Ids of other articles near-identical to this one, folded into it.")


class RelatedResponse(BaseModel):
    article_id: str = Field(description="The article the others are related to, as asked.")
    related: list[RelatedOut]


class HealthOut(BaseModel):
    status: str = Field(description="`ok` while the process is up.")
    index_loaded: bool


class VectorIndexOut(BaseModel):
    type: str = Field(description="FAISS index: `IDMap2,Flat` (exact) or `IDMap2,HNSW32` (approximate).")
    params: dict[str, int]
    recall_at_10: float = Field(description="Recall@10 against exact search, measured when the index was built.")
    probe_queries: int


class SegmentOut(BaseModel):
    name: str
    passages: int = Field(description="Live passages.")
    deleted: int = Field(description="Passages deleted (tombstoned) since the segment was written.")
    articles: int = Field(description="Live articles.")
    vector_index: str = Field(description="Exact (`IDMap2,Flat`) or HNSW, chosen by the segment's size.")


class StatsOut(BaseModel):
    articles: int
    passages: int
    model: dict[str, str | int | None] = Field(
        description="The model and backend that built the index, and `plan`: how the backend ran when it "
        "embedded the index's latest passages."
    )
    query_plan: str | None = Field(
        description="The plan this server encodes queries with: the index's backend, run as this machine's plan "
        "says (null for torch-fp32)."
    )
    index_type: str
    vector_index: VectorIndexOut
    built_at: str
    index_bytes: int
    generation: str
    last_write: dict[str, int] = Field(description="What the latest write before this commit changed.")
    segments: list[SegmentOut] = Field(description="The live segments of the commit, oldest first.")
    last_merge: dict[str, Any] = Field(
        description="The latest merge: when, the segments merged, the segment made, its passages, the deleted "
        "passages it dropped and its seconds; empty before the first."
    )
    reload_error: str | None = Field(
        description="Why the newest generation on disk could not be loaded (the one shown goes on serving), or null."
    )


class ArticleIn(BaseModel):
    """An article to write: the same fields as a record of a .jsonl file; other fields are kept as metadata."""

    model_config = ConfigDict(extra="allow", strict=True)

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="Stable id; writing it again replaces it.")
    title: str = ""
    body: str | None = Field(None, description="The article text (`text` or `content` are accepted too).")
    date: str | None = Field(None, description="ISO 8601 date or date-time.")
    source: str | None = None
    url: str | None = None
    author: str | None = None


class ArticleBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

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
