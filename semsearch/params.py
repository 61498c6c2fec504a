"""The search parameters, each defined once: name, range, default and help.

The HTTP schema (`api/schemas.py`), the `ask` options (`api/cli.py`), `SearchOptions` (`search/searcher.py`)
and the `Settings` that hold a server's defaults all read this table, so a bound changes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, get_args

T = TypeVar("T")

Mode = Literal["dense", "lexical", "hybrid"]
Fusion = Literal["weighted", "rrf"]
Sort = Literal["relevance", "date"]
MODES: tuple[str, ...] = get_args(Mode)
FUSIONS: tuple[str, ...] = get_args(Fusion)
SORTS: tuple[str, ...] = get_args(Sort)
MAX_K = 100
MAX_OFFSET = 1000
DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
# A day, or a day and a time (seconds and fraction optional), with an optional zone (Z or +HH:MM).
INSTANT_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$"
FACET_FIELDS = ("source", "month")
FACETS_PATTERN = r"^(source|month)(,(source|month))?$"
MAX_HALF_LIFE = 36500


@dataclass(frozen=True, kw_only=True)
class Param(Generic[T]):
    """One search parameter. A request that leaves it out gets `default`, or, where `setting` names a field of
    `Settings`, that setting (whose own default is `default`). `help` documents HTTP, `cli_help` the `ask` flag."""

    name: str
    kind: type[int] | type[float] | type[str]
    default: T
    help: str
    cli_help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    max_length: int | None = None
    setting: str | None = None
    flag: str | None = None
    cli_default: T | None = None
    metavar: str | None = None
    examples: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        """The `ask` flag: `--per-article` for `per_article`, unless `flag` says otherwise."""
        return self.flag or "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """What the parameter accepts, for messages: "one of dense, lexical, hybrid", "an integer from 1 to 100"."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None and self.high is not None:
            return f"{'an integer' if self.kind is int else 'a number'} from {self.low} to {self.high}"
        return "any text" if self.max_length is None else f"at most {self.max_length} characters"

    def accepts(self, value: Any) -> bool:
        """Whether `value` has the parameter's type (an int is a float too; a bool is neither) and is in range
        (or one of the choices)."""
        kinds = (int, float) if self.kind is float else (self.kind,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return False
        if self.choices:
            return value in self.choices
        if self.low is not None and self.high is not None and isinstance(value, int | float):
            return bool(self.low <= value <= self.high)
        return True


K: Param[int] = Param(
    name="k",
    kind=int,
    default=10,
    low=1,
    high=MAX_K,
    flag="-k",
    cli_default=5,
    help="How many passages to return.",
    cli_help="How many passages.",
)
OFFSET: Param[int] = Param(
    name="offset",
    kind=int,
    default=0,
    low=0,
    high=MAX_OFFSET,
    help="Skip this many hits: the answer holds the hits ranked offset+1 to offset+k, with those ranks. Pages of "
    "one query by relevance (offset 0, k, 2k, ...) neither repeat nor skip a passage; with sort=date, only while "
    "offset+k stays within one block of 50.",
    cli_help="Skip this many hits (the next page: --offset K).",
)
SORT: Param[str] = Param(
    name="sort",
    kind=str,
    default="relevance",
    choices=SORTS,
    help="relevance (best first), or date: the passages relevance ranking keeps from its candidates for "
    "offset+k hits, newest first (ties by relevance; undated articles last).",
    cli_help="Order of the hits: relevance, or date (newest first).",
)
RECENCY_HALF_LIFE: Param[float | None] = Param(
    name="recency_half_life",
    kind=float,
    default=None,
    low=0.01,
    high=MAX_HALF_LIFE,
    help="Boost recent articles in relevance ranking: a score keeps 0.5 + 0.5 * 2^(-age/half-life) of itself, "
    "age in days before `now` (a new article keeps all of it, one a half-life old 75%, an old one half). Articles "
    "without a date keep half, as the oldest do; articles dated after `now` keep all. Off when left out.",
    cli_help="Boost recent articles: half-life in days.",
    metavar="DAYS",
)
NOW: Param[str | None] = Param(
    name="now",
    kind=str,
    default=None,
    pattern=INSTANT_PATTERN,
    max_length=40,
    metavar="WHEN",
    help="The moment ages are counted from for `recency_half_life`: an ISO 8601 day or time (UTC unless a zone "
    "is given), e.g. 2012-05-31 or 2012-05-31T12:00:00Z; the request's time, to the minute, when left out. Give "
    "it for results that do not change as time passes (and on every page of one search). Checked even without "
    "`recency_half_life`, which it otherwise leaves alone.",
    cli_help="Count ages from this ISO 8601 day or time (default: now, to the minute).",
)
FACETS: Param[str | None] = Param(
    name="facets",
    kind=str,
    default=None,
    pattern=FACETS_PATTERN,
    max_length=20,
    examples=("source", "month", "source,month"),
    help="Count the matching articles per source and/or per month: `source`, `month` or `source,month`. The "
    "matching articles are those of the passages the ranking of this request draws on (the candidates of each "
    "retriever, after filters, phrases and exclusions), not only of the hits shown.",
    cli_help="Count matching articles per source and/or month (source,month).",
    metavar="FIELDS",
)
MODE: Param[str] = Param(
    name="mode",
    kind=str,
    default="hybrid",
    choices=MODES,
    setting="search_mode",
    help="dense (embeddings), lexical (BM25) or hybrid (both fused); default from the server's settings.",
    cli_help="Retrieval mode (default: SEMSEARCH_SEARCH_MODE).",
)
FUSION: Param[str] = Param(
    name="fusion",
    kind=str,
    default="weighted",
    choices=FUSIONS,
    setting="fusion",
    help="How hybrid fuses: weighted (normalised scores) or rrf (reciprocal rank fusion).",
    cli_help="How hybrid fuses the two rankings.",
)
WEIGHT: Param[float] = Param(
    name="weight",
    kind=float,
    default=0.5,
    low=0,
    high=1,
    setting="hybrid_weight",
    help="Dense share of a hybrid score, 0 to 1.",
    cli_help="Dense share of a hybrid score.",
)
PER_ARTICLE: Param[int] = Param(
    name="per_article",
    kind=int,
    default=2,
    low=0,
    high=MAX_K,
    setting="per_article",
    help="At most this many passages per article (0: no limit).",
    cli_help="Passages per article (0: no limit).",
)
DATE_FROM: Param[str | None] = Param(
    name="date_from",
    kind=str,
    default=None,
    pattern=DAY_PATTERN,
    metavar="YYYY-MM-DD",
    help="Only articles dated on or after this day (YYYY-MM-DD).",
    cli_help="Only articles dated on or after this day.",
)
DATE_TO: Param[str | None] = Param(
    name="date_to",
    kind=str,
    default=None,
    pattern=DAY_PATTERN,
    metavar="YYYY-MM-DD",
    help="Only articles dated on or before this day (YYYY-MM-DD).",
    cli_help="Only articles dated on or before this day.",
)
SOURCE: Param[str | None] = Param(
    name="source",
    kind=str,
    default=None,
    max_length=200,
    help="Only articles from this source (case-insensitive).",
    cli_help="Only articles from this source.",
)
ARTICLE_ID: Param[str | None] = Param(
    name="article_id",
    kind=str,
    default=None,
    max_length=1000,
    help="Only passages of this article.",
    cli_help="Only passages of this article.",
)
# In the order HTTP documents them and `ask --help` lists them.
SEARCH_PARAMS: tuple[Param[Any], ...] = (
    K,
    OFFSET,
    SORT,
    RECENCY_HALF_LIFE,
    NOW,
    FACETS,
    MODE,
    FUSION,
    WEIGHT,
    PER_ARTICLE,
    DATE_FROM,
    DATE_TO,
    SOURCE,
    ARTICLE_ID,
)
