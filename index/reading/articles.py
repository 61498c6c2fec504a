"""Articles and passages: the records the indexer stores.

Article ids are keys compared after NFC normalisation (`folding.normalize_id`): readers and writes store the
NFC form and lookups normalise the id they are given, so the composed and decomposed spellings of "café" name
one article. Every text field holds Unicode text (no lone surrogates, which cannot be stored as UTF-8), and
metadata is JSON: finite numbers and at most `MAX_DEPTH` levels of lists and objects. `url` is an absolute
http(s) link or None: any other value given (`javascript:...`) is kept as `metadata["url_raw"]` instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

WEB_SCHEMES = ("http", "https")


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

    def __post_init__(self) -> None:
        # Every reader and write builds an Article, so this is where the link rule holds for all of them.
        if not isinstance(self.url, str) or is_web_url(self.url):
            return
        if isinstance(self.metadata, dict) and "url_raw" not in self.metadata:
            object.__setattr__(self, "metadata", {**self.metadata, "url_raw": self.url})
        object.__setattr__(self, "url", None)

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


def is_web_url(url: str) -> bool:
    """Whether `url` is an absolute http(s) URL, the only kind a page may set as a link's target: a
    `javascript:` or `data:` link runs or shows content as the page itself."""
    if url != url.strip() or any(ch < " " or ch == "\x7f" for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme.lower() in WEB_SCHEMES and bool(parts.netloc)


MAX_ID_CHARS = 1000
MAX_DEPTH = 64  # levels of lists and objects in a metadata value

# What a character that is not printable is, by Unicode category, for messages that say the true cause.
_UNPRINTABLE = {
    "Cc": "a control character",
    "Cs": "a lone surrogate",
    "Cf": "an invisible formatting character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Zs": "a space other than U+0020",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
}


def describe_char(ch: str) -> str:
    """`ch` named by what it is and its code point, e.g. "a control character (U+000A)"."""
    kind = _UNPRINTABLE.get(unicodedata.category(ch), "a character")
    return f"{kind} (U+{ord(ch):04X})"


def id_problem(article_id: str) -> str | None:
    """Why `article_id` cannot name an article, or None when it can.

    Ids are keys, never paths, but one that looks like a path escape or carries characters that do not
    print is refused so that it cannot mislead a URL, a log line or a file name made from it.
    """
    if not article_id.strip():
        return "the id is empty"
    if len(article_id) > MAX_ID_CHARS:
        return f"the id is {len(article_id)} characters long; the limit is {MAX_ID_CHARS}"
    bad = next((n for n, ch in enumerate(article_id) if not ch.isprintable()), None)
    if bad is not None:
        return f"the id holds {describe_char(article_id[bad])} at character {bad + 1}"
    if article_id != article_id.strip():
        return "the id starts or ends with whitespace"
    parts = article_id.replace("\\", "/").split("/")
    if article_id.startswith(("/", "\\")) or ".." in parts:
        return "the id looks like a path escape ('..' or a leading slash)"
    return None


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored as UTF-8 (a lone surrogate, as a JSON `\\ud800` escape gives), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = f"{describe_char(text[exc.start])} at character {exc.start + 1}"
        return f"holds {where}, which is not Unicode text; send the text as UTF-8"
    return None


def field_label(name: str) -> str:
    """A field's name as a message can show it: as given when it prints, else quoted with escapes."""
    return name[:40] if name[:40].isprintable() else repr(name[:40])


def value_problem(value: object, where: str, depth: int = 0) -> str | None:
    """Why a metadata value cannot be stored and read back as the same JSON, naming where in it, or None."""
    if isinstance(value, str):
        problem = text_problem(value)
        return f"{where} {problem}" if problem else None
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value}, a number JSON cannot carry"
    if isinstance(value, (list, dict)):
        if depth >= MAX_DEPTH:
            return f"{where} is nested deeper than {MAX_DEPTH} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict) and (not isinstance(key, str) or text_problem(key)):
                return f"{where} has a key that is not Unicode text"
            label = repr(key[:40]) if isinstance(key, str) else str(key)
            problem = value_problem(item, f"{where}[{label}]", depth + 1)
            if problem:
                return problem
        return None
    return f"{where} holds a {type(value).__name__}, which is not JSON"


def article_problem(article: Article) -> str | None:
    """Why `article` cannot be written, naming the field, or None."""
    problem = id_problem(article.id)
    if problem:
        return f"the id {article.id[:80]!r} is not allowed: {problem}"
    for name in ("title", "body", "date", "source", "url", "author", "path"):
        value = getattr(article, name)
        problem = text_problem(value) if isinstance(value, str) else None
        if problem:
            return f"{name} {problem}"
    if not article.body.strip():
        return "body is empty; give the article's text"
    if not isinstance(article.metadata, dict):
        return "metadata is not an object"
    for key, value in article.metadata.items():
        if not isinstance(key, str) or text_problem(key):
            return "a metadata field name is not Unicode text"
        problem = value_problem(value, field_label(key))
        if problem:
            return problem
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
