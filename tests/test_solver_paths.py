"""The matrix-product paths train identically, and the estimator's path comes from the shapes."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastmlp import solvers as S


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_both_paths_give_the_same_epoch(make_problem, optimizer):
    # The loops path keeps W transposed for the epoch; the BLAS path does not.
    # Same arithmetic, so float64 results agree to rounding.
    pb = make_problem(53, 19, 11, 4, np.float64, seed=3)
    sw = np.ones(53)
    results = []
    for use_blas in (True, False):
        params = tuple(a.copy() for a in pb.params)
        state = S.init_optimizer_state(params, optimizer)
        ws = S.Workspace(53, 19, 11, 4, 8, np.float64)
        losses = [
            S.run_epoch(pb.X, pb.Y, sw, params, state, ws, optimizer=optimizer,
                        learning_rate=0.01, alpha=1e-3, seed=e, use_blas=use_blas)[0]
            for e in range(3)
        ]
        results.append((params, state, losses))
    (p1, s1, l1), (p2, s2, l2) = results
    for a, b in zip(p1 + s1, p2 + s2, strict=True):
        assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    assert_allclose(l1, l2, rtol=1e-12)


def test_full_batch_workspace_holds_no_copy_of_X(make_problem):
    from fastmlp import reference

    pb = make_problem(40, 30, 6, 3, np.float64, seed=2)
    sw = np.ones(40)
    ws = S.Workspace(40, 30, 6, 3, 40, np.float64, full_batch=True)
    minibatch = S.Workspace(40, 30, 6, 3, 40, np.float64)
    size = lambda w: sum(a.nbytes for a in w.buffers + w.tbuffers)  # noqa: E731
    # the minibatch workspace gathers X (and its transpose), Y and the weights
    assert size(minibatch) - size(ws) == 2 * pb.X.nbytes + pb.Y.nbytes + sw.nbytes
    for use_blas in (True, False):
        loss, grads = S.loss_and_grads(pb.X, pb.Y, sw, pb.params, ws, alpha=0.1,
                                       use_blas=use_blas)
        ref = reference.forward_backward(pb.X, pb.Y, *pb.params, alpha=0.1)
        assert_allclose(loss, ref["loss"], rtol=1e-12)
        for g, name in zip(grads, ("dW1", "db1", "dW2", "db2"), strict=True):
            assert_allclose(g, ref[name], rtol=1e-10, atol=1e-14)
    state = S.init_optimizer_state(pb.params, "sgd")
    with pytest.raises(ValueError, match="full_batch=False"):
        S.run_epoch(pb.X, pb.Y, sw, pb.params, state, ws)


def test_kernel_options_come_from_the_shapes_alone():
    from fastmlp._jit import max_threads

    one = {"use_blas": True, "parallel": False, "blas_threads": 1, "n_shares": 1}
    assert S.kernel_options(200, 64, 100) == one  # digits: 1.3M multiply-adds per forward pass
    assert S.kernel_options(200, 64, 100, n_threads=2) == one
    # a large batch: split into one share per thread, BLAS on one thread inside each
    assert S.kernel_options(200, 784, 100) == dict(one, n_shares=max_threads())
    assert S.kernel_options(200, 784, 100, n_threads=2)["n_shares"] == min(2, max_threads())
    assert S.kernel_options(200, 784, 100, n_threads=1) == one
    assert S.kernel_options(200, 784, 100, n_threads=10_000)["n_shares"] == max_threads()
    assert S.kernel_options(1, 784, 100, n_threads=2) == one
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="n_threads"):
            S.kernel_options(200, 784, 100, n_threads=bad)
    assert not hasattr(S, "choose_kernel_options")
