"""The matrix-product instrument of `semsearch bench indexing`: both sides compute the layer's products."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.benchmarks.kernels import (
    FP32_SHAPES,
    HIDDEN,
    INNER,
    INT8_SHAPES,
    fp32_products,
    int8_products,
    layer_macs,
    measure_products,
    random_weights,
)


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(3)
    return (
        generator.standard_normal((37, HIDDEN)).astype(np.float32),
        generator.standard_normal((37, INNER)).astype(np.float32),
    )


def _exact(weights: list[np.ndarray], x: np.ndarray, x_wide: np.ndarray) -> list[np.ndarray]:
    return [(x_wide if w.shape[0] == INNER else x) @ w for w in weights]


def test_int8_session_computes_each_product_within_int8_rounding(rows: tuple[np.ndarray, np.ndarray]) -> None:
    weights = random_weights(INT8_SHAPES, seed=1)
    outputs = int8_products(weights).run(None, {"x": rows[0], "x_wide": rows[1]})
    assert [o.shape for o in outputs] == [(37, n) for _, n in INT8_SHAPES]
    for out, exact in zip(outputs, _exact(weights, *rows), strict=True):
        assert np.linalg.norm(out - exact) / np.linalg.norm(exact) < 0.02  # rounding, not a wrong operand


def test_fp32_side_computes_each_product(rows: tuple[np.ndarray, np.ndarray]) -> None:
    weights = random_weights(FP32_SHAPES, seed=1)
    outputs = fp32_products(weights)(*rows)
    for out, exact in zip(outputs, _exact(weights, *rows), strict=True):
        np.testing.assert_allclose(out.numpy(), exact, rtol=1e-4, atol=1e-4)


def test_both_sides_do_the_same_arithmetic() -> None:
    assert layer_macs(1, INT8_SHAPES) == layer_macs(1, FP32_SHAPES) == 4 * HIDDEN * HIDDEN + 2 * HIDDEN * INNER
    assert layer_macs(2048) == 2048 * layer_macs(1)


def test_measure_reports_both_rates_and_their_ratio() -> None:
    figures = measure_products(threads=2, rows=64, repeats=1)
    assert figures["rows"] == 64 and figures["threads"] == 2
    assert figures["int8_gmacs"] > 0 and figures["fp32_gmacs"] > 0
    assert figures["ratio_int8_vs_fp32"] == pytest.approx(figures["int8_gmacs"] / figures["fp32_gmacs"], rel=0.01)
