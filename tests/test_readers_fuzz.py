"""Fuzzing the corpus readers: whatever a file holds and whatever it is called, reading it yields articles that can
be stored and read back as they are, or reports the file (and line) and why; nothing else escapes.

Most examples go through `read_corpus` alone (pure and fast); a few are built into a real index and read back.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semsearch.errors import EmptyCorpusError
from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.articles import Article, ReadReport, article_problem
from semsearch.index.reading.dates import normalize_date
from semsearch.index.reading.folding import normalize_id
from semsearch.index.reading.readers import display_path, read_corpus
from semsearch.index.storage.store import open_index
from semsearch.index.writing.builder import build_index
from semsearch.settings import Settings

EXTENSIONS = (".txt", ".md", ".jsonl", ".json", ".csv")
GOOD = "good.txt"
# Text that survives reading unchanged: no NUL (a NUL in a file's first 8 KiB marks it binary), no CR (line ends
# are normalised), no lone surrogates; records trim their text, so generated text is trimmed too.
text_chars = st.characters(codec="utf-8", exclude_characters="\x00\r")
clean_text = st.text(text_chars, min_size=1, max_size=80).map(str.strip).filter(bool)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
good_dates = st.one_of(
    st.none(),
    st.sampled_from(["2012-05-01", "2012-05-01T19:05:31Z", "Tue, 01 May 2012 19:05:31 +0200", "1 May 2012", ""]),
    st.integers(10**7, 10**14 - 1).filter(lambda n: n >= 10**8 or normalize_date_ok(n)),
    st.floats(1e8, 1e14, exclude_max=True),
)
bad_dates = st.one_of(
    st.integers(max_value=10**7 - 1),
    st.integers(min_value=10**14),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not 1e8 <= x < 1e14),
    st.sampled_from(["someday", "2024-13-45", "next Tuesday", "1 May 2012 " * 10_000]),
)


def normalize_date_ok(raw: object) -> bool:
    try:
        normalize_date(raw)
    except ValueError:
        return False
    return True


def fuzz_settings(examples: int) -> Any:
    # Each example reads its own fresh folder under the test's temporary one.
    checks = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
    return settings(max_examples=examples, deadline=None, suppress_health_check=checks)


def read(folder: Path) -> tuple[list[Article], ReadReport]:
    """Read `folder`, checking what holds for any input: every article can be stored and read back as the same
    JSON, every skip names the file in a printable form and says why."""
    report = ReadReport()
    articles = list(read_corpus([folder], (), report))
    for article in articles:
        assert article_problem(article) is None, article
        assert json.loads(json.dumps(article.metadata)) == article.metadata
        article.content_hash()
    root = display_path(folder)
    for skipped in report.skipped:
        assert skipped.where.startswith(root) and skipped.where.isprintable(), skipped
        assert skipped.reason and skipped.reason.isprintable() and len(skipped.reason) < 1000, skipped
        skipped.where.encode("utf-8")
        skipped.reason.encode("utf-8")
    for warning in report.warnings:
        assert warning.isprintable()
    return articles, report


@pytest.fixture
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def fresh(base: Path) -> Path:
    """An empty corpus folder with one good article beside whatever a test adds."""
    corpus = Path(tempfile.mkdtemp(dir=base))
    (corpus / GOOD).write_text("Good title\n\nA body that is fine.", encoding="utf-8")
    return corpus


def skips_by_where(report: ReadReport) -> dict[str, str]:
    return {s.where: s.reason for s in report.skipped}


# -- random bytes -----------------------------------------------------------------------------------------------


@fuzz_settings(400)
@given(
    suffix=st.sampled_from(EXTENSIONS),
    content=st.one_of(
        st.binary(max_size=3000),
        st.text(st.characters(exclude_categories=()), max_size=1000).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\n", b"1e999", b"\\ud800", b"\xff"])).map(
            b"".join
        ),
    ),
)
def test_any_bytes_in_any_file_type_are_read_or_reported(folder: Path, suffix: str, content: bytes) -> None:
    corpus = fresh(folder)
    (corpus / f"data{suffix}").write_bytes(content)
    articles, report = read(corpus)
    assert GOOD in {a.id for a in articles}
    from_data = [a for a in articles if a.id != GOOD]
    assert from_data or any(s.where.startswith(display_path(corpus / f"data{suffix}")) for s in report.skipped)


# -- records ----------------------------------------------------------------------------------------------------


@st.composite
def good_records(draw: st.DrawFn, n: int) -> dict[str, Any]:
    record: dict[str, Any] = {"id": f"good-{n}", "text": draw(clean_text)}
    for name in ("title", "source", "author"):
        if draw(st.booleans()):
            record[name] = draw(clean_text)
    if draw(st.booleans()):  # any other kind of link is kept as metadata, not as the url: tested with the pages
        record["url"] = "https://news.example/" + draw(st.text("abcxyz019-_/%?=&", max_size=20))
    date = draw(good_dates)
    if date is not None:
        record["date"] = date
    record.update(draw(st.dictionaries(st.sampled_from(["tags", "extra", "n", "nested", "ünï"]), json_values)))
    return record


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def surrogate_in(field: str) -> str:
    """A record whose `field` holds a lone surrogate, written as JSON writes one (an escape)."""
    return json.dumps({"id": "s", "text": "ok", field: "a \ud800 b"})


# Records that load as JSON but cannot be taken: a value nothing can store, a number no date rule reads, too deep.
BAD_RECORDS = st.one_of(
    st.sampled_from(["title", "text", "source", "author", "url", "tags"]).map(surrogate_in),
    bad_dates.map(lambda date: json.dumps({"id": "d", "text": "ok", "date": date})),
    st.integers(65, 400).map(lambda n: json.dumps({"id": "deep", "text": "ok", "tree": json.loads(deep(n))})),
    st.sampled_from(['{"id": "nan", "text": "ok", "x": NaN}', '{"id": "inf", "text": "ok", "a\\nb": -Infinity}']),
    st.sampled_from(["../../etc/passwd", "tab\there", "a\nb", "a\u200bb", "x" * 1001]).map(
        lambda i: json.dumps({"id": i, "text": "ok"})
    ),
    st.sampled_from(['{"id": "none"}', '{"id": "empty", "text": "  "}', "[1, 2]", '"text"', "3"]),
    st.sampled_from(['{"id": [1], "text": "ok"}', '{"id": true, "text": "ok"}', '{"id": {"a": 1}, "text": "ok"}']),
)
# Lines Python's JSON reader refuses: malformed, nested past its recursion limit, an integer over 4,300 digits.
UNREADABLE_LINES = ['{"id": "x", "text": ', deep(100_000), '{"id": "big", "n": 1' + "0" * 4400 + "}"]
UNREADABLE = st.sampled_from(UNREADABLE_LINES)


@fuzz_settings(200)
@given(data=st.data(), kinds=st.lists(st.sampled_from(["good", "bad", "unreadable"]), max_size=12))
def test_jsonl_good_records_are_read_as_given_and_bad_ones_reported_with_their_line(
    folder: Path, data: st.DataObject, kinds: list[str]
) -> None:
    corpus = fresh(folder)
    good: dict[int, dict[str, Any]] = {}
    lines = []
    for lineno, kind in enumerate(kinds, start=1):
        if kind == "good":
            good[lineno] = data.draw(good_records(lineno))
            lines.append(json.dumps(good[lineno]))
        else:
            lines.append(data.draw(BAD_RECORDS if kind == "bad" else UNREADABLE))
    path = corpus / "feed.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    articles, report = read(corpus)
    by_id = {a.id: a for a in articles}
    assert set(by_id) == {GOOD} | {f"good-{n}" for n in good}
    for lineno, record in good.items():
        check_read_as_given(by_id[f"good-{lineno}"], record)
    bad_lines = {f"{display_path(path)}:{n}" for n in range(1, len(kinds) + 1) if n not in good}
    if not kinds:
        bad_lines = {display_path(path)}  # an empty file
    assert set(skips_by_where(report)) == bad_lines


def check_read_as_given(article: Article, record: dict[str, Any]) -> None:
    assert article.body == record["text"]
    assert article.title == record.get("title", "")
    for name in ("source", "url", "author"):
        assert getattr(article, name) == record.get(name)
    assert article.date == normalize_date(record.get("date"))
    known = {"id", "text", "title", "source", "url", "author", "date"}
    assert article.metadata == {k: v for k, v in record.items() if k not in known}


@fuzz_settings(100)
@given(data=st.data(), kinds=st.lists(st.booleans(), max_size=8), bare=st.booleans())
def test_json_good_records_are_read_and_bad_ones_reported_with_their_position(
    folder: Path, data: st.DataObject, kinds: list[bool], bare: bool
) -> None:
    corpus = fresh(folder)
    items: list[str] = []
    good: dict[int, dict[str, Any]] = {}
    for n, is_good in enumerate(kinds):
        if is_good:
            good[n] = data.draw(good_records(n))
            items.append(json.dumps(good[n]))
        else:
            items.append(data.draw(BAD_RECORDS.filter(lambda line: line.startswith("{"))))
    path = corpus / "feed.json"
    path.write_text(items[0] if bare and len(items) == 1 else f"[{', '.join(items)}]", encoding="utf-8")
    articles, report = read(corpus)
    by_id = {a.id: a for a in articles}
    assert set(by_id) == {GOOD} | {f"good-{n}" for n in good}
    for n, record in good.items():
        check_read_as_given(by_id[f"good-{n}"], record)
    expected = {f"{display_path(path)}[{n}]" for n in range(len(kinds)) if n not in good}
    if not kinds:
        expected = {display_path(path)}  # an empty list: no records, said once
    assert set(skips_by_where(report)) == expected


@pytest.mark.parametrize("line", UNREADABLE_LINES, ids=["malformed", "deep", "big-integer"])
def test_a_json_file_python_cannot_load_is_reported_once(folder: Path, line: str) -> None:
    corpus = fresh(folder)
    (corpus / "feed.json").write_text(f'[{{"id": "a", "text": "ok"}}, {line}]', encoding="utf-8")
    articles, report = read(corpus)
    assert {a.id for a in articles} == {GOOD}
    (skipped,) = report.skipped
    assert skipped.where.startswith(display_path(corpus / "feed.json")) and skipped.reason.startswith("malformed JSON")


csv_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00\r"), max_size=60)


@fuzz_settings(150)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(csv_text, st.integers(131_000, 140_000).map(lambda n: "long " * (n // 5))),
            st.sampled_from(["", "2012-05-01", "someday"]),
        ),
        max_size=10,
    )
)
def test_csv_rows_are_read_whatever_their_size_and_skipped_only_for_a_reason(
    folder: Path, rows: list[tuple[str, str]]
) -> None:
    corpus = fresh(folder)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "text", "date"])
    for n, (text, date) in enumerate(rows):
        writer.writerow([f"row-{n}", text, date])
    path = corpus / "news.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    articles, report = read(corpus)
    by_id = {a.id: a for a in articles}
    expected = {f"row-{n}": text for n, (text, date) in enumerate(rows) if text.strip() and date != "someday"}
    assert set(by_id) == {GOOD} | set(expected)
    for article_id, text in expected.items():
        assert by_id[article_id].body == text.strip()
    reasons = [s.reason for s in report.skipped]
    if not rows:
        assert reasons == ["no records in the file after the header row"]
        return
    assert len(reasons) == len(rows) - len(expected)
    assert all(r.startswith(("no text", "bad date")) for r in reasons)
    assert all(s.where.startswith(f"{display_path(path)}:") for s in report.skipped)


# -- file names -------------------------------------------------------------------------------------------------

name_bytes = st.one_of(
    st.binary(min_size=1, max_size=80),
    st.text(min_size=1, max_size=60).map(lambda t: t.encode("utf-8", "surrogateescape")),
    st.sampled_from([b"line\nbreak", b"caf\xe9", b" lead", b"trail ", b"tab\there", b"\xff\xfe", b"e\xcc\x81"]),
).filter(lambda b: b"/" not in b and b"\x00" not in b and len(b) <= 240)


def usable_as_id(name: str) -> bool:
    """The documented rule for a file name that can be an id (see `articles.id_problem`)."""
    undecodable = any("\udc80" <= ch <= "\udcff" for ch in name)
    escape = name.startswith("\\") or ".." in name.replace("\\", "/").split("/")
    return not undecodable and name.isprintable() and name == name.strip() and not escape


@fuzz_settings(300)
@given(stem=name_bytes, suffix=st.sampled_from(EXTENSIONS))
def test_a_file_of_any_name_is_read_or_skipped_for_its_name_and_the_rest_is_read(
    folder: Path, stem: bytes, suffix: str
) -> None:
    corpus = fresh(folder)
    name = stem + suffix.encode()
    decoded = os.fsdecode(name)
    if decoded == GOOD:
        return
    contents = {".jsonl": b'{"text": "Body"}\n', ".json": b'{"text": "Body"}', ".csv": b"text\nBody\n"}
    with open(os.path.join(os.fsencode(corpus), name), "wb") as handle:
        handle.write(contents.get(suffix, b"Title\n\nBody"))
    articles, report = read(corpus)
    assert GOOD in {a.id for a in articles}
    if usable_as_id(decoded):
        (article,) = [a for a in articles if a.id != GOOD]
        assert article.id == normalize_id(decoded) + {".jsonl": ":1", ".csv": ":2"}.get(suffix, "")
        assert article.body == "Body" and report.skipped == []
    else:
        (skipped,) = report.skipped
        assert skipped.where.startswith(display_path(corpus / decoded))
        assert "file name" in skipped.reason and "rename" in skipped.reason
        assert [a.id for a in articles] == [GOOD]


def test_a_path_too_long_for_an_id_is_skipped_with_its_length(folder: Path) -> None:
    corpus = fresh(folder)
    deep_dir = corpus.joinpath(*["d" * 200] * 6)
    deep_dir.mkdir(parents=True)
    (deep_dir / "a.txt").write_text("Title\n\nBody", encoding="utf-8")
    articles, report = read(corpus)
    assert {a.id for a in articles} == {GOOD}
    (skipped,) = report.skipped
    assert "the id is 1211 characters long; the limit is 1000" in skipped.reason


# -- into an index and back -------------------------------------------------------------------------------------


def check_index_reads_back(index: Path, articles: list[Article]) -> None:
    """Every article read is in the index with the same id and fields, and its passages point into its body."""
    stored = open_index(index)
    try:
        assert sorted(stored.article_ids) == sorted({a.id for a in articles})
        for article in articles:
            found = stored.article(article.id)
            assert found is not None, article.id
            record, passages = found
            for name in ("id", "title", "body", "date", "source", "url", "author", "path", "metadata"):
                assert record[name] == getattr(article, name), name
            assert passages and all(p.text == article.body[p.start : p.end] for p in passages)
    finally:
        stored.close()


KITCHEN_SINK = [
    {"id": "nul", "text": "A body with a NUL \x00 inside and a BEL \x07 too."},
    {"id": "cafe\u0301-nfd", "text": "Decomposed id, stored composed."},
    {"id": "emoji", "title": "🧪 ｗｉｄｅ", "text": "RTL \u202eטקסט\u202c and emoji 🧪 and \u2028 separators."},
    {"id": "digits", "text": "Big numbers.", "n": 10**4000, "f": 5e-324, "neg": -0.0},
    {"id": "nested", "text": "Deep but allowed.", "tree": json.loads(deep(63))},
    {"id": "days", "text": "YYYYMMDD.", "date": 20240101},
    {"id": "secs", "text": "Seconds.", "date": 1714521600},
    {"id": "ms", "text": "Milliseconds.", "date": 1714521600123},
    {"id": "surrogate", "text": "Lone \ud800 surrogate."},
    {"id": "huge-date", "text": "x", "date": 1e300},
    {"id": "nan", "text": "x", "date": math.nan},
]


def test_a_corpus_of_odd_but_valid_input_is_indexed_and_reads_back_and_the_bad_is_reported(
    tmp_path: Path, embedder: Embedder
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "feed.jsonl").write_text("\n".join(json.dumps(r) for r in KITCHEN_SINK) + "\n" + deep(100_000))
    (corpus / "big.csv").write_text(f"id,text\nlong,{'word ' * 30_000}\nafter,Row after the long one.\n")
    for name in (
        b"caf\xc3\xa9 \xe2\x80\x94 \xd0\xbd\xd0\xbe\xd0\xb2\xd0\xbe\xd1\x81\xd1\x82\xd0\xb8.txt",
        b"e\xcc\x81.md",
    ):
        with open(os.path.join(os.fsencode(corpus), name), "wb") as handle:
            handle.write(b"Title\n\nBody of a file with a Unicode name.")
    for name in (b"bad\xff.txt", b"new\nline.txt", b" space.md"):
        with open(os.path.join(os.fsencode(corpus), name), "wb") as handle:
            handle.write(b"Title\n\nThis file is never read: its name cannot be an id.")
    report = ReadReport()
    articles = list(read_corpus([corpus], (), report))
    summary = build_index([corpus], Settings(index=tmp_path / "index"), embedder=embedder)
    assert summary.articles == len(articles) == 12
    assert {
        "caf\u00e9-nfd",
        "days",
        "long",
        "after",
        "caf\u00e9 \u2014 \u043d\u043e\u0432\u043e\u0441\u0442\u0438.txt",
        "\u00e9.md",  # written decomposed, as macOS names files
    } <= {a.id for a in articles}
    assert {(s.where, s.reason) for s in summary.skipped} == {(s.where, s.reason) for s in report.skipped}
    assert len(summary.skipped) == 7
    check_index_reads_back(tmp_path / "index", articles)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), kinds=st.lists(st.booleans(), min_size=1, max_size=5))
def test_what_a_build_accepts_reads_back_identically(
    tmp_path: Path, embedder: Embedder, data: st.DataObject, kinds: list[bool]
) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    corpus = work / "corpus"
    corpus.mkdir()
    lines = [json.dumps(data.draw(good_records(n))) if good else data.draw(BAD_RECORDS) for n, good in enumerate(kinds)]
    (corpus / "feed.jsonl").write_text("\n".join(lines), encoding="utf-8")
    report = ReadReport()
    articles = list(read_corpus([corpus], (), report))
    settings_ = Settings(index=work / "index")
    if not articles:
        with pytest.raises(EmptyCorpusError, match="No article to index"):
            build_index([corpus], settings_, embedder=embedder)
        return
    summary = build_index([corpus], settings_, embedder=embedder)
    assert summary.articles == len(articles) and len(summary.skipped) == len(report.skipped)
    check_index_reads_back(settings_.index, articles)
    shutil.rmtree(work)
