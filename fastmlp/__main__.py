"""Command line: ``python -m fastmlp`` (or ``fastmlp``).

Subcommands
-----------
demo       the main job (also what ``python -m fastmlp`` alone runs): train on the
           best Fashion-MNIST available, print test accuracy, seconds per epoch and
           the speed ratio to the same epochs in plain NumPy
train      train on fashion-mnist, digits or a file (a classifier, or a regressor with
           --task regression); save the model; plot curves
predict    label the rows of a data file with a saved model (numbers for a regressor)
evaluate   accuracy, per-class report (with the class names the data set has) and
           confusion matrix of a saved classifier; R², MAE and RMSE of a regressor
gradcheck  analytic gradients next to central finite differences, node by node
bench      the speed report (``fastmlp.bench``)

Errors (a missing file, a bad option, corrupt data, an unreadable or tampered model,
a device or pipe given as a file) print one line, ``fastmlp: error: ...``, to stderr
and exit with status 1 (2 for usage errors), without a traceback. Every option's help
shows its default. Training shows the estimators' own progress display
(``verbose='progress'``, :mod:`fastmlp._progress`) on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import importlib.util
import os
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from ._cli_types import int_at_least

PROG = "fastmlp"
SUBCOMMANDS = ("demo", "train", "predict", "evaluate", "gradcheck", "bench")


class CommandError(Exception):
    """An error to report in one line, with its exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default, unless the help already states it.

    Flags (``store_true``) are off unless given, and required options have no
    default: they say nothing more.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if action.nargs == 0 or action.required or "(default" in text or "%(default)" in text:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, named ``fastmlp``, and exit status 2."""

    def __init__(self, *args, formatter_class=_HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message):  # noqa: D102 - argparse API
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# ------------------------------------------------------------------------ helpers
_positive_int = int_at_least(1)
_nonnegative_int = int_at_least(0)
_at_least_two = int_at_least(2)
# the seeds NumPy's legacy RandomState (and so scikit-learn's random_state) accepts
_seed = int_at_least(0, 2**32 - 1)


def _positive_float(text: str) -> float:
    import numpy as np
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _unit_float(text: str) -> float:
    """Parse a number in [0, 1] (``--momentum``)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _test_size(text: str) -> float | int:
    """``--test-size``, as ``train_test_split`` takes it: a fraction in (0, 1) or a count."""
    try:
        return int_at_least(1)(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a fraction between 0 and 1 (exclusive) or a positive number of rows, "
            f"got {text!r}")
    return value


def _nonnegative_float(text: str) -> float:
    import numpy as np
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


_GRADCHECK_MAX_ALPHA = 1e3


def _gradcheck_alpha(text: str) -> float:
    """``gradcheck --alpha``: a penalty whose finite differences float64 can still resolve.

    The penalty enters every node's loss as a constant of size ``alpha``; central
    differences of that constant lose ``alpha * 1e-16 / eps`` to rounding, which
    from about 1e4 swamps the O(1) gradients of the logits, and near 1e300
    overflows outright.
    """
    value = _nonnegative_float(text)
    if value > _GRADCHECK_MAX_ALPHA:
        raise argparse.ArgumentTypeError(
            f"expected a number from 0 to {_GRADCHECK_MAX_ALPHA:g}, got {text!r} (a larger "
            "penalty swamps the other terms of the loss in float64 finite differences)")
    return value


def _label_column(text: str):
    """``--label-column``: an index, a header name, ``last`` or ``none``."""
    if text == "none":
        return None
    if text == "last":
        return -1
    try:
        return int(text)
    except ValueError:
        return text


def _thread_info() -> str:
    """Numba's and BLAS's thread counts, in one phrase."""
    import numba

    blas = "BLAS threads unknown"
    with contextlib.suppress(Exception):  # threadpoolctl is optional
        from threadpoolctl import threadpool_info

        libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if libs:
            names = dict.fromkeys(f"{i['internal_api']} {i['num_threads']}" for i in libs)
            blas = f"BLAS threads: {', '.join(names)}"
    text = f"Numba threads: {numba.get_num_threads()}, {blas}"
    with contextlib.suppress(OSError, AttributeError):  # no load average on some systems
        text += f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    return text


def _load_data(spec: str, *, label_column=-1, max_train=None, test_size=0.2, seed=0,
               target="labels"):
    """``fashion-mnist``, ``fashion-mnist-sample``, ``digits``, an IDX directory or a file.

    ``target``: what a file's ``y`` holds, class labels or regression values
    (``datasets.load_file``); a ``max_train`` subset is stratified for labels and a
    uniform choice for values.
    """
    import numpy as np

    from . import datasets

    if spec == "fashion-mnist":
        return datasets.load_fashion_mnist(max_train=max_train, seed=seed)
    if spec == "fashion-mnist-sample":
        return datasets.load_fashion_mnist(sample=True, max_train=max_train, seed=seed)
    if spec == "digits":
        data = datasets.load_digits_split(test_size=0.25, seed=seed)
    else:
        path = Path(spec)
        if path.is_dir():
            return datasets.load_fashion_mnist(path, max_train=max_train, seed=seed)
        data = datasets.load_file(path, label_column=label_column, target=target)
        if data.y_train is None:
            raise CommandError(f"{path}: the data has no labels (see --label-column)")
        if data.X_test is None:
            data = _split(data, test_size, seed, classes=target == "labels")
    if max_train is not None and max_train < data.X_train.shape[0]:
        if target == "labels":
            keep = datasets.stratified_indices(data.y_train, max_train, seed)
        else:
            order = np.random.default_rng(seed).permutation(data.X_train.shape[0])
            keep = np.sort(order[:max_train])
        data.X_train, data.y_train = data.X_train[keep], data.y_train[keep]
    return data


