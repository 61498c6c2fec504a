"""The ONNX backend: converted once per model fingerprint, close to fp32, recorded in the index, and
a clean fallback to torch when a model cannot be converted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semsearch.data import SQUAD_DEV
from semsearch.index.model.embedder import Embedder, OnnxEmbedder, model_info, resolve_backend
from semsearch.index.model.export.onnx_export import EXPORT_REVISION, _unfuse_norms, cached_model
from semsearch.index.model.onnx_runtime import OnnxEncoder
from semsearch.index.storage.store import open_index
from semsearch.index.writing.builder import build_index
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, jsonl, write_corpus

PARAGRAPHS = [str(r["text"]).split("\n\n")[0] for r in GV_RECORDS[:24]]


@pytest.fixture(scope="module")
def onnx_settings(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # The built-in plan: these tests are about the conversion and the runtime, and a fresh model cache would
    # measure a plan first.
    return base_settings.replace(backend="onnx-int8", plan="default", model_cache=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def onnx_embedder(onnx_settings: Settings) -> Embedder:
    return Embedder.load(onnx_settings)


def test_int8_embeddings_stay_close_to_fp32(onnx_embedder: Embedder, fp32_embedder: Embedder) -> None:
    embedder = fp32_embedder
    assert isinstance(onnx_embedder, OnnxEmbedder) and onnx_embedder.info.backend == "onnx-int8"
    assert (onnx_embedder.dimension, onnx_embedder.max_tokens) == (embedder.dimension, embedder.max_tokens)
    fast, exact = onnx_embedder.embed_documents(PARAGRAPHS), embedder.embed_documents(PARAGRAPHS)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosines = (fast * exact).sum(axis=1)
    assert cosines.mean() > 0.985 and cosines.min() > 0.96
    for text in PARAGRAPHS[:5]:
        assert onnx_embedder.count_tokens(text) == embedder.count_tokens(text)  # same splits, same passages
    query = "press freedom and journalists"
    assert float((onnx_embedder.embed_query(query) @ embedder.embed_query(query).T)[0, 0]) > 0.97


def test_the_conversion_is_cached_by_fingerprint(onnx_settings: Settings, onnx_embedder: Embedder) -> None:
    (folder,) = [p for p in onnx_settings.model_cache.iterdir() if p.is_dir()]
    assert folder.name == f"{onnx_embedder.info.fingerprint[:16]}-onnx-int8-r{EXPORT_REVISION}"
    made = (folder / "model.onnx").stat().st_mtime_ns
    Embedder.load(onnx_settings)
    assert (folder / "model.onnx").stat().st_mtime_ns == made
    source = json.loads((folder / "source.json").read_text())
    assert source["fingerprint"] == onnx_embedder.info.fingerprint
    assert source["fused"] is True  # MiniLM is a BERT: its attention runs as one (quantised) operator
    # ... and its 6 layers' 12 skip + layer norms are spelled out again in plain operators
    assert source["unfused_layer_norms"] == 12
    operators = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    assert "QAttention" in operators and "SkipLayerNormalization" not in operators


def test_a_model_that_cannot_convert_falls_back_to_torch(
    onnx_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    other = tmp_path / "cls-model"
    shutil.copytree(embedder.info.path, other)
    pooling = other / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    settings = onnx_settings.replace(model=str(other))
    info, reason = resolve_backend(settings, model_info(settings))
    assert info.backend == "torch-fp32" and info.export_revision is None
    assert reason is not None and "mean of its tokens" in reason


def test_the_index_records_its_backend_and_queries_use_it(
    onnx_settings: Settings, onnx_embedder: Embedder, tmp_path: Path
) -> None:
    settings = onnx_settings.replace(index=tmp_path / "index")
    corpus = write_corpus(tmp_path / "c", {"a.jsonl": jsonl(GV_RECORDS[:3])})
    build_index([corpus], settings)
    stored = open_index(settings.index)
    assert stored.manifest.model["backend"] == "onnx-int8"
    assert stored.manifest.model["export_revision"] == EXPORT_REVISION  # which export recipe made the vectors
    stored.close()
    # Asked with the default backend, the searcher still encodes questions as the index was built.
    searcher = Searcher.open(settings.replace(backend="torch-fp32"))
    try:
        assert searcher.embedder.info.backend == "onnx-int8"
        assert searcher.search(str(GV_RECORDS[1]["title"]), k=1)[0].article_id == GV_RECORDS[1]["_id"]
    finally:
        searcher.close()


def test_a_batch_split_across_sessions_keeps_each_text_in_its_row(
    onnx_settings: Settings, onnx_embedder: Embedder
) -> None:
    info = onnx_embedder.info
    encoder = OnnxEncoder(
        cached_model(info.path, info.fingerprint, info.backend, onnx_settings.model_cache), info.path, 256, 2
    )
    texts = [*PARAGRAPHS[:7], "water", "press freedom in Kenya", PARAGRAPHS[7][:300]]  # mixed lengths, odd count
    batch = encoder.encode(texts)
    alone = np.vstack([encoder.encode([text]) for text in texts])
    similarity = batch @ alone.T
    assert batch.shape == (len(texts), encoder.dimension)
    assert similarity.argmax(axis=1).tolist() == list(range(len(texts)))  # row n is text n
    assert np.allclose(batch, alone, atol=1e-5)  # int8 runs one text per call: its vector is its own


QUESTIONS = [json.loads(line)["text"] for line in (SQUAD_DEV / "queries.jsonl").read_text().splitlines()[:40]]
TEXTS = [*QUESTIONS, *PARAGRAPHS, "oil", "energy cooperation in Central Asia"]


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    group=st.lists(st.sampled_from(TEXTS), min_size=2, max_size=12),
    micro=st.sampled_from(["split", "whole"]),
)
def test_a_vector_never_depends_on_the_texts_encoded_beside_it(
    group: list[str], micro: str, onnx_settings: Settings
) -> None:
    """int8 quantises activations with one scale per call: a short query beside longer texts came out at cosine
    0.992 of itself alone. Queries of a micro-batch (either plan), a write's passages and an index build's
    batches all give each text the vector it has alone."""
    embedder = shared_embedders(onnx_settings, micro)
    alone = np.vstack([embedder.embed_query(text) for text in dict.fromkeys(group)])
    index = {text: n for n, text in enumerate(dict.fromkeys(group))}
    expected = alone[[index[text] for text in group]]
    assert np.allclose(embedder.embed_queries(group), expected, atol=1e-5)
    assert np.allclose(embedder.embed_documents(group, batch_size=4), expected, atol=1e-5)


_EMBEDDERS: dict[str, Embedder] = {}


def shared_embedders(settings: Settings, micro: str) -> Embedder:
    """One int8 embedder per micro-batch mode, two lanes, loaded once for the examples of a test."""
    if micro not in _EMBEDDERS:
        plan = f"onnx-int8,lanes=2x1,rows=4,tokens=0,query=2,micro={micro}"
        _EMBEDDERS[micro] = Embedder.load(settings.replace(plan=plan, threads=2))
    return _EMBEDDERS[micro]


def lane_encoder(settings: Settings, embedder: Embedder) -> OnnxEncoder:
    info = embedder.info
    return OnnxEncoder(cached_model(info.path, info.fingerprint, info.backend, settings.model_cache), info.path, 256, 2)


def test_the_lanes_hand_each_batch_its_own_vectors_once(onnx_settings: Settings, onnx_embedder: Embedder) -> None:
    encoder = lane_encoder(onnx_settings, onnx_embedder)
    ids = encoder.tokenize(PARAGRAPHS)
    batches = [(n, ids[lo : lo + 3]) for n, lo in enumerate(range(0, len(ids), 3))]
    got: dict[int, np.ndarray] = {}

    def done(key: int, vectors: np.ndarray) -> None:
        assert key not in got
        got[key] = vectors

    encoder.encode_batches(iter(batches), done)
    assert sorted(got) == [n for n, _ in batches]
    session = encoder._lane_sessions()[0]
    for key, batch in batches:  # whichever lane ran it, a batch comes out as one lane alone makes it
        assert np.allclose(got[key], encoder._run(session, batch), atol=1e-6)


def test_one_passage_runs_on_the_multi_threaded_session_and_more_on_the_lanes(
    onnx_settings: Settings, onnx_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write of one short article embeds one passage: it takes the lowest-latency session, not one lane."""
    encoder = lane_encoder(onnx_settings, onnx_embedder)
    embedder = OnnxEmbedder(onnx_embedder.info, encoder, 256)
    used: list[tuple[object, int]] = []
    infer = encoder._infer

    def spy(session: object, feeds: dict[str, np.ndarray]) -> np.ndarray:
        used.append((session, len(feeds["input_ids"])))
        return infer(session, feeds)

    monkeypatch.setattr(encoder, "_infer", spy)
    embedder.embed_documents([PARAGRAPHS[0]])
    assert used == [(encoder.session, 1)]
    used.clear()
    embedder.embed_documents(PARAGRAPHS[:4], batch_size=32)  # four texts: two per lane, one per call (int8)
    assert sorted(n for _, n in used) == [1, 1, 1, 1]
    assert {id(session) for session, _ in used} <= {id(lane) for lane in encoder._lane_sessions()}


