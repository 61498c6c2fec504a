from __future__ import annotations

import json
from pathlib import Path

import pytest

from semsearch.errors import InputPathError
from semsearch.index.reading.articles import ReadReport
from semsearch.index.reading.readers import read_corpus
from tests.helpers import write_corpus

IGNORE = ("README*", ".*")


def read(root: Path) -> tuple[dict[str, object], ReadReport]:
    report = ReadReport()
    articles = {a.id: a for a in read_corpus([root], IGNORE, report)}
    return articles, report


def test_plain_text_and_markdown(tmp_path: Path) -> None:
    root = write_corpus(
        tmp_path,
        {
            "a.txt": "\n\nHeadline here\n\nFirst paragraph.\n\nSecond paragraph.\n",
            "sub/b.md": "# Markdown title\n\nBody text.",
            "sub/c.txt": "Only a title\n\n",
        },
    )
    articles, report = read(root)
    assert set(articles) == {"a.txt", "sub/b.md"}
    a = articles["a.txt"]
    assert a.title == "Headline here" and a.body == "First paragraph.\n\nSecond paragraph."
    assert articles["sub/b.md"].title == "Markdown title"
    assert [s.reason for s in report.skipped] == ["no body text after the title line"]


def test_jsonl_keeps_fields_and_skips_malformed_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "_id": "x1",
                "title": "T1",
                "text": "Body one",
                "date": "2012-05-01 19:05:31",
                "source": "GV",
                "url": "http://e/1",
                "author": "A",
                "categories": ["c"],
            }
        ),
        '{"id": "broken", "text": ',
        json.dumps({"title": "No id", "body": "Body two", "date": "2 May 2012"}),
        json.dumps({"id": "notext", "title": "T"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"id": "baddate", "text": "x", "date": "someday"}),
        "",
    ]
    root = write_corpus(tmp_path, {"feed.jsonl": "\n".join(lines)})
    articles, report = read(root)
    assert set(articles) == {"x1", "feed.jsonl:3"}
    x1 = articles["x1"]
    assert (x1.title, x1.body, x1.date, x1.source, x1.url, x1.author) == (
        "T1",
        "Body one",
        "2012-05-01T19:05:31",
        "GV",
        "http://e/1",
        "A",
    )
    assert x1.metadata == {"categories": ["c"]}
    assert articles["feed.jsonl:3"].date == "2012-05-02"
    where = {s.where.rsplit("/", 1)[-1]: s.reason for s in report.skipped}
    assert where["feed.jsonl:2"].startswith("malformed JSON")
    assert where["feed.jsonl:4"].startswith("no text")
    assert where["feed.jsonl:5"].startswith("expected a JSON object")
    assert where["feed.jsonl:6"].startswith("bad date")


def test_json_object_and_list(tmp_path: Path) -> None:
    root = write_corpus(
        tmp_path,
        {
            "one.json": json.dumps({"title": "Single", "content": "Text"}),
            "many.json": json.dumps([{"id": 7, "text": "Seven"}, {"text": "Eight"}]),
            "bad.json": "{not json",
        },
    )
    articles, report = read(root)
    assert set(articles) == {"one.json", "7", "many.json:1"}
    assert [s.reason.split(":")[0] for s in report.skipped] == ["malformed JSON"]


def test_csv_rows(tmp_path: Path) -> None:
    root = write_corpus(
        tmp_path,
        {
            "news.csv": 'id,title,text,date,source\n1,First,"Body, with comma",2012-05-01,S\n2,Second,,2012-05-02,S\n'
            "3,Third,Body three,2012-05-03,S,extra\n",
        },
    )
    articles, report = read(root)
    assert set(articles) == {"1"}
    assert articles["1"].body == "Body, with comma" and articles["1"].date == "2012-05-01"
    assert len(report.skipped) == 2


def test_html_uses_title_and_paragraphs(tmp_path: Path) -> None:
    html = """<html><head><title>Energy &amp; trade</title><style>p {color: red}</style></head>
    <body><h1>Ignored heading</h1><script>var p = "<p>no</p>";</script>
    <p>First <b>bold</b>
    paragraph.</p><div>not a paragraph</div><p>Second&nbsp;one.</p></body></html>"""
    root = write_corpus(tmp_path, {"page.html": html, "empty.htm": "<html><body><div>x</div></body></html>"})
    articles, report = read(root)
    page = articles["page.html"]
    assert page.title == "Energy & trade"
    assert page.body == "First bold paragraph.\n\nSecond one."
    assert report.skipped[0].reason == "no paragraph text in the HTML"


def test_bad_files_are_reported_and_skipped(tmp_path: Path) -> None:
    root = write_corpus(
        tmp_path,
        {
            "good.txt": "Title\n\nBody",
            "binary.txt": b"\x00\x01\x02binary",
            "latin1.txt": "Caf\xe9 title\n\nBody".encode("latin-1"),
            "empty.txt": "  \n",
            "image.png": b"\x89PNG",
            "README.md": "# Not an article\n\ntext",
            ".hidden.txt": "Hidden\n\ntext",
        },
    )
    (root / "dangling.txt").symlink_to(root / "missing-target.txt")
    articles, report = read(root)
    assert set(articles) == {"good.txt", "latin1.txt"}
    assert articles["latin1.txt"].title == "Caf\ufffd title"
    assert any("latin1.txt" in w and "replacement" in w for w in report.warnings)
    reasons = {Path(s.where).name: s.reason for s in report.skipped}
    assert reasons["binary.txt"] == "binary file"
    assert reasons["empty.txt"] == "empty file"
    assert reasons["image.png"].startswith("unsupported file type .png")
    assert reasons["dangling.txt"].startswith("unreadable")
    assert "README.md" not in reasons and ".hidden.txt" not in reasons


def test_single_file_path_and_missing_path(tmp_path: Path) -> None:
    root = write_corpus(tmp_path, {"dir/a.txt": "T\n\nB"})
    report = ReadReport()
    assert [a.id for a in read_corpus([root / "dir" / "a.txt"], IGNORE, report)] == ["a.txt"]
    with pytest.raises(InputPathError, match="nope"):
        list(read_corpus([root / "nope"], IGNORE, report))