def _as_dtype(X, dtype):
    """X in ``dtype``: a C-ordered array, or a sparse file's CSR kept sparse (never densified)."""
    import numpy as np
    import scipy.sparse as sp

    return X.astype(dtype) if sp.issparse(X) else np.ascontiguousarray(X, dtype=dtype)


def _split(data, test_size, seed, classes=True):
    """Hold out ``test_size`` of a single-array file as its test split.

    Stratified when ``y`` holds class labels and every class can be split.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    n = data.X_train.shape[0]
    # a count of rows, or a fraction rounded up (as train_test_split does)
    n_test = test_size if isinstance(test_size, int) else int(np.ceil(test_size * n))
    stratify = None
    if classes:
        _, counts = np.unique(data.y_train, return_counts=True)
        stratify = data.y_train if counts.min() >= 2 and n_test >= counts.size else None
    if n < 2 or n_test < 1 or n - n_test < 1:
        raise CommandError(f"{data.location}: {n} rows are too few to split off a test set "
                           f"of {n_test} (--test-size {test_size})")
    Xtr, Xte, ytr, yte = train_test_split(
        data.X_train, data.y_train, test_size=test_size, random_state=seed, stratify=stratify
    )
    data.X_train, data.y_train, data.X_test, data.y_test = Xtr, ytr, Xte, yte
    return data


def _csv_width(path: Path) -> int | None:
    """Return the number of fields of the first non-empty CSV row, None if unreadable."""
    try:
        with open(path, newline="") as f:
            for row in csv.reader(f):
                if row and any(c.strip() for c in row):
                    return len(row)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def _eval_data(spec: str, label_column, model, need_labels: bool):
    """Return ``(X, y, description, class names)`` to score: a named set's test split or a file.

    Checks that the data has the model's number of features, and labels if needed.
    A regressor's file targets are read as numbers. The class names are those of a
    named data set (Fashion-MNIST's), else None.
    """
    from sklearn.base import is_regressor

    from . import datasets

    target = "values" if is_regressor(model) else "labels"
    class_names = None
    if spec in ("fashion-mnist", "fashion-mnist-sample", "digits") or Path(spec).is_dir():
        data = _load_data(spec)
        X, y, class_names = data.X_test, data.y_test, data.class_names
        where = data.name if spec != "digits" else "digits test split"
    else:
        path = Path(spec)
        if label_column == "auto":
            # a CSV one column wider than the model's input has labels in its last column
            width = None
            if path.suffix.lower() != ".npz" and path.is_file():
                width = _csv_width(path)
            label_column = -1 if width == model.n_features_in_ + 1 else None
        # an svmlight file as wide as the model (its rows need not use the last features)
        data = datasets.load_file(path, label_column=label_column, target=target,
                                  n_features=model.n_features_in_)
        if data.X_test is not None:
            X, y, where = data.X_test, data.y_test, f"{path} (X_test, y_test)"
        else:
            X, y, where = data.X_train, data.y_train, str(path)
    if X.shape[1] != model.n_features_in_:
        raise CommandError(
            f"{where}: the model expects {model.n_features_in_} features, the data has "
            f"{X.shape[1]}"
        )
    if need_labels and y is None:
        raise CommandError(f"{where}: no labels to evaluate against (see --label-column)")
    return X, y, where, class_names


class _EpochSeconds:
    """Per-epoch callback recording each epoch's seconds (the demo's timing).

    The progress itself is the estimator's display (``verbose='progress'``).
    """

    def __init__(self):
        self.last = 0.0
        self.seconds: list[float] = []

    def __call__(self, model, info):
        self.seconds.append(info["elapsed"] - self.last)
        self.last = info["elapsed"]
        return False


def _fit_quietly(model, X, y):
    """Fit, without the ConvergenceWarning that a fixed number of epochs always gives."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _warm_up(model_params: dict, X, y) -> float:
    """Fit a copy on a few rows so JIT compilation (or cache loading) is timed apart."""
    from .classifier import TwoLayerClassifier

    rows = min(X.shape[0], 2 * int(model_params.get("batch_size", 200)))
    params = dict(model_params, max_iter=1, callbacks=None, early_stopping=False)
    start = time.perf_counter()
    model = _fit_quietly(TwoLayerClassifier(**params), X[:rows], y[:rows])
    model.predict_proba(X[:rows])
    return time.perf_counter() - start


# --------------------------------------------------------------------------- demo
def _numpy_epoch_function():
    """Return the plain NumPy epoch to compare with, and its name.

    ``fastmlp.bench.numpy_epoch`` (five GEMMs per batch, what a NumPy user writes) when
    present, else ``fastmlp.reference.sgd_epoch`` (which also computes ``dX``). Both
    take ``(X, Y, params, velocities, order, batch_size, lr, momentum, nesterov, alpha)``.
    """
    with contextlib.suppress(Exception):
        bench = importlib.import_module("fastmlp.bench")
        return bench.numpy_epoch, "fastmlp.bench.numpy_epoch"
    from . import reference

    return reference.sgd_epoch, "fastmlp.reference.sgd_epoch"


