"""The compiled sparse epoch against the dense epoch on ``X.toarray()`` and against NumPy."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from numba.core.runtime import _nrt_python, rtsys
from numpy.testing import assert_allclose

from fastmlp import _sparse, reference, solvers
from fastmlp import solvers_sparse as ss

N, D, H, C, BATCH = 23, 9, 6, 3, 5  # 23 = 4 full batches of 5 and one of 3
EMPTY_ROWS, EMPTY_COLUMNS = (3, 10), (0, 5)
NAMES = ("W1", "b1", "W2", "b2")


def make_sparse(dtype, seed=0, n=N, d=D, output="softmax", weighted=False):
    """A canonical CSR with empty rows and columns (built from unsorted duplicates)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, d)) * (rng.random((n, d)) < 0.35)
    A[list(EMPTY_ROWS)] = 0
    A[:, list(EMPTY_COLUMNS)] = 0
    coo = sp.coo_matrix(A)
    # every entry stored as two halves, in reverse order: unsorted duplicates
    rows = np.concatenate([coo.row, coo.row])[::-1]
    cols = np.concatenate([coo.col, coo.col])[::-1]
    vals = np.concatenate([coo.data / 2, coo.data / 2])[::-1]
    order = np.lexsort((rng.random(rows.size), rows))  # by row, shuffled within each row
    raw = sp.csr_matrix(
        (vals[order], cols[order].astype(np.int32),
         np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int32)),
        shape=A.shape,
    )
    arrays = _sparse.check_csr(raw, dtype)
    dense = np.ascontiguousarray(raw.toarray(), dtype=dtype)
    if output == "logistic":
        Y = rng.integers(0, 2, size=(n, C)).astype(dtype)
    else:
        Y = np.eye(C, dtype=dtype)[rng.integers(0, C, n)]
    sw = np.linspace(0.2, 2.0, n).astype(dtype) if weighted else np.ones(n, dtype)
    W1 = (rng.normal(size=(d, H)) / np.sqrt(d)).astype(dtype)
    b1 = (0.1 * rng.normal(size=H)).astype(dtype)
    W2 = (rng.normal(size=(H, C)) / np.sqrt(H)).astype(dtype)
    b2 = (0.1 * rng.normal(size=C)).astype(dtype)
    return arrays, dense, Y, sw, (W1, b1, W2, b2)


def assert_close(actual, desired, dtype, what=""):
    if dtype == np.float32:
        assert_allclose(actual, desired, rtol=2e-4, atol=2e-5, err_msg=what)
    else:
        assert_allclose(actual, desired, rtol=1e-9, atol=1e-11, err_msg=what)


CONFIGS = {
    "sgd": dict(optimizer="sgd"),
    "sgd-alpha": dict(optimizer="sgd", alpha=0.3),
    "momentum": dict(optimizer="sgd", momentum=0.9, alpha=0.3),
    "nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True, alpha=0.3, weighted=True),
    "adam": dict(optimizer="adam"),
    "adam-everything": dict(optimizer="adam", alpha=0.3, weighted=True, activation="tanh"),
    "multilabel": dict(optimizer="sgd", momentum=0.5, output="logistic",
                       activation="logistic", alpha=0.1),
}
LR = {"sgd": 0.2, "adam": 0.02}


def _setup(config, dtype):
    cfg = dict(CONFIGS[config])
    weighted = cfg.pop("weighted", False)
    arrays, dense, Y, sw, params = make_sparse(dtype, output=cfg.get("output", "softmax"),
                                               weighted=weighted)
    cfg["learning_rate"] = LR[cfg["optimizer"]]
    return cfg, arrays, dense, Y, sw, params


def _copies(params, optimizer):
    p = tuple(a.copy() for a in params)
    return p, solvers.init_optimizer_state(p, optimizer)


