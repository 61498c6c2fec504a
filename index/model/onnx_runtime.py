"""The ONNX runtime: a model made by `semsearch.index.model.export` run with onnxruntime, tokenised with the
model's own tokenizer, mean-pooled and L2-normalised as the model does."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from semsearch.index.model.export.onnx_export import scaled_per_call

Vectors = npt.NDArray[np.float32]
TokenIds = npt.NDArray[np.int64]
K = TypeVar("K")


class OnnxEncoder:
    """Token embeddings from onnxruntime, mean-pooled over the attention mask and L2-normalised.

    One text runs on a session with `query_threads` intra-op threads (every thread by default). Many batches
    run on `lanes` sessions of `lane_threads` threads each (by default one one-thread lane per thread) side by
    side, each lane taking the next batch as soon as it is free, so no lane waits for another. A few texts at
    once (a micro-batch of queries) are split across the lanes, or with `split_queries` off run as one call on
    the query session. The lane sessions are made on first use; each holds its own copy of the weights (23 MB
    for int8 MiniLM). Which layout is fastest depends on the machine: the planner measures it
    (`semsearch.index.model.planning`).

    A model that quantises its activations per call (int8) runs one text per call, wherever the batch came from,
    so that a text's vector never depends on the texts beside it (a query on its own, in a micro-batch, or a
    passage in an index build or a later write).
    """

    def __init__(
        self,
        onnx_file: Path,
        model_path: str,
        max_seq_length: int,
        threads: int,
        lanes: int | None = None,
        lane_threads: int | None = None,
        query_threads: int | None = None,
        split_queries: bool = True,
    ) -> None:
        from tokenizers import Tokenizer

        # The folder's tokenizer.json may carry its own truncation and fixed padding: truncate as the model does,
        # and pad here, per batch.
        self.tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.no_padding()
        self.pad_id = self.tokenizer.token_to_id(self._pad_token(model_path)) or 0
        self.onnx_file = onnx_file
        self.threads = max(1, threads)
        self.lanes = max(1, min(lanes or self.threads, self.threads))
        self.lane_threads = max(1, lane_threads or self.threads // self.lanes)
        self.query_threads = max(1, min(query_threads or self.threads, self.threads))
        self.split_queries = split_queries
        self.one_per_call = scaled_per_call(onnx_file)
        self.session = self._session(self.query_threads)
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
        """The lanes' sessions, made on first use (onnxruntime lets several threads run one session at once, so
        concurrent callers share them); one lane as wide as the query session is that session."""
        with self._lanes_lock:
            if not self._lanes:
                if self.lanes == 1 and self.lane_threads == self.query_threads:
                    self._lanes = [self.session]
                else:
                    self._lanes = [self._session(self.lane_threads) for _ in range(self.lanes)]
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
        """`encode` for texts already tokenised: one text on the query session, more split by length across the
        lanes (or, with `split_queries` off or one lane, one call on the query session)."""
        if len(batch) < 2 or self.lanes < 2 or not self.split_queries:
            return self._run(self.session, batch)
        order = sorted(range(len(batch)), key=lambda n: len(batch[n]))
        size = -(-len(order) // self.lanes)
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
        batch (one passage of a small write) runs on the query session instead, the fastest for one text; with
        one lane, every batch runs on it in turn."""
        source = iter(batches)
        head = list(itertools.islice(source, 2))
        if len(head) < 2 or self.lanes < 2:
            session = self.session if len(head) < 2 else self._lane_sessions()[0]
            for key, batch in itertools.chain(head, source):
                done(key, self._run(session, batch))
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
                    vectors = self._run(session, item[1])
                    with lock:
                        done(item[0], vectors)
            except BaseException as exc:  # handed to the calling thread, which raises it
                failures.append(exc)
                stop.set()

        first, *others = self._lane_sessions()[: max(2, lanes or self.lanes)]
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

    def feeds(self, batch: Sequence[TokenIds]) -> dict[str, npt.NDArray[np.int64]]:
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

    def _run(self, session: Any, batch: Sequence[TokenIds]) -> Vectors:
        """The vectors of `batch` from `session`: one call, or one call per text for a model scaled per call."""
        if self.one_per_call and len(batch) > 1:
            return np.concatenate([self._infer(session, self.feeds([ids])) for ids in batch])
        return self._infer(session, self.feeds(batch))

    def _infer(self, session: Any, feeds: dict[str, npt.NDArray[np.int64]]) -> Vectors:
        return mean_pool(session.run(None, feeds)[0], feeds["attention_mask"])


def mean_pool(hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]) -> Vectors:
    """Token embeddings averaged over the real tokens of each row, then L2-normalised, as the model pools."""
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return np.ascontiguousarray(pooled, dtype=np.float32)
