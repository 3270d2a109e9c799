"""Every core: dense epochs, prediction and digits at 1 and 2 threads, as ratios from one run.

Rows, each at 1 and at 2 threads (Numba, BLAS and PyTorch held at that count;
fastmlp's ``n_threads`` set to it):

- Fashion-MNIST 60,000 x 784 -> 100 ReLU -> 10, float32, batch 200: the GEMM
  floor (the epoch's five products alone, NumPy, contiguous batches), fastmlp's
  compiled epoch (what ``fit`` runs per epoch) with SGD and with Adam, the plain
  NumPy loop, ``MLPClassifier.partial_fit`` and PyTorch (eager, CPU) when it imports.
- digits 1,797 x 64 -> 100 -> 10: fastmlp's compiled epoch and ``fit`` per epoch
  against ``MLPClassifier``'s.
- ``predict_proba`` on 10,000 Fashion-MNIST test rows, fastmlp against
  ``MLPClassifier`` holding the same weights.
- A projection for 4, 8 and 16 cores from the epochs at 1 and 2 threads (Amdahl:
  ``t(T) = s + p / T`` with ``s`` and ``p`` fitted to the two measured points),
  labelled as a projection.

The implementations take turns, sample after sample, so load falls on all alike;
medians and ranges are printed with the load average at the start and the end.
Run it on a quiet machine::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/every_core.py \
        [--repeats 5] [--json every_core.json]

PyTorch is optional (``pip install torch==2.13.0``); its rows are skipped with the reason.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np

from fastmlp import bench as B


def _ms(x):
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.3f} s"


class Sampled:
    """A callable with a name and a thread count, for :func:`fastmlp.bench.time_epochs`."""

    def __init__(self, name, fn, threads):
        self.name, self.fn, self.threads = name, fn, threads

    def __call__(self):
        self.fn()


class FitEpoch(B.EpochRunner):
    """``TwoLayerClassifier.fit`` with ``max_iter`` epochs, per epoch (its Python included)."""

    def __init__(self, problem, threads, epochs=5, solver="sgd"):
        from fastmlp import TwoLayerClassifier

        self.problem, self.threads, self.epochs = problem, threads, epochs
        self.model = TwoLayerClassifier(
            hidden_units=problem.hidden, solver=solver, batch_size=problem.batch_size,
            learning_rate_init=B.LEARNING_RATE, momentum=B.MOMENTUM, max_iter=epochs, tol=0.0,
            n_iter_no_change=10**6, random_state=0, n_threads=threads,
        )
        self.name = f"fastmlp fit {solver} (per epoch)"

    def __call__(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(self.problem.X, self.problem.y)


def _threaded(runner_cls, problem, threads, **kw):
    r = runner_cls(problem, **kw)
    r.threads = threads
    return r


def dense_rows(problem, repeats, torch_ok):
    """Seconds per epoch of every dense implementation at 1 and 2 threads."""
    runners = []
    for T in (1, 2):
        runners += [
            _threaded(B.FloorEpoch, problem, T),
            B.FastmlpEpoch(problem, "sgd", threads=T),
            B.FastmlpEpoch(problem, "adam", threads=T),
            _threaded(B.NumpyEpoch, problem, T),
            _threaded(B.SklearnEpoch, problem, T),
        ]
        if torch_ok:
            runners.append(B.TorchEpoch(problem, threads=T))
    samples = B.time_epochs(runners, repeats=repeats)
    rows = []
    for r, s in zip(runners, samples, strict=True):
        name = r.name.split(",")[0] if r.name.startswith("fastmlp") else r.name
        rows.append({"name": name, "threads": r.threads, "median": statistics.median(s),
                     "min": min(s), "max": max(s)})
    return rows


def digits_rows(repeats):
    """The digits epoch inside fit and MLPClassifier's, at 1 and 2 threads, and their floor."""
    problem = B.digits_problem("float32")
    runners = []
    for T in (1, 2):
        runners += [_threaded(B.FloorEpoch, problem, T),
                    B.FastmlpEpoch(problem, "sgd", threads=T),
                    FitEpoch(problem, T, epochs=20),
                    _threaded(B.SklearnEpoch, problem, T)]
    samples = B.time_epochs(runners, repeats=repeats)
    rows = []
    for r, s in zip(runners, samples, strict=True):
        per = 1 / r.epochs if isinstance(r, FitEpoch) else 1
        name = r.name.split(",")[0] if r.name.startswith("fastmlp") else r.name
        rows.append({"name": name, "threads": r.threads, "median": statistics.median(s) * per,
                     "min": min(s) * per, "max": max(s) * per})
    return rows


