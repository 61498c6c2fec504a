"""Shared fixtures: the real bundled model and one index of the bundled corpus per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from semsearch.benchmarks.server import serve_index
from semsearch.data import NEWS
from semsearch.index.model.embedder import Embedder
from semsearch.index.writing.builder import build_index
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, REPO_ROOT, jsonl, write_corpus

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The user's data and cache folders, for this process and every server or CLI it starts: tests never write into
# the home folder, and the converted model is made once and kept between runs.
os.environ["XDG_DATA_HOME"] = str(REPO_ROOT / "var" / "test-home" / "data")
os.environ["XDG_CACHE_HOME"] = str(REPO_ROOT / "var" / "test-home" / "cache")


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The defaults, but the backend fixed to int8 ONNX: `auto` takes what is fastest on the machine running the
    tests, and tests should not depend on it (its plan is still measured, once, into the test model cache)."""
    return Settings(index=tmp_path_factory.mktemp("default") / "index", backend="onnx-int8")


@pytest.fixture(scope="session")
def embedder(base_settings: Settings) -> Embedder:
    """The model on int8 ONNX, converted once into the model cache and run as this machine's plan says."""
    return Embedder.load(base_settings)


@pytest.fixture(scope="session")
def fp32_embedder(base_settings: Settings) -> Embedder:
    """The model as sentence-transformers runs it in torch fp32: the reference for the fast backend."""
    return Embedder.load(base_settings.replace(backend="torch-fp32"))


@pytest.fixture(scope="session")
def news_settings(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, base_settings: Settings) -> Settings:
    """An index of the bundled corpus, built once for the whole session."""
    settings = base_settings.replace(index=tmp_path_factory.mktemp("news") / "index")
    build_index([NEWS], settings, embedder=embedder)
    return settings


@pytest.fixture(scope="session")
def gv_settings(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, base_settings: Settings) -> Settings:
    """A small index of four Global Voices posts, built once; tests that write copy it first."""
    root = tmp_path_factory.mktemp("gv")
    settings = base_settings.replace(index=root / "index")
    build_index([write_corpus(root / "corpus", {"a.jsonl": jsonl(GV_RECORDS[:4])})], settings, embedder=embedder)
    return settings


@pytest.fixture(scope="session")
def news_searcher(news_settings: Settings, embedder: Embedder) -> Iterator[Searcher]:
    searcher = Searcher.open(news_settings, embedder)
    yield searcher
    searcher.close()


@pytest.fixture(scope="session")
def live_server(news_settings: Settings) -> Iterator[str]:
    """A real `semsearch serve` (uvicorn) process on a free loopback port; yields its base URL."""
    with serve_index(news_settings.index) as base:
        yield base
