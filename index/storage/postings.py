"""Raw BM25 postings of one segment, and BM25 scored at query time over several segments.

A segment keeps term frequencies and document lengths, not scores: idf and the average length are index-wide
statistics over the live rows of every segment (as Lucene's `IndexSearcher` sums them), so a passage scores the
same whichever segment holds it, and deletes or merges change no score of a live passage. The arithmetic follows
bm25s 0.3's default `BM25()` (Lucene idf, k1 1.5, b 0.75, float64 terms rounded to float32 per posting), so one
segment with every row live gives bm25s's `get_scores`.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

K1 = 1.5
B = 0.75

TERMS = "postings.terms.json"
INDPTR = "postings.indptr.npy"
ROWS = "postings.rows.npy"
FREQS = "postings.freqs.npy"
LENGTHS = "postings.lengths.npy"

_MAX_ROWS = int(np.iinfo(np.int32).max)
_Scalar = TypeVar("_Scalar", bound=np.generic)


@dataclass(frozen=True, eq=False)
class Postings:
    """One segment's BM25 postings: for each term, the rows (documents) holding it and how often; and each
    row's length. Immutable: a segment is written once; deletes live in a mask beside it."""

    terms: list[str]
    """The vocabulary: sorted, unique, no empty term."""
    indptr: npt.NDArray[np.int64]
    """`len(terms) + 1` offsets: the postings of `terms[t]` are `rows[indptr[t]:indptr[t + 1]]`."""
    rows: npt.NDArray[np.int32]
    """The row of each posting, ascending within a term."""
    freqs: npt.NDArray[np.float32]
    """How often the term occurs in that row (above 0)."""
    lengths: npt.NDArray[np.float32]
    """The number of terms of each row (its document length)."""

    @classmethod
    def build(cls, documents: Sequence[Sequence[str]]) -> Postings:
        """Row n holds `documents[n]`, a list of analysed terms (repeats count, "" is ignored)."""
        if len(documents) > _MAX_ROWS:
            raise ValueError(f"a segment holds at most {_MAX_ROWS} rows, not {len(documents)}")
        vocabulary = sorted({term for document in documents for term in document if term})
        number = {term: t for t, term in enumerate(vocabulary)}
        ids = [[number[term] for term in document if term] for document in documents]
        counts = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        terms = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(counts.sum()))
        size = max(len(ids), 1)
        # One key per (term, row) pair: its sorted unique values are the postings in order, the counts their freqs.
        rows = np.repeat(np.arange(len(ids), dtype=np.int64), counts)
        keys, freqs = np.unique(terms * size + rows, return_counts=True)
        return cls(
            terms=vocabulary,
            indptr=_offsets(np.bincount(keys // size, minlength=len(vocabulary))),
            rows=(keys % size).astype(np.int32),
            freqs=freqs.astype(np.float32),
            lengths=counts.astype(np.float32),
        )

    @property
    def size(self) -> int:
        """The number of rows."""
        return len(self.lengths)

    def column(self, term: str) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """The rows holding `term` and its frequency in each (views); empty when the term is absent."""
        t = bisect.bisect_left(self.terms, term)
        if t == len(self.terms) or self.terms[t] != term:
            return self.rows[:0], self.freqs[:0]
        start, end = int(self.indptr[t]), int(self.indptr[t + 1])
        return self.rows[start:end], self.freqs[start:end]

    def rows_with_any(self, terms: Sequence[str]) -> npt.NDArray[np.bool_]:
        """A mask over rows: those holding at least one of `terms`; no terms select no row."""
        mask = np.zeros(self.size, dtype=np.bool_)
        for term in dict.fromkeys(terms):
            mask[self.column(term)[0]] = True
        return mask

    def save(self, directory: Path) -> list[str]:
        """Write the postings into the existing `directory`; returns the names of the files written."""
        (directory / TERMS).write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")
        for name, array in ((INDPTR, self.indptr), (ROWS, self.rows), (FREQS, self.freqs), (LENGTHS, self.lengths)):
            np.save(directory / name, array, allow_pickle=False)
        return [TERMS, INDPTR, ROWS, FREQS, LENGTHS]

    @classmethod
    def load(cls, directory: Path) -> Postings:
        """Read what `save` wrote, checking that the files agree; ValueError names what does not (a missing or
        unreadable file raises OSError)."""
        try:
            terms = json.loads((directory / TERMS).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"The postings file {directory / TERMS} is not JSON ({exc})") from None
        if not isinstance(terms, list) or not all(isinstance(term, str) and term for term in terms):
            raise ValueError(f"The postings file {directory / TERMS} is not a list of non-empty terms")
        if any(a >= b for a, b in itertools.pairwise(terms)):
            raise ValueError(f"The terms in {directory / TERMS} are not sorted and unique")
        postings = cls(
            terms=terms,
            indptr=_read(directory / INDPTR, np.int64),
            rows=_read(directory / ROWS, np.int32),
            freqs=_read(directory / FREQS, np.float32),
            lengths=_read(directory / LENGTHS, np.float32),
        )
        problem = postings._inconsistency()
        if problem:
            raise ValueError(f"The postings in {directory} are inconsistent: {problem}")
        return postings

    def _inconsistency(self) -> str:
        """What breaks the invariants of the arrays, or "" when nothing does."""
        indptr, rows = self.indptr, self.rows
        if len(indptr) != len(self.terms) + 1:
            return f"{len(indptr)} offsets for {len(self.terms)} terms (one more is needed)"
        if indptr[0] != 0 or indptr[-1] != len(rows) or np.any(np.diff(indptr) < 0):
            return f"the offsets do not rise from 0 to the {len(rows)} postings"
        if len(self.freqs) != len(rows):
            return f"{len(self.freqs)} frequencies for {len(rows)} postings"
        if len(rows) and (rows.min() < 0 or rows.max() >= self.size):
            return f"a posting points outside the {self.size} rows"
        starts = np.zeros(len(rows), dtype=np.bool_)
        starts[indptr[:-1][indptr[:-1] < indptr[1:]]] = True
        if np.any((np.diff(rows) <= 0) & ~starts[1:]):
            return "the rows of a term are not strictly ascending"
        if not np.all(self.freqs > 0):
            return "a frequency is not above 0"
        if not np.all(self.lengths >= 0):
            return "a row length is negative or not a number"
        return ""

    @classmethod
    def merge(cls, parts: Sequence[tuple[Postings, npt.NDArray[np.bool_]]]) -> Postings:
        """The kept rows (mask True) of each part, in part order and row order within a part: the same postings
        as `build` over those documents. Vectorised over postings; terms left without a posting are dropped."""
        union = np.unique(np.concatenate([np.asarray(p.terms, dtype=object) for p, _ in parts] + [_NO_TERMS]))
        terms, rows, freqs, lengths = [], [], [], []
        offset = 0
        for postings, mask in parts:
            keep = np.asarray(mask, dtype=np.bool_)
            if keep.shape != (postings.size,):
                raise ValueError(f"a mask of shape {keep.shape} for a part of {postings.size} rows")
            new_row = np.cumsum(keep, dtype=np.int64) - 1 + offset
            local = np.searchsorted(union, np.asarray(postings.terms, dtype=object)).astype(np.int64)
            alive = keep[postings.rows]
            terms.append(np.repeat(local, np.diff(postings.indptr))[alive])
            rows.append(new_row[postings.rows[alive]])
            freqs.append(postings.freqs[alive])
            lengths.append(postings.lengths[keep])
            offset += int(keep.sum())
        if offset > _MAX_ROWS:
            raise ValueError(f"a segment holds at most {_MAX_ROWS} rows, not {offset}")
        term = np.concatenate([*terms, np.zeros(0, dtype=np.int64)])
        row = np.concatenate([*rows, np.zeros(0, dtype=np.int64)])
        order = np.lexsort((row, term))
        counts = np.bincount(term, minlength=len(union))
        used = counts > 0
        return cls(
            terms=[str(t) for t in union[used]],
            indptr=_offsets(counts[used]),
            rows=row[order].astype(np.int32),
            freqs=np.concatenate([*freqs, np.zeros(0, dtype=np.float32)])[order],
            lengths=np.concatenate([*lengths, np.zeros(0, dtype=np.float32)]),
        )


_NO_TERMS = np.zeros(0, dtype=object)


def _offsets(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """CSR offsets from per-term posting counts."""
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr


def _read(path: Path, dtype: type[_Scalar]) -> npt.NDArray[_Scalar]:
    """A one-dimensional array of `dtype` from an .npy file, or ValueError naming the file."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise ValueError(f"The postings file {path} cannot be read ({exc})") from None
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != 1:
        raise ValueError(f"The postings file {path} does not hold a one-dimensional {np.dtype(dtype).name} array")
    return array


class Bm25:
    """Index-wide BM25 over several segments' postings with their live masks (None: every row live).

    N, document frequencies and the average length count live rows only, so the segments score as one
    segment built from the live documents would. The masks must not change while this is in use.
    """

    def __init__(
        self, parts: Sequence[tuple[Postings, npt.NDArray[np.bool_] | None]], k1: float = K1, b: float = B
    ) -> None:
        self._postings = [postings for postings, _ in parts]
        self._live: list[npt.NDArray[np.bool_] | None] = []
        documents, total_length = 0, 0.0
        for postings, live in parts:
            if live is None:
                self._live.append(None)
                documents += postings.size
                total_length += float(postings.lengths.sum(dtype=np.float64))
                continue
            mask = np.asarray(live, dtype=np.bool_)
            if mask.shape != (postings.size,):
                raise ValueError(f"a live mask of shape {mask.shape} for a segment of {postings.size} rows")
            self._live.append(mask)
            documents += int(mask.sum())
            total_length += float(postings.lengths[mask].sum(dtype=np.float64))
        self._documents = documents
        # No live document, or none with a term: nothing can score, and 1 keeps the division defined.
        average = total_length / documents if total_length > 0 else 1.0
        # float64 as bm25s computes it; each posting's term is rounded to float32 only once it is complete.
        self._norms = [k1 * ((1 - b) + b * p.lengths.astype(np.float64) / average) for p in self._postings]

    @property
    def documents(self) -> int:
        """N: the live rows over all segments."""
        return self._documents

    def document_frequency(self, term: str) -> int:
        """The live rows holding `term`, over all segments."""
        return sum(len(rows) for rows, _ in self._live_columns(term))

    def scores(self, terms: Sequence[str]) -> list[npt.NDArray[np.float32]]:
        """One float32 array per segment, over its rows: the BM25 score of each row for the query `terms`
        (a repeated term counts each time, unknown terms add nothing, dead rows score 0)."""
        out = [np.zeros(p.size, dtype=np.float32) for p in self._postings]
        contributions: dict[str, list[tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]] | None] = {}
        for term in terms:
            if term not in contributions:
                contributions[term] = self._contributions(term)
            parts = contributions[term]
            if parts is None:
                continue
            for score, (rows, values) in zip(out, parts, strict=True):
                score[rows] += values
        return out

    def _contributions(self, term: str) -> list[tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]] | None:
        """Per segment, the live rows holding `term` and its float32 BM25 term in each; None when none holds it."""
        columns = self._live_columns(term)
        df = sum(len(rows) for rows, _ in columns)
        if df == 0:
            return None
        idf = float(np.float32(math.log(1 + (self._documents - df + 0.5) / (df + 0.5))))
        out = []
        for (rows, freqs), norm in zip(columns, self._norms, strict=True):
            tf = freqs.astype(np.float64)
            out.append((rows, (idf * (tf / (norm[rows] + tf))).astype(np.float32)))
        return out

    def _live_columns(self, term: str) -> list[tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]]:
        """Per segment, the live rows holding `term` and its frequencies there."""
        columns = []
        for postings, live in zip(self._postings, self._live, strict=True):
            rows, freqs = postings.column(term)
            if live is not None and len(rows):
                keep = live[rows]
                rows, freqs = rows[keep], freqs[keep]
            columns.append((rows, freqs))
        return columns
