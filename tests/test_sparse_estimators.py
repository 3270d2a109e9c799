"""The estimators on sparse ``X``: never densified, the model of a dense fit of ``X.toarray()``.

Issue 10. A sparse fit trains on the CSR's arrays with the sparse solvers
(:mod:`fastmlp.solvers_sparse`); with the default ``sparse_updates="exact"`` it
must give the weights of a fit on ``X.toarray()`` to float rounding, for every
solver, both estimators and both working dtypes. Malformed matrices are refused
with a ``ValueError`` naming ``X`` before any compiled code reads them, and the
caller's matrix is never modified.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from fastmlp import TwoLayerClassifier, TwoLayerRegressor, forward_backward

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# solver name -> keywords; sgd without momentum, with momentum, with Nesterov's
SOLVERS = {
    "sgd": {"solver": "sgd", "momentum": 0.0, "learning_rate_init": 0.05},
    "sgd-momentum": {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": False,
                     "learning_rate_init": 0.02},
    "sgd-nesterov": {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True,
                     "learning_rate_init": 0.02},
    "adam": {"solver": "adam", "learning_rate_init": 0.01},
    "lbfgs": {"solver": "lbfgs"},
}
# float rounding of a few epochs: the sparse and dense sums run in other orders
TOL = {np.float32: {"rtol": 2e-4, "atol": 2e-5}, np.float64: {"rtol": 1e-9, "atol": 1e-11}}


def _awkward_csr(n=120, d=60, density=0.08, seed=0):
    """A CSR with empty rows and columns, unsorted indices, duplicates and explicit zeros."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", random_state=seed,
                  data_rvs=lambda k: rng.uniform(0.1, 2.0, k))
    X = X.tolil()
    X[3, :] = 0  # an empty row
    X[:, 5] = 0  # an empty column
    X = X.tocsr()
    # rebuild with duplicates, unsorted indices and an explicit zero
    coo = X.tocoo()
    rows = np.concatenate([coo.row, coo.row[:7], [0]])
    cols = np.concatenate([coo.col, coo.col[:7], [1]])
    vals = np.concatenate([coo.data, 0.5 * coo.data[:7], [0.0]])
    perm = rng.permutation(rows.size)
    order = np.argsort(rows[perm], kind="stable")  # rows in order, columns shuffled in a row
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    M = sp.csr_matrix((vals[perm][order], cols[perm][order], indptr), shape=(n, d))
    assert not M.has_canonical_format
    return M


def _targets(X, kind, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(X.shape[1], 3))
    S = np.asarray(X @ w)
    if kind == "classifier":
        return np.argmax(S + 0.3 * rng.normal(size=S.shape), axis=1)
    return S[:, 0] + 0.1 * rng.normal(size=S.shape[0])


def _make(kind, dtype, solver, **kw):
    cls = TwoLayerClassifier if kind == "classifier" else TwoLayerRegressor
    base = {"hidden_units": 7, "max_iter": 4, "batch_size": 32, "random_state": 0,
            "alpha": 1e-3, "dtype": dtype, "tol": 0.0, "n_iter_no_change": 100}
    if solver == "lbfgs":
        base["max_iter"] = 15
    return cls(**{**base, **SOLVERS[solver], **kw})


def _assert_same_model(a, b, dtype, loss_rtol=None):
    for pa, pb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert pa.dtype == dtype
        np.testing.assert_allclose(pa, pb, **TOL[dtype])
    if loss_rtol is None:
        loss_rtol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=loss_rtol)


@pytest.fixture(autouse=True)
def _no_densifying(monkeypatch):
    """Fail any test here whose code turns a scipy sparse matrix into a dense array."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("a sparse matrix was densified")

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array, sp.coo_array):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    yield


def _dense(X):
    """X.toarray() for the test's own reference fits (past the guard above)."""
    coo = sp.coo_matrix(X)
    out = np.zeros(coo.shape, dtype=np.float64)
    np.add.at(out, (coo.row, coo.col), coo.data)
    return out


