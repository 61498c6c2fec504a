"""Self-hosted semantic search for news.

The public surface: `Engine` (open an index, search it, add and delete articles), `Settings`, and the errors a
user can meet (`SemsearchError` and its subclasses). Everything else may change without notice. `Engine` is
imported on first use, so `import semsearch` loads no model, numpy or FAISS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from semsearch.errors import (
    ArticleNotFoundError,
    ArticleTooLargeError,
    ConfigError,
    CorruptIndexError,
    EmptyCorpusError,
    EmptyQueryError,
    IndexBusyError,
    IndexMismatchError,
    InputPathError,
    InvalidArticleError,
    InvalidFilterError,
    InvalidSearchError,
    ModelLoadError,
    NoIndexError,
    SemsearchError,
)
from semsearch.settings import Settings

if TYPE_CHECKING:
    from semsearch.engine import Engine

__all__ = [
    "ArticleNotFoundError",
    "ArticleTooLargeError",
    "ConfigError",
    "CorruptIndexError",
    "EmptyCorpusError",
    "EmptyQueryError",
    "Engine",
    "IndexBusyError",
    "IndexMismatchError",
    "InputPathError",
    "InvalidArticleError",
    "InvalidFilterError",
    "InvalidSearchError",
    "ModelLoadError",
    "NoIndexError",
    "SemsearchError",
    "Settings",
]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from semsearch.engine import Engine

        return Engine
    raise AttributeError(f"module 'semsearch' has no attribute {name!r}")
