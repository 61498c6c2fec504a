"""Rewrites of an exported ONNX graph that make it faster on onnxruntime's CPU kernels without changing
what it computes (beyond float rounding).

onnxruntime's fused SkipLayerNormalization kernel normalises one row at a time in scalar code, a noticeable
share of encoding a batch of passages. The same arithmetic spelled in elementwise and reduce operators runs
on vectorised kernels, faster at a batch's size, at the cost of more (cheap) operators for one short query.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto

_MS_DOMAIN = "com.microsoft"
# Optional outputs of SkipLayerNormalization: mean, inverse std-dev, and the sum (input + skip + bias).
_MEAN, _INV_STD, _SUM = 1, 2, 3
_DEFAULT_EPSILON = 1e-12  # onnxruntime's default for the op


def unfuse_skip_layer_norms(source: Path, target: Path) -> int:
    """Write `source` to `target` with each float32 SkipLayerNormalization node spelled out in plain operators,
    checked by ONNX's model checker; how many were rewritten."""
    import onnx

    model = onnx.load(str(source))
    count = _unfuse(model)
    onnx.save(model, str(target))
    onnx.checker.check_model(str(target))
    return count


def _unfuse(model: ModelProto) -> int:
    """Rewrite `model` in place. A node stays fused when its mean or inverse std-dev output is read, or when its
    scale is not a float32 constant (the spelled-out form is written for float32). Subgraphs are not visited."""
    from onnx import TensorProto

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    used = {name for node in graph.node for name in node.input if name} | {out.name for out in graph.output}
    float32 = {i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT}
    nodes: list[NodeProto] = []
    count = 0
    for node in graph.node:
        outputs = [*node.output, "", "", ""][:4]
        if (
            node.op_type != "SkipLayerNormalization"
            or node.domain != _MS_DOMAIN
            or outputs[_MEAN] in used
            or outputs[_INV_STD] in used
            or len(node.input) < 3
            or node.input[2] not in float32
        ):
            nodes.append(node)
            continue
        nodes += _spelled_out(graph, node, f"{node.name or 'skip_layer_norm'}_{count}/", outputs, used, opset)
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def _spelled_out(
    graph: GraphProto, node: NodeProto, prefix: str, outputs: list[str], used: set[str], opset: int
) -> list[NodeProto]:
    """The operators that compute `node` (input + skip + bias, normalised per row, times gamma plus beta); the
    constants they need (epsilon, and the axes from opset 18) are added to `graph`'s initializers."""
    from onnx import helper, numpy_helper

    x, skip, gamma, beta, bias = [*node.input, "", "", ""][:5]
    epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), _DEFAULT_EPSILON)
    graph.initializer.append(numpy_helper.from_array(np.array(epsilon, dtype=np.float32), prefix + "epsilon"))
    if opset >= 18:  # ReduceMean takes its axes as an input from opset 18
        graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), prefix + "axes"))
    nodes: list[NodeProto] = []

    def op(kind: str, inputs: list[str], output: str, **attributes: Any) -> str:
        nodes.append(helper.make_node(kind, inputs, [output], name=f"{prefix}{len(nodes)}_{kind}", **attributes))
        return output

    def row_mean(value: str, output: str) -> str:
        if opset >= 18:
            return op("ReduceMean", [value, prefix + "axes"], output, keepdims=1)
        return op("ReduceMean", [value], output, axes=[-1], keepdims=1)

    total = op("Add", [x, skip], prefix + ("input_skip" if bias else "sum"))
    if bias:
        total = op("Add", [total, bias], prefix + "sum")
    if outputs[_SUM] in used:
        op("Identity", [total], outputs[_SUM])
    centred = op("Sub", [total, row_mean(total, prefix + "mean")], prefix + "centred")
    variance = row_mean(op("Mul", [centred, centred], prefix + "squared"), prefix + "variance")
    std = op("Sqrt", [op("Add", [variance, prefix + "epsilon"], prefix + "variance_eps")], prefix + "std")
    normed = op("Mul", [centred, op("Reciprocal", [std], prefix + "inv_std")], prefix + "normed")
    if beta:
        op("Add", [op("Mul", [normed, gamma], prefix + "scaled"), beta], outputs[0])
    else:
        op("Mul", [normed, gamma], outputs[0])
    return nodes