def _dense_epochs(dense, Y, sw, params, cfg, do_shuffle, seeds):
    p, state = _copies(params, cfg["optimizer"])
    ws = solvers.Workspace(N, D, H, C, BATCH, dense.dtype)
    step, losses = 0, []
    for seed in seeds:
        loss, step = solvers.run_epoch(dense, Y, sw, p, state, ws, shuffle=do_shuffle,
                                       seed=seed, step=step, **cfg)
        losses.append(loss)
    return p, state, losses, step


def _sparse_epochs(arrays, Y, sw, params, cfg, do_shuffle, seeds, lazy, parallel):
    p, state = _copies(params, cfg["optimizer"])
    ws = ss.SparseWorkspace(N, D, H, C, BATCH, Y.dtype, lazy=lazy)
    step, losses = 0, []
    for seed in seeds:
        loss, step = ss.run_epoch_sparse(*arrays, Y, sw, p, state, ws, shuffle=do_shuffle,
                                         seed=seed, step=step, lazy=lazy, parallel=parallel,
                                         **cfg)
        losses.append(loss)
    assert not ws.buffers[7].any()  # the gradient of W1 is all zero again between epochs
    return p, state, losses, step


# ---------------------------------------------------------------- exact mode
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("do_shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_exact_epoch_matches_the_dense_epoch(config, dtype, do_shuffle, parallel):
    cfg, arrays, dense, Y, sw, params = _setup(config, dtype)
    seeds = (11, 12)  # two epochs: the optimizer state carries over
    want = _dense_epochs(dense, Y, sw, params, cfg, do_shuffle, seeds)
    got = _sparse_epochs(arrays, Y, sw, params, cfg, do_shuffle, seeds, False, parallel)
    for name, a, b in zip(NAMES, got[0], want[0], strict=True):
        assert_close(a, b, dtype, name)
    for k, (a, b) in enumerate(zip(got[1], want[1], strict=True)):
        assert_close(a, b, dtype, f"state {k}")
    assert_close(got[2], want[2], dtype, "losses")
    assert got[3] == want[3] == 10
    assert not np.allclose(got[0][0], params[0])  # W1 really moved


# ----------------------------------------------------------------- lazy mode
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", ["sgd", "sgd-alpha", "momentum", "nesterov", "multilabel"])
def test_lazy_sgd_is_exact(config, dtype, parallel):
    # the catch-up of untouched rows is the product of their missed steps' maps:
    # the weights and velocities of the dense epoch, to rounding
    cfg, arrays, dense, Y, sw, params = _setup(config, dtype)
    want = _dense_epochs(dense, Y, sw, params, cfg, True, (5, 6))
    got = _sparse_epochs(arrays, Y, sw, params, cfg, True, (5, 6), True, parallel)
    for name, a, b in zip(NAMES, got[0], want[0], strict=True):
        assert_close(a, b, dtype, name)
    for k, (a, b) in enumerate(zip(got[1][:4], want[1][:4], strict=True)):
        assert_close(a, b, dtype, f"velocity {k}")
    if cfg.get("alpha", 0) == 0:  # the penalty is the only approximate part of the loss
        assert_close(got[2], want[2], dtype, "losses")
    else:
        assert_allclose(got[2], want[2], rtol=1e-2)
    # an empty column's row is never touched: it decays by L2 alone, caught up at the end
    if cfg.get("alpha", 0):
        j = EMPTY_COLUMNS[0]
        assert not np.allclose(got[0][0][j], params[0][j])


def _stored_features(arrays, rows):
    data, indices, indptr = arrays
    return list(dict.fromkeys(int(indices[k]) for i in rows
                              for k in range(indptr[i], indptr[i + 1])))


def numpy_lazy_epochs(arrays, dense, Y, sw, params, cfg, order_of, seeds):
    """The documented lazy rule in plain NumPy: LazyAdam, or SGD with per-step catch-up."""
    params = [a.astype(np.float64) for a in params]
    W1, b1, W2, b2 = params
    opt = cfg["optimizer"]
    lr, alpha = cfg["learning_rate"], cfg.get("alpha", 0.0)
    mu, nesterov = cfg.get("momentum", 0.0), cfg.get("nesterov", False)
    act, out = cfg.get("activation", "relu"), cfg.get("output", "softmax")
    b_1, b_2, eps = 0.9, 0.999, 1e-8
    s1 = [np.zeros_like(a) for a in params]
    s2 = [np.zeros_like(a) for a in params]
    t, losses = 0, []
    for seed in seeds:
        order = order_of(seed)
        batches = list(reference.batches(N, BATCH, order))
        maps = []
        for idx in batches:
            a = lr * alpha / sw[idx].sum()
            maps.append(np.array([[1 - a * (1 + mu), mu * mu], [-a, mu]]) if nesterov
                        else np.array([[1 - a, mu], [-a, mu]]))
        last = np.zeros(D, int)

        def catch_up(j, now, maps=maps, last=last):
            for s in range(last[j], now):
                W1[j], s1[0][j] = maps[s] @ np.stack([W1[j], s1[0][j]])
            last[j] = now

        total = 0.0
        for te, idx in enumerate(batches):
            touched = _stored_features(arrays, idx)
            if opt == "sgd":
                for j in touched:
                    catch_up(j, te)
            S = sw[idx].sum()
            g = reference.forward_backward(dense[idx], Y[idx], W1, b1, W2, b2, 0.0, sw[idx],
                                           act, out)
            loss = g["loss"] + 0.5 * alpha / S * ((W1**2).sum() + (W2**2).sum())
            total += loss * S
            reg = alpha / S
            grads = [g["dW1"] + reg * W1, g["db1"], g["dW2"] + reg * W2, g["db2"]]
            t += 1
            step_size = lr * np.sqrt(1 - b_2**t) / (1 - b_1**t)
            for k, (p, gr) in enumerate(zip(params, grads, strict=True)):
                sel = touched if k == 0 else slice(None)  # W1: the touched rows only
                if opt == "sgd":
                    s1[k][sel] = mu * s1[k][sel] - lr * gr[sel]
                    p[sel] += (mu * s1[k][sel] - lr * gr[sel]) if nesterov else s1[k][sel]
                else:
                    s1[k][sel] = b_1 * s1[k][sel] + (1 - b_1) * gr[sel]
                    s2[k][sel] = b_2 * s2[k][sel] + (1 - b_2) * gr[sel] ** 2
                    p[sel] -= step_size * s1[k][sel] / (np.sqrt(s2[k][sel]) + eps)
            if opt == "sgd":
                last[touched] = te + 1
        if opt == "sgd":
            for j in range(D):
                catch_up(j, len(batches))
        losses.append(total / sw.sum())
    return params, s1, s2, losses, t


def _order_of(do_shuffle):
    def order_of(seed):
        order = np.arange(N, dtype=np.int64)
        if do_shuffle:
            solvers.shuffle(order, np.uint64(seed))
        return order
    return order_of


@pytest.mark.parametrize("do_shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", ["nesterov", "adam", "adam-everything"])
def test_lazy_epoch_follows_its_documented_rule(config, dtype, do_shuffle):
    cfg, arrays, dense, Y, sw, params = _setup(config, dtype)
    seeds = (7, 8)
    got = _sparse_epochs(arrays, Y, sw, params, cfg, do_shuffle, seeds, True, False)
    want = numpy_lazy_epochs(arrays, dense.astype(np.float64), Y.astype(np.float64),
                             sw.astype(np.float64), params, cfg, _order_of(do_shuffle), seeds)
    for name, a, b in zip(NAMES, got[0], want[0], strict=True):
        assert_close(a, b, dtype, name)
    for k, (a, b) in enumerate(zip(got[1][:4], want[1], strict=True)):
        assert_close(a, b, dtype, f"first state {k}")
    if cfg["optimizer"] == "adam":
        for k, (a, b) in enumerate(zip(got[1][4:], want[2], strict=True)):
            assert_close(a, b, dtype, f"second moment {k}")
    assert_close(got[2], want[3], dtype, "losses")
    assert got[3] == want[4]


def test_lazy_adam_leaves_untouched_rows_and_moments_alone():
    cfg, arrays, dense, Y, sw, params = _setup("adam-everything", np.float64)
    p, state = _copies(params, "adam")
    ws = ss.SparseWorkspace(N, D, H, C, BATCH, np.float64, lazy=True)
    ss.run_epoch_sparse(*arrays, Y, sw, p, state, ws, lazy=True, **cfg)
    for j in EMPTY_COLUMNS:  # never in any batch
        assert (p[0][j] == params[0][j]).all()
        assert not state[0][j].any() and not state[4][j].any()
    dense_p, _, _, _ = _dense_epochs(dense, Y, sw, params, cfg, True, (0,))
    assert not np.allclose(dense_p[0][EMPTY_COLUMNS[0]], params[0][EMPTY_COLUMNS[0]])


# ------------------------------------------------------- full batch, prediction
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("activation", "output"), [("relu", "softmax"), ("tanh", "logistic")])
def test_loss_and_grads_sparse_matches_dense_and_reference(activation, output, dtype, parallel):
    arrays, dense, Y, sw, params = make_sparse(dtype, seed=3, output=output, weighted=True)
    alpha = 0.2
    ws = ss.SparseWorkspace(N, D, H, C, N, dtype, full_batch=True)
    assert ws.buffers[0].shape[0] == 0  # reads Y in place: no gather buffers
    loss, grads = ss.loss_and_grads_sparse(*arrays, Y, sw, params, ws, alpha=alpha,
                                           activation=activation, output=output,
                                           parallel=parallel)
    ref = reference.forward_backward(dense, Y, *params, alpha, sw, activation, output)
    assert_close(loss, ref["loss"], dtype, "loss")
    for name, g in zip(("dW1", "db1", "dW2", "db2"), grads, strict=True):
        assert_close(g, ref[name], dtype, name)
    wsd = solvers.Workspace(N, D, H, C, N, dtype, full_batch=True)
    dloss, dgrads = solvers.loss_and_grads(dense, Y, sw, params, wsd, alpha=alpha,
                                           activation=activation, output=output)
    assert_close(loss, dloss, dtype, "dense loss")
    for g, dg in zip(grads, dgrads, strict=True):
        assert_close(g, dg, dtype, "dense gradient")


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("block", "output"), [(4, "softmax"), (1024, "softmax"),
                                               (7, "logistic")])
