"""TwoLayerRegressor: its loss kernels, parity with MLPRegressor, extras and errors."""

from __future__ import annotations

import copy
import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_diabetes, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from fastmlp import TwoLayerRegressor, kernels, reference, solvers


# ---------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def diabetes():
    """442 real patients, 10 features; the target scaled to O(1) (Poisson needs y >= 0)."""
    X, y = load_diabetes(return_X_y=True)
    return np.ascontiguousarray(X), y / 100.0


@pytest.fixture(scope="module")
def multi_targets(diabetes):
    _, y = diabetes
    return np.stack([y, y**2 / 3, 1 - y], axis=1)


def _fit_quiet(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


def _params(est):
    return [*est.coefs_, *est.intercepts_]


def _assert_same_weights(a, b, rtol, atol=0.0):
    for p, q in zip(_params(a), _params(b), strict=True):
        assert p.shape == q.shape
        assert_allclose(p, q, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ loss kernels
LOSS_KERNELS = {
    "identity": (kernels.identity_squared_error_serial, kernels.identity_squared_error),
    "exp": (kernels.exp_poisson_deviance_serial, kernels.exp_poisson_deviance),
}


def _loss_problem(n, C, dtype, output, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, C))
    if output == "exp":
        Y = rng.poisson(2.0, size=(n, C)).astype(float)  # zeros included: 0 log 0 = 0
    else:
        Y = rng.normal(size=(n, C)) * 3
    sw = rng.uniform(0.1, 2.0, size=n)
    return (np.ascontiguousarray(a, dtype=dtype) for a in (Z, Y, sw))


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("output", ["identity", "exp"])
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("n, C", [(1, 1), (7, 1), (33, 4)])
def test_loss_kernel_matches_reference(output, parallel, dtype, rtol, n, C):
    Z, Y, sw = _loss_problem(n, C, dtype, output)
    kernel = LOSS_KERNELS[output][parallel]
    S = float(sw.astype(np.float64).sum())
    P = np.empty_like(Z)
    dZ = np.empty_like(Z)
    Z_before = Z.copy()
    loss = kernel(Z, Y, sw, dtype(1.0 / S), P, dZ)
    Z64, Y64, sw64 = (a.astype(np.float64) for a in (Z, Y, sw))
    expected = (sw64 * reference.sample_loss(Z64, Y64, output)).sum() / S
    assert loss == pytest.approx(expected, rel=rtol)
    assert_allclose(P, reference.output_activation(Z64, output), rtol=rtol)
    assert_allclose(dZ, (reference.output_activation(Z64, output) - Y64) * (sw64 / S)[:, None],
                    rtol=rtol, atol=rtol * 1e-3)
    assert_array_equal(Z, Z_before)  # Z is only read when P does not alias it
    # P may alias Z (the solver's use): same loss and gradient
    P2 = Z.copy()
    dZ2 = np.empty_like(Z)
    assert kernel(P2, Y, sw, dtype(1.0 / S), P2, dZ2) == pytest.approx(loss, rel=rtol)
    assert_allclose(P2, P, rtol=rtol)
    assert_allclose(dZ2, dZ, rtol=rtol)


@pytest.mark.parametrize("output", ["identity", "exp"])
def test_loss_kernel_gradient_is_central_differences(output):
    Z, Y, sw = _loss_problem(6, 3, np.float64, output, seed=3)
    kernel = LOSS_KERNELS[output][0]
    scale = 1.0 / sw.sum()
    P, dZ = np.empty_like(Z), np.empty_like(Z)
    kernel(Z, Y, sw, scale, P, dZ)
    eps = 1e-6
    num = np.empty_like(Z)
    for idx in np.ndindex(*Z.shape):
        Zp, Zm = Z.copy(), Z.copy()
        Zp[idx] += eps
        Zm[idx] -= eps
        lp = kernel(Zp, Y, sw, scale, np.empty_like(Z), np.empty_like(Z))
        lm = kernel(Zm, Y, sw, scale, np.empty_like(Z), np.empty_like(Z))
        num[idx] = (lp - lm) / (2 * eps)
    assert_allclose(dZ, num, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("output", ["identity", "exp", "softmax", "logistic"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_full_batch_gradient_is_central_differences(output, activation, make_problem):
    # solvers.loss_and_grads through every output code, against finite
    # differences of the reference loss: scikit-learn's test_gradient, which the
    # port skips as it calls MLPClassifier's private _loss_grad_lbfgs (the
    # identity loss differentiated is the sum over outputs, see below)
    p = make_problem(9, 5, 4, 2, seed=1)
    Y = {"exp": np.abs(p.Y + 0.3 * p.X[:, :2]), "identity": p.X[:, :2] * 2 + 0.5}.get(output, p.Y)
    Y = np.ascontiguousarray(Y)
    sw = np.linspace(0.5, 1.5, 9)
    X = p.X
    params = tuple(a.copy() for a in p.params)
    ws = solvers.Workspace(9, 5, 4, 2, 9, np.float64, full_batch=True)
    loss, grads = solvers.loss_and_grads(X, Y, sw, params, ws, alpha=0.3,
                                         activation=activation, output=output)
    C = Y.shape[1]

    def ref_loss(W1, b1, W2, b2):
        return reference.loss(X, Y, W1, b1, W2, b2, alpha=0.3, sample_weight=sw,
                              activation=activation, output=output)

    ref = reference.forward_backward(X, Y, *params, alpha=0.3, sample_weight=sw,
                                     activation=activation, output=output)
    data = ref["loss"] - 0.3 / (2 * sw.sum()) * sum((W**2).sum() for W in params[::2])
    # scikit-learn (and the solver) report the squared error averaged over outputs
    expected = data / C + (ref["loss"] - data) if output == "identity" else ref["loss"]
    assert loss == pytest.approx(expected, rel=1e-12)
    eps = 1e-6
    for k, (g, name) in enumerate(zip(grads, ("dW1", "db1", "dW2", "db2"), strict=True)):
        assert_allclose(g, ref[name], rtol=1e-10, atol=1e-13)
        num = np.empty_like(g)
        for idx in np.ndindex(*g.shape):
            plus = [a.copy() for a in params]
            minus = [a.copy() for a in params]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            num[idx] = (ref_loss(*plus) - ref_loss(*minus)) / (2 * eps)
        assert_allclose(g, num, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("output", ["identity", "exp"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_forward_proba_is_the_output_activation(output, dtype, rtol, make_problem):
    p = make_problem(50, 6, 5, 3, dtype=dtype)
    P = solvers.forward_proba(p.X, p.params, output=output, block=16)
    expected = reference.forward(*(a.astype(np.float64) for a in (p.X, *p.params)),
                                 output=output)["P"]
    assert P.dtype == dtype
    assert_allclose(P, expected, rtol=rtol, atol=rtol)


# ----------------------------------------------------- parity with MLPRegressor
PARITY_CASES = {
    "sgd": dict(solver="sgd", momentum=0.0),
    "sgd-momentum-nesterov": dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
    "sgd-momentum-plain": dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
    "adam": dict(solver="adam"),
    "adam-tanh": dict(solver="adam", activation="tanh"),
    "adam-logistic": dict(solver="adam", activation="logistic"),  # Glorot factor 2
    "sgd-alpha": dict(solver="sgd", momentum=0.5, alpha=0.3),
}


def _pair(settings, max_iter, hidden=16, **extra):
    """MLPRegressor and TwoLayerRegressor with the same settings, float64, no shuffle."""
    common = dict(max_iter=max_iter, shuffle=False, random_state=0, **settings, **extra)
    mlp = MLPRegressor(hidden_layer_sizes=(hidden,), **common)
    ours = TwoLayerRegressor(hidden_units=hidden, dtype=np.float64, **common)
    return mlp, ours


@pytest.mark.parametrize("case", list(PARITY_CASES))
@pytest.mark.parametrize("target", ["single", "multi", "poisson", "poisson-multi"])
def test_one_epoch_changes_weights_as_mlpregressor(case, target, diabetes, multi_targets):
    X, y = diabetes
    loss = "poisson" if target.startswith("poisson") else "squared_error"
    yy = {"multi": multi_targets, "poisson-multi": np.abs(multi_targets)}.get(target, y)
    mlp, ours = _pair(PARITY_CASES[case], max_iter=1, loss=loss)
    with pytest.warns(ConvergenceWarning):
        mlp.fit(X, yy)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        ours.fit(X, yy)
    assert ours.out_activation_ == mlp.out_activation_
    assert ours.n_outputs_ == mlp.n_outputs_
    _assert_same_weights(ours, mlp, rtol=1e-10, atol=1e-14)
    assert ours.loss_ == pytest.approx(mlp.loss_, rel=1e-10)
    assert (ours.n_iter_, ours.t_) == (mlp.n_iter_, mlp.t_) == (1, X.shape[0])
    assert_allclose(ours.predict(X), mlp.predict(X), rtol=1e-10, atol=1e-12)
    assert ours.score(X, yy) == pytest.approx(mlp.score(X, yy), rel=1e-9)


@pytest.mark.parametrize("target", ["single", "multi", "poisson"])
def test_lbfgs_as_mlpregressor(target, diabetes, multi_targets):
    # for several outputs scikit-learn's L-BFGS sees the squared error averaged
    # over them and the gradient of its sum; the compiled loss does the same
    X, y = diabetes
    loss = "poisson" if target == "poisson" else "squared_error"
    yy = multi_targets if target == "multi" else y
    mlp, ours = _pair(dict(solver="lbfgs"), max_iter=8, loss=loss)
    _fit_quiet(mlp, X, yy)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        ours.fit(X, yy)
    assert ours.n_iter_ == mlp.n_iter_ == 8
    assert ours.loss_ == pytest.approx(mlp.loss_, rel=1e-9)
    _assert_same_weights(ours, mlp, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_sample_weight_as_mlpregressor(solver, diabetes):
    X, y = diabetes
    sw = np.random.default_rng(1).uniform(0.2, 2.0, size=y.size)
    sw_before = sw.copy()
    mlp, ours = _pair(dict(solver=solver), max_iter=1 if solver != "lbfgs" else 4)
    _fit_quiet(mlp, X, y, sample_weight=sw)
    _fit_quiet(ours, X, y, sample_weight=sw)
    _assert_same_weights(ours, mlp, rtol=1e-9, atol=1e-13)
    assert_array_equal(sw, sw_before)


@pytest.mark.parametrize(
    "settings",
    [
        dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.05, max_iter=4),
        dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05, tol=10.0,
             n_iter_no_change=1, max_iter=8),
        dict(solver="sgd", tol=10.0, n_iter_no_change=2, max_iter=50),
        dict(solver="adam", tol=1e-2, n_iter_no_change=2, learning_rate_init=0.01, max_iter=60),
    ],
    ids=["invscaling", "adaptive", "sgd-tol-stop", "adam-tol-stop"],
)
def test_schedules_and_stopping_rule_as_mlpregressor(settings, diabetes):
    X, y = diabetes
    settings = dict(settings)
    mlp, ours = _pair(settings, max_iter=settings.pop("max_iter"))
    _fit_quiet(mlp, X, y)
    _fit_quiet(ours, X, y)
    assert ours.n_iter_ == mlp.n_iter_
    assert_allclose(ours.loss_curve_, mlp.loss_curve_, rtol=1e-10)
    assert ours.best_loss_ == pytest.approx(mlp.best_loss_, rel=1e-10)
    if settings["solver"] == "sgd":
        assert ours._optimizer["learning_rate"] == pytest.approx(
            mlp._optimizer.learning_rate, rel=1e-12)
    _assert_same_weights(ours, mlp, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("target", ["single", "multi"])
def test_early_stopping_on_validation_r2_as_mlpregressor(target, diabetes, multi_targets):
    X, y = diabetes
    yy = multi_targets if target == "multi" else y
    settings = dict(solver="sgd", early_stopping=True, learning_rate_init=0.05,
                    n_iter_no_change=3)
    mlp, ours = _pair(settings, max_iter=60)
    _fit_quiet(mlp, X, yy)
    _fit_quiet(ours, X, yy)
    assert_allclose(ours.validation_scores_, mlp.validation_scores_, rtol=1e-9)
    assert ours.best_validation_score_ == pytest.approx(mlp.best_validation_score_, rel=1e-9)
    assert ours.n_iter_ == mlp.n_iter_ < 60
    assert ours.best_loss_ is None and mlp.best_loss_ is None
    _assert_same_weights(ours, mlp, rtol=1e-9, atol=1e-13)


def test_partial_fit_equals_mlpregressor_partial_fit(diabetes):
    X, y = diabetes
    mlp, ours = _pair(dict(solver="adam", learning_rate_init=0.01), max_iter=1)
    for _ in range(3):
        mlp.partial_fit(X, y)
        ours.partial_fit(X, y)
    assert ours.t_ == mlp.t_ == 3 * X.shape[0]
    _assert_same_weights(ours, mlp, rtol=1e-9, atol=1e-13)


def test_starting_weights_are_mlpregressors(diabetes):
    X, y = diabetes
    mlp, ours = _pair(dict(solver="sgd", momentum=0.0, learning_rate_init=1e-300), max_iter=1)
    _fit_quiet(mlp, X, y)
    _fit_quiet(ours, X, y)
    _assert_same_weights(ours, mlp, rtol=0, atol=0)


# ---------------------------------------------------------------- behaviour
def test_float32_default_fits_and_predicts_in_float32(diabetes):
    X, y = diabetes
    reg = _fit_quiet(TwoLayerRegressor(hidden_units=16, max_iter=30, learning_rate_init=0.01,
                                       random_state=0), X, y)
    f64 = _fit_quiet(TwoLayerRegressor(hidden_units=16, max_iter=30, learning_rate_init=0.01,
                                       random_state=0, dtype="float64"), X, y)
    assert reg.coefs_[0].dtype == np.float32
    # in the working dtype, whatever X's (MLPRegressor: X's dtype)
    assert reg.predict(X).dtype == np.float32 and f64.predict(X).dtype == np.float64
    assert f64.predict(X.astype(np.float32)).dtype == np.float64
    assert reg.predict(X).shape == (X.shape[0],)
    assert_allclose(reg.predict(X), f64.predict(X), rtol=1e-3, atol=1e-3)
    assert reg.score(X, y) == pytest.approx(r2_score(y, reg.predict(X)), rel=1e-6)
    assert reg.score(X, y) > 0.3


def test_multi_output_predict_shape_and_column_target_warns(diabetes, multi_targets):
    X, y = diabetes
    reg = _fit_quiet(TwoLayerRegressor(hidden_units=8, max_iter=3, random_state=0), X,
                     multi_targets)
    assert reg.n_outputs_ == 3 and reg.predict(X).shape == (X.shape[0], 3)
    from sklearn.exceptions import DataConversionWarning

    with pytest.warns(DataConversionWarning):  # as MLPRegressor does for an (n, 1) y
        col = _fit_quiet(TwoLayerRegressor(hidden_units=8, max_iter=3, random_state=0), X,
                         y[:, None])
    assert col.n_outputs_ == 1 and col.predict(X).shape == (X.shape[0],)


def test_poisson_predictions_are_positive_means(diabetes):
    X, y = diabetes
    reg = TwoLayerRegressor(loss="poisson", hidden_units=16, solver="lbfgs", max_iter=200,
                            random_state=0, dtype=np.float64)
    _fit_quiet(reg, X, y)
    assert reg.out_activation_ == "exp"
    pred = reg.predict(X)
    assert (pred > 0).all()
    # the log link: predictions are exp of the network's last linear layer
    H = np.maximum(X @ reg.coefs_[0] + reg.intercepts_[0], 0)
    assert_allclose(pred, np.exp(H @ reg.coefs_[1] + reg.intercepts_[1])[:, 0], rtol=1e-10)
    assert pred.mean() == pytest.approx(y.mean(), rel=0.05)


def test_warm_start_and_partial_fit_continue(diabetes):
    X, y = diabetes
    kw = dict(hidden_units=8, solver="sgd", learning_rate_init=0.01, random_state=0,
              dtype=np.float64, shuffle=False)
    two = _fit_quiet(TwoLayerRegressor(max_iter=2, **kw), X, y)
    warm = TwoLayerRegressor(max_iter=1, warm_start=True, **kw)
    _fit_quiet(warm, X, y)
    _fit_quiet(warm, X, y)
    # a constant step restarts where it was and the momentum carries over:
    # two warm-started fits of one epoch are one fit of two
    assert warm.t_ == 2 * X.shape[0]
    _assert_same_weights(warm, two, rtol=1e-12, atol=1e-15)
    parts = TwoLayerRegressor(**kw)
    parts.partial_fit(X, y)
    parts.partial_fit(X, y)
    _assert_same_weights(parts, two, rtol=1e-12, atol=1e-15)


def test_verbose_prints_sklearns_lines(diabetes, capsys):
    X, y = diabetes
    _fit_quiet(TwoLayerRegressor(hidden_units=4, max_iter=3, verbose=True, random_state=0,
                                 early_stopping=True), X, y)
    out, err = capsys.readouterr()
    assert re.findall(r"^Iteration (\d+), loss = \d+\.\d{8}$", out, re.M) == ["1", "2", "3"]
    assert len(re.findall(r"^Validation score: -?\d+\.\d{6}$", out, re.M)) == 3
    assert err == ""


def test_sparse_pipeline_gridsearch_clone_pickle(diabetes):
    X, y = diabetes
    reg = TwoLayerRegressor(hidden_units=8, max_iter=5, random_state=0, dtype=np.float64)
    dense = _fit_quiet(clone(reg), X, y)
    sparse = _fit_quiet(clone(reg), sp.csr_matrix(X), y)
    _assert_same_weights(sparse, dense, rtol=1e-12, atol=1e-15)
    assert_allclose(dense.predict(sp.csr_matrix(X)), dense.predict(X), rtol=1e-12)
    again = pickle.loads(pickle.dumps(dense))
    assert_array_equal(again.predict(X), dense.predict(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gs = GridSearchCV(make_pipeline(StandardScaler(), clone(reg)),
                          {"twolayerregressor__alpha": [1e-4, 1e-1]}, cv=2).fit(X, y)
    assert np.isfinite(gs.best_score_)


def test_hidden_layer_sizes_names_hidden_units():
    with pytest.raises(TypeError, match=re.escape("pass hidden_units=k instead of "
                                                  "hidden_layer_sizes=(k,)")):
        TwoLayerRegressor(hidden_layer_sizes=(10,))
    assert "hidden_layer_sizes" not in TwoLayerRegressor().get_params()


def test_parameters_and_defaults_are_mlpregressors():
    ours = TwoLayerRegressor().get_params()
    theirs = MLPRegressor().get_params()
    assert theirs.pop("hidden_layer_sizes") == (ours.pop("hidden_units"),)
    extras = {"dtype", "early_stopping_metric", "callbacks", "n_threads", "sparse_updates"}
    assert {k: v for k, v in ours.items() if k not in extras} == theirs


# -------------------------------------------------------------------- errors
def _state(est):
    return {k: copy.deepcopy(v) for k, v in est.__dict__.items() if k != "_workspace"}


def _assert_state_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, (list, tuple)) and va and isinstance(va[0], np.ndarray):
            for p, q in zip(va, vb, strict=True):
                assert_array_equal(p, q, err_msg=k)
        elif isinstance(va, dict) and "arrays" in va:
            for p, q in zip(va["arrays"], vb["arrays"], strict=True):
                assert_array_equal(p, q, err_msg=k)
        elif isinstance(va, np.ndarray):
            assert_array_equal(va, vb, err_msg=k)
        else:
            assert va == vb or (va != va and vb != vb), k


@pytest.mark.parametrize(
    "bad, message, loss",
    [
        (lambda X, y: (X, np.where(np.arange(y.size) == 5, np.nan, y)), "Input y contains NaN",
         "squared_error"),
        (lambda X, y: (X, np.where(np.arange(y.size) == 5, np.inf, y)),
         "Input y contains infinity", "squared_error"),
        (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples", "squared_error"),
        (lambda X, y: (X, y.reshape(-1, 1, 1)), "Found array with dim 3", "squared_error"),
        (lambda X, y: (X, y - 2.0), "negative which is not allowed for Poisson", "poisson"),
        (lambda X, y: (X, np.full_like(y, 1e300)), "y has values too large for float32",
         "squared_error"),
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y),
         "Input X contains NaN", "squared_error"),
    ],
    ids=["nan", "inf", "length", "3-d", "poisson-negative", "overflow", "nan-X"],
)
@pytest.mark.parametrize("how", ["fit", "partial_fit", "warm_start"])
def test_bad_targets_are_refused_and_nothing_changes(bad, message, loss, how, diabetes):
    X, y = diabetes
    X_bad, y_bad = bad(X.copy(), y.copy())
    X_keep, y_keep = X_bad.copy(), y_bad.copy()
    est = TwoLayerRegressor(loss=loss, hidden_units=4, max_iter=2, random_state=0,
                            warm_start=how == "warm_start")
    with pytest.raises(ValueError, match=re.escape(message)):
        est.partial_fit(X_bad, y_bad) if how == "partial_fit" else est.fit(X_bad, y_bad)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    assert_array_equal(X_bad, X_keep)
    assert_array_equal(y_bad, y_keep)
    # a fitted estimator keeps its state; later batches (which may skip
    # validate_data) are refused too
    _fit_quiet(est, X, y)
    before = _state(est)
    for X_try in (X_bad, X_bad.astype(np.float32)):
        with pytest.raises(ValueError, match=re.escape(message)):
            est.partial_fit(X_try, y_bad) if how == "partial_fit" else est.fit(X_try, y_bad)
        _assert_state_equal(_state(est), before)


def test_other_errors(diabetes, multi_targets):
    X, y = diabetes
    est = _fit_quiet(TwoLayerRegressor(hidden_units=4, max_iter=2, random_state=0,
                                       warm_start=True), X, y)
    before = _state(est)
    with pytest.raises(ValueError, match="y has 3 output\\(s\\), the model was fitted with 1"):
        est.fit(X, multi_targets)
    est.set_params(loss="poisson")
    with pytest.raises(ValueError, match="loss='poisson' needs out_activation_='exp'"):
        est.fit(X, y)
    est.set_params(loss="squared_error")
    _assert_state_equal(_state(est), before)
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as info:
        TwoLayerRegressor(solver="lbfgs").partial_fit(X, y)
    assert "lbfgs is not stochastic" in str(info.value.__cause__)
    with pytest.raises(ValueError, match="'loss' parameter of TwoLayerRegressor"):
        TwoLayerRegressor(loss="absolute_error").fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features"):
        est.predict(X[:, :3])


def test_divergence_with_early_stopping_restores_best_weights():
    # scikit-learn's test_mlp_diverging_loss setting: step 1 with an identity
    # network diverges; with early stopping the model stops there and is usable
    X, y = make_regression(n_samples=150, n_features=4, noise=1.0, random_state=0)
    X = X * 30
    cb_weights = []
    est = TwoLayerRegressor(hidden_units=50, activation="identity", solver="sgd",
                            learning_rate_init=1.0, early_stopping=True, max_iter=40,
                            random_state=0,
                            callbacks=[lambda e, i: cb_weights.append(copy.deepcopy(_params(e)))])
    with pytest.warns(ConvergenceWarning, match="Training diverged at epoch .* were restored"):
        est.fit(X, y)
    assert not np.isfinite(est.loss_curve_[-1])
    assert np.isnan(est.validation_scores_[-1])
    best = int(np.nanargmax(est.validation_scores_))
    assert est.best_validation_score_ == est.validation_scores_[best]
    for p, q in zip(_params(est), cb_weights[best], strict=True):
        assert_array_equal(p, q)
    assert np.isfinite(est.loss_) and est.loss_ == est.loss_curve_[best]
    assert np.isfinite(est.predict(X)).all()
    # without early stopping: the ValueError, and nothing fitted
    est = TwoLayerRegressor(hidden_units=50, activation="identity", solver="sgd",
                            learning_rate_init=1.0, max_iter=40, random_state=0)
    with pytest.raises(ValueError, match="Training diverged|non-finite"):
        est.fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
