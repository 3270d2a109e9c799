"""``BaseTwoLayer``: what ``TwoLayerClassifier`` and ``TwoLayerRegressor`` share.

The split follows scikit-learn's ``BaseMultilayerPerceptron``: this base holds
parameter validation, the Glorot initialisation, the optimizer state, the
learning rate schedules, the stopping rules, early stopping, the ``partial_fit``
bookkeeping, callbacks, ``verbose`` output, the roll-back of a failed fit, the
per-estimator fit lock and the kernel options. A subclass supplies the handful
of methods that differ: how targets are checked and encoded
(:meth:`BaseTwoLayer._encode_targets`), extra per-sample weights
(``class_weight``), the stratification of the early-stopping split, and the
validation figures (accuracy and log-loss, or R² and the regression loss).

The output layer and its loss are one code of the compiled solvers
(``out_activation_``: 'softmax', 'logistic', 'identity' or 'exp'), so both
estimators run the same compiled epochs (:func:`fastmlp.solvers.run_epoch`),
returning to Python once per epoch.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import warnings
import weakref
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import assert_all_finite, check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _sparse, solvers, solvers_sparse
from ._progress import NullProgress, Progress
from ._weights import check_weights
from ._weights import unpack_weights as _unpack_weights

_STOCHASTIC_SOLVERS = ("sgd", "adam")
_DTYPES = {"float32": np.float32, "float64": np.float64}
# Sparse X of any format becomes a canonical CSR in the working dtype, once
# (_sparse.check_csr), and stays sparse: the sparse solvers train on its arrays.
_SPARSE_FORMATS = ["csr"]
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


class _FitLock:
    """A lock that refuses the thread already holding it, with a clear error.

    A callback that refits its own estimator would otherwise wait for itself
    for ever (a re-entrant lock would let it change a fit in progress instead).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._owner = None

    def __enter__(self):
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError(
                "fit or partial_fit was called on an estimator from inside its own fit "
                "(a callback?): call it after the fit returns"
            )
        self._lock.acquire()
        self._owner = me
        return self

    def __exit__(self, *exc):
        self._owner = None
        self._lock.release()


def _fit_lock(estimator) -> _FitLock:
    with _FIT_LOCKS_GUARD:
        lock = _FIT_LOCKS.get(estimator)
        if lock is None:
            lock = _FIT_LOCKS[estimator] = _FitLock()
    return lock


def _check_solver(estimator):
    if estimator.solver not in _STOCHASTIC_SOLVERS:
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {estimator.solver} "
            "is not stochastic."
        )
    return True


def _hidden_units_not_layer_sizes(init):
    """Make ``__init__`` refuse ``hidden_layer_sizes`` with a TypeError naming ``hidden_units``.

    The wrapper keeps the signature of ``init`` (``inspect.signature`` follows
    ``__wrapped__``), so ``get_params`` and scikit-learn's checks see the same
    parameters; any other unknown keyword gets Python's own TypeError.
    """

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if "hidden_layer_sizes" in kwargs:
            raise TypeError(
                f"{type(self).__name__} has one hidden layer: pass hidden_units=k instead of "
                f"hidden_layer_sizes=(k,) (got hidden_layer_sizes="
                f"{kwargs['hidden_layer_sizes']!r})."
            )
        init(self, *args, **kwargs)

    return __init__


class _OptimizerState(dict):
    """The optimizer's state, a dict of ``solver``, ``arrays``, ``step`` and ``learning_rate``.

    ``arrays`` come from ``solvers.init_optimizer_state``; ``learning_rate`` is
    also an attribute, as on scikit-learn's ``SGDOptimizer``
    (``est._optimizer.learning_rate``).
    """

    @property
    def learning_rate(self):
        """The current step size."""
        return self["learning_rate"]


