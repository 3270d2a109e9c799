"""Threads, processes and seeds: no abort, results equal to serial calls, same seed same model.

Scenarios that used to abort the whole process run in a child process, so a
regression fails its test instead of killing the test run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits

from fastmlp import TwoLayerClassifier

# warnings.catch_warnings is process-wide state, not a thing threads can each hold
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# 600 x 784 with batch 200: 15.7M multiply-adds a batch, the path that runs BLAS
# with the process's thread count (kernel_options); digits takes the one-thread path.
LARGE = (600, 784)


def _large_problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=LARGE).astype(np.float32)
    y = rng.integers(0, 10, LARGE[0])
    return X, y


def _digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def _fit(X, y, **kw):
    return TwoLayerClassifier(max_iter=3, random_state=0, **kw).fit(X, y)


def _run_child(code, timeout=300, env=None):
    """Run ``code`` in a fresh interpreter; return the completed process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=timeout, env=env,
    )


def _in_threads(jobs):
    """Run each ``(name, callable)`` in its own thread at once; return ``{name: result}``."""
    results, errors = {}, []
    start = threading.Barrier(len(jobs), timeout=60)

    def run(name, job):
        try:
            start.wait()
            results[name] = job()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((name, e))

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    return results


def test_eight_threads_of_mixed_calls_equal_the_serial_calls():
    Xl, yl = _large_problem()
    Xd, yd = _digits()
    shared = _fit(Xl, yl)
    small_shared = _fit(Xd, yd, solver="sgd")

    def weights(clf):
        return [a.copy() for a in clf.coefs_ + clf.intercepts_]

    def partial(X, y):
        clf = TwoLayerClassifier(random_state=1)
        for _ in range(3):
            clf.partial_fit(X, y, classes=np.arange(10))
        return weights(clf)

    jobs = [
        ("fit large", lambda: weights(_fit(Xl, yl))),
        ("fit digits sgd", lambda: weights(_fit(Xd, yd, solver="sgd"))),
        ("fit digits lbfgs", lambda: weights(_fit(Xd, yd, solver="lbfgs"))),
        ("partial_fit large", lambda: partial(Xl, yl)),
        ("predict_proba shared", lambda: [shared.predict_proba(Xl) for _ in range(5)]),
        ("predict rows", lambda: [shared.predict(Xl[i:i + 37]) for i in range(0, 600, 37)]),
        ("score small", lambda: [small_shared.score(Xd, yd) for _ in range(20)]),
        ("predict_proba small", lambda: [small_shared.predict_proba(Xd[:100]) for _ in range(20)]),
    ]
    threaded = _in_threads(jobs)
    for name, job in jobs:  # the same calls, one after another
        serial = job()
        got = threaded[name]
        assert len(got) == len(serial), name
        for a, b in zip(got, serial, strict=True):
            assert_array_equal(a, b, err_msg=name)


def test_concurrent_partial_fit_on_one_estimator_takes_turns():
    X, y = _large_problem(1)
    shared = TwoLayerClassifier(random_state=0)
    shared.partial_fit(X, y, classes=np.arange(10))
    _in_threads([(i, lambda: [shared.partial_fit(X, y) for _ in range(3)]) for i in range(4)])
    # each call shuffles X the same way (an int random_state), so 1 + 12 calls in
    # any order give the weights of 13 serial calls, if none saw another's half-update
    serial = TwoLayerClassifier(random_state=0)
    for _ in range(13):
        serial.partial_fit(X, y, classes=np.arange(10))
    assert shared.t_ == serial.t_ == 13 * X.shape[0]  # samples seen, over all calls
    for a, b in zip(shared.coefs_ + shared.intercepts_, serial.coefs_ + serial.intercepts_,
                    strict=True):
        assert_array_equal(a, b)


def test_grid_search_with_threads_equals_the_serial_search():
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    X, y = _large_problem(2)
    grid = {"alpha": [1e-4, 1e-2], "hidden_units": [20, 40]}

    def search(n_jobs):
        gs = GridSearchCV(TwoLayerClassifier(max_iter=2, random_state=0), grid, cv=2,
                          n_jobs=n_jobs)
        with parallel_backend("threading"):
            gs.fit(X, y)
        return gs.cv_results_["mean_test_score"]

    assert_array_equal(search(2), search(1))


