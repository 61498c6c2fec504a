"""Errors a user of semsearch can meet; each message says the cause and the fix."""

from __future__ import annotations


class SemsearchError(Exception):
    """Base class of every failure a user can meet; the CLI and HTTP layers map these."""


class ConfigError(SemsearchError):
    """A setting has a value that is not allowed."""


class NoIndexError(SemsearchError):
    """There is no index where one was expected."""


class IndexMismatchError(SemsearchError):
    """The index was built with another model, dimension or format than the one configured."""


class CorruptIndexError(SemsearchError):
    """A file of the index is missing, truncated or does not match its checksum."""


class IndexBusyError(SemsearchError):
    """Another process is writing the index."""


class EmptyCorpusError(SemsearchError):
    """The paths given to the indexer hold no article that can be indexed."""


class InputPathError(SemsearchError):
    """A path given to the indexer does not exist."""


class EmptyQueryError(SemsearchError):
    """The question is empty or only whitespace."""


class ModelLoadError(SemsearchError):
    """The embedding model could not be loaded from its local folder."""


class InvalidSearchError(SemsearchError):
    """A search parameter is outside what is allowed (k, mode, fusion, weight, per-article cap)."""


class InvalidFilterError(SemsearchError):
    """A search filter is malformed (a date that is not YYYY-MM-DD, an empty date range)."""


class InvalidArticleError(SemsearchError):
    """An article given to write is malformed: a bad or duplicate id, no text."""


class ArticleTooLargeError(InvalidArticleError):
    """An article given to write is longer than the largest one accepted (SEMSEARCH_MAX_ARTICLE_CHARS)."""


class ArticleNotFoundError(SemsearchError):
    """An article id given to delete or replace is not in the index."""


class IndexNotWritableError(SemsearchError):
    """The index location cannot take a write: it is a file, a folder holding something other than an index
    (left untouched), or a folder this user may not write."""


class StorageWriteError(SemsearchError):
    """The file system refused to store a write (disk full, a quota or file size limit, an I/O error); the index
    is unchanged."""


class ServerAddressError(SemsearchError):
    """The server cannot listen where it was told: the port is in use, not allowed, or the host is not here."""
