from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from semsearch.errors import InputPathError
from semsearch.index.reading.articles import ReadReport
from semsearch.index.reading.readers import article_from_record, read_corpus
from tests.helpers import jsonl, write_corpus

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


def test_a_record_no_value_can_store_is_skipped_with_its_line_and_the_rest_is_read(tmp_path: Path) -> None:
    good = json.dumps({"id": "good", "text": "Body that is fine."})
    lines = [
        json.dumps({"id": "huge-date", "text": "x", "date": 1e300}),  # OverflowError in fromtimestamp
        "[" * 100_000 + "]" * 100_000,  # RecursionError in json.loads
        '{"id": "surrogate", "text": "text \\ud800 more"}',  # cannot be encoded as UTF-8
        '{"id": "big", "text": "x", "n": 1' + "0" * 5000 + "}",  # ValueError: over 4,300 digits
        '{"id": "nan", "text": "x", "score": NaN}',
        json.dumps({"id": "deep", "text": "x", "tree": json.loads("[" * 200 + "]" * 200)}),
        '{"id": "key", "text": "x", "\\udc80": 1}',
        good,
    ]
    root = write_corpus(tmp_path, {"feed.jsonl": "\n".join(lines)})
    articles, report = read(root)
    assert set(articles) == {"good"}
    reasons = {int(s.where.rsplit(":", 1)[1]): s.reason for s in report.skipped}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7]
    assert "is not a date" in reasons[1] and "UTC" in reasons[1]
    assert reasons[2] == "malformed JSON: nested too deeply to read"
    assert reasons[3].startswith("text holds a lone surrogate (U+D800) at character 6")
    assert reasons[4].startswith("malformed JSON") and "4300 digits" in reasons[4]
    assert reasons[5] == "score is nan, a number JSON cannot carry"
    assert "nested deeper than 64 levels" in reasons[6]
    assert reasons[7] == "a field name is not Unicode text"


def test_a_posted_record_names_the_field_that_is_not_unicode() -> None:
    with pytest.raises(ValueError, match=r"^title holds a lone surrogate \(U\+DFFF\)"):
        article_from_record({"id": "a", "title": "t\udfff", "body": "text"}, "a", "body")
    with pytest.raises(ValueError, match=r"^tags\[1\] holds a lone surrogate"):
        article_from_record({"id": "a", "body": "text", "tags": ["ok", "\ud800"]}, "a", "body")


def test_a_csv_field_over_the_csv_module_limit_is_read_and_so_is_every_row_after(tmp_path: Path) -> None:
    long = "word " * 40_000  # 200,000 characters; the csv module's default limit is 131,072
    root = write_corpus(tmp_path, {"news.csv": f'id,text\n1,one\n2,"{long}"\n3,three\n4,\n'})
    articles, report = read(root)
    assert set(articles) == {"1", "2", "3"}
    assert articles["2"].body == long.strip()
    assert [(Path(s.where).name, s.reason.split(":")[0]) for s in report.skipped] == [("news.csv:5", "no text")]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (b"caf\xe9.txt", "the file name is not valid UTF-8 (byte 0xE9)"),
        (b"line\nbreak.txt", "the id holds a control character (U+000A) at character 5"),
        (b" leading.txt", "the id starts or ends with whitespace"),
        ("zero\u200bwidth.md".encode(), "an invisible formatting character (U+200B)"),
        ("nb\u00a0space.html".encode(), "a space other than U+0020 (U+00A0)"),
    ],
)
def test_a_file_whose_name_cannot_be_an_id_is_skipped_with_the_true_reason(
    tmp_path: Path, name: bytes, reason: str
) -> None:
    root = write_corpus(tmp_path, {"good.txt": "Title\n\nBody"})
    content = b"<p>Body</p>" if name.endswith(b".html") else b"Title\n\nBody"
    with open(os.path.join(os.fsencode(root), name), "wb") as handle:
        handle.write(content)
    articles, report = read(root)
    assert set(articles) == {"good.txt"}
    (skipped,) = report.skipped
    assert reason in skipped.reason and "rename" in skipped.reason
    assert skipped.where.isprintable() and skipped.where.encode("utf-8")
    assert "control characters" not in skipped.reason or b"\n" in name


def test_records_of_a_badly_named_file_with_their_own_ids_are_read(tmp_path: Path) -> None:
    with open(os.path.join(os.fsencode(tmp_path), b"feed\xff.jsonl"), "wb") as handle:
        handle.write(b'{"id": "own", "text": "Body"}\n{"text": "No id"}\n')
    articles, report = read(tmp_path)
    assert set(articles) == {"own"}
    assert articles["own"].path == str(tmp_path / "feed") + "\\xff.jsonl:1"
    (skipped,) = report.skipped
    assert skipped.where.endswith("feed\\xff.jsonl:2") and "not valid UTF-8 (byte 0xFF)" in skipped.reason


def test_ids_are_nfc_so_composed_and_decomposed_names_are_one_article(tmp_path: Path) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    root = write_corpus(
        tmp_path,
        {
            f"{decomposed}.txt": "Title\n\nBody",
            "feed.jsonl": jsonl([{"id": decomposed, "text": "One"}, {"id": composed, "text": "Two"}]),
        },
    )
    articles, _ = read(root)
    assert set(articles) == {f"{composed}.txt", composed}


def test_a_pipe_is_skipped_not_read(tmp_path: Path) -> None:
    root = write_corpus(tmp_path, {"good.txt": "Title\n\nBody"})
    os.mkfifo(root / "pipe.txt")
    articles, report = read(root)
    assert set(articles) == {"good.txt"}
    assert [s.reason for s in report.skipped] == ["not a regular file (a folder, pipe, socket or device)"]
