"""Each Numba kernel against a NumPy expression, float32 and float64, awkward shapes.

Also runs with ``NUMBA_DISABLE_JIT=1`` (the kernels then execute as plain Python),
so the shapes stay small.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp import kernels as K

DTYPES = [np.float32, np.float64]
JIT_DISABLED = bool(numba.config.DISABLE_JIT)

# (n, D, H) for the matrix products: one row, one feature, one hidden unit, and
# 37 > 16 = _COLUMN_BLOCK, not a multiple of it, so the column blocks of
# weight_grad (over D) and bias_grad (over H) have a partial last block.
MATMUL_SHAPES = [(1, 1, 1), (1, 5, 3), (6, 1, 4), (5, 3, 1), (9, 37, 13), (4, 13, 37)]
# (n, H) for elementwise kernels and column sums
GRID_SHAPES = [(1, 1), (1, 7), (7, 1), (37, 13), (3, 37)]
# (n, C) for the loss kernels
LOSS_SHAPES = [(1, 1), (1, 2), (7, 2), (37, 13), (5, 37)]

ACTIVATIONS = {
    # code: (forward, derivative as a function of (H1, H2))
    K.RELU: (lambda h: np.maximum(h, 0), lambda h1, h2: (h1 > 0).astype(h1.dtype)),
    K.TANH: (np.tanh, lambda h1, h2: 1 - h2**2),
    K.LOGISTIC: (lambda h: 1 / (1 + np.exp(-h)), lambda h1, h2: h2 * (1 - h2)),
    K.IDENTITY: (lambda h: h.copy(), lambda h1, h2: np.ones_like(h1)),
}
ACT_IDS = {K.RELU: "relu", K.TANH: "tanh", K.LOGISTIC: "logistic", K.IDENTITY: "identity"}
ACT_PARAMS = [pytest.param(code, id=name) for code, name in ACT_IDS.items()]


def variants(*pairs):
    return [pytest.param(f, id=name) for name, f in pairs]


LINEAR = variants(
    ("parallel", K.linear_forward),
    ("serial", K.linear_forward_serial),
    ("blas", K.linear_forward_blas),
)
WEIGHT_GRAD = variants(
    ("parallel", K.weight_grad), ("serial", K.weight_grad_serial), ("blas", K.weight_grad_blas)
)
INPUT_GRAD = variants(
    ("parallel", K.input_grad), ("serial", K.input_grad_serial), ("blas", K.input_grad_blas)
)


def pair(name):
    return variants(("parallel", getattr(K, name)), ("serial", getattr(K, name + "_serial")))


def rand(rng, shape, dtype, scale=1.0):
    return np.ascontiguousarray(rng.normal(scale=scale, size=shape), dtype=dtype)


def assert_close(actual, desired, dtype, rtol32=2e-5):
    """Compare a kernel's output (``dtype``) with a float64 NumPy result.

    The absolute tolerance scales with the largest entry, so sums with
    cancellation are judged against the size of their terms.
    """
    desired = np.asarray(desired, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(desired)))) if desired.size else 1.0
    if dtype == np.float32:
        assert_allclose(actual, desired, rtol=rtol32, atol=0.1 * rtol32 * scale)
    else:
        assert_allclose(actual, desired, rtol=1e-12, atol=1e-13 * scale)


def f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


# --------------------------------------------------------------------------- forward
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MATMUL_SHAPES)
@pytest.mark.parametrize("kernel", LINEAR)
def test_linear_forward(rng, kernel, shape, dtype):
    n, D, H = shape
    X, W, b = rand(rng, (n, D), dtype), rand(rng, (D, H), dtype), rand(rng, H, dtype)
    out = np.full((n, H), np.nan, dtype)
    kernel(X, W, b, out)
    X64, W64, b64 = f64(X, W, b)
    assert_close(out, X64 @ W64 + b64, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GRID_SHAPES)
@pytest.mark.parametrize("kernel", pair("relu_forward"))
def test_relu_forward(rng, kernel, shape, dtype):
    H1 = rand(rng, shape, dtype)
    out = np.full(shape, np.nan, dtype)
    kernel(H1, out)
    assert_close(out, np.maximum(H1.astype(np.float64), 0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GRID_SHAPES)
@pytest.mark.parametrize("code", ACT_PARAMS)
@pytest.mark.parametrize("kernel", pair("activation_forward"))
def test_activation_forward(rng, kernel, code, shape, dtype):
    H1 = rand(rng, shape, dtype, scale=2.0)
    out = np.full(shape, np.nan, dtype)
    kernel(H1, code, out)
    assert_close(out, ACTIVATIONS[code][0](H1.astype(np.float64)), dtype)


@pytest.mark.parametrize("inplace", [False, True], ids=["separate", "H1-is-H0"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GRID_SHAPES)
@pytest.mark.parametrize("code", ACT_PARAMS)
@pytest.mark.parametrize("kernel", pair("bias_activation_forward"))
def test_bias_activation_forward(rng, kernel, code, shape, dtype, inplace):
    H0 = rand(rng, shape, dtype, scale=2.0)
    b = rand(rng, shape[1], dtype)
    H0_64, b64 = f64(H0, b)
    H1 = H0 if inplace else np.full(shape, np.nan, dtype)  # H0 and H1 may be one array
    out = np.full(shape, np.nan, dtype)
    kernel(H0, b, code, H1, out)
    assert_close(H1, H0_64 + b64, dtype)
    assert_close(out, ACTIVATIONS[code][0](H0_64 + b64), dtype)


# ------------------------------------------------------------------- loss and dZ
def softmax_expected(Z, Y, sw, scale):
    """Loss, P and dZ of the softmax + cross-entropy node, float64 NumPy."""
    Z, Y, sw = f64(Z, Y, sw)
    m = Z.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True))  # (n, 1)
    P = np.exp(Z - lse)
    ce = (Y * (lse - Z)).sum(axis=1)  # (n,)
    return scale * (sw * ce).sum(), P, scale * sw[:, None] * (P - Y)


def sigmoid_expected(Z, Y, sw, scale):
    """Loss, P and dZ of the sigmoid + binary cross-entropy node, float64 NumPy."""
    Z, Y, sw = f64(Z, Y, sw)
    e = np.exp(-np.abs(Z))  # never overflows
    P = np.where(Z >= 0, 1 / (1 + e), e / (1 + e))
    ce = (np.logaddexp(0, Z) - Y * Z).sum(axis=1)  # softplus(z) - y z
    return scale * (sw * ce).sum(), P, scale * sw[:, None] * (P - Y)


def loss_inputs(rng, shape, dtype, output, huge):
    n, C = shape
    if huge:
        # logits of +-1e3 (and one row all equal at -1e3): exp(z) would overflow
        Z = rng.choice([-1e3, 1e3], size=shape) + rng.normal(size=shape)
        Z[0] = -1e3
        Z = Z.astype(dtype)
    else:
        Z = rand(rng, shape, dtype, scale=2.0)
    if output == "softmax":
        Y = rng.dirichlet(np.ones(C), size=n).astype(dtype)  # rows of probabilities
    else:
        Y = rng.integers(0, 2, size=shape).astype(dtype)  # multilabel 0/1
    sw = rng.uniform(0.5, 2.0, size=n).astype(dtype)
    return Z, Y, sw, 1.0 / float(sw.sum(dtype=np.float64))


LOSS_KERNELS = [
    pytest.param(K.softmax_cross_entropy, "softmax", id="softmax-parallel"),
    pytest.param(K.softmax_cross_entropy_serial, "softmax", id="softmax-serial"),
    pytest.param(K.sigmoid_cross_entropy, "logistic", id="sigmoid-parallel"),
    pytest.param(K.sigmoid_cross_entropy_serial, "logistic", id="sigmoid-serial"),
]
EXPECTED = {"softmax": softmax_expected, "logistic": sigmoid_expected}


@pytest.mark.parametrize("alias", [False, True], ids=["P-separate", "P-is-Z"])
@pytest.mark.parametrize("huge", [False, True], ids=["moderate", "huge-logits"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LOSS_SHAPES)
@pytest.mark.parametrize(("kernel", "output"), LOSS_KERNELS)
def test_loss_kernel(rng, kernel, output, shape, dtype, huge, alias):
    Z, Y, sw, scale = loss_inputs(rng, shape, dtype, output, huge)
    loss_exp, P_exp, dZ_exp = EXPECTED[output](Z, Y, sw, scale)
    P = Z if alias else np.full(shape, np.nan, dtype)  # the solver lets P overwrite Z
    dZ = np.full(shape, np.nan, dtype)
    loss = kernel(Z, Y, sw, scale, P, dZ)
    assert np.isfinite(loss) and np.all(np.isfinite(P)) and np.all(np.isfinite(dZ))
    # With logits near 1e3, float32 resolves z - lse only to ulp(1e3) ~ 6e-5, so
    # P = exp(z - lse) carries that relative error.
    rtol32 = 2e-4 if huge else 2e-5
    tol = rtol32 if dtype == np.float32 else 1e-12
    assert_allclose(loss, loss_exp, rtol=tol, atol=tol)
    assert_close(P, P_exp, dtype, rtol32)
    assert_close(dZ, dZ_exp, dtype, rtol32)
    if output == "softmax":
        assert_allclose(P.sum(axis=1), 1.0, rtol=rtol32 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize(("kernel", "output"), LOSS_KERNELS)
def test_loss_kernel_propagates_nan(kernel, output):
    # fastmath without nnan: a NaN logit must reach the loss, not be optimised away
    Z = np.array([[0.5, np.nan], [0.1, 0.2]])
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    P, dZ = np.empty_like(Z), np.empty_like(Z)
    assert np.isnan(kernel(Z, Y, np.ones(2), 0.5, P, dZ))


@pytest.mark.parametrize("kernel", pair("relu_forward"))
def test_relu_forward_propagates_nan(kernel):
    H1 = np.array([[np.nan, -1.0, 2.0]])
    out = np.empty_like(H1)
    kernel(H1, out)
    assert np.isnan(out[0, 0]) and out[0, 1] == 0 and out[0, 2] == 2


# -------------------------------------------------------------------- backward
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GRID_SHAPES)
@pytest.mark.parametrize("kernel", pair("bias_grad"))
def test_bias_grad(rng, kernel, shape, dtype):
    G = rand(rng, shape, dtype)
    out = np.full(shape[1], np.nan, dtype)
    kernel(G, out)
    assert_close(out, G.astype(np.float64).sum(axis=0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GRID_SHAPES)
@pytest.mark.parametrize("kernel", pair("relu_backward"))
def test_relu_backward(rng, kernel, shape, dtype):
    dH2, H1 = rand(rng, shape, dtype), rand(rng, shape, dtype)
    out = np.full(shape, np.nan, dtype)
    kernel(dH2, H1, out)
    assert_close(out, np.where(H1 > 0, dH2.astype(np.float64), 0.0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GRID_SHAPES)
@pytest.mark.parametrize("code", ACT_PARAMS)
@pytest.mark.parametrize("kernel", pair("activation_backward"))
def test_activation_backward(rng, kernel, code, shape, dtype):
    dH2, H1 = rand(rng, shape, dtype), rand(rng, shape, dtype, scale=2.0)
    forward, derivative = ACTIVATIONS[code]
    H2 = forward(H1).astype(dtype)
    out = np.full(shape, np.nan, dtype)
    kernel(dH2, H1, H2, code, out)
    dH2_64, H1_64, H2_64 = f64(dH2, H1, H2)
    assert_close(out, dH2_64 * derivative(H1_64, H2_64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MATMUL_SHAPES)
@pytest.mark.parametrize("code", ACT_PARAMS)
@pytest.mark.parametrize("kernel", pair("hidden_backward"))
def test_hidden_backward(rng, kernel, code, shape, dtype):
    n, C, H = shape  # dZ (n, C), W2 (H, C), H1 (n, H)
    dZ, W2, H1 = rand(rng, (n, C), dtype), rand(rng, (H, C), dtype), rand(rng, (n, H), dtype)
    forward, derivative = ACTIVATIONS[code]
    H2 = forward(H1).astype(dtype)
    out = np.full((n, H), np.nan, dtype)
    kernel(dZ, W2, H1, H2, code, out)
    dZ64, W2_64, H1_64, H2_64 = f64(dZ, W2, H1, H2)
    # dH1 = (dZ W2ᵀ) ⊙ act'(H1)
    assert_close(out, (dZ64 @ W2_64.T) * derivative(H1_64, H2_64), dtype)


@pytest.mark.parametrize("reg", [0.0, 0.3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MATMUL_SHAPES)
@pytest.mark.parametrize("kernel", WEIGHT_GRAD)
def test_weight_grad(rng, kernel, shape, dtype, reg):
    n, D, H = shape  # A (n, D), G (n, H), W and out (D, H)
    A, G, W = rand(rng, (n, D), dtype), rand(rng, (n, H), dtype), rand(rng, (D, H), dtype)
    out = np.full((D, H), np.nan, dtype)
    kernel(A, G, W, dtype(reg), out)
    A64, G64, W64 = f64(A, G, W)
    assert_close(out, A64.T @ G64 + reg * W64, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MATMUL_SHAPES)
@pytest.mark.parametrize("kernel", INPUT_GRAD)
def test_input_grad(rng, kernel, shape, dtype):
    n, D, H = shape  # G (n, H), W (D, H), out (n, D)
    G, W = rand(rng, (n, H), dtype), rand(rng, (D, H), dtype)
    out = np.full((n, D), np.nan, dtype)
    kernel(G, W, out)
    G64, W64 = f64(G, W)
    assert_close(out, G64 @ W64.T, dtype)


# ------------------------------------------------- blocked products (solver's loops)
# (m, K, p): m and p around and off multiples of the 4x4 register block
NT_SHAPES = [(1, 1, 1), (4, 4, 4), (5, 3, 7), (3, 2, 1), (6, 1, 5), (9, 37, 13), (8, 13, 37)]


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("gather", [False, True], ids=["in-order", "gather"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", NT_SHAPES)
@pytest.mark.parametrize("kernel", pair("matmul_nt"))
def test_matmul_nt(rng, kernel, shape, dtype, gather, bias):
    m, k, p = shape
    n_rows = m + 3  # A has more rows than are used when gathering
    A = rand(rng, (n_rows if gather else m, k), dtype)
    Bt = rand(rng, (p, k), dtype)
    rows = rng.permutation(n_rows)[:m] if gather else np.empty(0, np.int64)
    b = rand(rng, p, dtype) if bias else np.empty(0, dtype)
    out = np.full((m, p), np.nan, dtype)
    kernel(A, rows.astype(np.int64), Bt, b, out)
    A64, Bt64, b64 = f64(A, Bt, b)
    expected = (A64[rows] if gather else A64) @ Bt64.T + (b64 if bias else 0.0)  # (m, p)
    assert_close(out, expected, dtype)


@pytest.mark.parametrize("gather", [False, True], ids=["in-order", "gather"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GRID_SHAPES + [(17, 33)])
@pytest.mark.parametrize("kernel", pair("transpose"))
def test_transpose(rng, kernel, shape, dtype, gather):
    m, p = shape  # out = A[rows]ᵀ is (p, m)
    A = rand(rng, (m + 2 if gather else m, p), dtype)
    rows = rng.permutation(m + 2)[:m] if gather else np.empty(0, np.int64)
    out = np.full((p, m), np.nan, dtype)
    kernel(A, rows.astype(np.int64), out)
    assert_allclose(out, (A[rows] if gather else A).T, rtol=0, atol=0)


@pytest.mark.parametrize("inplace", [False, True], ids=["separate", "in-place"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GRID_SHAPES)
@pytest.mark.parametrize("code", ACT_PARAMS)
def test_activation_backward_bias(rng, code, shape, dtype, inplace):
    dH2, H1 = rand(rng, shape, dtype), rand(rng, shape, dtype, scale=2.0)
    forward, derivative = ACTIVATIONS[code]
    H2 = forward(H1).astype(dtype)
    dH2_64, H1_64, H2_64 = f64(dH2, H1, H2)
    expected = dH2_64 * derivative(H1_64, H2_64)
    out = dH2 if inplace else np.full(shape, np.nan, dtype)
    gb = np.full(shape[1], np.nan, dtype)
    K.activation_backward_bias(dH2, H1, H2, code, out, gb)
    assert_close(out, expected, dtype)
    assert_close(gb, expected.sum(axis=0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 1), (5, 37), (37, 13), (9, 800)])
def test_gather_rows(rng, shape, dtype):
    # rows anywhere in A, repeated, fewer than the prefetch distance or more;
    # out has spare rows (a partial last batch) that stay untouched
    m, D = shape
    A = rand(rng, (m + 5, D), dtype)
    rows = rng.integers(0, m + 5, m).astype(np.int64)
    out = np.full((m + 2, D), np.nan, dtype)
    K.gather_rows(A, rows, out)
    assert_allclose(out[:m], A[rows], rtol=0, atol=0)
    assert np.isnan(out[m:]).all()
    K.gather_rows(A, rows[:0], out)  # no rows: nothing written
    assert np.isnan(out[m:]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MATMUL_SHAPES)
@pytest.mark.parametrize("code", ACT_PARAMS)
@pytest.mark.parametrize("kernel", pair("hidden_backward_t"))
def test_hidden_backward_t(rng, kernel, code, shape, dtype):
    n, C, H = shape  # dZ (n, C), W2t = W2ᵀ (C, H), H1 (n, H)
    dZ, W2t, H1 = rand(rng, (n, C), dtype), rand(rng, (C, H), dtype), rand(rng, (n, H), dtype)
    forward, derivative = ACTIVATIONS[code]
    H2 = forward(H1).astype(dtype)
    out = np.full((n, H), np.nan, dtype)
    kernel(dZ, W2t, H1, H2, code, out)
    dZ64, W2t64, H1_64, H2_64 = f64(dZ, W2t, H1, H2)
    assert_close(out, (dZ64 @ W2t64) * derivative(H1_64, H2_64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MATMUL_SHAPES)
@pytest.mark.parametrize("code", ACT_PARAMS)
def test_hidden_backward_bias_t(rng, code, shape, dtype):
    n, C, H = shape
    dZ, W2t, H1 = rand(rng, (n, C), dtype), rand(rng, (C, H), dtype), rand(rng, (n, H), dtype)
    forward, derivative = ACTIVATIONS[code]
    H2 = forward(H1).astype(dtype)
    out = np.full((n, H), np.nan, dtype)
    gb = np.full(H, np.nan, dtype)
    K.hidden_backward_bias_t(dZ, W2t, H1, H2, code, out, gb)
    dZ64, W2t64, H1_64, H2_64 = f64(dZ, W2t, H1, H2)
    expected = (dZ64 @ W2t64) * derivative(H1_64, H2_64)
    assert_close(out, expected, dtype)
    assert_close(gb, expected.sum(axis=0), dtype)


@pytest.mark.parametrize("shape", [(1,), (5,), (3, 4), (37, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_add_scaled(rng, shape, dtype):
    out, A = rand(rng, shape, dtype), rand(rng, shape, dtype)
    out64, A64 = f64(out, A)
    K.add_scaled(out, dtype(0.3), A)
    assert_close(out, out64 + 0.3 * A64, dtype)


# --------------------------------------------------------------------- updates
@pytest.mark.parametrize("shape", [(1,), (5,), (3, 4), (37, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_sgd_update(rng, shape, dtype, momentum, nesterov, reg):
    p, g, v = (rand(rng, shape, dtype) for _ in range(3))
    lr = 0.05
    p64, g64, v64 = f64(p, g, v)
    sq = K.sgd_update(p, g, v, dtype(lr), dtype(momentum), nesterov, reg)
    # scikit-learn: v = momentum v - lr g; p += v, or p += momentum v - lr g (Nesterov),
    # with the L2 term in the gradient: g + reg p
    g64 = g64 + reg * p64
    v_exp = momentum * v64 - lr * g64
    p_exp = p64 + (momentum * v_exp - lr * g64 if nesterov else v_exp)
    assert_close(v, v_exp, dtype)
    assert_close(p, p_exp, dtype)
    assert_close(np.float64(sq), np.sum(p_exp**2), dtype)


@pytest.mark.parametrize("shape", [(1,), (5,), (3, 4), (37, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_adam_update(rng, shape, dtype, reg):
    p, g, m = (rand(rng, shape, dtype) for _ in range(3))
    v = rng.uniform(0.0, 2.0, size=shape).astype(dtype)  # second moments are >= 0
    b1, b2, eps, t, lr = 0.9, 0.999, 1e-8, 3, 0.01
    step_size = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    p64, g64, m64, v64 = f64(p, g, m, v)
    sq = K.adam_update(p, g, m, v, dtype(step_size), dtype(b1), dtype(b2), dtype(eps), reg)
    g64 = g64 + reg * p64
    m_exp = b1 * m64 + (1 - b1) * g64
    v_exp = b2 * v64 + (1 - b2) * g64**2
    p_exp = p64 - step_size * m_exp / (np.sqrt(v_exp) + eps)
    assert_close(m, m_exp, dtype)
    assert_close(v, v_exp, dtype)
    assert_close(p, p_exp, dtype)
    assert_close(np.float64(sq), np.sum(p_exp**2), dtype)


# --------------------------------------------------------- the serial twins' cache
@pytest.mark.skipif(JIT_DISABLED, reason="about Numba's on-disk cache; nothing is compiled")
def test_serial_twin_does_not_load_parallel_build_from_cache(tmp_path):
    # Numba keys its on-disk cache by function and signature, not by options
    # (numba/numba#6845): compiled from one function, the twins would share a cache
    # entry and the serial one could silently run the parallel machine code.
    script = textwrap.dedent(
        """
        import numpy as np
        from fastmlp import kernels as K
        H1 = np.ones((3, 2))
        out = np.empty_like(H1)
        K.relu_forward(H1, out)         # compiles the parallel build into the empty cache
        K.relu_forward_serial(H1, out)  # must compile its own serial build
        print(sum(K.relu_forward_serial.entry.stats.cache_hits.values()))
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_DISABLE_JIT="0")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", "the serial twin was served the parallel build's cache"