def predict_rows(problem, repeats):
    """``predict_proba`` on the 10,000 test rows: fastmlp and MLPClassifier, same weights."""
    from sklearn.neural_network import MLPClassifier

    from fastmlp import TwoLayerClassifier

    Xt = problem.X_test[:10_000]
    out = []
    for T in (1, 2):
        fast = TwoLayerClassifier(hidden_units=problem.hidden, max_iter=1, random_state=0,
                                  n_threads=T)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast.fit(problem.X[:2000], problem.y[:2000])
            sk = MLPClassifier(hidden_layer_sizes=(problem.hidden,), max_iter=1,
                               random_state=0).fit(problem.X[:2000], problem.y[:2000])
        sk.coefs_ = [c.copy() for c in fast.coefs_]
        sk.intercepts_ = [b.copy() for b in fast.intercepts_]
        W1, W2 = fast.coefs_
        H = np.empty((Xt.shape[0], W1.shape[1]), Xt.dtype)
        Z = np.empty((Xt.shape[0], W2.shape[1]), Xt.dtype)

        def floor():  # the forward pass's two products alone, NumPy's BLAS at T threads
            np.dot(Xt, W1, out=H)
            np.dot(H, W2, out=Z)

        samples = {"fastmlp": [], "sklearn": [], "GEMM floor": []}
        with B.limit_threads(T):
            for _ in range(repeats):
                samples["fastmlp"].append(B.time_call(lambda: fast.predict_proba(Xt), repeats=3))
                samples["sklearn"].append(B.time_call(lambda: sk.predict_proba(Xt), repeats=3))
                samples["GEMM floor"].append(B.time_call(floor, repeats=3))
        for k, s in samples.items():
            out.append({"name": f"{k} predict_proba 10,000 rows", "threads": T,
                        "median": statistics.median(s), "min": min(s), "max": max(s)})
    return out


def _find(rows, prefix, T):
    for r in rows:
        if r["name"].startswith(prefix) and r["threads"] == T:
            return r["median"]
    return None


