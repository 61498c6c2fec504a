"""How fast this CPU runs the model's matrix products in int8 (onnxruntime, as the int8 backend runs them) and in
fp32 (torch, as plain `SentenceTransformer.encode` runs them): the products are most of an encoding's work, so
their ratio is about the most int8 can gain here.

One thread each (the int8 backend encodes a batch on one-thread sessions side by side), the four products of one
MiniLM layer (query/key/value, attention output, the two feed-forward halves) on the same random rows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

# (inputs, outputs) of one layer's products for a 384-wide, 1,536-inner BERT layer such as MiniLM-L6.
LAYER_SHAPES = ((384, 1152), (384, 384), (384, 1536), (1536, 384))
ROWS = 2048  # 16 passages of 128 tokens: about one lane's batch of SQuAD passages


def layer_macs(rows: int) -> int:
    """Multiply-accumulates in one pass over `LAYER_SHAPES` with `rows` rows."""
    return rows * sum(k * n for k, n in LAYER_SHAPES)


def int8_products(weights: list[npt.NDArray[np.float32]]) -> Any:
    """An onnxruntime session (one thread) running each product as DynamicQuantizeMatMul: int8 weights with a
    scale per output column, activations quantised on the fly, as the int8 export runs after fusion."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outputs = [], [], []
    for i, w in enumerate(weights):
        scale = np.maximum(np.abs(w).max(axis=0), 1e-8) / 127
        quantised = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        inits += [
            numpy_helper.from_array(quantised, f"w{i}"),
            numpy_helper.from_array(scale.astype(np.float32), f"s{i}"),
            numpy_helper.from_array(np.zeros(w.shape[1], np.int8), f"z{i}"),
        ]
        source = "x_wide" if w.shape[0] > LAYER_SHAPES[0][0] else "x"
        nodes.append(
            helper.make_node(
                "DynamicQuantizeMatMul", [source, f"w{i}", f"s{i}", f"z{i}"], [f"y{i}"], domain="com.microsoft"
            )
        )
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [None, w.shape[1]]))
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, LAYER_SHAPES[0][0]]),
        helper.make_tensor_value_info("x_wide", TensorProto.FLOAT, [None, LAYER_SHAPES[3][0]]),
    ]
    graph = helper.make_graph(nodes, "layer_products", inputs, outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: weight packing, allocations
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_products(rows: int = ROWS, repeats: int = 15, seed: int = 0) -> dict[str, Any]:
    """GMAC/s of the layer's products in int8 (onnxruntime) and fp32 (torch), one thread each, and their ratio."""
    import torch

    generator = np.random.default_rng(seed)
    weights = [(generator.standard_normal((k, n)) * 0.05).astype(np.float32) for k, n in LAYER_SHAPES]
    x = generator.standard_normal((rows, LAYER_SHAPES[0][0])).astype(np.float32)
    x_wide = generator.standard_normal((rows, LAYER_SHAPES[3][0])).astype(np.float32)
    session = int8_products(weights)
    feeds = {"x": x, "x_wide": x_wide}

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tensors = [torch.from_numpy(w.T.copy()) for w in weights]  # nn.Linear keeps (out, in)
        tx, tx_wide = torch.from_numpy(x), torch.from_numpy(x_wide)

        def fp32() -> None:
            with torch.inference_mode():
                for w in tensors:
                    torch.nn.functional.linear(tx_wide if w.shape[1] > x.shape[1] else tx, w)

        int8_s, fp32_s = [], []
        for _ in range(3):  # alternate, so a slow phase of the machine hits both
            int8_s.append(_median_seconds(lambda: session.run(None, feeds), repeats))
            fp32_s.append(_median_seconds(fp32, repeats))
    finally:
        torch.set_num_threads(threads)
    macs = layer_macs(rows)
    int8_rate = macs / statistics.median(int8_s) / 1e9
    fp32_rate = macs / statistics.median(fp32_s) / 1e9
    return {
        "what": "one MiniLM layer's four matrix products, one thread: int8 DynamicQuantizeMatMul (onnxruntime) "
        "against fp32 linear (torch)",
        "rows": rows,
        "int8_gmacs": round(int8_rate, 2),
        "fp32_gmacs": round(fp32_rate, 2),
        "ratio_int8_vs_fp32": round(int8_rate / fp32_rate, 3),
    }
