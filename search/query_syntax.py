"""The query language: `"exact phrases"` and `-exclusions`, read from a query string.

    belt and road             ranked as typed; no operators (a query without them parses to itself, exactly)
    "belt and road" projects  passages holding the words belt, and, road one after the other
    china -russia             passages without the word russia (nor its other forms: see below)
    china -"south china sea"  passages without that phrase

A phrase is the text between two double quotes, straight (`"`) or typographic (`“ ” „`, as phones type them);
quotes pair up left to right and an unpaired last one is an ordinary character. A minus excludes only at the start
of the query or after whitespace, followed directly by a word character or a phrase: `e-mail`, `2012-05` and
`a - b` are words as typed. Parsing never fails: a query left with nothing to rank (`-china`, `""`) is read
literally, as if it had no operators. (The searcher refuses more than MAX_OPERATORS phrases and exclusions.)

Words compare as `folding.fold` compares them (case folded, NFKC: composed and decomposed accents, fullwidth
forms are one), and a phrase matches whole words in order with anything but word characters between them:
"belt and road" matches "Belt-and-Road" but not "belted and roads". Accents are not removed ("cafe" is not
"café"), as in the BM25 analysis, so the `required_terms` pre-filter never drops a passage `admits` accepts.
Matching builds no pattern from the query: text and phrase both become their folded words joined by single
spaces, and a phrase is a substring of the text's line (CPython's substring search keeps that linear).

Exclusion follows the analyzer, like Elasticsearch's analysed `must_not`: an excluded single word that has an
analyzer term excludes every passage with that term (`-energy` leaves out "energies" too), so retrieval can drop
those passages up front (`excluded_terms`) and still return a full k. A word the analyzer has no term for (a stop
word, one letter), a hyphenated or dotted word (`-e-mail`, `-U.S.`) and a quoted phrase (`-"china"`) exclude
exactly those words, checked by `admits` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from semsearch.index.reading.folding import fold
from semsearch.index.storage.lexical import ANALYZER, Analyzer

__all__ = ["MAX_OPERATORS", "QUOTES", "ParsedQuery", "parse"]

MAX_OPERATORS = 32
"""The most phrases and exclusions, counted together, that one query may hold: the searcher refuses a query with
more (InvalidSearchError, a 422 over HTTP), since each one costs a term mask and a check of every candidate."""

# Straight, typographic (English and German openings) and fullwidth double quotes; any of them opens or closes.
QUOTES = frozenset('"\u201c\u201d\u201e\uff02')
_WORDS = re.compile(r"\w+")
_WORD_CHAR = re.compile(r"\w")


@dataclass(frozen=True)
class _Exclusions:
    """What `excluded` refuses, read once per query: analyzer terms, and folded word lines matched exactly."""

    terms: frozenset[str]
    ordered_terms: tuple[str, ...]
    exact_lines: tuple[str, ...]


@dataclass(frozen=True)
class ParsedQuery:
    """A query read for its operators: `text` is what ranking sees (the query without them), `phrases` must each
    appear, `excluded` must not (words as typed, phrases in straight quotes: `'"south china sea"'`).

    `admits` runs once per candidate passage, so what it needs of the query (the phrases' word lines, the
    exclusions under the shared analyzer) is computed on first use and kept with the query."""

    text: str
    phrases: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    @property
    def has_operators(self) -> bool:
        return bool(self.phrases or self.excluded)

    def admits(self, text: str, title: str | None = None, analyzer: Analyzer = ANALYZER) -> bool:
        """Whether a passage (and its article's title) holds every phrase and nothing excluded."""
        if not self.has_operators:
            return True
        fields = (_word_line(text),) if title is None else (_word_line(text), _word_line(title))
        if not all(any(needle in line for line in fields) for needle in self._phrase_lines):
            return False
        exclusions = self._exclusions(analyzer)
        if any(needle in line for needle in exclusions.exact_lines for line in fields):
            return False
        if exclusions.terms:
            if not exclusions.terms.isdisjoint(analyzer.terms(text)):
                return False
            return title is None or exclusions.terms.isdisjoint(analyzer.terms(title))
        return True

    def required_terms(self, analyzer: Analyzer = ANALYZER) -> list[str]:
        """The analyzer terms of the phrases' words: every passage `admits` accepts holds all of them."""
        return list(dict.fromkeys(term for phrase in self.phrases for term in analyzer.terms(phrase)))

    def excluded_terms(self, analyzer: Analyzer = ANALYZER) -> list[str]:
        """The terms whose passages `admits` refuses: one for each excluded single word the analyzer keeps."""
        return list(self._exclusions(analyzer).ordered_terms)

    @cached_property
    def _phrase_lines(self) -> tuple[str, ...]:
        return tuple(map(_word_line, self.phrases))

    @cached_property
    def _shared_exclusions(self) -> _Exclusions:
        return _read_exclusions(self.excluded, ANALYZER)

    def _exclusions(self, analyzer: Analyzer) -> _Exclusions:
        """The exclusions under `analyzer`: kept for the shared one, read afresh for any other."""
        return self._shared_exclusions if analyzer is ANALYZER else _read_exclusions(self.excluded, analyzer)


def _read_exclusions(excluded: tuple[str, ...], analyzer: Analyzer) -> _Exclusions:
    """An excluded single word with one analyzer term is refused by that term; anything else word for word."""
    by_term: list[str] = []
    exact: list[str] = []
    for item in excluded:
        if item.startswith('"'):
            exact.append(item[1:-1])
            continue
        terms = analyzer.terms(item) if len(_WORDS.findall(item)) == 1 else []
        if len(terms) == 1:
            by_term.append(terms[0])
        else:
            exact.append(item)
    ordered = tuple(dict.fromkeys(by_term))
    return _Exclusions(frozenset(ordered), ordered, tuple(map(_word_line, exact)))


def parse(query: str) -> ParsedQuery:
    """Read `query`'s phrases and exclusions; never fails, and a query without operators is its own `text`."""
    if "-" not in query and QUOTES.isdisjoint(query):
        return ParsedQuery(query)
    quotes = [n for n, ch in enumerate(query) if ch in QUOTES]
    closing = dict(zip(quotes[0::2], quotes[1::2], strict=False))  # opening -> closing; an odd last one is literal
    out: list[str] = []
    phrases: list[str] = []
    excluded: list[str] = []
    size = len(query)
    n = 0
    removed_last = False
    while n < size:
        start = n
        if query[n] == "-" and (n == 0 or query[n - 1].isspace()) and n + 1 < size:
            if n + 1 in closing:
                inner = query[n + 2 : closing[n + 1]]
                if _WORD_CHAR.search(inner):
                    excluded.append(f'"{inner.strip()}"')
                n = closing[n + 1] + 1
            elif _WORD_CHAR.match(query, n + 1):
                n += 1
                while n < size and not query[n].isspace() and n not in closing:
                    n += 1
                excluded.append(_trim(query[start + 1 : n]))
        elif n in closing:
            inner = query[n + 1 : closing[n]]
            n = closing[n] + 1
            if _WORD_CHAR.search(inner):
                phrases.append(inner.strip())
                if out and not out[-1][-1].isspace():
                    out.append(" ")
                out.append(inner)
                if n < size and not query[n].isspace():
                    out.append(" ")
                removed_last = False
                continue
        if n == start:  # an ordinary character
            out.append(query[n])
            n += 1
            removed_last = False
            continue
        # An exclusion or an empty phrase was left out: keep one separator where it stood, none at either end.
        if n < size and query[n].isspace():
            if not out or out[-1][-1].isspace():
                while n < size and query[n].isspace():
                    n += 1
        elif n < size and out and not out[-1][-1].isspace():
            out.append(" ")
        removed_last = True
    text = "".join(out)
    if removed_last:
        text = text.rstrip()
    if not text.strip():
        return ParsedQuery(query)
    return ParsedQuery(text, tuple(dict.fromkeys(phrases)), tuple(dict.fromkeys(excluded)))


def _trim(token: str) -> str:
    """An excluded word without the punctuation after it ("russia," is "russia"); it starts with a word character."""
    end = len(token)
    while not _WORD_CHAR.match(token, end - 1):
        end -= 1
    return token[:end]


def _word_line(text: str) -> str:
    """The folded words of `text`, one space between them and around them: a phrase is then a substring."""
    return " " + " ".join(_WORDS.findall(fold(text))) + " "