def _numpy_seconds_per_epoch(X, y, model, args, epochs: int) -> tuple[float, str]:
    """Time ``epochs`` epochs of plain NumPy SGD with the same settings and start."""
    import numpy as np
    epoch, name = _numpy_epoch_function()
    dt = X.dtype
    Y = np.zeros((X.shape[0], model.classes_.size), dtype=dt)
    Y[np.arange(X.shape[0]), np.searchsorted(model.classes_, y)] = 1  # one-hot (n, C)
    rng = np.random.default_rng(args.seed)
    # Glorot-uniform start, the estimator's distribution (not its random stream)
    D, H, C = X.shape[1], args.hidden, Y.shape[1]
    lim1, lim2 = np.sqrt(6 / (D + H)), np.sqrt(6 / (H + C))
    params = [
        rng.uniform(-lim1, lim1, (D, H)).astype(dt), rng.uniform(-lim1, lim1, H).astype(dt),
        rng.uniform(-lim2, lim2, (H, C)).astype(dt), rng.uniform(-lim2, lim2, C).astype(dt),
    ]
    velocities = [np.zeros_like(p) for p in params]
    times = []
    for _ in range(epochs):
        order = rng.permutation(X.shape[0])
        time.sleep(0.25)  # fastmlp's BLAS threads stop spinning first (bench.time_epochs)
        start = time.perf_counter()
        loss = epoch(X, Y, params, velocities, order, args.batch_size, dt.type(args.lr),
                     dt.type(args.momentum), True, dt.type(args.alpha))
        times.append(time.perf_counter() - start)
        if not np.isfinite(loss):
            raise CommandError(f"the NumPy baseline diverged (loss {loss})")
    return statistics.median(times), name


def cmd_demo(args) -> int:
    """Train on Fashion-MNIST, report accuracy, seconds per epoch and the NumPy ratio."""
    import numpy as np

    from . import datasets
    from .classifier import TwoLayerClassifier

    total_start = time.perf_counter()
    data = datasets.load_fashion_mnist(args.data_dir, sample=args.sample,
                                       max_train=args.max_train, seed=args.seed)
    dtype = np.dtype(args.dtype)
    X_train = np.ascontiguousarray(data.X_train, dtype=dtype)
    X_test = np.ascontiguousarray(data.X_test, dtype=dtype)
    y_train, y_test = data.y_train, data.y_test
    print(f"fastmlp demo: {X_train.shape[1]} -> {args.hidden} ReLU -> "
          f"{np.unique(y_train).size} softmax, "
          f"SGD (lr {args.lr:g}, Nesterov momentum {args.momentum:g}, batch {args.batch_size}, "
          f"alpha {args.alpha:g}), {args.epochs} epochs")
    print(f"data:    {data.name}")
    print(f"shapes:  X_train {X_train.shape}, X_test {X_test.shape}, {dtype.name}; "
          f"{_thread_info()}")
    params = dict(
        hidden_units=args.hidden, solver="sgd", learning_rate_init=args.lr,
        momentum=args.momentum, nesterovs_momentum=True, batch_size=args.batch_size,
        alpha=args.alpha, max_iter=args.epochs, random_state=args.seed, dtype=dtype.type,
        n_iter_no_change=args.epochs + 1, tol=0.0,
    )
    warm = _warm_up(params, X_train, y_train)
    print(f"warm-up: {warm:.2f} s (Numba: compiling, or loading the on-disk cache)")
    progress = _EpochSeconds()
    model = TwoLayerClassifier(**params, callbacks=[progress], verbose="progress")
    _fit_quietly(model, X_train, y_train)
    accuracy = float(np.mean(model.predict(X_test) == y_test))
    fast = statistics.median(progress.seconds)
    print(f"test accuracy: {accuracy:.4f} ({int(round(accuracy * len(y_test)))}/{len(y_test)} "
          f"test images)")
    print(f"fastmlp:     {fast:.4g} s per epoch (median of {len(progress.seconds)} epochs)")
    if args.numpy_epochs == 0:
        print(f"total time: {time.perf_counter() - total_start:.1f} s")
        return 0
    slow, name = _numpy_seconds_per_epoch(X_train, y_train, model, args, args.numpy_epochs)
    print(f"plain NumPy: {slow:.4g} s per epoch (median of {args.numpy_epochs}, {name}, "
          "same batch, lr, momentum, data)")
    ratio = slow / fast
    verdict = (f"fastmlp is {ratio:.1f}x faster" if ratio >= 1
               else f"fastmlp is {1 / ratio:.1f}x slower")
    print(f"speed ratio: {ratio:.2f} (NumPy s/epoch / fastmlp s/epoch): {verdict} per epoch "
          "than plain NumPy")
    print(f"total time: {time.perf_counter() - total_start:.1f} s")
    return 0


# -------------------------------------------------------------------------- train
def _restored_epoch(model) -> int | None:
    """Return the epoch (from 1) whose weights early stopping restored, None without it.

    The first epoch whose validation score equals ``best_validation_score_``: the
    score is kept only when it beats every earlier one, so that epoch is the one
    (for ``early_stopping_metric='score'``, the command line's).
    """
    scores = getattr(model, "validation_scores_", None)
    best = getattr(model, "best_validation_score_", None)
    if not scores or best is None:
        return None
    return next((i + 1 for i, s in enumerate(scores) if s == best), None)