# (the regression losses are tested against NumPy in tests/test_regressor.py)
@pytest.mark.parametrize("dt", (np.float32, np.float64))
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 5, 3), (37, 9, 50), (64, 100, 784), (3, 0, 4),
                                   (0, 3, 4), (4, 3, 0)])
def test_gemm_matches_numpy_with_transposes_blocks_and_beta(dt, m, n, k):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(m, k + 20)).astype(dt)[:, 5:5 + k]  # a block of columns, in place
    At = np.ascontiguousarray(A.T)
    B = rng.normal(size=(k, n)).astype(dt)
    Bt = np.ascontiguousarray(B.T)
    ref = A.astype(np.float64) @ B
    # a sum of k products in the working dtype: its rounding grows with k
    tol = dict(rtol=2e-4 if dt is np.float32 else 1e-10, atol=10 * max(k, 1) * np.finfo(dt).eps)
    for a, ta in ((A, False), (At, True)):
        for b, tb in ((B, False), (Bt, True)):
            out = np.full((m, n), np.nan, dt)
            K.gemm(a, b, out, ta, tb)
            assert_allclose(out, ref, **tol)
    wide = np.ones((m, n + 9), dt)
    K.gemm(A, B, wide[:, 4:4 + n], False, False, 1.0)  # accumulate into a block
    assert_allclose(wide[:, 4:4 + n], ref + 1, **tol)
    assert_array_equal(wide[:, :4], 1)
    assert_array_equal(wide[:, 4 + n:], 1)


