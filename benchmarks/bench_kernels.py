"""Every kernel of one training step, fastmlp against the NumPy expression.

Groups are ``f"{op}|{shape}"`` (shape = ``digits/float32`` ...), one row per
implementation:

- ``numpy``: the NumPy expression a user would write;
- ``fastmlp``: the parallel Numba kernel (``fastmlp-serial`` its serial twin);
- ``fastmlp-loops``: the plain i-k-j Numba matmul kernels;
- ``fastmlp-nt``: ``kernels.matmul_nt`` on transposed weights (the solver's loops path,
  transposes included in the timed call where that path makes them);
- ``fastmlp-blas``: ``np.dot`` inside compiled code (``*_blas`` kernels).

Each case first runs once untimed (JIT compile or cache load) and checks its
output against the NumPy expression, so the smoke run verifies what is timed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from benchutil import DTYPES, SHAPES, tolerance

from fastmlp import kernels as K

LR, MOMENTUM, BETA1, BETA2, EPS = 0.001, 0.9, 0.9, 0.999, 1e-8


@dataclass
class Arrays:
    """Inputs of one step of shape (B, D, H, C); transposed copies for the loops path."""

    X: np.ndarray  # (B, D)
    Xall: np.ndarray  # (4B, D) rows to gather a batch from
    rows: np.ndarray  # (B,) indices into Xall
    W1: np.ndarray  # (D, H)
    b1: np.ndarray  # (H,)
    W2: np.ndarray  # (H, C)
    b2: np.ndarray  # (C,)
    H1: np.ndarray  # (B, H) pre-activation
    H2: np.ndarray  # (B, H) relu(H1)
    Z: np.ndarray  # (B, C) logits
    Y: np.ndarray  # (B, C) one-hot
    dZ: np.ndarray  # (B, C)
    dH2: np.ndarray  # (B, H)
    dH1: np.ndarray  # (B, H)
    reg: np.floating

    def empty(self, *shape):
        return np.empty(shape, self.X.dtype)

    @property
    def no_rows(self):
        return self.rows[:0]

    @property
    def no_bias(self):
        return self.b1[:0]


_CACHE: dict = {}


def arrays(shape: str, dtype: str) -> Arrays:
    key = (shape, dtype)
    if key not in _CACHE:
        B, D, H, C = SHAPES[shape]
        rng = np.random.default_rng(0)
        dt = np.dtype(dtype)

        def a(*s, scale=1.0):
            return (scale * rng.standard_normal(s)).astype(dt)

        Xall = rng.random((4 * B, D)).astype(dt)
        rows = rng.permutation(4 * B)[:B].astype(np.int64)
        X = np.ascontiguousarray(Xall[rows])
        W1, W2 = a(D, H, scale=np.sqrt(2 / D)), a(H, C, scale=np.sqrt(2 / H))
        b1, b2 = a(H, scale=0.1), a(C, scale=0.1)
        H1 = X @ W1 + b1
        H2 = np.maximum(H1, 0)
        Z = H2 @ W2 + b2
        Y = np.eye(C, dtype=dt)[rng.integers(0, C, B)]
        dZ = a(B, C, scale=1 / B)
        dH2 = dZ @ W2.T
        dH1 = dH2 * (H1 > 0)
        _CACHE[key] = Arrays(
            X, Xall, rows, W1, b1, W2, b2, H1, H2, Z, Y, dZ, dH2, dH1, dt.type(1e-4 / B)
        )
    return _CACHE[key]


# ------------------------------------------------------------------ cases
# Each builder returns a function that computes the op and returns its output.
def forward(a: Arrays, impl: str):
    """H2 = relu(X W1 + b1)."""
    H1, H2 = a.empty(*a.H1.shape), a.empty(*a.H1.shape)
    W1t = np.ascontiguousarray(a.W1.T)
    if impl == "numpy":
        return lambda: np.maximum(a.X @ a.W1 + a.b1, 0)
    if impl == "fastmlp-loops":

        def run():
            K.linear_forward(a.X, a.W1, a.b1, H1)
            K.activation_forward(H1, K.RELU, H2)
            return H2
    elif impl == "fastmlp-nt":

        def run():
            K.matmul_nt(a.X, a.no_rows, W1t, a.b1, H1)
            K.activation_forward(H1, K.RELU, H2)
            return H2
    elif impl == "fastmlp-blas":

        def run():
            K.linear_forward_blas(a.X, a.W1, a.b1, H1)
            K.activation_forward(H1, K.RELU, H2)
            return H2

    return run


def gather_forward(a: Arrays, impl: str):
    """H2 = relu(Xall[rows] W1 + b1): the minibatch gather and the first layer."""
    H1, H2 = a.empty(*a.H1.shape), a.empty(*a.H1.shape)
    Xb = a.empty(*a.X.shape)
    W1t = np.ascontiguousarray(a.W1.T)
    if impl == "numpy":
        return lambda: np.maximum(a.Xall[a.rows] @ a.W1 + a.b1, 0)
    if impl == "fastmlp-nt":  # gather fused into the product

        def run():
            K.matmul_nt(a.Xall, a.rows, W1t, a.b1, H1)
            K.activation_forward(H1, K.RELU, H2)
            return H2
    elif impl == "fastmlp-blas":  # gather into a buffer, then BLAS

        def run():
            np.take(a.Xall, a.rows, axis=0, out=Xb)
            K.linear_forward_blas(Xb, a.W1, a.b1, H1)
            K.activation_forward(H1, K.RELU, H2)
            return H2

    return run


def logits(a: Arrays, impl: str):
    """Z = H2 W2 + b2."""
    Z = a.empty(*a.Z.shape)
    W2t = np.ascontiguousarray(a.W2.T)
    if impl == "numpy":
        return lambda: a.H2 @ a.W2 + a.b2
    if impl == "fastmlp-loops":
        return lambda: (K.linear_forward(a.H2, a.W2, a.b2, Z), Z)[1]
    if impl == "fastmlp-nt":
        return lambda: (K.matmul_nt(a.H2, a.no_rows, W2t, a.b2, Z), Z)[1]
    return lambda: (K.linear_forward_blas(a.H2, a.W2, a.b2, Z), Z)[1]


def softmax_cross_entropy(a: Arrays, impl: str):
    """dZ = (softmax(Z) - Y) / B, with the mean cross-entropy; returns dZ."""
    B = a.Z.shape[0]
    P, dZ = a.empty(*a.Z.shape), a.empty(*a.Z.shape)
    sw = np.ones(B, a.Z.dtype)
    scale = a.Z.dtype.type(1 / B)
    if impl == "numpy":

        def run():
            m = a.Z.max(axis=1, keepdims=True)
            E = np.exp(a.Z - m)
            s = E.sum(axis=1, keepdims=True)
            loss = (a.Y * (np.log(s) + m - a.Z)).sum() / B  # noqa: F841 (part of the op)
            return (E / s - a.Y) / B

        return run
    kernel = K.softmax_cross_entropy if impl == "fastmlp" else K.softmax_cross_entropy_serial
    return lambda: (kernel(a.Z, a.Y, sw, scale, P, dZ), dZ)[1]


def relu_backward(a: Arrays, impl: str):
    """dH1 = dH2 * 1[H1 > 0]."""
    out = a.empty(*a.dH2.shape)
    if impl == "numpy":
        return lambda: a.dH2 * (a.H1 > 0)
    kernel = K.relu_backward if impl == "fastmlp" else K.relu_backward_serial
    return lambda: (kernel(a.dH2, a.H1, out), out)[1]


def hidden_backward(a: Arrays, impl: str):
    """dH1 = (dZ W2ᵀ) * 1[H1 > 0], dH2 never stored by the fused kernels."""
    out, dH2 = a.empty(*a.dH2.shape), a.empty(*a.dH2.shape)
    W2t = np.ascontiguousarray(a.W2.T)
    if impl == "numpy":
        return lambda: (a.dZ @ a.W2.T) * (a.H1 > 0)
    if impl == "fastmlp":
        return lambda: (K.hidden_backward(a.dZ, a.W2, a.H1, a.H2, K.RELU, out), out)[1]
    if impl == "fastmlp-nt":
        return lambda: (K.hidden_backward_t(a.dZ, W2t, a.H1, a.H2, K.RELU, out), out)[1]

    def run():  # fastmlp-blas: BLAS product, then the mask
        K.input_grad_blas(a.dZ, a.W2, dH2)
        K.relu_backward(dH2, a.H1, out)
        return out

    return run


def bias_grad(a: Arrays, impl: str):
    """db1 = 1ᵀ dH1 (column sums)."""
    out = a.empty(a.dH1.shape[1])
    if impl == "numpy":
        return lambda: a.dH1.sum(axis=0)
    kernel = K.bias_grad if impl == "fastmlp" else K.bias_grad_serial
    return lambda: (kernel(a.dH1, out), out)[1]


def _weight_grad(A, G, W, reg, impl, a: Arrays):
    """dW = Aᵀ G + reg W for the layer input A (B, D) and output gradient G (B, H)."""
    D, H = W.shape
    B = A.shape[0]
    out = a.empty(D, H)
    At, Gt, outT = a.empty(D, B), a.empty(H, B), a.empty(H, D)
    Wt = np.ascontiguousarray(W.T)
    if impl == "numpy":
        return lambda: A.T @ G + reg * W
    if impl == "fastmlp-loops":
        return lambda: (K.weight_grad(A, G, W, reg, out), out)[1]
    if impl == "fastmlp-blas":
        return lambda: (K.weight_grad_blas(A, G, W, reg, out), out)[1]

    def run():  # fastmlp-nt: dWᵀ = Gᵀ (Aᵀ)ᵀ with both transposes made, as the solver does
        K.transpose(A, a.no_rows, At)  # (D, B)
        K.transpose_serial(G, a.no_rows, Gt)  # (H, B)
        K.matmul_nt(Gt, a.no_rows, At, a.no_bias, outT)  # (H, D)
        K.add_scaled(outT, reg, Wt)
        return outT.T

    return run


def weight_grad_W1(a: Arrays, impl: str):
    """dW1 = Xᵀ dH1 + reg W1, (D, H)."""
    return _weight_grad(a.X, a.dH1, a.W1, a.reg, impl, a)


def weight_grad_W2(a: Arrays, impl: str):
    """dW2 = H2ᵀ dZ + reg W2, (H, C)."""
    return _weight_grad(a.H2, a.dZ, a.W2, a.reg, impl, a)


class _UpdateState:
    """Parameters and optimizer state of W1's shape, updated in place by each call."""

    def __init__(self, a: Arrays):
        dt = a.W1.dtype
        self.p = a.W1.copy()
        self.g = (a.X.T @ a.dH1).astype(dt)
        self.s1 = np.zeros_like(self.p)
        self.s2 = np.zeros_like(self.p)
        self.lr, self.mom = dt.type(LR), dt.type(MOMENTUM)
        self.b1, self.b2, self.eps = dt.type(BETA1), dt.type(BETA2), dt.type(EPS)


