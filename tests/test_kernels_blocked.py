"""The solver's blocked kernels against NumPy: matmul_nt, transpose, hidden_backward_t.

These are the loops path of the compiled epoch (weights kept transposed, the batch
gather fused into the products). Shapes cover the 4x4 register block, its leftover
rows and columns, one row, one column, and a gathered subset of rows. Also runs with
``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp import kernels as K

DTYPES = [np.float32, np.float64]
# (m, K, p): exact 4x4 blocks, leftover rows and columns, K = 1, m = 1, p = 1
SHAPES = [(1, 1, 1), (4, 4, 4), (5, 7, 9), (8, 1, 3), (3, 13, 4), (37, 13, 11), (17, 33, 18)]
MATMUL = [pytest.param(K.matmul_nt, id="parallel"), pytest.param(K.matmul_nt_serial, id="serial")]
TRANSPOSE = [
    pytest.param(K.transpose, id="parallel"),
    pytest.param(K.transpose_serial, id="serial"),
]
NO_ROWS = np.empty(0, dtype=np.int64)


def rtol(dtype):
    return 2e-5 if dtype == np.float32 else 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kernel", MATMUL)
def test_matmul_nt(kernel, shape, dtype, rng):
    m, k, p = shape
    A = rng.normal(size=(m, k)).astype(dtype)
    Bt = rng.normal(size=(p, k)).astype(dtype)
    bias = rng.normal(size=p).astype(dtype)
    A0, Bt0 = A.copy(), Bt.copy()
    out = np.full((m, p), np.nan, dtype)
    kernel(A, NO_ROWS, Bt, bias, out)
    expected = A.astype(np.float64) @ Bt.T.astype(np.float64) + bias
    assert_allclose(out, expected, rtol=rtol(dtype), atol=rtol(dtype) * np.sqrt(k))
    kernel(A, NO_ROWS, Bt, bias[:0], out)  # no bias
    assert_allclose(out, expected - bias, rtol=rtol(dtype), atol=rtol(dtype) * np.sqrt(k))
    assert_array_equal(A, A0)
    assert_array_equal(Bt, Bt0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kernel", MATMUL)
def test_matmul_nt_gathers_rows(kernel, shape, dtype, rng):
    m, k, p = shape
    A = rng.normal(size=(m + 5, k)).astype(dtype)
    rows = rng.permutation(m + 5)[:m].astype(np.int64)
    Bt = rng.normal(size=(p, k)).astype(dtype)
    bias = rng.normal(size=p).astype(dtype)
    out = np.empty((m, p), dtype)
    kernel(A, rows, Bt, bias, out)
    expected = A[rows].astype(np.float64) @ Bt.T.astype(np.float64) + bias
    assert_allclose(out, expected, rtol=rtol(dtype), atol=rtol(dtype) * np.sqrt(k))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (17, 1), (16, 16), (37, 21)], ids=str)
@pytest.mark.parametrize("kernel", TRANSPOSE)
def test_transpose(kernel, shape, dtype, rng):
    A = rng.normal(size=shape).astype(dtype)
    out = np.empty(shape[::-1], dtype)
    kernel(A, NO_ROWS, out)
    assert_array_equal(out, A.T)
    rows = rng.permutation(shape[0])[: max(1, shape[0] // 2)].astype(np.int64)
    out = np.empty((shape[1], rows.size), dtype)
    kernel(A, rows, out)
    assert_array_equal(out, A[rows].T)


ACTIVATIONS = {
    K.RELU: (lambda h: np.maximum(h, 0), lambda h1, h2: (h1 > 0)),
    K.TANH: (np.tanh, lambda h1, h2: 1 - h2**2),
    K.LOGISTIC: (lambda h: 1 / (1 + np.exp(-h)), lambda h1, h2: h2 * (1 - h2)),
    K.IDENTITY: (lambda h: h, lambda h1, h2: np.ones_like(h1)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS), ids=["relu", "tanh", "logistic", "id"])
@pytest.mark.parametrize("shape", [(1, 1, 2), (7, 5, 2), (9, 37, 10)], ids=str)
@pytest.mark.parametrize(
    "kernel", [K.hidden_backward_t, K.hidden_backward_t_serial], ids=["parallel", "serial"]
)
def test_hidden_backward_t(kernel, shape, activation, dtype, rng):
    n, H, C = shape
    forward, derivative = ACTIVATIONS[activation]
    dZ = rng.normal(size=(n, C)).astype(dtype)
    W2 = rng.normal(size=(H, C)).astype(dtype)
    H1 = rng.normal(size=(n, H)).astype(dtype)
    H2 = forward(H1).astype(dtype)
    dH1 = np.empty((n, H), dtype)
    kernel(dZ, np.ascontiguousarray(W2.T), H1, H2, activation, dH1)
    expected = (dZ @ W2.T) * derivative(H1, H2)
    assert_allclose(dH1, expected, rtol=rtol(dtype), atol=10 * rtol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_scaled(dtype, rng):
    out = rng.normal(size=(5, 3)).astype(dtype)
    A = rng.normal(size=(5, 3)).astype(dtype)
    expected = out + dtype(0.25) * A
    K.add_scaled(out, dtype(0.25), A)
    assert_allclose(out, expected, rtol=rtol(dtype))
