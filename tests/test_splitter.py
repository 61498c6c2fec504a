from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.splitter import paragraph_spans, sentence_spans, split_passages


def words(text: str) -> int:
    return len(text.split())


def check_passages(body: str, spans: list[tuple[int, int]]) -> None:
    # Order kept, no overlap, no empty passage, and every non-whitespace character covered.
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end <= len(body)
        assert body[start:end].strip() == body[start:end]
        assert body[start:end]
        assert not body[previous_end:start].strip(), "text lost between passages"
        previous_end = end
    assert not body[previous_end:].strip(), "text lost at the end"


paragraph = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
bodies = st.lists(
    st.one_of(paragraph, st.sampled_from(["Dateline.", "A. B. C.", "x" * 500, "Short!", "。中文句子。另一句。"])),
    max_size=12,
).flatmap(lambda parts: st.sampled_from(["\n\n", "\n \n", "\n", " "]).map(lambda sep: sep.join(parts)))


@settings(max_examples=300, deadline=None)
@given(body=bodies, max_tokens=st.integers(1, 40), min_chars=st.integers(0, 200))
def test_split_properties_with_word_counter(body: str, max_tokens: int, min_chars: int) -> None:
    spans = split_passages(body, words, max_tokens, min_chars)
    check_passages(body, spans)
    for start, end in spans:
        assert words(body[start:end]) <= max_tokens


@settings(max_examples=200, deadline=None)
@given(body=bodies, max_chars=st.integers(1, 80))
def test_split_properties_with_char_counter(body: str, max_chars: int) -> None:
    spans = split_passages(body, len, max_chars, 30)
    check_passages(body, spans)
    assert all(end - start <= max_chars for start, end in spans)


def test_paragraphs_are_blank_line_blocks() -> None:
    body = "First para\nstill first.\n\n  Second para.  \n \n\nThird."
    assert [body[s:e] for s, e in paragraph_spans(body)] == ["First para\nstill first.", "Second para.", "Third."]


def test_sentences_cover_the_span() -> None:
    body = 'He said "Go." Then he left! Did he? 他走了。她也走了。'
    spans = sentence_spans(body, (0, len(body)))
    assert [body[s:e] for s, e in spans] == ['He said "Go."', "Then he left!", "Did he?", "他走了。", "她也走了。"]


def test_short_blocks_merge_with_next() -> None:
    long_para = "This paragraph is long enough to stand on its own as a passage of the article. " * 2
    body = f"ALMATY, May 1 --\n\n{long_para.strip()}\n\n{long_para.strip()}"
    spans = split_passages(body, words, 200, 60)
    assert len(spans) == 2
    assert body[spans[0][0] : spans[0][1]].startswith("ALMATY, May 1 --\n\nThis paragraph")


def test_short_last_block_merges_backwards() -> None:
    body = ("A long enough paragraph for the test here. " * 3).strip() + "\n\nThe end."
    spans = split_passages(body, words, 200, 60)
    assert spans == [(0, len(body))]


def test_long_block_splits_at_sentences_with_real_tokenizer(embedder: Embedder) -> None:
    sentence = "The pipeline will carry natural gas from western Kazakhstan to the Chinese border. "
    body = (sentence * 60).strip()
    assert embedder.count_tokens(body) > embedder.max_tokens
    spans = split_passages(body, embedder.count_tokens, embedder.max_tokens, 120)
    check_passages(body, spans)
    assert len(spans) >= 2
    for start, end in spans:
        assert embedder.count_tokens(body[start:end]) <= embedder.max_tokens
        assert re.search(r"border\.$", body[start:end]), "cut inside a sentence"


def test_text_without_spaces_is_cut_to_the_window(embedder: Embedder) -> None:
    body = "中国和哈萨克斯坦加强能源合作" * 80
    spans = split_passages(body, embedder.count_tokens, embedder.max_tokens, 120)
    check_passages(body, spans)
    assert len(spans) >= 2
    assert all(embedder.count_tokens(body[s:e]) <= embedder.max_tokens for s, e in spans)
