"""Read articles from files and folders: .txt, .md, .jsonl, .json, .csv, .html/.htm.

Bad input is reported (file, line, reason) and skipped; the rest of the corpus is still read. Whatever a file
holds (any bytes, any JSON value, any file name), reading it either yields articles that can be stored and read
back as they are, or reports why not: no other exception leaves `read_corpus`.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semsearch.errors import InputPathError
from semsearch.index.reading.articles import (
    Article,
    ReadReport,
    article_problem,
    field_label,
    id_problem,
    text_problem,
    value_problem,
)
from semsearch.index.reading.dates import normalize_date
from semsearch.index.reading.folding import normalize_id

SUPPORTED = (".txt", ".md", ".jsonl", ".json", ".csv", ".html", ".htm")
_TEXT_FIELDS = ("text", "body", "content")
_KNOWN_FIELDS = {"id", "_id", "title", "date", "source", "url", "author", *_TEXT_FIELDS}
_BINARY_SNIFF = 8192


def read_corpus(paths: Sequence[Path], ignore: Sequence[str], report: ReadReport) -> Iterator[Article]:
    """Every article under `paths` (files or folders, recursive), in a stable order."""
    missing = [display_path(p) for p in paths if not p.exists() and not p.is_symlink()]
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
            rel = normalize_id(file.relative_to(root).as_posix())
            if path.is_dir() and _ignored(file.relative_to(root), ignore):
                continue
            yield from read_file(file, rel, report)


def _ignored(rel: Path, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in rel.parts for pattern in patterns)


def display_path(path: Path | str) -> str:
    """`path` as it can be printed and stored: bytes that are not UTF-8 as `\\xNN`, other unprintables escaped."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def name_problem(rel: str) -> str | None:
    """Why a file's path relative to the corpus root cannot be an article id, or None."""
    undecodable = next((ch for ch in rel if "\udc80" <= ch <= "\udcff"), None)
    if undecodable is not None:  # how os.fsdecode keeps a byte that is not UTF-8
        return f"the file name is not valid UTF-8 (byte 0x{ord(undecodable) - 0xDC00:02X}); rename it in UTF-8"
    problem = id_problem(rel)
    return f"the file name cannot be an article id: {problem}; rename the file" if problem else None


def read_file(path: Path, rel: str, report: ReadReport) -> Iterator[Article]:
    """Articles of one file; `rel` (its path relative to the corpus root) seeds ids."""
    shown = display_path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        kind = display_path(suffix) if suffix.strip() == suffix else repr(suffix)
        report.skip(shown, f"unsupported file type {kind or '(none)'}; use one of {', '.join(SUPPORTED)}")
        return
    if path.exists() and not path.is_file():
        report.skip(shown, "not a regular file (a folder, pipe, socket or device)")
        return
    problem = name_problem(rel)
    if problem and suffix in (".txt", ".md", ".html", ".htm"):  # their id is the file name
        report.skip(shown, problem)
        return
    text = _decode(path, shown, report)
    if text is None:
        return
    if suffix in (".txt", ".md"):
        article = _from_plain(text, rel, shown, markdown=suffix == ".md")
        yield from _checked(article, shown, report, "no body text after the title line")
    elif suffix in (".jsonl", ".json", ".csv"):
        records = _RecordFile(rel, shown, problem, report)
        read = {".jsonl": _from_jsonl, ".json": _from_json, ".csv": _from_csv}[suffix]
        skipped, found = len(report.skipped), 0
        for article in read(text, records):
            found += 1
            yield article
        if not found and len(report.skipped) == skipped:
            report.skip(shown, "no records in the file" + (" after the header row" if suffix == ".csv" else ""))
    elif problem := markup_problem(text):
        report.skip(shown, problem)
    else:
        yield from _checked(_from_html(text, rel, shown), shown, report, "no paragraph text in the HTML")


def _checked(article: Article | None, where: str, report: ReadReport, empty: str) -> Iterator[Article]:
    """The article of a text or HTML file, or the reason it has none (`empty` when it has no text)."""
    if article is None:
        report.skip(where, empty)
        return
    problem = article_problem(article)
    if problem:
        report.skip(where, problem)
    else:
        yield article


