"""Every step of a write does work linear (or bounded) in its input, counted, never timed.

Each step runs at 1x, 10x and 100x the input; the work (characters handed to the token counter and its calls while
splitting, nodes the HTML reader walks, SQL statements in the storage write) must grow as the input does, no
faster (see `assert_linear`). The inputs are the pathological ones that once took minutes (runs without whitespace
or sentence ends, broken markup) and normal news.
"""

from __future__ import annotations

import base64
import math
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.articles import Article, ReadReport
from semsearch.index.reading.readers import _ArticleHTML, read_corpus
from semsearch.index.reading.splitter import sentence_spans, split_passages
from semsearch.index.writing.builder import write_articles
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS
from tests.test_splitter import check_passages

NEWS_TEXT = "\n\n".join(r["text"] for r in GV_RECORDS)
ONE_PARAGRAPH = " ".join(NEWS_TEXT.split())
# A news article with paragraphs over the window, some in Arabic script.
LONG_READ = next(r["text"] for r in GV_RECORDS if r["_id"] == "gv-317086")
CJK = "中国和哈萨克斯坦加强能源合作"


def assert_linear(work_at: Callable[[int], int], what: str, grows: bool = True) -> None:
    """The work at 1x, 10x and 100x follows the input (10x at least 5 times 1x; unless `grows` is False, for work
    that is bounded) and grows no faster than it: 100x at most 12 times 10x, where both samples are large, and 10x
    at most 20 times 1x, checked first so that quadratic work fails before it gets slow."""
    one, ten = work_at(1), work_at(10)
    assert one > 0, f"{what}: no work counted at 1x"
    if grows:
        assert ten >= 5 * one, f"{what}: {one} at 1x, {ten} at 10x: the count does not follow the input"
    assert ten <= 20 * one, f"{what}: {one} at 1x, {ten} at 10x: more than linear"
    hundred = work_at(100)
    assert hundred <= 12 * ten, f"{what}: {ten} at 10x, {hundred} at 100x: more than linear"


class CountingCounter:
    """The model's token counter, with the calls and the characters handed to it counted."""

    def __init__(self, count_tokens: Callable[[str], int]) -> None:
        self.count_tokens = count_tokens
        self.calls = 0
        self.chars = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        self.chars += len(text)
        return self.count_tokens(text)


@dataclass
class SplitWork:
    calls: int
    chars: int
    passages: int


def split_work(embedder: Embedder, body: str, max_tokens: int | None = None) -> SplitWork:
    """Split `body` as the builder does, check the splitter's contract on the result, and return the work."""
    counter = CountingCounter(embedder.count_tokens)
    window = max_tokens or embedder.max_tokens
    spans = split_passages(body, counter, window, 120)
    check_passages(body, spans)
    assert all(embedder.count_tokens(body[s:e]) <= window for s, e in spans)
    return SplitWork(counter.calls, counter.chars, len(spans))


def copies(unit: str, joint: str) -> Callable[[int], str]:
    return lambda scale: joint.join([unit] * scale)


BODIES: dict[str, Callable[[int], str]] = {
    # kind: the body at a scale
    "cjk-without-stops": copies((CJK * 108)[:1500], ""),
    # Random, not copies: its density of tokens varies, and copies would lock the cuts to the copies' seams.
    "base64": lambda scale: base64.b64encode(random.Random(scale).randbytes(1125 * scale)).decode(),
    "dots": copies("." * 1500, ""),
    "one-paragraph-without-stops": copies(
        ONE_PARAGRAPH[:3000].replace(".", ",").replace("?", ",").replace("!", ","), " "
    ),
    "one-paragraph": copies(ONE_PARAGRAPH[:3000], " "),
    "news": copies(LONG_READ, "\n\n"),
}


@pytest.mark.parametrize("kind", list(BODIES))
def test_splitting_work_is_linear_in_the_body(embedder: Embedder, kind: str) -> None:
    seen: dict[int, SplitWork] = {}

    def work(scale: int) -> SplitWork:
        if scale not in seen:
            body = BODIES[kind](scale)
            seen[scale] = split_work(embedder, body)
            # Each character goes to the counter a bounded number of times, whatever the text.
            assert seen[scale].chars <= 8 * len(body), f"{kind}: {seen[scale].chars} characters counted for {len(body)}"
        return seen[scale]

    assert_linear(lambda scale: work(scale).chars, f"{kind}: characters counted")
    assert_linear(lambda scale: work(scale).calls, f"{kind}: counter calls", grows=False)
    assert work(100).passages >= 25 * work(1).passages


def test_a_run_of_dots_is_read_as_one_sentence() -> None:
    # A run of sentence-end marks not followed by a space ends no sentence; the pattern must not try every start.
    body = "Start " + "." * 50_000 + "x end. Next one."
    assert [body[s:e] for s, e in sentence_spans(body, (0, len(body)))] == [body[: -len(" Next one.")], "Next one."]