def projection(t1, t2, cores=(4, 8, 16)):
    """Amdahl's law fitted to two points: serial ``s``, parallel ``p``, and ``t(T)``."""
    p = 2 * (t1 - t2)
    s = t1 - p
    return {"serial_s": s, "parallel_s": p, "serial_share_at_1": s / t1,
            "projected": {T: s + p / T for T in cores}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="save every figure to this file")
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--skip-predict", action="store_true")
    args = ap.parse_args(argv)

    load0 = os.getloadavg()
    env = B.environment()
    problem = B.fashion_problem("float32")
    torch_ok, torch_why = B.torch_available()
    print(f"{datetime.date.today()}  load average at start {load0[0]:.2f}")
    blas = sorted({(b["internal_api"], b["version"], b["architecture"]) for b in env["blas"]})
    print(f"machine: {env['cpu']}, {env['cpu_count']} CPUs; BLAS {blas}")
    from fastmlp._jit import threading_layer

    print(f"Numba threading layer: {threading_layer()}")
    if not torch_ok:
        print(f"PyTorch rows skipped: {torch_why}")
    rows = dense_rows(problem, args.repeats, torch_ok)
    print(f"\nFashion-MNIST {problem.X.shape}, float32, batch 200, 100 hidden: s/epoch")
    print("| implementation | threads | median | range | x floor | vs NumPy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        floor = _find(rows, "GEMM floor", r["threads"])
        npy = _find(rows, "numpy", r["threads"])
        print(f"| {r['name']} | {r['threads']} | {r['median']:.4f} | {r['min']:.4f}-"
              f"{r['max']:.4f} | {r['median'] / floor:.2f} | {npy / r['median']:.2f} |")
    ratios = {}
    f1, f2 = _find(rows, "fastmlp run_epoch sgd", 1), _find(rows, "fastmlp run_epoch sgd", 2)
    a2 = _find(rows, "fastmlp run_epoch adam", 2)
    ratios["sgd_2t_x_floor"] = f2 / _find(rows, "GEMM floor", 2)
    ratios["sgd_1t_x_floor"] = f1 / _find(rows, "GEMM floor", 1)
    ratios["numpy_2t_over_sgd_2t"] = _find(rows, "numpy", 2) / f2
    ratios["sgd_1t_over_2t"] = f1 / f2
    ratios["adam_over_sgd_2t"] = a2 / f2
    ratios["adam_over_sgd_1t"] = _find(rows, "fastmlp run_epoch adam", 1) / f1
    ratios["sklearn_2t_over_sgd_2t"] = _find(rows, "scikit-learn", 2) / f2
    if torch_ok:
        ratios["torch_2t_over_sgd_2t"] = _find(rows, "PyTorch", 2) / f2
    proj = {"fastmlp sgd": projection(f1, f2),
            "GEMM floor": projection(_find(rows, "GEMM floor", 1), _find(rows, "GEMM floor", 2))}
    out = {"date": str(datetime.date.today()), "command": " ".join(sys.argv),
           "environment": env, "fashion": rows, "ratios": ratios, "projection": proj}
    if not args.skip_digits:
        out["digits"] = digits_rows(args.repeats)
        for T in (1, 2):
            sk = _find(out["digits"], "scikit-learn", T)
            ratios[f"digits_fit_epoch_vs_sklearn_{T}t"] = sk / _find(out["digits"], "fastmlp fit",
                                                                      T)
            ratios[f"digits_run_epoch_vs_sklearn_{T}t"] = sk / _find(out["digits"],
                                                                     "fastmlp run_epoch", T)
            # the most any epoch that runs these products could gain on MLPClassifier
            ratios[f"digits_sklearn_over_gemm_floor_{T}t"] = sk / _find(out["digits"],
                                                                        "GEMM floor", T)
        print("\ndigits 1,797 x 64, batch 200: s/epoch")
        for r in out["digits"]:
            print(f"  {r['name']:<40} {r['threads']}t  {_ms(r['median'])} "
                  f"({_ms(r['min'])}-{_ms(r['max'])})")
    if not args.skip_predict:
        out["predict"] = predict_rows(problem, args.repeats)
        for T in (1, 2):
            sk = _find(out["predict"], "sklearn", T)
            ratios[f"predict_proba_vs_sklearn_{T}t"] = sk / _find(out["predict"], "fastmlp", T)
            # the most any implementation of these products could gain on MLPClassifier
            ratios[f"predict_sklearn_over_its_gemm_floor_{T}t"] = sk / _find(
                out["predict"], "GEMM floor", T)
        print("\npredict_proba, 10,000 Fashion-MNIST rows")
        for r in out["predict"]:
            print(f"  {r['name']:<40} {r['threads']}t  {_ms(r['median'])} "
                  f"({_ms(r['min'])}-{_ms(r['max'])})")
    print("\nratios (same run):")
    for k, v in ratios.items():
        print(f"  {k}: {v:.2f}")
    print("\nprojection (Amdahl's law fitted to the 1- and 2-thread epochs; not measured):")
    for k, pr in proj.items():
        cells = ", ".join(f"{T} cores {t:.3f} s" for T, t in pr["projected"].items())
        print(f"  {k}: serial {pr['serial_s']:.3f} s + parallel {pr['parallel_s']:.3f} s; "
              f"{cells}")
    load1 = os.getloadavg()
    out["load"] = [load0[0], load1[0]]
    print(f"\nload average at start {load0[0]:.2f}, at end {load1[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - start:.0f} s)")
    sys.exit(code)