# ------------------------------------------------------------ sparse == dense
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_sparse_fit_equals_dense_fit(kind, solver, dtype):
    X = _awkward_csr()
    y = _targets(X, kind)
    Xd = _dense(X)
    a = _make(kind, dtype, solver).fit(X, y)
    b = _make(kind, dtype, solver).fit(Xd, y)
    _assert_same_model(a, b, dtype)
    assert a.n_iter_ == b.n_iter_
    Xt = _awkward_csr(n=50, seed=1)
    Xtd = _dense(Xt)
    if kind == "classifier":
        np.testing.assert_array_equal(a.predict(Xt), b.predict(Xtd))
        np.testing.assert_allclose(a.predict_proba(Xt), b.predict_proba(Xtd), **TOL[dtype])
        np.testing.assert_allclose(a.predict_log_proba(Xt), b.predict_log_proba(Xtd),
                                   rtol=1e-3 if dtype == np.float32 else 1e-8, atol=1e-4)
        # the same model predicts the same on both inputs
        np.testing.assert_allclose(a.predict_proba(Xt), a.predict_proba(Xtd), **TOL[dtype])
        assert a.score(Xt, a.predict(Xtd)) == 1.0
    else:
        np.testing.assert_allclose(a.predict(Xt), b.predict(Xtd), **TOL[dtype])
        np.testing.assert_allclose(a.score(Xt, _targets(Xt, kind)),
                                   b.score(Xtd, _targets(Xt, kind)), rtol=1e-4)


@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam", "lbfgs"])
def test_poisson_and_multilabel_outputs(solver):
    # the exp output (Poisson deviance) and the logistic output (multilabel)
    X = _awkward_csr()
    y = np.abs(_targets(X, "regressor"))
    a = _make("regressor", np.float64, solver, loss="poisson").fit(X, y)
    b = _make("regressor", np.float64, solver, loss="poisson").fit(_dense(X), y)
    _assert_same_model(a, b, np.float64)
    np.testing.assert_allclose(a.predict(X), b.predict(_dense(X)), rtol=1e-9)
    Y = np.stack([_targets(X, "classifier", seed=s) == 0 for s in range(3)], axis=1)
    a = _make("classifier", np.float64, solver).fit(X, Y.astype(int))
    b = _make("classifier", np.float64, solver).fit(_dense(X), Y.astype(int))
    _assert_same_model(a, b, np.float64)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(_dense(X)), rtol=1e-9)
    np.testing.assert_array_equal(a.predict(X), b.predict(_dense(X)))


@pytest.mark.parametrize("fmt", ["csc", "coo", "int", "float64", "csr_array", "int64-indices"])
def test_other_formats_converted_once(fmt):
    X = sp.random(80, 30, density=0.15, format="csr", random_state=3,
                  data_rvs=lambda k: np.random.default_rng(3).integers(1, 4, k)).astype(np.float32)
    X.sum_duplicates()
    y = _targets(X, "classifier")
    if fmt == "int":
        Xf = X.astype(np.int32)
    elif fmt == "float64":
        Xf = X.astype(np.float64)
    elif fmt == "csr_array":
        Xf = sp.csr_array(X)
    elif fmt == "int64-indices":
        Xf = sp.csr_matrix((X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64)),
                           shape=X.shape)
        Xf.indices = X.indices.astype(np.int64)
        Xf.indptr = X.indptr.astype(np.int64)
    else:
        Xf = X.asformat(fmt)
    a = _make("classifier", np.float32, "adam").fit(X, y)
    b = _make("classifier", np.float32, "adam").fit(Xf, y)
    _assert_same_model(a, b, np.float32)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(Xf))


