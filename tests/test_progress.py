"""Tests of fastmlp._progress, the one progress display (estimators and command line)."""

from __future__ import annotations

import io
import os
import re
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from fastmlp import TwoLayerClassifier, TwoLayerRegressor
from fastmlp._progress import Progress, format_seconds


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:400] / 16).astype(np.float32), y[:400]


def test_plain_lines_when_not_a_terminal():
    stream, clock = io.StringIO(), Clock()  # StringIO.isatty() is False: a log file
    bar = Progress(4, stream=stream, clock=clock, score_name="val_accuracy")
    for epoch in range(1, 5):
        clock.now += 1.0
        bar.update(epoch, 1.0 / epoch, 0.5 + epoch / 10, 0.9 / epoch)
    bar.close("early stopping: restored the weights of epoch 4 (val_accuracy 0.9000)")
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 5 and text.endswith("\n")
    assert lines[0].startswith("epoch 1/4 [#####...............] loss 1 | elapsed 1.00s")
    assert lines[3].startswith("epoch 4/4 [####################] loss 0.25 ")
    assert "val_accuracy 0.9000 val_loss 0.225" in lines[3]
    assert lines[4] == "early stopping: restored the weights of epoch 4 (val_accuracy 0.9000)"


def test_one_redrawn_line_on_a_terminal():
    stream, clock = FakeTerminal(), Clock()
    bar = Progress(3, stream=stream, clock=clock, min_interval=0.0)
    for epoch in range(1, 4):
        clock.now += 2.0
        bar.update(epoch, 0.5)
        assert "\n" not in stream.getvalue()  # the same line, redrawn
    assert stream.getvalue().count("\r") == 3
    assert stream.getvalue().startswith("\repoch 1/3 [######..............] loss 0.5 |")
    bar.close()
    assert stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1


def test_terminal_redraws_are_throttled_but_the_last_state_is_shown():
    stream, clock = FakeTerminal(), Clock()
    bar = Progress(100, stream=stream, clock=clock, min_interval=0.1)
    for epoch in range(1, 51):
        clock.now += 0.001  # 1 ms epochs: 50 updates within 0.1 s
        bar.update(epoch, 1.0)
    assert stream.getvalue().count("\r") == 1  # only the first was drawn so far
    bar.close()
    assert stream.getvalue().count("\r") == 2
    assert "epoch  50/100" in stream.getvalue().rsplit("\r", 1)[1]


def test_eta_and_rate_leave_out_the_first_epoch():
    stream, clock = io.StringIO(), Clock()
    bar = Progress(10, stream=stream, clock=clock)
    clock.now = 5.0  # the first epoch also compiled: 5 s
    bar.update(1, 1.0)
    clock.now = 7.0  # then 1 s per epoch
    bar.update(3, 1.0)
    clock.now = 27.0  # then 10 s per epoch: slower than one per second
    bar.update(5, 1.0)
    lines = stream.getvalue().splitlines()
    assert "elapsed 5.00s, ETA 45.0s, 5 s/epoch" in lines[0]
    assert "elapsed 7.00s, ETA 7.00s, 1 epoch/s" in lines[1]  # 2 epochs in 2 s, 7 to go
    assert "elapsed 27.0s, ETA 27.5s, 5.5 s/epoch" in lines[2]  # 4 epochs in 22 s, 5 to go
    bar.close()


@pytest.mark.parametrize("seconds,text", [
    (0.421, "0.42s"), (12.34, "12.3s"), (245, "4:05"), (3723, "1:02:03"),
    (float("nan"), "?"), (float("inf"), "?"),
])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_a_long_line_on_a_narrow_terminal_drops_the_bar_first(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "get_terminal_size",
                        lambda fallback=None: os.terminal_size((60, 24)))
    stream = FakeTerminal()
    bar = Progress(10, stream=stream, clock=Clock(), score_name="val_accuracy")
    bar.update(1, 0.5, 0.75, 0.5)
    drawn = stream.getvalue()[1:]
    assert len(drawn) <= 59 and "[" not in drawn and drawn.startswith("epoch  1/10 loss 0.5 |")
    bar.close()


