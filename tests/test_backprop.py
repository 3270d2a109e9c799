"""``forward_backward``: gradients against finite differences, Numba against NumPy, the API."""

from __future__ import annotations

import re

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp import BackpropResult, forward_backward, reference
from fastmlp.backprop import GRADIENTS, NODES

BACKENDS = ["numba", "numpy"]
PARAM_NAMES = ("W1", "b1", "W2", "b2")


# ------------------------------------------------------------ finite differences
def relative_error(analytic, numeric):
    """``|a - n| / max(|a| + |n|, tiny)`` over the whole array (2-norms).

    Taken over the array rather than per entry: the central difference carries a
    rounding error of about eps * |L| / h ~ 1e-10 in every entry, which would
    swamp the per-entry ratio of any entry whose true gradient is below ~1e-4.
    """
    diff = np.linalg.norm(analytic - numeric)
    return diff / max(np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-30)


def numeric_gradient(f, arrays, name, h=1e-6):
    """Central difference ``(f(x + h) - f(x - h)) / 2h`` of ``f()`` in each entry of one array."""
    x = arrays[name]
    grad = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        up = f()
        x[idx] = old - h
        down = f()
        x[idx] = old
        grad[idx] = (up - down) / (2 * h)
    return grad


def kink_free_problem(make_problem, n, D, H, C, activation, seed):
    """A float64 problem whose hidden pre-activations stay clear of ReLU's kink.

    ReLU is not differentiable at 0: if an entry of H1 were within the finite
    difference step of 0, the central difference would straddle the kink and
    disagree with either one-sided derivative. Resampling until every |H1| >= 1e-3
    (1000 steps of h = 1e-6 times |X| or |W1| entries of O(1)) keeps both
    evaluations on the same side. Every hidden unit is also kept active on some
    row, so no gradient array is identically zero (a zero gradient makes the
    relative error meaningless noise over noise).
    """
    for attempt in range(200):
        p = make_problem(n, D, H, C, seed=seed * 1000 + attempt)
        H1 = p.X @ p.W1 + p.b1
        if activation != "relu" or (np.abs(H1).min() >= 1e-3 and np.all((H1 > 0).any(axis=0))):
            return p
    raise AssertionError("no kink-free problem found")  # pragma: no cover


FD_SHAPES = [(1, 1, 1, 2), (1, 3, 4, 2), (5, 1, 3, 3), (4, 3, 1, 2), (6, 4, 5, 3)]


def check_gradients(p, backend, alpha, activation, sample_weight=None):
    arrays = {"X": p.X, "W1": p.W1, "b1": p.b1, "W2": p.W2, "b2": p.b2}
    kw = dict(alpha=alpha, activation=activation, backend=backend, sample_weight=sample_weight)

    def loss():
        return forward_backward(arrays["X"], p.y, *(arrays[k] for k in PARAM_NAMES), **kw).loss

    result = forward_backward(p.X, p.y, *p.params, **kw)
    for name in ("X", "W1", "b1", "W2", "b2"):
        numeric = numeric_gradient(loss, arrays, name)
        err = relative_error(result["d" + name], numeric)
        assert err < 1e-6, f"d{name}: relative error {err:.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize("shape", FD_SHAPES)
def test_gradients_match_finite_differences(make_problem, shape, alpha, backend):
    p = kink_free_problem(make_problem, *shape, activation="relu", seed=sum(shape))
    check_gradients(p, backend, alpha, "relu")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["tanh", "logistic", "identity"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (6, 4, 5, 3)])
def test_gradients_match_finite_differences_other_activations(
    make_problem, shape, activation, backend
):
    p = make_problem(*shape, seed=7)
    check_gradients(p, backend, 0.1, activation)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_finite_differences_sample_weight(make_problem, backend):
    p = kink_free_problem(make_problem, 6, 4, 5, 3, activation="relu", seed=3)
    sw = np.array([0.5, 2.0, 1.0, 0.0, 3.0, 0.25])  # one zero weight
    check_gradients(p, backend, 0.2, "relu", sample_weight=sw)


# ------------------------------------------------------- Numba against NumPy
MATCH_SHAPES = [(1, 1, 1, 2), (1, 5, 3, 2), (7, 1, 4, 3), (6, 3, 1, 2), (37, 13, 11, 5)]


