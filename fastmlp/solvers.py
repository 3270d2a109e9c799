"""Compiled training loops: whole epochs of minibatch SGD or Adam in Numba.

The estimator calls :func:`run_epoch` once per epoch. Inside, one compiled
function shuffles (from a seed), gathers each minibatch into a preallocated
workspace, runs the forward pass, the fused loss and ``dZ``, the backward pass
and the parameter updates, and returns the epoch's mean loss: no Python runs
per batch and nothing is allocated per batch.

The update rules, the L2 penalty and the losses are scikit-learn's
(``MLPClassifier``, ``MLPRegressor``), so an epoch here changes the weights as
one there does. The output layer and its loss are one code (``output``):
softmax or logistic with the log-loss (classification), identity with the half
squared error or exp with the half Poisson deviance (regression); each pairs an
activation with its canonical loss, so ``dZ = scale * sw (P - Y)`` in all four.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np

from . import _jit
from . import kernels as K
from ._blas import ONE_THREAD_WORK, blas_threads, counts_matter
from ._jit import jit, specialize

SGD, ADAM = 0, 1
# Output codes, named after scikit-learn's ``out_activation_``
SOFTMAX, LOGISTIC_OUTPUT, IDENTITY_OUTPUT, EXP_OUTPUT = 0, 1, 2, 3
OUTPUT_CODES = {
    "softmax": SOFTMAX, "logistic": LOGISTIC_OUTPUT, "identity": IDENTITY_OUTPUT,
    "exp": EXP_OUTPUT,
}


class Workspace:
    """Every buffer an epoch needs, allocated once per fit.

    ``buffers`` is the tuple handed to compiled code:
    ``(Xb, Yb, swb, H1, H2, Z, dZ, dH1, gW1, gb1, gW2, gb2, order)``.
    """

    def __init__(
        self, n_samples, n_features, n_hidden, n_outputs, batch_size, dtype, *, full_batch=False
    ):
        dtype = np.dtype(dtype)
        B = min(batch_size, n_samples)
        self.batch_size = B
        self.dtype = dtype
        # A full-batch workspace (for loss_and_grads, as L-BFGS uses) reads X in
        # place: it has no gather buffers, so it holds no copy of X.
        self.full_batch = full_batch
        G = 0 if full_batch else B
        self.buffers = (
            np.empty((G, n_features), dtype),  # Xb   (B, D) gathered batch
            np.empty((G, n_outputs), dtype),  # Yb   (B, C)
            np.empty(G, dtype),  # swb  (B,)
            np.empty((B, n_hidden), dtype),  # H1   (B, H) pre-activation
            np.empty((B, n_hidden), dtype),  # H2   (B, H) activation
            np.empty((B, n_outputs), dtype),  # Z    (B, C) logits, then P in place
            np.empty((B, n_outputs), dtype),  # dZ   (B, C)
            np.empty((B, n_hidden), dtype),  # dH1  (B, H)
            np.empty((n_features, n_hidden), dtype),  # gW1 (D, H)
            np.empty(n_hidden, dtype),  # gb1 (H,)
            np.empty((n_hidden, n_outputs), dtype),  # gW2 (H, C)
            np.empty(n_outputs, dtype),  # gb2 (C,)
            np.arange(n_samples, dtype=np.int64),  # order (n,)
        )
        # The loops path keeps the weights transposed for a whole epoch, so every
        # product reads both operands along rows (kernels.matmul_nt). Batch-shaped
        # transposes are flat and reshaped per batch so a partial last batch is
        # still C-contiguous.
        D, H, C = n_features, n_hidden, n_outputs
        self.tbuffers = (
            np.empty((H, D), dtype),  # W1t  (H, D)
            np.empty((C, H), dtype),  # W2t  (C, H)
            np.empty((H, D), dtype),  # gW1t (H, D)
            np.empty((C, H), dtype),  # gW2t (C, H)
            np.empty(D * G, dtype),  # Xt   (D, m) flat
            np.empty(H * B, dtype),  # H2t  (H, m) flat
            np.empty(C * B, dtype),  # dZt  (C, m) flat
            np.empty(H * B, dtype),  # dH1t (H, m) flat
            np.empty((H, D), dtype),  # optimizer state of W1, transposed
            np.empty((C, H), dtype),  # optimizer state of W2, transposed
            np.empty((H, D), dtype),  # Adam's second moment of W1, transposed
            np.empty((C, H), dtype),  # Adam's second moment of W2, transposed
        )

    def shares(self, n_shares):
        """Per-share scratch of the data-parallel epoch: ``(gb1, gb2, loss, sq)``.

        ``gb1`` (T, H) and ``gb2`` (T, C) hold each share's bias-gradient column
        sums, ``loss`` and ``sq`` (T,) its loss and its rows' sum of squares.
        """
        cache = self.__dict__.setdefault("_shares", {})
        if n_shares not in cache:
            H, C = self.buffers[3].shape[1], self.buffers[5].shape[1]
            cache[n_shares] = (
                np.zeros((n_shares, H), self.dtype),
                np.zeros((n_shares, C), self.dtype),
                np.zeros(n_shares),
                np.zeros(n_shares),
            )
        return cache[n_shares]

    def fits(self, n_samples, n_features, n_hidden, n_outputs, batch_size, dtype):
        """Whether this workspace can serve a problem of these sizes."""
        Xb, Yb, _, H1 = self.buffers[:4]
        return (
            np.dtype(dtype) == self.dtype
            and self.batch_size == min(batch_size, n_samples)
            and Xb.shape[1] == n_features
            and H1.shape[1] == n_hidden
            and Yb.shape[1] == n_outputs
            and self.buffers[-1].shape[0] == n_samples
        )


# ------------------------------------------------------------------ shuffling
@jit
def _splitmix64(state):
    # One step of SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed PRNG
    # whose whole state is one integer, so shuffles are reproducible from a seed
    # and independent of Numba's per-thread generators.
    state = (state + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = state
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(
        0xFFFFFFFFFFFFFFFF
    )
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(
        0xFFFFFFFFFFFFFFFF
    )
    return state, z ^ (z >> np.uint64(31))


@jit
def shuffle(order, seed):
    """Fisher-Yates shuffle of ``order`` in place, driven by ``seed``."""
    state = np.uint64(seed)
    for i in range(order.size - 1, 0, -1):
        state, r = _splitmix64(state)
        j = np.int64(r % np.uint64(i + 1))
        order[i], order[j] = order[j], order[i]


@jit
def _epoch_order(order, seed, do_shuffle):
    """Fill ``order`` with the epoch's row order: ``0 .. n-1``, shuffled from ``seed`` if asked."""
    for i in range(order.shape[0]):
        order[i] = i
    if do_shuffle:
        shuffle(order, seed)