def _decode(path: Path, shown: str, report: ReadReport) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        report.skip(shown, f"unreadable: {exc.strerror or exc}")
        return None
    if b"\x00" in data[:_BINARY_SNIFF]:
        report.skip(shown, "binary file")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8-sig", errors="replace")
        report.warn(f"{shown}: not valid UTF-8 (byte {exc.start}); decoded with replacement characters")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        report.skip(shown, "empty file")
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


def article_from_record(
    record: Mapping[str, Any], fallback_id: str, where: str, fallback_problem: str | None = None
) -> Article:
    """An article from a JSON object or CSV row; raises ValueError with the reason, naming the field, when
    unusable. A record without an id takes `fallback_id`, unless `fallback_problem` says why it cannot."""
    body = next((record[f] for f in _TEXT_FIELDS if isinstance(record.get(f), str) and record[f].strip()), None)
    if body is None:
        raise ValueError(f"no text: give one of the fields {', '.join(_TEXT_FIELDS)}")
    for key, value in record.items():
        if key is None:  # a CSV row's cells past the header's
            continue
        if not isinstance(key, str) or text_problem(key):
            raise ValueError("a field name is not Unicode text")
        problem = value_problem(value, field_label(key))
        if problem:
            raise ValueError(problem)
    raw_id = record.get("id", record.get("_id"))
    if raw_id in (None, "") and fallback_problem:
        raise ValueError(f"no id, and none can be made: {fallback_problem}; or give the record an id")
    if isinstance(raw_id, (bool, list, dict)):
        raise ValueError(f"bad id: give a string or a number, not {json.dumps(raw_id)[:80]}")
    article_id = normalize_id(str(raw_id).strip()) if raw_id not in (None, "") else fallback_id
    problem = id_problem(article_id)
    if problem:
        raise ValueError(f"bad id {article_id[:80]!r}: {problem}")
    try:
        date = normalize_date(record.get("date"))
    except ValueError as exc:
        raise ValueError(f"bad date: {exc}") from None
    metadata = {k: v for k, v in record.items() if k not in _KNOWN_FIELDS and k is not None}
    article = Article(
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
    problem = article_problem(article)
    if problem:
        raise ValueError(problem)
    return article


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class _RecordFile:
    """A file of records being read: what seeds the ids of records without one, and where skips go."""

    rel: str
    shown: str
    name_problem: str | None
    report: ReadReport

    def take(self, record: object, id_suffix: str, where: str) -> Iterator[Article]:
        if not isinstance(record, dict):
            self.report.skip(where, f"expected a JSON object, got {type(record).__name__}")
            return
        try:
            yield article_from_record(record, self.rel + id_suffix, where, self.name_problem)
        except ValueError as exc:
            self.report.skip(where, str(exc))


def _json(text: str) -> tuple[object, str | None, int | None]:
    """(value, None, None), or (None, why not, the line) for text that is not JSON Python can hold."""
    try:
        return json.loads(text), None, None
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc.msg}", exc.lineno
    except RecursionError:
        return None, "malformed JSON: nested too deeply to read", None
    except ValueError as exc:  # an integer of more than 4,300 digits
        return None, f"malformed JSON: {exc}".split(";")[0], None


def _from_jsonl(text: str, records: _RecordFile) -> Iterator[Article]:
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{records.shown}:{lineno}"
        record, problem, _ = _json(line)
        if problem:
            records.report.skip(where, problem)
            continue
        yield from records.take(record, f":{lineno}", where)


def _from_json(text: str, records: _RecordFile) -> Iterator[Article]:
    data, problem, lineno = _json(text)
    if problem:
        records.report.skip(f"{records.shown}:{lineno}" if lineno else records.shown, problem)
        return
    if not isinstance(data, list):
        yield from records.take(data, "", f"{records.shown}[0]")
        return
    for n, record in enumerate(data):
        yield from records.take(record, f":{n}", f"{records.shown}[{n}]")


def _from_csv(text: str, records: _RecordFile) -> Iterator[Article]:
    # No field can be longer than the file: the default limit (131,072 characters) would end the file there.
    # The limit is process-wide, so it is only ever raised.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # that row only; the reader goes on with the next line
            records.report.skip(f"{records.shown}:{reader.line_num}", f"malformed CSV: {exc}")
            continue
        where = f"{records.shown}:{reader.line_num}"
        if None in row:
            records.report.skip(where, "more fields than the header names")
            continue
        yield from records.take(row, f":{reader.line_num}", where)


