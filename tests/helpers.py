"""Small helpers for building test corpora."""

from __future__ import annotations

from pathlib import Path

# The fields of a hit, in the CLI's --json output and the HTTP API alike.
HIT_FIELDS = {"rank", "score", "passage_id", "article_id", "title", "text", "date", "source", "url", "offsets"}


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
