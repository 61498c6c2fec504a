"""Spelling out onnxruntime's fused skip + layer norm: the same numbers from plain operators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from semsearch.index.model.export.graph import unfuse_skip_layer_norms

HIDDEN = 48
SHAPE = ["batch", "sequence", HIDDEN]


def _norm(
    name: str,
    x: str,
    skip: str,
    outputs: list[str],
    bias: bool = True,
    beta: bool = True,
    epsilon: float | None = 1e-5,
) -> onnx.NodeProto:
    inputs = [x, skip, "gamma", "beta" if beta else "", "bias" if bias else ""]
    attributes = {} if epsilon is None else {"epsilon": epsilon}
    return helper.make_node("SkipLayerNormalization", inputs, outputs, domain="com.microsoft", name=name, **attributes)


def _model(path: Path, nodes: list[onnx.NodeProto], outputs: dict[str, int], opset: int = 17) -> Path:
    """A graph over inputs x and skip with the given nodes; `outputs` maps each graph output to its last axis."""
    rng = np.random.default_rng(7)
    weights = {
        "gamma": rng.normal(1, 0.2, HIDDEN),
        "beta": rng.normal(0, 0.2, HIDDEN),
        "bias": rng.normal(0, 1, HIDDEN),
    }
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPE) for n in ("x", "skip")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [*SHAPE[:2], last]) for n, last in outputs.items()],
        [numpy_helper.from_array(w.astype(np.float32), n) for n, w in weights.items()],
    )
    ops = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    onnx.save(helper.make_model(graph, opset_imports=ops), str(path))
    return path


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in session.run(None, feeds)]


def _feeds(seed: int, scale: float = 3.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.normal(0, scale, (2, 5, HIDDEN)).astype(np.float32) for n in ("x", "skip")}


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def _spelled_out(fused: Path, expected: int) -> Path:
    plain = fused.with_name("plain.onnx")
    assert unfuse_skip_layer_norms(fused, plain) == expected
    assert "SkipLayerNormalization" not in {n.op_type for n in onnx.load(str(plain)).graph.node}
    return plain


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize(("bias", "beta"), [(True, True), (False, True), (True, False), (False, False)])
def test_spelled_out_norm_computes_what_the_fused_one_does(tmp_path: Path, opset: int, bias: bool, beta: bool) -> None:
    fused = _model(tmp_path / "fused.onnx", [_norm("norm", "x", "skip", ["y"], bias, beta)], {"y": HIDDEN}, opset)
    plain = _spelled_out(fused, 1)
    feeds = _feeds(3)
    (want,), (got,) = _run(fused, feeds), _run(plain, feeds)
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-5)
    w = _weights(fused)
    total = feeds["x"] + feeds["skip"] + (w["bias"] if bias else 0)
    normed = (total - total.mean(-1, keepdims=True)) / np.sqrt(total.var(-1, keepdims=True) + 1e-5)
    assert np.allclose(got, normed * w["gamma"] + (w["beta"] if beta else 0), atol=1e-4)


@pytest.mark.parametrize("epsilon", [0.5, None])
def test_epsilon_is_the_nodes_or_the_ops_default(tmp_path: Path, epsilon: float | None) -> None:
    """Inputs with a row variance near 1e-6, where epsilon 0.5 (or onnxruntime's default 1e-12) shows."""
    node = _norm("norm", "x", "skip", ["y"], bias=False, epsilon=epsilon)
    fused = _model(tmp_path / "fused.onnx", [node], {"y": HIDDEN})
    plain = _spelled_out(fused, 1)
    feeds = _feeds(4, scale=1e-3)
    (want,), (got,) = _run(fused, feeds), _run(plain, feeds)
    w = _weights(fused)
    total = (feeds["x"] + feeds["skip"]).astype(np.float64)
    variance = total.var(-1, keepdims=True)
    normed = (total - total.mean(-1, keepdims=True)) / np.sqrt(variance + (1e-12 if epsilon is None else epsilon))
    assert np.allclose(got, normed * w["gamma"] + w["beta"], rtol=1e-3, atol=1e-4)
    assert np.allclose(got, want, rtol=1e-3, atol=1e-4)


def test_two_norms_in_a_chain_and_a_sum_read_downstream(tmp_path: Path) -> None:
    nodes = [
        _norm("", "x", "skip", ["y1", "", "", "sum1"]),  # unnamed, and its sum feeds the next norm
        _norm("", "y1", "sum1", ["y2", "", "", "sum2"], bias=False),
    ]
    fused = _model(tmp_path / "fused.onnx", nodes, {"y2": HIDDEN, "sum2": HIDDEN})
    plain = _spelled_out(fused, 2)  # the model checker inside refuses duplicate names or a broken order
    feeds = _feeds(5)
    want, got = _run(fused, feeds), _run(plain, feeds)
    assert all(np.allclose(g, w, atol=1e-5) for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize("statistic", ["mean", "inv_std"])
def test_a_norm_whose_statistics_are_read_stays_fused(tmp_path: Path, statistic: str) -> None:
    outputs = ["y", "mean" if statistic == "mean" else "", "inv_std" if statistic == "inv_std" else ""]
    fused = _model(tmp_path / "fused.onnx", [_norm("norm", "x", "skip", outputs)], {"y": HIDDEN, statistic: 1})
    plain = tmp_path / "plain.onnx"
    assert unfuse_skip_layer_norms(fused, plain) == 0
    assert [n.op_type for n in onnx.load(str(plain)).graph.node] == ["SkipLayerNormalization"]
