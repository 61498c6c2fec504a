"""Unicode rules for comparing text, in one place: what counts as "the same" word, source, id or query.

- Caseless keys (`fold`): NFKC, then full case folding, then NFKC again, so "Радио" matches "радио",
  fullwidth "ｅｎｅｒｇｙ" matches "energy" and "Straße" matches "STRASSE". Sources and BM25 terms compare this way.
- Article ids (`normalize_id`): NFC, so the composed and decomposed spellings of "café" (as macOS file names
  give them) are one article. Compatibility forms stay distinct: an id is a key, not a word.
- Queries (`normalize_query`): NFKC, the same compatibility mapping the BM25 analysis applies to passages.

Stored text (bodies, titles) is kept exactly as given: offsets point into it.
"""

from __future__ import annotations

import unicodedata

# Characters that NFC or NFKC join to the character before them although they are not combining marks: the
# second half of two-part vowels (Bengali, Oriya, Tamil, ...) and the halfwidth kana voicing marks, whose
# NFKC form is combining. Hangul vowel and final jamo (U+1160-U+11FF) join too. The test recomputes this set
# from `unicodedata`, so a newer Unicode version cannot leave it stale unnoticed.
JOINERS = frozenset(
    "\u09be\u09d7\u0b3e\u0b56\u0b57\u0bbe\u0bd7\u0cc2\u0cd5\u0cd6\u0d3e\u0d57\u0dcf\u0ddf\u0f73\u0f75\u0f81\u102e"
    "\u1b35\uff9e\uff9f\U00011127\U0001133e\U00011357\U000114b0\U000114ba\U000114bd\U000115af\U00011930"
)


def joins_previous(ch: str) -> bool:
    """Whether normalisation may join `ch` to the character before it."""
    return bool(unicodedata.combining(ch)) or ch in JOINERS or "\u1160" <= ch <= "\u11ff"


def fold(text: str) -> str:
    """The caseless, compatibility-normalised form of `text`."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def normalize_id(article_id: str) -> str:
    """The form an article id is stored and looked up in (NFC)."""
    if article_id.isascii():
        return article_id
    return unicodedata.normalize("NFC", article_id)


def normalize_query(query: str) -> str:
    """A query in the form it is encoded and analysed (NFKC)."""
    if query.isascii():
        return query
    return unicodedata.normalize("NFKC", query)


def folded_clusters(text: str) -> tuple[str, list[int], list[int]]:
    """`fold` applied to each cluster of `text` (a character and those that `joins_previous`), and for each
    character of the result the start and end in `text` of the cluster it came from.

    Folding clusters one by one, rather than the whole text at once, is what lets a word found in the folded
    text be mapped back to offsets in the original; the words are those of `fold(text)`.
    """
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    begin = 0
    for n in range(1, len(text) + 1):
        if n < len(text) and joins_previous(text[n]):
            continue
        piece = text[begin:n]
        folded = piece.lower() if piece.isascii() else fold(piece)
        out.append(folded)
        starts.extend([begin] * len(folded))
        ends.extend([n] * len(folded))
        begin = n
    return "".join(out), starts, ends
