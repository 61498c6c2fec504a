"""The Python API: `semsearch.Engine` over a real index, with the same errors as the CLI and HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import semsearch
from semsearch import Engine
from semsearch.settings import FUSIONS, MODES, Settings
from tests.helpers import GV_RECORDS

NEW = {
    "id": "wire-001",
    "title": "Caspian ferry link opens",
    "body": "A new ferry line links Aktau and Baku, carrying grain and containers across the Caspian Sea twice "
    "a week, the port authority said on Monday.",
    "date": "2024-05-02",
    "source": "Wire",
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp("engine") / "index"
    with Engine.open(folder, settings=Settings(index=folder)) as opened:
        with pytest.raises(semsearch.NoIndexError, match="No index at"):
            opened.search("anything")
        summary = opened.add(GV_RECORDS[:4])
        assert summary.added == 4 and summary.generation is not None
        yield opened


def test_add_search_article_and_delete(engine: Engine) -> None:
    summary = engine.add([NEW])
    assert summary.added == 1 and summary.articles == 5
    (hit,) = engine.search("ferry across the Caspian", k=1)
    assert hit.article_id == "wire-001" and hit.rank == 1
    assert engine.search("ferry across the Caspian", k=3, source="Wire", mode="lexical")[0].article_id == "wire-001"
    article = engine.article("wire-001")
    assert article.title == NEW["title"] and article.body == NEW["body"] and article.passages
    assert engine.delete("wire-001").removed == 1
    with pytest.raises(semsearch.ArticleNotFoundError, match="wire-001"):
        engine.article("wire-001")
    assert all(h.article_id != "wire-001" for h in engine.search("ferry across the Caspian", k=5))
    with pytest.raises(semsearch.ArticleNotFoundError):
        engine.delete(["wire-001"])


def test_a_second_engine_sees_the_first_ones_writes(engine: Engine) -> None:
    with Engine.open(engine.settings.index, settings=engine.settings) as other:
        before = {h.article_id for h in other.search("festival", k=10)}
        later = "Freight trains between Almaty and Urumqi doubled their sailings of grain wagons this spring."
        engine.add([dict(NEW, id="wire-002", title="Rail freight", body=later)])
        assert other.search("grain wagons from Almaty", k=1)[0].article_id == "wire-002"
        engine.delete(["wire-002"])
        assert {h.article_id for h in other.search("festival", k=10)} == before


def test_bad_articles_are_refused_and_nothing_is_written(engine: Engine) -> None:
    generation = engine.search("festival", k=1)
    for bad in ([{"id": "x", "title": "no text"}], [{"body": "text without an id"}], ["not a record"], []):
        with pytest.raises(semsearch.InvalidArticleError):
            engine.add(bad)  # type: ignore[arg-type]
    assert engine.search("festival", k=1) == generation


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    k=st.integers(-5, 150),
    mode=st.sampled_from([None, *MODES, "telepathy"]),
    fusion=st.sampled_from([None, *FUSIONS, "average"]),
    weight=st.one_of(st.none(), st.floats(-1, 2, allow_nan=False)),
    per_article=st.one_of(st.none(), st.integers(-3, 120)),
    date_from=st.sampled_from([None, "2020-01-01", "2020-13-01", "yesterday"]),
)
def test_any_options_give_hits_or_a_named_error(
    engine: Engine,
    k: int,
    mode: str | None,
    fusion: str | None,
    weight: float | None,
    per_article: int | None,
    date_from: str | None,
) -> None:
    valid = (
        1 <= k <= 100
        and mode != "telepathy"
        and fusion != "average"
        and (weight is None or 0 <= weight <= 1)
        and (per_article is None or 0 <= per_article <= 100)
    )
    options = {"mode": mode, "fusion": fusion, "weight": weight, "per_article": per_article, "date_from": date_from}
    try:
        hits = engine.search("journalism festival", k, **options)  # type: ignore[arg-type]
    except semsearch.InvalidSearchError:
        assert not valid
    except semsearch.InvalidFilterError:
        assert valid and date_from in ("2020-13-01", "yesterday")
    else:
        assert valid and date_from in (None, "2020-01-01") and len(hits) <= k
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


@pytest.mark.parametrize(
    "options",
    [
        {"k": 10.5},
        {"offset": 1.5},
        {"per_article": 1.5},
        {"weight": True},
        {"recency_half_life": "3"},
        {"recency_half_life": 3, "now": 123},
        {"mode": 1},
    ],
    ids=str,
)
def test_a_value_of_the_wrong_type_is_a_named_error(engine: Engine, options: dict[str, object]) -> None:
    """HTTP refuses these with a 422; the Python API names them too, never a TypeError or a silent rounding."""
    k = options.pop("k", 10)
    with pytest.raises(semsearch.InvalidSearchError, match="|".join(["k", *options])):
        engine.search("journalism festival", k, **options)  # type: ignore[arg-type]