def test_a_warning_starts_on_its_own_line():
    stream, clock = FakeTerminal(), Clock()

    def show(message, category, filename, lineno, file=None, line=None):
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        bar = Progress(3, stream=stream, clock=clock, min_interval=0.0)
        bar.update(1, 0.5)
        warnings.warn("look out", UserWarning, stacklevel=1)
        bar.update(2, 0.4)
        bar.close()
        assert warnings.showwarning is show  # the hook is gone
    text = stream.getvalue()
    before, after = text.split("UserWarning: look out", 1)
    assert before.rsplit("\n", 1)[0].endswith("loss 0.5 | elapsed 0.00s, ETA ?, ? epoch/s")
    assert re.search(r"\n[^\n\r]*$", before)  # the warning's line starts after a newline
    assert "\repoch 2/3" in after  # the bar comes back below it


def _fit_showing_warnings(estimator, X, y, monkeypatch, stream):
    """Fit with stderr replaced by ``stream`` and warnings shown there, not raised."""
    monkeypatch.setattr(sys, "stderr", stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda m, c, f, n, file=None, line=None: stream.write(
            warnings.formatwarning(m, c, f, n, line))
        estimator.fit(X, y)
    monkeypatch.undo()
    return stream.getvalue()


@pytest.mark.parametrize("terminal", [True, False])
def test_convergence_warning_never_lands_on_the_bar(digits, monkeypatch, terminal):
    import shutil

    X, y = digits
    stream = FakeTerminal() if terminal else io.StringIO()
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=None: os.terminal_size(
        (200, 24)))  # wide enough for the whole line
    est = TwoLayerClassifier(hidden_units=8, max_iter=3, verbose="progress", random_state=0)
    text = _fit_showing_warnings(est, X, y, monkeypatch, stream)
    head, warning = text.split("ConvergenceWarning: Stochastic Optimizer: Maximum iterations", 1)
    last_line = head.rsplit("\n", 1)
    assert len(last_line) == 2 and "epoch" not in last_line[1]  # a line of its own
    assert "epoch 3/3 [####################]" in last_line[0]
    assert ("\r" in head) is terminal
    assert "epoch" not in warning


def test_early_stopping_shows_the_restored_epoch(digits, monkeypatch):
    X, y = digits
    est = TwoLayerClassifier(hidden_units=8, max_iter=12, early_stopping=True, n_iter_no_change=3,
                             verbose="progress", random_state=0, learning_rate_init=0.05)
    text = _fit_showing_warnings(est, X, y, monkeypatch, io.StringIO())
    best = int(np.argmax(est.validation_scores_)) + 1  # the first best score is the one kept
    assert (f"early stopping: restored the weights of epoch {best} "
            f"(val_accuracy {est.best_validation_score_:.4f})") in text
    assert text.count("val_accuracy") == len(est.validation_scores_) + 1
    if est.n_iter_ < 12:  # stopped early: the reason is on a line of its own
        assert "\nValidation score did not improve more than tol=" in text


def test_regressor_names_its_score_and_lbfgs_counts_iterations(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0])
    est = TwoLayerRegressor(hidden_units=6, max_iter=4, early_stopping=True, verbose="progress",
                            random_state=0)
    text = _fit_showing_warnings(est, X, y, monkeypatch, io.StringIO())
    assert "| val_r2 " in text and "val_accuracy" not in text
    est = TwoLayerRegressor(hidden_units=6, solver="lbfgs", max_iter=5, verbose="progress",
                            random_state=0)
    text = _fit_showing_warnings(est, X, y, monkeypatch, io.StringIO())
    first = r"^iteration 1/5 \[.*\] loss [\d.e+-]+ \| elapsed .*(iteration/s|s/iteration)$"
    assert re.search(first, text, re.M)


def test_the_hook_goes_away_when_a_fit_fails(digits):
    X, y = digits
    before = warnings.showwarning
    est = TwoLayerClassifier(hidden_units=4, max_iter=2, verbose="progress", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the max_iter warning raises
        with pytest.raises(ConvergenceWarning):
            est.fit(X, y)
        assert warnings.showwarning is before


def test_verbose_true_keeps_scikit_learns_lines_on_stdout(digits, capsys):
    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        TwoLayerClassifier(hidden_units=4, max_iter=2, verbose=True, random_state=0).fit(X, y)
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("Iteration 1, loss = ")
    assert err == ""

