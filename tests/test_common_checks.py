"""scikit-learn's common estimator checks for TwoLayerClassifier."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import (
    check_sample_weight_equivalence_on_dense_data,
    check_sample_weight_equivalence_on_sparse_data,
    parametrize_with_checks,
)

from fastmlp import TwoLayerClassifier


def _estimator(**kw):
    # A few epochs with a larger step reach the accuracy the checks ask for
    # (check_classifiers_train wants > 0.83) in a fraction of a second.
    return TwoLayerClassifier(hidden_units=16, learning_rate_init=0.01, max_iter=50,
                              random_state=0, **kw)


_FLOAT32_ROUNDING = (
    "float32 (the default dtype) rounding: fitting with integer sample weights and with "
    "repeated rows agrees to ~2e-6 relative in predict_proba, the check asks rtol=1e-7; "
    "the float64 estimator passes it (test_sample_weight_equivalence_float64)"
)
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": _FLOAT32_ROUNDING,
    "check_sample_weight_equivalence_on_sparse_data": _FLOAT32_ROUNDING,
}


# max_iter is kept small so the checks run fast; short fits then end with a
# ConvergenceWarning, which is expected here and not what the checks test (several
# checks do not silence it themselves, and pytest turns warnings into errors).
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [_estimator()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_sample_weight_equivalence_float64(solver):
    # Integer weights equal repeated rows, and zero weights equal removed rows.
    # The checks' data fit in one batch, so minibatch order plays no part.
    estimator = _estimator(solver=solver, dtype=np.float64)
    check_sample_weight_equivalence_on_dense_data("TwoLayerClassifier", estimator)
    check_sample_weight_equivalence_on_sparse_data("TwoLayerClassifier", estimator)
