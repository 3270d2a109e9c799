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
from collections.abc import Iterator

_LIBRARIES: list | None = None


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


@contextlib.contextmanager
def single_blas_thread(enabled: bool = True) -> Iterator[None]:
    """Run the block with one BLAS thread (and restore the counts after it).

    With ``enabled=False`` the block runs unchanged.
    """
    if not enabled:
        yield
        return
    libraries = _blas_libraries()
    previous = [lib.get_num_threads() for lib in libraries]
    for lib in libraries:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libraries, previous, strict=True):
            lib.set_num_threads(n)
