"""The embedding wrapper: batches cut by token count, and every row back in its text's place."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.index.model.embedder import Embedder, batches_by_length
from tests.helpers import GV_RECORDS

# Character and token lengths disagree: digits and rare names take more word pieces per character.
TEXTS = [
    "water",
    "1984-2023: 4,817,305 km² (±0.5%)",
    "a much longer sentence about the energy cooperation between the two neighbouring countries",
    "Xinjiang–Kazakhstan–Kyrgyzstan",
    *[str(r["text"]).split("\n\n")[0][:400] for r in GV_RECORDS[:7]],
]


def test_batches_hold_texts_of_neighbouring_lengths() -> None:
    lengths = [5, 40, 12, 40, 7, 30, 12]
    batches = batches_by_length(lengths, 3)
    assert batches == [[1, 3, 5], [2, 6, 4], [0]]  # longest first; equal lengths keep their input order
    assert sorted(n for batch in batches for n in batch) == list(range(len(lengths)))
    assert batches_by_length([], 4) == []


@pytest.mark.parametrize("which", ["embedder", "fp32_embedder"])
def test_each_row_is_its_own_texts_embedding(
    which: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder: Embedder = request.getfixturevalue(which)
    monkeypatch.setattr(
        "semsearch.index.model.embedder._WINDOW", 4
    )  # three windows, sorted and batched each on its own
    seen: list[int] = []
    together = embedder.embed_documents(TEXTS, batch_size=3, progress=seen.append)
    alone = np.vstack([embedder.embed_query(text) for text in TEXTS])
    similarity = together @ alone.T
    assert similarity.argmax(axis=1).tolist() == list(range(len(TEXTS)))
    assert similarity.diagonal().min() > 0.97
    assert sum(seen) == len(TEXTS) and max(seen) <= 3


@pytest.mark.parametrize("which", ["embedder", "fp32_embedder"])
def test_batches_are_ordered_by_tokens_not_characters(which: str, request: pytest.FixtureRequest) -> None:
    embedder: Embedder = request.getfixturevalue(which)
    _, lengths = embedder._prepare(TEXTS)
    # Both count the word pieces the model sees; the ONNX backend's ids include [CLS] and [SEP].
    extra = 2 if which == "embedder" else 0
    assert lengths == [min(embedder.count_tokens(text), embedder.max_tokens) + extra for text in TEXTS]
    assert lengths[1] > lengths[2]  # fewer characters, more word pieces: it goes first


def test_a_long_text_is_cut_to_the_window_and_still_ends_the_sequence(embedder: Embedder) -> None:
    encoder = embedder._encoder  # type: ignore[attr-defined]
    ids = encoder.tokenize(["energy " * 600])[0]
    assert len(ids) == embedder.max_tokens + 2
    assert ids[0] == encoder.tokenizer.token_to_id("[CLS]") and ids[-1] == encoder.tokenizer.token_to_id("[SEP]")
