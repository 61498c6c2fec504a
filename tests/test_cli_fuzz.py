"""The CLI under random arguments: whatever a user types, `semsearch` and `ask` answer with a result or one
clear line and exit code 1 or 2, never a traceback, and touch nothing outside the index they were given."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semsearch.api.cli import ask, main
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, jsonl, write_corpus

# Text as argv can carry it: any printable or control character, and the lone surrogates that stand for
# undecodable bytes (Python decodes argv with surrogateescape).
ARG_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00") | st.sampled_from(["\udcff", "\udc80"])
JUNK = st.text(ARG_CHARS, max_size=30)
NUMBER = st.one_of(st.integers(-(10**6), 10**6).map(str), st.floats(allow_nan=True).map(str), JUNK)
DAY = st.one_of(st.dates().map(str), st.sampled_from(["2020-02-30", "2020-13-01", "", "yesterday"]), JUNK)


def option(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return values.map(lambda value: [name, value])


ASK_OPTIONS = st.lists(
    st.one_of(
        option("-k", NUMBER),
        option("--mode", st.sampled_from(["dense", "lexical", "hybrid"]) | JUNK),
        option("--fusion", st.sampled_from(["weighted", "rrf"]) | JUNK),
        option("--weight", NUMBER),
        option("--per-article", NUMBER),
        option("--date-from", DAY),
        option("--date-to", DAY),
        option("--source", JUNK),
        option("--article-id", JUNK),
        st.just(["--json"]),
        st.lists(JUNK, max_size=2),
    ),
    max_size=5,
).map(lambda parts: [arg for part in parts for arg in part])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, gv_settings: Settings) -> Path:
    """A folder holding a real index, a tiny corpus, a plain file and a folder that is not an index."""
    root = tmp_path_factory.mktemp("sandbox")
    shutil.copytree(gv_settings.index, root / "index")
    write_corpus(root / "corpus", {"a.jsonl": jsonl(GV_RECORDS[4:6])})
    (root / "notes.txt").write_text("a file, not an index\n", encoding="utf-8")
    write_corpus(root / "folder", {"keep.md": "# Mine\n\nNot an index.\n"})
    return root


def snapshot(root: Path, skip: str) -> dict[str, bytes | None]:
    """Every path under `root` but the `skip` folder, with its bytes (None for a folder)."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel == skip or rel.startswith(skip + "/"):
            continue
        found[rel] = None if path.is_dir() else path.read_bytes()
    return found


def check(result: object, before: dict[str, bytes | None], sandbox: Path, skip: str) -> None:
    exit_code, exception, output = result.exit_code, result.exception, result.output  # type: ignore[attr-defined]
    assert exception is None or isinstance(exception, SystemExit), f"traceback: {exception!r}\n{output}"
    assert exit_code in (0, 1, 2), output
    if exit_code:
        assert output.strip() and "Traceback" not in output
    assert snapshot(sandbox, skip) == before


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=JUNK, options=ASK_OPTIONS, where=st.sampled_from(["index", "missing", "notes.txt", "folder"]))
def test_ask_answers_or_says_why(sandbox: Path, question: str, options: list[str], where: str) -> None:
    before = snapshot(sandbox, skip="index")
    index = sandbox / where
    result = CliRunner().invoke(ask, [question, *options, "--index", str(index)])
    check(result, before, sandbox, skip="index")
    if where != "index" and result.exit_code == 1:
        assert "index" in result.output.lower()


WRITE_ARGS = st.one_of(
    st.tuples(st.just("delete"), st.lists(JUNK, min_size=1, max_size=3)),
    st.tuples(
        st.just("index"),
        st.lists(st.sampled_from(["missing", "notes.txt", "folder", "corpus"]) | JUNK, min_size=1, max_size=2),
    ),
).map(lambda pair: [pair[0], *pair[1]])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    args=WRITE_ARGS,
    target=st.sampled_from(["scratch", "scratch/deeper", "notes.txt", "folder", "notes.txt/deeper"]),
    flags=st.lists(st.sampled_from(["--prune", "--rebuild", "--no-embed-title"]), max_size=2, unique=True),
)
def test_writes_succeed_or_say_why_and_touch_nothing_else(
    sandbox: Path, args: list[str], target: str, flags: list[str]
) -> None:
    """`index` and `delete` at any target: a new index in `scratch`, or a refusal that changes nothing."""
    command, *rest = args
    paths = [str(sandbox / arg) if arg in ("missing", "notes.txt", "folder", "corpus") else arg for arg in rest]
    before = snapshot(sandbox, skip="scratch")
    extra = flags if command == "index" else []
    result = CliRunner().invoke(main, [command, *paths, *extra, "--index", str(sandbox / target)])
    check(result, before, sandbox, skip="scratch")
    if not target.startswith("scratch"):
        assert result.exit_code != 0
    shutil.rmtree(sandbox / "scratch", ignore_errors=True)
