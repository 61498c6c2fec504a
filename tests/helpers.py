"""Small helpers for building test corpora."""

from __future__ import annotations

from pathlib import Path


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
