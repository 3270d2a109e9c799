"""The data-parallel paths: every batch split into shares of rows run side by side.

Each is checked against the one-thread path (same arithmetic, sums in another
order, so to float tolerance), and against itself: the same shares give the
same bits however many times they run. Both at 1 and 2 Numba threads, the shares
count being what fixes the result, not the threads that run them.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp import _jit, reference
from fastmlp import solvers as S
from fastmlp import solvers_sparse as SS

DTYPES = (np.float32, np.float64)
TOL = {np.float32: dict(rtol=2e-4, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-13)}
# (n, D, H, C, batch): batches that don't divide n, a batch smaller than the shares,
# widths below one cache line, a single class pair
SHAPES = [(1000, 50, 33, 5, 200), (37, 7, 3, 2, 10), (5, 100, 40, 3, 200), (999, 31, 17, 4, 64),
          (3, 1, 1, 2, 2)]


def _problem(n, D, H, C, dt, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D)).astype(dt)
    Y = np.eye(C, dtype=dt)[rng.integers(0, C, n)]
    sw = rng.uniform(0.5, 2.0, n).astype(dt)
    params = ((rng.normal(size=(D, H)) * 0.3).astype(dt), (rng.normal(size=H) * 0.1).astype(dt),
              (rng.normal(size=(H, C)) * 0.3).astype(dt), (rng.normal(size=C) * 0.1).astype(dt))
    return X, Y, sw, params


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("threads", [1, 2])
def test_shared_epoch_equals_the_one_thread_epoch(dt, shape, optimizer, threads):
    n, D, H, C, batch = shape
    X, Y, sw, p0 = _problem(n, D, H, C, dt)
    kw = dict(optimizer=optimizer, learning_rate=0.05, momentum=0.9, nesterov=True, alpha=1e-2,
              seed=3)
    results = {}
    for T in (1, 2, 3):
        runs = []
        for _ in range(2):  # twice: the same shares give the same bits
            p = tuple(a.copy() for a in p0)
            st = S.init_optimizer_state(p, optimizer)
            ws = S.Workspace(n, D, H, C, batch, dt)
            with _jit.num_threads(threads):
                losses = [S.run_epoch(X, Y, sw, p, st, ws, step=2 * e, n_shares=T, **kw)
                          for e in range(2)]
            runs.append((losses, p, st))
        for a, b in zip(runs[0][1] + runs[0][2], runs[1][1] + runs[1][2], strict=True):
            assert_array_equal(a, b)
        assert runs[0][0] == runs[1][0]
        results[T] = runs[0]
    for T in (2, 3):
        assert_allclose([x[0] for x in results[T][0]], [x[0] for x in results[1][0]], **TOL[dt])
        assert [x[1] for x in results[T][0]] == [x[1] for x in results[1][0]]  # steps
        for a, b in zip(results[T][1], results[1][1], strict=True):
            assert_allclose(a, b, **TOL[dt])


@pytest.mark.parametrize("dt", DTYPES)
def test_shared_epoch_without_shuffle_reads_x_in_place(dt):
    X, Y, sw, p0 = _problem(300, 20, 8, 3, dt)
    out = {}
    for T in (1, 2):
        p = tuple(a.copy() for a in p0)
        st = S.init_optimizer_state(p, "sgd")
        ws = S.Workspace(300, 20, 8, 3, 64, dt)
        out[T] = S.run_epoch(X, Y, sw, p, st, ws, shuffle=False, learning_rate=0.1, n_shares=T), p
        assert not np.shares_memory(ws.buffers[0], X)
    assert_allclose(out[2][0][0], out[1][0][0], **TOL[dt])
    for a, b in zip(out[2][1], out[1][1], strict=True):
        assert_allclose(a, b, **TOL[dt])


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("output", ["softmax", "logistic", "identity", "exp"])
def test_shared_loss_and_grads_match_the_reference(dt, output):
    X, Y, sw, params = _problem(301, 40, 21, 4, dt)
    ws = S.Workspace(301, 40, 21, 4, 301, dt, full_batch=True)
    loss1, g1 = S.loss_and_grads(X, Y, sw, params, ws, alpha=0.01, output=output)
    g1 = [g.copy() for g in g1]
    for T in (2, 3):
        lossT, gT = S.loss_and_grads(X, Y, sw, params, ws, alpha=0.01, output=output,
                                     n_shares=T)
        assert_allclose(lossT, loss1, **TOL[dt])
        for a, b in zip(gT, g1, strict=True):
            assert_allclose(a, b, **TOL[dt])
    if output == "softmax" and dt is np.float64:
        ref = reference.forward_backward(X, Y, *params, alpha=0.01, sample_weight=sw)
        lossT, gT = S.loss_and_grads(X, Y, sw, params, ws, alpha=0.01, n_shares=2)
        assert_allclose(lossT, ref["loss"], rtol=1e-12)
        for g, name in zip(gT, ("dW1", "db1", "dW2", "db2"), strict=True):
            assert_allclose(g, ref[name], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("output", ["softmax", "logistic", "identity", "exp"])
def test_shared_prediction_equals_the_one_thread_prediction(dt, output):
    X, _, _, params = _problem(301, 40, 21, 4, dt)
    P1 = S.forward_proba(X, params, output=output)
    labels1 = S.forward_proba(X, params, output=output, argmax=True)
    for T in (2, 3, 7, 400):
        for block in (1, 50, 1024):
            PT = S.forward_proba(X, params, output=output, n_shares=T, block=block)
            assert_allclose(PT, P1, **TOL[dt])
            labels = S.forward_proba(X, params, output=output, argmax=True, n_shares=T,
                                     block=block)
            assert_array_equal(labels, labels1)
    bad = X.copy()
    bad[200, 3] = np.inf
    assert S.forward_proba(bad, params, check_finite=True, n_shares=2) is None
    assert S.forward_proba(X, params, check_finite=True, n_shares=2).shape == (301, 4)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("shape", [(500, 300, 20, 4, 64, 0.05), (37, 40, 3, 2, 10, 0.2),
                                   (300, 1000, 33, 5, 200, 0.01)])
def test_sparse_epoch_in_threads_equals_the_one_thread_epoch(dt, lazy, optimizer, shape):
    n, D, H, C, batch, density = shape
    Xs = sp.random(n, D, density=density, format="csr", random_state=1, dtype=dt)
    _, Y, sw, p0 = _problem(n, D, H, C, dt)
    kw = dict(optimizer=optimizer, learning_rate=0.05, momentum=0.9, nesterov=True, alpha=1e-2,
              seed=5, lazy=lazy)
    results = {}
    for T in (1, 2, 3):
        runs = []
        for _ in range(2):
            p = tuple(a.copy() for a in p0)
            st = S.init_optimizer_state(p, optimizer)
            ws = SS.SparseWorkspace(n, D, H, C, batch, dt, lazy=lazy)
            losses = [SS.run_epoch_sparse(Xs.data, Xs.indices, Xs.indptr, Y, sw, p, st, ws,
                                          parallel=T > 1, n_shares=T, step=2 * e, **kw)
                      for e in range(2)]
            runs.append((losses, p))
        for a, b in zip(runs[0][1], runs[1][1], strict=True):
            assert_array_equal(a, b)
        results[T] = runs[0]
    # lazy Adam in threads builds the touched rows' gradient before the step, the
    # one-thread path inside it: Adam's m / sqrt(v) magnifies that rounding where
    # a gradient is near zero
    tol = dict(rtol=1e-3, atol=3e-5) if (lazy and optimizer == "adam" and dt is np.float32) \
        else TOL[dt]
    for T in (2, 3):
        assert_allclose([x[0] for x in results[T][0]], [x[0] for x in results[1][0]], **tol)
        for a, b in zip(results[T][1], results[1][1], strict=True):
            assert_allclose(a, b, **tol)


@pytest.mark.parametrize("dt", DTYPES)
def test_sparse_prediction_and_gradients_in_threads(dt):
    Xs = sp.random(300, 1000, density=0.01, format="csr", random_state=1, dtype=dt)
    _, Y, sw, params = _problem(300, 1000, 33, 5, dt)
    P1 = SS.forward_proba_sparse(Xs.data, Xs.indices, Xs.indptr, params)
    P2 = SS.forward_proba_sparse(Xs.data, Xs.indices, Xs.indptr, params, parallel=True,
                                 n_shares=2, block=50)
    assert_allclose(P2, P1, **TOL[dt])
    ws = SS.SparseWorkspace(300, 1000, 33, 5, 300, dt, full_batch=True)
    l1, g1 = SS.loss_and_grads_sparse(Xs.data, Xs.indices, Xs.indptr, Y, sw, params, ws,
                                      alpha=0.01)
    g1 = [g.copy() for g in g1]
    l2, g2 = SS.loss_and_grads_sparse(Xs.data, Xs.indices, Xs.indptr, Y, sw, params, ws,
                                      alpha=0.01, parallel=True, n_shares=2)
    assert_allclose(l2, l1, **TOL[dt])
    for a, b in zip(g2, g1, strict=True):
        assert_allclose(a, b, **TOL[dt])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("sparse", [False, True])
def test_estimator_threads_agree_and_each_count_is_bit_stable(sparse):
    from fastmlp import TwoLayerClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 300)).astype(np.float32)
    if sparse:
        X[rng.random(X.shape) < 0.9] = 0
        X = sp.csr_matrix(X)
    y = rng.integers(0, 3, 600)
    fits = {}
    for T in (1, 2):
        models = [TwoLayerClassifier(hidden_units=64, max_iter=3, n_threads=T, random_state=0,
                                     learning_rate_init=0.01).fit(X, y) for _ in range(2)]
        for a, b in zip(models[0].coefs_ + models[0].intercepts_,
                        models[1].coefs_ + models[1].intercepts_, strict=True):
            assert_array_equal(a, b)
        fits[T] = models[0]
    for a, b in zip(fits[1].coefs_, fits[2].coefs_, strict=True):
        assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    assert_allclose(fits[1].predict_proba(X), fits[2].predict_proba(X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1, -2, 1.5, "2"])
def test_nonsense_thread_counts_are_refused_by_name(bad):
    from fastmlp import TwoLayerClassifier

    with pytest.raises(ValueError, match="n_threads"):
        TwoLayerClassifier(n_threads=bad, max_iter=1).fit(np.ones((4, 2)), [0, 1, 0, 1])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_count_above_the_cores_is_capped():
    from fastmlp import TwoLayerClassifier

    X = np.random.default_rng(0).normal(size=(40, 3))
    y = np.arange(40) % 2
    a = TwoLayerClassifier(n_threads=10_000, max_iter=2, random_state=0).fit(X, y)
    b = TwoLayerClassifier(n_threads=_jit.max_threads(), max_iter=2, random_state=0).fit(X, y)
    assert_array_equal(a.coefs_[0], b.coefs_[0])


_CONCURRENT_FITS = """
import threading, warnings
import numpy as np
from fastmlp import TwoLayerClassifier, _jit
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X = rng.normal(size=(600, 784)).astype(np.float32)
y = rng.integers(0, 10, 600)
def fit(seed):
    m = TwoLayerClassifier(hidden_units=50, max_iter=2, random_state=seed, n_threads=2)
    return m.fit(X, y).coefs_[0]
serial = [fit(s) for s in range(4)]
out = [None] * 4
threads = [threading.Thread(target=lambda s=s: out.__setitem__(s, fit(s))) for s in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert all((a == b).all() for a, b in zip(serial, out)), "threaded fits differ"
print(_jit.threading_layer())
"""


@pytest.mark.parametrize("layer", [None, "workqueue"])
def test_parallel_fits_from_four_threads_equal_serial_fits_on_each_layer(layer):
    # in a child process: a layer that aborted on concurrent launches would kill it
    import os
    import platform
    import subprocess
    import sys

    env = dict(os.environ)
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    r = subprocess.run([sys.executable, "-c", _CONCURRENT_FITS], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    used = r.stdout.split()[-1]
    if layer:
        assert used == layer
    elif platform.machine() in ("x86_64", "AMD64"):
        assert used == "tbb"  # a dependency there: regions launch from any thread
