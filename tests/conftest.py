"""Shared fixtures: the real bundled model and one index of the bundled corpus per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.builder import build_index
from index.embedder import Embedder
from index.settings import REPO_ROOT, Settings
from search.searcher import Searcher

NEWS = REPO_ROOT / "data" / "news"

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(index=tmp_path_factory.mktemp("default") / "index")


@pytest.fixture(scope="session")
def embedder(base_settings: Settings) -> Embedder:
    return Embedder.load(base_settings)


@pytest.fixture(scope="session")
def news_settings(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, base_settings: Settings) -> Settings:
    """An index of the bundled corpus, built once for the whole session."""
    settings = base_settings.replace(index=tmp_path_factory.mktemp("news") / "index")
    build_index([NEWS], settings, embedder=embedder)
    return settings


@pytest.fixture(scope="session")
def news_searcher(news_settings: Settings, embedder: Embedder) -> Iterator[Searcher]:
    searcher = Searcher.open(news_settings, embedder)
    yield searcher
    searcher.close()


@pytest.fixture(scope="session")
def live_server(news_settings: Settings) -> Iterator[str]:
    """A real `semsearch serve` (uvicorn) process on a free loopback port; yields its base URL."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}
    env["SEMSEARCH_INDEX"] = str(news_settings.index)
    command = [str(Path(sys.executable).parent / "semsearch"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stderr.read() if process.stderr else ''}")
            try:
                if httpx.get(f"{base}/health", timeout=2).json().get("index_loaded"):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not load its index within 180 s")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