def test_forward_proba_sparse_matches_dense(block, output, dtype, parallel):
    arrays, dense, _, _, params = make_sparse(dtype, seed=4)
    P = ss.forward_proba_sparse(*arrays, params, output=output, block=block, parallel=parallel)
    want = reference.forward(dense.astype(np.float64), *[a.astype(np.float64) for a in params],
                             output=output)["P"]
    assert P.shape == (N, C) and P.dtype == dtype
    assert_close(P, want, dtype)
    labels = ss.forward_proba_sparse(*arrays, params, output=output, block=block,
                                     parallel=parallel, argmax=True)
    assert (labels == np.argmax(want, axis=1)).all()
    one = ss.forward_proba_sparse(arrays[0], arrays[1], arrays[2][2:4], params, output=output)
    assert_close(one, want[2:3], dtype, "one row")  # an indptr slice is a block of rows


# ------------------------------------------------------------------- resources
_nrt = _nrt_python


@pytest.fixture
def nrt_stats():
    was_on = _nrt.memsys_stats_enabled()
    _nrt.memsys_enable_stats()
    yield
    if not was_on:
        _nrt.memsys_disable_stats()


@pytest.mark.parametrize("lazy", [False, True], ids=["exact", "lazy"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_sparse_epoch_allocates_nothing_per_batch(nrt_stats, parallel, optimizer, lazy):
    B, d = 16, 40
    counts = {}
    for n_batches in (2, 30):
        n = B * n_batches - 3
        X = sp.random(n, d, density=0.2, format="csr", random_state=0)
        arrays = _sparse.check_csr(X, np.float64)
        Y = np.eye(C)[np.arange(n) % C]
        sw = np.ones(n)
        params = tuple(np.random.default_rng(1).normal(size=s) for s in [(d, H), (H,), (H, C),
                                                                         (C,)])
        state = solvers.init_optimizer_state(params, optimizer)
        ws = ss.SparseWorkspace(n, d, H, C, B, np.float64, lazy=lazy)
        epoch = functools.partial(ss.run_epoch_sparse, *arrays, Y, sw, params, state, ws,
                                  optimizer=optimizer, momentum=0.9, alpha=0.1, lazy=lazy,
                                  parallel=parallel)
        epoch()  # warm-up
        before = rtsys.get_allocation_stats().alloc
        epoch()
        counts[n_batches] = rtsys.get_allocation_stats().alloc - before
    assert counts[30] == counts[2]  # a constant per call (the arrays unboxed), none per batch


def test_workspace_holds_nothing_of_size_n_by_D_or_B_by_D():
    n, d, h, c, b = 300, 2000, 8, 3, 50
    for kw in (dict(), dict(lazy=True), dict(full_batch=True)):
        ws = ss.SparseWorkspace(n, d, h, c, b, np.float32, **kw)
        ws.reserve_entries(np.arange(0, 3 * n + 1, 3))  # 3 entries a row
        arrays = ws.buffers + ws.lazy_buffers + ws.group_buffers
        assert ws.group_buffers[2].size == 3 * ws.batch_size  # the largest batch's entries
        assert max(a.size for a in arrays) == d * h  # the gradient of W1 alone
        # + the groups: slot and start (8 bytes a feature each), the entries, a row of dW1
        assert sum(a.nbytes for a in arrays) < (2 * d * h * 4 + 16 * d + 8 * n + 4 * b * (2 * h)
                                                + 16 * (d + 1) + 12 * 3 * n + 4 * h)
        for a in arrays:
            assert not (a.ndim == 2 and a.shape[1] == d), a.shape


def test_run_epoch_sparse_refuses_bad_input():
    cfg, arrays, dense, Y, sw, params = _setup("sgd", np.float64)
    p, state = _copies(params, "sgd")
    ws = ss.SparseWorkspace(N, D, H, C, BATCH, np.float64)
    data, indices, indptr = (a.copy() for a in arrays)
    indices[0] = D  # past n_features
    with pytest.raises(ValueError, match="X is a malformed sparse matrix"):
        ss.run_epoch_sparse(data, indices, indptr, Y, sw, p, state, ws, **cfg)
    with pytest.raises(ValueError, match="rows"):
        ss.run_epoch_sparse(*arrays, Y[:-1], sw[:-1], p, state, ws, **cfg)
    with pytest.raises(ValueError, match="float32"):
        ss.run_epoch_sparse(arrays[0].astype(np.float32), *arrays[1:], Y, sw, p, state, ws,
                            **cfg)
    with pytest.raises(ValueError, match="workspace"):
        ss.run_epoch_sparse(*arrays, Y, sw, p, state, ws, lazy=True, **cfg)  # not a lazy one
    with pytest.raises(ValueError, match="workspace"):
        small = ss.SparseWorkspace(N, D - 1, H, C, BATCH, np.float64)
        ss.run_epoch_sparse(*arrays, Y, sw, p, state, small, **cfg)
    assert all((a == b).all() for a, b in zip(p, params, strict=True))  # nothing ran