@jit
def _step_size(optimizer, learning_rate, beta_1, beta_2, step):
    """Return the step size of update number ``step``.

    For Adam its bias correction is folded in (scikit-learn's form).
    """
    if optimizer == ADAM:
        return learning_rate * np.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
    return learning_rate


@jit
def _batch_weights(sw, rows, swb):
    """``swb[r] = sw[rows[r]]`` for a batch's rows; return their sum and its inverse (0 for 0)."""
    wsum = 0.0  # float64, whatever the working dtype
    for r in range(rows.shape[0]):
        w = sw[rows[r]]
        swb[r] = w
        wsum += w
    return wsum, (1.0 / wsum if wsum > 0 else 0.0)


# ------------------------------------------------------------ forward and backward
# _forward, _loss_and_grads, _loss_and_grads_t, _epoch and _forward_proba read
# two constants, USE_BLAS (np.dot in compiled code, or the Numba loops) and
# PARALLEL (the prange kernels, or the serial ones), not arguments. Each
# of the four paths is compiled as its own copy with the constants fixed (see
# _PATHS at the end of the module), so Numba prunes the other paths' branches
# before typing them: a fit compiles only the kernels its path runs. (With the
# flags as arguments, the first fit on a cold cache compiled every path: 32 s
# on digits, most of it parallel kernels that a digits fit never calls; now 15 s.)
# The values here only serve the plain Python functions.
USE_BLAS = True
PARALLEL = False


def _forward(X, W1, b1, W2, b2, activation, H1, H2, Z):
    """Z = act(X W1 + b1) W2 + b2, keeping H1 and H2 for the backward pass."""
    if USE_BLAS:
        K.linear_forward_blas(X, W1, b1[:0], H1)  # bias added in the next pass
        if PARALLEL:
            K.bias_activation_forward(H1, b1, activation, H1, H2)
        else:
            K.bias_activation_forward_serial(H1, b1, activation, H1, H2)
    else:
        if PARALLEL:
            K.linear_forward(X, W1, b1, H1)
            K.activation_forward(H1, activation, H2)
        else:
            K.linear_forward_serial(X, W1, b1, H1)
            K.activation_forward_serial(H1, activation, H2)
    if USE_BLAS:
        K.linear_forward_blas(H2, W2, b2, Z)
    elif PARALLEL:
        K.linear_forward(H2, W2, b2, Z)
    else:
        K.linear_forward_serial(H2, W2, b2, Z)


def _loss_and_grads(
    X, Y, sw, scale, W1, b1, W2, b2, alpha, activation, output, ws, W2t, fold_l2,
):
    """Forward, loss and every parameter gradient of one batch into ``ws``.

    Returns ``scale * sum_i sw_i CE_i + scale * alpha / 2 (|W1|^2 + |W2|^2)``,
    the batch loss with scikit-learn's L2 penalty (``scale = 1 / sum(sw)``).
    With ``fold_l2`` the L2 term is left out of both the loss and the weight
    gradients: the epoch adds the penalty it tracks and the update applies
    ``(alpha * scale) W`` (see :func:`_epoch`), saving two passes over the weights.
    """
    _, _, _, H1a, H2a, Za, dZa, dH1a, gW1, gb1, gW2, gb2, _ = ws
    n = X.shape[0]
    H1 = H1a[:n]
    H2 = H2a[:n]
    Z = Za[:n]
    dZ = dZa[:n]
    dH1 = dH1a[:n]
    _forward(X, W1, b1, W2, b2, activation, H1, H2, Z)
    loss = _output_loss(Z, Y, sw, scale, output, dZ)  # P overwrites Z
    reg, penalty = _l2_terms(W1, W2, alpha, scale, fold_l2)
    loss += penalty
    # dZ -> db2, dW2 = H2ᵀ dZ + reg W2, dH1 = (dZ W2ᵀ) * act'(H1) fused
    if PARALLEL:
        K.bias_grad(dZ, gb2)
    else:
        K.bias_grad_serial(dZ, gb2)
    if USE_BLAS:
        K.weight_grad_blas(H2, dZ, W2, reg, gW2)
    elif PARALLEL:
        K.weight_grad(H2, dZ, W2, reg, gW2)
    else:
        K.weight_grad_serial(H2, dZ, W2, reg, gW2)
    if PARALLEL:
        K.transpose_serial(W2, ws[12][:0], W2t)  # (C, H): dH2 is then built row by row
        K.hidden_backward_t(dZ, W2t, H1, H2, activation, dH1)
        K.bias_grad(dH1, gb1)
    elif USE_BLAS:
        # dH2 = dZ W2ᵀ by BLAS into dH1, then act' and db1 in one pass (in place)
        K.input_grad_blas(dZ, W2, dH1)  # (n, H)
        K.activation_backward_bias(dH1, H1, H2, activation, dH1, gb1)
    else:
        K.transpose_serial(W2, ws[12][:0], W2t)
        K.hidden_backward_bias_t(dZ, W2t, H1, H2, activation, dH1, gb1)
    if USE_BLAS:
        K.weight_grad_blas(X, dH1, W1, reg, gW1)
    elif PARALLEL:
        K.weight_grad(X, dH1, W1, reg, gW1)
    else:
        K.weight_grad_serial(X, dH1, W1, reg, gW1)
    return loss


