"""The one progress display of fastmlp: the estimators' ``verbose='progress'`` and the CLI.

A :class:`Progress` draws what people expect from tqdm: the epoch count out of
the total, a bar, the loss and the validation figures, the elapsed time, the
rate and the ETA, and at the end the epoch early stopping restored. It writes to
stderr (or the stream it is given):

- on a terminal (``stream.isatty()``), one line redrawn in place (``\\r``), at most
  every ``min_interval`` seconds, cut to the terminal's width;
- anywhere else (a log file, a pipe, a notebook's output), one plain line per
  update, so a log reads top to bottom.

While a display is open, :func:`warnings.showwarning` is wrapped so that a warning
(a ``ConvergenceWarning`` at ``max_iter``, say) never lands on the bar's line: the
line is finished first and redrawn below the warning at the next update.

tqdm is not used: it writes ``\\r`` redraws into log files as well (one long line),
starts a monitor thread, and would add a dependency for about a hundred lines.
"""

from __future__ import annotations

import shutil
import sys
import time
import warnings

__all__ = ["NullProgress", "Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``0.42s``, ``12.3s``, ``4:05``, ``1:02:03``: short, like tqdm's times."""
    if seconds != seconds or seconds == float("inf"):  # NaN or inf: unknown
        return "?"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _format_rate(done: int, elapsed: float, unit: str) -> str:
    """``12.5 epoch/s``, or ``3.20 s/epoch`` when slower than one per second (tqdm's rule)."""
    if done <= 0 or elapsed <= 0:
        return f"? {unit}/s"
    rate = done / elapsed
    if rate >= 100:
        return f"{rate:.0f} {unit}/s"
    return f"{rate:.3g} {unit}/s" if rate >= 1 else f"{1 / rate:.3g} s/{unit}"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class NullProgress:
    """A display that shows nothing: what ``verbose`` other than 'progress' gets."""

    def update(self, done, loss, val_score=None, val_loss=None):
        """Do nothing."""

    def note(self, text):
        """Do nothing."""

    def close(self, summary=None):
        """Do nothing."""


class Progress:
    """A progress display for ``total`` epochs (or iterations).

    Parameters
    ----------
    total : int
        Epochs planned (``max_iter``); early stopping may end sooner, so the ETA is
        the time to ``total`` at the rate so far, an upper bound.
    stream : file-like, default=None
        Where to write; ``sys.stderr`` at the time of the call when None.
    unit : str, default='epoch'
        What is counted.
    score_name : str, default='val_score'
        Name of the validation score in the line (``val_accuracy``, ``val_r2``).
    min_interval : float, default=0.1
        Fewest seconds between two redraws on a terminal (every update is written
        as a line elsewhere).
    clock : callable, default=time.perf_counter
        Seconds, for tests.

    The display is open from construction to :meth:`close`; close it in a
    ``finally`` (or use it as a context manager) so the warning hook goes away.
    """

    def __init__(self, total, *, stream=None, unit="epoch", score_name="val_score",
                 min_interval=0.1, clock=time.perf_counter):
        self.total = max(int(total), 1)
        self.stream = sys.stderr if stream is None else stream
        self.tty = _isatty(self.stream)
        self.unit = unit
        self.score_name = score_name
        self.min_interval = min_interval
        self.clock = clock
        self.start = clock()
        self.done = 0
        self._line_open = False  # a redrawn line without its newline yet (terminal only)
        self._width = 0  # length of the line on screen, to blank a longer old one
        self._last_draw = None
        self._pending = None  # the latest update not drawn yet (throttled)
        self._closed = False
        self._first = None  # seconds to the end of the first update
        self._previous_showwarning = warnings.showwarning
        warnings.showwarning = self._showwarning

    # -------------------------------------------------------------- the line
    def line(self, done, loss, val_score=None, val_loss=None, elapsed=None, bar=True):
        """Return the text of one update (no ``\\r``, no newline).

        ``epoch 3/10 [######..............] loss 0.31416 | elapsed 1.20s, ETA 2.10s,
        3.33 epoch/s | val_accuracy 0.9120 val_loss 0.29876``. The rate and the ETA
        leave out the first epoch once there are others: it also holds the start-up
        (Numba compiling or loading its cache, the workspace).
        """
        elapsed = self.clock() - self.start if elapsed is None else elapsed
        width = 20
        filled = min(width, int(width * done / self.total))
        text = f"{self.unit} {done:>{len(str(self.total))}}/{self.total} "
        if bar:
            text += f"[{'#' * filled}{'.' * (width - filled)}] "
        text += f"loss {loss:.5g}"
        n, seconds = done, elapsed
        if done >= 2 and self._first is not None:
            n, seconds = done - 1, elapsed - self._first
        eta = seconds / n * (self.total - done) if n > 0 and seconds > 0 else float("nan")
        text += (f" | elapsed {format_seconds(elapsed)}, ETA {format_seconds(eta)}, "
                 f"{_format_rate(n, seconds, self.unit)}")
        if val_score is not None or val_loss is not None:
            text += " |"
        if val_score is not None:
            text += f" {self.score_name} {val_score:.4f}"
        if val_loss is not None:
            text += f" val_loss {val_loss:.5g}"
        return text

    def update(self, done, loss, val_score=None, val_loss=None):
        """Show ``done`` epochs of ``total``, the last loss and validation figures."""
        now = self.clock()
        self.done = done
        if self._first is None:
            self._first = now - self.start
        args = (done, loss, val_score, val_loss, now - self.start)
        if not self.tty:
            self._write(self.line(*args) + "\n")
            return
        due = (self._last_draw is None or now - self._last_draw >= self.min_interval
               or done >= self.total)
        if due:
            self._redraw(args)
            self._last_draw = now
            self._pending = None
        else:
            self._pending = args

    def note(self, text):
        """Write ``text`` on a line of its own (below the bar), e.g. why training stopped."""
        self._flush_pending()
        self._end_line()
        self._write(text.rstrip("\n") + "\n")

    def close(self, summary=None):
        """Finish the line, write ``summary`` (if any) below it, remove the warning hook."""
        if self._closed:
            return
        self._flush_pending()
        self._end_line()
        if summary:
            self._write(summary.rstrip("\n") + "\n")
        self._closed = True
        if warnings.showwarning == self._showwarning:  # unless someone replaced it since
            warnings.showwarning = self._previous_showwarning

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ----------------------------------------------------------------- output
    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr: training goes on
            pass

    def _redraw(self, args):
        # a line that wraps cannot be redrawn: the bar goes first, then the tail
        columns = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)
        text = self.line(*args)
        if len(text) > columns:
            text = self.line(*args, bar=False)[:columns]
        pad = " " * max(self._width - len(text), 0)
        self._write("\r" + text + pad)
        self._width = len(text)
        self._line_open = True

    def _flush_pending(self):
        if self._pending is not None:
            self._redraw(self._pending)
            self._pending = None

    def _end_line(self):
        if self._line_open:
            self._write("\n")
            self._line_open = False
            self._width = 0

    def _showwarning(self, message, category, filename, lineno, file=None, line=None):
        # the warning starts on a line of its own; the next update draws the bar below it
        self._end_line()
        self._previous_showwarning(message, category, filename, lineno, file, line)