def _rows_trained_on(model, n_rows: int) -> int:
    """Rows the weights were fitted on: ``n_rows`` less the early-stopping split.

    The validation split holds ``ceil(validation_fraction * n_rows)`` rows, as
    ``train_test_split`` rounds a fraction of a test set.
    """
    import math

    if getattr(model, "validation_scores_", None) is None:
        return n_rows
    return n_rows - math.ceil(model.validation_fraction * n_rows)


def _curves_figure(model, title: str):
    """Draw the training figure and return it.

    The losses (training, and validation when early stopping gave one) and the
    validation score per epoch, the restored epoch marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator
    from sklearn.base import is_regressor

    regression = is_regressor(model)
    scores = getattr(model, "validation_scores_", None)
    val_loss = getattr(model, "validation_loss_curve_", None)
    restored = _restored_epoch(model)
    fig, axes = plt.subplots(1, 2 if scores else 1, figsize=(10 if scores else 5.5, 4.0),
                             squeeze=False)
    ax = axes[0, 0]
    epochs = np.arange(1, len(model.loss_curve_) + 1)
    if regression:
        what = "half squared error" if model.loss == "squared_error" else "half Poisson deviance"
    else:
        what = "cross-entropy"
    ax.plot(epochs, model.loss_curve_, marker="o", ms=3, label=f"training ({what} + L2)")
    if val_loss:
        ax.plot(epochs[: len(val_loss)], val_loss, marker="o", ms=3, color="tab:orange",
                label=f"validation ({what}, no L2)")
    ax.set_ylabel("loss")
    panels = [ax]
    if scores:
        ax = axes[0, 1]
        ax.plot(epochs[: len(scores)], scores, marker="o", ms=3, color="tab:green",
                label="validation")
        ax.set_ylabel("validation R²" if regression else "validation accuracy")
        panels.append(ax)
    for ax in panels:
        if restored is not None:
            ax.axvline(restored, color="tab:red", ls="--", lw=1,
                       label=f"restored epoch {restored}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _plot(model, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    from ._files import save_figure

    fig = _curves_figure(model, title)
    try:
        save_figure(fig, path, dpi=110)  # atomic: a failed write keeps the old file
    finally:
        plt.close(fig)


def cmd_train(args) -> int:
    """Train on the chosen data, print accuracies (R²), save the model and the curves."""
    import numpy as np

    from .classifier import TwoLayerClassifier
    from .model_io import save_model
    from .regressor import TwoLayerRegressor

    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise CommandError("--plot needs matplotlib: pip install matplotlib "
                           "(or pip install 'fastmlp[plot]')")
    _check_writable("--output", args.output)
    _check_writable("--plot", args.plot)
    task = args.task
    load = dict(label_column=args.label_column, max_train=args.max_train,
                test_size=args.test_size, seed=args.seed)
    try:
        data = _load_data(args.data, target="values" if task == "regression" else "labels",
                          **load)
    except ValueError as exc:  # a label column of non-integer numbers: a regression target
        float_labels = "non-integer numbers" in str(exc)
        if float_labels and task == "classification":
            raise CommandError(str(exc).replace("load it with target='values'",
                                                "train with --task regression")) from None
        if not float_labels or task != "auto":
            raise
        data = _load_data(args.data, target="values", **load)
        print("task: regression (the target has non-integer numbers; "
              "--task classification refuses them)")
        task = "regression"
    regression = task == "regression"
    dtype = np.dtype(args.dtype)
    X_train, X_test = (_as_dtype(X, dtype) for X in (data.X_train, data.X_test))
    print(f"data: {data.name if data.source != 'file' else data.location}")
    print(f"      X_train {X_train.shape}, X_test {X_test.shape}, {dtype.name}; {_thread_info()}")
    lr = args.lr if args.lr is not None else (0.01 if args.solver == "sgd" else 0.001)
    batch = min(args.batch_size, X_train.shape[0])  # what fit would clip it to, warning
    model = (TwoLayerRegressor if regression else TwoLayerClassifier)(
        hidden_units=args.hidden, solver=args.solver, learning_rate_init=lr,
        batch_size=batch, alpha=args.alpha, momentum=args.momentum,
        max_iter=args.epochs, random_state=args.seed, dtype=dtype.type,
        early_stopping=args.early_stopping, verbose=False if args.quiet else "progress",
    )
    if regression:
        k = 1 if data.y_train.ndim == 1 else data.y_train.shape[1]
        target = f"{k} output{'s' if k > 1 else ''} (regression)"
    else:
        target = f"{np.unique(data.y_train).size} classes"
    print(f"training: {X_train.shape[1]} -> {args.hidden} ReLU -> "
          f"{target}, solver {args.solver}, lr {lr:g}, "
          f"batch {batch}, up to {args.epochs} epochs")
    start = time.perf_counter()
    _fit_quietly(model, X_train, data.y_train)
    elapsed = time.perf_counter() - start
    train_acc = model.score(X_train, data.y_train)
    test_acc = model.score(X_test, data.y_test)
    print(f"trained {model.n_iter_} epochs in {elapsed:.2f} s (includes Numba compilation or "
          "cache loading on a first run)")
    what = "R²" if regression else "accuracy"
    print(f"train {what} {train_acc:.4f}, test {what} {test_acc:.4f}")
    restored = _restored_epoch(model)
    if restored is not None:
        print(f"early stopping kept epoch {restored} (validation score "
              f"{model.best_validation_score_:.4f})")
    # the file records a quiet model: loading it and fitting again draws no progress
    model.set_params(verbose=False)
    if args.output is not None:
        path = save_model(model, args.output)
        print(f"model saved to {path}")
    if args.plot is not None:
        label = {"sklearn": "digits", "file": Path(data.location).name}.get(
            data.source, "Fashion-MNIST" + (" sample" if data.source == "sample" else ""))
        n_rows = X_train.shape[0]
        fitted = _rows_trained_on(model, n_rows)
        rows = f"{fitted} rows trained on"
        if fitted != n_rows:
            rows += f" ({n_rows - fitted} of {n_rows} held out for validation)"
        _plot(model, args.plot, f"{label}, {rows}: {args.solver}, hidden {args.hidden}, "
              f"test {what} {test_acc:.3f}")
        print(f"curves saved to {args.plot}")
    return 0


def _check_writable(option: str, path) -> None:
    """Refuse, before any work, an output path whose folder is missing or that is a folder."""
    if path is None or str(path) == "-":
        return
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{option} {path}: is a folder, expected a file name")
    folder = path.parent
    if not folder.is_dir():
        raise CommandError(f"{option} {path}: the folder {folder} does not exist")


# ----------------------------------------------------------------- predict, evaluate
def _load_model(path):
    from .model_io import load_model

    return load_model(path)


def cmd_predict(args) -> int:
    """Write the predicted label (and optionally probabilities) of each row."""
    from sklearn.base import is_regressor

    _check_writable("--output", args.output)
    model = _load_model(args.model)
    regression = is_regressor(model)
    if regression and args.proba:
        raise CommandError(f"--proba: {args.model} holds a TwoLayerRegressor, which predicts "
                           "numbers, not class probabilities")
    X, _, where, _ = _eval_data(args.data, args.label_column, model, need_labels=False)
    labels = model.predict(X)
    if regression:
        values = labels.reshape(labels.shape[0], -1)  # (n, n_outputs)
        rows = [[f"{v:.9g}" for v in r] for r in values]
        header = (["prediction"] if values.shape[1] == 1 else
                  [f"prediction_{j}" for j in range(values.shape[1])])
    else:
        rows = [[str(v)] for v in labels]
        header = ["prediction"]
    if args.proba:
        P = model.predict_proba(X)
        header += [f"p_{c}" for c in model.classes_]
        rows = [r + [f"{p:.6g}" for p in ps] for r, ps in zip(rows, P, strict=True)]
    text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    if args.output is None or str(args.output) == "-":
        sys.stdout.write(text)
    else:
        from ._files import atomic_write

        with atomic_write(args.output, "w") as f:  # a failed write keeps the old file
            f.write(text)
        print(f"{len(rows)} predictions written to {args.output}", file=sys.stderr)
    return 0


def _comparable_labels(y, model, pred, where):
    """Return ``(y, pred, classes)`` as one kind of label, so equal labels compare equal.

    A file's labels are numbers when they all parse as numbers, else strings, while
    the model keeps the labels it was trained on: numbers against numbers compare as
    numbers, anything else as strings (``"3"`` matches ``3``). Labels none of which
    is a class of the model are refused: the wrong file, model or
    ``--label-column``, not an accuracy of 0.
    """
    import numpy as np
    classes = np.asarray(model.classes_)
    if pred.ndim != 1:
        raise CommandError("the model is multilabel; evaluate compares one label per row")
    if classes.dtype.kind in "biuf" and y.dtype.kind in "biuf":
        shared = np.result_type(classes.dtype, y.dtype)
        y, pred, classes = y.astype(shared), pred.astype(shared), classes.astype(shared)
    else:
        y, pred, classes = y.astype(str), pred.astype(str), classes.astype(str)
    found = np.unique(y)
    if not np.isin(found, classes).any():
        def show(values):
            text = ", ".join(repr(v.item()) for v in values[:5])
            return text + (", ..." if len(values) > 5 else "")

        raise CommandError(
            f"{where}: none of its labels ({show(found)}) is a class of the model "
            f"({show(np.asarray(model.classes_))}): another model, file or --label-column?"
        )
    return y, pred, classes


def _display_names(labels, class_names):
    """``["0 T-shirt/top", ...]`` for labels ``0..C-1`` of a data set with class names.

    None when the data set has none, when a label is not an index into them, or
    when the names only repeat the labels (digits' ``"0".."9"``).
    """
    if not class_names:
        return None
    out = []
    for label in labels:
        value = label.item() if hasattr(label, "item") else label
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or not 0 <= value < len(class_names):
            return None
        out.append(f"{value} {class_names[value]}")
    if all(name == f"{label} {label}" for name, label in zip(out, labels, strict=True)):
        return None
    return out


def _evaluate_regressor(args, model, X, y, where) -> int:
    import numpy as np
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(model.predict(X), dtype=np.float64)
    if y.shape != pred.shape:
        raise CommandError(f"{where}: the targets have shape {y.shape}, the model predicts "
                           f"{pred.shape}")
    print(f"model: {args.model} ({model.n_features_in_} -> {model.coefs_[0].shape[1]} -> "
          f"{model.n_outputs_} output{'s' if model.n_outputs_ > 1 else ''}, "
          f"TwoLayerRegressor, loss {model.loss})")
    print(f"data:  {where}, {X.shape[0]} rows")
    print(f"R²:   {r2_score(y, pred):.4f}")
    print(f"MAE:  {mean_absolute_error(y, pred):.6g}")
    print(f"RMSE: {float(np.sqrt(mean_squared_error(y, pred))):.6g}")
    return 0


def cmd_evaluate(args) -> int:
    """Print accuracy, the per-class report and the confusion matrix (R² for a regressor)."""
    import numpy as np
    from sklearn.base import is_regressor
    from sklearn.metrics import classification_report, confusion_matrix

    model = _load_model(args.model)
    X, y, where, class_names = _eval_data(args.data, args.label_column, model,
                                          need_labels=True)
    if is_regressor(model):
        return _evaluate_regressor(args, model, X, y, where)
    y, pred, classes = _comparable_labels(np.asarray(y), model, model.predict(X), where)
    labels = np.union1d(classes, y)
    accuracy = float(np.mean(pred == y))
    print(f"model: {args.model} ({model.n_features_in_} -> {model.coefs_[0].shape[1]} -> "
          f"{len(model.classes_)} classes)")
    print(f"data:  {where}, {X.shape[0]} rows")
    names = _display_names(labels, class_names)
    if names is not None:
        print("classes: " + ", ".join(names))
    print(f"accuracy: {accuracy:.4f}")
    print()
    print(classification_report(y, pred, labels=labels, target_names=names, digits=4,
                                zero_division=0))
    cm = confusion_matrix(y, pred, labels=labels)
    columns = [str(c) for c in labels]
    rows = names if names is not None else columns
    width = max(5, *(len(n) for n in columns), len(str(cm.max())))
    first = max(width, *(len(n) for n in rows))
    print("confusion matrix (rows: true label, columns: predicted)")
    print(" " * first + " " + " ".join(f"{n:>{width}}" for n in columns))
    for name, row in zip(rows, cm, strict=True):
        print(f"{name:>{first}} " + " ".join(f"{v:>{width}}" for v in row))
    return 0


# ---------------------------------------------------------------------- gradcheck
# the hidden activations TwoLayerClassifier and gradcheck accept: reference.ACTIVATIONS,
# written out so that building the parser (``--help``) imports no NumPy (a test
# checks the two agree)
ACTIVATIONS = ("relu", "tanh", "logistic", "identity")


def _relative_error(a, b) -> float:
    """Return ``||a - b|| / (||a|| + ||b||)``, 0 when both are 0."""
    import numpy as np
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if den == 0 else float(np.linalg.norm(a - b) / den)


def _central_difference(f, x, eps):
    """Gradient of the scalar ``f`` at ``x`` by (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)."""
    import numpy as np
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def cmd_gradcheck(args) -> int:
    """Compare every gradient with central finite differences on a tiny random network.

    With ``--example``, print the hand-worked example of ``docs/backprop.md`` instead.
    """
    import numpy as np

    from . import forward_backward, reference
    from .backprop import hand_example_text

    if args.example:
        print(hand_example_text(args.backend), end="")
        return 0
    activation = args.activation
    rng = np.random.default_rng(args.seed)
    n, D, H, C = args.n, args.d, args.hidden, args.classes
    X = rng.normal(size=(n, D))
    y = rng.integers(0, C, size=n)
    y[: min(n, C)] = np.arange(min(n, C))  # every class present when n >= C
    W1 = rng.normal(size=(D, H)) / np.sqrt(D)
    b1 = 0.1 * rng.normal(size=H)
    W2 = rng.normal(size=(H, C)) / np.sqrt(H)
    b2 = 0.1 * rng.normal(size=C)
    Y = np.eye(C)[y]  # (n, C) one-hot
    alpha = args.alpha
    r = forward_backward(X, y, W1, b1, W2, b2, alpha=alpha, activation=activation,
                         backend=args.backend)

    def loss(X_, W1_, b1_, W2_, b2_):
        return reference.loss(X_, Y, W1_, b1_, W2_, b2_, alpha=alpha, activation=activation)

    penalty = alpha / (2 * n) * ((W1**2).sum() + (W2**2).sum())

    def from_Z(Z):  # L as a function of the logits
        return reference.cross_entropy(Z, Y).mean() + penalty

    def act(H1):
        return reference.activation_forward(H1, activation)

    checks = [
        # (gradient, node, loss as a function of that node alone)
        ("dW1", W1, lambda v: loss(X, v, b1, W2, b2)),
        ("db1", b1, lambda v: loss(X, W1, v, W2, b2)),
        ("dW2", W2, lambda v: loss(X, W1, b1, v, b2)),
        ("db2", b2, lambda v: loss(X, W1, b1, W2, v)),
        ("dX", X, lambda v: loss(v, W1, b1, W2, b2)),
        ("dZ", r.Z, from_Z),
        ("dH3", r.H3, lambda v: from_Z(v + b2)),
        ("dH2", r.H2, lambda v: from_Z(v @ W2 + b2)),
        ("dH1", r.H1, lambda v: from_Z(act(v) @ W2 + b2)),
        ("dH0", r.H0, lambda v: from_Z(act(v + b1) @ W2 + b2)),
    ]
    print(f"gradient check: X ({n}, {D}) -> {H} {activation} -> {C} softmax, "
          f"alpha {alpha:g}, seed {args.seed}, float64")
    print(f"analytic: fastmlp.forward_backward(backend={args.backend!r}); finite differences:"
          f" central, eps {args.eps:g}, on fastmlp.reference.loss")
    print(f"loss {r.loss:.12g}")
    print("columns: the gradient; its shape; the 2-norm of the analytic array a and of the")
    print("finite-difference array f; the relative error |a - f| / (|a| + |f|); ok if it is")
    print(f"at most --tol {args.tol:g}")
    print(f"{'gradient':<9}{'shape':<10}{'|analytic|':>14}{'|finite diff|':>15}"
          f"{'rel. error':>13}  result")
    worst = 0.0
    for name, node, f in checks:
        analytic = np.asarray(r[name], dtype=np.float64)
        numeric = _central_difference(f, np.array(node, dtype=np.float64), args.eps)
        err = _relative_error(analytic, numeric)
        worst = max(worst, err)
        flag = "ok" if err <= args.tol else "FAIL"
        print(f"{name:<9}{str(tuple(node.shape)):<10}{np.linalg.norm(analytic):>14.6e}"
              f"{np.linalg.norm(numeric):>15.6e}{err:>13.2e}  {flag}")
    if worst > args.tol:
        print(f"FAILED: largest relative error {worst:.2e} > tolerance {args.tol:g}")
        return 1
    print(f"all gradients agree: largest relative error {worst:.2e} <= {args.tol:g}")
    return 0


# -------------------------------------------------------------------------- bench
def cmd_bench(argv: Sequence[str]) -> int:
    """Hand the options to ``fastmlp.bench.main``."""
    if importlib.util.find_spec("fastmlp.bench") is None:
        raise CommandError("the benchmark module fastmlp/bench.py is not available in this "
                           "installation")
    bench = importlib.import_module("fastmlp.bench")
    with _ctrl_c_stops(bench, bench.bench_sparse):
        return int(bench.main(list(argv)) or 0)


@contextlib.contextmanager
def _ctrl_c_stops(*modules):
    """Make Ctrl-C stop code of ``modules`` even where a library swallows the interrupt.

    ``MLPClassifier.partial_fit`` (a peer the bench times in this process) catches
    ``KeyboardInterrupt``, warns and returns, and the bench would go on to its next
    epoch. So SIGINT raises ``KeyboardInterrupt`` as usual, and also sets a profile
    hook on the main thread that raises it again at the next call of a function of
    ``modules``: if the first one was swallowed, the second ends the run there
    (cleanup in other code, such as an atomic write removing its temporary, runs
    undisturbed). Both are undone on leaving.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    files = {m.__file__ for m in modules}
    previous_profile = sys.getprofile()

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_filename in files:
            sys.setprofile(previous_profile)
            raise KeyboardInterrupt

    def on_sigint(signum, frame):
        sys.setprofile(hook)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # pragma: no cover - signals unavailable here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.setprofile(previous_profile)


# ---------------------------------------------------------------------- the parser
def build_parser() -> argparse.ArgumentParser:
    """Build the parser of every subcommand except ``bench`` (its own parser)."""
    parser = _Parser(
        prog=PROG,
        description="Two-layer neural network classifier with Numba kernels. With no "
        "subcommand, runs 'demo'.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")

    p = sub.add_parser("demo", help="train on Fashion-MNIST and compare with plain NumPy",
                       description="Train on the best Fashion-MNIST available (the full set "
                       "from the Debian package, else the sample shipped in datasets/), print "
                       "test accuracy, seconds per epoch and the speed ratio to plain NumPy.")
    p.add_argument("--epochs", type=_positive_int, default=5, help="training epochs")
    p.add_argument("--hidden", type=_positive_int, default=100, help="hidden units")
    p.add_argument("--batch-size", type=_positive_int, default=200, help="rows per batch")
    p.add_argument("--lr", type=_positive_float, default=0.05, help="learning rate")
    p.add_argument("--momentum", type=_unit_float, default=0.9, help="Nesterov momentum")
    p.add_argument("--alpha", type=_nonnegative_float, default=1e-4, help="L2 penalty")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the weights, the batches and any subset (0 to 2**32 - 1)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating type of the data and weights")
    p.add_argument("--max-train", type=_positive_int, default=None,
                   help="train on at most this many images, a stratified choice (default: "
                   "all)")
    p.add_argument("--numpy-epochs", type=_nonnegative_int, default=2,
                   help="epochs of plain NumPy to time (0 skips the comparison)")
    p.add_argument("--sample", action="store_true",
                   help="use the sample shipped in datasets/ even if the full set is installed")
    p.add_argument("--data-dir", default=None,
                   help="a directory with the Fashion-MNIST IDX files (default: $FASTMLP_DATA,"
                   " then the Debian package's, then the shipped sample)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a model and save it",
                       description="Train TwoLayerClassifier (or TwoLayerRegressor, "
                       "--task regression) and save it as .npz. Progress goes to stderr: "
                       "one redrawn line on a terminal, a line per epoch elsewhere.")
    p.add_argument("--data", default="fashion-mnist",
                   help="fashion-mnist, fashion-mnist-sample, digits, a directory of "
                   "Fashion-MNIST IDX files, or a .npz/CSV file, a scipy.sparse.save_npz "
                   "file (labels in an extra array y) or svmlight/libsvm text (.svm, "
                   ".svmlight, .libsvm): sparse files train sparse")
    p.add_argument("--label-column", type=_label_column, default=-1,
                   help="CSV: index or name of the label column, 'last' or 'none' (default: "
                   "-1, the last)")
    p.add_argument("--test-size", type=_test_size, default=0.2,
                   help="held out for testing from a file without a split: a fraction in "
                   "(0, 1) or a number of rows")
    p.add_argument("--hidden", type=_positive_int, default=100, help="hidden units")
    p.add_argument("--epochs", type=_positive_int, default=10, help="most training epochs")
    p.add_argument("--solver", choices=("sgd", "adam", "lbfgs"), default="adam",
                   help="optimizer")
    p.add_argument("--batch-size", type=_positive_int, default=200, help="rows per batch")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 0.001 for adam, 0.01 for sgd)")
    p.add_argument("--momentum", type=_unit_float, default=0.9, help="sgd momentum")
    p.add_argument("--alpha", type=_nonnegative_float, default=1e-4, help="L2 penalty")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the weights, the batches and the splits (0 to 2**32 - 1)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating type of the data and weights")
    p.add_argument("--max-train", type=_positive_int, default=None,
                   help="train on at most this many rows, a stratified choice (default: all)")
    p.add_argument("--early-stopping", action="store_true",
                   help="hold out 10%% for validation and keep the best epoch")
    p.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                   help="classification (TwoLayerClassifier) or regression (TwoLayerRegressor);"
                   " auto: regression when the file's labels (a CSV column or a .npz's y) hold "
                   "non-integer numbers, saying so, else classification")
    p.add_argument("--output", "-o", type=Path, default=None,
                   help="save the model (.npz) (default: not saved)")
    p.add_argument("--plot", type=Path, default=None,
                   help="save the loss curves (training, and validation with "
                   "--early-stopping, the restored epoch marked) and the validation score "
                   "as a PNG, needs matplotlib (default: no plot)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_train)

    for name, func, text in (
        ("predict", cmd_predict, "write the predicted label (or value) of each row"),
        ("evaluate", cmd_evaluate, "accuracy, per-class report and confusion matrix "
                                   "(R², MAE, RMSE for a regressor)"),
    ):
        p = sub.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}.")
        p.add_argument("--model", "-m", type=Path, required=True,
                       help="a model .npz (required)")
        p.add_argument("--data", required=True,
                       help="a .npz/CSV/svmlight (.svm, .svmlight, .libsvm) file, or "
                       "fashion-mnist, fashion-mnist-sample, digits "
                       "(their test split) (required)")
        p.add_argument("--label-column", type=_label_column, default="auto",
                       help="CSV: index or name of the label column, 'none', or 'auto': the "
                       "last column when the file has one more column than the model's inputs")
        if name == "predict":
            p.add_argument("--output", "-o", default=None,
                           help="CSV file to write (default: standard output)")
            p.add_argument("--proba", action="store_true", help="add a probability per class")
        p.set_defaults(func=func)

    p = sub.add_parser("gradcheck", help="analytic gradients against finite differences",
                       description="Build a tiny random network, compute every gradient with "
                       "fastmlp.forward_backward and compare each with central finite "
                       "differences in float64. Exit status 1 if any relative error exceeds "
                       "--tol. With --example, print the hand-worked example of "
                       "docs/backprop.md (every node and gradient) instead.")
    p.add_argument("--n", type=_positive_int, default=6, help="rows of X, n")
    p.add_argument("--d", type=_positive_int, default=5, help="features, D")
    p.add_argument("--hidden", type=_positive_int, default=4, help="hidden units, H")
    p.add_argument("--classes", type=_at_least_two, default=3, help="classes, C")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the random inputs, labels and weights (0 to 2**32 - 1)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="hidden activation, as in TwoLayerClassifier")
    p.add_argument("--alpha", type=_gradcheck_alpha, default=0.1,
                   help=f"L2 penalty, 0 to {_GRADCHECK_MAX_ALPHA:g}")
    p.add_argument("--eps", type=_positive_float, default=1e-6,
                   help="finite-difference step")
    p.add_argument("--tol", type=_positive_float, default=1e-6,
                   help="largest relative error accepted")
    p.add_argument("--backend", choices=("numba", "numpy"), default="numba",
                   help="analytic gradients from the Numba kernels or the NumPy reference")
    p.add_argument("--example", action="store_true",
                   help="print the hand-worked example of docs/backprop.md (n=2, D=3, H=2, "
                   "C=2) and exit")
    p.set_defaults(func=cmd_gradcheck)

    sub.add_parser("bench", help="the speed report (options: fastmlp bench --help)",
                   add_help=False)
    return parser


def _run(argv: list[str]) -> int:
    if argv and argv[0] == "bench":
        return cmd_bench(argv[1:])
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["demo", *argv]
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Bad input ends in one line on stderr: usage errors (status 2) from argparse, and
    the errors that bad files, options and data raise (status 1): ``CommandError``,
    ``ValueError`` (every refusal of ``datasets``, ``model_io`` and the estimator),
    ``OSError`` (missing, unreadable or unwritable files), ``ImportError`` (an
    optional package) and ``MemoryError`` (sizes beyond this machine). Any other
    exception is a bug in fastmlp and keeps its traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _run(argv)
    except BrokenPipeError:
        # the reader went away (``fastmlp predict ... | head``): stop quietly, and
        # keep Python from failing again when it flushes stdout at exit
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CommandError as exc:
        message, status = str(exc), exc.status
    except (ValueError, OSError, ImportError, MemoryError) as exc:
        message, status = str(exc) or type(exc).__name__, 1
        if isinstance(exc, ImportError) and exc.name:
            message = f"{message} (a missing optional package? pip install {exc.name})"
    except KeyboardInterrupt:
        message, status = "interrupted", 130
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