def _loss_and_grads_t(
    X, rows, Y, sw, scale, W1t, b1, W2t, b2, alpha, activation, output, ws, wt, fold_l2,
):
    """Run the loops path of one batch, weights and weight gradients transposed.

    ``rows`` are the batch's row indices into ``X`` (gathered inside the
    kernels); gradients land in ``gW1t``, ``gb1``, ``gW2t``, ``gb2``. Same loss
    and same gradients as :func:`_loss_and_grads` (``fold_l2`` included), only
    the layout differs.
    """
    _, _, _, H1a, H2a, Za, dZa, dH1a, _, gb1, _, gb2, _ = ws
    _, _, gW1t, gW2t, Xtf, H2tf, dZtf, dH1tf, _, _, _, _ = wt
    m = rows.shape[0]
    D = X.shape[1]
    H = W1t.shape[0]
    C = W2t.shape[0]
    H1 = H1a[:m]
    H2 = H2a[:m]
    Z = Za[:m]
    dZ = dZa[:m]
    dH1 = dH1a[:m]
    Xt = Xtf[: D * m].reshape(D, m)
    H2t = H2tf[: H * m].reshape(H, m)
    dZt = dZtf[: C * m].reshape(C, m)
    dH1t = dH1tf[: H * m].reshape(H, m)
    none = b1[:0]
    in_order = rows[:0]
    if PARALLEL:
        K.matmul_nt(X, rows, W1t, b1, H1)  # H1 = X[rows] W1 + b1     (m, H)
        K.activation_forward(H1, activation, H2)  # (m, H)
        K.matmul_nt(H2, in_order, W2t, b2, Z)  # Z = H2 W2 + b2       (m, C)
    else:
        K.matmul_nt_serial(X, rows, W1t, b1, H1)
        K.activation_forward_serial(H1, activation, H2)
        K.matmul_nt_serial(H2, in_order, W2t, b2, Z)
    loss = _output_loss(Z, Y, sw, scale, output, dZ)  # P overwrites Z
    reg, penalty = _l2_terms(W1t, W2t, alpha, scale, fold_l2)
    loss += penalty
    K.bias_grad_serial(dZ, gb2)
    K.transpose_serial(dZ, in_order, dZt)  # (C, m)
    K.transpose_serial(H2, in_order, H2t)  # (H, m)
    K.matmul_nt_serial(dZt, in_order, H2t, none, gW2t)  # dW2ᵀ = dZᵀ H2   (C, H)
    K.hidden_backward_bias_t(dZ, W2t, H1, H2, activation, dH1, gb1)  # dH1 (m, H), db1
    if PARALLEL:
        K.transpose(X, rows, Xt)  # X[rows]ᵀ          (D, m)
    else:
        K.transpose_serial(X, rows, Xt)
    K.transpose_serial(dH1, in_order, dH1t)  # (H, m)
    if PARALLEL:
        K.matmul_nt(dH1t, in_order, Xt, none, gW1t)  # dW1ᵀ = dH1ᵀ X   (H, D)
    else:
        K.matmul_nt_serial(dH1t, in_order, Xt, none, gW1t)
    if reg != 0:
        K.add_scaled(gW2t, reg, W2t)
        K.add_scaled(gW1t, reg, W1t)
    return loss


@jit
def _output_loss(Z, Y, sw, scale, output, dZ):
    """Output activation, loss and ``dZ`` of a batch for the output code ``output``.

    The kernels overwrite Z with P (P aliases Z): Z is not needed again.
    Serial on purpose: O(n C) work, and a parallel sum would allocate its
    per-thread reduction array on every batch.
    """
    if output == SOFTMAX:
        return K.softmax_cross_entropy_serial(Z, Y, sw, scale, Z, dZ)
    if output == LOGISTIC_OUTPUT:
        return K.sigmoid_cross_entropy_serial(Z, Y, sw, scale, Z, dZ)
    if output == IDENTITY_OUTPUT:
        # scikit-learn's squared_error averages over the C outputs, while its
        # gradient is that of the sum (``_backprop``: deltas = pred - y for every
        # loss). So the loss is divided by C and dZ is not: loss_ and the
        # weights (L-BFGS's line searches included) are MLPRegressor's.
        return K.identity_squared_error_serial(Z, Y, sw, scale, Z, dZ) / Z.shape[1]
    return K.exp_poisson_deviance_serial(Z, Y, sw, scale, Z, dZ)


@jit
def _l2_terms(W1, W2, alpha, scale, fold_l2):
    """``(reg, penalty)`` of a batch: the gradient's ``reg W`` factor and the loss term.

    Both are zero with ``fold_l2``, where the epoch applies them itself.
    """
    reg = alpha * scale
    if fold_l2:
        return reg * 0, 0.0
    return reg, _penalty(W1, W2, alpha, scale)


@jit
def _penalty(W1, W2, alpha, scale):
    """Scale * alpha / 2 * (|W1|^2 + |W2|^2), the L2 term of a batch's loss."""
    if alpha == 0:
        return 0.0
    return 0.5 * alpha * scale * (_sum_squares(W1) + _sum_squares(W2))


@jit
def _sum_squares(A):
    sq = 0.0  # float64, as the update kernels' own sums
    for v in A.reshape(-1):
        sq += v * v
    return sq


# the minibatch gather: kernels.gather_rows (explicit loop, next rows prefetched)
_gather_rows = K.gather_rows


@jit
def _update(optimizer, p, g, s1, s2, hyper, reg):
    """Update ``p`` with gradient ``g + reg p``; return the new ``sum(p**2)``."""
    learning_rate, momentum, nesterov, step_size, b1, b2, eps = hyper
    if optimizer == SGD:
        return K.sgd_update(p, g, s1, learning_rate, momentum, nesterov, reg)
    return K.adam_update(p, g, s1, s2, step_size, b1, b2, eps, reg)


def _epoch(
    X,
    Y,
    sw,
    params,
    state,
    ws,
    wt,
    batch_size,
    seed,
    do_shuffle,
    optimizer,
    learning_rate,
    momentum,
    nesterov,
    beta_1,
    beta_2,
    epsilon,
    step,
    alpha,
    activation,
    output,
):
    W1, b1, W2, b2 = params
    Xb, Yb, swb, _, _, _, _, _, gW1, gb1, gW2, gb2, order = ws
    W1t, W2t, gW1t, gW2t, _, _, _, _, s1W1t, s1W2t, s2W1t, s2W2t = wt
    n = X.shape[0]
    _epoch_order(order, seed, do_shuffle)
    if not USE_BLAS:
        # weights and their optimizer state transposed for the whole epoch
        K.transpose_serial(W1, order[:0], W1t)
        K.transpose_serial(W2, order[:0], W2t)
        K.transpose_serial(state[0], order[:0], s1W1t)
        K.transpose_serial(state[2], order[:0], s1W2t)
        if optimizer == ADAM:  # for SGD the second half of state aliases the first
            K.transpose_serial(state[4], order[:0], s2W1t)
            K.transpose_serial(state[6], order[:0], s2W2t)
    # The L2 penalty needs |W1|^2 + |W2|^2 before every batch. Each weight
    # update returns the new sum of squares, so it is summed here once per
    # epoch and then carried from batch to batch at no extra pass.
    sq = 0.0
    if alpha != 0:
        if USE_BLAS:
            sq = _sum_squares(W1) + _sum_squares(W2)
        else:
            sq = _sum_squares(W1t) + _sum_squares(W2t)
    total = 0.0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        m = stop - start
        rows = order[start:stop]
        _gather_rows(Y, rows, Yb)
        wsum, scale = _batch_weights(sw, rows, swb)
        Ym = Yb[:m]
        swm = swb[:m]
        step += 1
        step_size = _step_size(optimizer, learning_rate, beta_1, beta_2, step)
        hyper = (learning_rate, momentum, nesterov, step_size, beta_1, beta_2, epsilon)
        if USE_BLAS:
            if do_shuffle:
                _gather_rows(X, rows, Xb)
                Xm = Xb[:m]
            else:
                Xm = X[start:stop]
            loss = _loss_and_grads(
                Xm, Ym, swm, scale, W1, b1, W2, b2, alpha, activation, output, ws, wt[1], True,
            )
        else:
            loss = _loss_and_grads_t(
                X, rows, Ym, swm, scale, W1t, b1, W2t, b2, alpha, activation, output, ws, wt,
                True,
            )
        if alpha != 0:  # scikit-learn's L2 penalty of this batch
            loss += 0.5 * alpha * scale * sq
        reg = alpha * scale
        if USE_BLAS:
            sq = _update(optimizer, W1, gW1, state[0], state[4], hyper, reg)
            sq += _update(optimizer, W2, gW2, state[2], state[6], hyper, reg)
        else:
            sq = _update(optimizer, W1t, gW1t, s1W1t, s2W1t, hyper, reg)
            sq += _update(optimizer, W2t, gW2t, s1W2t, s2W2t, hyper, reg)
        _update(optimizer, b1, gb1, state[1], state[5], hyper, reg * 0)  # biases: no L2
        _update(optimizer, b2, gb2, state[3], state[7], hyper, reg * 0)
        total += loss * wsum
    if not USE_BLAS:
        K.transpose_serial(W1t, order[:0], W1)
        K.transpose_serial(W2t, order[:0], W2)
        K.transpose_serial(s1W1t, order[:0], state[0])
        K.transpose_serial(s1W2t, order[:0], state[2])
        if optimizer == ADAM:
            K.transpose_serial(s2W1t, order[:0], state[4])
            K.transpose_serial(s2W2t, order[:0], state[6])
    return total, step


