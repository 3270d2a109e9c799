"""Sparse X: kernels against scipy's products, epochs and predict_proba against MLPClassifier.

Groups ``sparse_forward|{shape}/{dtype}``, ``sparse_dW1|{shape}/{dtype}``,
``sparse_epoch|{shape}/{dtype}`` and ``sparse_predict_proba|{shape}/{dtype}`` on
synthetic documents with Zipf-distributed words (``fastmlp.bench_sparse.zipf_documents``).
In the ordinary test run (``--benchmark-disable``) each function runs once, as
a smoke test, on 2,000 x 5,000 documents; with ``--benchmark-enable``, 20,000 x
50,000 (``FASTMLP_BENCH_ROWS`` overrides the rows). Implementations:

- ``scipy``: the CSR product ``X @ W1`` / ``X.T @ dH1`` (forward, dW1);
- ``fastmlp``: the sparse kernels (``sparse_linear_forward_serial``;
  ``group_by_feature`` + ``sparse_weight_grad_grouped_serial``), one epoch of
  ``TwoLayerClassifier(sparse_updates=...).partial_fit`` for ``exact`` and ``lazy``;
- ``sklearn``: ``MLPClassifier.partial_fit`` (one epoch), its ``predict_proba``.

For the ratios with peak memory and accuracy on real text, run
``python -m fastmlp bench --sparse`` (or ``benchmarks/sparse_per_epoch.py``).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from benchutil import timing_enabled

from fastmlp import _sparse
from fastmlp import kernels_sparse as KS
from fastmlp.bench_sparse import zipf_documents

H, C, B = 100, 10, 200
_DATA: dict = {}


@pytest.fixture(scope="module")
def docs(request):
    """``get(dtype)``: (X, y, arrays) of the synthetic documents, cached per dtype."""
    timed = timing_enabled(request.config)
    rows = int(os.environ.get("FASTMLP_BENCH_ROWS", 20_000 if timed else 2_000))
    features = 50_000 if timed else 5_000

    def get(dtype):
        key = (rows, features, dtype)
        if key not in _DATA:
            X, y = zipf_documents(rows, features, 50, classes=C)
            X = X.astype(dtype)
            _DATA[key] = (X, y % C, _sparse.check_csr(X, dtype))
        return _DATA[key]

    return get


def _shape(X):
    return f"{X.shape[0]}x{X.shape[1]}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", ["scipy", "fastmlp"])
def test_sparse_forward(benchmark, docs, impl, dtype):
    X, _, (data, indices, indptr) = docs(dtype)
    W1 = np.random.default_rng(0).normal(size=(X.shape[1], H)).astype(dtype)
    rows = np.arange(B, dtype=np.int64)
    out = np.empty((B, H), dtype)
    Xb = X[:B]
    benchmark.group = f"sparse_forward|{_shape(X)}/{dtype}"
    if impl == "scipy":
        result = benchmark(lambda: Xb @ W1)
    else:
        def run():
            KS.sparse_linear_forward_serial(data, indices, indptr, rows, W1, W1[0, :0], out)
            return out

        result = benchmark(run)
    np.testing.assert_allclose(result, Xb @ W1, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", ["scipy", "fastmlp"])
def test_sparse_dW1(benchmark, docs, impl, dtype):
    X, _, (data, indices, indptr) = docs(dtype)
    D = X.shape[1]
    G = np.random.default_rng(1).normal(size=(B, H)).astype(dtype)
    rows = np.arange(B, dtype=np.int64)
    nnz = int(indptr[B])
    bufs = (np.zeros(D, np.uint8), np.empty(D, np.int64), np.empty(D, np.int64),
            np.empty(D + 1, np.int64), np.empty(nnz, np.int64), np.empty(nnz, dtype))
    out = np.zeros((D, H), dtype)
    XbT = X[:B].T.tocsr()
    benchmark.group = f"sparse_dW1|{_shape(X)}/{dtype}"
    if impl == "scipy":
        result = benchmark(lambda: XbT @ G)  # dense (D, H), as scipy returns it
        touched = np.unique(indices[:nnz])
        got = result[touched]
    else:
        marker, slot, touched_buf, start, ent_row, ent_val = bufs

        def run():
            count = KS.group_by_feature(data, indices, indptr, rows, marker, slot, touched_buf,
                                        start, ent_row, ent_val)
            KS.sparse_weight_grad_grouped_serial(touched_buf, count, start, ent_row, ent_val, G,
                                                 out)
            return count

        count = benchmark(run)
        touched = touched_buf[:count]
        got = out[touched]
    np.testing.assert_allclose(got, (XbT @ G)[touched], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", ["fastmlp-exact", "fastmlp-lazy", "sklearn"])
def test_sparse_epoch(benchmark, docs, impl, dtype):
    from sklearn.neural_network import MLPClassifier

    from fastmlp import TwoLayerClassifier

    X, y, _ = docs(dtype)
    classes = np.arange(C)
    if impl == "sklearn":
        model = MLPClassifier(hidden_layer_sizes=(H,), random_state=0)
    else:
        model = TwoLayerClassifier(hidden_units=H, random_state=0, dtype=dtype,
                                   sparse_updates=impl.split("-")[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(X[:B], y[:B], classes=classes)  # compile / load outside the timing
    benchmark.group = f"sparse_epoch|{_shape(X)}/{dtype}"
    benchmark(model.partial_fit, X, y)
    assert model.loss_curve_[-1] < model.loss_curve_[0] + 1.0
    assert np.isfinite(model.coefs_[0]).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", ["fastmlp", "sklearn"])
def test_sparse_predict_proba(benchmark, docs, impl, dtype):
    from sklearn.neural_network import MLPClassifier

    from fastmlp import TwoLayerClassifier

    X, y, _ = docs(dtype)
    if impl == "sklearn":
        model = MLPClassifier(hidden_layer_sizes=(H,), random_state=0, max_iter=1)
    else:
        model = TwoLayerClassifier(hidden_units=H, random_state=0, dtype=dtype, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X[: 4 * B], y[: 4 * B])
    rows = X[: min(10_000, X.shape[0])]
    model.predict_proba(rows[:2])
    benchmark.group = f"sparse_predict_proba|{_shape(X)}/{dtype}"
    P = benchmark(model.predict_proba, rows)
    assert P.shape == (rows.shape[0], len(model.classes_))
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-4)
