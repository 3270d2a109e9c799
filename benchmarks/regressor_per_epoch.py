"""Seconds per epoch inside fit(): TwoLayerRegressor vs MLPRegressor, and the classifier alike.

Two workloads: scikit-learn's real ``load_diabetes`` (442 x 10, standardised) and a
synthetic set of Fashion-MNIST's size (60,000 x 784, float32) with a 1-output and a
10-output target. Each row is the time of fit(max_iter=k) / k, solver sgd, float32
for everyone (scikit-learn works in X's dtype), after a warm-up fit (compilation left
out); a fit's fixed cost (validation, initialisation) is spread over its k epochs
(k=400 on diabetes, 2 on the large set). The models take turns within each of
``--repeats`` rounds and the fastest round of each is kept, so they share the
machine's load alike. (A difference of fits, fit(1 + k) - fit(1), came out negative
on the busy machine.) The classifier rows use the same X and a target with as
many output units (binary for one output, 10 classes for ten), so
``TwoLayerRegressor / TwoLayerClassifier`` is the cost of the regression output
alone. Ratios are taken side by side in one run (the machines are shared and noisy).

Run: python benchmarks/regressor_per_epoch.py [--repeats 2] [--skip-large]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler

from fastmlp import TwoLayerClassifier, TwoLayerRegressor

KW = dict(solver="sgd", tol=0, n_iter_no_change=10**6, random_state=0, learning_rate_init=0.01,
          shuffle=True)


def _seconds_per_epoch(make, X, y, k):
    t = time.perf_counter()
    make(k).fit(X, y)
    return (time.perf_counter() - t) / k


def _workloads(skip_large):
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    yield "diabetes 442x10, 1 output", X, y, (y > np.median(y)).astype(int), 400
    if skip_large:
        return
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60000, 784)).astype(np.float32)
    W = rng.normal(size=(784, 10)).astype(np.float32) / 28
    Y = X @ W + 0.1 * rng.normal(size=(60000, 10)).astype(np.float32)
    yield "synthetic 60000x784, 1 output", X, Y[:, 0].copy(), (Y[:, 0] > 0).astype(int), 2
    yield "synthetic 60000x784, 10 outputs", X, Y, Y.argmax(axis=1), 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-large", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is reached on purpose
    models = {
        "TwoLayerRegressor": lambda e: TwoLayerRegressor(hidden_units=100, max_iter=e, **KW),
        "MLPRegressor": lambda e: MLPRegressor(hidden_layer_sizes=(100,), max_iter=e, **KW),
        "TwoLayerClassifier": lambda e: TwoLayerClassifier(hidden_units=100, max_iter=e, **KW),
        "MLPClassifier": lambda e: MLPClassifier(hidden_layer_sizes=(100,), max_iter=e, **KW),
    }
    print("| workload | implementation | s/epoch | vs scikit-learn's |")
    print("| --- | --- | --- | --- |")
    summary = []
    print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, X, y_reg, y_clf, k in _workloads(args.skip_large):
        t = dict.fromkeys(models, np.inf)
        for model, make in models.items():  # compile / warm up
            make(1).fit(X[:2000], (y_reg if "Regressor" in model else y_clf)[:2000])
        for _ in range(args.repeats):
            for model, make in models.items():
                y = y_reg if "Regressor" in model else y_clf
                t[model] = min(t[model], _seconds_per_epoch(make, X, y, k))
        for model in models:
            peer = "MLPRegressor" if "Regressor" in model else "MLPClassifier"
            vs = f"{t[peer] / t[model]:.2f}x faster" if model.startswith("TwoLayer") else "1.00"
            print(f"| {name} | {model} | {t[model]:.5f} | {vs} |")
        summary.append((name, t))
    print()
    for name, t in summary:
        print(f"{name}: TwoLayerRegressor / TwoLayerClassifier epoch = "
              f"{t['TwoLayerRegressor'] / t['TwoLayerClassifier']:.2f}; speed-up over "
              f"scikit-learn: regressor {t['MLPRegressor'] / t['TwoLayerRegressor']:.2f}x, "
              f"classifier {t['MLPClassifier'] / t['TwoLayerClassifier']:.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
