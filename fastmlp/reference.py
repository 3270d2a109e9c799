"""Plain NumPy forward and backward of every node of the two-layer network.

This module is the test oracle and the benchmark baseline, so it stays obvious:
one line per node, the names of ``docs/backprop.md``::

    H0 = X W1        H1 = H0 + b1      H2 = act(H1)
    H3 = H2 W2       Z  = H3 + b2      P  = softmax(Z)   (or sigmoid(Z), Z, exp(Z))
    L  = sum_i s_i CE(P_i, Y_i) / S + alpha / (2 S) (|W1|^2 + |W2|^2)

where ``s`` are the sample weights (all ones by default) and ``S = sum(s)``, so
that without weights ``S = n`` and ``L`` is the mean cross-entropy plus the L2
penalty. The same definitions as scikit-learn's ``MLPClassifier``. For
regression (``MLPRegressor``) the output is the identity with the half squared
error ``0.5 sum_c (z_c - y_c)^2`` per sample, or exp with the half Poisson
deviance ``sum_c y_c log(y_c / mu_c) - y_c + mu_c``, ``mu = exp(z)``. Each output
is the canonical link of its loss, so ``dZ = (P - Y) s / S`` in all four cases.
(scikit-learn reports the squared error divided by the number of outputs but
follows the gradient of the sum; this reference keeps loss and gradient
consistent, and the solver divides the figure it reports.)
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("relu", "tanh", "logistic", "identity")
OUTPUTS = ("softmax", "logistic", "identity", "exp")


def activation_forward(H1, activation="relu"):
    """Apply the hidden activation elementwise."""
    if activation == "relu":
        return np.maximum(H1, 0)
    if activation == "tanh":
        return np.tanh(H1)
    if activation == "logistic":
        return 1 / (1 + np.exp(-H1))
    if activation == "identity":
        return H1.copy()
    raise ValueError(f"unknown activation {activation!r}")


def activation_derivative(H1, H2, activation="relu"):
    """Elementwise ``dH2/dH1``, the local derivative of the activation."""
    if activation == "relu":
        return (H1 > 0).astype(H1.dtype)
    if activation == "tanh":
        return 1 - H2**2
    if activation == "logistic":
        return H2 * (1 - H2)
    if activation == "identity":
        return np.ones_like(H1)
    raise ValueError(f"unknown activation {activation!r}")


def softmax(Z):
    """Row-wise softmax, shifted by the row maximum so large logits do not overflow."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def cross_entropy(Z, Y, output="softmax"):
    """Per-sample cross-entropy of the logits ``Z`` against targets ``Y``, shape (n,).

    Computed from the logits (log-sum-exp, softplus), never as ``log(P)``, so it is
    finite for logits of any size.
    """
    if output == "softmax":
        m = Z.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True))  # (n, 1)
        return (Y * (lse - Z)).sum(axis=1)
    if output == "logistic":
        # -y log(sigmoid z) - (1 - y) log(1 - sigmoid z) = softplus(z) - y z
        return (np.logaddexp(0, Z) - Y * Z).sum(axis=1)
    raise ValueError(f"unknown output {output!r}")


def sample_loss(Z, Y, output="softmax"):
    """Per-sample loss of the outputs ``Z`` against targets ``Y``, shape (n,).

    The cross-entropy for 'softmax' and 'logistic' (:func:`cross_entropy`), the
    half squared error summed over outputs for 'identity', the half Poisson
    deviance summed over outputs for 'exp' (``0 log 0 = 0``).
    """
    if output in ("softmax", "logistic"):
        return cross_entropy(Z, Y, output)
    if output == "identity":
        return 0.5 * ((Z - Y) ** 2).sum(axis=1)
    if output == "exp":
        # y log(y / mu) - y + mu with mu = exp(z), as y (log y - z) - y + mu
        ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0)
        return (ylogy - Y * Z - Y + np.exp(Z)).sum(axis=1)
    raise ValueError(f"unknown output {output!r}")


def output_activation(Z, output="softmax"):
    """Apply the output activation: softmax, sigmoid, identity or exp."""
    if output == "softmax":
        return softmax(Z)
    if output == "logistic":
        return 1 / (1 + np.exp(-Z))
    if output == "identity":
        return Z.copy()
    if output == "exp":
        return np.exp(Z)
    raise ValueError(f"unknown output {output!r}")


