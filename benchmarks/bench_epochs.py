"""Whole training epochs: fastmlp against the GEMM floor, NumPy, scikit-learn and PyTorch.

One group per workload and dtype, ``epoch|{workload}/{dtype}``; one call is one epoch
over the training rows (all 60,000 Fashion-MNIST-shaped rows when timing is enabled,
2,000 in the smoke run; digits always has its 1,347 real rows). Implementations:

- ``floor``: the five GEMMs of the epoch alone with ``np.dot`` (``bench.FloorEpoch``);
- ``fastmlp``: ``solvers.run_epoch`` with its defaults, SGD; ``fastmlp-adam``: Adam;
  ``fastmlp-loops``: ``use_blas=False``; ``fastmlp-1thread``: one Numba and BLAS thread;
- ``fastmlp-estimator``: ``TwoLayerClassifier(solver='sgd').partial_fit`` (validation
  included);
- ``numpy``: ``bench.numpy_epoch`` (five GEMMs per batch); ``numpy-reference``:
  ``reference.sgd_epoch`` (also forms dX);
- ``sklearn``: ``MLPClassifier(solver='sgd').partial_fit`` on X in the group's dtype;
- ``torch``: the same network in PyTorch CPU (skipped when PyTorch is not installed).

All use batch 200, learning rate 0.001, Nesterov momentum 0.9 and alpha 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
from benchutil import DTYPES

from fastmlp import bench

IMPLS = [
    "floor",
    "fastmlp",
    "fastmlp-adam",
    "fastmlp-loops",
    "fastmlp-1thread",
    "fastmlp-estimator",
    "numpy",
    "numpy-reference",
    "sklearn",
    "torch",
]


def make_runner(impl: str, problem: bench.Problem) -> bench.EpochRunner:
    if impl == "floor":
        return bench.FloorEpoch(problem)
    if impl == "fastmlp":
        return bench.FastmlpEpoch(problem, "sgd")
    if impl == "fastmlp-adam":
        return bench.FastmlpEpoch(problem, "adam")
    if impl == "fastmlp-loops":
        return bench.FastmlpEpoch(problem, "sgd", use_blas=False)
    if impl == "fastmlp-1thread":
        return bench.FastmlpEpoch(problem, "sgd", threads=1)
    if impl == "fastmlp-estimator":
        ok, why = bench.estimator_available()
        if not ok:
            pytest.skip(f"TwoLayerClassifier unavailable: {why}")
        return bench.EstimatorEpoch(problem, "sgd")
    if impl == "numpy":
        return bench.NumpyEpoch(problem)
    if impl == "numpy-reference":
        return bench.NumpyEpoch(problem, reference_oracle=True)
    if impl == "sklearn":
        return bench.SklearnEpoch(problem)
    if impl == "torch":
        pytest.importorskip("torch", reason="PyTorch is optional: pip install torch==2.13.0")
        return bench.TorchEpoch(problem)
    raise ValueError(f"unknown implementation {impl!r}")


def check_trained(runner: bench.EpochRunner, problem: bench.Problem) -> None:
    """The epochs did their work: finite weights that moved, or the floor's products."""
    if isinstance(runner, bench.FloorEpoch):
        start, stop = runner.slices[-1]
        m = stop - start
        want = problem.X[start:stop] @ runner.W1
        np.testing.assert_allclose(runner.H1[:m], want, rtol=1e-4, atol=1e-5)
        return
    if isinstance(runner, (bench.SklearnEpoch, bench.EstimatorEpoch)):
        model = runner.model
        assert np.isfinite(model.loss_)
        weights = [model.coefs_[0], model.intercepts_[0], model.coefs_[1], model.intercepts_[1]]
    else:
        weights = runner.weights()
    init = bench.init_params(problem.X.shape[1], problem.hidden, problem.n_classes, np.float64)
    assert all(np.isfinite(w).all() for w in weights)
    if not isinstance(runner, (bench.SklearnEpoch, bench.EstimatorEpoch)):
        # same start for these: training moved the weights away from it
        assert not np.allclose(weights[0], init[0].astype(problem.dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", ["digits", "fashion"])
@pytest.mark.parametrize("impl", IMPLS)
def test_epoch(benchmark, problems, impl, workload, dtype):
    problem = problems(workload, dtype)
    runner = make_runner(impl, problem)
    benchmark.group = f"epoch|{workload}/{dtype}"
    benchmark.extra_info.update(
        impl=runner.name, rows=problem.X.shape[0], shape=problem.shape_label
    )
    with bench.limit_threads(runner.threads):
        runner()  # warm-up: JIT compile or cache load, first partial_fit
        benchmark(runner)
    check_trained(runner, problem)
