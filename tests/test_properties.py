"""Property-based tests (hypothesis): generated inputs against the estimators' promises.

Drawn: shapes (one row, one feature, more classes than rows through ``partial_fit``'s
``classes``), input dtypes, values (denormals, +-1e38, constant columns, NaN and
infinity now and then), CSR structures (empty rows, duplicate entries, unsorted
indices), sample weights (zeros, huge), parameters (solver, batch size, alpha, early
stopping, ...). The invariants, one test each:

- accepted exactly when ``MLPClassifier``/``MLPRegressor(hidden_layer_sizes=(h,))``
  accept (differences documented in ``_documented_difference``);
- the caller's arrays are unchanged, whether the call succeeds or fails;
- nothing half-fitted: a failed ``fit`` leaves no fitted attribute, a failed later
  ``partial_fit``/``fit`` leaves every attribute as it was, bit for bit;
- the same ``random_state`` gives the same model, bit for bit;
- a CSR fit equals the dense fit to float tolerance (``sparse_updates='exact'``);
- ``n_threads=1`` and ``n_threads=2`` agree to float tolerance, each bit-stable.

Every example runs a few epochs of a tiny problem; the whole file takes about a minute.
"""

from __future__ import annotations

import contextlib
import warnings
from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor

from fastmlp import TwoLayerClassifier, TwoLayerRegressor, solvers

# hypothesis' failure report imports a module that warns (DeprecationWarning); under
# pytest's warnings-as-errors it would turn a failing example into an INTERNALERROR
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# values that stress conversion and arithmetic: denormals of both dtypes, the float32
# range's edge, signed zero; mixed with ordinary numbers
SPECIAL = [5e-324, -1e-310, 2.2e-308, 1.4e-45, -1e-40, 1e38, -1e38, 0.0, -0.0, 1.0]
NONFINITE = [np.nan, np.inf, -np.inf]


