"""Split an article body into passages: paragraphs, short ones merged, long ones cut at sentences.

Pure functions over character spans, so that `body[start:end]` is always the passage text. The work is linear in
the body: each block, sentence and word is counted once, and a long one is cut by searching outward from an
estimate of where the window ends, so that few slices are counted per passage and none much longer than it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Span = tuple[int, int]
TokenCounter = Callable[[str], int]
# A span and its number of tokens.
_Unit = tuple[Span, int]

_BLOCK = re.compile(r"\S(?:.*?\S)?(?=\s*\n[ \t\r\f\v]*\n|\s*\Z)", re.DOTALL)
# A run of end marks is matched from its first mark only, and never backtracks: a long run of dots not followed by
# a space would otherwise be tried from every one of its marks.
_SENTENCE_END = re.compile(r"(?:(?<![.!?])[.!?]++[\"'\u201d\u2019)\]]*+(?=\s)|[\u3002\uff01\uff1f]+)")
_WORD = re.compile(r"\S+")


def split_passages(body: str, count_tokens: TokenCounter, max_tokens: int, min_chars: int) -> list[Span]:
    """Passage spans of `body`, in order, covering every non-whitespace character exactly once.

    Blocks are separated by blank lines. A block over `max_tokens` (by `count_tokens`, the model's
    own tokenizer) is cut at sentence ends, a sentence over it at word and then character
    boundaries. A piece shorter than `min_chars` joins its neighbour when the two fit the window.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    window = _Window(body, count_tokens, max_tokens)
    pieces: list[_Unit] = []
    for block in paragraph_spans(body):
        tokens = window.count(block)
        if tokens <= max_tokens:
            pieces.append((block, tokens))
        else:
            pieces.extend(_cut_long(window, block))
    return _merge_short(window, pieces, min_chars)


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


class _Window:
    """The token counter over spans of one body, each span counted at most once."""

    def __init__(self, body: str, count_tokens: TokenCounter, max_tokens: int) -> None:
        self.body = body
        self.max_tokens = max_tokens
        self._count_tokens = count_tokens
        self._counts: dict[Span, int] = {}

    def count(self, span: Span) -> int:
        if span not in self._counts:
            self._counts[span] = self._count_tokens(self.body[span[0] : span[1]])
        return self._counts[span]

    def fits(self, start: int, end: int) -> bool:
        return self.count((start, end)) <= self.max_tokens


def _cut_long(window: _Window, block: Span) -> list[_Unit]:
    units: list[_Unit] = []
    for sentence in sentence_spans(window.body, block):
        tokens = window.count(sentence)
        if tokens <= window.max_tokens:
            units.append((sentence, tokens))
        else:
            units.extend(_cut_words(window, sentence))
    return _pack(window, units)


def _cut_words(window: _Window, span: Span) -> list[_Unit]:
    words: list[_Unit] = []
    for match in _WORD.finditer(window.body, span[0], span[1]):
        word = (match.start(), match.end())
        tokens = window.count(word)
        if tokens <= window.max_tokens:
            words.append((word, tokens))
        else:
            words.extend(_cut_chars(window, word, tokens))
    return _pack(window, words)


