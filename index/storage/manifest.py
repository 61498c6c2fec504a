"""The manifest of an index generation: what built it, what it holds, and checksums of its files."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from semsearch.errors import CorruptIndexError, IndexMismatchError
from semsearch.index.storage.commits import segment_refs

FORMAT_VERSION = 4


class ModelIdentity(Protocol):
    """What storage needs to know of a model to refuse a mismatch (the model layer's `ModelInfo` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def backend(self) -> str: ...


MANIFEST = "manifest.json"
_VERSIONED = (
    "semsearch",
    "faiss-cpu",
    "numpy",
    "torch",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "onnxruntime",
    "PyStemmer",
)


@dataclass(frozen=True)
class Manifest:
    format_version: int
    model: dict[str, str | int | None]
    dimension: int
    max_tokens: int
    metric: str
    index_type: str
    counts: dict[str, int]
    built_at: str
    build_seconds: float
    settings: dict[str, Any]
    versions: dict[str, str]
    vector_index: dict[str, Any] = field(default_factory=lambda: {"type": "IDMap2,Flat"})
    # Passage ids are never reused: the next new passage gets this one.
    next_passage_id: int = 0
    # What the write that made this generation did: articles added/updated/removed/unchanged, passages
    # embedded and reused.
    changes: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    # The live segments, oldest first: {"name", "checksum" (of its segment.json), "passages", "articles",
    # "deleted": article rows tombstoned in it}; see `commits.SegmentRef`.
    segments: list[dict[str, Any]] = field(default_factory=list)
    # The merge that made this commit, or the last one before it: {"at", "merged", "passages", "seconds"}.
    last_merge: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            manifest = cls(**data)
            manifest._check()
            return manifest
        except FileNotFoundError:
            raise CorruptIndexError(f"The index file {path} is missing; rebuild with `semsearch index`") from None
        except (OSError, ValueError, TypeError, CorruptIndexError) as exc:
            raise CorruptIndexError(
                f"The index file {path} is unreadable ({exc}); rebuild with `semsearch index`"
            ) from None

    def _check(self) -> None:
        """Every field of the kind loading relies on (a manifest is not covered by a checksum of its own)."""
        for name, kind in _KINDS.items():
            value = getattr(self, name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise TypeError(f"{name} is {value!r}, not {' or '.join(k.__name__ for k in kind)}")
        for key in ("articles", "passages"):
            if not isinstance(self.counts.get(key), int):
                raise TypeError(f"counts.{key} is {self.counts.get(key)!r}, not a number")
        if not isinstance(self.vector_index.get("type"), str):
            raise TypeError(f"vector_index.type is {self.vector_index.get('type')!r}, not a string")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.files.items()):
            raise TypeError("files holds a name or checksum that is not a string")
        segment_refs(self.segments)  # each entry as a commit writes it (CorruptIndexError says which is not)


_KINDS: dict[str, tuple[type, ...]] = {
    "format_version": (int,),
    "model": (dict,),
    "dimension": (int,),
    "max_tokens": (int,),
    "metric": (str,),
    "index_type": (str,),
    "counts": (dict,),
    "built_at": (str,),
    "build_seconds": (int, float),
    "settings": (dict,),
    "versions": (dict,),
    "vector_index": (dict,),
    "next_passage_id": (int,),
    "changes": (dict,),
    "files": (dict,),
    "segments": (list,),
    "last_merge": (dict,),
}


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model(manifest: Manifest, info: ModelIdentity, where: Path) -> None:
    """Refuse to query an index with a model other than the one that built it."""
    built = manifest.model
    if built.get("fingerprint") != info.fingerprint or built.get("backend") != info.backend:
        raise IndexMismatchError(
            f"The index at {where} was built with model {built.get('name')} ({built.get('backend')}, "
            f"fingerprint {str(built.get('fingerprint'))[:12]}), but the configured model is {info.name} "
            f"({info.backend}, fingerprint {info.fingerprint[:12]}). Set SEMSEARCH_MODEL={built.get('path')} "
            "or rebuild the index with `semsearch index PATH`."
        )


def check_dimension(manifest: Manifest, dimension: int, where: Path) -> None:
    if manifest.dimension != dimension:
        raise IndexMismatchError(
            f"The index at {where} holds {manifest.dimension}-dimensional vectors but the model makes "
            f"{dimension}-dimensional ones; rebuild the index with `semsearch index PATH`."
        )


def check_format(manifest: Manifest, where: Path) -> None:
    if manifest.format_version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"The index at {where} has format version {manifest.format_version}; this semsearch reads "
            f"version {FORMAT_VERSION}. Rebuild it with `semsearch index PATH`."
        )