def test_shares_cover_the_range_in_order_and_respect_the_alignment():
    for n in (0, 1, 5, 16, 17, 100, 784):
        for T in (1, 2, 3, 8):
            for align in (1, 16):
                parts = [K.share(n, T, t, align) for t in range(T)]
                assert parts[0][0] == 0 and parts[-1][1] == n
                for (lo, hi), (lo2, _) in zip(parts, parts[1:], strict=False):
                    assert lo <= hi == lo2
                    assert lo % align == 0 or lo == n
                    assert hi % align == 0 or hi == n


TESTED = set(
    """
    linear_forward linear_forward_serial linear_forward_blas relu_forward relu_forward_serial
    activation_forward activation_forward_serial bias_activation_forward
    bias_activation_forward_serial softmax_cross_entropy softmax_cross_entropy_serial
    sigmoid_cross_entropy sigmoid_cross_entropy_serial bias_grad bias_grad_serial relu_backward
    relu_backward_serial activation_backward activation_backward_serial hidden_backward
    hidden_backward_serial weight_grad weight_grad_serial weight_grad_blas input_grad
    input_grad_serial input_grad_blas matmul_nt matmul_nt_serial transpose transpose_serial
    hidden_backward_t hidden_backward_t_serial hidden_backward_bias_t add_scaled
    sgd_update adam_update gather_rows activation_backward_bias
    identity_squared_error identity_squared_error_serial exp_poisson_deviance
    exp_poisson_deviance_serial gemm share
    """.split()
)


def test_every_public_kernel_has_a_test():
    public = {
        name
        for name, obj in vars(K).items()
        if not name.startswith("_")
        and callable(obj)
        and not isinstance(obj, type)
        and getattr(obj, "__module__", None) == K.__name__
    }
    assert public == TESTED, "new kernels need a test here; removed ones leave TESTED"