def test_early_stopping_split_stays_sparse():
    X = _awkward_csr(n=200)
    y = _targets(X, "classifier")
    kw = {"early_stopping": True, "validation_fraction": 0.2, "max_iter": 6,
          "n_iter_no_change": 2, "tol": 1e-3}
    a = _make("classifier", np.float64, "adam", **kw).fit(X, y)
    b = _make("classifier", np.float64, "adam", **kw).fit(_dense(X), y)
    _assert_same_model(a, b, np.float64)
    np.testing.assert_allclose(a.validation_scores_, b.validation_scores_)
    np.testing.assert_allclose(a.validation_loss_curve_, b.validation_loss_curve_, rtol=1e-9)
    assert a.best_validation_score_ == b.best_validation_score_
    r = _make("regressor", np.float64, "sgd", **kw).fit(X, _targets(X, "regressor"))
    r2 = _make("regressor", np.float64, "sgd", **kw).fit(_dense(X), _targets(X, "regressor"))
    np.testing.assert_allclose(r.validation_scores_, r2.validation_scores_, rtol=1e-9)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_partial_fit_sequence(kind):
    X = _awkward_csr(n=150)
    y = _targets(X, kind)
    Xd = _dense(X)
    a = _make(kind, np.float32, "sgd-nesterov")
    b = _make(kind, np.float32, "sgd-nesterov")
    extra = {"classes": np.unique(y)} if kind == "classifier" else {}
    for lo, hi in ((0, 60), (60, 150), (0, 150)):
        a.partial_fit(X[lo:hi], y[lo:hi], **extra)
        b.partial_fit(Xd[lo:hi], y[lo:hi], **extra)
    _assert_same_model(a, b, np.float32)
    # a dense batch after sparse ones (and back) continues the same model
    a.partial_fit(Xd[:40], y[:40])
    b.partial_fit(X[:40], y[:40])
    _assert_same_model(a, b, np.float32)


def test_sample_weight_and_class_weight():
    X = _awkward_csr(n=150)
    y = _targets(X, "classifier")
    sw = np.random.default_rng(5).uniform(0, 3, X.shape[0])
    for kw in ({"class_weight": "balanced"}, {"class_weight": {0: 2.0, 1: 0.5, 2: 1.0}}, {}):
        for solver in ("adam", "lbfgs"):
            a = _make("classifier", np.float64, solver, **kw).fit(X, y, sample_weight=sw)
            b = _make("classifier", np.float64, solver, **kw).fit(_dense(X), y, sample_weight=sw)
            _assert_same_model(a, b, np.float64)
    # a zero weight removes a row: the same model as without it (full batch)
    keep = np.ones(X.shape[0], bool)
    keep[::5] = False
    a = _make("regressor", np.float64, "lbfgs").fit(X, _targets(X, "regressor"),
                                                    sample_weight=keep.astype(float))
    b = _make("regressor", np.float64, "lbfgs").fit(X[keep], _targets(X, "regressor")[keep])
    _assert_same_model(a, b, np.float64)


def test_same_data_same_model():
    X = _awkward_csr()
    y = _targets(X, "classifier")
    for updates in ("exact", "lazy"):
        a = _make("classifier", np.float32, "adam", sparse_updates=updates).fit(X, y)
        b = _make("classifier", np.float32, "adam", sparse_updates=updates).fit(X, y)
        for pa, pb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
            np.testing.assert_array_equal(pa, pb)


