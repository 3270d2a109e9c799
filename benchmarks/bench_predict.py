"""Prediction latency: one-row ``predict`` and 10,000-row ``predict_proba``.

Groups ``predict_one_row|{workload}/{dtype}`` and ``predict_proba_10k|{workload}/{dtype}``;
implementations:

- ``fastmlp``: a ``TwoLayerClassifier`` after one ``partial_fit`` epoch;
- ``fastmlp-solver``: ``solvers.forward_proba`` on the same kind of weights (plus
  ``argmax`` for the labels), the compiled forward pass without the estimator's checks;
- ``sklearn``: ``MLPClassifier`` after one ``partial_fit`` epoch.
"""

from __future__ import annotations

import numpy as np
import pytest
from benchutil import DTYPES

from fastmlp import bench

IMPLS = ["fastmlp", "fastmlp-solver", "sklearn"]
_MODELS: dict = {}


def fitted(impl: str, problem: bench.Problem):
    """A model of ``impl`` trained for one epoch on ``problem`` (cached per problem)."""
    key = (impl, problem.name, str(problem.dtype), problem.X.shape[0])
    if key not in _MODELS:
        if impl == "fastmlp":
            ok, why = bench.estimator_available()
            if not ok:
                pytest.skip(f"TwoLayerClassifier unavailable: {why}")
            runner = bench.EstimatorEpoch(problem, "sgd")
        elif impl == "fastmlp-solver":
            runner = bench.FastmlpEpoch(problem, "sgd")
        else:
            runner = bench.SklearnEpoch(problem)
        runner()
        _MODELS[key] = runner if impl == "fastmlp-solver" else runner.model
    return _MODELS[key]


def _predict(model, impl):
    if impl == "fastmlp-solver":
        return lambda X: model.predict_proba(X).argmax(axis=1)
    return model.predict


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", ["digits", "fashion"])
@pytest.mark.parametrize("impl", IMPLS)
def test_predict_one_row(benchmark, problems, impl, workload, dtype):
    problem = problems(workload, dtype)
    model = fitted(impl, problem)
    predict = _predict(model, impl)
    row = problem.X_test[:1]
    benchmark.group = f"predict_one_row|{workload}/{dtype}"
    label = benchmark(predict, row)
    assert label.shape == (1,)
    assert 0 <= int(label[0]) < problem.n_classes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", ["digits", "fashion"])
@pytest.mark.parametrize("impl", IMPLS)
def test_predict_proba_10k(benchmark, problems, impl, workload, dtype):
    problem = problems(workload, dtype)
    model = fitted(impl, problem)
    X = problem.X_test
    model.predict_proba(X[:2])  # compile or load the forward pass outside the timing
    benchmark.group = f"predict_proba_10k|{workload}/{dtype}"
    P = benchmark(model.predict_proba, X)
    assert P.shape == (bench.PREDICT_ROWS, problem.n_classes)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-4)
