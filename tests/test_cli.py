"""The CLI end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from semsearch.api.cli import highlighted
from semsearch.index.storage.lexical import ANALYZER
from semsearch.settings import Settings
from tests.helpers import HIT_FIELDS, write_corpus

BIN = Path(sys.executable).parent


def run(*args: str, index: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}
    if index is not None:
        env["SEMSEARCH_INDEX"] = str(index)
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=env, timeout=timeout)


def test_ask_json_puts_china_kazakhstan_first(news_settings: Settings) -> None:
    result = run("ask", "energy cooperation in Central Asia", "--json", "-k", "3", index=news_settings.index)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 3
    assert hits[0]["article_id"] == "china-kazakhstan-cooperation.txt"
    assert set(hits[0]) == HIT_FIELDS
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_ask_text_output_is_readable(news_settings: Settings) -> None:
    result = run("semsearch", "ask", "Lesotho election date", "-k", "2", "--index", str(news_settings.index))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1. [")
    assert "Lesotho: 2012 General Election Date Set" in result.stdout
    assert "Global Voices" in result.stdout


def test_empty_question_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run("ask", "   ", index=tmp_path / "no-index")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "question is empty" in result.stderr


def test_missing_index_names_the_build_command(tmp_path: Path) -> None:
    result = run("ask", "anything", index=tmp_path / "no-index")
    assert result.returncode == 1
    assert "No index at" in result.stderr and "semsearch index" in result.stderr
    assert "Traceback" not in result.stderr


def test_index_command_summarises_and_reports_skips(tmp_path: Path) -> None:
    corpus = write_corpus(
        tmp_path / "corpus",
        {
            "a.txt": "Tea harvest\n\nFarmers in the hills picked a record tea harvest this spring.",
            "feed.jsonl": '{"id": "j1", "title": "Rail", "text": "A new railway line opened."}\n{"id": broken\n',
            "bin.txt": b"\x00\x00",
        },
    )
    index = tmp_path / "index"
    result = run("semsearch", "index", str(corpus), "--index", str(index))
    assert result.returncode == 0, result.stderr
    assert "Added 2, updated 0, removed 0" in result.stdout and "(2 articles, 2 passages" in result.stdout
    assert "2 skipped" in result.stdout
    assert "feed.jsonl:2: malformed JSON" in result.stderr
    assert "bin.txt: binary file" in result.stderr
    assert "passage/s" in result.stderr  # the progress bar
    ask = run("ask", "tea harvest", "--json", "-k", "1", index=index)
    assert json.loads(ask.stdout)[0]["article_id"] == "a.txt"


def test_index_command_refuses_empty_corpus_and_missing_path(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"empty.txt": ""})
    index = tmp_path / "index"
    result = run("semsearch", "index", str(corpus), "--index", str(index))
    assert result.returncode == 1
    assert "No article to index" in result.stderr and not index.exists()
    missing = run("semsearch", "index", str(tmp_path / "nope"), "--index", str(index))
    assert missing.returncode == 2 and "No such file or folder" in missing.stderr


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    env = dict(os.environ, SEMSEARCH_THREADS="lots")
    result = subprocess.run([str(BIN / "ask"), "q"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "SEMSEARCH_THREADS='lots' is not allowed" in result.stderr


def test_ask_takes_mode_filters_and_cap(news_settings: Settings) -> None:
    args = ["ask", "energy cooperation in Central Asia", "--json", "-k", "10", "--per-article", "1"]
    result = run(*args, "--mode", "lexical", "--source", "Global Voices (globalvoicesonline.org)",
                 index=news_settings.index)  # fmt: skip
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 10 and len({h["article_id"] for h in hits}) == 10
    assert all(h["source"].startswith("Global Voices") for h in hits)
    wanted = set(ANALYZER.terms("energy cooperation in Central Asia"))
    for hit in hits:  # a lexical hit has a query word in its passage (marked) or in its title
        in_text = bool(wanted & set(ANALYZER.terms(hit["text"])))
        assert in_text or wanted & set(ANALYZER.terms(hit["title"]))
        assert bool(hit["highlights"]) == in_text


def test_ask_refuses_a_bad_filter_before_loading_anything(tmp_path: Path) -> None:
    result = run("ask", "Kenya", "--date-from", "2012-13-01", index=tmp_path / "no-index")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: date_from='2012-13-01' is not a date")
    bad_mode = run("ask", "Kenya", "--mode", "telepathy", index=tmp_path / "no-index")
    assert bad_mode.returncode == 2 and "telepathy" in bad_mode.stderr


def test_highlighted_words_are_bold_on_a_terminal() -> None:
    import click

    text = "Energy ties in Central Asia"
    shown = highlighted(text, [(0, 6), (23, 27)])
    assert shown == click.style("Energy", bold=True) + " ties in Central " + click.style("Asia", bold=True)
    assert click.unstyle(shown) == text
