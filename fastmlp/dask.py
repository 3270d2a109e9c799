"""Dask workers that are ready at once: load (or compile) fastmlp's kernels before the work.

fastmlp's compiled code is cached on disk by Numba (in ``NUMBA_CACHE_DIR`` when it is
set, else in ``fastmlp/__pycache__``). A Dask worker that imports fastmlp loads that
machine code instead of compiling it, but only when its first fit comes, and a
worker on a machine with an empty cache compiles then (15 s or more, inside your
first task). Warm the workers once, right after the cluster starts::

    from distributed import Client
    import fastmlp.dask

    client = Client(cluster)
    fastmlp.dask.warm_up(client)                      # the workers there now
    client.register_plugin(fastmlp.dask.WarmUp())     # and every worker that joins later

:func:`warm_up` runs a tiny fit on each worker (``client.run``); the first worker
goes alone, so on one machine it fills the cache and the others load it instead of
compiling the same code at the same time. :class:`WarmUp` is a
``distributed.WorkerPlugin`` doing the same in each worker's ``setup``, so workers
restarted by their nanny or added by an adaptive cluster are warmed too.
Give the workers a persistent cache directory so that a new worker finds it warm,
e.g. ``LocalCluster(env={"NUMBA_CACHE_DIR": "/var/cache/fastmlp-numba"})`` or the
same variable in the environment of ``dask worker``.

This module imports ``distributed`` only when :class:`WarmUp` or :func:`warm_up`
is used; ``import fastmlp`` never imports Dask.
"""

from __future__ import annotations

import os
import time

__all__ = ["WarmUp", "warm_up", "warm_up_local"]  # noqa: F822 (WarmUp: module __getattr__)

DEFAULT_DTYPES = ("float32", "float64")


def _dtype_names(dtypes) -> tuple:
    """``dtypes`` as a tuple of 'float32'/'float64': one dtype (a string too) or a sequence.

    A single string is one dtype, not a sequence of characters.
    """
    import numpy as np

    if isinstance(dtypes, (str, bytes, type, np.dtype)):
        dtypes = (dtypes,)
    try:
        items = tuple(dtypes)
    except TypeError:
        raise ValueError(f"dtypes must be a working dtype or a sequence of them "
                         f"('float32', 'float64'), got {dtypes!r}") from None
    names = []
    for d in items:
        try:
            name = np.dtype(d).name
        except TypeError:
            name = None
        if name not in DEFAULT_DTYPES:
            raise ValueError(f"dtypes: {d!r} is not a working dtype (expected 'float32' or "
                             "'float64')")
        names.append(name)
    if not names:
        raise ValueError("dtypes is empty: give 'float32', 'float64' or both")
    return tuple(names)


def warm_up_local(dtypes=DEFAULT_DTYPES) -> dict:
    """Run a tiny fit per working dtype in this process; return what it took.

    Each dtype compiles (or loads from the cache) its own machine code, so warm
    the dtypes your estimators use (``TwoLayerClassifier(dtype=...)``). The fits
    cover both stochastic solvers, the softmax and the logistic output, and
    ``predict_proba``.

    Parameters
    ----------
    dtypes : {'float32', 'float64'} or a sequence of them, default=('float32', 'float64')
        Working dtypes to warm (a single string is one dtype).

    Returns
    -------
    dict
        ``seconds`` (wall time of the warm-up), ``compiled`` (how many
        functions Numba compiled rather than loaded from its cache: 0 when the
        cache was warm), ``pid``, ``numba_cache_dir`` (``NUMBA_CACHE_DIR``, or
        None for the package's ``__pycache__``) and ``dtypes``.
    """
    import warnings

    import numpy as np
    from numba.core import event

    from .classifier import TwoLayerClassifier

    dtypes = _dtype_names(dtypes)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.random((40, 5))
    y = np.arange(40) % 3
    with event.install_recorder("numba:compile") as compiled:
        for dtype in dtypes:
            for solver in ("sgd", "adam"):
                for labels in (y, y % 2):  # softmax, then one logistic unit
                    clf = TwoLayerClassifier(hidden_units=4, solver=solver, max_iter=2,
                                             dtype=dtype, random_state=0)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # ConvergenceWarning: 2 epochs
                        clf.fit(X, labels)
                    clf.partial_fit(X, labels)
                    clf.predict_proba(X)
    return {
        "seconds": time.perf_counter() - start,
        # functions Numba compiled here (not loaded from the cache): 0 on a warm cache
        "compiled": sum(1 for _, e in compiled.buffer if e.is_start),
        "pid": os.getpid(),
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR") or None,
        "dtypes": tuple(dtypes),
    }