# ------------------------------------------------- the epoch, data-parallel over the batch
# 16 float32 (8 float64) fill a 64-byte cache line: W1's rows and Xb's columns are
# split on such boundaries so two threads never write one line
_ALIGN = 16


@jit
def _share_forward_backward(X, rows, gather, Y, sw, scale, W1, b1, W2, b2, activation, output,
                            ws, lo, hi, gb1, gb2):
    """Forward and backward of the batch's rows ``lo:hi`` into the workspace; return the loss.

    Gathers the rows (``rows[lo:hi]`` of ``X``; ``X[lo:hi]`` itself when not
    ``gather``), then ``H1 = X W1 + b1``, ``H2 = act(H1)``, ``Z = H2 W2 + b2``,
    ``P`` and ``dZ``, ``dH1 = (dZ W2ᵀ) act'(H1)``, each product one BLAS call on
    this thread, and the share's column sums ``gb1 = 1ᵀ dH1``, ``gb2 = 1ᵀ dZ``.
    Returns ``scale * sum_i sw_i loss_i`` over the share (no L2 term).
    """
    Xb, Yb, _, H1a, H2a, Za, dZa, dH1a = ws[:8]
    Ys = Yb[lo:hi]
    sws = sw[lo:hi]
    if gather:
        Xs = Xb[lo:hi]
        _gather_rows(X, rows[lo:hi], Xs)
        _gather_rows(Y, rows[lo:hi], Ys)
    else:
        Xs = X[lo:hi]
        Ys = Y[lo:hi]
    H1 = H1a[lo:hi]
    H2 = H2a[lo:hi]
    Z = Za[lo:hi]
    dZ = dZa[lo:hi]
    dH1 = dH1a[lo:hi]
    K.gemm(Xs, W1, H1)  # (m_t, H)
    K.bias_activation_forward_serial(H1, b1, activation, H1, H2)
    K.gemm(H2, W2, Z)  # (m_t, C)
    K.bias_activation_forward_serial(Z, b2, K.IDENTITY, Z, Z)
    loss = _output_loss(Z, Ys, sws, scale, output, dZ)  # P overwrites Z
    K.bias_grad_serial(dZ, gb2)
    K.gemm(dZ, W2, dH1, False, True)  # dH2 = dZ W2ᵀ   (m_t, H)
    K.activation_backward_bias(dH1, H1, H2, activation, dH1, gb1)
    return loss


@jit
def _share_grads(Xm, dH1, H2, dZ, params, grads, partial, reg, t, T):
    """Gradients of the ``t``-th share of every parameter's rows, from the whole batch.

    ``dW1[d0:d1] = Xm[:, d0:d1]ᵀ dH1 (+ reg W1[d0:d1])`` and ``dW2[h0:h1] =
    H2[:, h0:h1]ᵀ dZ (+ reg W2[h0:h1])``, one BLAS call each reading the batch's
    columns in place, and the bias gradients of columns ``h0:h1`` and ``c0:c1``
    summed over the shares' partial column sums in share order. Returns the
    row ranges ``(d0, d1, h0, h1, c0, c1)``.
    """
    W1, b1, W2, b2 = params
    gW1, gb1, gW2, gb2 = grads
    gb1p, gb2p = partial
    D, H = W1.shape
    C = W2.shape[1]
    d0, d1 = K.share(D, T, t, _ALIGN)
    if d1 > d0:
        K.gemm(Xm[:, d0:d1], dH1, gW1[d0:d1], True)  # (d1 - d0, H)
        if reg != 0:
            K.add_scaled(gW1[d0:d1], reg, W1[d0:d1])
    h0, h1 = K.share(H, T, t)
    if h1 > h0:
        K.gemm(H2[:, h0:h1], dZ, gW2[h0:h1], True)  # (h1 - h0, C)
        if reg != 0:
            K.add_scaled(gW2[h0:h1], reg, W2[h0:h1])
        _sum_shares(gb1p, h0, h1, gb1)
    c0, c1 = K.share(C, T, t)
    _sum_shares(gb2p, c0, c1, gb2)
    return d0, d1, h0, h1, c0, c1


@jit
def _sum_shares(partial, lo, hi, out):
    """out[lo:hi] = the sum over shares of ``partial[:, lo:hi]``, in share order."""
    for j in range(lo, hi):
        acc = partial[0, j]
        for u in range(1, partial.shape[0]):
            acc += partial[u, j]
        out[j] = acc


