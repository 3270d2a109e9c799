"""``TwoLayerRegressor``: a scikit-learn regressor on the compiled solvers.

A drop-in for ``MLPRegressor(hidden_layer_sizes=(k,))``: write
``TwoLayerRegressor(hidden_units=k, ...)`` with the other arguments unchanged.
It shares everything but its targets, output and score with
:class:`~fastmlp.classifier.TwoLayerClassifier` (:class:`fastmlp._base.BaseTwoLayer`),
and runs the same compiled epochs: the identity output with the half squared
error, or the exp output with the half Poisson deviance, are output codes of
:mod:`fastmlp.solvers` like the classifier's softmax.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils import assert_all_finite, column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if

from . import reference
from ._base import BaseTwoLayer, _check_solver, _hidden_units_not_layer_sizes

__all__ = ["TwoLayerRegressor"]

_OUTPUTS = {"squared_error": "identity", "poisson": "exp"}


class TwoLayerRegressor(RegressorMixin, BaseTwoLayer):
    """Two-layer perceptron regressor trained by compiled Numba epochs.

    ``X W1 + b1 -> activation -> W2 + b2`` with an identity output trained on
    the half squared error, or an exp output (log link) trained on the half
    Poisson deviance, each with an L2 penalty. Parameters, defaults and fitted
    attributes are those of :class:`sklearn.neural_network.MLPRegressor` with
    one hidden layer, so ``MLPRegressor(hidden_layer_sizes=(k,), **kw)`` becomes
    ``TwoLayerRegressor(hidden_units=k, **kw)``. It runs the same compiled
    epochs as :class:`~fastmlp.classifier.TwoLayerClassifier`.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        'squared_error': identity output, loss ``0.5 * mean((y - pred) ** 2)``
        (the mean over samples and outputs, scikit-learn's figure). 'poisson':
        ``pred = exp(output)`` and the half Poisson deviance
        ``mean(y log(y / pred) - y + pred)`` summed over outputs; needs ``y >= 0``.
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
        Schedule of the step size, for ``solver='sgd'`` only, as in
        :class:`~fastmlp.classifier.TwoLayerClassifier`.
    learning_rate_init : float, default=0.001
        Initial step size ('sgd' and 'adam').
    power_t : float, default=0.5
        Exponent of 'invscaling'.
    max_iter : int, default=200
        Maximum number of epochs ('sgd', 'adam') or of iterations ('lbfgs').
    shuffle : bool, default=True
        Shuffle the samples before each epoch (in compiled code, from a seed
        taken from ``random_state`` once per epoch).
    random_state : int, RandomState instance or None, default=None
        Seeds the Glorot initialisation (``MLPRegressor``'s starting weights for
        the same ``random_state``), the early-stopping split and the shuffling.
    tol : float, default=1e-4
        Tolerance of the stopping rule (and ``gtol`` of L-BFGS).
    verbose : bool, int or 'progress', default=False
        True: print scikit-learn's lines to stdout (``Iteration N, loss = ...``,
        ``Validation score: ...``). 'progress': a progress line per epoch on
        stderr, redrawn in place on a terminal.
    warm_start : bool, default=False
        Start ``fit`` from the previous weights (and optimizer state).
    momentum : float, default=0.9
        Momentum of 'sgd'.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum ('sgd', ``momentum > 0``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (not stratified),
        stop when the validation R² (or, with ``early_stopping_metric='loss'``,
        the validation loss) has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, and restore the best weights seen. An
        epoch with a non-finite loss stops training there, with the best
        weights restored and a ``ConvergenceWarning``.
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
        Working precision of the weights, the compiled code and the predictions.
    early_stopping_metric : {'score', 'loss'}, default='score'
        Quantity monitored by early stopping: the validation R² (scikit-learn's
        choice) or the validation loss (weighted, without the L2 penalty).
    callbacks : list of callables or None, default=None
        Each is called once per epoch (per iteration for 'lbfgs') as
        ``cb(estimator, info)``, as for ``TwoLayerClassifier``; a truthy return
        value stops training.
    n_threads : int or None, default=None
        Threads for fitting and predicting: every compiled epoch splits each
        large enough batch into ``n_threads`` shares of rows run side by side,
        and a large prediction into blocks of rows. None is every core; a
        larger count than the cores is capped; 1 runs everything on the
        calling thread. BLAS runs one thread inside each share. The weights
        depend on ``n_threads`` (the order of a few sums), never on timing.
    sparse_updates : {"exact", "lazy"}, default="exact"
        How the stochastic solvers update ``W1`` (``coefs_[0]``) on sparse ``X``
        (any scipy sparse format; it is made a CSR in the working dtype once and
        never densified). ``"exact"``: the update of a dense fit, every row of
        ``W1`` and of the optimizer state steps on every batch, so the model
        equals the one fitted on ``X.toarray()`` to float rounding. ``"lazy"``:
        a batch updates only the rows of the features it holds, far less work
        on text-like data. For ``solver="sgd"`` (with or without Nesterov
        momentum) this is still exact: what the untouched rows would have
        received (the L2 decay, the momentum) is applied in closed form when
        they are next touched and at the end of each epoch. For
        ``solver="adam"`` it is the **LazyAdam** approximation (TensorFlow
        Addons ``LazyAdam``, PyTorch ``SparseAdam``): untouched rows and their
        moments are left as they are, and the L2 penalty reaches a row only
        when a batch touches it; no closed form exists for dense Adam's step on
        them. Ignored for dense ``X`` and for ``solver="lbfgs"``.

    Attributes
    ----------
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
        Validation R² per epoch with early stopping, else None.
    validation_loss_curve_ : list of float or None
        Validation loss per epoch with early stopping, else None.
    best_validation_score_ : float or None
        Validation R² of the restored weights with early stopping, else None.
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
        Number of targets.
    out_activation_ : {'identity', 'exp'}
        'identity' for ``loss='squared_error'``, 'exp' for ``loss='poisson'``.

    See Also
    --------
    TwoLayerClassifier : The same network for classification.

    Notes
    -----
    Sparse ``X`` is accepted and converted once to a dense array of the working
    dtype. Predictions are in the working dtype (float32 by default; pass
    ``dtype=np.float64`` for float64 ones), where ``MLPRegressor`` predicts in
    the dtype of ``X``: a float32 prediction shows the precision it was made in.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fastmlp import TwoLayerRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> reg = TwoLayerRegressor(hidden_units=32, solver="lbfgs", max_iter=500,
    ...                         random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.5  # doctest: +SKIP
    True
    """

    _parameter_constraints: dict = {
        **BaseTwoLayer._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }
    _y_numeric = True

    @_hidden_units_not_layer_sizes
    def __init__(
        self,
        loss="squared_error",
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
        early_stopping_metric="score",
        callbacks=None,
        n_threads=None,
        sparse_updates="exact",
    ):
        super().__init__(
            hidden_units=hidden_units, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dtype=dtype, early_stopping_metric=early_stopping_metric,
            callbacks=callbacks, n_threads=n_threads,
        )
        self.sparse_updates = sparse_updates
        self.loss = loss

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # 2-D y: one output unit per column
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags

    # ------------------------------------------------------------- targets
    def _plain_targets(self, y, n):
        # float targets of the right length: only their finiteness is left to check
        return type(y) is np.ndarray and y.dtype.kind == "f" and y.ndim in (1, 2) and (
            y.shape[0] == n)

    def _encode_targets(self, y, first_pass, incremental, classes):
        """Targets -> ``(Y, None)`` with Y of shape (n_samples, n_outputs), working dtype.

        Sets ``n_outputs_`` and ``out_activation_`` on the first pass.
        """
        y = np.asarray(y)
        if y.ndim > 2:  # (validate_data refuses these already; fast paths do not see them)
            raise ValueError(f"y must be 1-D or 2-D, got an array of shape {y.shape}.")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # as MLPRegressor: (n, 1) warns, then is 1-D
        assert_all_finite(y, input_name="y", estimator_name=type(self).__name__)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError(
                "Some value(s) of y are negative which is not allowed for Poisson regression "
                "(loss='poisson')."
            )
        dt = self._working_dtype()
        with np.errstate(over="ignore"):  # found below
            Y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=dt)  # (n, n_outputs)
        if not np.isfinite(Y).all():
            raise ValueError(f"y has values too large for {dt.name}, the working dtype.")
        output = _OUTPUTS[self.loss]
        if first_pass:
            self.n_outputs_ = Y.shape[1]
            self.out_activation_ = output
        else:
            if Y.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"y has {Y.shape[1]} output(s), the model was fitted with "
                    f"{self.n_outputs_}."
                )
            if self.__dict__.get("out_activation_") != output:
                raise ValueError(
                    f"loss={self.loss!r} needs out_activation_={output!r}, the fitted model "
                    f"has {self.__dict__.get('out_activation_')!r}; refit with "
                    "warm_start=False."
                )
        return Y, None

    def _validation_figures(self, Xv, Yv, swv, opts):
        """Return the validation R² and loss (weighted mean, no penalty) of the weights."""
        from sklearn.metrics import r2_score  # loaded with early stopping only

        P = self._forward_validation(Xv, opts)
        if not np.isfinite(P).all():  # scikit-learn scores a non-finite prediction NaN
            return float("nan"), float("nan")
        Yv = Yv.astype(np.float64)
        score = r2_score(Yv[:, 0] if Yv.shape[1] == 1 else Yv,
                         P[:, 0] if P.shape[1] == 1 else P, sample_weight=swv)
        Z = P if self.out_activation_ == "identity" else np.log(P)
        per_sample = reference.sample_loss(Z, Yv, self.out_activation_)
        if self.out_activation_ == "identity":
            per_sample = per_sample / Yv.shape[1]  # scikit-learn's mean over outputs
        return float(score), float(np.average(per_sample, weights=swv))

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Sparse input is made a canonical CSR in the working
            dtype once (never a dense array) and trained on by the sparse solvers
            (see ``sparse_updates``); the caller's matrix is not modified.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values (non-negative for ``loss='poisson'``).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights.

        Returns
        -------
        self : TwoLayerRegressor
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_check_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Run one epoch over ``X``, ``y``, continuing from the current state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights.

        Returns
        -------
        self : TwoLayerRegressor
            The updated estimator.

        Raises
        ------
        KeyboardInterrupt
            On Ctrl-C during the call, once the model is back as the previous
            call left it (its last whole update), so that a loop of
            ``partial_fit`` calls stops. ``MLPClassifier.partial_fit`` swallows
            the interrupt with a warning instead; ``fit`` does too, keeping the
            weights of the last whole epoch.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    # -------------------------------------------------------------- predict
    def predict(self, X):
        """Predict the targets.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predicted values (1-D for a single target), in the working dtype.
        """
        P = self._output(X)
        return P[:, 0] if P.shape[1] == 1 else P
