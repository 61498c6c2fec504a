"""Indexes that benchmarks build through the real pipeline, cached by what went into them."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import index as index_package
from index.builder import build_index
from index.embedder import Embedder, model_info
from index.generations import CURRENT
from index.manifest import FORMAT_VERSION
from index.settings import REPO_ROOT, Settings

WORK_DIR = REPO_ROOT / "var" / "bench"


def corpus_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            digest.update(file.relative_to(root if root.is_dir() else root.parent).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def code_digest() -> str:
    """sha256 of the `index` package's source: a change to how passages are split or embedded builds afresh."""
    digest = hashlib.sha256()
    for file in sorted(Path(index_package.__file__).parent.glob("*.py")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def cached_index(
    name: str, paths: Sequence[Path], settings: Settings, work_dir: Path, embedder: Embedder | None = None
) -> Settings:
    """Settings pointing at an index of `paths`, built by `build_index` unless the same one exists.

    The cache key covers the corpus bytes, the model's fingerprint and backend, the build settings, the index
    format and the indexing code, so a changed corpus, model, setting, format or encoder builds a fresh index.
    """
    info = embedder.info if embedder else model_info(settings)
    key = hashlib.sha256(
        "|".join(
            [
                corpus_digest(paths),
                info.fingerprint,
                info.backend,
                str(settings.embed_title),
                str(settings.lexical_title),
                str(settings.min_passage_chars),
                str(settings.ann_threshold),
                f"format {FORMAT_VERSION}",
                code_digest(),
            ]
        ).encode()
    ).hexdigest()[:16]
    target = settings.replace(index=work_dir / f"{name}-{key}")
    if (target.index / CURRENT).is_file():
        print(f"Reusing the {name} index at {target.index}", file=sys.stderr)
        return target
    print(f"Building the {name} index at {target.index} (once; later runs reuse it)", file=sys.stderr)
    build_index(list(paths), target, embedder=embedder)
    return target
