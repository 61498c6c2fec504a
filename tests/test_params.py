"""Each search parameter is defined once, in `semsearch.params`: the HTTP schema and validation of /search, the
`ask` flags, `Settings` and `SearchOptions` all take its name, range and default from that table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from semsearch.api.app import create_app
from semsearch.api.cli import Matching, ask
from semsearch.api.schemas import SearchQuery, SearchRequest
from semsearch.errors import ConfigError
from semsearch.params import SEARCH_PARAMS, Param
from semsearch.search.searcher import SearchOptions, check_k
from semsearch.settings import Settings

IDS = [p.name for p in SEARCH_PARAMS]
SETTLED = [p for p in SEARCH_PARAMS if p.setting]
JSON_TYPES = {int: "integer", float: "number", str: "string"}


def step(param: Param[Any]) -> float:
    return 1 if param.kind is int else 0.001


def inside(param: Param[Any]) -> list[Any]:
    """Values at the edges of what the table allows."""
    if param.choices:
        return list(param.choices)
    if param.low is not None and param.high is not None:
        return [param.low, param.high]
    if param.pattern:
        return list(param.examples) or ["2012-05-01"]
    assert param.max_length is not None
    return ["x", "x" * param.max_length]


def outside(param: Param[Any]) -> list[Any]:
    """Values just past those edges."""
    if param.choices:
        return ["telepathy", param.choices[0].upper()]
    if param.low is not None and param.high is not None:
        return [param.low - step(param), param.high + step(param)]
    if param.pattern:
        return ["May 2012", "2012-5-1", "20120531", "author", "2012-05-01\n"]
    assert param.max_length is not None
    return ["x" * (param.max_length + 1)]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app over a folder with no index: a value that passes validation gets 503, one that does not, 422."""
    settings = Settings(index=tmp_path_factory.mktemp("params") / "none", reload_seconds=0)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def plain(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's schema without the `null` of an optional parameter."""
    branches = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    assert len(branches) == 1, schema
    return {**schema, **branches[0]}


def test_the_models_hold_exactly_the_table() -> None:
    names = [p.name for p in SEARCH_PARAMS]
    assert list(SearchRequest.model_fields) == ["query", *names]
    assert list(SearchQuery.model_fields) == ["query", *names] and SearchQuery.model_fields["query"].alias == "q"
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("param", SEARCH_PARAMS, ids=IDS)
def test_http_schemas_of_get_and_post_follow_the_table(client: TestClient, param: Param[Any]) -> None:
    spec = client.get("/openapi.json").json()
    query = {p["name"]: p for p in spec["paths"]["/search"]["get"]["parameters"]}
    body = spec["components"]["schemas"]["SearchRequest"]["properties"]
    assert set(query) == {"q", *IDS} and set(body) == {"query", *IDS}
    for schema in (query[param.name]["schema"], body[param.name]):
        shown = plain(schema)
        assert shown["type"] == JSON_TYPES[param.kind]
        assert shown.get("minimum") == param.low and shown.get("maximum") == param.high
        assert tuple(shown.get("enum", ())) == param.choices
        assert shown.get("pattern") == param.pattern and shown.get("maxLength") == param.max_length
        assert shown.get("default") == (None if param.setting else param.default)
        assert shown["description"] == param.help
    assert query[param.name]["required"] is False


@pytest.mark.parametrize("param", SEARCH_PARAMS, ids=IDS)
def test_http_accepts_the_tables_edges_and_refuses_past_them(client: TestClient, param: Param[Any]) -> None:
    for value in inside(param):
        got = client.get("/search", params={"q": "Kenya", param.name: value})
        assert got.status_code == 503, (value, got.text)  # valid: it reached the (missing) index
        posted = client.post("/search", json={"query": "Kenya", param.name: value})
        assert posted.status_code == 503, (value, posted.text)
    for value in outside(param):
        got = client.get("/search", params={"q": "Kenya", param.name: value})
        assert got.status_code == 422 and param.name in got.json()["error"]["message"], (value, got.text)
        posted = client.post("/search", json={"query": "Kenya", param.name: value})
        assert posted.status_code == 422 and param.name in posted.json()["error"]["message"], (value, posted.text)


@pytest.mark.parametrize("param", SEARCH_PARAMS, ids=IDS)
def test_ask_flags_follow_the_table(param: Param[Any]) -> None:
    option = next(o for o in ask.params if o.name == param.name)
    assert isinstance(option, click.Option)
    assert option.opts == [param.option] and option.help == param.cli_help
    assert option.default == param.cli_default and option.metavar == param.metavar
    kind = option.type
    if param.choices:
        assert isinstance(kind, click.Choice) and tuple(kind.choices) == param.choices
    elif param.low is not None:
        assert isinstance(kind, click.IntRange if param.kind is int else click.FloatRange)
        assert (kind.min, kind.max) == (param.low, param.high) and not (kind.min_open or kind.max_open)
    elif param.pattern is not None:
        assert isinstance(kind, Matching) and kind.pattern == param.pattern
    else:
        assert kind is click.STRING


CHECKED = [p for p in SEARCH_PARAMS if p.choices or p.low is not None or p.pattern is not None]


@pytest.mark.parametrize("param", CHECKED, ids=lambda p: p.name)
def test_ask_accepts_the_tables_edges_and_refuses_past_them(tmp_path: Path, param: Param[Any]) -> None:
    base = ["Kenya", "--index", str(tmp_path / "none")]
    for value in inside(param):
        result = CliRunner().invoke(ask, [*base, param.option, str(value)])
        assert result.exit_code == 1 and "No index at" in result.output, (value, result.output)
    for value in outside(param):
        result = CliRunner().invoke(ask, [*base, param.option, str(value)])
        assert result.exit_code == 2 and f"Invalid value for '{param.option}'" in result.output, (value, result.output)


@pytest.mark.parametrize("param", SETTLED, ids=lambda p: p.name)
def test_settings_default_and_validate_from_the_table(tmp_path: Path, param: Param[Any]) -> None:
    assert param.setting is not None
    assert getattr(Settings(index=tmp_path), param.setting) == param.default
    for value in inside(param):
        assert getattr(Settings(index=tmp_path, **{param.setting: value}), param.setting) == value
    for value in outside(param):
        variable = f"SEMSEARCH_{param.setting.upper()}"
        with pytest.raises(ConfigError, match=f"^{variable}=.* is not allowed: use {param.allowed()}$"):
            Settings(index=tmp_path, **{param.setting: value})


@pytest.mark.parametrize("param", SETTLED, ids=lambda p: p.name)
def test_search_options_default_and_validate_from_the_table(param: Param[Any]) -> None:
    assert getattr(SearchOptions(), param.name) == param.default
    for value in inside(param):
        assert getattr(SearchOptions(**{param.name: value}), param.name) == value
    for value in outside(param):
        with pytest.raises(ValueError, match=f"^{param.name} must be {param.allowed()}$"):
            SearchOptions(**{param.name: value})


def test_k_is_checked_by_the_table_too() -> None:
    k = next(p for p in SEARCH_PARAMS if p.name == "k")
    for value in inside(k):
        check_k(value)
    for value in outside(k):
        with pytest.raises(ValueError, match=f"k must be {k.allowed()}"):
            check_k(value)


@pytest.mark.parametrize("param", [p for p in SEARCH_PARAMS if p.kind is float], ids=lambda p: p.name)
def test_ask_refuses_nan_and_infinity(tmp_path: Path, param: Param[Any]) -> None:
    """click's FloatRange lets NaN through (it fails no comparison); it reached SearchOptions as a traceback."""
    for value in ("nan", "NaN", "inf", "-inf"):
        result = CliRunner().invoke(ask, ["Kenya", "--index", str(tmp_path / "none"), param.option, value])
        assert result.exit_code == 2 and f"Invalid value for '{param.option}'" in result.output, result.output
