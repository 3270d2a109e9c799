"""The thread count of the BLAS that fastmlp's compiled code calls.

Numba's ``np.dot`` runs scipy's BLAS (``scipy.linalg.cython_blas``), which
brings its own thread pool. The estimators run every product with one BLAS
thread: a small problem gains nothing from a second one, and a large one is
split into shares of rows that each run on their own thread
(``solvers.kernel_options``), each share calling one-thread BLAS.

Two facts shape this module:

- OpenBLAS's thread count is one number for the whole process (set in one
  thread, it is what every thread sees).
- The count changes the rounding: an Adam epoch on 2,000 x 784 rows gave
  weights up to 6e-7 apart with one BLAS thread and with two.

So a count is a *mode* that every fastmlp call inside :func:`blas_threads`
runs under, and calls that want different modes never overlap: a call waits
until the calls of another mode (in other Python threads) have ended, while
calls of the same mode run together. A fit then computes the same weights
whether other threads are fitting or predicting beside it or not. The wait
is per compiled call (one epoch, one prediction), so a long fit in one thread
holds a prediction in another for at most an epoch.

Setting the count goes straight to the libraries' ``set_num_threads`` (about
5 us) through threadpoolctl's controllers, found once per process: building a
``threadpool_limits`` takes milliseconds, too much to pay per ``partial_fit``.
The counts a block changed are restored when the last block ends.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Iterator

_LIBRARIES: list | None = None


class _Modes:
    """Bookkeeping of the open blocks: their common count and how many there are."""

    def __init__(self):
        self.cond = threading.Condition(threading.Lock())
        self.count = None  # the count the open blocks run with; None: the process's own
        self.active = 0  # open blocks, in every thread
        self.queue: collections.deque = collections.deque()  # (ticket, count) of the waiters
        self.saved: list = []  # (library, count) to restore when the last block ends
        self.local = threading.local()  # the count this thread's open block runs with


_MODES = _Modes()


def _after_fork_in_child() -> None:
    # A fork copies the lock as it was: held, perhaps, by a thread the child does
    # not have. The child has no open block, so it starts with fresh bookkeeping,
    # but the BLAS counts are as the parent's open blocks set them: the child
    # keeps the counts to restore and the count in force, so its next block of
    # another count (or None) puts the process's own counts back.
    global _MODES
    old = _MODES
    _MODES = _Modes()
    _MODES.saved = list(old.saved)
    _MODES.count = old.count


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _blas_libraries() -> list:
    """threadpoolctl controllers of every BLAS loaded, scipy's included (cached)."""
    global _LIBRARIES
    if _LIBRARIES is None:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba calls: load it first)
        from threadpoolctl import ThreadpoolController

        _LIBRARIES = [
            lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"
        ]
    return _LIBRARIES


def _setter(lib):
    # threadpoolctl's OpenBLAS controller obeys only the first Python thread that
    # sets a count and silently ignores the others (its guard against threads
    # fighting over one pool); blas_threads is that guard here, so it calls the
    # library's own setter, which acts from any thread. (Measured: a count of 1
    # set through the controller from a worker thread left OpenBLAS on 2.)
    return getattr(lib, "_real_set_num_threads", lib.set_num_threads)


def _set_counts(modes: _Modes, n: int | None) -> None:
    """Make ``n`` the count of every BLAS (``None``: the counts saved before)."""
    if n is None:
        for lib, count in modes.saved:
            _setter(lib)(count)
        modes.saved.clear()
        return
    if not modes.saved:
        modes.saved.extend((lib, lib.get_num_threads()) for lib in _blas_libraries())
    for lib, _ in modes.saved:
        _setter(lib)(n)


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` BLAS threads; ``None``: the process's own count.

    Blocks with different ``n`` never overlap in time: a block waits until the
    open blocks of another count, in other threads, have ended. Blocks of one
    count share it. Waiters are served first come, first served: once a block
    of another count waits, new blocks of the current count queue behind it,
    so the open ones drain and no count starves.
    A block opened inside another in the same thread must ask for the same
    count (the outer one holds it: waiting for a different one would wait for
    itself).
    """
    modes = _MODES
    held = getattr(modes.local, "count", False)
    if held is not False:
        if held != n:
            raise RuntimeError(
                f"a BLAS block for {n} threads inside one for {held} in the same thread"
            )
        yield
        return
    _enter(modes, n)
    try:
        modes.local.count = n
        yield
    finally:
        modes.local.__dict__.pop("count", None)
        _leave(modes)


def _enter(modes: _Modes, n: int | None) -> None:
    """Wait for a turn of count ``n``, then open a block (exception-safe).

    Waiters queue first come, first served: a block joins the open ones of its
    count only while nobody waits; otherwise it waits for its place at the head
    of the queue (then it may open when no block is open, or join open blocks
    of its own count).
    """
    with modes.cond:
        if modes.queue or (modes.active and modes.count != n):
            ticket = object()
            modes.queue.append((ticket, n))
            try:
                while not (modes.queue[0][0] is ticket
                           and (modes.active == 0 or modes.count == n)):
                    modes.cond.wait()
            except BaseException:
                # Ctrl-C while waiting: leave no phantom waiter behind
                modes.queue.remove((ticket, n))
                modes.cond.notify_all()
                raise
            modes.queue.popleft()
            modes.cond.notify_all()  # the next in the queue may join this count
        if modes.active == 0 and modes.count != n:
            try:
                _set_counts(modes, n)
            except BaseException:
                modes.cond.notify_all()
                raise
            modes.count = n
        modes.active += 1


def _leave(modes: _Modes) -> None:
    """Close a block; the last one out restores the counts and wakes the waiters."""
    with modes.cond:
        modes.active -= 1
        try:
            if modes.active == 0 and modes.count is not None:
                modes.count = None
                _set_counts(modes, None)
        finally:
            if modes.active == 0:
                modes.cond.notify_all()


# OpenBLAS runs a product of at most this many multiply-adds (m n k) on the
# calling thread whatever its count (its interface's GEMM_MULTITHREAD_THRESHOLD
# of 4 times 65,536), so its result cannot depend on the count: a one-row
# prediction need not wait for a count. tests/test_blas.py checks this of the
# installed BLAS.
ONE_THREAD_WORK = 4 * 65536


def counts_matter(work: int) -> bool:
    """Whether a product of ``work`` multiply-adds may round differently with other counts."""
    if work > ONE_THREAD_WORK:
        return True
    return any(lib.internal_api != "openblas" for lib in _blas_libraries())


def single_blas_thread(enabled: bool = True):
    """Run the block with one BLAS thread (a :func:`blas_threads` block); or as it is."""
    return blas_threads(1) if enabled else contextlib.nullcontext()