def _cut_chars(window: _Window, span: Span, tokens: int) -> list[_Unit]:
    """Cut a run without whitespace into pieces that fill the window. Each search starts from the length of the
    piece before (the first from the run's own characters per token), as a run's density changes slowly."""
    pieces: list[_Unit] = []
    start, end = span
    guess = max(1, window.max_tokens * (end - start) // tokens)
    while start < end:

        def prefix(k: int, start: int = start) -> int:
            return window.count((start, start + k))

        taken = _longest_fit(prefix, end - start, guess, window.max_tokens)
        pieces.append(((start, start + taken), prefix(taken)))
        start, guess = start + taken, taken
    return pieces


def _pack(window: _Window, units: list[_Unit]) -> list[_Unit]:
    """Join consecutive units into the longest runs that fit the window, in order.

    The sum of the units' own counts says where a run ends (exactly, for a tokenizer that splits at whitespace as
    WordPiece does); the joined text is counted once to confirm it, and only a run that does not fit after all
    is searched for a shorter one. A run is thus decided by one count of its own length, not one per unit. (With
    a tokenizer that counts joined units as fewer tokens than their sum, a run may end sooner than it could.)
    """
    packed: list[_Unit] = []
    first = 0
    while first < len(units):
        start = units[first][0][0]
        guess, total = 0, 0
        while first + guess < len(units) and total + units[first + guess][1] <= window.max_tokens:
            total += units[first + guess][1]
            guess += 1

        def tokens(k: int, start: int = start, first: int = first) -> int:
            return window.count((start, units[first + k - 1][0][1]))

        taken = _longest_fit(tokens, max(guess, 1), guess, window.max_tokens)
        end = units[first + taken - 1][0][1]
        packed.append(((start, end), units[first][1] if taken == 1 else window.count((start, end))))
        first += taken
    return packed


def _longest_fit(tokens: Callable[[int], int], most: int, guess: int, limit: int) -> int:
    """A k in 1..most with `tokens(k) <= limit`: one that fills the window, or else the largest (1 when none fits).

    The first probe is the guess. Each next one goes where the counts so far put the end of the window (on the
    line through the longest fit and the shortest misfit found, or past the fit, at most twice as far), except
    after three probes in a row on the same side, when it bisects (or doubles). A close guess thus costs one or
    two probes and a bad one a logarithm. When `tokens` is not monotone the answer still fits, though a longer
    one might.
    """
    low, high = 0, most + 1  # the longest known fit (0: none yet) and the shortest known misfit
    low_count = high_count = 0
    k = min(max(guess, 1), most)
    last_fit: bool | None = None
    streak = 0  # probes in a row on the same side
    while True:
        count = tokens(k)
        fit = count <= limit
        if fit:
            low, low_count = k, count
        else:
            high, high_count = k, count
        if high - low <= 1 or count == limit:
            return max(low, 1)
        streak = streak + 1 if fit == last_fit else 0
        last_fit = fit
        if high > most:
            target = 2 * low if streak >= 2 else min(2 * low, low * (limit + 1) // max(low_count, 1) - 1)
        elif streak >= 2:
            target = (low + high) // 2
        else:
            target = low + (limit + 1 - low_count) * (high - low) // max(high_count - low_count, 1) - 1
        k = min(max(target, low + 1), high - 1)


def _merge_short(window: _Window, pieces: list[_Unit], min_chars: int) -> list[Span]:
    """Join a piece shorter than `min_chars` with the pieces after it while what it gathers is still short and
    the whole fits the window (by the pieces' own counts, then confirmed by one count); a short piece left at the
    end joins the one before it if they fit."""
    merged: list[_Unit] = []
    first = 0
    while first < len(pieces):
        (start, end), tokens = pieces[first]
        if end - start >= min_chars:
            merged.append(pieces[first])
            first += 1
            continue
        last, total = first, tokens
        while (
            last + 1 < len(pieces)
            and pieces[last][0][1] - start < min_chars
            and total + pieces[last + 1][1] <= window.max_tokens
        ):
            last += 1
            total += pieces[last][1]

        def gathered(k: int, start: int = start, first: int = first) -> int:
            return window.count((start, pieces[first + k - 1][0][1]))

        taken = _longest_fit(gathered, last - first + 1, last - first + 1, window.max_tokens)
        end = pieces[first + taken - 1][0][1]
        tokens = gathered(taken)
        first += taken
        if end - start < min_chars and first == len(pieces) and merged:
            (before, _), before_tokens = merged[-1]
            if before_tokens + tokens <= window.max_tokens and window.fits(before, end):
                merged[-1] = ((before, end), window.count((before, end)))
                continue
        merged.append(((start, end), tokens))
    return [span for span, _ in merged]
