"""The NumPy reference against facts that do not depend on it."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastmlp import reference


def test_softmax_rows_sum_to_one_and_shift_invariant(rng):
    Z = rng.normal(scale=3.0, size=(7, 5))
    P = reference.softmax(Z)
    assert np.all(P > 0)
    assert_allclose(P.sum(axis=1), 1.0, rtol=1e-14)
    # softmax(z + c) = softmax(z) for a constant c per row
    shift = rng.normal(scale=50.0, size=(7, 1))
    assert_allclose(reference.softmax(Z + shift), P, rtol=1e-12)


def test_softmax_huge_logits_finite():
    Z = np.array([[1e3, -1e3, 0.0], [-1e3, -1e3, -1e3]])
    P = reference.softmax(Z)
    assert_allclose(P, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-300)


def test_cross_entropy_of_one_hot_is_minus_log_p(rng):
    Z = rng.normal(size=(6, 4))
    y = np.array([0, 3, 1, 2, 2, 0])
    Y = np.eye(4)[y]
    P = reference.softmax(Z)
    assert_allclose(reference.cross_entropy(Z, Y), -np.log(P[np.arange(6), y]), rtol=1e-13)
    # a probability target gives sum_c -y_c log p_c
    T = rng.dirichlet(np.ones(4), size=6)
    assert_allclose(reference.cross_entropy(Z, T), -(T * np.log(P)).sum(axis=1), rtol=1e-13)


def test_cross_entropy_huge_logits_exact():
    # lse([1000, 0]) = 1000 + log(1 + e^-1000) = 1000 in float64
    Z = np.array([[1e3, 0.0], [1e3, 0.0]])
    Y = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert_allclose(reference.cross_entropy(Z, Y), [1e3, 0.0], atol=1e-12)


def test_logistic_cross_entropy_textbook(rng):
    Z = rng.normal(scale=2.0, size=(5, 3))
    Y = rng.integers(0, 2, size=(5, 3)).astype(float)
    s = 1 / (1 + np.exp(-Z))
    textbook = -(Y * np.log(s) + (1 - Y) * np.log(1 - s)).sum(axis=1)
    assert_allclose(reference.cross_entropy(Z, Y, output="logistic"), textbook, rtol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "logistic", "identity"])
def test_activation_derivative_matches_central_difference(rng, activation):
    H1 = rng.normal(size=(4, 3))
    h = 1e-6
    num = (
        reference.activation_forward(H1 + h, activation)
        - reference.activation_forward(H1 - h, activation)
    ) / (2 * h)
    H2 = reference.activation_forward(H1, activation)
    assert_allclose(reference.activation_derivative(H1, H2, activation), num, rtol=1e-8)


def test_relu_derivative_is_the_mask():
    H1 = np.array([[-1.0, 0.0, 2.0]])
    H2 = reference.activation_forward(H1, "relu")
    assert_allclose(H2, [[0.0, 0.0, 2.0]])
    assert_allclose(reference.activation_derivative(H1, H2, "relu"), [[0.0, 0.0, 1.0]])


def test_hand_computed_network():
    # X = 1, W1 = 1, b1 = 0 -> H2 = 1; Z = [1, -1]; label 0:
    # L = lse(1, -1) - 1 = log(1 + e^-2); dZ = P - Y = [p0 - 1, 1 - p0] with p0 = 1/(1+e^-2)
    X = np.array([[1.0]])
    W1, b1 = np.array([[1.0]]), np.zeros(1)
    W2, b2 = np.array([[1.0, -1.0]]), np.zeros(2)
    Y = np.array([[1.0, 0.0]])
    g = reference.forward_backward(X, Y, W1, b1, W2, b2)
    p0 = 1 / (1 + np.exp(-2.0))
    assert_allclose(g["loss"], np.log1p(np.exp(-2.0)), rtol=1e-14)
    assert_allclose(g["dZ"], [[p0 - 1, 1 - p0]], rtol=1e-14)
    # dW2 = H2ᵀ dZ = dZ; dH2 = dZ W2ᵀ = (p0 - 1) - (1 - p0); dW1 = X dH1
    assert_allclose(g["dW2"], [[p0 - 1, 1 - p0]], rtol=1e-14)
    assert_allclose(g["dW1"], [[2 * (p0 - 1)]], rtol=1e-14)
    assert_allclose(g["dX"], [[2 * (p0 - 1)]], rtol=1e-14)


def test_loss_matches_forward_backward_and_penalty(make_problem):
    p = make_problem(6, 3, 4, 3)
    base = reference.loss(p.X, p.Y, *p.params)
    assert_allclose(reference.forward_backward(p.X, p.Y, *p.params)["loss"], base, rtol=1e-15)
    alpha = 0.7
    penalty = alpha / (2 * 6) * ((p.W1**2).sum() + (p.W2**2).sum())
    assert_allclose(reference.loss(p.X, p.Y, *p.params, alpha=alpha), base + penalty, rtol=1e-14)


def test_batches_cover_order_with_partial_last():
    order = np.arange(10)[::-1]
    got = list(reference.batches(10, 4, order))
    assert [len(b) for b in got] == [4, 4, 2]
    assert_allclose(np.concatenate(got), order)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_epoch_one_batch_is_one_gradient_step(make_problem, momentum, nesterov):
    p = make_problem(5, 3, 4, 2)
    lr, alpha = 0.1, 0.2
    g = reference.forward_backward(p.X, p.Y, *p.params, alpha=alpha)
    params = [a.copy() for a in p.params]
    vel = [np.zeros_like(a) for a in params]
    loss = reference.sgd_epoch(
        p.X, p.Y, params, vel, np.arange(5), 5, lr, momentum, nesterov, alpha
    )
    assert_allclose(loss, g["loss"], rtol=1e-14)
    # from zero velocity: v = -lr g; p += v, or with Nesterov p += momentum v - lr g
    factor = 1 + momentum if nesterov else 1.0
    for new, old, name in zip(params, p.params, ("dW1", "db1", "dW2", "db2"), strict=True):
        assert_allclose(new, old - factor * lr * g[name], rtol=1e-14, atol=1e-15)
    for v, name in zip(vel, ("dW1", "db1", "dW2", "db2"), strict=True):
        assert_allclose(v, -lr * g[name], rtol=1e-14)
