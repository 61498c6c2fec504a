"""The analyzer of the lexical half of an index: stemmed English terms without stop words, for BM25
(`postings.py`).

The analyzer is shared by indexing, querying and highlighting, so a highlighted word is exactly
a word that matched.
"""

from __future__ import annotations

import re
import threading

from semsearch.index.reading.folding import fold, folded_clusters

# Lucene's English stop words (bm25s ships the same list); word pattern as in scikit-learn and bm25s.
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "  # noqa: SIM905
    "these they this to was will with".split()
)
_WORD = re.compile(r"\b\w\w+\b")
# The version of `Analyzer`, recorded in each manifest's build settings: an index recorded with another one (or
# none) matches some words differently until its next write, which analyses every passage afresh.
ANALYSIS_VERSION = 2


class Analyzer:
    """Folded words of two or more characters, stop words dropped, Snowball-stemmed.

    Text is folded before it is split into words (NFKC and case folding, `folding.fold`), the same for
    passages and queries, so fullwidth and halfwidth forms, composed and decomposed accents, "ß" and "ss"
    give the same terms either way round. Highlight spans fold each cluster (a character and those that
    normalisation joins to it) on its own, which finds the same words with offsets into the original text.

    Stems are remembered per folded word: highlighting analyses hit texts on every query, and a lookup
    is several times cheaper than stemming. The memory is bounded: at `cache_words` words (about 160 bytes
    each) it starts again from empty, so words sent in queries cannot grow it.
    """

    def __init__(self, cache_words: int = 200_000) -> None:
        self._local = threading.local()  # a PyStemmer object is not safe to share between threads
        self._stems: dict[str, str] = {}
        self._cache_words = cache_words

    def _stem(self, word: str) -> str:
        """The term for one folded word; "" for a stop word."""
        term = self._stems.get(word)
        if term is None:
            term = "" if word in STOPWORDS else self._stemmer().stemWord(word)  # type: ignore[attr-defined]
            if len(self._stems) >= self._cache_words:
                self._stems.clear()
            self._stems[word] = term
        return term

    def _stemmer(self) -> object:
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            import Stemmer

            stemmer = self._local.stemmer = Stemmer.Stemmer("english")
        return stemmer

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, term) for every indexed word of `text`; offsets are into `text` as given."""
        stem = self._stem
        if text.isascii():
            found = [(m.start(), m.end(), stem(m.group().lower())) for m in _WORD.finditer(text)]
        else:
            folded, starts, ends = folded_clusters(text)
            found = [(starts[m.start()], ends[m.end() - 1], stem(m.group())) for m in _WORD.finditer(folded)]
        return [span for span in found if span[2]]

    def terms(self, text: str) -> list[str]:
        stem = self._stem
        return [term for term in map(stem, _WORD.findall(fold(text))) if term]


ANALYZER = Analyzer()