@jit
def _share_update(Xm, dH1, H2, dZ, params, state, grads, partial, optimizer, hyper, reg, t, T):
    """Gradients (:func:`_share_grads`) and optimizer step of share ``t``'s rows; return sum(p**2).

    The L2 term ``reg W`` goes into the step, not the gradient (as ``_epoch``'s
    ``fold_l2``).
    """
    W1, b1, W2, b2 = params
    gW1, gb1, gW2, gb2 = grads
    d0, d1, h0, h1, c0, c1 = _share_grads(Xm, dH1, H2, dZ, params, grads, partial, reg * 0, t, T)
    sq = _update(optimizer, W1[d0:d1], gW1[d0:d1], state[0][d0:d1], state[4][d0:d1], hyper,
                 reg)
    sq += _update(optimizer, W2[h0:h1], gW2[h0:h1], state[2][h0:h1], state[6][h0:h1], hyper,
                  reg)
    _update(optimizer, b1[h0:h1], gb1[h0:h1], state[1][h0:h1], state[5][h0:h1], hyper, reg * 0)
    _update(optimizer, b2[c0:c1], gb2[c0:c1], state[3][c0:c1], state[7][c0:c1], hyper, reg * 0)
    return sq


@jit(parallel=True)
def _loss_and_grads_shares(X, Y, sw, scale, params, alpha, activation, output, ws, shares):
    """:func:`_loss_and_grads` of the whole of ``X`` split into ``T`` shares (for L-BFGS).

    The two parallel loops of :func:`_epoch_shares` without the update: the
    shares' forward and backward, then each share's rows of every gradient,
    ``reg W`` included. Returns the loss with its L2 term.
    """
    W1, b1, W2, b2 = params
    gW1, gb1, gW2, gb2 = ws[8:12]
    gb1p, gb2p, lossp, _ = shares
    T = lossp.shape[0]
    n = X.shape[0]
    for t in numba.prange(T):
        lo, hi = K.share(n, T, t)
        lossp[t] = _share_forward_backward(X, ws[12][:0], False, Y, sw, scale, W1, b1, W2, b2,
                                           activation, output, ws, lo, hi, gb1p[t], gb2p[t])
    loss = 0.0
    for t in range(T):
        loss += lossp[t]
    loss += _penalty(W1, W2, alpha, scale)
    reg = alpha * scale
    for t in numba.prange(T):
        _share_grads(X, ws[7][:n], ws[4][:n], ws[6][:n], params, (gW1, gb1, gW2, gb2),
                     (gb1p, gb2p), reg, t, T)
    return loss


@jit(parallel=True)
def _epoch_shares(X, Y, sw, params, state, ws, shares, batch_size, seed, do_shuffle, codes,
                  hyper, step):
    """One epoch with every batch split into ``T`` shares of rows run side by side.

    ``codes`` is ``(optimizer, activation, output)``, ``hyper`` is ``(learning_rate,
    momentum, nesterov, beta_1, beta_2, epsilon, alpha)`` and ``shares`` holds the
    per-share scratch ``(gb1 (T, H), gb2 (T, C), loss (T,), sq (T,))``.

    Each batch runs two parallel loops of ``T`` iterations. In the first, share
    ``t`` takes its contiguous block of the batch's rows through the forward and
    backward pass (:func:`_share_forward_backward`). In the second, share ``t``
    forms the gradient of its block of rows of every parameter (``dW1 = Xᵀ dH1``
    over the whole batch, for rows ``d0:d1`` of W1) and updates those rows
    (:func:`_share_update`), so no gradient is ever summed across threads but
    the bias columns, which are summed in share order. Every split comes from
    the shapes and ``T``; every product is one single-threaded BLAS call; so
    the weights depend on ``T``, never on timing. Same loss, L2 penalty, step
    counts and return value as :func:`_epoch`.
    """
    optimizer, activation, output = codes
    learning_rate, momentum, nesterov, beta_1, beta_2, epsilon, alpha = hyper
    W1, b1, W2, b2 = params
    Xb, Yb, swb, H1a, H2a, Za, dZa, dH1a, gW1, gb1, gW2, gb2, order = ws
    gb1p, gb2p, lossp, sqp = shares
    T = lossp.shape[0]
    n = X.shape[0]
    _epoch_order(order, seed, do_shuffle)
    sq = 0.0
    if alpha != 0:
        sq = _sum_squares(W1) + _sum_squares(W2)
    total = 0.0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        m = stop - start
        rows = order[start:stop]
        wsum, scale = _batch_weights(sw, rows, swb)
        step += 1
        step_size = _step_size(optimizer, learning_rate, beta_1, beta_2, step)
        upd = (learning_rate, momentum, nesterov, step_size, beta_1, beta_2, epsilon)
        Xg = X if do_shuffle else X[start:stop]
        Yg = Y if do_shuffle else Y[start:stop]
        for t in numba.prange(T):
            lo, hi = K.share(m, T, t)
            lossp[t] = _share_forward_backward(
                Xg, rows, do_shuffle, Yg, swb, scale, W1, b1, W2, b2, activation, output, ws,
                lo, hi, gb1p[t], gb2p[t],
            )
        loss = 0.0
        for t in range(T):
            loss += lossp[t]
        if alpha != 0:  # scikit-learn's L2 penalty of this batch
            loss += 0.5 * alpha * scale * sq
        reg = alpha * scale
        Xm = Xb[:m] if do_shuffle else X[start:stop]
        for t in numba.prange(T):
            sqp[t] = _share_update(
                Xm, dH1a[:m], H2a[:m], dZa[:m], params, state, (gW1, gb1, gW2, gb2),
                (gb1p, gb2p), optimizer, upd, W1.dtype.type(reg), t, T,
            )
        sq = 0.0
        for t in range(T):
            sq += sqp[t]
        total += loss * wsum
    return total, step


def _check_workspace(workspace, X, Y, params, batch_size):
    # The kernels run without bounds checks: a workspace made for other sizes
    # would be written past its end, so refuse it here.
    n, D = X.shape
    H, C = params[2].shape
    if not workspace.fits(n, D, H, C, batch_size, X.dtype) or Y.shape != (n, C):
        Xb, Yb, _, H1 = workspace.buffers[:4]
        raise ValueError(
            f"workspace was made for {workspace.buffers[-1].shape[0]} samples in batches of "
            f"{workspace.batch_size} with D={Xb.shape[1]}, H={H1.shape[1]}, C={Yb.shape[1]}, "
            f"{workspace.dtype}; got {n} samples in batches of {min(batch_size, n)} with D={D}, "
            f"H={H}, C={C}, {X.dtype}"
        )


def init_optimizer_state(params, optimizer):
    """Zeroed velocities (SGD) or first and second moments (Adam) for ``params``.

    Returned as one tuple of eight arrays; SGD uses the first four.
    """
    W1, b1, W2, b2 = params
    zeros = tuple(np.zeros_like(p) for p in (W1, b1, W2, b2))
    if optimizer == "adam":
        return zeros + tuple(np.zeros_like(p) for p in (W1, b1, W2, b2))
    return zeros + zeros  # unused second half: same arrays, no extra memory


