"""The command line: `semsearch index|ask|config` and the `ask` shortcut. A thin shell over index/ and search/."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from semsearch.errors import (
    ConfigError,
    EmptyQueryError,
    InputPathError,
    InvalidArticleError,
    InvalidFilterError,
    SemsearchError,
)
from semsearch.params import SEARCH_PARAMS, Param
from semsearch.settings import LOG_FORMATS, Settings, describe

F = TypeVar("F", bound=Callable[..., Any])
_USAGE_ERRORS = (EmptyQueryError, ConfigError, InputPathError, InvalidFilterError, InvalidArticleError)
EXAMPLE_QUESTION = "energy cooperation in Central Asia"


def configure_threads(settings: Settings) -> None:
    """Fix thread pools before numpy, torch and FAISS start theirs: BLAS and OpenMP (FAISS) at one, torch and
    onnxruntime at `threads` (set where the model loads).

    A search, even a batch of them, is too small to split across FAISS threads, and FAISS's idle OpenMP
    threads spinning beside the model's would slow every search down.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import faiss

    faiss.omp_set_num_threads(1)


def load_settings(**overrides: Any) -> Settings:
    settings = Settings.from_env(os.environ, **overrides)
    configure_threads(settings)
    return settings


def handle_errors(func: F) -> F:
    """Turn a SemsearchError into one line on stderr and a non-zero exit; others keep their traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SemsearchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2 if isinstance(exc, _USAGE_ERRORS) else 1)

    return wrapper  # type: ignore[return-value]


index_option = click.option(
    "--index",
    "index_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Index directory (default: $SEMSEARCH_INDEX, else semsearch/index in the user's data folder).",
)


PLUGIN_GROUP = "semsearch.commands"
ARGV_KEY = "semsearch.argv"


class _Commands(click.Group):
    """Built-in commands plus those other installed packages register under the `semsearch.commands`
    entry point (e.g. `bench` from benchmarks/), loaded only when named or listed."""

    def _plugins(self) -> dict[str, Any]:
        from importlib.metadata import entry_points

        return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        raw = list(args)
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta.setdefault(ARGV_KEY, raw)  # the command line as typed, for records of a run
        return ctx

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in (plugins := self._plugins()):
            loaded = plugins[cmd_name].load()
            command = loaded if isinstance(loaded, click.Command) else None
        return command


@click.group(cls=_Commands, help="Semantic search over news articles.")
def main() -> None:
    pass


@main.command(
    "index",
    help="Index articles from files or folders (.txt .md .jsonl .json .csv .html). On an existing index, "
    "adds new articles and re-indexes changed ones; unchanged passages are not embedded again.",
)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@index_option
@click.option("--demo", is_flag=True, help="Index the bundled news corpus (408 articles) as well as any PATHS.")
@click.option("--embed-title/--no-embed-title", default=None, help="Embed 'title + paragraph' or the paragraph alone.")
@click.option("--prune", is_flag=True, help="Also remove indexed articles that are not under PATHS.")
@click.option("--rebuild", is_flag=True, help="Start from an empty index (needed after changing model or settings).")
@handle_errors
def index_command(
    paths: tuple[Path, ...], index_dir: Path | None, demo: bool, embed_title: bool | None, prune: bool, rebuild: bool
) -> None:
    if demo:
        from semsearch.data import NEWS

        paths = (NEWS, *paths)
    if not paths:
        raise click.UsageError("give the files or folders to index, or --demo for the bundled news corpus")
    settings = load_settings(index=index_dir, embed_title=embed_title)
    from tqdm import tqdm

    from semsearch.index.writing.builder import build_index

    bars: list[Any] = []

    def progress(total: int) -> Callable[[int], None]:
        bar = tqdm(total=total, unit="passage", desc="Embedding", file=sys.stderr, dynamic_ncols=True)
        bars.append(bar)

        def update(n: int) -> None:
            bar.update(n)

        return update

    click.echo(f"Indexing {', '.join(map(str, paths))} into {settings.index}", err=True)
    try:
        summary = build_index(list(paths), settings, progress=progress, prune=prune, rebuild=rebuild)
    finally:
        for bar in bars:
            bar.close()
    for warning in summary.warnings:
        click.echo(f"warning: {warning}", err=True)
    for skipped in summary.skipped:
        click.echo(f"skipped: {skipped.where}: {skipped.reason}", err=True)
    click.echo(describe_write(summary) + f"; {len(summary.skipped)} skipped, {len(summary.warnings)} warnings.")


def describe_write(summary: Any) -> str:
    """One line on what a write did (a BuildSummary)."""
    if summary.generation is None:
        return (
            f"Up to date: {summary.unchanged} articles unchanged, nothing written. Index: {summary.index} "
            f"({summary.articles} articles, {summary.passages} passages)"
        )
    kind = summary.vector_index.type if summary.vector_index else "?"
    rate = f" at {summary.passages_per_second:.1f} passages/s" if summary.embedded else ""
    merged = sum(len(m.merged) for m in summary.merges)
    merges = f"; then merged {merged} segments in {len(summary.merges)} merges" if summary.merges else ""
    return (
        f"Added {summary.added}, updated {summary.updated}, removed {summary.removed}, "
        f"unchanged {summary.unchanged} articles; embedded {summary.embedded} passages{rate}, "
        f"reused {summary.reused}. Index: {summary.index} ({summary.articles} articles, {summary.passages} "
        f"passages, {kind}, generation {summary.generation}, {summary.seconds:.1f} s){merges}"
    )


@main.command(
    "optimize",
    help="Merge the index into one segment without deleted passages (from the stored vectors: nothing is "
    "embedded again). Searches, and a server on the index, go on meanwhile.",
)
@index_option
@handle_errors
def optimize_command(index_dir: Path | None) -> None:
    settings = load_settings(index=index_dir)
    from semsearch.index.storage.store import open_index
    from semsearch.index.writing.merging import optimize

    started = time.perf_counter()
    reports = optimize(settings)
    index = open_index(settings.index, verify=False)
    try:
        segments, passages = len(index.segments), index.size
    finally:
        index.close()
    if not reports:
        click.echo(f"Already one segment without deleted passages: {settings.index} ({passages} passages)")
        return
    expunged = sum(r.expunged for r in reports)
    click.echo(
        f"Merged {sum(len(r.merged) for r in reports)} segments into {segments}, dropping {expunged} deleted "
        f"passages. Index: {settings.index} ({passages} passages, {time.perf_counter() - started:.1f} s)"
    )


@main.command("delete", help="Remove articles from the index by id (all must exist, or nothing is removed).")
@click.argument("ids", nargs=-1, required=True)
@index_option
@handle_errors
def delete_command(ids: tuple[str, ...], index_dir: Path | None) -> None:
    settings = load_settings(index=index_dir)
    from semsearch.index.writing.builder import delete_articles

    click.echo(describe_write(delete_articles(settings, list(ids))))


def highlighted(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` with the matched words in bold (click drops the styling when output is not a terminal)."""
    parts, last = [], 0
    for start, end in spans:
        parts += [text[last:start], click.style(text[start:end], bold=True)]
        last = end
    parts.append(text[last:])
    return "".join(parts)


