"""``TwoLayerClassifier``: a scikit-learn estimator on the compiled solvers.

A drop-in for ``MLPClassifier(hidden_layer_sizes=(k,))``: write
``TwoLayerClassifier(hidden_units=k, ...)`` with the other arguments unchanged.
The estimator validates and converts the data once, then hands whole epochs to
:func:`fastmlp.solvers.run_epoch`; Python runs once per epoch for the learning
rate schedule, the stopping rules, early stopping, progress and callbacks, with
scikit-learn's definitions (``_fit_stochastic``, ``SGDOptimizer``,
``AdamOptimizer``, ``_init_coef``).
"""

from __future__ import annotations

import math
import sys
import threading
import time
import warnings
import weakref
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import assert_all_finite, check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import solvers
from ._jit import thread_count

_STOCHASTIC_SOLVERS = ("sgd", "adam")
_DTYPES = {"float32": np.float32, "float64": np.float64}
# Sparse formats taken as they are (others are converted to CSR first); all become dense.
_SPARSE_FORMATS = ["csr", "csc", "coo"]
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _writeable(X):
    """X itself, or a copy when X is read-only (e.g. a memory map).

    Numba types a read-only array apart from a writeable one, so handing one to
    the compiled code would compile every kernel again (tens of seconds) for data
    it never writes. Only read-only input already in the working dtype is copied:
    any other input was converted, and so copied, by validation already.
    """
    return X if X.flags.writeable else X.copy()


# One lock per estimator, kept outside it (a lock in __dict__ would stop copies
# and pickles): fits of one estimator from several threads take turns.
_FIT_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FIT_LOCKS_GUARD = threading.Lock()


def _fit_lock(estimator) -> threading.Lock:
    with _FIT_LOCKS_GUARD:
        lock = _FIT_LOCKS.get(estimator)
        if lock is None:
            lock = _FIT_LOCKS[estimator] = threading.Lock()
    return lock


def _check_solver(estimator):
    if estimator.solver not in _STOCHASTIC_SOLVERS:
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {estimator.solver} "
            "is not stochastic."
        )
    return True


