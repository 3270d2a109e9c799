"""Choosing the matrix-product path: both paths train identically; the choice is harmless."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

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
    for a, b in zip(p1 + s1, p2 + s2):
        assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    assert_allclose(l1, l2, rtol=1e-12)


def test_choose_use_blas_leaves_inputs_alone_and_remembers(make_problem, monkeypatch):
    monkeypatch.setattr(S, "_PATH_CHOICES", {})
    pb = make_problem(90, 7, 5, 3, np.float32, seed=1)
    sw = np.ones(90, np.float32)
    before = [a.copy() for a in (pb.X, pb.Y, sw) + pb.params]
    choice = S.choose_use_blas(pb.X, pb.Y, sw, pb.params, batch_size=20, optimizer="sgd",
                               learning_rate=0.1)
    assert isinstance(choice, bool)
    for a, b in zip(before, (pb.X, pb.Y, sw) + pb.params):
        assert_array_equal(a, b)
    assert list(S._PATH_CHOICES.values()) == [choice]
    # a second call with the same shapes is answered from memory, not re-timed
    monkeypatch.setattr(S, "run_epoch", lambda *a, **k: pytest.fail("re-timed"))
    assert S.choose_use_blas(pb.X, pb.Y, sw, pb.params, batch_size=20, optimizer="sgd") is choice