def run_epoch(
    X,
    Y,
    sample_weight,
    params,
    state,
    workspace,
    *,
    optimizer="sgd",
    learning_rate=0.001,
    momentum=0.0,
    nesterov=False,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-8,
    step=0,
    alpha=0.0,
    activation="relu",
    output="softmax",
    shuffle=True,
    seed=0,
    use_blas=True,
    parallel=False,
    blas_threads=None,
    n_shares=1,
):
    """Run one compiled epoch, updating ``params`` and ``state`` in place.

    ``use_blas``, ``parallel`` and ``blas_threads`` (the BLAS thread count for
    the epoch; ``None``: the process's own) are the kernel options that
    :func:`kernel_options` picks; they change speed and the rounding of sums,
    not the arithmetic.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        C-contiguous, in the working dtype.
    Y : ndarray of shape (n_samples, n_outputs)
        Target matrix in the working dtype (one-hot rows for softmax).
    sample_weight : ndarray of shape (n_samples,)
        Per-sample weights in the working dtype.
    params : tuple (W1, b1, W2, b2)
        Updated in place.
    state : tuple of 8 arrays
        From :func:`init_optimizer_state`; updated in place.
    workspace : Workspace
        Buffers for this problem's sizes.

    Returns
    -------
    mean_loss : float
        The epoch's loss: each batch's loss (with the L2 penalty) weighted by its
        total sample weight, divided by the total weight.
    step : int
        The number of updates made so far (Adam's ``t``), ``step`` plus batches.
    """
    _check_workspace(workspace, X, Y, params, workspace.batch_size)
    if workspace.full_batch:
        raise ValueError("run_epoch needs a workspace made with full_batch=False")
    dt = X.dtype.type
    opt = ADAM if optimizer == "adam" else SGD
    act, out = K.ACTIVATION_CODES[activation], OUTPUT_CODES[output]
    if n_shares > 1:
        hyper = (dt(learning_rate), dt(momentum), bool(nesterov), dt(beta_1), dt(beta_2),
                 dt(epsilon), dt(alpha))
        with _compiled_call(True, False, 1), _jit.parallel_threads(n_shares):
            total, new_step = _epoch_shares(
                X, Y, sample_weight, params, state, workspace.buffers,
                workspace.shares(n_shares), workspace.batch_size, np.uint64(seed),
                bool(shuffle), (opt, act, out), hyper, int(step),
            )
    else:
        with _compiled_call(use_blas, parallel, blas_threads) as run:
            total, new_step = run._epoch(
                X, Y, sample_weight, params, state, workspace.buffers, workspace.tbuffers,
                workspace.batch_size, np.uint64(seed), bool(shuffle), opt, dt(learning_rate),
                dt(momentum), bool(nesterov), dt(beta_1), dt(beta_2), dt(epsilon), int(step),
                dt(alpha), act, out,
            )
    weight = float(sample_weight.sum())
    return total / weight if weight > 0 else float("nan"), new_step


def loss_and_grads(
    X, Y, sample_weight, params, workspace, *, alpha=0.0, activation="relu",
    output="softmax", use_blas=True, parallel=False, blas_threads=None, n_shares=1,
):
    """Full-batch loss and gradients ``(loss, (gW1, gb1, gW2, gb2))`` (for L-BFGS).

    The workspace must have been made with ``batch_size >= n_samples`` (best
    with ``full_batch=True``, which holds no copy of X); the returned gradients
    are views into it, overwritten by the next call.
    """
    W1, b1, W2, b2 = params
    _check_workspace(workspace, X, Y, params, X.shape[0])
    wsum = float(sample_weight.sum())
    dt = X.dtype.type
    if n_shares > 1:
        with _compiled_call(True, False, 1), _jit.parallel_threads(n_shares):
            loss = _loss_and_grads_shares(
                X, Y, sample_weight, dt(1.0 / wsum), params, dt(alpha),
                K.ACTIVATION_CODES[activation], OUTPUT_CODES[output], workspace.buffers,
                workspace.shares(n_shares),
            )
        return loss, workspace.buffers[8:12]
    with _compiled_call(use_blas, parallel, blas_threads) as run:
        loss = run._loss_and_grads(
            X, Y, sample_weight, dt(1.0 / wsum), W1, b1, W2, b2, dt(alpha),
            K.ACTIVATION_CODES[activation], OUTPUT_CODES[output], workspace.buffers,
            workspace.tbuffers[1], False,
        )
    return loss, workspace.buffers[8:12]


@jit
def _all_finite(X):
    # No early exit: the loop then vectorises (a call on one Fashion-MNIST row
    # took 0.56 us against 1.07 us). (A sum of x - x would be quicker still, but
    # the fastmath flags let LLVM fold it to 0, and then NaN passed.)
    bad = False
    for i in range(X.shape[0]):  # two loops: X may be strided
        for j in range(X.shape[1]):
            bad |= not np.isfinite(X[i, j])
    return not bad


@jit
def _output_block(Z, output, argmax, labels):
    """Apply the output layer to one block of logits ``Z`` (m, C): labels, or ``P`` in ``Z``.

    With ``argmax``, ``labels[i]`` (m,) becomes the index of row ``i``'s largest
    logit and ``Z`` is left as it is: softmax and sigmoid are increasing, so the
    largest logit is the largest probability and labels need no exp. Otherwise
    ``Z`` is overwritten with the output activation: softmax (each row's
    maximum subtracted first, so no exp overflows), the logistic sigmoid (the
    branch on the sign keeps ``exp`` of a non-positive number only), ``exp``
    (the Poisson mean), or left as it is (identity). Shared by the dense and the
    sparse predictions (:func:`_forward_proba`, ``solvers_sparse._forward_proba_sparse``).
    """
    m, C = Z.shape
    if argmax:
        for i in range(m):
            best = 0
            for c in range(1, C):
                if Z[i, c] > Z[i, best]:
                    best = c
            labels[i] = best
    elif output == SOFTMAX:
        for i in range(m):
            mx = Z[i, 0]
            for c in range(1, C):
                mx = max(mx, Z[i, c])
            s = Z.dtype.type(0)
            for c in range(C):
                e = np.exp(Z[i, c] - mx)
                Z[i, c] = e
                s += e
            for c in range(C):
                Z[i, c] /= s
    elif output == LOGISTIC_OUTPUT:
        one = Z.dtype.type(1)
        for i in range(m):
            for c in range(C):
                z = Z[i, c]
                if z >= 0:
                    Z[i, c] = one / (one + np.exp(-z))
                else:
                    e = np.exp(z)
                    Z[i, c] = e / (one + e)
    elif output == EXP_OUTPUT:  # Poisson regression: the mean is exp(Z)
        for i in range(m):
            for c in range(C):
                Z[i, c] = np.exp(Z[i, c])
    # IDENTITY_OUTPUT: the outputs Z are the predictions


