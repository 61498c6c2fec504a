"""Spelling out onnxruntime's fused skip + layer norm: the same numbers from plain operators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from index.onnx_graph import unfuse_skip_layer_norms

HIDDEN = 48


def _skip_layer_norm_model(
    path: Path, opset: int, bias: bool = True, beta: bool = True, outputs: tuple[str, ...] = ("y",)
) -> Path:
    rng = np.random.default_rng(7)
    weights = {
        "gamma": rng.normal(1, 0.2, HIDDEN),
        "beta": rng.normal(0, 0.2, HIDDEN),
        "bias": rng.normal(0, 1, HIDDEN),
    }
    inputs = ["x", "skip", "gamma", "beta" if beta else "", "bias" if bias else ""]
    node_outputs = ["y", "mean" if "mean" in outputs else "", "", "sum" if "sum" in outputs else ""]
    node = helper.make_node(
        "SkipLayerNormalization",
        inputs,
        node_outputs,
        domain="com.microsoft",
        name="norm",
        epsilon=1e-5,
    )
    shape = ["batch", "sequence", HIDDEN]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "skip")],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, [*shape[:2], 1 if n == "mean" else HIDDEN])
            for n in outputs
        ],
        [numpy_helper.from_array(w.astype(np.float32), n) for n, w in weights.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    )
    onnx.save(model, str(path))
    return path


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in session.run(None, feeds)]


def _feeds(seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.normal(0, 3, (2, 5, HIDDEN)).astype(np.float32) for n in ("x", "skip")}


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize(("bias", "beta"), [(True, True), (False, True), (True, False)])
def test_spelled_out_norm_computes_what_the_fused_one_does(tmp_path: Path, opset: int, bias: bool, beta: bool) -> None:
    fused = _skip_layer_norm_model(tmp_path / "fused.onnx", opset, bias, beta)
    plain = tmp_path / "plain.onnx"
    assert unfuse_skip_layer_norms(fused, plain) == 1
    onnx.checker.check_model(str(plain))
    assert "SkipLayerNormalization" not in {n.op_type for n in onnx.load(str(plain)).graph.node}
    feeds = _feeds()
    (want,), (got,) = _run(fused, feeds), _run(plain, feeds)
    assert got.shape == want.shape
    assert np.allclose(got, want, atol=1e-5)
    # and what it computes is a layer norm of input + skip (+ bias)
    model = onnx.load(str(fused))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    total = feeds["x"] + feeds["skip"] + (weights["bias"] if bias else 0)
    normed = (total - total.mean(-1, keepdims=True)) / np.sqrt(total.var(-1, keepdims=True) + 1e-5)
    assert np.allclose(got, normed * weights["gamma"] + (weights["beta"] if beta else 0), atol=1e-4)


def test_the_sum_output_is_kept_when_something_reads_it(tmp_path: Path) -> None:
    fused = _skip_layer_norm_model(tmp_path / "fused.onnx", 17, outputs=("y", "sum"))
    plain = tmp_path / "plain.onnx"
    assert unfuse_skip_layer_norms(fused, plain) == 1
    feeds = _feeds(5)
    want, got = _run(fused, feeds), _run(plain, feeds)
    assert all(np.allclose(g, w, atol=1e-5) for g, w in zip(got, want, strict=True))


def test_a_norm_whose_mean_is_read_stays_fused(tmp_path: Path) -> None:
    fused = _skip_layer_norm_model(tmp_path / "fused.onnx", 17, outputs=("y", "mean"))
    plain = tmp_path / "plain.onnx"
    assert unfuse_skip_layer_norms(fused, plain) == 0
    assert [n.op_type for n in onnx.load(str(plain)).graph.node] == ["SkipLayerNormalization"]