class _ArticleHTML:
    """Collects <title>, the first <h1> and the text of each <p>, ignoring scripts and styles.

    lexbor parses the page into the tree an HTML5 browser builds, in one pass over broken markup too (the standard
    library's parser rescans it); the tree is then walked once, in document order, without recursion.
    """

    _SKIP = frozenset({"script", "style", "noscript", "template"})

    def __init__(self) -> None:
        self.title = ""
        self.h1 = ""
        self.paragraphs: list[str] = []
        self.nodes = 0  # nodes walked, the work of reading a page
        self._stack: list[str] = []
        self._buffer: list[str] = []

    def feed(self, text: str) -> None:
        from selectolax.lexbor import LexborHTMLParser  # only a corpus with HTML needs it

        root = LexborHTMLParser(text).root
        top = None if root is None else root.mem_id  # nodes are compared by identity (== serialises them)
        node = root
        while node is not None:
            self.nodes += 1
            tag = node.tag or ""
            if node.is_text_node:
                if self._stack:
                    self._buffer.append(node.text_content or "")
            elif node.is_element_node and tag not in self._SKIP:
                self._start(tag)
                child = node.first_child
                if child is not None:
                    node = child
                    continue
                self._end(tag)
            # Done with `node`: on to the next one, ending each element whose last child it was.
            while node.mem_id != top and node.next is None and node.parent is not None:
                node = node.parent
                self._end(node.tag or "")
            node = None if node.mem_id == top else node.next

    def _start(self, tag: str) -> None:
        if tag in ("p", "title", "h1"):
            self._flush()
            self._stack.append(tag)
        elif tag == "br" and self._stack:
            self._buffer.append(" ")

    def _end(self, tag: str) -> None:
        if self._stack and tag == self._stack[-1]:
            self._flush()
            self._stack.pop()

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


# Markup beyond these is refused before parsing: lexbor's work grows faster than the page past them (a 1 MB page
# of nested <div> took 86 s, one tag with 1 MB of attributes 22 s, and formatting elements left open are rebuilt
# at every later paragraph, as HTML5 says: 500 open <b> before 40,000 <p> took 22 s and 7 GB), and no news page
# comes near them.
MAX_HTML_DEPTH = 512
MAX_HTML_ATTRIBUTES = 256
MAX_HTML_OPEN_FORMATTING = 32
_FORMATTING = frozenset({
    "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u",
})  # fmt: skip
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)([^<>]*)(>?)")
_ATTRIBUTE = re.compile(r"[^\s=/]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?")
# Elements that never hold content, or whose end tag a page may leave out: they do not deepen the nesting.
_FLAT = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr", "p", "li",
    "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option", "optgroup", "rb", "rt", "rtc", "rp", "colgroup",
    "caption", "html", "head", "body",
})  # fmt: skip


def markup_problem(text: str) -> str | None:
    """Why this page is refused before parsing (nesting deeper than MAX_HTML_DEPTH, a tag with more than
    MAX_HTML_ATTRIBUTES attributes, more than MAX_HTML_OPEN_FORMATTING formatting elements left open), or None;
    one linear scan over the tags."""
    depth = formatting = 0
    for match in _TAG.finditer(text):
        closing, name, rest, closed = match.groups()
        if len(rest) > MAX_HTML_ATTRIBUTES and len(_ATTRIBUTE.findall(rest)) > MAX_HTML_ATTRIBUTES:
            return f"an HTML tag <{name[:20]}> has more than {MAX_HTML_ATTRIBUTES} attributes"
        tag = name.lower()
        if closed and tag in _FORMATTING:
            formatting = max(0, formatting - 1) if closing else formatting + 1
            if formatting > MAX_HTML_OPEN_FORMATTING:
                return f"the HTML leaves more than {MAX_HTML_OPEN_FORMATTING} formatting elements (<b>, <a>, ...) open"
        if not closed or tag in _FLAT or rest.endswith("/"):
            continue  # text such as "<a <a", a tag that cannot hold content, or one whose end a page may omit
        depth = max(0, depth - 1) if closing else depth + 1
        if depth > MAX_HTML_DEPTH:
            return f"the HTML nests elements more than {MAX_HTML_DEPTH} deep"
    return None


def _from_html(text: str, rel: str, where: str) -> Article | None:
    parser = _ArticleHTML()
    parser.feed(text)
    if not parser.paragraphs:
        return None
    return Article(id=rel, title=parser.title or parser.h1, body="\n\n".join(parser.paragraphs), path=where)