def param_type(param: Param[Any]) -> click.ParamType[Any] | None:
    """The click type of a search parameter: its choices, its range or its pattern."""
    if param.choices:
        return click.Choice(param.choices)
    if param.pattern is not None:
        return Matching(param.pattern)
    if param.low is None or param.high is None:
        return None
    if param.kind is int:
        return click.IntRange(int(param.low), int(param.high))
    return FiniteRange(param.low, param.high)


class FiniteRange(click.FloatRange):
    """click's FloatRange, which lets `nan` through (no comparison with NaN fails), without NaN."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number in the range {self._describe_range()}.", param, ctx)
        return number


class Matching(click.ParamType[str]):
    """Text that matches `pattern` as a whole, as HTTP's pydantic checks it; empty text is left out, as there."""

    name = "text"

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled = re.compile(pattern)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if text and self._compiled.fullmatch(text) is None:
            self.fail(f"{text!r} does not match {self.pattern}", param, ctx)
        return text

    def __repr__(self) -> str:
        return f"Matching({self.pattern!r})"


def search_options(func: F) -> F:
    """`ask`'s flags for the search parameters, one per row of `semsearch.params`."""
    for param in reversed(SEARCH_PARAMS):
        func = click.option(
            param.option,
            param.name,
            type=param_type(param),
            default=param.cli_default,
            show_default=param.cli_default is not None,
            metavar=param.metavar,
            help=param.cli_help,
        )(func)
    return func


