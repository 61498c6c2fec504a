"""The documented maximum article size (SEMSEARCH_MAX_ARTICLE_CHARS), enforced on every way in: the indexer skips
and reports a larger article (file and line), an HTTP write of one gets 413, and the library raises."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from semsearch import ArticleTooLargeError, ConfigError, InvalidArticleError
from semsearch.api.app import create_app
from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.articles import Article
from semsearch.index.storage.generations import current_name
from semsearch.index.writing.builder import build_index, write_articles
from semsearch.settings import Settings
from tests.helpers import jsonl, write_corpus
from tests.test_api import assert_error

LIMIT = 2_000
TOKEN = "limit-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEXT = "Grain leaves the port of Aktau for Baku on the new ferry line. "


def test_the_limit_is_a_setting_with_a_floor() -> None:
    assert Settings().max_article_chars == 1_000_000
    assert Settings.from_env({"SEMSEARCH_MAX_ARTICLE_CHARS": "5000"}).max_article_chars == 5000
    with pytest.raises(ConfigError, match="SEMSEARCH_MAX_ARTICLE_CHARS=0"):
        Settings(max_article_chars=0)


def test_the_indexer_skips_a_larger_article_and_says_where(tmp_path: Path, embedder: Embedder) -> None:
    big = TEXT * 40
    corpus = write_corpus(
        tmp_path / "corpus",
        {
            "wire.jsonl": jsonl(
                [
                    {"id": "small", "title": "Ferry", "text": TEXT},
                    {"id": "big", "title": "Ferry", "text": big},
                    {"id": "title-heavy", "title": "T" * LIMIT, "text": TEXT},
                ]
            ),
            "long.txt": "A long read\n\n" + big,
            "short.txt": "A short one\n\n" + TEXT,
        },
    )
    settings = Settings(index=tmp_path / "index", max_article_chars=LIMIT)
    summary = build_index([corpus], settings, embedder=embedder)
    assert summary.articles == 2
    skipped = {s.where: s.reason for s in summary.skipped}
    assert set(skipped) == {f"{corpus / 'wire.jsonl'}:2", f"{corpus / 'wire.jsonl'}:3", str(corpus / "long.txt")}
    assert all("SEMSEARCH_MAX_ARTICLE_CHARS" in reason and "2,000" in reason for reason in skipped.values())


def test_semsearch_index_reports_the_skip_on_stderr(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"a.jsonl": jsonl([{"text": TEXT}, {"text": TEXT * 40}])})
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}
    env["SEMSEARCH_MAX_ARTICLE_CHARS"] = str(LIMIT)
    command = [str(Path(sys.executable).parent / "semsearch"), "index", str(corpus), "--index", str(tmp_path / "i")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"skipped: {corpus / 'a.jsonl'}:2: the article is too large: 2,519 characters" in result.stderr
    assert "1 skipped" in result.stdout


def test_the_library_refuses_a_larger_article_before_writing(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(index=tmp_path / "index", max_article_chars=LIMIT)
    with pytest.raises(ArticleTooLargeError, match="'big' is too large: 2,525 characters") as raised:
        write_articles(settings, [Article(id="big", title="Ferry", body=TEXT * 40)], embedder=embedder)
    assert isinstance(raised.value, InvalidArticleError)  # the CLI's usage errors and the API's 4xx cover it
    assert not settings.index.exists()
    write_articles(settings, [Article(id="at-the-limit", title="", body="x" * LIMIT)], embedder=embedder)


@pytest.fixture
def client(gv_settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    shutil.copytree(gv_settings.index, tmp_path / "index")
    settings = gv_settings.replace(index=tmp_path / "index", api_token=TOKEN, max_article_chars=LIMIT)
    with TestClient(create_app(settings)) as test_client:
        yield test_client, settings


def test_an_http_write_of_a_larger_article_gets_413(client: tuple[TestClient, Settings]) -> None:
    http, settings = client
    before = current_name(settings.index)
    big = {"id": "big", "title": "Ferry", "body": TEXT * 40}
    small = {"id": "small", "title": "Ferry", "body": TEXT}
    message = assert_error(
        http.post("/articles", json={"articles": [small, big]}, headers=AUTH), 413, "article_too_large"
    )
    assert "articles[1]" in message and "SEMSEARCH_MAX_ARTICLE_CHARS" in message
    assert_error(http.put("/articles/big", json=big, headers=AUTH), 413, "article_too_large")
    assert current_name(settings.index) == before, "nothing of a refused batch is written"
    assert http.put("/articles/small", json=small, headers=AUTH).status_code == 200
