"""Predictions from several Python threads on one fitted model: throughput against one thread.

A bounded load test of a shared ``TwoLayerClassifier``: each of ``--threads``
threads makes ``--calls`` ``predict_proba`` calls of ``--rows`` rows (or a
random size from 1 to 100 with ``--rows 0``), and the calls per second are
compared with the same calls made by one thread. Every threaded result is
checked against the serial one, bit for bit.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/threaded_predict.py

Run with the two variables unset only here, on a benchmark command (they force
slow AVX2 kernels on these machines); tests never change them.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import warnings

import numpy as np


def _model(data: str, hidden: int):
    from sklearn.datasets import load_digits

    from fastmlp import TwoLayerClassifier

    if data == "digits":
        X, y = load_digits(return_X_y=True)
        X = (X / 16).astype(np.float32)
    else:  # Fashion-MNIST's shape, random values: the speed does not depend on them
        rng = np.random.default_rng(0)
        X = rng.random((5000, 784), dtype=np.float32)
        y = rng.integers(0, 10, 5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = TwoLayerClassifier(hidden_units=hidden, max_iter=2, random_state=0).fit(X, y)
    return clf, X


def _batches(X, calls: int, rows: int, seed: int):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 101, calls) if rows == 0 else np.full(calls, rows)
    starts = rng.integers(0, X.shape[0] - 100, calls)
    return [np.ascontiguousarray(X[s:s + m]) for s, m in zip(starts, sizes, strict=True)]


def run(data="digits", threads=2, calls=2000, rows=100, hidden=100, repeats=3) -> dict:
    """Time the calls of ``threads`` threads at once and of one thread alone."""
    clf, X = _model(data, hidden)
    work = [_batches(X, calls, rows, seed) for seed in range(threads)]
    expected = [[clf.predict_proba(b) for b in batches] for batches in work]  # warm-up too

    def serial():
        for batches in work:
            for b in batches:
                clf.predict_proba(b)

    def threaded():
        bad = []
        start = threading.Barrier(threads)

        def worker(i):
            start.wait()
            for b, want in zip(work[i], expected[i], strict=True):
                if not np.array_equal(clf.predict_proba(b), want):
                    bad.append(i)

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if bad:
            raise AssertionError(f"threaded predictions differ from serial ones in {bad}")

    def best(f):
        times = []
        for _ in range(repeats):
            time.sleep(0.25)  # let BLAS threads of the previous run stop spinning
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    one, many = best(serial), best(threaded)
    total = threads * calls
    return {
        "data": data, "rows": rows or "1-100", "threads": threads, "calls": total,
        "serial_calls_per_s": total / one, "threaded_calls_per_s": total / many,
        "speedup": one / many, "cores": os.cpu_count(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", choices=("digits", "fashion-shape"), default="digits")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=2000, help="calls per thread")
    parser.add_argument("--rows", type=int, default=100, help="rows per call; 0: 1 to 100")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    out = run(args.data, args.threads, args.calls, args.rows)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['data']}, {out['rows']} rows a call, {out['calls']} calls: "
              f"{out['serial_calls_per_s']:.0f} calls/s on one thread, "
              f"{out['threaded_calls_per_s']:.0f} calls/s on {out['threads']} threads "
              f"({out['speedup']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
