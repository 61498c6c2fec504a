"""The ONNX backend: the same sentence-transformers weights exported offline to ONNX (optionally int8) and run
with onnxruntime; tokenised with the model's own tokenizer, mean-pooled and L2-normalised as the model does.

The export happens once per model fingerprint into the model cache (`SEMSEARCH_MODEL_CACHE`), under a lock,
written to a temporary name and renamed, so concurrent first uses and interrupted exports are harmless.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from secrets import token_hex
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from index.errors import ModelLoadError
from index.onnx_graph import unfuse_skip_layer_norms

Vectors = npt.NDArray[np.float32]
TokenIds = npt.NDArray[np.int64]
K = TypeVar("K")
ONNX_BACKENDS = ("onnx-fp32", "onnx-int8")
OPSET = 17
# How the export is made; a new recipe converts into a new folder. 2: transformer operators fused before int8.
# 3: the fused skip + layer norms spelled out again in plain operators (`index.onnx_graph`).
EXPORT_REVISION = 3
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def cached_model(model_path: str, fingerprint: str, backend: str, cache: Path) -> Path:
    """The ONNX file for this model and backend, exported into `cache` first if it is not there yet."""
    folder = cache / f"{fingerprint[:16]}-{backend}-r{EXPORT_REVISION}"
    target = folder / "model.onnx"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first export, then reuses it
        if not target.is_file():
            fused, unfused_norms = _export(model_path, folder, quantize=backend == "onnx-int8")
            (folder / "source.json").write_text(
                json.dumps(
                    {
                        "model": model_path,
                        "fingerprint": fingerprint,
                        "backend": backend,
                        "opset": OPSET,
                        "revision": EXPORT_REVISION,
                        "fused": fused,
                        "unfused_layer_norms": unfused_norms,
                    }
                )
            )
    return target


def _export(model_path: str, folder: Path, quantize: bool) -> tuple[bool, int]:
    """Trace the transformer to ONNX (dynamic batch and sequence axes), fuse its operators where onnxruntime
    can, quantise its weights to int8, then spell the fused layer norms out again (their kernel is slow); whether
    it was fused, and how many layer norms were spelled out."""
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    staging = folder / f"tmp-{token_hex(4)}"
    staging.mkdir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        model = AutoModel.from_pretrained(model_path, local_files_only=True, attn_implementation="eager").eval()
        example = tokenizer(["a short example", "another, somewhat longer example"], padding=True, return_tensors="pt")
        names = [n for n in _INPUTS if n in example]
        axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
        fp32 = staging / "model.fp32.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on the legacy exporter and on shape checks
            torch.onnx.export(
                _last_hidden_state(model, names),
                tuple(example[n] for n in names),
                str(fp32),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        result = _fuse(fp32, staging / "model.fused.onnx", model.config)
        fused = result != fp32
        if quantize:
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # Per-channel int8 weights: per-tensor scales lose too much of this model (mean cosine 0.95).
            source, result = result, staging / "model.int8.onnx"
            logging.disable(logging.WARNING)  # its advice to pre-process; that step fails on this graph
            handlers = list(logging.root.handlers)  # one of its modules calls logging.basicConfig on import
            try:
                quantize_dynamic(
                    str(source),
                    str(result),
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    # The fused operators are not in ONNX's shape inference: their outputs are float.
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
            finally:
                logging.disable(logging.NOTSET)
                logging.root.handlers[:] = handlers
        result, unfused_norms = _unfuse_norms(result, staging / "model.final.onnx")
        os.replace(result, folder / "model.onnx")
        return fused, unfused_norms
    except Exception as exc:
        raise ModelLoadError(f"Could not convert the model at {model_path} to ONNX: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fuse(source: Path, target: Path, config: Any) -> Path:
    """onnxruntime's transformer fusions for a BERT model: attention, skip + layer norm, bias + GELU and the
    embedding layer norm each become one operator (about 30% off one query's encoding on 2 cores). Any other
    model, or a graph they do not match, stays as exported."""
    if getattr(config, "model_type", None) != "bert":
        return source
    try:
        from onnxruntime.transformers import optimizer

        fused = optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=1,
        )
        if not fused.get_fused_operator_statistics().get("Attention"):
            return source
        fused.save_model_to_file(str(target))
    except Exception as exc:  # the fusions are an optimisation: the plain graph is still right
        logging.getLogger(__name__).warning("transformer fusions skipped for %s: %s", source, exc)
        return source
    return target


def _unfuse_norms(source: Path, target: Path) -> tuple[Path, int]:
    """The graph with its fused skip + layer norms spelled out (`index.onnx_graph`), and how many; like the
    fusions, an optimisation: if it fails, the fused graph is still right."""
    try:
        count = unfuse_skip_layer_norms(source, target)
    except Exception as exc:
        logging.getLogger(__name__).warning("layer norms left fused in %s: %s", source, exc)
        return source, 0
    return (target, count) if count else (source, 0)


def _last_hidden_state(model: Any, names: Sequence[str]) -> Any:
    """A module around `model` whose one output is the token embeddings (torch is imported only to export)."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    return LastHiddenState()


class OnnxEncoder:
    """Token embeddings from onnxruntime, mean-pooled over the attention mask and L2-normalised.

    One text runs on a session with `threads` intra-op threads (the lowest latency for one query). Many batches
    run on `threads` one-thread sessions side by side ("lanes"), each lane taking the next batch as soon as it
    is free: for passages that costs a quarter less CPU than one session splitting every operator across threads,
    and no lane waits for another. The lane sessions are made on first use; each holds its own copy of the
    weights (23 MB for int8 MiniLM).
    """

    def __init__(self, onnx_file: Path, model_path: str, max_seq_length: int, threads: int) -> None:
        from tokenizers import Tokenizer

        # The folder's tokenizer.json may carry its own truncation and fixed padding: truncate as the model does,
        # and pad here, per batch.
        self.tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.no_padding()
        self.pad_id = self.tokenizer.token_to_id(self._pad_token(model_path)) or 0
        self.onnx_file = onnx_file
        self.threads = max(1, threads)
        self.session = self._session(self.threads)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.dimension = int(self.session.get_outputs()[0].shape[-1])
        self._lanes: list[Any] = []
        self._lanes_lock = threading.Lock()

    def _session(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return ort.InferenceSession(str(self.onnx_file), sess_options=options, providers=["CPUExecutionProvider"])

    def _lane_sessions(self) -> list[Any]:
        """The one-thread sessions, made on first use (onnxruntime lets several threads run one session at once,
        so concurrent callers share them)."""
        with self._lanes_lock:
            if not self._lanes:
                self._lanes = [self._session(1) for _ in range(self.threads)]
            return self._lanes

    @staticmethod
    def _pad_token(model_path: str) -> str:
        path = Path(model_path) / "special_tokens_map.json"
        pad = json.loads(path.read_text()).get("pad_token", "[PAD]") if path.is_file() else "[PAD]"
        return str(pad["content"] if isinstance(pad, dict) else pad)

    def tokenize(self, texts: Sequence[str]) -> list[TokenIds]:
        """Each text's token ids, with the special tokens, truncated to the model's window (no offsets: unused)."""
        return [np.asarray(e.ids, dtype=np.int64) for e in self.tokenizer.encode_batch_fast(list(texts))]

    def encode(self, texts: Sequence[str]) -> Vectors:
        """One batch: normalised embeddings, one row per text."""
        return self.encode_ids(self.tokenize(texts))

    def encode_ids(self, batch: Sequence[TokenIds]) -> Vectors:
        """`encode` for texts already tokenised: one text on the multi-threaded session, more split by length
        across the lanes."""
        if len(batch) < 2 or self.threads < 2:
            return self._infer(self.session, self._feeds(batch))
        order = sorted(range(len(batch)), key=lambda n: len(batch[n]))
        size = -(-len(order) // self.threads)
        out = np.empty((len(batch), self.dimension), dtype=np.float32)

        def keep(part: list[int], vectors: Vectors) -> None:
            out[part] = vectors

        parts = [order[lo : lo + size] for lo in range(0, len(order), size)]
        self.encode_batches(((part, [batch[n] for n in part]) for part in parts), keep, lanes=len(parts))
        return out

    def encode_batches(
        self,
        batches: Iterable[tuple[K, Sequence[TokenIds]]],
        done: Callable[[K, Vectors], None],
        lanes: int | None = None,
    ) -> None:
        """Encode every batch and hand each result to `done` with its key, in the order they finish.

        Two batches or more run on the lanes (at most `lanes` of them): the calling thread is one lane and helper
        threads are the others; `batches` is read and `done` called under one lock, so neither needs to be
        thread-safe. The first error stops every lane and is raised here once all of them have stopped. A single
        batch (one passage of a small write) runs on the multi-threaded session instead, the fastest for it."""
        source = iter(batches)
        head = list(itertools.islice(source, 2))
        if len(head) < 2 or self.threads < 2:
            for key, batch in itertools.chain(head, source):
                done(key, self._infer(self.session, self._feeds(batch)))
            return
        source = itertools.chain(head, source)
        lock = threading.Lock()
        stop = threading.Event()
        failures: list[BaseException] = []

        def lane(session: Any) -> None:
            try:
                while not stop.is_set():
                    with lock:
                        item = next(source, None)
                    if item is None:
                        return
                    vectors = self._infer(session, self._feeds(item[1]))
                    with lock:
                        done(item[0], vectors)
            except BaseException as exc:  # handed to the calling thread, which raises it
                failures.append(exc)
                stop.set()

        first, *others = self._lane_sessions()[: max(2, lanes or self.threads)]
        helpers: list[threading.Thread] = []
        try:
            for session in others:
                helpers.append(threading.Thread(target=lane, args=(session,), name="semsearch-encode", daemon=True))
                helpers[-1].start()
            lane(first)
        finally:
            stop.set()  # the others finish the batch they hold, then stop
            for helper in helpers:
                if helper.is_alive():
                    helper.join()
        if failures:
            raise failures[0]

    def _feeds(self, batch: Sequence[TokenIds]) -> dict[str, npt.NDArray[np.int64]]:
        """The model's inputs for these rows: padded to the longest, with the mask saying which tokens are real."""
        width = max(len(ids) for ids in batch)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return feeds

    def _infer(self, session: Any, feeds: dict[str, npt.NDArray[np.int64]]) -> Vectors:
        hidden = session.run(None, feeds)[0]
        weights = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return np.ascontiguousarray(pooled, dtype=np.float32)


def check_exportable(model_path: str) -> str | None:
    """Why this model folder cannot run on the ONNX backend (it must be transformer -> mean pooling ->
    normalise), or None when it can."""
    root = Path(model_path)
    try:
        modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((root / "modules.json").read_text())]
        pooling = json.loads((root / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"cannot read its modules.json or pooling config ({exc})"
    if modules != ["Transformer", "Pooling", "Normalize"]:
        return f"its modules are {modules}, not Transformer, Pooling, Normalize"
    if not pooling.get("pooling_mode_mean_tokens") or any(
        pooling.get(k)
        for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
    ):
        return "it does not pool by the mean of its tokens"
    if not (root / "tokenizer.json").is_file():
        return "it has no tokenizer.json"
    return None