def _forward_proba(X, W1, b1, W2, b2, activation, output, block, argmax, check):
    """Return ``(P, labels)``: outputs, or with ``argmax`` each row's best index.

    ``P`` is the output activation of Z: probabilities (softmax, logistic), Z
    itself (identity) or exp(Z) (the Poisson mean).

    The unused one of the two has no rows; with ``check`` and a non-finite entry
    in ``X``, both have none. Buffers are allocated here once, none per block.
    """
    n = X.shape[0]
    C = W2.shape[1]
    if check and not _all_finite(X):
        return np.empty((0, C), X.dtype), np.empty(0, np.int64)
    B = max(1, min(block, n))
    H1 = np.empty((B, W1.shape[1]), X.dtype)
    H2 = np.empty_like(H1)
    # labels need one block of logits, reused; probabilities need all of them
    out = np.empty((B if argmax else n, C), X.dtype)
    labels = np.empty(n if argmax else 0, np.int64)
    for start in range(0, n, B):
        stop = min(start + B, n)
        m = stop - start
        Zm = out[:m] if argmax else out[start:stop]
        _forward(X[start:stop], W1, b1, W2, b2, activation, H1[:m], H2[:m], Zm)
        _output_block(Zm, output, argmax, labels[start:stop])  # labels, or P in place
    if argmax:
        return out[:0], labels
    return out, labels


