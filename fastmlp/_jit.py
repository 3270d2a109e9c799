"""The one place that sets Numba options for fastmlp.

Every compiled function in the package is built by :func:`jit` or
:func:`serial_and_parallel`; no other module passes ``fastmath=`` or calls
``numba.njit`` with options of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numba

# fastmath without ``nnan``/``ninf``: NaN and inf still propagate, so bad data
# (or a diverging learning rate) is detected instead of silently optimised away.
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

JIT_OPTIONS = {
    "cache": True,  # a second process loads machine code instead of compiling
    "fastmath": set(FASTMATH),
    "error_model": "numpy",  # x / 0 gives inf/nan like NumPy, no exception check
    "nogil": True,
    "boundscheck": False,
}


def jit(func: Callable | None = None, *, parallel: bool = False):
    """Compile ``func`` with the package's Numba options.

    Usable as ``@jit`` or ``@jit(parallel=True)``.
    """
    if func is None:
        return lambda f: numba.njit(**JIT_OPTIONS, parallel=parallel)(f)
    return numba.njit(**JIT_OPTIONS, parallel=parallel)(func)


def serial_and_parallel(func: Callable):
    """Compile one loop twice: serially and with ``prange`` running in threads.

    Returns ``(serial, parallel)``. Write the loop once with ``numba.prange`` on the
    batch axis; in the serial build ``prange`` is an ordinary ``range``.
    """
    return jit(func, parallel=False), jit(func, parallel=True)


def max_threads() -> int:
    """Return the number of threads Numba was started with."""
    return numba.config.NUMBA_NUM_THREADS


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[int]:
    """Bound the threads of Numba's parallel regions inside a ``with`` block.

    ``None`` keeps the current setting. Negative values count back from the
    maximum as in joblib: ``-1`` is all threads, ``-2`` all but one.
    """
    previous = numba.get_num_threads()
    if n is None:
        yield previous
        return
    limit = max_threads()
    wanted = n if n > 0 else limit + 1 + n
    if n == 0 or wanted < 1:
        raise ValueError(f"n_threads must be a positive int, -1 or None; got {n!r}")
    wanted = min(wanted, limit)
    numba.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        numba.set_num_threads(previous)
