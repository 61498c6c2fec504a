"""Small helpers for building test corpora."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from semsearch.data import NEWS, SQUAD_DEV

REPO_ROOT = Path(__file__).resolve().parent.parent

# The fields of a hit, in the CLI's --json output and the HTTP API alike.
HIT_FIELDS = {
    "rank", "score", "passage_id", "article_id", "title", "text", "date", "source", "url", "offsets", "highlights",
    "duplicates",
}  # fmt: skip


def write_corpus(folder: Path, files: dict[str, str | bytes]) -> Path:
    """Create a small corpus folder from {relative path: content}."""
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def write_beir(folder: Path, records: int) -> Path:
    """A small BEIR folder: the first `records` paragraphs of the shipped SQuAD dev set and their questions."""
    source = SQUAD_DEV
    folder.mkdir(parents=True, exist_ok=True)
    lines = source.joinpath("corpus.jsonl").read_text(encoding="utf-8").splitlines()[:records]
    ids = {json.loads(line)["_id"] for line in lines}
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    qrels = [row for row in source.joinpath("qrels.tsv").read_text().splitlines()[1:] if row.split("\t")[1] in ids]
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n", encoding="utf-8")
    wanted = {row.split("\t")[0] for row in qrels}
    queries = [
        line
        for line in source.joinpath("queries.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["_id"] in wanted
    ]
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    return folder


# Global Voices posts from the bundled corpus, as JSON records.
GV_RECORDS = [json.loads(line) for line in (NEWS / "globalvoices" / "articles.jsonl").read_text().splitlines()]


def jsonl(records: list[dict[str, object]]) -> str:
    return "\n".join(json.dumps(r) for r in records) + "\n"


def start_indexer(index: Path, args: list[str]) -> subprocess.Popen[bytes]:
    """`semsearch index ARGS` on `index` in its own process, with no SEMSEARCH_* settings but the index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}
    env["SEMSEARCH_INDEX"] = str(index)
    command = [str(Path(sys.executable).parent / "semsearch"), "index", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_semsearch(index: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`semsearch ARGS` (any command) on `index` in its own process, with no SEMSEARCH_* settings but the index
    and those in `env`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}
    environ.update(env or {}, SEMSEARCH_INDEX=str(index))
    command = [str(Path(sys.executable).parent / "semsearch"), *args]
    return subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
