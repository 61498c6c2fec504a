"""Indexes that benchmarks build through the real pipeline, cached by what went into them."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import semsearch.index as index_package
from semsearch.index.model.embedder import Embedder, model_info
from semsearch.index.storage.generations import CURRENT
from semsearch.index.storage.manifest import FORMAT_VERSION
from semsearch.index.writing.builder import build_index
from semsearch.settings import Settings

WORK_DIR = Path("var") / "bench"  # benchmarks run from a checkout: relative to it


def corpus_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            digest.update(file.relative_to(root if root.is_dir() else root.parent).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def code_digest() -> str:
    """sha256 of the `semsearch.index` package's source, every sub-package included: a change to how passages
    are split, embedded or stored builds afresh."""
    digest = hashlib.sha256()
    root = Path(index_package.__file__).parent
    for file in sorted(root.rglob("*.py")):
        digest.update(file.relative_to(root).as_posix().encode())
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