@jit(parallel=True)
def _forward_proba_shares(X, W1, b1, W2, b2, activation, output, block, argmax, check, T):
    """:func:`_forward_proba` with the rows split into ``T`` shares run side by side.

    Share ``t`` takes its contiguous rows (:func:`fastmlp.kernels.share`) in blocks of ``block``
    with buffers of its own and one-thread BLAS; every row's outputs are what
    :func:`_forward_proba` computes for it, whatever ``T``.
    """
    n, D = X.shape
    H = W1.shape[1]
    C = W2.shape[1]
    B = max(1, min(block, -(-n // T)))
    H1s = np.empty((T, B, H), X.dtype)
    H2s = np.empty((T, B, H), X.dtype)
    Zs = np.empty((T, B, C), X.dtype)
    out = np.empty((0 if argmax else n, C), X.dtype)
    labels = np.empty(n if argmax else 0, np.int64)
    finite = np.ones(T, np.bool_)
    for t in numba.prange(T):
        lo, hi = K.share(n, T, t)
        ok = not check or _all_finite(X[lo:hi])
        finite[t] = ok
        for start in range(lo, hi if ok else lo, B):
            stop = min(start + B, hi)
            m = stop - start
            Zm = Zs[t, :m] if argmax else out[start:stop]
            H1 = H1s[t, :m]
            H2 = H2s[t, :m]
            K.gemm(X[start:stop], W1, H1)  # (m, H)
            K.bias_activation_forward_serial(H1, b1, activation, H1, H2)
            K.gemm(H2, W2, Zm)  # (m, C)
            K.bias_activation_forward_serial(Zm, b2, K.IDENTITY, Zm, Zm)
            _output_block(Zm, output, argmax, labels[start:stop])
    if not finite.all():
        return np.empty((0, C), X.dtype), np.empty(0, np.int64)
    return out, labels


def forward_proba(
    X, params, *, activation="relu", output="softmax", block=1024, use_blas=True, parallel=False,
    blas_threads=None, n_shares=1, argmax=False, check_finite=False,
):
    """Output activations ``P`` of shape (n_samples, n_outputs), in blocks of rows.

    Probabilities for 'softmax' and 'logistic', the predictions for 'identity'
    and 'exp' (regression).

    With ``argmax=True``, return instead the index of each row's largest output
    (int64, shape (n_samples,)): the predicted class of a softmax model, found
    from the logits without computing the probabilities.

    With ``check_finite=True``, return ``None`` when ``X`` holds a NaN or an
    infinity (checked in the same compiled call, so the caller can validate
    and raise only then).

    ``blas_threads`` is the BLAS thread count (``None``: the process's own),
    held for the call as in :func:`run_epoch`. With ``n_shares > 1`` the rows
    are split into that many shares run side by side (:func:`_forward_proba_shares`).

    Allocates the output and two hidden buffers of ``block`` rows, nothing per block.
    """
    W1, b1, W2, b2 = params
    n = X.shape[0]
    work = min(n, block) * W1.shape[1] * max(W1.shape[0], W2.shape[1])  # largest product
    parallel = parallel and n > 1
    if n_shares > 1 and n > 1:
        T = min(int(n_shares), n)
        with _compiled_call(True, False, 1), _jit.parallel_threads(T):
            P, labels = _forward_proba_shares(
                X, W1, b1, W2, b2, K.ACTIVATION_CODES[activation], OUTPUT_CODES[output],
                max(1, block), bool(argmax), bool(check_finite), T,
            )
        if check_finite and P.shape[0] == 0 and labels.shape[0] == 0:
            return None
        return labels if argmax else P
    args = (
        X, W1, b1, W2, b2, K.ACTIVATION_CODES[activation], OUTPUT_CODES[output],
        max(1, block), bool(argmax), bool(check_finite),
    )
    if not parallel and work <= ONE_THREAD_WORK and _counts_never_matter():
        # a small serial call (one-row predict) needs no BLAS mode and no lock:
        # calling it straight saves the context managers (about 4 of 11 us)
        P, labels = _PATHS[bool(use_blas), False]._forward_proba(*args)
    else:
        with _compiled_call(use_blas, parallel, blas_threads, work) as run:
            P, labels = run._forward_proba(*args)
    if check_finite and n and P.shape[0] == 0 and labels.shape[0] == 0:
        return None
    return labels if argmax else P


_SMALL_WORK_FREE: list[bool] = []  # whether counts_matter(small work) is False, found once


def _counts_never_matter() -> bool:
    """Whether a product of at most ``ONE_THREAD_WORK`` rounds alike at every BLAS count."""
    if not _SMALL_WORK_FREE:
        _SMALL_WORK_FREE.append(not counts_matter(ONE_THREAD_WORK))
    return _SMALL_WORK_FREE[0]


# ------------------------------------------------------- choosing a matmul path
# Multiply-adds of one batch's forward pass (rows * D * H) below which a second
# thread costs more in synchronisation than it saves (2**21: e.g. 200 rows of 64
# features and 160 hidden units): such batches run on the calling thread, with
# BLAS on one thread.
PARALLEL_MIN_WORK = 1 << 21


def kernel_options(n_rows, n_features, n_hidden, *, n_threads=None):
    """Kernel options of the compiled calls for batches of ``n_rows`` (from the shapes alone).

    ``n_threads`` is the estimator's thread count (``None``: every core Numba
    starts, :func:`fastmlp._jit.max_threads`). A batch with enough work is
    split into ``n_shares = n_threads`` shares of rows, each run by its own
    thread with one-thread BLAS (:func:`_epoch_shares`); a smaller batch, or
    ``n_threads=1``, runs on the calling thread with one BLAS thread. The
    choice is a function of the shapes and ``n_threads`` only, so the same
    data and seed give the same weights however busy the machine is.
    """
    T = _jit.thread_count(n_threads)
    small = n_rows * n_features * n_hidden < PARALLEL_MIN_WORK
    n_shares = 1 if small else T
    return {"use_blas": True, "parallel": False, "blas_threads": 1, "n_shares": n_shares}


@contextlib.contextmanager
def _compiled_call(use_blas, parallel, n_blas, work=None):
    """Enter what a compiled call needs; yield its path (see :func:`path`).

    The BLAS thread count of a BLAS path is held for the call
    (:func:`fastmlp._blas.blas_threads`) unless its products are too small for
    the count to matter (``work``, the largest product's multiply-adds). A
    parallel path holds :data:`fastmlp._jit.PARALLEL_LOCK`: Numba's workqueue
    threading layer aborts the process when two Python threads launch parallel
    regions at once.
    """
    with contextlib.ExitStack() as stack:
        if use_blas and (work is None or counts_matter(work)):
            stack.enter_context(blas_threads(n_blas))
        if parallel:
            stack.enter_context(_jit.PARALLEL_LOCK)
        yield path(use_blas, parallel)


# ------------------------------------------------------- the epoch, phase by phase
# For the speed report (``bench.epoch_phases``): the BLAS path's batch loop with
# only one of its phases run, over the same batches as :func:`_epoch`, so each
# phase's share of an epoch is timed in compiled code. Compiled only when the
# report asks for it (nothing a fit runs calls it).
EPOCH_PHASES = (
    "shuffle",
    "gather X, Y, sw rows",
    "GEMM X W1",
    "bias + activation",
    "GEMM H2 W2 (+ b2)",
    "softmax + CE, dZ",
    "bias grad db2",
    "GEMM H2ᵀ dZ",
    "GEMM dZ W2ᵀ",
    "act' + db1",
    "GEMM Xᵀ dH1",
    "update W1",
    "update W2, b1, b2",
    "batch bookkeeping (weights, step size, loss)",
)


@jit
def _epoch_phase(
    mask, X, Y, sw, params, state, ws, wt, batch_size, seed, optimizer, learning_rate,
    momentum, nesterov, beta_1, beta_2, epsilon, step, alpha, activation, output,
):
    """Run the phases in ``mask`` (bit ``k``: :data:`EPOCH_PHASES` ``[k]``) of an epoch's batches.

    The BLAS path's batch loop (the one :func:`_epoch` runs for the estimators'
    large problems) with each phase behind its bit: one bit times a phase alone,
    every bit replays the epoch, every bit but one removes a phase. The buffers
    hold whatever the previous call left (the timings do not depend on the
    values); the update phases change ``params`` and ``state``, so pass copies.
    Returns a number the caller may ignore.
    """
    W1, b1, W2, b2 = params
    Xb, Yb, swb, H1a, H2a, Za, dZa, dH1a, gW1, gb1, gW2, gb2, order = ws
    n = X.shape[0]
    acc = 0.0
    if mask & 1:
        for i in range(n):
            order[i] = i
        shuffle(order, seed)
    sq = 0.0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        m = stop - start
        rows = order[start:stop]
        Xm, Ym, swm = Xb[:m], Yb[:m], swb[:m]
        H1, H2, Z, dZ, dH1 = H1a[:m], H2a[:m], Za[:m], dZa[:m], dH1a[:m]
        scale = 1.0 / m
        reg = alpha * scale
        step_size = learning_rate
        if mask & 2:
            _gather_rows(Y, rows, Yb)
            for r in range(m):
                swb[r] = sw[rows[r]]
            _gather_rows(X, rows, Xb)
        if mask & 4:
            K.linear_forward_blas(Xm, W1, b1[:0], H1)
        if mask & 8:
            K.bias_activation_forward_serial(H1, b1, activation, H1, H2)
        if mask & 16:
            K.linear_forward_blas(H2, W2, b2, Z)
        if mask & 32:
            acc += _output_loss(Z, Ym, swm, scale, output, dZ)
        if mask & 64:
            K.bias_grad_serial(dZ, gb2)
        if mask & 128:
            K.weight_grad_blas(H2, dZ, W2, reg * 0, gW2)
        if mask & 256:
            K.input_grad_blas(dZ, W2, dH1)
        if mask & 512:
            K.activation_backward_bias(dH1, H1, H2, activation, dH1, gb1)
        if mask & 1024:
            K.weight_grad_blas(Xm, dH1, W1, reg * 0, gW1)
        hyper = (learning_rate, momentum, nesterov, step_size, beta_1, beta_2, epsilon)
        if mask & 2048:
            sq = _update(optimizer, W1, gW1, state[0], state[4], hyper, reg)
        if mask & 4096:
            sq += _update(optimizer, W2, gW2, state[2], state[6], hyper, reg)
            _update(optimizer, b1, gb1, state[1], state[5], hyper, reg * 0)
            _update(optimizer, b2, gb2, state[3], state[7], hyper, reg * 0)
        if mask & 8192:
            wsum = 0.0
            for r in range(m):
                wsum += swm[r]
            scale = 1.0 / wsum if wsum > 0 else 0.0
            step += 1
            if optimizer == ADAM:
                step_size = learning_rate * np.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
            if alpha != 0:
                acc += 0.5 * alpha * scale * sq
            acc += step_size * wsum
    return acc + sq


# ------------------------------------------------------------ the compiled paths
_PATHS = {
    (use_blas, parallel): specialize(
        (_forward, _loss_and_grads, _loss_and_grads_t, _epoch, _forward_proba),
        suffix=("_blas" if use_blas else "_loops") + ("_parallel" if parallel else "_serial"),
        USE_BLAS=use_blas,
        PARALLEL=parallel,
    )
    for use_blas in (True, False)
    for parallel in (True, False)
}


def path(use_blas, parallel):
    """Return the compiled functions of one path (``_epoch``, ``_loss_and_grads``, ...)."""
    return _PATHS[bool(use_blas), bool(parallel)]