class BaseTwoLayer(BaseEstimator):
    """Base of the two-layer estimators. Do not use it directly.

    Subclasses define ``__init__`` (storing every parameter), ``_encode_targets``,
    ``_validation_figures``, ``_plain_targets`` and, where they need them,
    ``_stratify``, ``_extra_sample_weights`` and ``_y_numeric``.
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
        "verbose": ["verbose", StrOptions({"progress"})],
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
        "early_stopping_metric": [StrOptions({"score", "loss"})],
        "callbacks": [list, tuple, None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "sparse_updates": [StrOptions({"exact", "lazy"})],
    }

    def __init__(
        self, hidden_units, activation, solver, alpha, batch_size, learning_rate,
        learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose,
        warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
        beta_1, beta_2, epsilon, n_iter_no_change, max_fun, dtype, early_stopping_metric,
        callbacks, n_threads,
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
            n_rows, n_features, n_hidden, n_threads=self.n_threads
        )

    def _sparse_kernel_options(self, n_rows, X, n_hidden, update_rows=0):
        """:meth:`_kernel_options` for CSR ``X`` (``_sparse.CSRArrays``), from its nnz per row.

        ``update_rows``: the rows of ``W1`` a batch's update steps (D for the
        exact update, 0 for prediction and the lazy update).
        """
        nnz_per_row = X.nnz / max(X.shape[0], 1)
        return solvers_sparse.kernel_options(
            n_rows, nnz_per_row, n_hidden, self.n_outputs_, n_features=update_rows,
            n_threads=self.n_threads,
        )

    def __getstate__(self):
        state = super().__getstate__()
        # The workspace is rebuilt on demand: keep pickles small.
        state.pop("_workspace", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------ subclass hooks
    _y_numeric = False  # validate_data's y_numeric (True for regression targets)

    def _encode_targets(self, y, first_pass, incremental, classes):
        """Targets -> ``(Y, idx)``: the (n, n_outputs) target matrix, class indices or None.

        Sets ``n_outputs_`` and ``out_activation_`` on the first pass.
        """
        raise NotImplementedError

    def _plain_targets(self, y, n):
        """Whether ``y`` may skip ``validate_data`` on a later pass (:meth:`_is_plain_batch`)."""
        return False

    def _extra_sample_weights(self, idx, incremental):
        """Per-sample factors multiplied into ``sample_weight`` (class weights), or None."""
        return None

    def _stratify(self, Y, idx):
        """Return the array that stratifies the early-stopping split, or None."""
        return None

    def _validation_figures(self, Xv, Yv, swv, opts):
        """Return ``(score, loss)`` of the current weights on the validation split."""
        raise NotImplementedError

    # ------------------------------------------------------------- weights
    def _sample_weights(self, sample_weight, X, idx, incremental):
        """Per-sample weights: sample_weight times the subclass's factors, in the working dtype."""
        n = X.shape[0]
        dt = self._working_dtype()
        extra = self._extra_sample_weights(idx, incremental)
        if sample_weight is None and extra is None:
            return np.ones(n, dtype=dt)
        if sample_weight is None:
            sw = np.ones(n, dtype=np.float64)
        else:
            sw = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True, copy=True
            )
        if extra is not None:
            with np.errstate(over="ignore"):  # an overflow is refused below
                sw *= extra
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
            W1, W2, b1, b2 = _unpack_weights(self.coefs_, self.intercepts_)
            if np.ndim(W1) == 2 and W1.shape[1] != self.hidden_units:
                raise ValueError(
                    f"hidden_units={self.hidden_units} but the fitted coefs_ have "
                    f"{W1.shape[1]} hidden units; refit with warm_start=False."
                )
            if np.ndim(W2) == 2 and W2.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"y has {self.n_outputs_} outputs but the fitted coefs_ have "
                    f"{W2.shape[1]}; refit with warm_start=False."
                )
            # then every shape against every other and the fitted widths
            check_weights(self, W1, b1, W2, b2, n_features)
            W1, b1, W2, b2 = (np.array(p, dtype=dt, order="C") for p in (W1, b1, W2, b2))
        self.coefs_ = [W1, W2]
        self.intercepts_ = [b1, b2]
        self.n_layers_ = 3
        return (W1, b1, W2, b2)

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y, sample_weight, incremental, classes=None):
        if self.callbacks is not None and not all(callable(c) for c in self.callbacks):
            raise ValueError("callbacks must be a list of callables cb(estimator, info).")
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        # Fits of one estimator from several threads (partial_fit from a pool of
        # workers) take turns: each then sees the weights the previous one left.
        with _fit_lock(self):
            first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
            # lists (loss_curve_, ...) only grow during a fit, by append: keep their
            # lengths, not copies (a copy per call made a long partial_fit loop slower
            # with every call)
            saved = dict(self.__dict__)
            lengths = {k: len(v) for k, v in saved.items() if type(v) is list}
            try:
                self._fit_unsafe(X, y, sample_weight, incremental, classes, first_pass)
            except BaseException:
                # nothing half-fitted: back to the state before this call
                self.__dict__.clear()
                self.__dict__.update(saved)
                for k, n in lengths.items():
                    del saved[k][n:]
                raise
        return self

    def _fit_unsafe(self, X, y, sample_weight, incremental, classes, first_pass):
        dt = self._working_dtype()
        # A NaN or an infinity in X makes the first epoch's loss non-finite, so the
        # minibatch solvers check X only then (below): scanning 47M floats up
        # front costs ~10% of a Fashion-MNIST partial_fit epoch. L-BFGS and the
        # early-stopping split (whose validation rows no loss sees) check up front.
        deferred_check = self.solver != "lbfgs" and not self.early_stopping
        if sp.issparse(X):
            # every raw array checked (a kernel must never read out of bounds) and the
            # matrix made a canonical CSR in dt, before scikit-learn reads it; the
            # caller's object is not modified and no dense copy is made
            X = _sparse.as_csr(X, dt)
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
                y_numeric=self._y_numeric,
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
        fitted width, with at least one row and no feature names, and targets the
        subclass accepts as they are (:meth:`_plain_targets`): validation would
        neither convert nor refuse them (the NaN/inf check of X is deferred to
        the epoch's loss, as for any minibatch fit). Skipping it saves about
        0.3 ms per call, a quarter of a digits epoch.
        """
        return (
            self._is_plain_X(X, self.__dict__.get("n_features_in_"))
            and X.dtype == dt
            and X.flags.c_contiguous
            and self._plain_targets(y, X.shape[0])
        )

    def _is_plain_X(self, X, width):
        """Whether ``X`` is a 2-D ndarray with rows and ``width`` columns, and no names fitted.

        The common ground of the fast paths that skip ``validate_data``
        (:meth:`_is_plain_batch`, :meth:`_output`).
        """
        return (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.shape[0] > 0
            and X.shape[1] == width
            and "feature_names_in_" not in self.__dict__
        )

    def _fit_validated(self, X, y, sample_weight, incremental, classes, first_pass, dt):
        # X is validated: a dense array, or a canonical CSR in dt that stays sparse
        # (its arrays go to the sparse solvers; nothing of size (n, D) is made)
        if not sp.issparse(X):
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

    # -------------------------------------------------------- verbose output
    def _say(self, line):
        """Print one of scikit-learn's ``verbose`` lines to stdout (not with 'progress')."""
        if self.verbose and self.verbose != "progress":
            print(line)

    def _progress_bar(self, total, unit="epoch"):
        """Open the display of ``verbose='progress'`` (:class:`fastmlp._progress.Progress`).

        On stderr, redrawn on a terminal, plain lines elsewhere; a no-op display for
        any other ``verbose``. Close it in every case (it wraps ``warnings.showwarning``).
        """
        if self.verbose != "progress":
            return NullProgress()
        return Progress(total, unit=unit, score_name=self._score_name())

    def _score_name(self):
        """Name of the validation score in the progress display."""
        return "val_accuracy" if is_classifier(self) else "val_r2"

    # -------------------------------------------------------- stochastic path
    def _optimizer_state(self, params, first_pass, incremental):
        """Return the optimizer state to continue from, or a fresh one."""
        old = self.__dict__.get("_optimizer")
        fresh = (
            first_pass
            or old is None
            or old["solver"] != self.solver
            or old["arrays"][0].shape != params[0].shape
            or old["arrays"][2].shape != params[2].shape
            or old["arrays"][0].dtype != params[0].dtype
        )
        if fresh:
            arrays = solvers.init_optimizer_state(params, self.solver)
            return _OptimizerState(solver=self.solver, arrays=arrays, step=0,
                                   learning_rate=float(self.learning_rate_init))
        # private copies: a failed call must leave the saved state untouched
        if self.solver == "adam":
            arrays = tuple(a.copy() for a in old["arrays"])
        else:
            v = tuple(a.copy() for a in old["arrays"][:4])
            arrays = v + v
        lr = old["learning_rate"] if incremental else float(self.learning_rate_init)
        return _OptimizerState(solver=self.solver, arrays=arrays, step=old["step"],
                               learning_rate=lr)

    def _split_validation(self, X, Y, sw, idx, rng):
        # imported here: sklearn.model_selection (with sklearn.metrics) is only needed
        # for early stopping and would add ~0.1 s to every `import fastmlp`
        from sklearn.model_selection import train_test_split

        # split first, then check the size, as MLPClassifier: a split that cannot
        # be stratified gives train_test_split's own error
        arrays = [X, Y, sw] + ([idx] if idx is not None else [])
        parts = train_test_split(
            *arrays, random_state=rng, test_size=self.validation_fraction,
            stratify=self._stratify(Y, idx),
        )
        train, val = parts[0::2], parts[1::2]
        if val[0].shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size "
                f"of your dataset (n_samples={X.shape[0]}, validation_fraction="
                f"{self.validation_fraction})."
            )
        return train, val

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
                self._best_epoch_loss = None
                self.best_loss_ = None
            (X, Y, sw, *_), (Xv, Yv, swv, *_) = self._split_validation(X, Y, sw, idx, rng)
            swv = swv.astype(np.float64)
            if sp.issparse(Xv):  # the rows of a CSR split stay a CSR: checked once here
                Xv = _sparse.CSRArrays.of(Xv, X.dtype)
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
        if sp.issparse(X):
            X = _sparse.CSRArrays.of(X, X.dtype)
            lazy = self.sparse_updates == "lazy"
            if not (isinstance(ws, solvers_sparse.SparseWorkspace) and ws.lazy == lazy
                    and ws.fits(n, D, H, self.n_outputs_, batch_size, X.dtype, lazy)):
                ws = solvers_sparse.SparseWorkspace(n, D, H, self.n_outputs_, batch_size,
                                                    X.dtype, lazy=lazy)
            run_epoch = functools.partial(solvers_sparse.run_epoch_sparse, *X.arrays,
                                          lazy=lazy, check_input=False)
            opts = self._sparse_kernel_options(batch_size, X, H, update_rows=0 if lazy else D)
        else:
            if not (isinstance(ws, solvers.Workspace)
                    and ws.fits(n, D, H, self.n_outputs_, batch_size, X.dtype)):
                ws = solvers.Workspace(n, D, H, self.n_outputs_, batch_size, X.dtype)
            run_epoch = functools.partial(solvers.run_epoch, X)
            opts = self._kernel_options(batch_size, D, H)
        self._workspace = ws
        if isinstance(Xv, _sparse.CSRArrays):
            val_opts = self._sparse_kernel_options(Xv.shape[0], Xv, H)
        else:
            val_opts = self._kernel_options(0 if Xv is None else Xv.shape[0], D, H)
        callbacks = list(self.callbacks or ())
        start = time.perf_counter()
        self.n_iter_ = 0
        stop_reason = None
        bar = self._progress_bar(1 if incremental else self.max_iter)
        best_params, best_epoch = self.__dict__.get("_best_params"), None
        try:
            for _ in range(self.max_iter):
                seed = rng.randint(np.iinfo(np.int64).max) if self.shuffle else 0
                loss, step = run_epoch(
                    Y, sw, params, opt["arrays"], ws,
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
                diverged = not math.isfinite(loss)
                best_known = self.__dict__.get("_best_epoch_loss") is not None
                if diverged and not (early_stopping and best_known):
                    # without early stopping there are no best weights to go back to
                    # (nor with it before an epoch ended with a finite loss)
                    if all(np.isfinite(p).all() for p in params):
                        raise ValueError(
                            f"Training diverged at epoch {self.n_iter_}: the loss is {loss}. "
                            "Lower learning_rate_init or scale the input features."
                        )
                    raise ValueError(
                        "Solver produced non-finite parameter weights. The input data may "
                        "contain large values and need to be preprocessed, or "
                        f"learning_rate_init is too high (the loss is {loss} at epoch "
                        f"{self.n_iter_})."
                    )
                self.loss_ = float(loss)
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                self._say(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                val_score = val_loss = None
                if early_stopping:
                    val_score, val_loss = self._validation_figures(Xv, Yv, swv, val_opts)
                    self._say(f"Validation score: {val_score:f}")
                    self._update_early_stopping(val_score, val_loss, params, not diverged)
                    if self._best_params is not best_params:  # this epoch's weights kept
                        best_params, best_epoch = self._best_params, self.n_iter_
                else:
                    self._update_no_improvement(self.loss_curve_[-1], self.best_loss_)
                    self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])
                bar.update(self.n_iter_, self.loss_, val_score, val_loss)
                if diverged:
                    stop_reason = "diverged"
                    break
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
                    if self._trigger_stopping(opt, bar):
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
            if incremental:
                # partial_fit lets Ctrl-C stop the caller's loop (scikit-learn's swallows
                # it, and a loop of calls could then never be stopped): _fit puts the
                # model back as the previous call left it, the last whole update
                bar.close()
                raise
            warnings.warn("Training interrupted by user.", stacklevel=3)
        except BaseException:
            bar.close()  # the line finished and the warning hook gone, on any error
            raise
        if stop_reason == "callback":
            bar.note("Stopped by a callback.")
        summary = None
        if early_stopping:
            for p, best in zip(params, self._best_params, strict=True):
                p[...] = best  # restore the best weights, in place
            if best_epoch is not None:
                summary = (f"early stopping: restored the weights of epoch {best_epoch} "
                           f"({self._score_name()} {self.best_validation_score_:.4f})")
            else:
                summary = ("early stopping: no epoch of this fit improved on the weights "
                           "it started from; those were kept")
        bar.close(summary)
        if stop_reason == "diverged":
            # the restored weights came out of the best epoch: report its loss
            self.loss_ = self._best_epoch_loss
            warnings.warn(
                f"Training diverged at epoch {self.n_iter_} (the loss is "
                f"{self.loss_curve_[-1]}): stopped, and the weights of the best validation "
                f"score ({self.best_validation_score_:f}) were restored. Lower "
                "learning_rate_init or scale the input features.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _update_no_improvement(self, value, best):
        # scikit-learn: "not better than best by tol" counts as no improvement
        if value > best - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0

    def _update_early_stopping(self, val_score, val_loss, params, eligible=True):
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
        if better and eligible:  # a diverged epoch's weights are never kept
            self.best_validation_score_ = val_score
            self._best_validation_loss = val_loss
            self._best_params = tuple(p.copy() for p in params)
            self._best_epoch_loss = self.loss_

    def _trigger_stopping(self, opt, bar=None):
        """scikit-learn's ``trigger_stopping``: stop, or divide an adaptive step by 5."""
        what = "Validation " + self.early_stopping_metric if self.early_stopping else (
            "Training loss")
        msg = (
            f"{what} did not improve more than tol={self.tol:f} for "
            f"{self.n_iter_no_change} consecutive epochs."
        )
        if self.solver == "adam" or self.learning_rate != "adaptive":
            self._say(msg + " Stopping.")
            note = msg + " Stopping."
        elif opt["learning_rate"] <= 1e-6:
            self._say(msg + " Learning rate too small. Stopping.")
            note = msg + " Learning rate too small. Stopping."
        else:
            opt["learning_rate"] /= 5.0
            self._say(msg + f" Setting learning rate to {opt['learning_rate']:f}")
            if bar is not None:
                bar.note(f"{msg} Setting learning rate to {opt['learning_rate']:f}")
            return False
        if bar is not None:
            bar.note(note)
        return True

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

    # ------------------------------------------------------------ L-BFGS path
    def _fit_lbfgs(self, X, Y, sw, params, first_pass):
        W1, b1, W2, b2 = params
        n = X.shape[0]
        # scikit-learn's packing order: coefs then intercepts
        sizes = np.cumsum([0, W1.size, W2.size, b1.size, b2.size])
        if sp.issparse(X):
            X = _sparse.CSRArrays.of(X, X.dtype)
            ws = solvers_sparse.SparseWorkspace(
                n, W1.shape[0], W1.shape[1], W2.shape[1], n, X.dtype, full_batch=True
            )
            opts = self._sparse_kernel_options(n, X, W1.shape[1])
            loss_and_grads = functools.partial(solvers_sparse.loss_and_grads_sparse, *X.arrays,
                                               check_input=False)
        else:
            ws = solvers.Workspace(
                n, W1.shape[0], W1.shape[1], W2.shape[1], n, X.dtype, full_batch=True
            )
            opts = self._kernel_options(n, W1.shape[0], W1.shape[1])
            loss_and_grads = functools.partial(solvers.loss_and_grads, X)

        def unpack(theta):
            W1.reshape(-1)[:] = theta[sizes[0]:sizes[1]]
            W2.reshape(-1)[:] = theta[sizes[1]:sizes[2]]
            b1[:] = theta[sizes[2]:sizes[3]]
            b2[:] = theta[sizes[3]:sizes[4]]

        grad = np.empty(sizes[-1], dtype=np.float64)

        def fun(theta):
            unpack(theta)
            loss, (gW1, gb1, gW2, gb2) = loss_and_grads(
                Y, sw, params, ws, alpha=self.alpha, activation=self.activation,
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
            bar.update(self.n_iter_, self.loss_)
            if callbacks:
                info = {"epoch": self.n_iter_, "loss": self.loss_, "validation_score": None,
                        "validation_loss": None, "learning_rate": None, "t": self.t_,
                        "elapsed": time.perf_counter() - start}
                if any([bool(cb(self, dict(info))) for cb in callbacks]):
                    raise StopIteration

        import scipy.optimize  # only L-BFGS needs it

        interrupted = False
        bar = self._progress_bar(self.max_iter, unit="iteration")
        try:
            res = scipy.optimize.minimize(
                fun, theta0, method="L-BFGS-B", jac=True, callback=on_iteration,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
            )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
            interrupted = True
        finally:
            bar.close()  # before the ConvergenceWarning below, on any error too
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
        W1, W2, b1, b2 = _unpack_weights(coefs, self.intercepts_)
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
        # every shape against every other and the fitted widths, before a kernel reads them
        check_weights(self, W1, b1, W2, b2)
        return W1, b1, W2, b2

    def _output(self, X, argmax=False):
        """Return the output layer's values (n_samples, n_outputs), X checked minimally.

        The activations of the output units: probabilities for a classifier,
        predictions for a regressor. With ``argmax``, return each row's index
        of the largest output instead (``solvers.forward_proba(argmax=True)``).
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
        if sp.issparse(X):
            # the width and feature names first, then every raw array (no dense copy)
            validate_data(self, X, reset=False, skip_check_array=True)
            # validated, not sorted: the forward product takes a row's entries in any order
            Xs = _sparse.CSRArrays.of(X, dt, canonical=False)
            if Xs.shape[0] < 1:
                raise ValueError(
                    f"Found array with 0 sample(s) (shape={Xs.shape}) while a minimum of 1 "
                    "is required."
                )
            return self._forward_sparse(Xs, params, argmax)
        Xc = validate_data(self, X, reset=False, accept_sparse=_SPARSE_FORMATS, dtype=dt, order="C")
        if sp.issparse(Xc):  # a DataFrame of pandas sparse columns comes back a CSR, as in fit
            return self._forward_sparse(_sparse.CSRArrays.of(Xc, dt, canonical=False), params,
                                        argmax)
        return self._forward(_writeable(Xc), params, argmax, check_finite=False)

    def _forward(self, Xc, params, argmax, check_finite):
        # prediction is one pass, with the options of a batch of this size
        return solvers.forward_proba(
            Xc, params, activation=self.activation, output=self.out_activation_,
            argmax=argmax, check_finite=check_finite, **self._kernel_options(
                min(Xc.shape[0], 1024), *params[0].shape),
        )

    def _forward_sparse(self, Xs, params, argmax, opts=None):
        """Output values (or argmax indices) of CSR rows (``_sparse.CSRArrays``)."""
        if opts is None:
            opts = self._sparse_kernel_options(min(Xs.shape[0], 1024), Xs, params[0].shape[1])
        return solvers_sparse.forward_proba_sparse(
            *Xs.arrays, params, activation=self.activation, output=self.out_activation_,
            argmax=argmax, **opts,
        )

    def _forward_validation(self, Xv, opts):
        """Output values of the current weights on validated rows, in float64."""
        params = (self.coefs_[0], self.intercepts_[0], self.coefs_[1], self.intercepts_[1])
        if isinstance(Xv, _sparse.CSRArrays):
            return self._forward_sparse(Xv, params, False, opts).astype(np.float64)
        return solvers.forward_proba(
            Xv, params, activation=self.activation, output=self.out_activation_, **opts,
        ).astype(np.float64)