# Runs without whitespace or sentence ends, in several scripts, broken up now and then by a space, a newline or a
# sentence end: every cut the splitter can make (blocks, sentences, words, characters) meets the real tokenizer.
_RUNS = st.sampled_from(
    [CJK, "QUJDREVGR0hJSktMTU5P+/", "abcdefghij", "x" * 150, ".", "。", "e\u0301", "Ωμέγα", "😀", "\u200b", "-"]
)
_BREAKS = st.sampled_from([" ", "\n", "\n\n", ". ", "。", ""])
pathological = st.lists(st.tuples(_RUNS, st.integers(1, 60), _BREAKS), min_size=1, max_size=12).map(
    lambda parts: "".join(run * times + brk for run, times, brk in parts)
)


@settings(max_examples=60, deadline=None)
@given(body=pathological, max_tokens=st.integers(4, 64))
def test_splitter_contract_holds_on_pathological_bodies(embedder: Embedder, body: str, max_tokens: int) -> None:
    if not body.strip():
        return
    work = split_work(embedder, body, max_tokens)
    # A token that spans thousands of characters (a word over 100 characters is one [UNK]) leaves the count flat,
    # so finding where the window ends may take a logarithm of probes: the bound allows for it.
    assert work.chars <= 2 * (1 + math.log2(len(body))) * len(body) + 64


def html_nodes(text: str) -> int:
    page = _ArticleHTML()
    page.feed(text)
    return page.nodes


PAGES: dict[str, tuple[Callable[[int], str], bool]] = {
    # kind: (page with n repetitions, whether its node count grows with n)
    "open-a-tags": (lambda n: "<a " * (100 * n), False),
    "unclosed-tags": (lambda n: "<p>word <b>bold <i>" * (100 * n), True),
    "stray-lt": (lambda n: "<p>" + "a < b <" * (100 * n) + "</p>", False),
    "normal-page": (
        lambda n: (
            "<html><head><title>T</title></head><body>"
            + "<p>A paragraph with <b>bold</b> text.</p><script>var x = 1;</script>" * (20 * n)
            + "</body></html>"
        ),
        True,
    ),
}


@pytest.mark.parametrize("kind", list(PAGES))
def test_html_reading_work_is_linear_in_the_page(kind: str) -> None:
    make, grows = PAGES[kind]
    assert_linear(lambda scale: html_nodes(make(scale)), f"{kind}: HTML nodes walked", grows=grows)


def test_the_html_reader_keeps_what_it_extracts_from_broken_markup() -> None:
    page = _ArticleHTML()
    page.feed("<title>Broken</title><p>One <b>two<p>Three < four" + "<a " * 1000)
    assert (page.title, page.paragraphs) == ("Broken", ["One two", "Three < four"])


def test_storage_writes_a_bounded_number_of_statements_per_passage(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = [0]
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.set_trace_callback(lambda _: statements.__setitem__(0, statements[0] + 1))
        return connection

    monkeypatch.setattr(sqlite3, "connect", traced)

    def work(scale: int) -> int:
        body = "\n\n".join(f"Paragraph {n} of the report, on shipment {n * 7919 % 10007}." for n in range(10 * scale))
        article = Article(id=f"report-{scale}", title="Report", body=body)
        settings = Settings(index=tmp_path / f"index-{scale}", min_passage_chars=0)
        statements[0] = 0
        summary = write_articles(settings, [article], embedder=embedder)
        assert summary.passages == 10 * scale
        # One INSERT a passage and an article, and a few for the schema and the transaction.
        assert statements[0] <= summary.passages + summary.articles + 10
        return statements[0]

    assert_linear(work, "SQL statements of a write")


@pytest.mark.parametrize(
    ("page", "refused"),
    [
        ("<div>" * 600 + "<p>deep text</p>", "nests elements more than 512 deep"),
        ("<p " + " ".join(f"a{n}=1" for n in range(300)) + ">text</p>", "more than 256 attributes"),
        ("<html><body>" + ("<div>" * 500 + "<p>Deep but within the bound.</p>" + "</div>" * 500) * 3, None),
        ("<html><body>" + "<p>A paragraph whose end tag the page leaves out. " * 3000, None),
        ("<p>Text</p>" + "<a " * 5000, None),
        ("<p>" + "".join(f"<b id={n}>" for n in range(500)) + "<p>x" * 40000, "formatting elements"),
        ("<p>" + "<b>bold</b> and <a href='https://example.org'>a link</a>. " * 2000, None),
    ],
)
def test_pages_past_the_parsers_linear_range_are_refused_before_parsing(
    tmp_path: Path, page: str, refused: str | None
) -> None:
    """lexbor's work grows faster than the page with nesting depth and attributes per tag: such a page is skipped
    with its reason after one linear scan, and ordinary sloppy markup (unclosed paragraphs) is still read."""
    (tmp_path / "page.html").write_text(page, encoding="utf-8")
    report = ReadReport()
    articles = list(read_corpus([tmp_path], [], report))
    if refused is None:
        assert len(articles) == 1 and not report.skipped
    else:
        assert not articles and len(report.skipped) == 1 and refused in report.skipped[0].reason