def warm_up(client=None, dtypes=DEFAULT_DTYPES, *, timeout=600) -> dict:
    """Warm fastmlp's compiled code on every worker of a Dask cluster.

    A task on each worker (pinned there, in its thread pool, so its event loop
    stays responsive) runs :func:`warm_up_local`. The first worker goes alone,
    then all the others at once: workers of one machine that share a cache load
    what the first one compiled instead of compiling it side by side.

    Parameters
    ----------
    client : distributed.Client, default=None
        The client of the cluster; None takes the current default client.
    dtypes : {'float32', 'float64'} or a sequence of them, default=('float32', 'float64')
        Working dtypes to warm.
    timeout : float, default=600
        Seconds to wait for each of the two rounds (a cold compile takes tens of
        seconds per dtype); ``TimeoutError`` past it.

    Returns
    -------
    dict
        Worker address -> the dict :func:`warm_up_local` returned there.
    """
    from distributed import default_client, wait

    if client is None:
        client = default_client()
    dtypes = _dtype_names(dtypes)
    workers = sorted(client.scheduler_info(**_all_workers(client))["workers"])
    results = {}
    for group in (workers[:1], workers[1:]):
        futures = {
            w: client.submit(warm_up_local, dtypes, workers=[w], allow_other_workers=False,
                             pure=False, key=f"fastmlp-warm-up-{w}")
            for w in group
        }
        if not futures:
            continue
        try:
            wait(list(futures.values()), timeout=timeout)  # TimeoutError past it
            results.update({w: f.result() for w, f in futures.items()})  # a task's error
        finally:
            for f in futures.values():
                f.release()
    return results


def _all_workers(client) -> dict:
    # distributed >= 2025.4 lists only the first few workers unless asked for all
    import inspect

    params = inspect.signature(client.scheduler_info).parameters
    return {"n_workers": -1} if "n_workers" in params else {}


_WARMUP_CLASS = None


def _warm_up_class():
    global _WARMUP_CLASS
    if _WARMUP_CLASS is None:
        from distributed import WorkerPlugin

        class WarmUp(WorkerPlugin):
            """A ``distributed.WorkerPlugin`` that warms fastmlp on each worker at its start.

            ``client.register_plugin(WarmUp())`` runs :func:`warm_up_local` on every
            worker present (``register_plugin`` returns once they are done) and on
            every worker that joins later, before it takes tasks.

            Parameters
            ----------
            dtypes : {'float32', 'float64'} or a sequence of them, default=('float32', 'float64')
                Working dtypes to warm.
            """

            name = "fastmlp-warm-up"
            idempotent = True

            def __init__(self, dtypes=DEFAULT_DTYPES):
                self.dtypes = _dtype_names(dtypes)
                self.result = None

            async def setup(self, worker):
                # in a thread: the worker's event loop keeps answering meanwhile
                import asyncio

                loop = asyncio.get_running_loop()
                self.result = await loop.run_in_executor(None, warm_up_local, self.dtypes)

        WarmUp.__module__ = __name__
        _WARMUP_CLASS = WarmUp
    return _WARMUP_CLASS


def __getattr__(name):
    # WarmUp subclasses distributed.WorkerPlugin: built on first use, so that this
    # module imports without Dask (and pickles of WarmUp find it by name).
    if name == "WarmUp":
        return _warm_up_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
