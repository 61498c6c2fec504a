"""The lexical half of an index: BM25 (bm25s) over stemmed English terms without stop words.

The analyzer is shared by indexing, querying and highlighting, so a highlighted word is exactly
a word that matched. Rows of the BM25 matrix are passage ids.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from semsearch.index.reading.folding import fold, folded_clusters
from semsearch.index.storage.topk import top_positions

# Lucene's English stop words (bm25s ships the same list); word pattern as in scikit-learn and bm25s.
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "  # noqa: SIM905
    "these they this to was will with".split()
)
_WORD = re.compile(r"\b\w\w+\b")
LEXICAL_DIR = "lexical"
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


class LexicalIndex:
    """BM25 scores for every passage; built in one pass, saved beside the vectors."""

    def __init__(self, retriever: object) -> None:
        self._retriever = retriever

    @classmethod
    def build(cls, documents: Iterable[str]) -> LexicalIndex:
        import bm25s

        retriever = bm25s.BM25()
        tokens = [ANALYZER.terms(text) for text in documents]
        if not any(tokens):
            # Not one term in the whole corpus (one-letter words, symbols): bm25s fails on an empty vocabulary.
            # Its own empty token stands in; no query has it, so nothing scores, as nothing should.
            tokens = [[""] for _ in tokens]
        retriever.index(tokens, show_progress=False)
        return cls(retriever)

    def save(self, directory: Path) -> list[Path]:
        self._retriever.save(str(directory), show_progress=False)  # type: ignore[attr-defined]
        return sorted(p for p in directory.iterdir() if p.is_file())

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        import bm25s

        return cls(bm25s.BM25.load(str(directory), mmap=False, show_progress=False))

    @property
    def size(self) -> int:
        return int(self._retriever.scores["num_docs"])  # type: ignore[attr-defined]

    def scores(self, terms: Sequence[str]) -> npt.NDArray[np.float32]:
        """BM25 score of every passage for the query terms (terms unknown to the corpus score nothing)."""
        vocab: dict[str, int] = self._retriever.vocab_dict  # type: ignore[attr-defined]
        known = [t for t in terms if t in vocab]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)  # type: ignore[attr-defined]

    def rows_with(self, term: str) -> npt.NDArray[np.bool_]:
        """A mask over rows: the passages whose BM25 document holds `term` (its column of bm25s's CSC matrix)."""
        return self.rows_with_any([term])

    def rows_with_any(self, terms: Sequence[str]) -> npt.NDArray[np.bool_]:
        """A mask over rows: the passages whose BM25 document holds at least one of `terms`, set in one
        assignment from the union of their columns of bm25s's CSC matrix; no terms select no row."""
        mask = np.zeros(self.size, dtype=np.bool_)
        matrix = self._retriever.scores  # type: ignore[attr-defined]
        vocab: dict[str, int] = self._retriever.vocab_dict  # type: ignore[attr-defined]
        indptr, indices = matrix["indptr"], matrix["indices"]
        # bm25s adds "" to the vocabulary past the matrix's last column: no analyzer term is empty.
        columns = [vocab[t] for t in dict.fromkeys(terms) if t and t in vocab and vocab[t] + 1 < len(indptr)]
        if columns:
            mask[np.concatenate([indices[indptr[c] : indptr[c + 1]] for c in columns])] = True
        return mask

    def search(
        self, terms: Sequence[str], k: int, allowed: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-k (scores, passage ids) with a positive score, best first; `allowed` masks passages out."""
        scores = self.scores(terms)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0).astype(np.float32)
        positive = np.flatnonzero(scores > 0)
        order = positive[top_positions(scores[positive], k)]
        return scores[order], order.astype(np.int64)