def assert_results_match(a, b, dtype):
    """Every node and gradient of two results agree (float32: tolerance scaled per array)."""
    for name in NODES + GRADIENTS:
        x, y = a[name], b[name]
        assert x.dtype == y.dtype == dtype, name
        if dtype == np.float32:
            scale = max(float(np.abs(y).max()), 1e-30)
            assert_allclose(x, y, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
        else:
            assert_allclose(x, y, rtol=1e-10, atol=1e-13, err_msg=name)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert_allclose(a.loss, b.loss, rtol=rtol)


@pytest.mark.parametrize("blas", [False, True], ids=["loops", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", MATCH_SHAPES)
def test_numba_matches_reference(make_problem, shape, dtype, blas):
    p = make_problem(*shape, dtype=dtype, seed=1)
    numba_ = forward_backward(p.X, p.y, *p.params, alpha=0.1, backend="numba", blas=blas)
    numpy_ = forward_backward(p.X, p.y, *p.params, alpha=0.1, backend="numpy")
    assert_results_match(numba_, numpy_, dtype)


@pytest.mark.parametrize("activation", ["tanh", "logistic", "identity"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_matches_reference_activations(make_problem, activation, dtype):
    p = make_problem(9, 4, 6, 3, dtype=dtype, seed=2)
    sw = np.linspace(0.5, 2.0, 9).astype(dtype)
    kw = dict(alpha=0.05, sample_weight=sw, activation=activation)
    a = forward_backward(p.X, p.y, *p.params, backend="numba", **kw)
    b = forward_backward(p.X, p.y, *p.params, backend="numpy", **kw)
    assert_results_match(a, b, dtype)


@pytest.mark.parametrize("blas", [False, True], ids=["loops", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits(make_problem, dtype, blas):
    p = make_problem(5, 3, 4, 3, dtype=dtype, seed=4)
    b2 = np.array([1e3, -1e3, 0.0], dtype=dtype)  # logits of +-1e3
    results = [
        forward_backward(p.X, p.y, p.W1, p.b1, p.W2, b2, backend="numba", blas=blas),
        forward_backward(p.X, p.y, p.W1, p.b1, p.W2, b2, backend="numpy"),
    ]
    for r in results:
        assert np.isfinite(r.loss)
        assert np.all(np.isfinite(r.dZ)) and np.all(np.isfinite(r.dW1))
        assert_allclose(r.P.sum(axis=1), 1.0, rtol=1e-6 if dtype == np.float32 else 1e-12)
    # rows labelled 1 pay about 2e3 each, rows labelled 0 about nothing
    expected = 2e3 * np.mean(p.y == 1) + 1e3 * np.mean(p.y == 2)
    assert_allclose(results[0].loss, expected, rtol=1e-2, atol=5.0)
    # P = exp(z - lse) with z, lse ~ 1e3: float32 resolves them to ulp(1e3) ~ 6e-5
    tol = dict(rtol=1e-3, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-13)
    for name in ("Z", "P", "dZ", "dW2", "dW1", "dX"):
        assert_allclose(results[0][name], results[1][name], err_msg=name, **tol)


# ------------------------------------------------------------------------ API
@pytest.fixture
def small(make_problem):
    return make_problem(5, 3, 4, 3, seed=5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_result_mapping_and_attributes(small, backend):
    r = forward_backward(small.X, small.y, *small.params, backend=backend)
    assert isinstance(r, BackpropResult)
    names = ["loss", "H0", "H1", "H2", "H3", "Z", "P"]
    names += ["dZ", "dH3", "db2", "dW2", "dH2", "dH1", "dH0", "db1", "dW1", "dX"]
    assert list(r) == names and len(r) == len(names)
    assert list(r.keys()) == names
    for name in names:
        assert getattr(r, name) is r[name]
    assert isinstance(r.loss, float)
    # Z = H3 + b2 and H1 = H0 + b1 pass the gradient through: the same arrays
    assert r.dH3 is r.dZ and r.dH0 is r.dH1
    shapes = {"H0": (5, 4), "H1": (5, 4), "H2": (5, 4), "H3": (5, 3), "Z": (5, 3), "P": (5, 3)}
    shapes.update(dZ=(5, 3), db2=(3,), dW2=(4, 3), dH2=(5, 4), dH1=(5, 4), db1=(4,))
    shapes.update(dW1=(3, 4), dX=(5, 3))
    for name, shape in shapes.items():
        assert r[name].shape == shape, name
    with pytest.raises(AttributeError):
        r.dW1 = None
    with pytest.raises(AttributeError):
        _ = r.not_a_node
    with pytest.raises(KeyError):
        _ = r["not_a_node"]
    assert "BackpropResult(loss=" in repr(r)


@pytest.mark.parametrize("backend", BACKENDS)
def test_labels_and_one_hot_agree(small, backend):
    a = forward_backward(small.X, small.y, *small.params, backend=backend)
    b = forward_backward(small.X, small.Y, *small.params, backend=backend)
    c = forward_backward(small.X, small.y.astype(float), *small.params, backend=backend)
    for name in a:
        assert_array_equal(a[name], b[name], err_msg=name)
        assert_array_equal(a[name], c[name], err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_probability_targets(small, rng, backend):
    T = rng.dirichlet(np.ones(3), size=5)
    r = forward_backward(small.X, T, *small.params, backend=backend)
    H2 = np.maximum(small.X @ small.W1 + small.b1, 0)
    P = reference.softmax(H2 @ small.W2 + small.b2)
    # L = mean_i sum_c -T log P, dZ = (P - T) / n
    assert_allclose(r.loss, -(T * np.log(P)).sum(axis=1).mean(), rtol=1e-12)
    assert_allclose(r.dZ, (P - T) / 5, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dtype_rules(small, backend):
    f32 = [a.astype(np.float32) for a in (small.X, *small.params)]
    r = forward_backward(f32[0], small.y, *f32[1:], backend=backend)
    assert all(r[name].dtype == np.float32 for name in NODES + GRADIENTS)
    # any one float64 input makes everything float64
    for i in range(5):
        mixed = list(f32)
        mixed[i] = mixed[i].astype(np.float64)
        r = forward_backward(mixed[0], small.y, *mixed[1:], backend=backend)
        assert all(r[name].dtype == np.float64 for name in NODES + GRADIENTS), i
    # lists and integers are accepted and computed in float64
    r = forward_backward(small.X.tolist(), small.y.tolist(), *small.params, backend=backend)
    assert r.dW1.dtype == np.float64


@pytest.mark.parametrize("blas", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("y_kind", ["labels", "matrix"])
def test_inputs_not_modified_and_not_shared(small, backend, blas, y_kind):
    y = small.y if y_kind == "labels" else small.Y
    sw = np.linspace(0.5, 1.5, 5)
    inputs = {"X": small.X, "y": y, "W1": small.W1, "b1": small.b1, "W2": small.W2}
    inputs.update(b2=small.b2, sample_weight=sw)
    before = {k: v.copy() for k, v in inputs.items()}
    r = forward_backward(
        small.X, y, *small.params, alpha=0.5, sample_weight=sw, backend=backend, blas=blas
    )
    for k, v in inputs.items():
        assert_array_equal(v, before[k], err_msg=k)
    for name in NODES + GRADIENTS:
        for k, v in inputs.items():
            assert not np.shares_memory(r[name], v), (name, k)


# ---------------------------------------------------------------- error paths
def _bad_cases():
    """(id, keyword overrides, name the message must contain, extra pattern)."""
    n, D, H, C = 5, 3, 4, 3
    nan_at = lambda shape: np.where(np.arange(np.prod(shape)).reshape(shape) == 0, np.nan, 0.5)  # noqa: E731
    inf_at = lambda shape: np.where(np.arange(np.prod(shape)).reshape(shape) == 0, np.inf, 0.5)  # noqa: E731
    cases = [
        ("X-1d", {"X": np.ones(n)}, "X", "2-dimensional"),
        ("X-3d", {"X": np.ones((n, D, 1))}, "X", "2-dimensional"),
        ("X-no-rows", {"X": np.ones((0, D)), "y": np.zeros(0, int)}, "X", "at least one row"),
        ("X-strings", {"X": np.full((n, D), "a")}, "X", "real numbers"),
        ("X-complex", {"X": np.ones((n, D), complex)}, "X", "real numbers"),
        ("W1-1d", {"W1": np.ones(D)}, "W1", "2-dimensional"),
        ("W1-rows", {"W1": np.ones((D + 1, H))}, "W1", "n_features"),
        ("W1-no-columns", {"W1": np.ones((D, 0)), "b1": np.ones(0)}, "W1", "at least one"),
        ("b1-2d", {"b1": np.ones((H, 1))}, "b1", "1-dimensional"),
        ("b1-length", {"b1": np.ones(H + 1)}, "b1", "shape"),
        ("W2-rows", {"W2": np.ones((H + 1, C))}, "W2", "n_hidden"),
        ("W2-one-class", {"W2": np.ones((H, 1)), "b2": np.ones(1)}, "W2", "at least 2"),
        ("b2-length", {"b2": np.ones(C - 1)}, "b2", "shape"),
        ("b2-2d", {"b2": np.ones((1, C))}, "b2", "1-dimensional"),
        ("y-length", {"y": np.zeros(n - 1, int)}, "y", "labels"),
        ("y-3d", {"y": np.zeros((n, C, 1))}, "y", "class indices"),
        ("y-matrix-shape", {"y": np.full((n, C + 1), 1 / (C + 1))}, "y", "shape"),
        ("y-strings", {"y": np.array(list("abcde"))}, "y", "integer"),
        ("y-too-large", {"y": np.array([0, 1, 2, C, 0])}, "y", "0..2"),
        ("y-negative", {"y": np.array([0, -1, 2, 1, 0])}, "y", "0..2"),
        ("y-fraction", {"y": np.array([0, 1.5, 2, 1, 0])}, "y", "fraction"),
        ("y-nan", {"y": np.array([0, np.nan, 2, 1, 0])}, "y", "NaN"),
        ("y-inf", {"y": np.array([0, np.inf, 2, 1, 0])}, "y", "NaN or infinity"),
        ("y-matrix-nan", {"y": nan_at((n, C))}, "y", "NaN"),
        ("y-rows-sum", {"y": np.full((n, C), 0.5)}, "y", "sum to 1"),
        ("y-negative-prob", {"y": np.tile([1.5, -0.5, 0.0], (n, 1))}, "y", "non-negative"),
        ("backend", {"backend": "torch"}, "backend", "numba"),
        ("activation", {"activation": "softplus"}, "activation", "relu"),
        ("alpha-negative", {"alpha": -0.1}, "alpha", "non-negative"),
        ("alpha-nan", {"alpha": np.nan}, "alpha", "finite"),
        ("alpha-inf", {"alpha": np.inf}, "alpha", "finite"),
        ("sw-shape", {"sample_weight": np.ones(n + 1)}, "sample_weight", "shape"),
        ("sw-2d", {"sample_weight": np.ones((n, 1))}, "sample_weight", "1-dimensional"),
        (
            "sw-negative",
            {"sample_weight": np.array([1, 1, -1, 1, 1.0])},
            "sample_weight",
            "non-neg",
        ),
        ("sw-zero-sum", {"sample_weight": np.zeros(n)}, "sample_weight", "positive sum"),
        ("sw-nan", {"sample_weight": nan_at((n,))}, "sample_weight", "NaN"),
    ]
    shapes = {"X": (n, D), "W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}
    for name, shape in shapes.items():
        cases.append((f"{name}-nan", {name: nan_at(shape)}, name, "NaN"))
        cases.append((f"{name}-inf", {name: inf_at(shape)}, name, "infinity"))
    cases.append(("sw-inf", {"sample_weight": inf_at((n,))}, "sample_weight", "infinity"))
    return [pytest.param(over, name, pattern, id=i) for i, over, name, pattern in cases]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("overrides", "name", "pattern"), _bad_cases())
def test_bad_input_raises_value_error_naming_it(small, overrides, name, pattern, backend):
    args = {"X": small.X, "y": small.y, "W1": small.W1, "b1": small.b1, "W2": small.W2}
    args.update(b2=small.b2, backend=backend)
    args.update(overrides)
    with pytest.raises(ValueError, match=pattern) as info:
        forward_backward(**args)
    assert re.search(rf"\b{name}\b", str(info.value)), str(info.value)


# ------------------------------------------------------ ReLU at exactly H1 = 0
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_at_exactly_zero(dtype):
    """ReLU's backward pass gives 0 at H1 == 0 (and -0): dH2 * 1[H1 > 0], in every kernel.

    The convention of docs/backprop.md, section 6: the strict test H1 > 0, and a
    multiplication by 0 (not a write of 0), so an infinite dH2 at a masked entry
    becomes NaN, as in the NumPy reference.
    """
    from fastmlp import kernels as K

    H1 = np.array([[0.0, -0.0, 1e-30, -1e-30, 2.0], [-1.0, 0.0, 0.5, 0.0, -3.0]], dtype=dtype)
    H2 = reference.activation_forward(H1, "relu")
    dH2 = np.array([[0.5, -2.0, 3.0, 0.25, -1.5], [1.0, 4.0, -0.75, -8.0, 2.5]], dtype=dtype)
    mask = reference.activation_derivative(H1, H2, "relu")
    assert_array_equal(mask, [[0, 0, 1, 0, 1], [0, 0, 1, 0, 0]])
    expected = dH2 * mask
    for name in ("relu_backward", "relu_backward_serial"):
        out = np.full_like(dH2, np.nan)
        getattr(K, name)(dH2, H1, out)
        assert_array_equal(out, expected, err_msg=name)
    for name in ("activation_backward", "activation_backward_serial"):
        out = np.full_like(dH2, np.nan)
        getattr(K, name)(dH2, H1, H2, K.RELU, out)
        assert_array_equal(out, expected, err_msg=name)
    # the fused kernels of training: dH1 = (dZ W2ᵀ) * 1[H1 > 0], dH2 never stored
    dZ = np.array([[1.0, -2.0, 0.5], [0.25, 1.5, -1.0]], dtype=dtype)  # (n, C)
    W2 = np.array([[1.5, 1.5, -1.0], [1.5, 0.5, 1.0], [1.0, -0.5, 2.0], [-1.0, -0.5, 0.5],
                   [1.0, 0.5, -1.0]], dtype=dtype)  # (H, C)
    W2t = np.ascontiguousarray(W2.T)
    fused = (dZ @ W2.T) * mask
    assert np.all((dZ @ W2.T)[mask == 0] != 0)  # the masked entries had a gradient to drop
    runs = {
        "hidden_backward": lambda out: K.hidden_backward(dZ, W2, H1, H2, K.RELU, out),
        "hidden_backward_serial":
            lambda out: K.hidden_backward_serial(dZ, W2, H1, H2, K.RELU, out),
        "hidden_backward_t": lambda out: K.hidden_backward_t(dZ, W2t, H1, H2, K.RELU, out),
        "hidden_backward_t_serial":
            lambda out: K.hidden_backward_t_serial(dZ, W2t, H1, H2, K.RELU, out),
        "hidden_backward_bias_t": lambda out: K.hidden_backward_bias_t(
            dZ, W2t, H1, H2, K.RELU, out, np.full(H1.shape[1], np.nan, dtype)),
    }
    for name, run in runs.items():
        out = np.full_like(dH2, np.nan)
        run(out)
        assert np.all(out[mask == 0] == 0), name
        assert_allclose(out, fused, rtol=1e-6, err_msg=name)
    # an infinite gradient at a masked entry: inf * 0 = NaN, in the kernels and the reference
    bad = dH2.copy()
    bad[0, 0] = np.inf  # H1[0, 0] == 0
    with np.errstate(invalid="ignore"):  # inf * 0, on purpose
        ref = bad * reference.activation_derivative(H1, H2, "relu")
    out = np.zeros_like(bad)
    K.relu_backward(bad, H1, out)
    assert np.isnan(ref[0, 0]) and np.isnan(out[0, 0])
    assert_array_equal(out[1:], ref[1:])


@pytest.mark.parametrize("blas", [False, True], ids=["loops", "blas"])
def test_relu_at_exactly_zero_in_both_backends(blas):
    """Whole passes with pre-activations exactly 0 (integer data): both backends give 0 there."""
    X = np.array([[1.0, 2.0, 1.0], [-1.0, 1.0, 0.0], [2.0, 0.0, -2.0], [1.0, 1.0, 1.0]])
    W1 = np.array([[2.0, 0.0, 2.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 1.0]])
    b1 = np.array([0.0, 1.0, -1.0])
    W2 = np.array([[-1.0, -2.0], [2.0, 1.0], [-1.0, 2.0]])
    b2 = np.array([-1.0, 1.0])
    y = np.array([0, 1, 1, 0])
    H1 = X @ W1 + b1  # integers: the kernels' sums are exact too
    assert np.sum(H1 == 0) >= 3
    results = [forward_backward(X, y, W1, b1, W2, b2, backend="numba", blas=blas),
               forward_backward(X, y, W1, b1, W2, b2, backend="numpy")]
    for r in results:
        assert_array_equal(r.H1, H1)
        zero = r.H1 == 0
        assert np.all(r.dH2[zero] != 0)  # a gradient arrived there ...
        assert np.all(r.dH1[zero] == 0)  # ... and the ReLU sent none back
        assert_array_equal(r.dH1, r.dH2 * (r.H1 > 0))
    assert_allclose(results[0].dH1, results[1].dH1, rtol=1e-13, atol=1e-15)
    assert_allclose(results[0].dW1, results[1].dW1, rtol=1e-13, atol=1e-15)
