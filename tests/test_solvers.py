"""Compiled epochs against the NumPy reference stepped batch by batch."""

from __future__ import annotations

import functools
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp import reference, solvers

N, D, H, C, BATCH = 23, 4, 6, 3, 5  # 23 = 4 full batches of 5 and one of 3
GRAD_NAMES = ("dW1", "db1", "dW2", "db2")


def make_data(make_problem, dtype, output="softmax", weighted=False, n=N, seed=0):
    p = make_problem(n, D, H, C, dtype=dtype, seed=seed)
    if output == "logistic":
        # multilabel 0/1 targets: each row may switch on several outputs
        rng = np.random.default_rng(seed + 1)
        Y = rng.integers(0, 2, size=(n, C)).astype(dtype)
    else:
        Y = p.Y
    sw = np.linspace(0.2, 2.0, n).astype(dtype) if weighted else np.ones(n, dtype)
    return p, Y, sw


def assert_close(actual, desired, dtype, what=""):
    if dtype == np.float32:
        assert_allclose(actual, desired, rtol=1e-4, atol=1e-5, err_msg=what)
    else:
        assert_allclose(actual, desired, rtol=1e-10, atol=1e-12, err_msg=what)


def shuffled_order(n, seed):
    """The batch order ``run_epoch(shuffle=True, seed=seed)`` uses."""
    order = np.arange(n, dtype=np.int64)
    solvers.shuffle(order, np.uint64(seed))
    return order


