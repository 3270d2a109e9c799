"""``TwoLayerClassifier``: a scikit-learn classifier on the compiled solvers.

A drop-in for ``MLPClassifier(hidden_layer_sizes=(k,))``: write
``TwoLayerClassifier(hidden_units=k, ...)`` with the other arguments unchanged.
Everything it shares with :class:`~fastmlp.regressor.TwoLayerRegressor`
(validation, initialisation, schedules, stopping, early stopping, partial_fit,
callbacks, progress) lives in :class:`fastmlp._base.BaseTwoLayer`; this module
holds what is particular to classification: label encoding, ``class_weight``,
the softmax or logistic output and its log-loss, accuracy as the score, and
``predict_proba``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels

from ._base import BaseTwoLayer, _check_solver, _fit_lock, _hidden_units_not_layer_sizes

__all__ = ["TwoLayerClassifier", "_fit_lock"]


class TwoLayerClassifier(ClassifierMixin, BaseTwoLayer):
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
    verbose : bool, int or 'progress', default=False
        True (or a positive int): print scikit-learn's lines to stdout, as
        ``MLPClassifier`` does (``Iteration N, loss = ...`` per epoch,
        ``Validation score: ...`` with early stopping, and the stopping
        message; nothing per L-BFGS iteration, as with scipy >= 1.15).
        'progress': write a progress line per epoch (per L-BFGS iteration) to
        stderr instead, redrawn in place on a terminal.
    warm_start : bool, default=False
        Start ``fit`` from the previous weights. Unlike ``MLPClassifier``, the
        optimizer state (Adam moments, momentum velocities, step count) carries
        over too; the step size restarts from ``learning_rate_init``.
    momentum : float, default=0.9
        Momentum of 'sgd'.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum ('sgd', ``momentum > 0``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data, stop when the
        monitored validation quantity has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, and restore the best weights seen. The
        split is scikit-learn's: stratified for binary targets (so a class of
        one member raises its ``ValueError``), not for multiclass or
        multilabel ones. When an epoch's loss is not finite, training stops
        there, the best weights are restored and a ``ConvergenceWarning`` says
        so (without early stopping a ``ValueError`` is raised and the estimator
        keeps its state from before the call).
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
    loss : str
        Always 'log_loss' (a class attribute, as ``MLPClassifier.loss``).

    Notes
    -----
    Sparse ``X`` is accepted and converted once to a dense array of the working
    dtype: the kernels are dense, so memory grows to ``n_samples * n_features``.

    Prediction needs only the public attributes ``classes_``, ``coefs_``,
    ``intercepts_``, ``n_features_in_``, ``n_outputs_``, ``out_activation_`` and
    the parameters, so a model rebuilt from them (or unpickled) predicts alike.

    See Also
    --------
    TwoLayerRegressor : The same network for regression (identity or exp output).

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
        **BaseTwoLayer._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    # MLPClassifier exposes its loss as ``loss``; here it is not a parameter
    loss = "log_loss"

    @_hidden_units_not_layer_sizes
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
        self.class_weight = class_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    # ------------------------------------------------------------- targets
    def _multilabel(self):
        return self.out_activation_ == "logistic" and self.n_outputs_ > 1

    def _plain_targets(self, y, n):
        # 1-D integer or string labels: validate_data would pass them as they are
        return type(y) is np.ndarray and y.ndim == 1 and y.shape[0] == n and y.dtype.kind in "iuU"

    def _encode_targets(self, y, first_pass, incremental, classes):
        """Labels -> (targets matrix Y, class index per sample or None).

        Sets ``classes_`` on the first pass, and on a first ``partial_fit`` call
        given ``classes`` (also when the weights were set by hand, as
        scikit-learn's ``_check_partial_fit_first_call`` does); sets
        ``n_outputs_`` and ``out_activation_`` with them unless the weights
        were set by hand together with these.
        """
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        define = first_pass or "classes_" not in self.__dict__
        if not define and y.ndim == 1 and y.dtype.kind in "iuU":
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
        if define:
            if multilabel:
                self.classes_ = np.arange(y.shape[1])
            elif incremental and classes is not None:
                self.classes_ = unique_labels(classes)
            else:
                self.classes_ = unique_labels(y)
            n_classes = len(self.classes_)
            if multilabel:
                output = "logistic", y.shape[1]
            elif n_classes <= 2:
                output = "logistic", 1
            else:
                output = "softmax", n_classes
            if first_pass or not {"out_activation_", "n_outputs_"} <= self.__dict__.keys():
                self.out_activation_, self.n_outputs_ = output
            elif (self.out_activation_, self.n_outputs_) != output:
                raise ValueError(
                    f"classes {self.classes_.tolist()} need out_activation_={output[0]!r} and "
                    f"n_outputs_={output[1]}, the model has {self.out_activation_!r} and "
                    f"{self.n_outputs_}."
                )
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

    def _stratify(self, Y, idx):
        # scikit-learn's split: stratified on the binarized target when it has one
        # column (binary), so a class of one member raises train_test_split's
        # error; multiclass and multilabel targets are not stratified
        if idx is not None and self.n_outputs_ == 1:
            return Y > 0.5  # (n, 1) bool, MLPClassifier's LabelBinarizer output
        return None

    def _extra_sample_weights(self, idx, incremental):
        """Return the class weight of each sample, or None without ``class_weight``."""
        if self.class_weight is None:
            return None
        if idx is None:
            raise ValueError("class_weight is not supported for multilabel targets.")
        if incremental and self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit: compute the "
                "weights once with sklearn.utils.class_weight.compute_class_weight and pass "
                "them as a dict."
            )
        cw = compute_class_weight(self.class_weight, classes=self.classes_, y=self.classes_[idx])
        bad = ~(np.isfinite(cw) & (cw >= 0))  # a None value comes back as NaN
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"class_weight must be finite and non-negative, got {cw[i]} for class "
                f"{self.classes_.tolist()[i]!r}."
            )
        return cw[idx]

    def _validation_figures(self, Xv, Yv, swv, opts):
        """Return the validation accuracy and mean log-loss (no penalty) of the weights."""
        P = self._forward_validation(Xv, opts)
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
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights.

        Returns
        -------
        self : TwoLayerClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_check_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Run one epoch over ``X``, ``y``, continuing from the current state.

        The arguments come in ``MLPClassifier.partial_fit``'s order.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights.
        classes : array-like of shape (n_classes,), default=None
            All the classes of the problem; required on the first call (unless
            ``y`` is a multilabel indicator matrix), checked against
            ``classes_`` afterwards.

        Returns
        -------
        self : TwoLayerClassifier
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
        first_call = self.__dict__.get("classes_") is None
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

    # -------------------------------------------------------------- predict
    def _proba(self, X, argmax=False):
        """Return the output units' probabilities (n_samples, n_outputs), or argmax indices."""
        return self._output(X, argmax)

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
            return self.classes_[self._output(X, argmax=True)]
        return self._decode(self._output(X))

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
        P = self._output(X)
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
