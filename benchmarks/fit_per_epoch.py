"""Seconds per epoch inside fit() on the full Fashion-MNIST, fastmlp vs MLPClassifier.

Measured as (time of fit(max_iter=4) - time of fit(max_iter=1)) / 3, solver sgd, float32,
so start-up, input validation and fastmlp's kernel-path timing are left out.
Run: python benchmarks/fit_per_epoch.py
"""

import time
import warnings

from sklearn.neural_network import MLPClassifier

from fastmlp import TwoLayerClassifier
from fastmlp.datasets import load_fashion_mnist


def main():
    warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is reached on purpose
    data = load_fashion_mnist()
    X, y, _, _ = data
    print(data.source, X.shape, X.dtype)
    kw = dict(solver="sgd", tol=0, n_iter_no_change=10**6, random_state=0,
              learning_rate_init=0.01)
    models = [
        ("fastmlp TwoLayerClassifier", lambda e: TwoLayerClassifier(hidden_units=100,
                                                                    max_iter=e, **kw)),
        ("sklearn MLPClassifier", lambda e: MLPClassifier(hidden_layer_sizes=(100,),
                                                          max_iter=e, **kw)),
    ]
    for name, make in models:
        make(1).fit(X[:2000], y[:2000])  # compile / warm up
        t = time.perf_counter()
        make(1).fit(X, y)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        make(4).fit(X, y)
        t4 = time.perf_counter() - t
        print(f"{name}: {(t4 - t1) / 3:.3f} s/epoch inside fit "
              f"(fit(4) {t4:.2f} s, fit(1) {t1:.2f} s)")


if __name__ == "__main__":
    main()