def forward(X, W1, b1, W2, b2, activation="relu", output="softmax"):
    """Return every node of the forward pass as a dict ``H0 H1 H2 H3 Z P``."""
    H0 = X @ W1  # (n, H)
    H1 = H0 + b1  # (n, H)
    H2 = activation_forward(H1, activation)  # (n, H)
    H3 = H2 @ W2  # (n, C)
    Z = H3 + b2  # (n, C)
    P = output_activation(Z, output)  # (n, C)
    return {"H0": H0, "H1": H1, "H2": H2, "H3": H3, "Z": Z, "P": P}


def forward_backward(
    X,
    Y,
    W1,
    b1,
    W2,
    b2,
    alpha=0.0,
    sample_weight=None,
    activation="relu",
    output="softmax",
):
    """Loss, every node and every gradient, in plain NumPy.

    ``Y`` is the (n, C) target matrix (one-hot rows, probabilities, or 0/1
    indicators for a logistic output). Returns a dict with ``loss``, the nodes
    ``H0 H1 H2 H3 Z P`` and the gradients ``dZ dH3 db2 dW2 dH2 dH1 dH0 db1 dW1 dX``.
    """
    n = X.shape[0]
    s = np.ones(n, dtype=X.dtype) if sample_weight is None else sample_weight
    S = s.sum()
    out = forward(X, W1, b1, W2, b2, activation, output)
    H1, H2, Z, P = out["H1"], out["H2"], out["Z"], out["P"]
    penalty = alpha / (2 * S) * ((W1**2).sum() + (W2**2).sum())
    out["loss"] = (s * sample_loss(Z, Y, output)).sum() / S + penalty

    # Softmax + cross-entropy (and sigmoid + binary cross-entropy, identity +
    # squared error, exp + Poisson deviance: each a canonical link) fuse to P - Y.
    dZ = (P - Y) * (s / S)[:, None]  # (n, C)
    dH3 = dZ  # Z = H3 + b2: identity in H3
    db2 = dZ.sum(axis=0)  # (C,)  b2 was broadcast over the n rows
    dW2 = H2.T @ dH3 + alpha / S * W2  # (H, C)
    dH2 = dH3 @ W2.T  # (n, H)
    dH1 = dH2 * activation_derivative(H1, H2, activation)  # (n, H) elementwise
    dH0 = dH1  # H1 = H0 + b1: identity in H0
    db1 = dH1.sum(axis=0)  # (H,)
    dW1 = X.T @ dH0 + alpha / S * W1  # (D, H)
    dX = dH0 @ W1.T  # (n, D)
    out.update(
        dZ=dZ, dH3=dH3, db2=db2, dW2=dW2, dH2=dH2, dH1=dH1, dH0=dH0, db1=db1, dW1=dW1, dX=dX
    )
    return out


def loss(X, Y, W1, b1, W2, b2, alpha=0.0, sample_weight=None, activation="relu", output="softmax"):
    """Only the loss of :func:`forward_backward` (for finite differences)."""
    n = X.shape[0]
    s = np.ones(n, dtype=X.dtype) if sample_weight is None else sample_weight
    S = s.sum()
    Z = forward(X, W1, b1, W2, b2, activation, output)["Z"]
    penalty = alpha / (2 * S) * ((W1**2).sum() + (W2**2).sum())
    return (s * sample_loss(Z, Y, output)).sum() / S + penalty


def batches(n, batch_size, order):
    """Yield the index arrays of the minibatches of one epoch, the last one partial."""
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def sgd_epoch(
    X,
    Y,
    params,
    velocities,
    order,
    batch_size,
    learning_rate,
    momentum=0.0,
    nesterov=False,
    alpha=0.0,
    sample_weight=None,
    activation="relu",
    output="softmax",
):
    """One epoch of minibatch SGD in NumPy, updating ``params`` in place.

    ``params`` and ``velocities`` are lists ``[W1, b1, W2, b2]``. The update is
    scikit-learn's: ``v = momentum v - lr g`` then ``p += v``, or with Nesterov
    ``p += momentum v - lr g``. Returns the epoch's mean loss, each batch's loss
    weighted by its total sample weight (by its size when unweighted).
    """
    n = X.shape[0]
    s = np.ones(n, dtype=X.dtype) if sample_weight is None else sample_weight
    total = 0.0
    for idx in batches(n, batch_size, order):
        g = forward_backward(X[idx], Y[idx], *params, alpha, s[idx], activation, output)
        total += g["loss"] * s[idx].sum()
        for p, v, name in zip(params, velocities, ("dW1", "db1", "dW2", "db2"), strict=True):
            v *= momentum
            v -= learning_rate * g[name]
            if nesterov:
                p += momentum * v - learning_rate * g[name]
            else:
                p += v
    return total / s.sum()