def test_a_failing_batch_stops_every_lane_and_reaches_the_caller(
    onnx_settings: Settings, onnx_embedder: Embedder
) -> None:
    encoder = lane_encoder(onnx_settings, onnx_embedder)
    ids = encoder.tokenize(PARAGRAPHS[:4])
    taken: list[int] = []

    def source() -> Iterator[tuple[int, list[np.ndarray]]]:
        for n in range(40):
            taken.append(n)
            yield n, ids

    def done(key: int, vectors: np.ndarray) -> None:
        raise OSError(f"disk full at batch {key}")

    with pytest.raises(OSError, match="disk full"):
        encoder.encode_batches(source(), done)
    assert len(taken) <= 2 * encoder.threads  # each lane finishes the batch it holds, then stops

    def broken() -> Iterator[tuple[int, list[np.ndarray]]]:
        yield 0, ids
        raise ValueError("unreadable passage")

    with pytest.raises(ValueError, match="unreadable passage"):
        encoder.encode_batches(broken(), lambda key, vectors: None)
    assert not [t for t in threading.enumerate() if t.name == "semsearch-encode"]


def test_the_conversion_leaves_the_logging_configuration_alone(tmp_path: Path) -> None:
    """onnxruntime's quantiser calls logging.basicConfig when first imported; a server's logs must not change.
    In a fresh process, since pytest's own log handlers make basicConfig do nothing here."""
    script = (
        "import logging, sys; from pathlib import Path; from semsearch.api.cli import load_settings; "
        "from semsearch.index.model.embedder import model_info; "
        "from semsearch.index.model.export.onnx_export import cached_model; "
        "info = model_info(load_settings(backend='onnx-int8')); "
        "cached_model(info.path, info.fingerprint, info.backend, Path(sys.argv[1])); "
        "print(len(logging.root.handlers))"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0", done.stderr


def test_a_graph_the_rewrite_cannot_read_is_kept_as_it_is(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Spelling the layer norms out is an optimisation: when it fails, the export keeps the fused graph."""
    source = tmp_path / "model.onnx"
    source.write_bytes(b"not an onnx graph")
    assert _unfuse_norms(source, tmp_path / "rewritten.onnx") == (source, 0)
    assert not (tmp_path / "rewritten.onnx").exists()
    assert "layer norms left fused" in caplog.text
