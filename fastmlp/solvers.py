"""Compiled training loops: whole epochs of minibatch SGD or Adam in Numba.

The estimator calls :func:`run_epoch` once per epoch. Inside, one compiled
function shuffles (from a seed), gathers each minibatch into a preallocated
workspace, runs the forward pass, the fused loss and ``dZ``, the backward pass
and the parameter updates, and returns the epoch's mean loss: no Python runs
per batch and nothing is allocated per batch.

The update rules, the L2 penalty and the loss are scikit-learn's
(``MLPClassifier``), so an epoch here changes the weights as one there does.
"""

from __future__ import annotations

import numpy as np

from . import kernels as K
from ._jit import jit

SGD, ADAM = 0, 1
SOFTMAX, LOGISTIC_OUTPUT = 0, 1
OUTPUT_CODES = {"softmax": SOFTMAX, "logistic": LOGISTIC_OUTPUT}


class Workspace:
    """Every buffer an epoch needs, allocated once per fit.

    ``buffers`` is the tuple handed to compiled code:
    ``(Xb, Yb, swb, H1, H2, Z, dZ, dH1, gW1, gb1, gW2, gb2, order)``.
    """

    def __init__(self, n_samples, n_features, n_hidden, n_outputs, batch_size, dtype):
        dtype = np.dtype(dtype)
        B = min(batch_size, n_samples)
        self.batch_size = B
        self.dtype = dtype
        self.buffers = (
            np.empty((B, n_features), dtype),  # Xb   (B, D) gathered batch
            np.empty((B, n_outputs), dtype),  # Yb   (B, C)
            np.empty(B, dtype),  # swb  (B,)
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


# ------------------------------------------------------------ forward and backward
@jit
def _forward(X, W1, b1, W2, b2, activation, use_blas, parallel, H1, H2, Z):
    """Z = act(X W1 + b1) W2 + b2, keeping H1 and H2 for the backward pass."""
    if use_blas:
        K.linear_forward_blas(X, W1, b1, H1)
    elif parallel:
        K.linear_forward(X, W1, b1, H1)
    else:
        K.linear_forward_serial(X, W1, b1, H1)
    if parallel:
        K.activation_forward(H1, activation, H2)
    else:
        K.activation_forward_serial(H1, activation, H2)
    if use_blas:
        K.linear_forward_blas(H2, W2, b2, Z)
    elif parallel:
        K.linear_forward(H2, W2, b2, Z)
    else:
        K.linear_forward_serial(H2, W2, b2, Z)


@jit
def _loss_and_grads(
    X, Y, sw, scale, W1, b1, W2, b2, alpha, activation, output, use_blas, parallel, ws
):
    """Forward, loss and every parameter gradient of one batch into ``ws``.

    Returns ``scale * sum_i sw_i CE_i + scale * alpha / 2 (|W1|^2 + |W2|^2)``,
    the batch loss with scikit-learn's L2 penalty (``scale = 1 / sum(sw)``).
    """
    _, _, _, H1a, H2a, Za, dZa, dH1a, gW1, gb1, gW2, gb2, _ = ws
    n = X.shape[0]
    H1 = H1a[:n]
    H2 = H2a[:n]
    Z = Za[:n]
    dZ = dZa[:n]
    dH1 = dH1a[:n]
    _forward(X, W1, b1, W2, b2, activation, use_blas, parallel, H1, H2, Z)
    # The loss kernels overwrite Z with P (P aliases Z): Z is not needed again.
    if output == SOFTMAX:
        if parallel:
            loss = K.softmax_cross_entropy(Z, Y, sw, scale, Z, dZ)
        else:
            loss = K.softmax_cross_entropy_serial(Z, Y, sw, scale, Z, dZ)
    elif parallel:
        loss = K.sigmoid_cross_entropy(Z, Y, sw, scale, Z, dZ)
    else:
        loss = K.sigmoid_cross_entropy_serial(Z, Y, sw, scale, Z, dZ)
    if alpha != 0:
        sq = 0.0
        for v in W1.reshape(-1):
            sq += v * v
        for v in W2.reshape(-1):
            sq += v * v
        loss += 0.5 * alpha * scale * sq
    reg = alpha * scale
    # dZ -> db2, dW2 = H2ᵀ dZ + reg W2, dH1 = (dZ W2ᵀ) * act'(H1) fused
    if parallel:
        K.bias_grad(dZ, gb2)
    else:
        K.bias_grad_serial(dZ, gb2)
    if use_blas:
        K.weight_grad_blas(H2, dZ, W2, reg, gW2)
    elif parallel:
        K.weight_grad(H2, dZ, W2, reg, gW2)
    else:
        K.weight_grad_serial(H2, dZ, W2, reg, gW2)
    if parallel:
        K.hidden_backward(dZ, W2, H1, H2, activation, dH1)
        K.bias_grad(dH1, gb1)
    else:
        K.hidden_backward_serial(dZ, W2, H1, H2, activation, dH1)
        K.bias_grad_serial(dH1, gb1)
    if use_blas:
        K.weight_grad_blas(X, dH1, W1, reg, gW1)
    elif parallel:
        K.weight_grad(X, dH1, W1, reg, gW1)
    else:
        K.weight_grad_serial(X, dH1, W1, reg, gW1)
    return loss


@jit
def _epoch(
    X,
    Y,
    sw,
    params,
    state,
    ws,
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
    use_blas,
    parallel,
):
    W1, b1, W2, b2 = params
    Xb, Yb, swb, _, _, _, _, _, gW1, gb1, gW2, gb2, order = ws
    n = X.shape[0]
    if do_shuffle:
        for i in range(n):
            order[i] = i
        shuffle(order, seed)
    total = 0.0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        m = stop - start
        if do_shuffle:
            # gather the batch rows into contiguous buffers
            for r in range(m):
                src = order[start + r]
                Xb[r, :] = X[src, :]
                Yb[r, :] = Y[src, :]
                swb[r] = sw[src]
            Xm = Xb[:m]
            Ym = Yb[:m]
            swm = swb[:m]
        else:
            Xm = X[start:stop]
            Ym = Y[start:stop]
            swm = sw[start:stop]
        wsum = 0.0
        for r in range(m):
            wsum += swm[r]
        scale = 1.0 / wsum if wsum > 0 else 0.0
        loss = _loss_and_grads(
            Xm, Ym, swm, scale, W1, b1, W2, b2, alpha, activation, output, use_blas, parallel, ws
        )
        total += loss * wsum
        step += 1
        if optimizer == SGD:
            v1, u1, v2, u2 = state[0], state[1], state[2], state[3]
            K.sgd_update(W1, gW1, v1, learning_rate, momentum, nesterov)
            K.sgd_update(b1, gb1, u1, learning_rate, momentum, nesterov)
            K.sgd_update(W2, gW2, v2, learning_rate, momentum, nesterov)
            K.sgd_update(b2, gb2, u2, learning_rate, momentum, nesterov)
        else:
            # Adam's bias correction folded into the step size (scikit-learn's form)
            step_size = (
                learning_rate * np.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
            )
            K.adam_update(W1, gW1, state[0], state[4], step_size, beta_1, beta_2, epsilon)
            K.adam_update(b1, gb1, state[1], state[5], step_size, beta_1, beta_2, epsilon)
            K.adam_update(W2, gW2, state[2], state[6], step_size, beta_1, beta_2, epsilon)
            K.adam_update(b2, gb2, state[3], state[7], step_size, beta_1, beta_2, epsilon)
    return total, step


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
    parallel=True,
):
    """Run one compiled epoch, updating ``params`` and ``state`` in place.

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
    dt = X.dtype.type
    total, new_step = _epoch(
        X,
        Y,
        sample_weight,
        params,
        state,
        workspace.buffers,
        workspace.batch_size,
        np.uint64(seed),
        bool(shuffle),
        ADAM if optimizer == "adam" else SGD,
        dt(learning_rate),
        dt(momentum),
        bool(nesterov),
        dt(beta_1),
        dt(beta_2),
        dt(epsilon),
        int(step),
        dt(alpha),
        K.ACTIVATION_CODES[activation],
        OUTPUT_CODES[output],
        bool(use_blas),
        bool(parallel),
    )
    weight = float(sample_weight.sum())
    return total / weight if weight > 0 else float("nan"), new_step


def loss_and_grads(
    X, Y, sample_weight, params, workspace, *, alpha=0.0, activation="relu",
    output="softmax", use_blas=True, parallel=True,
):
    """Full-batch loss and gradients ``(loss, (gW1, gb1, gW2, gb2))`` (for L-BFGS).

    The workspace must have been made with ``batch_size >= n_samples``; the
    returned gradients are views into it, overwritten by the next call.
    """
    W1, b1, W2, b2 = params
    wsum = float(sample_weight.sum())
    dt = X.dtype.type
    loss = _loss_and_grads(
        X, Y, sample_weight, dt(1.0 / wsum), W1, b1, W2, b2, dt(alpha),
        K.ACTIVATION_CODES[activation], OUTPUT_CODES[output], bool(use_blas),
        bool(parallel), workspace.buffers,
    )
    return loss, workspace.buffers[8:12]


@jit
def _forward_proba(X, W1, b1, W2, b2, activation, output, use_blas, parallel, H1, H2, out):
    n = X.shape[0]
    B = H1.shape[0]
    for start in range(0, n, B):
        stop = min(start + B, n)
        m = stop - start
        Zm = out[start:stop]
        _forward(X[start:stop], W1, b1, W2, b2, activation, use_blas, parallel, H1[:m], H2[:m], Zm)
        if output == SOFTMAX:
            for i in range(m):
                mx = Zm[i, 0]
                for c in range(1, Zm.shape[1]):
                    mx = max(mx, Zm[i, c])
                s = Zm.dtype.type(0)
                for c in range(Zm.shape[1]):
                    e = np.exp(Zm[i, c] - mx)
                    Zm[i, c] = e
                    s += e
                for c in range(Zm.shape[1]):
                    Zm[i, c] /= s
        else:
            one = Zm.dtype.type(1)
            for i in range(m):
                for c in range(Zm.shape[1]):
                    z = Zm[i, c]
                    if z >= 0:
                        Zm[i, c] = one / (one + np.exp(-z))
                    else:
                        e = np.exp(z)
                        Zm[i, c] = e / (one + e)


def forward_proba(
    X, params, *, activation="relu", output="softmax", block=1024, use_blas=True, parallel=True
):
    """Output probabilities ``P`` of shape (n_samples, n_outputs), in blocks of rows.

    Allocates the output and two hidden buffers of ``block`` rows, nothing per block.
    """
    W1, b1, W2, b2 = params
    n = X.shape[0]
    B = max(1, min(block, n))
    H = W1.shape[1]
    H1 = np.empty((B, H), X.dtype)
    H2 = np.empty((B, H), X.dtype)
    out = np.empty((n, W2.shape[1]), X.dtype)
    _forward_proba(
        X, W1, b1, W2, b2, K.ACTIVATION_CODES[activation], OUTPUT_CODES[output],
        bool(use_blas), bool(parallel and n > 1), H1, H2, out,
    )
    return out