class TwoLayerClassifier(ClassifierMixin, BaseEstimator):
    """Two-layer perceptron classifier trained by compiled Numba epochs.

    ``X W1 + b1 -> activation -> W2 + b2 -> softmax`` (or a logistic output for
    binary and multilabel targets), trained on the log-loss with an L2 penalty.
    Parameters, defaults and fitted attributes are those of
    :class:`sklearn.neural_network.MLPClassifier` with one hidden layer, so
    ``MLPClassifier(hidden_layer_sizes=(k,), **kw)`` becomes
    ``TwoLayerClassifier(hidden_units=k, **kw)``.

    Parameters
    ----------
    hidden_units : int, default=100
        Number of units of the hidden layer (``hidden_layer_sizes=(hidden_units,)``).
    activation : {'relu', 'tanh', 'logistic', 'identity'}, default='relu'
        Activation of the hidden layer.
    solver : {'adam', 'sgd', 'lbfgs'}, default='adam'
        'adam' and 'sgd' run minibatch epochs in compiled code; 'lbfgs' runs
        ``scipy.optimize.minimize(method="L-BFGS-B")`` on the compiled full-batch
        loss and gradient.
    alpha : float, default=0.0001
        Strength of the L2 penalty, divided by the (weighted) sample size of each
        batch as in scikit-learn.
    batch_size : int or 'auto', default='auto'
        Minibatch size; 'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule of the step size, for ``solver='sgd'`` only. 'invscaling' sets
        ``learning_rate_init / (t + 1) ** power_t`` after each epoch (``t`` is
        the number of samples seen); 'adaptive' divides it by 5 each time
        ``n_iter_no_change`` epochs in a row fail to improve by ``tol``.
    learning_rate_init : float, default=0.001
        Initial step size ('sgd' and 'adam').
    power_t : float, default=0.5
        Exponent of 'invscaling'.
    max_iter : int, default=200
        Maximum number of epochs ('sgd', 'adam') or of iterations ('lbfgs').
    shuffle : bool, default=True
        Shuffle the samples before each epoch. The order is drawn in compiled
        code from a seed taken from ``random_state`` once per epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the Glorot initialisation (drawn in scikit-learn's order, so the
        same ``random_state`` gives ``MLPClassifier``'s starting weights), the
        early-stopping split and the per-epoch shuffling seeds.
    tol : float, default=1e-4
        Tolerance of the stopping rule (and ``gtol`` of L-BFGS).
    verbose : bool or int, default=False
        Write a progress line per epoch to stderr (redrawn in place on a terminal).
    warm_start : bool, default=False
        Start ``fit`` from the previous weights. Unlike ``MLPClassifier``, the
        optimizer state (Adam moments, momentum velocities, step count) carries
        over too; the step size restarts from ``learning_rate_init``.
    momentum : float, default=0.9
        Momentum of 'sgd'.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum ('sgd', ``momentum > 0``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified except
        for multilabel targets), stop when the monitored validation quantity has
        not improved by ``tol`` for ``n_iter_no_change`` epochs, and restore the
        best weights seen.
    validation_fraction : float, default=0.1
        Fraction held out for early stopping.
    beta_1 : float, default=0.9
        Adam's decay rate of the first moment.
    beta_2 : float, default=0.999
        Adam's decay rate of the second moment.
    epsilon : float, default=1e-8
        Adam's denominator offset.
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` before stopping (or, with
        'adaptive', before dividing the step size).
    max_fun : int, default=15000
        Maximum number of loss evaluations of 'lbfgs'.
    dtype : {np.float32, np.float64, 'float32', 'float64'}, default=np.float32
        Working precision of the weights and of the compiled code.
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight``. 'balanced'
        uses ``n_samples / (n_classes * bincount(y))``. Not available for
        multilabel targets.
    early_stopping_metric : {'score', 'loss'}, default='score'
        Quantity monitored by early stopping: the validation accuracy
        (scikit-learn's choice) or the validation log-loss (mean, weighted,
        without the L2 penalty).
    callbacks : list of callables or None, default=None
        Each is called once per epoch (per iteration for 'lbfgs') as
        ``cb(estimator, info)`` where ``info`` is a dict with ``epoch``,
        ``loss``, ``validation_score``, ``validation_loss``, ``learning_rate``,
        ``t`` and ``elapsed`` (seconds). The estimator's fitted attributes are
        current. A truthy return value stops training (without a
        ``ConvergenceWarning``).
    n_threads : int or None, default=None
        BLAS threads for the matrix products of a large problem while fitting
        and predicting (a small one runs on the calling thread). None keeps the
        process's count; -1 is all cores, -2 all but one. The other compiled
        kernels always run on the calling thread, so any number of Python
        threads may fit and predict at once; fits of one estimator from several
        threads take turns.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels (``arange(n_labels)`` for a multilabel indicator target).
    coefs_ : list of two ndarrays
        ``[W1 (n_features, hidden_units), W2 (hidden_units, n_outputs)]``.
    intercepts_ : list of two ndarrays
        ``[b1 (hidden_units,), b2 (n_outputs,)]``.
    loss_ : float
        Loss (with the L2 penalty) of the last epoch, or at the L-BFGS solution.
    best_loss_ : float or None
        Lowest training loss; None with early stopping (as in scikit-learn).
    loss_curve_ : list of float
        Training loss per epoch (per iteration for 'lbfgs').
    validation_scores_ : list of float or None
        Validation accuracy per epoch with early stopping, else None.
    validation_loss_curve_ : list of float or None
        Validation log-loss per epoch with early stopping, else None.
    best_validation_score_ : float or None
        Validation accuracy of the restored weights with early stopping, else None.
    n_iter_ : int
        Epochs (or L-BFGS iterations) run by the last call.
    t_ : int
        Training samples seen by the stochastic solvers over all calls.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` had string column names.
    n_layers_ : int
        Always 3 (input, hidden, output).
    n_outputs_ : int
        Number of output units: 1 for binary targets, else the number of
        classes or labels.
    out_activation_ : {'softmax', 'logistic'}
        Output activation: 'softmax' for multiclass, 'logistic' for binary
        (one unit) and multilabel targets.

    Notes
    -----
    Sparse ``X`` is accepted and converted once to a dense array of the working
    dtype: the kernels are dense, so memory grows to ``n_samples * n_features``.

    Prediction needs only the public attributes ``classes_``, ``coefs_``,
    ``intercepts_``, ``n_features_in_``, ``n_outputs_``, ``out_activation_`` and
    the parameters, so a model rebuilt from them (or unpickled) predicts alike.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from fastmlp import TwoLayerClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = TwoLayerClassifier(hidden_units=32, max_iter=50, random_state=0)
    >>> clf.fit(X / 16, y).score(X / 16, y) > 0.9  # doctest: +SKIP
    True
    """

    _parameter_constraints: dict = {
        "hidden_units": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dtype": [Options(type, {np.float32, np.float64}), StrOptions({"float32", "float64"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "early_stopping_metric": [StrOptions({"score", "loss"})],
        "callbacks": [list, tuple, None],
        "n_threads": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Integral, None, -1, closed="right"),
            None,
        ],
    }

    def __init__(
        self,
        hidden_units=100,
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype=np.float32,
        class_weight=None,
        early_stopping_metric="score",
        callbacks=None,
        n_threads=None,
    ):
        self.hidden_units = hidden_units
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.class_weight = class_weight
        self.early_stopping_metric = early_stopping_metric
        self.callbacks = callbacks
        self.n_threads = n_threads

    # ------------------------------------------------------------------ helpers
    def _working_dtype(self):
        dt = self.dtype
        return np.dtype(_DTYPES[dt] if isinstance(dt, str) else dt)

    def _kernel_options(self, n_rows, n_features, n_hidden):
        """Options of the compiled calls for batches of ``n_rows`` rows.

        ``solvers.kernel_options``, from the shapes and ``n_threads`` alone: the
        same data and ``random_state`` give the same weights however busy the
        machine is.
        """
        return solvers.kernel_options(
            n_rows, n_features, n_hidden, n_threads=thread_count(self.n_threads)
        )

    def __getstate__(self):
        state = super().__getstate__()
        # The workspace is rebuilt on demand: keep pickles small.
        state.pop("_workspace", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_label = True
        return tags

    # ------------------------------------------------------------- targets
    def _multilabel(self):
        return self.out_activation_ == "logistic" and self.n_outputs_ > 1

    def _encode_targets(self, y, first_pass, incremental, classes):
        """Labels -> (targets matrix Y, class index per sample or None).

        Sets ``classes_``, ``n_outputs_`` and ``out_activation_`` on the first pass.
        """
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not first_pass and y.ndim == 1 and y.dtype.kind in "iuU" and "classes_" in self.__dict__:
            # Later passes (partial_fit, warm_start) with integer or string labels:
            # these are class labels whatever their number, so the checks that
            # follow reduce to "every label is a known class" (type_of_target and
            # unique_labels would cost more than a digits-sized epoch).
            encoded = self._encode_known_labels(y, incremental)
            if encoded is not None:
                return encoded
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y")
        if y_type not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(
                f"TwoLayerClassifier supports binary, multiclass and multilabel-indicator "
                f"targets; got a {y_type!r} target."
            )
        multilabel = y_type == "multilabel-indicator"
        if multilabel:
            y = np.asarray(y)
            if not np.isin(y, (0, 1)).all():
                raise ValueError("A multilabel-indicator y must contain only 0 and 1.")
        if first_pass:
            if multilabel:
                self.classes_ = np.arange(y.shape[1])
            elif incremental:
                self.classes_ = unique_labels(classes)
            else:
                self.classes_ = unique_labels(y)
            n_classes = len(self.classes_)
            if multilabel:
                self.out_activation_, self.n_outputs_ = "logistic", y.shape[1]
            elif n_classes <= 2:
                self.out_activation_, self.n_outputs_ = "logistic", 1
            else:
                self.out_activation_, self.n_outputs_ = "softmax", n_classes
        else:
            if multilabel != self._multilabel():
                kind = "multilabel" if self._multilabel() else "single-label"
                raise ValueError(f"y does not match the {kind} target of the previous fit.")
            labels = np.arange(y.shape[1]) if multilabel else unique_labels(y)
            if self.warm_start and not incremental:
                if set(labels) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {labels}"
                    )
            elif multilabel and y.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"y has {y.shape[1]} labels, the model was fitted with {self.n_outputs_}."
                )
        if not multilabel:
            labels = unique_labels(y)
            if len(np.setdiff1d(labels, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {labels}."
                )
        if multilabel:
            return np.ascontiguousarray(y, dtype=self._working_dtype()), None
        return self._one_hot(np.searchsorted(self.classes_, y))

    def _encode_known_labels(self, y, incremental):
        """Targets of 1-D labels for a fitted single-label model, or None to take the long way.

        The long way (``_encode_targets``) also gives the error messages, so
        anything unusual returns None: a multilabel model, labels outside
        ``classes_``, or warm_start with other classes than before.
        """
        classes = self.classes_
        if self._multilabel() or classes.dtype.kind != y.dtype.kind:
            return None
        idx = np.searchsorted(classes, y)
        np.minimum(idx, len(classes) - 1, out=idx)
        if not np.array_equal(classes[idx], y):
            return None  # a label that is not a class
        if not incremental and self.warm_start:
            if np.unique(idx).shape[0] != len(classes):
                return None  # warm_start needs the same classes as before
        return self._one_hot(idx)

    def _one_hot(self, idx):
        """Target matrix Y from class indices ``idx``; returns ``(Y, idx)``."""
        dt = self._working_dtype()
        n = idx.shape[0]
        if self.out_activation_ == "softmax":
            Y = np.zeros((n, self.n_outputs_), dtype=dt)
            Y[np.arange(n), idx] = 1
        else:
            # binary: one logistic unit for classes_[1]; one class: an all-zero target
            Y = (idx == 1).astype(dt).reshape(n, 1)
        return Y, idx

    def _decode(self, P):
        """Output probabilities (n, n_outputs) -> predicted labels."""
        if self.out_activation_ == "softmax":
            return self.classes_[np.argmax(P, axis=1)]
        if self.n_outputs_ > 1:
            return (P > 0.5).astype(int)  # multilabel indicator
        if len(self.classes_) == 1:
            return self.classes_[np.zeros(P.shape[0], dtype=np.intp)]
        return self.classes_[(P[:, 0] > 0.5).astype(np.intp)]

    def _sample_weights(self, sample_weight, X, idx, incremental):
        """Per-sample weights: sample_weight times the class weights, in the working dtype."""
        n = X.shape[0]
        dt = self._working_dtype()
        if sample_weight is None and self.class_weight is None:
            return np.ones(n, dtype=dt)
        if sample_weight is None:
            sw = np.ones(n, dtype=np.float64)
        else:
            sw = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True, copy=True
            )
        if self.class_weight is not None:
            if idx is None:
                raise ValueError("class_weight is not supported for multilabel targets.")
            if incremental and self.class_weight == "balanced":
                raise ValueError(
                    "class_weight='balanced' is not supported for partial_fit: compute the "
                    "weights once with sklearn.utils.class_weight.compute_class_weight and pass "
                    "them as a dict."
                )
            cw = compute_class_weight(
                self.class_weight, classes=self.classes_, y=self.classes_[idx]
            )
            bad = ~(np.isfinite(cw) & (cw >= 0))  # a None value comes back as NaN
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"class_weight must be finite and non-negative, got {cw[i]} for class "
                    f"{self.classes_.tolist()[i]!r}."
                )
            with np.errstate(over="ignore"):  # an overflow is refused below
                sw *= cw[idx]
        if not sw.max() <= np.finfo(dt).max:
            raise ValueError(
                f"The sample weights (times the class weights) overflow {dt.name}: keep "
                "their products finite."
            )
        if not sw.sum() > 0:
            raise ValueError("The sample weights (times the class weights) sum to zero.")
        return sw.astype(dt)

    # ----------------------------------------------------------------- init
    def _init_params(self, rng, n_features, dt):
        """Glorot-uniform W1, b1, W2, b2 drawn like scikit-learn's ``_init_coef``.

        Draw order W1, b1, W2, b2 in float64, bound ``sqrt(factor / (fan_in + fan_out))``
        with factor 6 (2 for the logistic activation), then cast to ``dt``.
        """
        factor = 2.0 if self.activation == "logistic" else 6.0
        params = []
        for fan_in, fan_out in ((n_features, self.hidden_units), (self.hidden_units,
                                                                  self.n_outputs_)):
            bound = np.sqrt(factor / (fan_in + fan_out))
            W = rng.uniform(-bound, bound, (fan_in, fan_out))
            b = rng.uniform(-bound, bound, fan_out)
            params += [np.ascontiguousarray(W, dtype=dt), np.ascontiguousarray(b, dtype=dt)]
        return params  # [W1, b1, W2, b2]

    def _start_params(self, first_pass, rng, n_features, dt):
        """Return fresh weights, or private copies of the fitted ones.

        Training never writes into arrays that a failed fit would have to give back.
        """
        if first_pass:
            W1, b1, W2, b2 = self._init_params(rng, n_features, dt)
        else:
            W1, W2 = self.coefs_
            b1, b2 = self.intercepts_
            if W1.shape[1] != self.hidden_units:
                raise ValueError(
                    f"hidden_units={self.hidden_units} but the fitted coefs_ have "
                    f"{W1.shape[1]} hidden units; refit with warm_start=False."
                )
            W1, b1, W2, b2 = (np.array(p, dtype=dt, order="C") for p in (W1, b1, W2, b2))
        self.coefs_ = [W1, W2]
        self.intercepts_ = [b1, b2]
        self.n_layers_ = 3
        return (W1, b1, W2, b2)

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Sparse input is converted once to a dense array of the
            working dtype.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights.

        Returns
        -------
        self : TwoLayerClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False, classes=None)

    @available_if(_check_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Run one epoch over ``X``, ``y``, continuing from the current state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.
        classes : array-like of shape (n_classes,), default=None
            All the classes of the problem; required on the first call (unless
            ``y`` is a multilabel indicator matrix), ignored afterwards.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights.

        Returns
        -------
        self : TwoLayerClassifier
            The updated estimator.
        """
        first_call = not hasattr(self, "classes_")
        if first_call and classes is None:
            try:
                multilabel = type_of_target(y).startswith("multilabel")
            except ValueError:
                multilabel = False
            if not multilabel:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif not first_call and classes is not None and not self._multilabel():
            if not np.array_equal(unique_labels(classes), self.classes_):
                raise ValueError(
                    f"`classes={classes!r}` is not the same as on the last call to "
                    f"partial_fit, was: {self.classes_!r}"
                )
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _fit(self, X, y, sample_weight, incremental, classes):
        if self.callbacks is not None and not all(callable(c) for c in self.callbacks):
            raise ValueError("callbacks must be a list of callables cb(estimator, info).")
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        # Fits of one estimator from several threads (partial_fit from a pool of
        # workers) take turns: each then sees the weights the previous one left.
        with _fit_lock(self):
            first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
            # lists (loss_curve_, ...) grow in place during a fit: keep copies of them
            saved = {k: list(v) if type(v) is list else v for k, v in self.__dict__.items()}
            try:
                self._fit_unsafe(X, y, sample_weight, incremental, classes, first_pass)
            except BaseException:
                # nothing half-fitted: back to the state before this call
                self.__dict__.clear()
                self.__dict__.update(saved)
                raise
        return self

    def _fit_unsafe(self, X, y, sample_weight, incremental, classes, first_pass):
        dt = self._working_dtype()
        # A NaN or an infinity in X makes the first epoch's loss non-finite, so the
        # minibatch solvers check X only then (below): scanning 47M floats up
        # front costs ~10% of a Fashion-MNIST partial_fit epoch. L-BFGS and the
        # early-stopping split (whose validation rows no loss sees) check up front.
        deferred_check = self.solver != "lbfgs" and not self.early_stopping
        if first_pass or not deferred_check or not self._is_plain_batch(X, y, dt):
            X, y = validate_data(
                self,
                X,
                y,
                reset=first_pass,
                accept_sparse=_SPARSE_FORMATS,
                dtype=dt,
                order="C",
                multi_output=True,
                y_numeric=False,
                ensure_all_finite=not deferred_check,
            )
        try:
            self._fit_validated(X, y, sample_weight, incremental, classes, first_pass, dt)
        except ValueError:
            if deferred_check:  # the input's own error comes first
                assert_all_finite(X, estimator_name=type(self).__name__, input_name="X")
            raise

    def _is_plain_batch(self, X, y, dt):
        """Whether a batch already is what ``validate_data`` makes of it.

        Asked on later ``partial_fit`` calls and ``warm_start`` fits, never on a
        first pass. True for a C-ordered ndarray in the working dtype, of the
        fitted width, with at least one row and no feature names, and 1-D integer
        or string labels of the same length: validation would neither convert nor
        refuse it (its NaN/inf check is deferred to the epoch's loss, as for any
        minibatch fit). Skipping it saves about 0.3 ms per call, a quarter of a
        digits epoch.
        """
        return (
            self._is_plain_X(X, self.__dict__.get("n_features_in_"))
            and X.dtype == dt
            and X.flags.c_contiguous
            and type(y) is np.ndarray
            and y.ndim == 1
            and y.shape[0] == X.shape[0]
            and y.dtype.kind in "iuU"
        )

    def _is_plain_X(self, X, width):
        """Whether ``X`` is a 2-D ndarray with rows and ``width`` columns, and no names fitted.

        The common ground of the fast paths that skip ``validate_data``
        (:meth:`_is_plain_batch`, :meth:`_proba`).
        """
        return (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.shape[0] > 0
            and X.shape[1] == width
            and "feature_names_in_" not in self.__dict__
        )

    def _fit_validated(self, X, y, sample_weight, incremental, classes, first_pass, dt):
        if sp.issparse(X):
            X = np.ascontiguousarray(X.toarray(), dtype=dt)  # (n, D) dense, once
        X = _writeable(X)
        Y, idx = self._encode_targets(y, first_pass, incremental, classes)
        sw = self._sample_weights(sample_weight, X, idx, incremental)
        rng = check_random_state(self.random_state)
        params = self._start_params(first_pass, rng, X.shape[1], dt)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, sw, params, first_pass)
        else:
            self._fit_stochastic(X, Y, sw, idx, params, rng, first_pass, incremental)
        if not all(np.isfinite(p).all() for p in params):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed, or learning_rate_init is too high."
            )

    # -------------------------------------------------------- stochastic path
    def _optimizer_state(self, params, first_pass, incremental):
        """Return the optimizer state to continue from, or a fresh one."""
        old = self.__dict__.get("_optimizer")
        fresh = (
            first_pass
            or old is None
            or old["solver"] != self.solver
            or old["arrays"][0].shape != params[0].shape
            or old["arrays"][0].dtype != params[0].dtype
        )
        if fresh:
            arrays = solvers.init_optimizer_state(params, self.solver)
            return {"solver": self.solver, "arrays": arrays, "step": 0,
                    "learning_rate": float(self.learning_rate_init)}
        # private copies: a failed call must leave the saved state untouched
        if self.solver == "adam":
            arrays = tuple(a.copy() for a in old["arrays"])
        else:
            v = tuple(a.copy() for a in old["arrays"][:4])
            arrays = v + v
        lr = old["learning_rate"] if incremental else float(self.learning_rate_init)
        return {"solver": self.solver, "arrays": arrays, "step": old["step"],
                "learning_rate": lr}

    def _split_validation(self, X, Y, sw, idx, rng):
        n = X.shape[0]
        n_val = math.ceil(self.validation_fraction * n)
        if n_val < 2 or n - n_val < 1:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size "
                f"of your dataset (n_samples={n}, validation_fraction={self.validation_fraction})."
            )
        stratify = None
        if idx is not None:
            counts = np.bincount(idx)
            n_present = np.count_nonzero(counts)
            if counts[counts > 0].min() >= 2 and min(n_val, n - n_val) >= n_present:
                stratify = idx
        # imported here: sklearn.model_selection (with sklearn.metrics) is only needed
        # for early stopping and would add ~0.1 s to every `import fastmlp.classifier`
        from sklearn.model_selection import train_test_split

        arrays = [X, Y, sw] + ([idx] if idx is not None else [])
        parts = train_test_split(
            *arrays, random_state=rng, test_size=self.validation_fraction, stratify=stratify
        )
        train, val = parts[0::2], parts[1::2]
        return train, val

    def _validation_figures(self, Xv, Yv, swv, opts):
        """Return the validation accuracy and mean log-loss (no penalty) of the weights."""
        params = (self.coefs_[0], self.intercepts_[0], self.coefs_[1], self.intercepts_[1])
        P = solvers.forward_proba(
            Xv, params, activation=self.activation, output=self.out_activation_,
            **opts,
        ).astype(np.float64)
        eps = np.finfo(Xv.dtype).eps
        Pc = np.clip(P, eps, 1 - eps)
        if self.out_activation_ == "softmax":
            correct = np.argmax(P, axis=1) == np.argmax(Yv, axis=1)
            ce = -np.sum(Yv * np.log(Pc), axis=1)
        else:
            correct = np.all((P > 0.5) == (Yv > 0.5), axis=1)
            ce = -np.sum(Yv * np.log(Pc) + (1 - Yv) * np.log1p(-Pc), axis=1)
        if np.isnan(P).any():
            return float("nan"), float("nan")
        return float(np.average(correct, weights=swv)), float(np.average(ce, weights=swv))

    def _fit_stochastic(self, X, Y, sw, idx, params, rng, first_pass, incremental):
        opt = self._optimizer_state(params, first_pass, incremental)
        self._optimizer = opt
        early_stopping = self.early_stopping
        if first_pass:
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.best_loss_ = None if early_stopping else np.inf
        if not isinstance(getattr(self, "loss_curve_", None), list):
            self.loss_curve_ = []  # e.g. continuing an L-BFGS or rebuilt model
        if not hasattr(self, "t_"):
            self.t_ = 0
        if not hasattr(self, "_no_improvement_count"):
            self._no_improvement_count = 0
        if early_stopping:
            if first_pass or self.__dict__.get("validation_scores_") is None:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self._best_validation_loss = np.inf
                self._best_params = tuple(p.copy() for p in params)
                self.best_loss_ = None
            (X, Y, sw, *_), (Xv, Yv, swv, *_) = self._split_validation(X, Y, sw, idx, rng)
            swv = swv.astype(np.float64)
        else:
            if first_pass or getattr(self, "best_loss_", None) is None:
                self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
            self.best_validation_score_ = None
            Xv = Yv = swv = None
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to "
                    "be clipped",
                    stacklevel=3,
                )
            batch_size = int(np.clip(self.batch_size, 1, n))
        D, H = params[0].shape
        ws = self.__dict__.get("_workspace")
        if ws is None or not ws.fits(n, D, H, self.n_outputs_, batch_size, X.dtype):
            ws = solvers.Workspace(n, D, H, self.n_outputs_, batch_size, X.dtype)
        self._workspace = ws
        opts = self._kernel_options(batch_size, D, H)
        val_opts = self._kernel_options(0 if Xv is None else Xv.shape[0], D, H)
        callbacks = list(self.callbacks or ())
        start = time.perf_counter()
        self.n_iter_ = 0
        stop_reason = None
        try:
            for _ in range(self.max_iter):
                seed = rng.randint(np.iinfo(np.int64).max) if self.shuffle else 0
                loss, step = solvers.run_epoch(
                    X, Y, sw, params, opt["arrays"], ws,
                    optimizer=self.solver,
                    learning_rate=opt["learning_rate"],
                    momentum=self.momentum,
                    nesterov=self.nesterovs_momentum,
                    beta_1=self.beta_1,
                    beta_2=self.beta_2,
                    epsilon=self.epsilon,
                    step=opt["step"],
                    alpha=self.alpha,
                    activation=self.activation,
                    output=self.out_activation_,
                    shuffle=self.shuffle,
                    seed=seed,
                    **opts,
                )
                opt["step"] = step
                self.n_iter_ += 1
                if not math.isfinite(loss):
                    raise ValueError(
                        f"Training diverged at epoch {self.n_iter_}: the loss is {loss}. Lower "
                        "learning_rate_init or scale the input features."
                    )
                self.loss_ = float(loss)
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                val_score = val_loss = None
                if early_stopping:
                    val_score, val_loss = self._validation_figures(Xv, Yv, swv, val_opts)
                    self._update_early_stopping(val_score, val_loss, params)
                else:
                    self._update_no_improvement(self.loss_curve_[-1], self.best_loss_)
                    self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])
                if self.verbose:
                    self._progress(self.loss_, val_score, val_loss, time.perf_counter() - start)
                # end of epoch: 'invscaling' uses t_ (samples seen) like SGDOptimizer
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    opt["learning_rate"] = (
                        float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                    )
                if callbacks and self._run_callbacks(
                    callbacks, val_score, val_loss, opt, time.perf_counter() - start
                ):
                    stop_reason = "callback"
                    break
                if self._no_improvement_count > self.n_iter_no_change:
                    if self._trigger_stopping(opt):
                        stop_reason = "converged"
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                        "the optimization hasn't converged yet.",
                        ConvergenceWarning,
                        stacklevel=3,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        if self.verbose:
            sys.stderr.write("\n" if sys.stderr.isatty() else "")
            if stop_reason == "callback":
                sys.stderr.write("Stopped by a callback.\n")
        if early_stopping:
            for p, best in zip(params, self._best_params, strict=True):
                p[...] = best  # restore the best weights, in place

    def _update_no_improvement(self, value, best):
        # scikit-learn: "not better than best by tol" counts as no improvement
        if value > best - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0

    def _update_early_stopping(self, val_score, val_loss, params):
        self.validation_scores_.append(val_score)
        self.validation_loss_curve_.append(val_loss)
        if self.early_stopping_metric == "score":
            if val_score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            better = val_score > self.best_validation_score_
        else:
            self._update_no_improvement(val_loss, self._best_validation_loss)
            better = val_loss < self._best_validation_loss
        if better:
            self.best_validation_score_ = val_score
            self._best_validation_loss = val_loss
            self._best_params = tuple(p.copy() for p in params)

    def _trigger_stopping(self, opt):
        """scikit-learn's ``trigger_stopping``: stop, or divide an adaptive step by 5."""
        what = "Validation " + self.early_stopping_metric if self.early_stopping else (
            "Training loss")
        msg = (
            f"{what} did not improve more than tol={self.tol:f} for "
            f"{self.n_iter_no_change} consecutive epochs."
        )
        if self.solver == "adam" or self.learning_rate != "adaptive":
            if self.verbose:
                sys.stderr.write(f"\n{msg} Stopping.\n")
            return True
        if opt["learning_rate"] <= 1e-6:
            if self.verbose:
                sys.stderr.write(f"\n{msg} Learning rate too small. Stopping.\n")
            return True
        opt["learning_rate"] /= 5.0
        if self.verbose:
            sys.stderr.write(f"\n{msg} Setting learning rate to {opt['learning_rate']:f}\n")
        return False

    def _run_callbacks(self, callbacks, val_score, val_loss, opt, elapsed):
        info = {
            "epoch": self.n_iter_,
            "loss": self.loss_,
            "validation_score": val_score,
            "validation_loss": val_loss,
            "learning_rate": opt["learning_rate"],
            "t": self.t_,
            "elapsed": elapsed,
        }
        stop = False
        for cb in callbacks:
            stop = bool(cb(self, dict(info))) or stop
        return stop

    def _progress(self, loss, val_score, val_loss, elapsed):
        width = 20
        done = int(width * self.n_iter_ / self.max_iter)
        line = (
            f"epoch {self.n_iter_:>{len(str(self.max_iter))}}/{self.max_iter} "
            f"[{'#' * done}{'.' * (width - done)}] loss {loss:.6f}"
        )
        if val_score is not None:
            line += f" val_score {val_score:.4f} val_loss {val_loss:.6f}"
        line += f" {elapsed:.1f}s"
        if sys.stderr.isatty():
            sys.stderr.write("\r" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    # ------------------------------------------------------------ L-BFGS path
    def _fit_lbfgs(self, X, Y, sw, params, first_pass):
        W1, b1, W2, b2 = params
        n = X.shape[0]
        # scikit-learn's packing order: coefs then intercepts
        sizes = np.cumsum([0, W1.size, W2.size, b1.size, b2.size])
        ws = solvers.Workspace(
            n, W1.shape[0], W1.shape[1], W2.shape[1], n, X.dtype, full_batch=True
        )
        opts = self._kernel_options(n, W1.shape[0], W1.shape[1])

        def unpack(theta):
            W1.reshape(-1)[:] = theta[sizes[0]:sizes[1]]
            W2.reshape(-1)[:] = theta[sizes[1]:sizes[2]]
            b1[:] = theta[sizes[2]:sizes[3]]
            b2[:] = theta[sizes[3]:sizes[4]]

        grad = np.empty(sizes[-1], dtype=np.float64)

        def fun(theta):
            unpack(theta)
            loss, (gW1, gb1, gW2, gb2) = solvers.loss_and_grads(
                X, Y, sw, params, ws, alpha=self.alpha, activation=self.activation,
                output=self.out_activation_, **opts,
            )
            grad[sizes[0]:sizes[1]] = gW1.reshape(-1)
            grad[sizes[1]:sizes[2]] = gW2.reshape(-1)
            grad[sizes[2]:sizes[3]] = gb1
            grad[sizes[3]:sizes[4]] = gb2
            return float(loss), grad.copy()

        theta0 = np.concatenate([W1.ravel(), W2.ravel(), b1, b2]).astype(np.float64)
        last = {"x": theta0, "fun": None}
        if first_pass or not isinstance(getattr(self, "loss_curve_", None), list):
            self.loss_curve_ = []
            self.t_ = 0
        self.n_iter_ = 0
        self.validation_scores_ = None
        self.validation_loss_curve_ = None
        self.best_validation_score_ = None
        callbacks = list(self.callbacks or ())
        start = time.perf_counter()

        def on_iteration(intermediate_result):
            last["x"] = intermediate_result.x.copy()
            last["fun"] = float(intermediate_result.fun)
            self.n_iter_ += 1
            self.loss_ = last["fun"]
            self.loss_curve_.append(self.loss_)
            unpack(last["x"])  # attributes show the accepted iterate
            if self.verbose:
                self._progress(self.loss_, None, None, time.perf_counter() - start)
            if callbacks:
                info = {"epoch": self.n_iter_, "loss": self.loss_, "validation_score": None,
                        "validation_loss": None, "learning_rate": None, "t": self.t_,
                        "elapsed": time.perf_counter() - start}
                if any([bool(cb(self, dict(info))) for cb in callbacks]):
                    raise StopIteration

        import scipy.optimize  # only L-BFGS needs it

        interrupted = False
        try:
            res = scipy.optimize.minimize(
                fun, theta0, method="L-BFGS-B", jac=True, callback=on_iteration,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
            )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
            interrupted = True
        if self.verbose:
            sys.stderr.write("\n" if sys.stderr.isatty() else "")
        if interrupted:
            unpack(last["x"])
            self.loss_ = last["fun"] if last["fun"] is not None else fun(last["x"])[0]
        else:
            unpack(res.x)
            self.loss_ = float(res.fun)
            self.n_iter_ = min(int(res.nit), self.max_iter)
            stopped_by_callback = res.status == 99 or "StopIteration" in str(res.message)
            if res.status != 0 and not stopped_by_callback:
                warnings.warn(
                    f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                    f"(status={res.status}): {res.message}. Increase the number of iterations "
                    "(max_iter) or of loss evaluations (max_fun), or scale the data.",
                    ConvergenceWarning,
                    stacklevel=4,
                )
        if not math.isfinite(self.loss_):
            raise ValueError(
                f"L-BFGS ended with a non-finite loss ({self.loss_}). Scale the input features."
            )
        self.best_loss_ = min(self.loss_curve_ + [self.loss_])

    # -------------------------------------------------------------- predict
    def _predict_params(self):
        """Return (W1, b1, W2, b2) as C-contiguous arrays of one float dtype.

        Derived from the public ``coefs_`` and ``intercepts_`` on every call and
        never stored (predict leaves ``__dict__`` unchanged): arrays that are
        already C-contiguous float32/float64, as fit leaves them, are used as they
        are, so this costs a few attribute checks.
        """
        d = self.__dict__
        coefs = d.get("coefs_")
        if coefs is None:
            check_is_fitted(self)  # raises NotFittedError with the usual message
        W1, W2 = coefs
        b1, b2 = self.intercepts_
        dt = getattr(W1, "dtype", None)
        # identity first: NumPy's float dtypes are singletons, and comparing
        # dtypes with == costs about 0.1 us each, a tenth of a one-row predict
        if dt is not _FLOAT_DTYPES[0] and dt is not _FLOAT_DTYPES[1] and dt not in _FLOAT_DTYPES:
            dt = _FLOAT_DTYPES[1]
        if not (
            type(W1) is type(W2) is type(b1) is type(b2) is np.ndarray
            and W2.dtype is dt
            and b1.dtype is dt
            and b2.dtype is dt
            and W1.flags.c_contiguous
            and W2.flags.c_contiguous
        ):
            # (arrays already right, whose dtype is merely equal, are not copied)
            W1, b1, W2, b2 = (np.ascontiguousarray(p, dtype=dt) for p in (W1, b1, W2, b2))
        try:  # unpacking the shapes: the cheapest check in Python (0.25 us, half of .ndim's)
            (_, H), (H2, C) = W1.shape, W2.shape
            consistent = H2 == H and b1.shape == (H,) and b2.shape == (C,)
        except ValueError:  # a weight matrix that is not 2-D
            consistent = False
        if not consistent:
            raise ValueError(
                "coefs_ and intercepts_ are inconsistent: expected [W1 (D, H), W2 (H, C)] and "
                f"[b1 (H,), b2 (C,)], got shapes {[W1.shape, W2.shape, b1.shape, b2.shape]}."
            )
        return W1, b1, W2, b2

    def _proba(self, X, argmax=False):
        """Return the output units' probabilities (n_samples, n_outputs), checked minimally.

        With ``argmax``, return each row's index of the largest output instead
        (``solvers.forward_proba(argmax=True)``: no probabilities computed). That
        is the index of the largest logit, which ``predict`` reports: where two
        probabilities round to the same float, it can differ from the first
        maximum of ``predict_proba``.
        """
        params = self._predict_params()
        W1 = params[0]
        dt = W1.dtype
        if self._is_plain_X(X, W1.shape[0]) and X.dtype.kind == "f":
            # fast path: a float ndarray of the right width needs no more than a
            # cast and a finiteness check, made inside the compiled call; only
            # input with a NaN or an infinity goes on to validate_data's error
            if X.dtype == dt and X.flags.c_contiguous:
                Xc = X
            else:
                with np.errstate(over="ignore"):  # too large for dt: found as inf
                    Xc = np.ascontiguousarray(X, dt)
            out = self._forward(_writeable(Xc), params, argmax, check_finite=True)
            if out is not None:
                return out
        Xc = validate_data(self, X, reset=False, accept_sparse=_SPARSE_FORMATS, dtype=dt, order="C")
        if sp.issparse(Xc):
            Xc = np.ascontiguousarray(Xc.toarray(), dtype=dt)
        return self._forward(_writeable(Xc), params, argmax, check_finite=False)

    def _forward(self, Xc, params, argmax, check_finite):
        # prediction is one pass, with the options of a batch of this size
        return solvers.forward_proba(
            Xc, params, activation=self.activation, output=self.out_activation_,
            argmax=argmax, check_finite=check_finite, **self._kernel_options(
                min(Xc.shape[0], 1024), *params[0].shape),
        )

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Predicted labels (an indicator matrix for multilabel models).
        """
        if self.__dict__.get("out_activation_") == "softmax":
            return self.classes_[self._proba(X, argmax=True)]
        return self._decode(self._proba(X))

    def predict_proba(self, X):
        """Probability of each class.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_`` (for multilabel models,
            the probability of each label being present).
        """
        P = self._proba(X)
        if self.out_activation_ == "softmax" or self.n_outputs_ > 1:
            return P
        if len(self.classes_) == 1:
            return np.ones_like(P)
        p = P[:, 0]
        return np.stack([1 - p, p], axis=1)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            ``log(predict_proba(X))``.
        """
        P = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(P, out=P)
