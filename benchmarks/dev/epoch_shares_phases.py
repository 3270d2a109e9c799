"""Attribution of the data-parallel dense epoch: each phase alone at 1 and 2 shares/threads.

A copy of ``fastmlp.solvers._epoch_shares`` with a phase mask (bit 1: phase A, the
shares' forward and backward; bit 2: phase B, gradients and update by rows; bit 4: an
empty region per batch), timed on Fashion-MNIST (float32, batch 200, 100 hidden)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/dev/epoch_shares_phases.py 7
"""
import time, statistics, sys, numpy as np, numba
from fastmlp import bench as B, solvers as S, _jit
from fastmlp.kernels import share
from fastmlp.solvers import _share_forward_backward, _share_update, shuffle
from fastmlp._blas import blas_threads

@numba.njit(parallel=True, nogil=True, fastmath={"nsz","arcp","contract","afn","reassoc"})
def epoch_mask(mask, X, Y, sw, params, state, ws, shares, batch_size, seed, codes, hyper, step):
    optimizer, activation, output = codes
    learning_rate, momentum, nesterov, beta_1, beta_2, epsilon, alpha = hyper
    W1, b1, W2, b2 = params
    Xb, Yb, swb, H1a, H2a, Za, dZa, dH1a, gW1, gb1, gW2, gb2, order = ws
    gb1p, gb2p, lossp, sqp = shares
    T = lossp.shape[0]
    n = X.shape[0]
    for i in range(n):
        order[i] = i
    shuffle(order, seed)
    total = 0.0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        m = stop - start
        rows = order[start:stop]
        wsum = 0.0
        for r in range(m):
            w = sw[rows[r]]; swb[r] = w; wsum += w
        scale = 1.0 / wsum
        step += 1
        upd = (learning_rate, momentum, nesterov, learning_rate, beta_1, beta_2, epsilon)
        if mask & 1:
            for t in numba.prange(T):
                lo, hi = share(m, T, t)
                lossp[t] = _share_forward_backward(X, rows, True, Y, swb, scale, W1, b1, W2, b2,
                                                   activation, output, ws, lo, hi, gb1p[t], gb2p[t])
        if mask & 2:
            for t in numba.prange(T):
                sqp[t] = _share_update(Xb[:m], dH1a[:m], H2a[:m], dZa[:m], params, state,
                                       (gW1, gb1, gW2, gb2), (gb1p, gb2p), optimizer, upd,
                                       W1.dtype.type(alpha * scale), t, T)
        if mask & 4:  # an empty region: the launch alone
            for t in numba.prange(T):
                sqp[t] = 0.0
        for t in range(T):
            total += lossp[t]
    return total, step

p = B.fashion_problem("float32")
X, Y = p.X, p.Y; n, D = X.shape; H, C = 100, 10
sw = np.ones(n, np.float32)
params = tuple(B.init_params(D, H, C, np.float32, 0))
state = S.init_optimizer_state(params, "sgd")
ws = S.Workspace(n, D, H, C, 200, np.float32)
codes = (0, 0, 0); f = np.float32
hyper = (f(0.01), f(0.9), True, f(0.9), f(0.999), f(1e-8), f(1e-4))
def run(mask, T):
    with blas_threads(1), _jit.parallel_threads(T):
        epoch_mask(mask, X, Y, sw, params, state, ws.buffers, ws.shares(T), 200, np.uint64(1), codes, hyper, 0)
cases = [(m, T) for T in (1, 2) for m in (3, 1, 2, 4, 0)]
for c in cases: run(*c)
res = {c: [] for c in cases}
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
    for c in cases:
        time.sleep(0.1)
        t0 = time.perf_counter(); run(*c); res[c].append(time.perf_counter() - t0)
names = {3: "whole epoch", 1: "phase A (gather, forward, backward)", 2: "phase B (dW, update)", 4: "empty region x300", 0: "serial bookkeeping"}
for c in cases:
    print(f"T={c[1]} {names[c[0]]:<40} {statistics.median(res[c])*1e3:7.1f} ms ({min(res[c])*1e3:.1f}-{max(res[c])*1e3:.1f})")