def sgd_update(a: Arrays, impl: str, state=None):
    """v = m v - lr g; p += m v - lr g (Nesterov); returns p."""
    s = state or _UpdateState(a)
    if impl == "numpy":

        def run():
            s.s1 *= s.mom
            s.s1 -= s.lr * s.g
            s.p += s.mom * s.s1 - s.lr * s.g
            return s.p

        return run
    return lambda: (K.sgd_update(s.p, s.g, s.s1, s.lr, s.mom, True), s.p)[1]


def adam_update(a: Arrays, impl: str, state=None):
    """Adam's moments and step, bias correction folded into the step size; returns p."""
    s = state or _UpdateState(a)
    step = s.lr * np.sqrt(1 - s.b2) / (1 - s.b1)
    if impl == "numpy":

        def run():
            s.s1 *= s.b1
            s.s1 += (1 - s.b1) * s.g
            s.s2 *= s.b2
            s.s2 += (1 - s.b2) * s.g * s.g
            s.p -= step * s.s1 / (np.sqrt(s.s2) + s.eps)
            return s.p

        return run
    return lambda: (K.adam_update(s.p, s.g, s.s1, s.s2, step, s.b1, s.b2, s.eps), s.p)[1]


OPS = {
    "forward": (forward, ["numpy", "fastmlp-loops", "fastmlp-nt", "fastmlp-blas"]),
    "gather_forward": (gather_forward, ["numpy", "fastmlp-nt", "fastmlp-blas"]),
    "logits": (logits, ["numpy", "fastmlp-loops", "fastmlp-nt", "fastmlp-blas"]),
    "softmax_cross_entropy": (softmax_cross_entropy, ["numpy", "fastmlp", "fastmlp-serial"]),
    "relu_backward": (relu_backward, ["numpy", "fastmlp", "fastmlp-serial"]),
    "hidden_backward": (hidden_backward, ["numpy", "fastmlp", "fastmlp-nt", "fastmlp-blas"]),
    "bias_grad": (bias_grad, ["numpy", "fastmlp", "fastmlp-serial"]),
    "weight_grad_W1": (weight_grad_W1, ["numpy", "fastmlp-loops", "fastmlp-nt", "fastmlp-blas"]),
    "weight_grad_W2": (weight_grad_W2, ["numpy", "fastmlp-loops", "fastmlp-nt", "fastmlp-blas"]),
    "sgd_update": (sgd_update, ["numpy", "fastmlp"]),
    "adam_update": (adam_update, ["numpy", "fastmlp"]),
}
CASES = [(op, impl) for op, (_, impls) in OPS.items() for impl in impls]
UPDATES = ("sgd_update", "adam_update")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(("op", "impl"), CASES, ids=[f"{o}-{i}" for o, i in CASES])
def test_kernel(benchmark, op, impl, shape, dtype):
    a = arrays(shape, dtype)
    build = OPS[op][0]
    if op in UPDATES:
        # one update from a fresh state against NumPy's, then time on a running state
        got = np.array(build(a, impl)())
        want = build(a, "numpy")()
    else:
        got = np.array(build(a, impl)())  # first call: JIT compile or cache load
        want = build(a, "numpy")()
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want, **tolerance(dtype))
    benchmark.group = f"{op}|{shape}/{dtype}"
    benchmark.extra_info.update(op=op, impl=impl, shape="x".join(map(str, SHAPES[shape])))
    run = build(a, impl)
    run()
    benchmark(run)
