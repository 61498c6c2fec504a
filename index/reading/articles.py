"""Articles and passages: the records the indexer stores."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Article:
    """One news article as read from the corpus; `body` is the text passages point into."""

    id: str
    title: str
    body: str
    date: str | None = None
    source: str | None = None
    url: str | None = None
    author: str | None = None
    path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def content_hash(self) -> str:
        """Hash of everything that is indexed, to notice when an article changes."""
        payload = json.dumps(
            [self.title, self.body, self.date, self.source, self.url, self.author, self.metadata],
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Passage:
    """A slice of an article's body: `text == article.body[start:end]`."""

    article_id: str
    ordinal: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class StoredPassage:
    """A passage as a generation holds it: a stable id (never renumbered) and the hash of the text
    its vector was made from, so an unchanged text is never embedded twice."""

    id: int
    passage: Passage
    embed_hash: str


MAX_ID_CHARS = 1000


def id_problem(article_id: str) -> str | None:
    """Why `article_id` cannot name an article, or None when it can.

    Ids are keys, never paths, but one that looks like a path escape or carries control characters is
    refused so that it cannot mislead a URL, a log line or a file name made from it.
    """
    if not article_id.strip():
        return "the id is empty"
    if len(article_id) > MAX_ID_CHARS:
        return f"the id is {len(article_id)} characters long; the limit is {MAX_ID_CHARS}"
    if any(not ch.isprintable() for ch in article_id):
        return "the id holds control characters"
    if article_id != article_id.strip():
        return "the id starts or ends with whitespace"
    parts = article_id.replace("\\", "/").split("/")
    if article_id.startswith(("/", "\\")) or ".." in parts:
        return "the id looks like a path escape ('..' or a leading slash)"
    return None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Skipped:
    """A file or record the reader could not use, and why."""

    where: str
    reason: str


@dataclass
class ReadReport:
    """What reading a corpus produced besides articles: skips and warnings for the summary."""

    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append(Skipped(where, reason))

    def warn(self, message: str) -> None:
        self.warnings.append(message)