# ------------------------------------------------------------ lazy updates
@pytest.mark.parametrize("solver", ["sgd", "sgd-momentum", "sgd-nesterov"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_lazy_sgd_is_exact(kind, solver):
    # closed-form catch-up: the lazy SGD epoch equals the exact one to rounding
    X = _awkward_csr(n=160, d=200, density=0.02)
    y = _targets(X, kind)
    a = _make(kind, np.float64, solver, sparse_updates="lazy").fit(X, y)
    b = _make(kind, np.float64, solver).fit(X, y)
    # the weights to rounding; the reported loss takes its L2 term from rows as
    # stored (a row not yet caught up counts with its older value): 1e-6 close
    _assert_same_model(a, b, np.float64, loss_rtol=1e-6)


def _text_like(n, d, classes, seed):
    """Documents of Zipf-distributed words; each class favours its own words."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, d + 1)
    base = 1.0 / ranks**1.1
    prefs = []
    for _ in range(classes):
        p = base.copy()
        own = rng.choice(d, size=d // 10, replace=False)
        p[own] *= 4.0
        prefs.append(p / p.sum())
    y = rng.integers(0, classes, n)
    lengths = rng.integers(10, 40, n)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([rng.choice(d, size=k, p=prefs[c]) for c, k in zip(y, lengths,
                                                                                 strict=True)])
    X = sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=(n, d))
    X.sum_duplicates()
    X.data = np.log1p(X.data)
    X = sp.diags(1.0 / np.sqrt(X.multiply(X).sum(axis=1).A.ravel())) @ X
    return X.tocsr().astype(np.float32), y


def test_lazy_adam_accuracy_within_one_point_on_text():
    X, y = _text_like(5000, 3000, 5, seed=0)
    Xt, yt = X[:2000], y[:2000]
    Xtr, ytr = X[2000:], y[2000:]
    kw = {"hidden_units": 32, "max_iter": 5, "random_state": 0, "learning_rate_init": 0.003}
    exact = TwoLayerClassifier(**kw).fit(Xtr, ytr).score(Xt, yt)
    lazy = TwoLayerClassifier(sparse_updates="lazy", **kw).fit(Xtr, ytr).score(Xt, yt)
    assert 0.5 < exact < 0.999  # a problem with something to learn and something left
    assert abs(lazy - exact) <= 0.01, (lazy, exact)


def test_sparse_updates_parameter():
    assert TwoLayerClassifier().get_params()["sparse_updates"] == "exact"
    assert TwoLayerRegressor(sparse_updates="lazy").get_params()["sparse_updates"] == "lazy"
    X = _awkward_csr()
    with pytest.raises(ValueError, match="sparse_updates"):
        TwoLayerClassifier(sparse_updates="fast").fit(X, _targets(X, "classifier"))
    # ignored on dense X: the same model either way
    Xd = _dense(X)
    y = _targets(X, "classifier")
    a = _make("classifier", np.float32, "adam", sparse_updates="lazy").fit(Xd, y)
    b = _make("classifier", np.float32, "adam").fit(Xd, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])


# ------------------------------------------------------------ bad input
def _tampered(kind):
    X = sp.random(20, 10, density=0.3, format="csr", random_state=0, dtype=np.float64)
    X = X.copy()
    if kind == "negative index":
        X.indices[0] = -1
    elif kind == "index >= n_features":
        X.indices[-1] = 10
    elif kind == "indptr past the end":
        X.indptr[-1] = X.indices.size + 5
    elif kind == "indptr not monotone":
        X.indptr[5], X.indptr[6] = X.indptr[6] + 1, X.indptr[5]
    elif kind == "indptr not from 0":
        X.indptr[0] = 1
    elif kind == "NaN":
        X.data[2] = np.nan
    elif kind == "inf":
        X.data[2] = np.inf
    elif kind == "too large for float32":
        X.data[2] = 1e300
    elif kind == "short data":
        X.data = X.data[:-1]
    return X


BAD = ["negative index", "index >= n_features", "indptr past the end", "indptr not monotone",
       "indptr not from 0", "NaN", "inf", "too large for float32", "short data"]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_malformed_matrix_refused_naming_X(bad, solver):
    X = _tampered(bad)
    y = np.arange(20) % 2
    est = TwoLayerClassifier(hidden_units=4, max_iter=2, solver=solver, random_state=0)
    with pytest.raises(ValueError, match=r"\bX\b"):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")  # nothing half-fitted
    good = sp.random(20, 10, density=0.3, format="csr", random_state=0)
    est.fit(good, y)
    before = [p.copy() for p in est.coefs_]
    for method in (est.predict, est.predict_proba, est.predict_log_proba):
        with pytest.raises(ValueError, match=r"\bX\b"):
            method(X)
    with pytest.raises(ValueError, match=r"\bX\b"):
        est.score(X, y)
    if solver != "lbfgs":
        with pytest.raises(ValueError, match=r"\bX\b"):
            est.partial_fit(X, y)
    for p, q in zip(est.coefs_, before, strict=True):
        np.testing.assert_array_equal(p, q)  # a refused partial_fit leaves the model
    if bad != "too large for float32":  # forward_backward works in float64 here
        with pytest.raises(ValueError, match=r"\bX\b"):
            forward_backward(X, y, np.ones((10, 3)), np.zeros(3), np.ones((3, 2)), np.zeros(2))


@pytest.mark.parametrize("bad", ["negative index", "index >= n_features", "NaN"])
@pytest.mark.parametrize("fmt", ["csc", "coo"])
def test_malformed_other_formats(bad, fmt):
    X = _tampered("ok")
    X = X.asformat(fmt)
    if fmt == "coo":
        if bad == "negative index":
            X.col[0] = -1
        elif bad == "index >= n_features":
            X.col[0] = 10
        else:
            X.data[0] = np.nan
    else:
        if bad == "negative index":
            X.indices[0] = -1
        elif bad == "index >= n_features":
            X.indices[0] = 20  # rows of a CSC
        else:
            X.data[0] = np.nan
    with pytest.raises(ValueError, match=r"\bX\b"):
        TwoLayerRegressor(hidden_units=3, max_iter=1).fit(X, np.ones(20))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_predict_on_a_non_canonical_csr_is_predict_on_its_canonical_form(kind, dtype):
    # prediction validates X but does not sort it (the forward product needs no order)
    X = _awkward_csr()
    est = _make(kind, dtype, "adam").fit(X, _targets(X, kind))
    Xt = _awkward_csr(n=50, seed=1)  # unsorted, duplicates, an explicit zero
    C = Xt.copy()
    C.sum_duplicates()
    assert C.has_canonical_format and not Xt.has_canonical_format
    out = est.predict_proba if kind == "classifier" else est.predict
    np.testing.assert_allclose(out(Xt), out(C), **TOL[dtype])
    np.testing.assert_allclose(out(Xt), out(_dense(Xt)), **TOL[dtype])


def test_wrong_width_refused():
    X = sp.random(20, 10, density=0.3, format="csr", random_state=0)
    est = TwoLayerClassifier(hidden_units=4, max_iter=2, random_state=0).fit(X, np.arange(20) % 2)
    with pytest.raises(ValueError, match="features"):
        est.predict(sp.random(5, 11, density=0.3, format="csr", random_state=0))


def test_callers_matrix_untouched():
    X = _awkward_csr()  # not canonical: scipy's sort_indices/sum_duplicates would rewrite it
    y = _targets(X, "classifier")
    arrays = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    flags = X.has_sorted_indices
    for solver in ("sgd", "adam", "lbfgs"):
        est = _make("classifier", np.float32, solver).fit(X, y)
        est.predict_proba(X)
        est.score(X, y)
    _make("classifier", np.float32, "sgd", sparse_updates="lazy").fit(X, y)
    _make("classifier", np.float32, "adam", early_stopping=True).fit(X, y)
    forward_backward(X, y, np.ones((60, 3)), np.zeros(3), np.ones((3, 3)), np.zeros(3))
    for a, b in zip((X.data, X.indices, X.indptr), arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    assert X.has_sorted_indices == flags
    # read-only arrays (a memory map) are read, never written
    R = sp.csr_matrix((X.data.copy(), X.indices.copy(), X.indptr.copy()), shape=X.shape)
    R.sum_duplicates()
    for a in (R.data, R.indices, R.indptr):
        a.flags.writeable = False
    _make("classifier", np.float32, "adam").fit(R, y).predict(R)


# ------------------------------------------------------------ forward_backward
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_backward_sparse(backend, dtype):
    X = _awkward_csr(n=12, d=9, density=0.3).astype(dtype)
    rng = np.random.default_rng(0)
    W1, b1 = rng.normal(size=(9, 4)).astype(dtype), rng.normal(size=4).astype(dtype)
    W2, b2 = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=3).astype(dtype)
    y = np.arange(12) % 3
    a = forward_backward(X, y, W1, b1, W2, b2, alpha=0.1, backend=backend)
    b = forward_backward(_dense(X).astype(dtype), y, W1, b1, W2, b2, alpha=0.1, backend=backend)
    assert a.dW1.dtype == dtype
    for name in ("H0", "H1", "Z", "P", "dZ", "dW2", "dH1", "db1", "dW1", "dX"):
        np.testing.assert_allclose(a[name], b[name], **TOL[dtype], err_msg=name)
    np.testing.assert_allclose(a.loss, b.loss, rtol=TOL[dtype]["rtol"])


def test_warning_free_sparse_fit():
    # a sparse fit to convergence warns no more than a dense one
    X = _awkward_csr()
    y = _targets(X, "classifier")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        TwoLayerClassifier(hidden_units=5, max_iter=3, random_state=0).fit(X, y).predict(X)
