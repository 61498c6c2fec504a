"""The model's matrix products alone, run the way each side of `semsearch bench indexing` runs them: int8 on
one-thread onnxruntime sessions side by side, one per thread (as the int8 backend encodes a batch), against
fp32 `torch.nn.functional.linear` on the same rows with torch using every thread (as plain
`SentenceTransformer.encode` does). The products are most of an encoding's arithmetic; their int8/fp32 ratio
tells how much of the indexing speed-up the CPU's int8 instructions can give.

The products are one MiniLM layer's: query, key and value (one 384×1,152 product in int8, as the fused attention
operator runs it; three 384×384 ones in torch, as BERT's modules do), the attention output and the two
feed-forward halves, all on random rows.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.benchmarks.timing import time_calls

Matrix = npt.NDArray[np.float32]
HIDDEN, INNER = 384, 1536
# (inputs, outputs) of each product, as the int8 model runs them and as torch runs them: the same arithmetic.
INT8_SHAPES = ((HIDDEN, 3 * HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, INNER), (INNER, HIDDEN))
FP32_SHAPES = ((HIDDEN, HIDDEN),) * 4 + ((HIDDEN, INNER), (INNER, HIDDEN))
ROWS = 4096  # 32 passages of 128 tokens: one batch of SQuAD passages


def layer_macs(rows: int, shapes: Sequence[tuple[int, int]] = INT8_SHAPES) -> int:
    """Multiply-accumulates of `shapes` over `rows` rows."""
    return rows * sum(k * n for k, n in shapes)


def random_weights(shapes: Sequence[tuple[int, int]], seed: int) -> list[Matrix]:
    """Seeded (inputs, outputs) weight matrices of about a trained layer's scale."""
    generator = np.random.default_rng(seed)
    return [(generator.standard_normal(shape) * 0.05).astype(np.float32) for shape in shapes]


def int8_products(weights: Sequence[Matrix]) -> Any:
    """A one-thread onnxruntime session running each product as DynamicQuantizeMatMul (int8 weights with a scale
    per output column, activations quantised on the fly): the kernel the int8 export runs its products on. Inputs
    `x` (rows × 384) and `x_wide` (rows × 1,536); one output per weight."""
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
        source = "x_wide" if w.shape[0] == INNER else "x"
        node = helper.make_node(
            "DynamicQuantizeMatMul", [source, f"w{i}", f"s{i}", f"z{i}"], [f"y{i}"], domain="com.microsoft"
        )
        nodes.append(node)
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [None, w.shape[1]]))
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, HIDDEN]),
        helper.make_tensor_value_info("x_wide", TensorProto.FLOAT, [None, INNER]),
    ]
    graph = helper.make_graph(nodes, "layer_products", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    model = helper.make_model(graph, opset_imports=opsets)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def fp32_products(weights: Sequence[Matrix]) -> Callable[[Matrix, Matrix], list[Any]]:
    """A function of (`x`, `x_wide`) running each product as torch's fp32 `linear`, the call BERT's layers make."""
    import torch

    kept = [torch.from_numpy(np.ascontiguousarray(w.T)) for w in weights]  # nn.Linear keeps (outputs, inputs)

    def run(x: Matrix, x_wide: Matrix) -> list[Any]:
        tx, tx_wide = torch.from_numpy(x), torch.from_numpy(x_wide)
        with torch.inference_mode():
            return [torch.nn.functional.linear(tx_wide if w.shape[1] == INNER else tx, w) for w in kept]

    return run


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    """The median wall time of `repeats` calls, after one warm-up call (weight packing, allocations)."""
    call()
    return statistics.median(time_calls(lambda _: call(), range(repeats))) / 1000


def measure_products(threads: int, rows: int = ROWS, repeats: int = 9, seed: int = 0) -> dict[str, Any]:
    """GMAC/s of one layer's products over `rows` rows: int8 split across `threads` one-thread sessions at once,
    fp32 by torch on `threads` threads; three alternating rounds, the median of each."""
    import torch

    threads = max(1, threads)
    generator = np.random.default_rng(seed)
    x = generator.standard_normal((rows, HIDDEN)).astype(np.float32)
    x_wide = generator.standard_normal((rows, INNER)).astype(np.float32)
    lanes = [int8_products(random_weights(INT8_SHAPES, seed)) for _ in range(threads)]
    parts = [{"x": x[part], "x_wide": x_wide[part]} for part in np.array_split(np.arange(rows), threads)]
    fp32 = fp32_products(random_weights(FP32_SHAPES, seed))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with ThreadPoolExecutor(threads) as pool:  # onnxruntime releases the GIL while a session runs

            def int8() -> None:
                for done in [pool.submit(lane.run, None, feeds) for lane, feeds in zip(lanes, parts, strict=True)]:
                    done.result()

            int8_s, fp32_s = [], []
            for _ in range(3):  # alternate, so a slow phase of the machine hits both
                int8_s.append(_median_seconds(int8, repeats))
                fp32_s.append(_median_seconds(lambda: fp32(x, x_wide), repeats))
    finally:
        torch.set_num_threads(before)
    int8_rate = layer_macs(rows, INT8_SHAPES) / statistics.median(int8_s) / 1e9
    fp32_rate = layer_macs(rows, FP32_SHAPES) / statistics.median(fp32_s) / 1e9
    return {
        "what": f"one MiniLM layer's matrix products on {threads} threads: int8 DynamicQuantizeMatMul (onnxruntime, "
        "one-thread sessions side by side) against fp32 linear (torch)",
        "rows": rows,
        "threads": threads,
        "int8_gmacs": round(int8_rate, 2),
        "fp32_gmacs": round(fp32_rate, 2),
        "ratio_int8_vs_fp32": round(int8_rate / fp32_rate, 3),
    }