def _quiet():
    """Warnings are not what these tests check (convergence, overflow inside a fit)."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(np.errstate(all="ignore"))
    return stack


# ------------------------------------------------------------------ strategies
@st.composite
def matrices(draw, n=None, d=None, special=SPECIAL, nonfinite=False, int_dtype=True):
    """A dense (n, d) array of a drawn dtype, maybe with a constant column."""
    n = draw(st.integers(1, 8)) if n is None else n
    d = draw(st.integers(1, 4)) if d is None else d
    ordinary = st.floats(-10, 10, allow_nan=False, width=32)
    pool = [ordinary]
    if special:
        pool.append(st.sampled_from(special))
    if nonfinite:
        pool.append(st.sampled_from(NONFINITE))
    values = draw(st.lists(st.one_of(*pool), min_size=n * d, max_size=n * d))
    X = np.array(values, dtype=np.float64).reshape(n, d)
    if d > 1 and draw(st.booleans()):
        X[:, draw(st.integers(0, d - 1))] = draw(st.sampled_from([0.0, 3.0, 1e-310]))
    dtypes = [np.float64, np.float32] + ([np.int64] if int_dtype else [])
    dtype = draw(st.sampled_from(dtypes))
    if dtype is np.int64:
        X = np.nan_to_num(np.clip(np.round(X), -1000, 1000))
    elif dtype is np.float32:
        X = np.clip(X, -1e38, 1e38)  # NaN and infinity stay
    if not draw(st.booleans()):
        X = np.asfortranarray(X)
    return X.astype(dtype)


@st.composite
def awkward_csr(draw, X):
    """The CSR of dense ``X`` with unsorted indices and duplicate entries (their sum is X)."""
    rows, indices, data = [], [], []
    for i in range(X.shape[0]):
        cols = list(np.flatnonzero(X[i]))
        entries = [(j, X[i, j]) for j in cols]
        # a duplicate: the value split as (v, 0) so the sum is exact
        for j in draw(st.lists(st.sampled_from(cols), max_size=2)) if cols else []:
            entries.append((j, X.dtype.type(0)))
        order = draw(st.permutations(range(len(entries))))
        rows.append(len(entries))
        indices += [entries[k][0] for k in order]
        data += [entries[k][1] for k in order]
    indptr = np.concatenate([[0], np.cumsum(rows)]).astype(np.int32)
    M = sp.csr_matrix((np.array(data, dtype=X.dtype), np.array(indices, dtype=np.int32),
                       indptr), shape=X.shape)
    assert (M.toarray() == X).all()
    return M


@st.composite
def sparse_inputs(draw, n, d):
    """A CSR with empty rows (rows of X zeroed), maybe duplicates and unsorted indices."""
    X = draw(matrices(n=n, d=d, special=None, int_dtype=False))
    X[np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))] = 0
    return X, draw(awkward_csr(X))


def weights(n, hostile=True):
    values = [0.0, 1.0, 0.5, 2.0, 1e30, 1e-310] + ([-1.0] if hostile else [])
    return st.one_of(
        st.none(),
        st.lists(st.sampled_from(values), min_size=n, max_size=n).map(np.array)
        .filter(lambda w: hostile or w.sum() > 0),
        *([st.just(np.zeros(n))] if hostile else []),
    )


@st.composite
def params(draw, n):
    """Parameters both libraries share; the same meaning on either side."""
    p = {
        "solver": draw(st.sampled_from(["sgd", "adam", "lbfgs"])),
        "max_iter": draw(st.integers(1, 3)),
        "batch_size": draw(st.one_of(st.just("auto"), st.integers(1, n + 2))),
        "alpha": draw(st.sampled_from([0.0, 1e-4, 10.0])),
        "learning_rate_init": draw(st.sampled_from([1e-3, 0.1])),
        "activation": draw(st.sampled_from(["relu", "tanh", "logistic", "identity"])),
        "shuffle": draw(st.booleans()),
        "random_state": draw(st.integers(0, 2**31 - 1)),
    }
    if p["solver"] != "lbfgs" and draw(st.integers(0, 4)) == 0:
        p["early_stopping"] = True
    return p


@st.composite
def fit_cases(draw, classifier: bool, hostile=True):
    """X (dense or CSR), y, sample_weight, hidden units, parameters, method and classes.

    ``hostile=False``: inputs both libraries accept (no NaN, no +-1e38, no negative or
    all-zero weights, at least two classes), for the invariants of successful fits.
    """
    nonfinite = hostile
    special = SPECIAL if hostile else SPECIAL[:5] + SPECIAL[7:]
    X = draw(matrices(special=special, nonfinite=nonfinite and draw(st.integers(0, 5)) == 0))
    n = X.shape[0]
    if draw(st.integers(0, 3)) == 0 and np.isfinite(X).all():
        Xd = np.ascontiguousarray(X, dtype=np.float64)
        X = draw(awkward_csr(Xd)).astype(X.dtype if X.dtype != np.int64 else np.float64)
    if classifier:
        labels = draw(st.sampled_from(["two", "many", "strings"] +
                                      (["one", "floats"] if hostile else [])))
        if labels == "strings":
            y = np.array(draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n,
                                       max_size=n)))
        elif labels == "floats":
            y = np.array(draw(st.lists(st.sampled_from([0.5, 1.0, 2.25]), min_size=n,
                                       max_size=n)))
        else:
            k = {"two": 2, "many": n + 2, "one": 1}[labels]
            y = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    else:
        y = np.array(draw(st.lists(st.one_of(st.floats(-5, 5, width=32), st.sampled_from(
                                             [0.0, 1e-310] + [1e38] * hostile)),
                                   min_size=n, max_size=n)))
        if nonfinite and draw(st.integers(0, 9)) == 0:
            y[0] = np.nan
    p = draw(params(n))
    method = "fit"
    classes = None
    if p["solver"] != "lbfgs" and not p.get("early_stopping") and draw(st.booleans()):
        method = "partial_fit"
        if classifier:
            # classes given up front: often more classes than rows
            extra = draw(st.integers(0, 3))
            classes = np.unique(np.concatenate([np.unique(y), _more_labels(y, extra)]))
    return {"X": X, "y": y, "sw": draw(weights(n, hostile)), "h": draw(st.integers(1, 3)), "p": p,
            "method": method, "classes": classes}


def _more_labels(y, k):
    if y.dtype.kind == "U":
        return np.array([f"z{i}" for i in range(k)])
    return np.arange(k, dtype=y.dtype) + (y.max() + 1 if y.size else 0)


def _call(est, case):
    kwargs = {"sample_weight": case["sw"]}
    if case["classes"] is not None:
        kwargs["classes"] = case["classes"]
    return getattr(est, case["method"])(case["X"], case["y"], **kwargs)


def _ours(case, classifier, **extra):
    cls = TwoLayerClassifier if classifier else TwoLayerRegressor
    return cls(hidden_units=case["h"], **case["p"], **extra)


def _theirs(case, classifier):
    cls = MLPClassifier if classifier else MLPRegressor
    return cls(hidden_layer_sizes=(case["h"],), **case["p"])


def _outcome(est, case):
    """None when the call succeeds, else the exception."""
    with _quiet():
        try:
            _call(est, case)
        except Exception as exc:  # compared, not hidden: see the callers
            return exc
    return None


def _snapshot(a):
    """What must not change in an argument: type, dtype, shape, flags, bytes."""
    if a is None:
        return None
    if sp.issparse(a):
        return (type(a), a.shape, a.format,
                *(_snapshot(getattr(a, k)) for k in ("data", "indices", "indptr")))
    a = np.asarray(a)
    return (a.dtype, a.shape, a.strides, a.tobytes())


def _freeze(v):
    """A comparable image of an attribute value, arrays by their bytes."""
    if isinstance(v, np.ndarray):
        return ("array", v.dtype, v.shape, v.tobytes() if v.dtype != object else repr(v))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, *(_freeze(x) for x in v))
    if isinstance(v, dict):
        return ("dict", *((k, _freeze(x)) for k, x in sorted(v.items(), key=lambda kv:
                                                               str(kv[0]))))
    if isinstance(v, (int, float, str, bool, type(None), np.generic)):
        return ("value", repr(v))
    if isinstance(v, np.random.RandomState):
        return ("rng", repr(v.get_state()))
    return ("object", id(v))


def _state(est):
    return {k: _freeze(v) for k, v in vars(est).items()}


# Where fastmlp knowingly differs from MLPClassifier/MLPRegressor on acceptance. Each
# entry: a predicate on (case, our error, their error) and the reason.
def _diverged(exc):
    return exc is not None and "non-finite" in str(exc)


def _documented_difference(case, ours, theirs) -> str | None:
    # Whether an epoch's arithmetic overflows (+-1e38, weights of 1e30) depends on the
    # working dtype (fastmlp's float32 default against scikit-learn's float64 for
    # float64 input) and the order of the sums; both then refuse the non-finite
    # weights with the same ValueError.
    if _diverged(ours) or _diverged(theirs):
        return "divergence"
    # fastmlp refuses negative sample weights (they make the loss unbounded below) and
    # weights summing to zero (nothing to fit); scikit-learn accepts both.
    if ours is not None and theirs is None and (
        "Negative values in data passed to `sample_weight`" in str(ours)
        or "sum to zero" in str(ours)
    ):
        return "sample weights"
    # scikit-learn's minibatch regressor averages a batch's loss with np.average, which
    # raises ZeroDivisionError for a batch whose weights are all zero; fastmlp trains
    # on (such a batch adds nothing).
    if ours is None and isinstance(theirs, ZeroDivisionError):
        return "zero-weight batch"
    # NaN/infinity in X: fastmlp's minibatch solvers check X when the first epoch's
    # loss is not finite (a deferred check), scikit-learn up front; both refuse.
    return None


# ------------------------------------------------------------------ invariants
@pytest.mark.parametrize("classifier", [True, False], ids=["classifier", "regressor"])
@settings(FAST, max_examples=250)
@given(data=st.data())
def test_accepts_exactly_what_sklearn_accepts(classifier, data):
    case = data.draw(fit_cases(classifier))
    ours = _outcome(_ours(case, classifier, dtype=np.float64), case)
    theirs = _outcome(_theirs(case, classifier), case)
    difference = _documented_difference(case, ours, theirs)
    event(f"documented difference: {difference}" if difference else
          "both accept" if ours is None and theirs is None else
          "both refuse" if ours is not None and theirs is not None else "disagree")
    if difference:
        return
    assert (ours is None) == (theirs is None), (
        f"fastmlp: {ours!r}\nscikit-learn: {theirs!r}"
    )


@pytest.mark.parametrize("classifier", [True, False], ids=["classifier", "regressor"])
@FAST
@given(data=st.data())
def test_callers_arrays_unchanged(classifier, data):
    case = data.draw(fit_cases(classifier))
    before = [_snapshot(case[k]) for k in ("X", "y", "sw", "classes")]
    est = _ours(case, classifier)
    if _outcome(est, case) is None:
        with _quiet():
            est.predict(case["X"])
        # a second call on the fitted model (it may fail: the arrays stay unchanged too)
        again = "partial_fit" if case["p"]["solver"] != "lbfgs" and not case["p"].get(
            "early_stopping") else "fit"
        event(f"fitted, then {again} "
              f"{'failed' if _outcome(est, {**case, 'method': again}) else 'succeeded'}")
    else:
        event("refused")
    assert [_snapshot(case[k]) for k in ("X", "y", "sw", "classes")] == before


@pytest.mark.parametrize("classifier", [True, False], ids=["classifier", "regressor"])
@FAST
@given(data=st.data())
def test_failed_fit_leaves_nothing_half_fitted(classifier, data):
    case = data.draw(fit_cases(classifier, hostile=data.draw(st.integers(0, 3)) == 0))
    est = _ours(case, classifier)
    fresh = _state(est)
    if _outcome(est, case) is not None:
        event("first fit refused")
        assert _state(est) == fresh
        assert not [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]
        return
    # a later call that fails (NaN found after an epoch ran, a new width, a new label,
    # an exploding step) leaves the fitted model exactly as it was
    X = np.asarray(case["X"].toarray() if sp.issparse(case["X"]) else case["X"], np.float64)
    bad = data.draw(st.sampled_from(["nan", "width", "label", "explode"]))
    y = case["y"]
    if bad == "nan":
        X = X.copy()
        X[-1, 0] = np.nan
    elif bad == "width":
        X = np.hstack([X, X[:, :1]])
    elif bad == "label":
        y = np.array(["zz"] * len(y)) if classifier else np.full(len(y), np.nan)
    else:
        X = X * 1e30
    stochastic = case["p"]["solver"] != "lbfgs" and not case["p"].get("early_stopping")
    warm = data.draw(st.booleans()) or not stochastic
    if warm:
        est.set_params(warm_start=True, learning_rate_init=1e30 if bad == "explode" else
                       case["p"]["learning_rate_init"])
    saved = _state(est)
    again = {**case, "X": X, "y": y, "sw": None, "classes": None,
             "method": "fit" if warm else "partial_fit"}
    failed = _outcome(est, again)
    event(f"later {bad} {'refused' if failed is not None else 'accepted'}")
    if failed is not None:
        est.set_params(warm_start=False, learning_rate_init=case["p"]["learning_rate_init"])
        saved.pop("warm_start", None)
        saved.pop("learning_rate_init", None)
        now = _state(est)
        now.pop("warm_start", None)
        now.pop("learning_rate_init", None)
        assert now == saved


@pytest.mark.parametrize("classifier", [True, False], ids=["classifier", "regressor"])
@FAST
@given(data=st.data())
def test_same_seed_same_model(classifier, data):
    case = data.draw(fit_cases(classifier, hostile=False))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    lazy = data.draw(st.sampled_from(["exact", "lazy"]))
    models = []
    for _ in range(2):
        est = _ours(case, classifier, dtype=dtype, sparse_updates=lazy)
        if _outcome(est, case) is not None:
            event("refused")
            return
        models.append(est)
    event("compared")
    a, b = models
    assert _freeze(a.coefs_ + a.intercepts_) == _freeze(b.coefs_ + b.intercepts_)
    assert a.n_iter_ == b.n_iter_ and a.loss_curve_ == b.loss_curve_ if hasattr(
        a, "loss_curve_") else True


def _close(a, b, rtol):
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("classifier", [True, False], ids=["classifier", "regressor"])
@FAST
@given(data=st.data())
def test_sparse_fit_equals_dense_fit(classifier, data):
    n, d = data.draw(st.integers(1, 10)), data.draw(st.integers(1, 6))
    X, Xs = data.draw(sparse_inputs(n, d))
    if classifier:
        y = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
        if np.unique(y).size < 2:
            y[0] = 1 - min(y[0], 1)
        if n == 1:
            return
    else:
        y = np.array(data.draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n)))
    p = data.draw(params(n))
    p.pop("early_stopping", None)
    p["alpha"] = min(p["alpha"], 1e-4)
    case = {"X": X, "y": y, "sw": data.draw(st.one_of(st.none(), st.just(
        np.linspace(0, 2, n)))), "h": data.draw(st.integers(1, 4)), "p": p,
        "method": "fit", "classes": None}
    dense = _ours(case, classifier, dtype=np.float64)
    if _outcome(dense, case) is not None:
        event("dense refused")
        return
    event("compared")
    sparse = _ours(case, classifier, dtype=np.float64, sparse_updates="exact")
    assert _outcome(sparse, {**case, "X": Xs}) is None
    _close(dense, sparse, 1e-7)
    with _quiet():
        np.testing.assert_allclose(_output(dense, X), _output(sparse, Xs), rtol=1e-7,
                                   atol=1e-9)


def _output(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


def _all_parallel():
    """Make every batch big enough for the threaded paths (the choosers read this bound)."""
    if hasattr(solvers, "PARALLEL_MIN_WORK"):
        return mock.patch.object(solvers, "PARALLEL_MIN_WORK", 0)
    return contextlib.nullcontext()


@pytest.mark.parametrize("classifier", [True, False], ids=["classifier", "regressor"])
@settings(FAST, max_examples=30)
@given(data=st.data())
def test_one_and_two_threads_agree_and_are_bit_stable(classifier, data):
    n, d = data.draw(st.integers(2, 60)), data.draw(st.integers(1, 40))
    sparse = data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    X = rng.normal(size=(n, d)) * (rng.random((n, d)) < (0.3 if sparse else 1.0))
    y = rng.integers(0, 3, size=n) if classifier else rng.normal(size=n)
    p = data.draw(params(n))
    p.pop("early_stopping", None)
    p["max_iter"] = 2
    mode = data.draw(st.sampled_from(["exact", "lazy"]))
    Xin = sp.csr_matrix(X) if sparse else X
    case = {"X": Xin, "y": y, "sw": None, "h": data.draw(st.integers(1, 40)), "p": p,
            "method": "fit", "classes": None}
    out = {}
    with _all_parallel():
        for threads in (1, 2, 1, 2):
            est = _ours(case, classifier, dtype=np.float64, sparse_updates=mode,
                        n_threads=threads)
            if _outcome(est, case) is not None:
                event("refused")
                return
            with _quiet():
                pred = _output(est, Xin)
            image = _freeze(est.coefs_ + est.intercepts_ + [pred])
            if threads in out:
                assert out[threads][0] == image, f"n_threads={threads} is not bit-stable"
            else:
                out[threads] = (image, est, pred)
    event("compared")
    _close(out[1][1], out[2][1], 1e-9)
    np.testing.assert_allclose(out[1][2], out[2][2], rtol=1e-9, atol=1e-12)
