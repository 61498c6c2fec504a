"""Read articles from files and folders: .txt, .md, .jsonl, .json, .csv, .html/.htm.

Bad input is reported (file, line, reason) and skipped; the rest of the corpus is still read.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from semsearch.errors import InputPathError
from semsearch.index.reading.articles import Article, ReadReport, id_problem
from semsearch.index.reading.dates import normalize_date

SUPPORTED = (".txt", ".md", ".jsonl", ".json", ".csv", ".html", ".htm")
_TEXT_FIELDS = ("text", "body", "content")
_KNOWN_FIELDS = {"id", "_id", "title", "date", "source", "url", "author", *_TEXT_FIELDS}
_BINARY_SNIFF = 8192


def read_corpus(paths: Sequence[Path], ignore: Sequence[str], report: ReadReport) -> Iterator[Article]:
    """Every article under `paths` (files or folders, recursive), in a stable order."""
    missing = [str(p) for p in paths if not p.exists() and not p.is_symlink()]
    if missing:
        raise InputPathError(f"No such file or folder: {', '.join(missing)}")
    for path in paths:
        if path.is_dir():
            root = path
            files = sorted(p for p in path.rglob("*") if not p.is_dir())
        else:
            root = path.parent
            files = [path]
        for file in files:
            rel = file.relative_to(root).as_posix()
            if path.is_dir() and _ignored(file.relative_to(root), ignore):
                continue
            yield from read_file(file, rel, report)


def _ignored(rel: Path, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in rel.parts for pattern in patterns)


def read_file(path: Path, rel: str, report: ReadReport) -> Iterator[Article]:
    """Articles of one file; `rel` (its path relative to the corpus root) seeds ids."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        report.skip(str(path), f"unsupported file type {suffix or '(none)'}; use one of {', '.join(SUPPORTED)}")
        return
    text = _decode(path, report)
    if text is None:
        return
    if suffix in (".txt", ".md"):
        article = _from_plain(text, rel, str(path), markdown=suffix == ".md")
        if article is None:
            report.skip(str(path), "no body text after the title line")
        else:
            yield article
    elif suffix == ".jsonl":
        yield from _from_jsonl(text, rel, path, report)
    elif suffix == ".json":
        yield from _from_json(text, rel, path, report)
    elif suffix == ".csv":
        yield from _from_csv(text, rel, path, report)
    else:
        article = _from_html(text, rel, str(path))
        if article is None:
            report.skip(str(path), "no paragraph text in the HTML")
        else:
            yield article


def _decode(path: Path, report: ReadReport) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        report.skip(str(path), f"unreadable: {exc.strerror or exc}")
        return None
    if b"\x00" in data[:_BINARY_SNIFF]:
        report.skip(str(path), "binary file")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        report.warn(f"{path}: not valid UTF-8 (byte {exc.start}); decoded with replacement characters")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        report.skip(str(path), "empty file")
        return None
    return text


def _from_plain(text: str, rel: str, where: str, markdown: bool) -> Article | None:
    lines = text.strip().split("\n", 1)
    title = lines[0].strip()
    if markdown:
        title = title.lstrip("#").strip()
    body = lines[1].strip() if len(lines) > 1 else ""
    if not body:
        return None
    return Article(id=rel, title=title, body=body, path=where)


def article_from_record(record: Mapping[str, Any], fallback_id: str, where: str) -> Article:
    """An article from a JSON object or CSV row; raises ValueError with the reason when unusable."""
    body = next((record[f] for f in _TEXT_FIELDS if isinstance(record.get(f), str) and record[f].strip()), None)
    if body is None:
        raise ValueError(f"no text: give one of the fields {', '.join(_TEXT_FIELDS)}")
    raw_id = record.get("id", record.get("_id"))
    article_id = str(raw_id).strip() if raw_id not in (None, "") else fallback_id
    problem = id_problem(article_id)
    if problem:
        raise ValueError(f"bad id {article_id[:80]!r}: {problem}")
    try:
        date = normalize_date(record.get("date"))
    except ValueError as exc:
        raise ValueError(f"bad date: {exc}") from None
    metadata = {k: v for k, v in record.items() if k not in _KNOWN_FIELDS and k is not None}
    return Article(
        id=article_id,
        title=_text_or_none(record.get("title")) or "",
        body=body.replace("\r\n", "\n").strip(),
        date=date,
        source=_text_or_none(record.get("source")),
        url=_text_or_none(record.get("url")),
        author=_text_or_none(record.get("author")),
        path=where,
        metadata=metadata,
    )


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _from_jsonl(text: str, rel: str, path: Path, report: ReadReport) -> Iterator[Article]:
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            report.skip(where, f"malformed JSON: {exc.msg}")
            continue
        yield from _record_article(record, f"{rel}:{lineno}", where, report)


def _from_json(text: str, rel: str, path: Path, report: ReadReport) -> Iterator[Article]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        report.skip(f"{path}:{exc.lineno}", f"malformed JSON: {exc.msg}")
        return
    records = data if isinstance(data, list) else [data]
    for n, record in enumerate(records):
        yield from _record_article(record, f"{rel}:{n}" if isinstance(data, list) else rel, f"{path}[{n}]", report)


def _from_csv(text: str, rel: str, path: Path, report: ReadReport) -> Iterator[Article]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:
                report.skip(where, "more fields than the header names")
                continue
            yield from _record_article(row, f"{rel}:{reader.line_num}", where, report)
    except csv.Error as exc:
        report.skip(f"{path}:{reader.line_num}", f"malformed CSV: {exc}")


def _record_article(record: object, fallback_id: str, where: str, report: ReadReport) -> Iterator[Article]:
    if not isinstance(record, dict):
        report.skip(where, f"expected a JSON object, got {type(record).__name__}")
        return
    try:
        yield article_from_record(record, fallback_id, where)
    except ValueError as exc:
        report.skip(where, str(exc))


class _ArticleHTML(HTMLParser):
    """Collects <title>, the first <h1> and the text of each <p>, ignoring scripts and styles."""

    _SKIP = {"script", "style", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.h1 = ""
        self.paragraphs: list[str] = []
        self._stack: list[str] = []
        self._buffer: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag in ("p", "title", "h1"):
            self._flush()
            self._stack.append(tag)
        elif tag == "br" and self._stack:
            self._buffer.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif self._stack and tag == self._stack[-1]:
            self._flush()
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._stack and not self._skip_depth:
            self._buffer.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = " ".join("".join(self._buffer).split())
        self._buffer = []
        if not text or not self._stack:
            return
        tag = self._stack[-1]
        if tag == "title" and not self.title:
            self.title = text
        elif tag == "h1" and not self.h1:
            self.h1 = text
        elif tag == "p":
            self.paragraphs.append(text)


def _from_html(text: str, rel: str, where: str) -> Article | None:
    parser = _ArticleHTML()
    parser.feed(text)
    parser.close()
    if not parser.paragraphs:
        return None
    return Article(id=rel, title=parser.title or parser.h1, body="\n\n".join(parser.paragraphs), path=where)