RELATED_PARAMS = ("k", "date_from", "date_to", "source")


def ask_related(
    question: str | None,
    article_id: str | None,
    k: int,
    index_dir: Path | None,
    filters: tuple[str | None, str | None, str | None],
    as_json: bool,
) -> None:
    """`ask --related ID`: the articles closest to ID as a whole, printed as `ask` prints hits."""
    if article_id is None:
        raise click.UsageError("Give a QUESTION, or --related ID for the articles closest to that article")
    if question is not None:
        raise click.UsageError("Give a QUESTION or --related ID, not both")
    ctx = click.get_current_context()
    for param in SEARCH_PARAMS:
        if param.name not in RELATED_PARAMS and ctx.get_parameter_source(param.name) != ParameterSource.DEFAULT:
            raise click.UsageError(f"{param.option} does not apply to --related")
    settings = load_settings(index=index_dir)
    from semsearch.search.filters import Filters
    from semsearch.search.searcher import Searcher

    checked = Filters.parse(*filters)  # a bad filter fails before any model is loaded
    searcher = Searcher.open(settings)
    try:
        found = searcher.related(article_id, k, checked)
    finally:
        searcher.close()
    if as_json:
        click.echo(json.dumps([asdict(r) for r in found], ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("No related articles found.")
    for r in found:
        click.echo(f"{r.rank}. [{r.score:.3f}] {click.style(r.title or r.article_id, bold=True)}")
        details = " | ".join(x for x in (r.date, r.source, r.article_id) if x)
        if r.duplicates:
            details += f" | also in: {', '.join(r.duplicates)}"
        click.echo(textwrap.indent(details, "   "))


@click.command("ask", help="Ask a question; prints the closest passages (--related ID: the closest articles).")
@click.argument("question", required=False)
@click.option("--related", "related_to", metavar="ID", help="Print the articles closest to this article instead.")
@search_options
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print the hits as a JSON list.")
@handle_errors
def ask(
    question: str | None,
    k: int,
    index_dir: Path | None,
    offset: int | None,
    sort: str | None,
    recency_half_life: float | None,
    now: str | None,
    facets: str | None,
    mode: str | None,
    fusion: str | None,
    weight: float | None,
    per_article: int | None,
    date_from: str | None,
    date_to: str | None,
    source: str | None,
    article_id: str | None,
    as_json: bool,
    related_to: str | None,
) -> None:
    if related_to is not None or question is None:
        ask_related(question, related_to, k, index_dir, (date_from, date_to, source), as_json)
        return
    settings = load_settings(index=index_dir)
    from semsearch.search.facets import Facets, parse_fields
    from semsearch.search.options import request_options
    from semsearch.search.searcher import Searcher, SearchOptions, clean_query

    clean_query(question)  # an empty question or a bad value fails before any model is loaded
    options = request_options(
        SearchOptions.from_settings(settings),
        offset=offset,
        sort=sort,
        recency_half_life=recency_half_life,
        now=now,
        mode=mode,
        fusion=fusion,
        weight=weight,
        per_article=per_article,
        date_from=date_from,
        date_to=date_to,
        source=source,
        article_id=article_id,
    )
    searcher = Searcher.open(settings)
    try:
        counts: Facets | None = None
        if facets:
            hits, counts = searcher.search_counted(question, k, options, parse_fields(facets))
        else:
            hits = searcher.search(question, k, options)
    finally:
        searcher.close()
    if as_json:
        found = [asdict(hit) for hit in hits]
        shown: object = {"hits": found, "facets": asdict(counts)} if counts else found
        click.echo(json.dumps(shown, ensure_ascii=False, indent=2))
        return
    if not hits:
        click.echo("No passages found.")
    width = min(100, shutil.get_terminal_size((100, 20)).columns)
    for hit in hits:
        title = click.style(hit.title or hit.article_id, bold=True)
        click.echo(f"{hit.rank}. [{hit.score:.3f}] {title}")
        details = " | ".join(x for x in (hit.date, hit.source, hit.article_id) if x)
        if hit.duplicates:
            details += f" | also in: {', '.join(hit.duplicates)}"
        click.echo(textwrap.indent(details, "   "))
        body = textwrap.fill(" ".join(highlighted(hit.text, hit.highlights).split()), width=width - 3)
        click.echo(textwrap.indent(body, "   ") + "\n")
    if counts:
        click.echo(f"{counts.articles} matching articles")
        for name, values in (("source", counts.source), ("month", counts.month)):
            if values is not None:
                click.echo(f"  by {name}: " + (", ".join(f"{v.value} ({v.count})" for v in values) or "none"))


main.add_command(ask)


CONFIG_MARKDOWN_HEAD = """# Configuration

Generated from the settings' own help text by `semsearch config --markdown > docs/configuration.md`;
`tests/test_docs.py` fails when this file and the command's output differ.

Every setting is an environment variable, read once when a command, the server or `Engine.open` starts.
`semsearch config` prints each one with its current value. On the command line, `--index` overrides
`SEMSEARCH_INDEX` and `semsearch index --embed-title/--no-embed-title` overrides `SEMSEARCH_EMBED_TITLE`.
Booleans take `true`/`false` (or `1`/`0`, `yes`/`no`, `on`/`off`), lists are comma-separated, and a value that
is not allowed stops the command with a message naming the variable, the value and what is allowed.
`SEMSEARCH_EMBED_TITLE`, `SEMSEARCH_LEXICAL_TITLE` and `SEMSEARCH_MIN_PASSAGE_CHARS` are recorded in the index:
an update under other values is refused until `semsearch index PATH --rebuild` (see [indexing.md](indexing.md)).

"""


def settings_markdown() -> str:
    """docs/configuration.md: the fixed head, then one table row per setting (variable, default, help)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    def default_cell(default: str) -> str:
        if not default:
            return "(empty)"
        if default in ("True", "False"):
            default = default.lower()  # as the variable is written
        return cell(default) if " " in default or default.startswith("(") else f"`{cell(default)}`"

    rows = [f"| `{key}` | {default_cell(default)} | {cell(help_text)} |" for key, default, help_text in describe()]
    return CONFIG_MARKDOWN_HEAD + "\n".join(["| variable | default | meaning |", "| --- | --- | --- |", *rows]) + "\n"


@main.command("config", help="Show every setting, its environment variable, default and current value.")
@click.option("--markdown", is_flag=True, help="Print the settings as a Markdown table (docs/configuration.md).")
@handle_errors
def config(markdown: bool) -> None:
    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    current = Settings.from_env(os.environ)
    for key, default, help_text in describe():
        value = getattr(current, key.removeprefix("SEMSEARCH_").lower())
        if isinstance(value, tuple):
            value = ",".join(value)
        if key == "SEMSEARCH_API_TOKEN":
            value = "(set)" if value else "(empty: HTTP writes refused)"
        click.echo(f"{key}={value}\n    {help_text} (default: {default})")
    click.echo(f"\nPlan on this machine: {plan_line(current)}")


def plan_line(settings: Settings) -> str:
    """How the configured model runs here (the backend and plan), without measuring anything."""
    from semsearch.errors import ModelLoadError
    from semsearch.index.model.embedder import plan_status

    try:
        return plan_status(settings).describe()
    except ModelLoadError as exc:
        return f"unknown ({exc})"


@main.command(
    "serve",
    help="Serve the HTTP API, the search page and /metrics. SIGTERM or Ctrl+C finishes the requests and any write "
    "in progress, then exits 0.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@index_option
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="plain: text lines (requests on stdout, as uvicorn's); json: one JSON object a line, all on stderr "
    "(default: $SEMSEARCH_LOG_FORMAT, else plain).",
)
@click.option(
    "--log-queries",
    is_flag=True,
    default=None,
    help="Put each search's question in the request log (left out by default).",
)
@handle_errors
def serve(host: str, port: int, index_dir: Path | None, log_format: str | None, log_queries: bool | None) -> None:
    from semsearch.api.server import bind, run

    sock = bind(host, port)  # before anything slow: a port in use fails at once
    try:
        settings = load_settings(index=index_dir, log_format=log_format, log_queries=log_queries)
    except BaseException:
        sock.close()
        raise
    run(settings, sock)