# ------------------------------------------------------------------ SGD epochs
SGD_CONFIGS = {
    "plain": {},
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "alpha": dict(alpha=0.1),
    "weights": dict(weighted=True),
    "shuffle": dict(shuffle=True),
    "logistic-output": dict(output="logistic"),
    "tanh": dict(activation="tanh"),
    "logistic": dict(activation="logistic"),
    "identity": dict(activation="identity"),
    "everything": dict(
        momentum=0.9, nesterov=True, alpha=0.1, weighted=True, shuffle=True, activation="tanh"
    ),
    "everything-multilabel": dict(
        momentum=0.9,
        alpha=0.05,
        weighted=True,
        shuffle=True,
        output="logistic",
        activation="logistic",
    ),
}


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("use_blas", [False, True], ids=["loops", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", list(SGD_CONFIGS))
def test_sgd_epoch_matches_reference(make_problem, config, dtype, use_blas, parallel):
    cfg = dict(SGD_CONFIGS[config])
    weighted = cfg.pop("weighted", False)
    do_shuffle = cfg.pop("shuffle", False)
    output = cfg.get("output", "softmax")
    activation = cfg.get("activation", "relu")
    momentum, nesterov, alpha = (
        cfg.get("momentum", 0.0),
        cfg.get("nesterov", False),
        cfg.get("alpha", 0.0),
    )
    p, Y, sw = make_data(make_problem, dtype, output, weighted)
    lr = 0.1

    params = tuple(a.copy() for a in p.params)
    state = solvers.init_optimizer_state(params, "sgd")
    ws = solvers.Workspace(N, D, H, C, BATCH, dtype)
    ref_params = [a.copy() for a in p.params]
    ref_vel = [np.zeros_like(a) for a in ref_params]

    step = 0
    for epoch, seed in enumerate((11, 12)):  # two epochs: the velocity carries over
        loss, step = solvers.run_epoch(
            p.X,
            Y,
            sw,
            params,
            state,
            ws,
            optimizer="sgd",
            learning_rate=lr,
            momentum=momentum,
            nesterov=nesterov,
            alpha=alpha,
            activation=activation,
            output=output,
            shuffle=do_shuffle,
            seed=seed,
            use_blas=use_blas,
            parallel=parallel,
            step=step,
        )
        order = shuffled_order(N, seed) if do_shuffle else np.arange(N)
        ref_loss = reference.sgd_epoch(
            p.X,
            Y,
            ref_params,
            ref_vel,
            order,
            BATCH,
            lr,
            momentum,
            nesterov,
            alpha,
            sw,
            activation,
            output,
        )
        assert step == 5 * (epoch + 1)
        assert_close(loss, ref_loss, dtype, "loss")
        for name, a, b in zip(GRAD_NAMES, params, ref_params, strict=True):
            assert_close(a, b, dtype, name[1:])
        for name, a, b in zip(GRAD_NAMES, state[:4], ref_vel, strict=True):
            assert_close(a, b, dtype, "velocity of " + name[1:])
    # the reference really moved: the comparison is not between two unchanged copies
    assert not np.allclose(params[0], p.W1)


# ----------------------------------------------------------------- Adam epochs
def numpy_adam_epoch(
    X, Y, params, m, v, order, batch_size, lr, beta_1, beta_2, eps, t, alpha, sw, activation, output
):
    """One epoch of scikit-learn's Adam in NumPy; ``t`` counts updates. Returns (loss, t)."""
    total = 0.0
    for idx in reference.batches(X.shape[0], batch_size, order):
        g = reference.forward_backward(X[idx], Y[idx], *params, alpha, sw[idx], activation, output)
        total += g["loss"] * sw[idx].sum()
        t += 1
        step_size = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        for p, mm, vv, name in zip(params, m, v, GRAD_NAMES, strict=True):
            mm[...] = beta_1 * mm + (1 - beta_1) * g[name]
            vv[...] = beta_2 * vv + (1 - beta_2) * g[name] ** 2
            p -= step_size * mm / (np.sqrt(vv) + eps)
    return total / sw.sum(), t


ADAM_CONFIGS = {
    "plain": {},
    "everything": dict(alpha=0.1, weighted=True, shuffle=True, activation="tanh"),
    "multilabel": dict(output="logistic", shuffle=True),
}


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("use_blas", [False, True], ids=["loops", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", list(ADAM_CONFIGS))
def test_adam_epoch_matches_numpy_adam(make_problem, config, dtype, use_blas, parallel):
    cfg = dict(ADAM_CONFIGS[config])
    weighted = cfg.pop("weighted", False)
    do_shuffle = cfg.pop("shuffle", False)
    output = cfg.get("output", "softmax")
    activation = cfg.get("activation", "relu")
    alpha = cfg.get("alpha", 0.0)
    p, Y, sw = make_data(make_problem, dtype, output, weighted)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8

    params = tuple(a.copy() for a in p.params)
    state = solvers.init_optimizer_state(params, "adam")
    ws = solvers.Workspace(N, D, H, C, BATCH, dtype)
    ref_params = [a.copy() for a in p.params]
    ref_m = [np.zeros_like(a) for a in ref_params]
    ref_v = [np.zeros_like(a) for a in ref_params]

    step = ref_t = 0
    for seed in (3, 4):
        loss, step = solvers.run_epoch(
            p.X,
            Y,
            sw,
            params,
            state,
            ws,
            optimizer="adam",
            learning_rate=lr,
            beta_1=b1,
            beta_2=b2,
            epsilon=eps,
            step=step,
            alpha=alpha,
            activation=activation,
            output=output,
            shuffle=do_shuffle,
            seed=seed,
            use_blas=use_blas,
            parallel=parallel,
        )
        order = shuffled_order(N, seed) if do_shuffle else np.arange(N)
        ref_loss, ref_t = numpy_adam_epoch(
            p.X,
            Y,
            ref_params,
            ref_m,
            ref_v,
            order,
            BATCH,
            lr,
            b1,
            b2,
            eps,
            ref_t,
            alpha,
            sw,
            activation,
            output,
        )
        assert step == ref_t
        assert_close(loss, ref_loss, dtype, "loss")
        for name, a, b in zip(GRAD_NAMES, params, ref_params, strict=True):
            assert_close(a, b, dtype, name[1:])
        for name, a, b in zip(GRAD_NAMES, state[:4], ref_m, strict=True):
            assert_close(a, b, dtype, "first moment of " + name[1:])
        for name, a, b in zip(GRAD_NAMES, state[4:], ref_v, strict=True):
            assert_close(a, b, dtype, "second moment of " + name[1:])
    assert step == 10


# -------------------------------------------------------------------- shuffle
@pytest.mark.parametrize("n", [1, 2, 17, 1000])
def test_shuffle_is_a_deterministic_permutation(n):
    a = shuffled_order(n, 42)
    assert a.dtype == np.int64
    assert np.array_equal(np.sort(a), np.arange(n))
    assert np.array_equal(a, shuffled_order(n, 42))
    if n >= 17:
        assert not np.array_equal(a, np.arange(n))
        assert not np.array_equal(a, shuffled_order(n, 43))
        assert not np.array_equal(shuffled_order(n, 0), shuffled_order(n, 1))


def test_shuffle_spreads_every_position():
    # Fisher-Yates with a uniform generator: each element lands anywhere, so over
    # many seeds position 0 receives every value (a sanity check, not a uniformity test)
    seen = {int(shuffled_order(8, seed)[0]) for seed in range(200)}
    assert seen == set(range(8))


# ------------------------------------------------------ full-batch and predict
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("use_blas", [False, True], ids=["loops", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("output", "activation", "alpha", "weighted"),
    [
        ("softmax", "relu", 0.0, False),
        ("softmax", "tanh", 0.2, True),
        ("logistic", "logistic", 0.1, True),
        ("softmax", "identity", 0.0, True),
    ],
)
def test_loss_and_grads_matches_reference(
    make_problem, output, activation, alpha, weighted, dtype, use_blas, parallel
):
    p, Y, sw = make_data(make_problem, dtype, output, weighted)
    ws = solvers.Workspace(N, D, H, C, N, dtype)  # batch_size >= n_samples
    loss, grads = solvers.loss_and_grads(
        p.X,
        Y,
        sw,
        p.params,
        ws,
        alpha=alpha,
        activation=activation,
        output=output,
        use_blas=use_blas,
        parallel=parallel,
    )
    g = reference.forward_backward(p.X, Y, *p.params, alpha, sw, activation, output)
    assert_close(loss, g["loss"], dtype, "loss")
    for name, a in zip(GRAD_NAMES, grads, strict=True):
        assert a.dtype == dtype
        assert_close(a, g[name], dtype, name)


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("use_blas", [False, True], ids=["loops", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("n", "block", "output", "activation"),
    [
        (11, 4, "softmax", "relu"),
        (1, 1024, "softmax", "tanh"),
        (11, 3, "logistic", "relu"),
        (7, 7, "logistic", "identity"),
        (9, 1, "softmax", "logistic"),
    ],
)
def test_forward_proba_matches_reference(
    make_problem, n, block, output, activation, dtype, use_blas, parallel
):
    p = make_problem(n, D, H, C, dtype=dtype, seed=8)
    P = solvers.forward_proba(
        p.X,
        p.params,
        activation=activation,
        output=output,
        block=block,
        use_blas=use_blas,
        parallel=parallel,
    )
    expected = reference.forward(p.X, *p.params, activation=activation, output=output)["P"]
    assert P.shape == (n, C) and P.dtype == dtype
    assert_close(P, expected, dtype, "P")


# ------------------------------------------------------------------ Workspace
def test_workspace_fits():
    ws = solvers.Workspace(10, 4, 6, 3, 32, np.float32)
    assert ws.batch_size == 10  # clipped to n_samples
    assert ws.fits(10, 4, 6, 3, 32, np.float32)
    assert ws.fits(10, 4, 6, 3, 10, "float32")  # same clipped batch size
    assert ws.fits(10, 4, 6, 3, 1000, np.dtype(np.float32))
    assert not ws.fits(10, 4, 6, 3, 32, np.float64)
    assert not ws.fits(10, 4, 6, 3, 5, np.float32)
    assert not ws.fits(11, 4, 6, 3, 32, np.float32)
    assert not ws.fits(10, 5, 6, 3, 32, np.float32)
    assert not ws.fits(10, 4, 7, 3, 32, np.float32)
    assert not ws.fits(10, 4, 6, 2, 32, np.float32)
    assert all(b.dtype == np.float32 for b in ws.buffers[:-1] + ws.tbuffers)
    assert all(b.flags.c_contiguous for b in ws.buffers + ws.tbuffers)


# ----------------------------------------------------------- allocation per batch
# Numba's runtime (NRT) allocates with its own allocator, which tracemalloc does
# not see; NRT counts its allocations once stats are switched on (the switch is
# what NUMBA_NRT_STATS=1 flips at start-up). Every array argument passed from
# Python also registers one NRT allocation when it is unboxed: a constant per
# call, which is why the test compares epochs of 2 and 42 batches rather than
# expecting zero.
_nrt = _nrt_python


def _nrt_allocs(fn):
    before = rtsys.get_allocation_stats().alloc
    fn()
    return rtsys.get_allocation_stats().alloc - before


@pytest.fixture
def nrt_stats():
    was_on = _nrt.memsys_stats_enabled()
    _nrt.memsys_enable_stats()
    yield
    if not was_on:
        _nrt.memsys_disable_stats()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("use_blas", [False, True], ids=["loops", "blas"])
def test_epoch_allocates_nothing_per_batch(make_problem, nrt_stats, use_blas, parallel, optimizer):
    B, D_ = 64, 64  # one (B, D) float64 batch buffer is 32 KiB
    counts = {}
    for n_batches in (2, 42):
        n = B * n_batches - 3  # a partial last batch
        X = np.random.default_rng(0).normal(size=(n, D_))
        Y = np.eye(C)[np.arange(n) % C]
        sw = np.ones(n)
        p = make_problem(1, D_, H, C, seed=9)
        params = tuple(a.copy() for a in p.params)
        state = solvers.init_optimizer_state(params, optimizer)
        ws = solvers.Workspace(n, D_, H, C, B, np.float64)
        kw = dict(
            optimizer=optimizer,
            learning_rate=0.01,
            momentum=0.9,
            shuffle=True,
            use_blas=use_blas,
            parallel=parallel,
        )
        solvers.run_epoch(X, Y, sw, params, state, ws, **kw)  # warm-up
        tracemalloc.start()
        epoch = functools.partial(solvers.run_epoch, X, Y, sw, params, state, ws, **kw)
        counts[n_batches] = _nrt_allocs(epoch)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # Python side of run_epoch: a few scalars, far below one (B, D) batch buffer
        assert peak < ws.buffers[0].nbytes / 4, peak
    per_batch = (counts[42] - counts[2]) / 40

    assert per_batch == 0


# ------------------------------------------------------------- misfit workspace
_MISFIT_SCRIPT = """
import numpy as np
from fastmlp import solvers
n, D, H, C = 64, 4, 6, 3
rng = np.random.default_rng(0)
X = rng.normal(size=(n, D))
Y = np.eye(C)[rng.integers(0, C, n)]
sw = np.ones(n)
params = tuple(rng.normal(size=s) for s in [(D, H), (H,), (H, C), (C,)])
small = solvers.Workspace(8, D, H, C, 4, np.float64)  # made for 8 samples in batches of 4
calls = {
    "loss_and_grads": lambda: solvers.loss_and_grads(
        X, Y, sw, params, small, use_blas=False, parallel=False),
    "run_epoch": lambda: solvers.run_epoch(
        X, Y, sw, params, solvers.init_optimizer_state(params, "sgd"), small,
        use_blas=False, parallel=False),
}
for name, call in calls.items():
    try:
        call()
        print(name, "no error")
    except ValueError as exc:
        print(name, "ValueError", "workspace" in str(exc).lower())
"""


def test_misfit_workspace_raises_instead_of_writing_out_of_bounds():
    # In a child process, so an out-of-bounds write could not take the test run down.
    done = subprocess.run(
        [sys.executable, "-c", _MISFIT_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.split("\n")[:2] == [
        "loss_and_grads ValueError True",
        "run_epoch ValueError True",
    ], done.stdout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "block", "output"), [(11, 4, "softmax"), (1, 1024, "softmax"),
                                                    (9, 2, "logistic"), (7, 7, "softmax")])
def test_forward_proba_argmax_is_the_largest_probability(make_problem, n, block, output, dtype):
    p = make_problem(n, 5, 6, 3, dtype=dtype, seed=9)
    labels = solvers.forward_proba(p.X, p.params, output=output, block=block, argmax=True)
    P = reference.forward(p.X, *p.params, activation="relu", output=output)["P"]
    assert labels.dtype == np.int64
    assert_array_equal(labels, P.argmax(axis=1))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("argmax", [False, True])
def test_forward_proba_check_finite(make_problem, bad, argmax):
    p = make_problem(6, 5, 6, 3, dtype=np.float32, seed=10)
    kwargs = {"check_finite": True, "argmax": argmax, "block": 4}
    assert solvers.forward_proba(p.X, p.params, **kwargs) is not None
    X = p.X.copy()
    X[4, 2] = bad
    assert solvers.forward_proba(X, p.params, **kwargs) is None
