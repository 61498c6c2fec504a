"""Split an article body into passages: paragraphs, short ones merged, long ones cut at sentences.

Pure functions over character spans, so that `body[start:end]` is always the passage text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Span = tuple[int, int]
TokenCounter = Callable[[str], int]

_BLOCK = re.compile(r"\S(?:.*?\S)?(?=\s*\n[ \t\r\f\v]*\n|\s*\Z)", re.DOTALL)
_SENTENCE_END = re.compile(r"(?:[.!?]+[\"'\u201d\u2019)\]]*(?=\s)|[\u3002\uff01\uff1f]+)")
_WORD = re.compile(r"\S+")


def split_passages(body: str, count_tokens: TokenCounter, max_tokens: int, min_chars: int) -> list[Span]:
    """Passage spans of `body`, in order, covering every non-whitespace character exactly once.

    Blocks are separated by blank lines. A block over `max_tokens` (by `count_tokens`, the model's
    own tokenizer) is cut at sentence ends, a sentence over it at word and then character
    boundaries. A piece shorter than `min_chars` joins its neighbour when the two fit the window.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    pieces: list[Span] = []
    for block in paragraph_spans(body):
        if count_tokens(body[block[0] : block[1]]) <= max_tokens:
            pieces.append(block)
        else:
            pieces.extend(_cut_long(body, block, count_tokens, max_tokens))
    return _merge_short(body, pieces, count_tokens, max_tokens, min_chars)


def paragraph_spans(body: str) -> list[Span]:
    """Blank-line-separated blocks, trimmed of surrounding whitespace."""
    return [(m.start(), m.end()) for m in _BLOCK.finditer(body)]


def sentence_spans(body: str, span: Span) -> list[Span]:
    """Sentences inside `span`, trimmed, covering all its non-whitespace text."""
    start, end = span
    spans: list[Span] = []
    cursor = start
    for match in _SENTENCE_END.finditer(body, start, end):
        spans.extend(_trimmed(body, cursor, match.end()))
        cursor = match.end()
    spans.extend(_trimmed(body, cursor, end))
    return spans


def _trimmed(body: str, start: int, end: int) -> list[Span]:
    while start < end and body[start].isspace():
        start += 1
    while end > start and body[end - 1].isspace():
        end -= 1
    return [(start, end)] if start < end else []


def _cut_long(body: str, block: Span, count_tokens: TokenCounter, max_tokens: int) -> list[Span]:
    units: list[Span] = []
    for sentence in sentence_spans(body, block):
        if count_tokens(body[sentence[0] : sentence[1]]) <= max_tokens:
            units.append(sentence)
        else:
            units.extend(_cut_words(body, sentence, count_tokens, max_tokens))
    return _pack(body, units, count_tokens, max_tokens)


def _cut_words(body: str, span: Span, count_tokens: TokenCounter, max_tokens: int) -> list[Span]:
    words: list[Span] = []
    for match in _WORD.finditer(body, span[0], span[1]):
        word = (match.start(), match.end())
        if count_tokens(body[word[0] : word[1]]) <= max_tokens:
            words.append(word)
        else:
            words.extend(_cut_chars(body, word, count_tokens, max_tokens))
    return _pack(body, words, count_tokens, max_tokens)


def _cut_chars(body: str, span: Span, count_tokens: TokenCounter, max_tokens: int) -> list[Span]:
    """Cut a run without whitespace into the longest prefixes that fit (binary search)."""
    pieces: list[Span] = []
    start, end = span
    while start < end:
        low, high = start + 1, end
        while low < high:
            mid = (low + high + 1) // 2
            if count_tokens(body[start:mid]) <= max_tokens:
                low = mid
            else:
                high = mid - 1
        pieces.append((start, low))
        start = low
    return pieces


def _pack(body: str, units: list[Span], count_tokens: TokenCounter, max_tokens: int) -> list[Span]:
    """Greedily join consecutive units while the joined text fits the window."""
    packed: list[Span] = []
    for unit in units:
        if packed and count_tokens(body[packed[-1][0] : unit[1]]) <= max_tokens:
            packed[-1] = (packed[-1][0], unit[1])
        else:
            packed.append(unit)
    return packed


def _merge_short(
    body: str, pieces: list[Span], count_tokens: TokenCounter, max_tokens: int, min_chars: int
) -> list[Span]:
    def fits(start: int, end: int) -> bool:
        return count_tokens(body[start:end]) <= max_tokens

    merged: list[Span] = []
    pending: Span | None = None
    for piece in pieces:
        if pending is not None:
            if fits(pending[0], piece[1]):
                piece = (pending[0], piece[1])
            else:
                merged.append(pending)
            pending = None
        if piece[1] - piece[0] < min_chars:
            pending = piece
        else:
            merged.append(piece)
    if pending is not None:
        if merged and fits(merged[-1][0], pending[1]):
            merged[-1] = (merged[-1][0], pending[1])
        else:
            merged.append(pending)
    return merged
