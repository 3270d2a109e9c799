"""TwoLayerClassifier: parity with MLPClassifier, extras, sklearn integration, errors."""

from __future__ import annotations

import copy
import pickle
import re
import warnings

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from fastmlp import TwoLayerClassifier


# ---------------------------------------------------------------------------- data
def _digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def digits_small():
    """450 real digit images (64 features, 10 classes): > 2 batches of 200."""
    X, y = _digits()
    return np.ascontiguousarray(X[:450]), y[:450].copy()


@pytest.fixture(scope="module")
def multilabel_targets(digits_small):
    _, y = digits_small
    return np.stack([y > 4, y % 2 == 0, y == 3], axis=1).astype(int)


def _fit_quiet(est, *args, **kwargs):
    """Fit, ignoring only the ConvergenceWarning of a deliberately short run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


def _params(est):
    return [*est.coefs_, *est.intercepts_]


def _assert_same_weights(a, b, rtol, atol=0.0):
    for p, q in zip(_params(a), _params(b), strict=True):
        assert p.shape == q.shape
        assert_allclose(p, q, rtol=rtol, atol=atol)


# ------------------------------------------------------ parity with MLPClassifier
PARITY_CASES = {
    "sgd": dict(solver="sgd", momentum=0.0),
    "sgd-momentum-nesterov": dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
    "sgd-momentum-plain": dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
    "adam": dict(solver="adam"),
    "adam-tanh": dict(solver="adam", activation="tanh"),
    "adam-logistic": dict(solver="adam", activation="logistic"),  # Glorot factor 2
    "adam-identity": dict(solver="adam", activation="identity"),
    "sgd-alpha": dict(solver="sgd", momentum=0.5, alpha=0.3),
}


def _pair(settings, max_iter, hidden=16, **extra):
    """MLPClassifier and TwoLayerClassifier with the same settings, float64, no shuffle.

    The same ``random_state`` gives the same Glorot starting weights: both draw
    W1, b1, W2, b2 from one RandomState in that order (so equal weights after an
    epoch also check the initialisation).
    """
    common = dict(max_iter=max_iter, shuffle=False, random_state=0, **settings, **extra)
    mlp = MLPClassifier(hidden_layer_sizes=(hidden,), **common)
    ours = TwoLayerClassifier(hidden_units=hidden, dtype=np.float64, **common)
    return mlp, ours


@pytest.mark.parametrize("activation", ["relu", "logistic"])
def test_starting_weights_are_mlpclassifiers(activation, digits_small):
    # An SGD step of 1e-300 leaves float64 weights of order 0.1 unchanged, so
    # coefs_ after one epoch are the starting weights of either estimator.
    X, y = digits_small
    mlp, ours = _pair(dict(solver="sgd", momentum=0.0, learning_rate_init=1e-300,
                           activation=activation), max_iter=1)
    _fit_quiet(mlp, X, y)
    _fit_quiet(ours, X, y)
    _assert_same_weights(ours, mlp, rtol=0, atol=0)
    # Glorot uniform: W1, b1, W2, b2 drawn in that order from one RandomState,
    # bound sqrt(factor / (fan_in + fan_out)), factor 2 for 'logistic', else 6
    rng = np.random.RandomState(0)
    factor = 2.0 if activation == "logistic" else 6.0
    for fan_in, fan_out, W, b in [(64, 16, ours.coefs_[0], ours.intercepts_[0]),
                                  (16, 10, ours.coefs_[1], ours.intercepts_[1])]:
        bound = np.sqrt(factor / (fan_in + fan_out))
        assert_array_equal(W, rng.uniform(-bound, bound, (fan_in, fan_out)))
        assert_array_equal(b, rng.uniform(-bound, bound, fan_out))


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_one_epoch_changes_weights_as_mlpclassifier(case, digits_small):
    X, y = digits_small
    mlp, ours = _pair(PARITY_CASES[case], max_iter=1)
    with pytest.warns(ConvergenceWarning):
        mlp.fit(X, y)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        ours.fit(X, y)
    _assert_same_weights(ours, mlp, rtol=1e-10, atol=1e-15)
    assert ours.loss_ == pytest.approx(mlp.loss_, rel=1e-10)
    assert (ours.n_iter_, ours.t_) == (mlp.n_iter_, mlp.t_) == (1, X.shape[0])


@pytest.mark.parametrize("target", ["binary", "multilabel"])
def test_one_epoch_logistic_output_as_mlpclassifier(target, digits_small, multilabel_targets):
    X, y = digits_small
    yy = (y > 4).astype(int) if target == "binary" else multilabel_targets
    mlp, ours = _pair(dict(solver="sgd", momentum=0.9), max_iter=1)
    _fit_quiet(mlp, X, yy)
    _fit_quiet(ours, X, yy)
    assert ours.out_activation_ == mlp.out_activation_ == "logistic"
    assert ours.n_outputs_ == mlp.n_outputs_ == (1 if target == "binary" else 3)
    _assert_same_weights(ours, mlp, rtol=1e-10, atol=1e-15)
    assert ours.loss_ == pytest.approx(mlp.loss_, rel=1e-10)
    assert_array_equal(ours.predict(X), mlp.predict(X))
    assert_allclose(ours.predict_proba(X), mlp.predict_proba(X), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_one_epoch_with_sample_weight_as_mlpclassifier(solver, digits_small):
    X, y = digits_small
    sw = np.random.default_rng(1).uniform(0.2, 2.0, size=y.size)
    sw_before = sw.copy()
    mlp, ours = _pair(dict(solver=solver), max_iter=1)
    _fit_quiet(mlp, X, y, sample_weight=sw)
    _fit_quiet(ours, X, y, sample_weight=sw)
    _assert_same_weights(ours, mlp, rtol=1e-10, atol=1e-15)
    assert_array_equal(sw, sw_before)
    # Known divergence, in the loss figure only: scikit-learn averages the batch
    # losses by batch *size*, the compiled epoch by batch *weight* (the true
    # weighted mean). Without weights both are the same (checked above).
    assert ours.loss_ == pytest.approx(mlp.loss_, rel=1e-2)


@pytest.mark.parametrize(
    "settings",
    [
        dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1, max_iter=4),
        # tol so large no epoch counts as an improvement: the rate is divided by 5
        # after every second epoch, as SGDOptimizer.trigger_stopping does
        dict(
            solver="sgd", learning_rate="adaptive", learning_rate_init=0.1, tol=10.0,
            n_iter_no_change=1, max_iter=8,
        ),
        dict(solver="sgd", tol=10.0, n_iter_no_change=2, max_iter=50),  # stops at epoch 4
        dict(solver="adam", tol=1e-2, n_iter_no_change=2, learning_rate_init=0.01, max_iter=60),
    ],
    ids=["invscaling", "adaptive", "sgd-tol-stop", "adam-tol-stop"],
)
def test_schedules_and_stopping_rule_as_mlpclassifier(settings, digits_small):
    X, y = digits_small
    settings = dict(settings)
    mlp, ours = _pair(settings, max_iter=settings.pop("max_iter"))
    _fit_quiet(mlp, X, y)
    _fit_quiet(ours, X, y)
    assert ours.n_iter_ == mlp.n_iter_
    assert ours.n_iter_ < ours.max_iter or settings.get("learning_rate") in (
        "invscaling", "adaptive")
    assert_allclose(ours.loss_curve_, mlp.loss_curve_, rtol=1e-10)
    assert ours.best_loss_ == pytest.approx(mlp.best_loss_, rel=1e-10)
    if settings["solver"] == "sgd":
        assert ours._optimizer["learning_rate"] == pytest.approx(
            mlp._optimizer.learning_rate, rel=1e-12)
    _assert_same_weights(ours, mlp, rtol=1e-9, atol=1e-13)


def test_early_stopping_binary_as_mlpclassifier(digits_small):
    # binary targets: both stratify the held-out split on the class, so the split,
    # the validation scores and the restored weights are the same
    X, y = digits_small
    yb = (y > 4).astype(int)
    settings = dict(solver="sgd", early_stopping=True, learning_rate_init=0.1,
                    n_iter_no_change=3)
    mlp, ours = _pair(settings, max_iter=30)
    _fit_quiet(mlp, X, yb)
    _fit_quiet(ours, X, yb)
    assert ours.validation_scores_ == mlp.validation_scores_
    assert ours.best_validation_score_ == mlp.best_validation_score_
    assert ours.n_iter_ == mlp.n_iter_ < 30
    assert ours.best_loss_ is None and mlp.best_loss_ is None
    _assert_same_weights(ours, mlp, rtol=1e-10, atol=1e-14)


def test_lbfgs_as_mlpclassifier(digits_small):
    X, y = digits_small
    mlp, ours = _pair(dict(solver="lbfgs"), max_iter=5)
    _fit_quiet(mlp, X, y)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        ours.fit(X, y)
    assert ours.n_iter_ == mlp.n_iter_ == 5
    assert ours.loss_ == pytest.approx(mlp.loss_, rel=1e-9)
    _assert_same_weights(ours, mlp, rtol=1e-7, atol=1e-10)
    assert len(ours.loss_curve_) == 5 and ours.loss_curve_[-1] == pytest.approx(ours.loss_)


def test_digits_test_accuracy_close_to_mlpclassifier():
    X, y = _digits()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0, stratify=y)
    settings = dict(random_state=0, max_iter=300)
    mlp = _fit_quiet(MLPClassifier(hidden_layer_sizes=(64,), **settings), X_tr, y_tr)
    ours = _fit_quiet(TwoLayerClassifier(hidden_units=64, **settings), X_tr, y_tr)
    acc_mlp, acc_ours = mlp.score(X_te, y_te), ours.score(X_te, y_te)
    assert acc_mlp > 0.95
    assert abs(acc_ours - acc_mlp) <= 0.015, (acc_ours, acc_mlp)


# ----------------------------------------------------------------- beyond sklearn
def test_float32_and_float64_agree(digits_small):
    X, y = digits_small
    kw = dict(hidden_units=16, max_iter=3, random_state=0)
    f32 = _fit_quiet(TwoLayerClassifier(dtype=np.float32, **kw), X, y)
    f64 = _fit_quiet(TwoLayerClassifier(dtype="float64", **kw), X, y)
    assert f32.coefs_[0].dtype == np.float32 and f64.coefs_[0].dtype == np.float64
    assert f32.predict_proba(X).dtype == np.float32
    _assert_same_weights(f32, f64, rtol=1e-3, atol=1e-5)
    assert_allclose(f32.loss_curve_, f64.loss_curve_, rtol=1e-5)
    assert_allclose(f32.predict_proba(X), f64.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_class_weight_balanced_equals_sample_weight(digits_small):
    X, y = digits_small
    X, y = X[:300], np.where(y[:300] < 3, y[:300], 3)  # unbalanced: 4 classes
    kw = dict(hidden_units=8, max_iter=2, random_state=0, dtype=np.float64, shuffle=False)
    cw = compute_class_weight("balanced", classes=np.unique(y), y=y)
    sw = np.random.default_rng(0).uniform(0.5, 1.5, size=y.size)
    balanced = _fit_quiet(TwoLayerClassifier(class_weight="balanced", **kw), X, y,
                          sample_weight=sw)
    explicit = _fit_quiet(TwoLayerClassifier(**kw), X, y, sample_weight=sw * cw[y])
    _assert_same_weights(balanced, explicit, rtol=1e-12, atol=1e-15)
    as_dict = _fit_quiet(TwoLayerClassifier(class_weight=dict(enumerate(cw)), **kw), X, y,
                         sample_weight=sw)
    _assert_same_weights(as_dict, explicit, rtol=1e-12, atol=1e-15)
    plain = _fit_quiet(TwoLayerClassifier(**kw), X, y, sample_weight=sw)
    assert not np.allclose(plain.coefs_[0], explicit.coefs_[0])


def test_class_weight_shifts_predictions(digits_small):
    X, y = digits_small
    yb = (y > 4).astype(int)
    kw = dict(hidden_units=8, max_iter=30, random_state=0, learning_rate_init=0.01)
    heavy = _fit_quiet(TwoLayerClassifier(class_weight={0: 100.0, 1: 0.01}, **kw), X, yb)
    plain = _fit_quiet(TwoLayerClassifier(**kw), X, yb)
    assert np.mean(heavy.predict(X) == 0) > np.mean(plain.predict(X) == 0) + 0.2


def _recorder():
    """A callback keeping a copy of the weights and figures after every epoch."""
    seen = []

    def cb(est, info):
        seen.append((copy.deepcopy(_params(est)), dict(info)))

    return cb, seen


@pytest.mark.parametrize("metric", ["score", "loss"])
def test_early_stopping_restores_best_weights(metric, digits_small):
    X, y = digits_small
    cb, seen = _recorder()
    est = TwoLayerClassifier(
        hidden_units=16, solver="sgd", learning_rate_init=0.5, momentum=0.9,
        early_stopping=True, early_stopping_metric=metric, n_iter_no_change=4,
        max_iter=60, random_state=0, callbacks=[cb], dtype=np.float64,
    )
    _fit_quiet(est, X, y)
    n = est.n_iter_
    assert len(seen) == n == len(est.validation_scores_) == len(est.validation_loss_curve_)
    assert [info["validation_score"] for _, info in seen] == est.validation_scores_
    if metric == "score":
        best = int(np.argmax(est.validation_scores_))  # first maximum: strict improvement
    else:
        best = int(np.argmin(est.validation_loss_curve_))
    assert best < n - 1, "pick settings where training continues past the best epoch"
    for p, q in zip(_params(est), seen[best][0], strict=True):
        assert_array_equal(p, q)
    assert not np.array_equal(est.coefs_[0], seen[-1][0][0])
    assert est.best_validation_score_ == est.validation_scores_[best]
    assert est.best_loss_ is None
    assert np.all(np.isfinite(est.validation_loss_curve_))


def test_callbacks_receive_info_and_stop_training(digits_small):
    X, y = digits_small
    calls = []

    def stop_at_three(est, info):
        calls.append(info)
        assert est.n_iter_ == info["epoch"] and est.loss_curve_[-1] == info["loss"]
        return info["epoch"] == 3

    est = TwoLayerClassifier(hidden_units=8, max_iter=50, random_state=0,
                             callbacks=[stop_at_three])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning when a callback stops
        est.fit(X, y)
    assert est.n_iter_ == 3 and len(calls) == 3
    assert set(calls[0]) == {"epoch", "loss", "validation_score", "validation_loss",
                             "learning_rate", "t", "elapsed"}
    assert calls[-1]["t"] == 3 * X.shape[0]
    assert calls[0]["validation_score"] is None


def test_callback_stops_lbfgs(digits_small):
    X, y = digits_small
    est = TwoLayerClassifier(hidden_units=8, solver="lbfgs", max_iter=100, random_state=0,
                             callbacks=[lambda est, info: info["epoch"] >= 4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.fit(X, y)
    assert est.n_iter_ == 4 and len(est.loss_curve_) == 4


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_keyboard_interrupt_keeps_weights(solver, digits_small):
    # Ctrl-C arrives as KeyboardInterrupt in the Python code between epochs; a
    # callback raising it stands in for the key press
    X, y = digits_small
    cb, seen = _recorder()

    def interrupt(est, info):
        if info["epoch"] == 2:
            raise KeyboardInterrupt

    est = TwoLayerClassifier(hidden_units=8, solver=solver, max_iter=50, random_state=0,
                             callbacks=[cb, interrupt], dtype=np.float64)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        est.fit(X, y)
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2
    for p, q in zip(_params(est), seen[-1][0], strict=True):
        assert_array_equal(p, q)
    assert est.score(X, y) > 0.1


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_twice_equals_two_epochs(solver, digits_small):
    # Equal when the data order and step size are the same: no shuffling and a
    # constant step. Adam moments, velocities and the step count carry over.
    X, y = digits_small
    kw = dict(hidden_units=16, solver=solver, shuffle=False, random_state=0, dtype=np.float64)
    whole = _fit_quiet(TwoLayerClassifier(max_iter=2, **kw), X, y)
    parts = TwoLayerClassifier(**kw)
    parts.partial_fit(X, y, classes=np.unique(y))
    parts.partial_fit(X, y)
    _assert_same_weights(parts, whole, rtol=1e-12, atol=1e-15)
    assert parts._optimizer["step"] == whole._optimizer["step"] == 2 * 3  # 3 batches/epoch
    assert parts.t_ == whole.t_ == 2 * X.shape[0]
    assert_allclose(parts.loss_curve_, whole.loss_curve_, rtol=1e-12)
    assert parts.n_iter_ == 1  # n_iter_ counts the last call's epochs, as in sklearn


def test_warm_start_keeps_optimizer_state(digits_small):
    X, y = digits_small
    kw = dict(hidden_units=16, shuffle=False, random_state=0, dtype=np.float64)
    whole = _fit_quiet(TwoLayerClassifier(max_iter=4, **kw), X, y)
    warm = _fit_quiet(TwoLayerClassifier(max_iter=2, warm_start=True, **kw), X, y)
    reset = pickle.loads(pickle.dumps(warm))
    _fit_quiet(warm, X, y)
    assert warm._optimizer["step"] == whole._optimizer["step"] == 4 * 3
    _assert_same_weights(warm, whole, rtol=1e-12, atol=1e-15)
    assert warm.t_ == 4 * X.shape[0] and len(warm.loss_curve_) == 4
    # control: restarting Adam from zero moments (what MLPClassifier's warm start
    # does) gives other weights, so the equality above needs the kept state
    del reset._optimizer
    _fit_quiet(reset, X, y)
    assert reset._optimizer["step"] == 2 * 3
    assert not np.allclose(reset.coefs_[0], whole.coefs_[0], rtol=1e-6, atol=0)
    # a cold second fit starts again from fresh weights and a fresh optimizer
    cold = TwoLayerClassifier(max_iter=2, **kw)
    _fit_quiet(cold, X, y)
    first = _params(cold)
    _fit_quiet(cold, X, y)
    assert cold._optimizer["step"] == 2 * 3 and len(cold.loss_curve_) == 2
    for p, q in zip(first, _params(cold), strict=True):
        assert_array_equal(p, q)  # same random_state, same data: the same fit again


def test_verbose_progress_goes_to_stderr(digits_small, capsys):
    X, y = digits_small
    _fit_quiet(TwoLayerClassifier(hidden_units=4, max_iter=3, verbose="progress",
                                  random_state=0), X, y)
    out, err = capsys.readouterr()
    assert out == ""
    assert re.search(r"epoch 1/3 \[.*\] loss \d\.\d+", err)
    assert "epoch 3/3" in err


def test_n_threads_bounds_and_restores_threads(digits_small):
    X, y = digits_small
    before = numba.get_num_threads()
    kw = dict(hidden_units=8, max_iter=2, random_state=0, dtype=np.float64)
    one = _fit_quiet(TwoLayerClassifier(n_threads=1, **kw), X, y)
    default = _fit_quiet(TwoLayerClassifier(**kw), X, y)
    assert numba.get_num_threads() == before
    _assert_same_weights(one, default, rtol=1e-9, atol=1e-12)
    assert_array_equal(one.predict(X), default.predict(X))


def test_lbfgs_converges_on_small_problem(digits_small):
    X, y = digits_small
    est = TwoLayerClassifier(hidden_units=16, solver="lbfgs", max_iter=500, random_state=0,
                             dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.fit(X, y)
    assert est.score(X, y) == 1.0
    assert est.n_iter_ < 500 and est.loss_ < 0.05
    assert est.t_ == 0 and est.validation_scores_ is None


def test_convergence_warning_at_max_iter(digits_small):
    X, y = digits_small
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(2\) reached"):
        TwoLayerClassifier(hidden_units=4, max_iter=2, random_state=0).fit(X, y)


# --------------------------------------------------------- labels and input types
def test_string_labels_and_probability_columns(digits_small):
    X, y = digits_small
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                      "eight", "nine"], dtype=object)
    ys = names[y]
    est = _fit_quiet(TwoLayerClassifier(hidden_units=16, max_iter=30, random_state=0,
                                        learning_rate_init=0.01), X, ys)
    assert_array_equal(est.classes_, np.sort(names))
    pred = est.predict(X)
    assert pred.dtype.kind in "OU" and set(pred) <= set(names)
    proba = est.predict_proba(X)
    assert proba.shape == (X.shape[0], 10)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert_array_equal(est.classes_[proba.argmax(axis=1)], pred)
    assert np.mean(pred == ys) > 0.9
    assert_allclose(est.predict_log_proba(X), np.log(proba), rtol=1e-6)


def test_binary_string_labels(digits_small):
    X, y = digits_small
    ys = np.where(y > 4, "big", "small")
    est = _fit_quiet(TwoLayerClassifier(hidden_units=8, max_iter=20, random_state=0), X, ys)
    assert est.n_outputs_ == 1 and est.out_activation_ == "logistic"
    proba = est.predict_proba(X)
    assert proba.shape == (X.shape[0], 2)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert_array_equal(est.predict(X), est.classes_[(proba[:, 1] > 0.5).astype(int)])


def test_multilabel_indicator(digits_small, multilabel_targets):
    X, _ = digits_small
    est = _fit_quiet(TwoLayerClassifier(hidden_units=16, max_iter=30, random_state=0,
                                        learning_rate_init=0.01), X, multilabel_targets)
    assert_array_equal(est.classes_, [0, 1, 2])
    pred = est.predict(X)
    assert pred.shape == multilabel_targets.shape and set(np.unique(pred)) <= {0, 1}
    assert est.predict_proba(X).shape == multilabel_targets.shape
    assert np.mean(pred == multilabel_targets) > 0.8


def test_sparse_input_matches_dense(digits_small):
    X, y = digits_small
    kw = dict(hidden_units=8, max_iter=2, random_state=0, dtype=np.float64)
    dense = _fit_quiet(TwoLayerClassifier(**kw), X, y)
    for fmt in ("csr", "csc", "coo", "lil"):
        Xs = sp.csr_matrix(X).asformat(fmt)
        sparse = _fit_quiet(TwoLayerClassifier(**kw), Xs, y)
        _assert_same_weights(sparse, dense, rtol=1e-12, atol=1e-15)
        assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X), rtol=1e-12)


def test_read_only_input(digits_small):
    # a read-only float32 X (a memory map, say) is used through a private copy:
    # same result as a writeable X, and no compile of read-only kernel variants
    X, y = digits_small
    X32 = X.astype(np.float32)
    ro = X32.copy()
    ro.setflags(write=False)
    kw = dict(hidden_units=8, max_iter=2, random_state=0)
    a = _fit_quiet(TwoLayerClassifier(**kw), ro, y)
    b = _fit_quiet(TwoLayerClassifier(**kw), X32, y)
    _assert_same_weights(a, b, rtol=0, atol=0)
    assert_array_equal(a.predict_proba(ro[:1]), b.predict_proba(X32[:1]))


def test_pandas_dataframe_feature_names(digits_small):
    pd = pytest.importorskip("pandas")
    X, y = digits_small
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])])
    est = _fit_quiet(TwoLayerClassifier(hidden_units=8, max_iter=3, random_state=0), df,
                     pd.Series(y))
    assert_array_equal(est.feature_names_in_, df.columns)
    assert_array_equal(est.predict(df), est.classes_[est.predict_proba(df).argmax(axis=1)])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        est.predict(X)
    with pytest.raises(ValueError, match="feature names"):
        est.predict(df.rename(columns={"px0": "other"}))


def test_pipeline_gridsearch_cross_val_score(digits_small):
    X, y = digits_small
    X, y = X[:300], y[:300]
    pipe = make_pipeline(StandardScaler(), TwoLayerClassifier(
        hidden_units=8, max_iter=30, learning_rate_init=0.02, random_state=0))
    scores = _cv_quiet(lambda: cross_val_score(pipe, X, y, cv=3))
    assert scores.shape == (3,) and np.all(scores > 0.5)
    grid = GridSearchCV(pipe, {"twolayerclassifier__hidden_units": [4, 8],
                               "twolayerclassifier__alpha": [1e-4, 1e-2]}, cv=2)
    _cv_quiet(lambda: grid.fit(X, y))
    assert grid.best_params_["twolayerclassifier__hidden_units"] in (4, 8)
    assert grid.score(X, y) > 0.5


def _cv_quiet(run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return run()


def test_clone_and_pickle_round_trip(digits_small):
    X, y = digits_small
    est = _fit_quiet(TwoLayerClassifier(hidden_units=8, max_iter=3, random_state=0,
                                        warm_start=True), X, y)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "coefs_")
    back = pickle.loads(pickle.dumps(est))
    assert "_workspace" not in back.__dict__
    assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    # training continues from the unpickled optimizer state exactly as from the original
    _fit_quiet(back, X, y)
    _fit_quiet(est, X, y)
    _assert_same_weights(back, est, rtol=0, atol=0)


def test_predict_from_public_attributes_only(digits_small):
    X, y = digits_small
    est = _fit_quiet(TwoLayerClassifier(hidden_units=8, max_iter=3, random_state=0), X, y)
    rebuilt = TwoLayerClassifier(**est.get_params())
    for name in ("classes_", "coefs_", "intercepts_", "n_features_in_", "n_outputs_",
                 "out_activation_", "n_layers_", "loss_", "n_iter_"):
        setattr(rebuilt, name, copy.deepcopy(getattr(est, name)))
    assert_array_equal(rebuilt.predict(X), est.predict(X))
    assert_array_equal(rebuilt.predict_proba(X), est.predict_proba(X))
    assert rebuilt.score(X, y) == est.score(X, y)
    # weights stored as float64 lists of lists (e.g. from JSON) still predict
    rebuilt.coefs_ = [c.astype(np.float64).tolist() for c in est.coefs_]
    rebuilt.intercepts_ = [b.astype(np.float64).tolist() for b in est.intercepts_]
    assert_allclose(rebuilt.predict_proba(X), est.predict_proba(X), rtol=1e-5, atol=1e-6)
    rebuilt.intercepts_ = [est.intercepts_[0][:-1], est.intercepts_[1]]
    with pytest.raises(ValueError, match="coefs_ and intercepts_ are inconsistent"):
        rebuilt.predict(X)


def test_fast_predict_path_matches_validated_path(digits_small):
    X, y = digits_small
    est = _fit_quiet(TwoLayerClassifier(hidden_units=8, max_iter=3, random_state=0), X, y)
    expected = est.predict_proba(X[:5].astype(np.float32))
    state = dict(est.__dict__)
    strided = np.repeat(X[:5], 2, axis=0)[::2]
    for variant in (X[:5], np.asfortranarray(X[:5]), strided, X[:5].tolist(),
                    X[:5].astype(np.float16)):
        assert_allclose(est.predict_proba(variant), expected, rtol=1e-3, atol=1e-4)
    row = X[:1].astype(np.float32)
    assert est.predict(row).shape == (1,)
    assert est.__dict__.keys() == state.keys()
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.predict(np.full((1, X.shape[1]), np.nan, dtype=np.float32))
    # inf once cast to float32: numpy warns about the cast, then validation refuses it
    with pytest.warns(RuntimeWarning, match="overflow"):
        with pytest.raises(ValueError, match="Input X contains infinity"):
            est.predict(np.full((1, X.shape[1]), 1e300))


# --------------------------------------------------------------- bad input
def _fitted(X, y, **kw):
    return _fit_quiet(TwoLayerClassifier(hidden_units=8, max_iter=2, random_state=0, **kw),
                      X, y)


@pytest.mark.parametrize(
    "param, value, message",
    [
        ("hidden_units", 0, "'hidden_units' parameter of TwoLayerClassifier must be an int in "
                            "the range [1, inf)"),
        ("alpha", -1.0, "'alpha' parameter of TwoLayerClassifier must be a float in the "
                        "range [0.0, inf)"),
        ("solver", "bogus", "'solver' parameter of TwoLayerClassifier must be a str among"),
        ("activation", "softplus", "'activation' parameter"),
        ("learning_rate_init", 0.0, "'learning_rate_init' parameter"),
        ("batch_size", 0, "'batch_size' parameter"),
        ("momentum", 1.5, "'momentum' parameter"),
        ("dtype", "float16", "'dtype' parameter"),
        ("class_weight", "uniform", "'class_weight' parameter"),
        ("early_stopping_metric", "f1", "'early_stopping_metric' parameter"),
        ("n_threads", 0, "'n_threads' parameter"),
        ("callbacks", [print, 3], "callbacks must be a list of callables"),
        ("max_iter", 0, "'max_iter' parameter"),
    ],
)
def test_bad_parameters_raise_clear_errors(param, value, message, digits_small):
    X, y = digits_small
    _assert_fit_refused(TwoLayerClassifier(**{param: value}), X, y, message)


def _assert_fit_refused(est, X, y, message):
    """fit raises ``message``, leaves ``est`` unfitted and ``X``, ``y`` unchanged."""
    X_keep, y_keep = X.copy(), y.copy()
    with pytest.raises(ValueError, match=re.escape(message)):
        est.fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    assert_array_equal(X, X_keep)
    assert_array_equal(y, y_keep)


def _state(est):
    """A deep copy of everything fit may set, to check nothing was half-fitted."""
    return {k: copy.deepcopy(v) for k, v in est.__dict__.items() if k != "_workspace"}


def _assert_state_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, np.ndarray):
            assert_array_equal(va, vb, err_msg=k)
        elif isinstance(va, list) and va and isinstance(va[0], np.ndarray):
            for p, q in zip(va, vb, strict=True):
                assert_array_equal(p, q, err_msg=k)
        elif isinstance(va, dict) and "arrays" in va:
            for p, q in zip(va["arrays"], vb["arrays"], strict=True):
                assert_array_equal(p, q, err_msg=k)
            assert va["step"] == vb["step"]
        elif isinstance(va, tuple) and va and isinstance(va[0], np.ndarray):
            for p, q in zip(va, vb, strict=True):
                assert_array_equal(p, q, err_msg=k)
        else:
            assert va == vb or (va != va and vb != vb), k


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y),
         "Input X contains NaN"),
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X), y),
         "Input X contains infinity"),
        (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
        (lambda X, y: (X, y + 0.5), "Unknown label type"),
        (lambda X, y: (X, np.stack([y, y + 20], axis=1)), "multiclass-multioutput"),
        (lambda X, y: (X[:, :0], y), "0 feature"),
    ],
    ids=["nan", "inf", "length", "continuous", "multioutput", "no-features"],
)
def test_bad_input_to_fit(bad, message, digits_small):
    X, y = digits_small
    X_bad, y_bad = bad(X.copy(), y.copy())
    _assert_fit_refused(TwoLayerClassifier(hidden_units=4, max_iter=2), X_bad, y_bad, message)
    # a fitted estimator keeps its previous state
    est = _fitted(X, y, warm_start=True)
    before = _state(est)
    with pytest.raises(ValueError, match=re.escape(message)):
        est.fit(X_bad, y_bad)
    _assert_state_equal(_state(est), before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    "kwargs",
    [dict(solver="adam"), dict(solver="sgd"), dict(solver="lbfgs"),
     dict(solver="adam", early_stopping=True), dict(solver="sgd", partial=True),
     # tanh turns +-inf into +-1: the first batches' losses stay finite and the
     # epoch's curve grows before the NaN weights show; the rollback must undo it
     dict(solver="sgd", activation="tanh", shuffle=False, partial=True),
     dict(solver="adam", activation="logistic", shuffle=False)],
    ids=["adam", "sgd", "lbfgs", "early-stopping", "partial_fit", "tanh", "logistic"],
)
def test_non_finite_X_is_refused_by_every_solver(kwargs, bad, digits_small):
    # the minibatch solvers check X for NaN/inf only when an epoch's loss is not
    # finite: the error and the untouched state must be the same as an upfront check
    X, y = digits_small
    kwargs = dict(kwargs)
    partial = kwargs.pop("partial", False)
    X_bad = X.copy()
    X_bad[-1, 3] = bad  # a single entry, in the validation split when there is one
    message = "Input X contains NaN" if np.isnan(bad) else "Input X contains infinity"
    est = _fitted(X, y, warm_start=True, **kwargs)
    before = _state(est)
    with pytest.raises(ValueError, match=re.escape(message)):
        if partial:
            est.partial_fit(X_bad, y)
        else:
            est.fit(X_bad, y)
    _assert_state_equal(_state(est), before)


def test_bad_input_to_predict(digits_small):
    X, y = digits_small
    est = _fitted(X, y)
    with pytest.raises(NotFittedError):
        TwoLayerClassifier().predict(X)
    with pytest.raises(ValueError, match="X has 3 features, but TwoLayerClassifier is "
                                         "expecting 64 features as input"):
        est.predict(X[:, :3])
    with pytest.raises(ValueError, match="X has 3 features"):
        est.predict(X[:, :3].astype(np.float32))  # the fast path checks the width too
    Xn = X[:4].copy()
    Xn[1, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.predict_proba(Xn)
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.predict(X[0])


def test_partial_fit_errors_leave_state_unchanged(digits_small):
    X, y = digits_small
    est = TwoLayerClassifier(hidden_units=8, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        est.partial_fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    keep = y < 5
    est.partial_fit(X[keep], y[keep], classes=np.arange(5))
    before = _state(est)
    y_before = y.copy()
    with pytest.raises(ValueError, match=re.escape("`y` has classes not in `self.classes_`")):
        est.partial_fit(X, y)
    _assert_state_equal(_state(est), before)
    assert_array_equal(y, y_before)
    with pytest.raises(ValueError, match="is not the same as on the last call"):
        est.partial_fit(X[keep], y[keep], classes=np.arange(6))
    with pytest.raises(ValueError, match="X has 3 features"):
        est.partial_fit(X[keep][:, :3], y[keep])
    _assert_state_equal(_state(est), before)
    est.set_params(early_stopping=True)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        est.partial_fit(X[keep], y[keep])
    est.set_params(early_stopping=False, class_weight="balanced")
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported"):
        est.partial_fit(X[keep], y[keep])
    est.set_params(class_weight=None)
    _assert_state_equal(_state(est), before)
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as info:
        TwoLayerClassifier(solver="lbfgs").partial_fit(X, y, classes=np.arange(10))
    assert "lbfgs is not stochastic" in str(info.value.__cause__)



def test_partial_fit_plain_batches_skip_validation_but_not_its_checks(digits_small, monkeypatch):
    # a later batch that validate_data would leave as it is (float32 C ndarray of the
    # fitted width, 1-D int labels) skips it; the result is the same as for input
    # that goes through it, and bad batches are still refused
    import fastmlp._base as fc

    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return validate_data(*args, **kwargs)

    validate_data = fc.validate_data
    monkeypatch.setattr(fc, "validate_data", counted)
    X, y = digits_small
    X32 = X.astype(np.float32)
    fast = TwoLayerClassifier(hidden_units=8, random_state=0)
    slow = TwoLayerClassifier(hidden_units=8, random_state=0)
    classes = np.arange(10)
    fast.partial_fit(X32, y, classes=classes)
    slow.partial_fit(X32, y, classes=classes)
    for _ in range(2):
        del calls[:]
        fast.partial_fit(X32, y)
        assert calls == []  # skipped
        slow.partial_fit(X32.tolist(), y.tolist())  # lists: validated and converted
        assert calls == [1]
    _assert_same_weights(fast, slow, rtol=0, atol=0)
    before = _state(fast)
    nan_X = X32.copy()
    nan_X[3, 9] = np.nan
    for bad_X, bad_y, message, validated in [
        (nan_X, y, "Input X contains NaN", False),  # found by the epoch's loss
        (np.full_like(X32, np.inf), y, "Input X contains infinity", False),
        (X32, y + 10, "`y` has classes not in `self.classes_`", False),
        (X32[:, :5].copy(), y, "X has 5 features", True),
        (X32[:0], y[:0], "0 sample(s)", True),
        (X32, y[:-1], "inconsistent numbers of samples", True),
    ]:
        del calls[:]
        with pytest.raises(ValueError, match=re.escape(message)):
            fast.partial_fit(bad_X, bad_y)
        assert (calls == [1]) is validated, message
        _assert_state_equal(_state(fast), before)
    # a warm-start fit of plain input skips it too, and matches the validated one
    warm_fast = clone(fast).set_params(warm_start=True, max_iter=2)
    warm_slow = clone(fast).set_params(warm_start=True, max_iter=2)
    _fit_quiet(warm_fast, X32, y)
    _fit_quiet(warm_slow, X32, y)
    del calls[:]
    _fit_quiet(warm_fast, X32, y)
    assert calls == []
    _fit_quiet(warm_slow, X32.tolist(), y.tolist())
    assert calls == [1]
    _assert_same_weights(warm_fast, warm_slow, rtol=0, atol=0)

def test_warm_start_errors(digits_small):
    X, y = digits_small
    est = _fitted(X, y, warm_start=True)
    before = _state(est)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same"):
        est.fit(X[y < 5], y[y < 5])
    est.set_params(hidden_units=9)
    with pytest.raises(ValueError, match="hidden_units=9 but the fitted coefs_ have 8"):
        est.fit(X, y)
    est.set_params(hidden_units=8)
    _assert_state_equal(_state(est), before)


def test_weight_errors(digits_small, multilabel_targets):
    X, y = digits_small
    sw = np.ones(y.size)
    sw[3] = -1.0
    with pytest.raises(ValueError, match="Negative values in data passed to"):
        TwoLayerClassifier(max_iter=1).fit(X, y, sample_weight=sw)
    with pytest.raises(ValueError, match="Sample weights must contain at least one non-zero"):
        TwoLayerClassifier(max_iter=1).fit(X, y, sample_weight=np.zeros(y.size))
    with pytest.raises(ValueError, match="sum to zero"):  # zero weight on every class present
        TwoLayerClassifier(max_iter=1, class_weight={0: 0.0}).fit(X[y == 0], y[y == 0])
    with pytest.raises(ValueError, match="class_weight is not supported for multilabel"):
        TwoLayerClassifier(class_weight="balanced", max_iter=1).fit(X, multilabel_targets)
    with pytest.raises(ValueError, match="sample_weight.shape"):
        TwoLayerClassifier(max_iter=1).fit(X, y, sample_weight=np.ones(3))


def test_validation_set_too_small(digits_small):
    X, y = digits_small
    est = TwoLayerClassifier(early_stopping=True, validation_fraction=0.001, max_iter=2)
    with pytest.raises(ValueError, match="The validation set is too small"):
        est.fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_divergence_raises_and_leaves_previous_fit(solver, digits_small):
    X, y = digits_small
    X_big = X * 1e18  # float32: squares of the activations overflow to inf
    est = TwoLayerClassifier(hidden_units=8, solver=solver, learning_rate_init=1e6,
                             max_iter=5, random_state=0)
    with pytest.raises(ValueError, match="Training diverged at epoch 1|non-finite"):
        est.fit(X_big, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    est = _fitted(X, y, warm_start=True, solver=solver)
    before = _state(est)
    est.set_params(learning_rate_init=1e6)
    with pytest.raises(ValueError, match="Training diverged|non-finite"):
        est.fit(X_big, y)
    _assert_state_equal(_state(est), {**before, "learning_rate_init": 1e6})
    assert np.isfinite(est.predict_proba(X)).all()


@pytest.mark.parametrize("weights, message", [
    ({0: -0.5, 1: 1.0}, "class_weight must be finite and non-negative, got -0.5 for class 0"),
    ({0: 1.0, 1: np.nan}, "class_weight must be finite and non-negative, got nan for class 1"),
    ({0: np.inf, 1: 1.0}, "class_weight must be finite and non-negative, got inf for class 0"),
    ({0: None, 1: 1.0}, "class_weight must be finite and non-negative, got nan for class 0"),
])
def test_negative_or_non_finite_class_weight_refused(weights, message, digits_small):
    X, y = digits_small
    yb = (y > 4).astype(int)
    _assert_fit_refused(TwoLayerClassifier(class_weight=weights, max_iter=1), X, yb, message)
    est = TwoLayerClassifier(class_weight=weights, max_iter=1)
    with pytest.raises(ValueError, match=re.escape(message)):
        est.partial_fit(X, yb, classes=[0, 1])
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


def test_class_weight_times_sample_weight_overflowing_the_dtype_refused(digits_small):
    X, y = digits_small
    yb = (y > 4).astype(int)
    # 1e20 * 1e20 is finite in float64 but overflows float32, the working dtype
    est = TwoLayerClassifier(class_weight={0: 1e20, 1: 1.0}, max_iter=1)
    with pytest.raises(ValueError, match="class weights\\) overflow float32"):
        est.fit(X, yb, sample_weight=np.full(len(yb), 1e20))
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


# ------------------------------------------------- parity fixes (issue 12)
def test_partial_fit_takes_sample_weight_third_as_mlpclassifier(digits_small):
    X, y = digits_small
    sw = np.random.default_rng(0).uniform(0.5, 1.5, size=y.size)
    classes = np.unique(y)
    kw = dict(hidden_units=8, random_state=0, dtype=np.float64, shuffle=False)
    positional = TwoLayerClassifier(**kw).partial_fit(X, y, sw, classes)
    keywords = TwoLayerClassifier(**kw).partial_fit(X, y, sample_weight=sw, classes=classes)
    _assert_same_weights(positional, keywords, rtol=0, atol=0)
    unweighted = TwoLayerClassifier(**kw).partial_fit(X, y, classes=classes)
    assert not np.allclose(positional.coefs_[0], unweighted.coefs_[0])
    mlp = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, shuffle=False)
    mlp.partial_fit(X, y, sw, classes)
    _assert_same_weights(positional, mlp, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_verbose_prints_mlpclassifiers_lines(early_stopping, digits_small, capsys):
    X, y = digits_small
    yb = (y > 4).astype(int)  # binary: the early-stopping split is the same too
    mlp, ours = _pair(dict(solver="sgd", verbose=True, early_stopping=early_stopping,
                           tol=0.5, n_iter_no_change=2), max_iter=20)
    _fit_quiet(mlp, X, yb)
    theirs = capsys.readouterr().out
    _fit_quiet(ours, X, yb)
    out, err = capsys.readouterr()
    assert re.match(r"Iteration 1, loss = \d\.\d{8}\n", out)
    assert ("Validation score: " in out) is early_stopping
    assert "consecutive epochs. Stopping." in out
    assert out == theirs  # line for line, digit for digit
    assert err == ""


def test_early_stopping_split_is_mlpclassifiers(digits_small):
    X, y = digits_small
    # binary with a class of one member: scikit-learn's stratified split refuses it
    y_one = np.zeros(len(y), dtype=int)
    y_one[7] = 1
    message = ("The least populated classes in y have only 1 member, which is too few. The "
               "minimum number of groups for any class cannot be less than 2. Classes with too "
               "few members are: ['True']")
    for est in (MLPClassifier(early_stopping=True, max_iter=2),
                TwoLayerClassifier(early_stopping=True, max_iter=2)):
        with pytest.raises(ValueError, match=re.escape(message)):
            est.fit(X, y_one)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    # multiclass: not stratified, as in MLPClassifier, so a one-member class is
    # fine and the split, the scores and the restored weights are the same
    y_multi = y.copy()
    y_multi[y_multi == 9] = 8
    y_multi[3] = 9
    mlp, ours = _pair(dict(solver="sgd", early_stopping=True, learning_rate_init=0.1,
                           n_iter_no_change=3), max_iter=30)
    _fit_quiet(mlp, X, y_multi)
    _fit_quiet(ours, X, y_multi)
    assert ours.validation_scores_ == mlp.validation_scores_
    assert ours.n_iter_ == mlp.n_iter_
    _assert_same_weights(ours, mlp, rtol=1e-10, atol=1e-14)


def test_non_finite_loss_with_early_stopping_restores_best_weights(digits_small):
    X, y = digits_small
    seen = []

    def blow_up(est, info):
        seen.append(copy.deepcopy(_params(est)))
        if info["epoch"] == 3:  # the next epoch's loss is not finite
            est.coefs_[1][...] = np.inf

    est = TwoLayerClassifier(hidden_units=8, solver="sgd", learning_rate_init=0.1,
                             early_stopping=True, max_iter=20, random_state=0,
                             callbacks=[blow_up], dtype=np.float64)
    with pytest.warns(ConvergenceWarning, match="Training diverged at epoch 4 .* restored"):
        est.fit(X, y)
    assert est.n_iter_ == 4 and len(est.loss_curve_) == 4
    assert not np.isfinite(est.loss_curve_[-1])
    best = int(np.argmax(est.validation_scores_[:3]))
    for p, q in zip(_params(est), seen[best], strict=True):
        assert_array_equal(p, q)
    assert est.loss_ == est.loss_curve_[best]
    assert est.best_validation_score_ == est.validation_scores_[best]
    assert np.isfinite(est.predict_proba(X)).all()  # a usable model
    # without early stopping: the ValueError and the roll-back of before
    est = TwoLayerClassifier(hidden_units=8, solver="sgd", learning_rate_init=0.1,
                             max_iter=20, random_state=0, callbacks=[blow_up])
    with pytest.raises(ValueError, match="non-finite parameter weights.* at epoch 4"):
        est.fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


def test_partial_fit_classes_on_hand_set_weights(digits_small):
    # scikit-learn's test_fit sets the weights by hand, then calls
    # partial_fit(..., classes=...): classes_ comes from `classes`
    X, y = digits_small
    est = TwoLayerClassifier(hidden_units=2, solver="sgd", dtype=np.float64)
    est.coefs_ = [np.full((64, 2), 0.01), np.full((2, 1), 0.1)]
    est.intercepts_ = [np.zeros(2), np.zeros(1)]
    est.n_features_in_ = 64
    yb = np.where(y > 4, "big", "small")
    est.partial_fit(X, yb, classes=["small", "big"])
    assert_array_equal(est.classes_, ["big", "small"])
    assert (est.out_activation_, est.n_outputs_) == ("logistic", 1)
    assert set(est.predict(X)) <= {"big", "small"}
    # weights set by hand for another number of outputs are refused, naming both
    est = TwoLayerClassifier(hidden_units=2, solver="sgd")
    est.coefs_ = [np.full((64, 2), 0.01), np.full((2, 1), 0.1)]
    est.intercepts_ = [np.zeros(2), np.zeros(1)]
    est.n_features_in_ = 64
    with pytest.raises(ValueError, match="y has 10 outputs but the fitted coefs_ have 1"):
        est.partial_fit(X, y, classes=np.arange(10))
    assert "classes_" not in est.__dict__


def test_loss_attribute_and_hidden_layer_sizes_message():
    assert TwoLayerClassifier().loss == MLPClassifier().loss == "log_loss"
    assert "loss" not in TwoLayerClassifier().get_params()
    with pytest.raises(TypeError, match=re.escape(
            "TwoLayerClassifier has one hidden layer: pass hidden_units=k instead of "
            "hidden_layer_sizes=(k,) (got hidden_layer_sizes=(50,))")):
        TwoLayerClassifier(hidden_layer_sizes=(50,))


def test_save_and_load_model_from_the_package(digits_small, tmp_path):
    import fastmlp

    assert {"load_model", "save_model", "TwoLayerRegressor"} <= set(fastmlp.__all__)
    from fastmlp import load_model, save_model

    X, y = digits_small
    est = _fit_quiet(TwoLayerClassifier(hidden_units=8, max_iter=3, random_state=0,
                                        early_stopping=True, verbose="progress"), X, y)
    back = load_model(save_model(est, tmp_path / "m.npz"))
    assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    assert back.get_params() == est.get_params()
    assert back.validation_scores_ == est.validation_scores_
