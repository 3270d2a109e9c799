"""The thread count of the BLAS that fastmlp's compiled code calls.

Numba's ``np.dot`` runs scipy's BLAS (``scipy.linalg.cython_blas``), which
brings its own thread pool. On a small problem (digits: 200 x 64 x 100 per
batch) waking a second BLAS thread for every product costs more than it
saves: a digits epoch took 1.0 ms with one BLAS thread and 1.4 ms with two
on these 2-core machines. :func:`single_blas_thread` runs a block with one.

Setting the count goes straight to the libraries' ``set_num_threads`` (about
5 us) through threadpoolctl's controllers, found once per process: building a
``threadpool_limits`` takes milliseconds, too much to pay per ``partial_fit``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_LIBRARIES: list | None = None
# Fits in several Python threads share the process's BLAS: the first to enter
# sets one thread and remembers the counts, the last to leave restores them.
_LOCK = threading.Lock()
_DEPTH = 0
_SAVED: list = []


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


def _restore() -> None:
    for lib, n in _SAVED:
        lib.set_num_threads(n)
    _SAVED.clear()


@contextlib.contextmanager
def single_blas_thread(enabled: bool = True) -> Iterator[None]:
    """Run the block with one BLAS thread (and restore the counts after it).

    With ``enabled=False`` the block runs unchanged. Nested and concurrent
    blocks (fits in several threads) restore the counts when the last one ends.
    """
    global _DEPTH
    if not enabled:
        yield
        return
    libraries = _blas_libraries()
    with _LOCK:
        _DEPTH += 1
        if _DEPTH == 1:
            try:
                for lib in libraries:
                    _SAVED.append((lib, lib.get_num_threads()))
                    lib.set_num_threads(1)
            except BaseException:
                _restore()
                _DEPTH -= 1
                raise
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                _restore()