def test_parallel_kernels_from_two_threads_take_turns_instead_of_aborting():
    # run_epoch(parallel=True) launches Numba parallel regions; two threads
    # launching them at once used to abort the process on the workqueue layer
    proc = _run_child("""
        import threading, numpy as np
        from fastmlp import solvers as S
        rng = np.random.default_rng(0)
        n, D, H, C = 400, 300, 64, 5
        X = rng.normal(size=(n, D)); Y = np.eye(C)[rng.integers(0, C, n)]; sw = np.ones(n)
        def params():
            r = np.random.default_rng(1)
            return (r.normal(size=(D, H)) * .1, np.zeros(H), r.normal(size=(H, C)) * .1,
                    np.zeros(C))
        def epochs(use_blas, out):
            p = params(); st = S.init_optimizer_state(p, "sgd")
            ws = S.Workspace(n, D, H, C, 50, np.float64)
            for e in range(5):
                S.run_epoch(X, Y, sw, p, st, ws, learning_rate=0.01, seed=e,
                            use_blas=use_blas, parallel=True)
            out.append(p[0])
        ref = []
        epochs(False, ref)
        outs = [[] for _ in range(4)]
        ts = [threading.Thread(target=epochs, args=(i % 2 == 0, outs[i])) for i in range(4)]
        [t.start() for t in ts]; [t.join() for t in ts]
        assert all(np.allclose(o[0], ref[0], rtol=1e-9, atol=1e-12) for o in outs)
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_fork_after_a_parallel_call():
    proc = _run_child("""
        import multiprocessing, numpy as np
        from fastmlp import solvers as S
        rng = np.random.default_rng(0)
        n, D, H, C = 200, 50, 16, 3
        X = rng.normal(size=(n, D)); Y = np.eye(C)[rng.integers(0, C, n)]; sw = np.ones(n)
        def epoch(_=None):
            r = np.random.default_rng(1)
            p = (r.normal(size=(D, H)) * .1, np.zeros(H), r.normal(size=(H, C)) * .1,
                 np.zeros(C))
            st = S.init_optimizer_state(p, "adam")
            ws = S.Workspace(n, D, H, C, 32, np.float64)
            S.run_epoch(X, Y, sw, p, st, ws, optimizer="adam", parallel=True, use_blas=False)
            return p[0]
        parent = epoch()
        with multiprocessing.get_context("fork").Pool(2) as pool:
            children = pool.map(epoch, range(2))
        assert all(np.allclose(c, parent, rtol=1e-12, atol=1e-14) for c in children)
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


_FIT_AND_HASH = """
    import hashlib, sys, warnings
    import numpy as np
    from fastmlp import TwoLayerClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 784)).astype(np.float32); y = rng.integers(0, 10, 2000)
    warnings.simplefilter("ignore")
    clf = TwoLayerClassifier(max_iter=3, random_state=0).fit(X, y)
    h = hashlib.sha256()
    for a in clf.coefs_ + clf.intercepts_:
        h.update(a.tobytes())
    print(h.hexdigest())
"""

_BUSY = """
    import numpy as np, time
    a = np.random.default_rng(0).normal(size=(400, 400))
    end = time.monotonic() + 120
    while time.monotonic() < end:
        a = np.tanh(a @ a.T / 400)
"""


@pytest.mark.slow
def test_same_seed_same_weights_in_fresh_processes_even_under_load():
    def fit_hash():
        proc = _run_child(_FIT_AND_HASH)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.strip()

    quiet = [fit_hash(), fit_hash()]
    busy = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_BUSY)])
            for _ in range(os.cpu_count() or 2)]
    try:
        loaded = fit_hash()
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert quiet[0] == quiet[1] == loaded
    assert len(loaded) == len(hashlib.sha256().hexdigest())


def test_the_threaded_predict_benchmark_checks_every_result():
    # bench.threaded_predict (the report's row, benchmarks/threaded_predict.py) as a
    # smoke test: a few calls of 1-100 rows, each threaded result compared with the
    # serial one inside it
    from fastmlp import bench

    out = bench.threaded_predict("digits", threads=3, calls=30, rows=0, repeats=1)
    assert out["calls"] == 90 and out["speedup"] > 0


def test_a_callback_that_refits_its_own_estimator_gets_an_error_not_a_deadlock():
    X, y = _digits()
    clf = TwoLayerClassifier(max_iter=3, random_state=0,
                             callbacks=[lambda est, info: est.partial_fit(X, y)])
    done = []

    def fit():
        try:
            clf.fit(X, y)
        except RuntimeError as e:
            done.append(str(e))

    t = threading.Thread(target=fit, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the fit waits for itself"
    assert done and "inside its own fit" in done[0]
    assert not hasattr(clf, "coefs_")  # rolled back: nothing half-fitted
