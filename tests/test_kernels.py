"""The matrix-product instrument of `semsearch bench indexing`: its int8 session computes the layer's products."""

from __future__ import annotations

import numpy as np

from benchmarks.kernels import LAYER_SHAPES, int8_products, layer_macs


def test_int8_session_computes_each_product_of_the_layer() -> None:
    generator = np.random.default_rng(3)
    weights = [(generator.standard_normal((k, n)) * 0.05).astype(np.float32) for k, n in LAYER_SHAPES]
    x = generator.standard_normal((37, LAYER_SHAPES[0][0])).astype(np.float32)
    x_wide = generator.standard_normal((37, LAYER_SHAPES[3][0])).astype(np.float32)
    outputs = int8_products(weights).run(None, {"x": x, "x_wide": x_wide})
    assert [o.shape for o in outputs] == [(37, n) for _, n in LAYER_SHAPES]
    for out, w in zip(outputs, weights, strict=True):
        exact = (x_wide if w.shape[0] == x_wide.shape[1] else x) @ w
        error = np.linalg.norm(out - exact) / np.linalg.norm(exact)
        assert error < 0.02  # int8 rounding, not a wrong operand or layout


def test_macs_count_every_product() -> None:
    assert layer_macs(1) == 384 * 1152 + 384 * 384 + 384 * 1536 + 1536 * 384
    assert layer_macs(2048) == 2048 * layer_macs(1)
