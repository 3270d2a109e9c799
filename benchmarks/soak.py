"""Soak: thousands of fit, partial_fit and predict calls in one process.

A long-lived process (a service predicting, a search fitting thousands of models, a
notebook refitting) must keep flat memory and its speed. This script runs rounds of
calls, each round one of every kind below, and reports at the start (after a warm-up)
and at the end:

- the resident set size (``VmRSS`` of ``/proc/self/status``);
- Numba's runtime allocation counters (``rtsys.get_allocation_stats()``): the balance
  ``alloc - free`` counts the compiled code's live allocations, so a leak per call in
  a compiled path makes it grow with the calls;
- the time per round, the median over a window of rounds.

Kinds of call per round: dense classifier ``partial_fit`` + ``predict`` and a small
``fit``; CSR classifier ``partial_fit`` + ``predict_proba``, exact and lazy
(``sparse_updates="lazy"``); dense regressor ``partial_fit`` + ``predict``; and two
Python threads at once, each ``partial_fit`` of its own model and ``predict`` on a
shared one.

Usage::

    python benchmarks/soak.py --seconds 300            # the long run
    python benchmarks/soak.py --rounds 200 --json s.json

``tests/test_soak.py`` runs a short version and checks the bounds of ``check``.
"""

from __future__ import annotations

import os

# Numba counts NRT allocations only when asked before its runtime starts.
os.environ.setdefault("NUMBA_NRT_STATS", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastmlp import TwoLayerClassifier, TwoLayerRegressor  # noqa: E402

# The bounds tests/test_soak.py asserts after the warm-up (see ``check``).
RSS_BOUND_MB = 24.0  # RSS growth from the start to the end
NRT_BOUND = 64  # growth of Numba's live allocations (alloc - free)
DRIFT_BOUND = 3.0  # end/start ratio of the median round time (a leak detector, not a speed test)


def rss_mb() -> float:
    """Resident set size of this process in MB (``VmRSS``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def nrt_stats() -> dict:
    """Numba's NRT counters: allocations, frees and their balance (live allocations)."""
    from numba.core.runtime import rtsys

    s = rtsys.get_allocation_stats()
    return {"alloc": s.alloc, "free": s.free, "balance": s.alloc - s.free,
            "mi_balance": s.mi_alloc - s.mi_free}


class Workload:
    """The data and models of the rounds: small problems, so a round takes milliseconds."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        n, d, self.classes = 128, 20, np.arange(3)
        self.X = rng.normal(size=(n, d)).astype(np.float32)
        self.y = rng.integers(0, 3, size=n)
        self.yr = self.X[:, :2].sum(axis=1)
        self.Xs = sp.random(n, 500, density=0.02, format="csr", random_state=seed,
                            dtype=np.float32)
        self.Xs.data[:] = rng.random(self.Xs.nnz, dtype=np.float32)
        small = {"hidden_units": 16, "random_state": 0}
        self.dense = TwoLayerClassifier(**small)
        self.exact = TwoLayerClassifier(**small, sparse_updates="exact")
        self.lazy = TwoLayerClassifier(**small, sparse_updates="lazy")
        self.reg = TwoLayerRegressor(**small)
        self.threaded = [TwoLayerClassifier(**small) for _ in range(2)]
        self.shared = TwoLayerClassifier(**small, max_iter=5).fit(self.X, self.y)
        self.pool_go = [threading.Event() for _ in range(2)]
        self.pool_done = [threading.Event() for _ in range(2)]
        self.pool_error: list[BaseException] = []
        self.stop = False
        self.workers = [threading.Thread(target=self._worker, args=(i,), daemon=True)
                        for i in range(2)]
        for w in self.workers:
            w.start()

    def _worker(self, i):
        while True:
            self.pool_go[i].wait()
            self.pool_go[i].clear()
            if self.stop:
                return
            try:
                self.threaded[i].partial_fit(self.X, self.y, classes=self.classes)
                self.shared.predict(self.X)
            except BaseException as exc:  # reported by the main thread
                self.pool_error.append(exc)
            self.pool_done[i].set()

    def close(self):
        self.stop = True
        for e in self.pool_go:
            e.set()
        for w in self.workers:
            w.join()

    def round(self) -> int:
        """One of every kind of call; returns the number of estimator calls made."""
        X, y, Xs = self.X, self.y, self.Xs
        self.dense.partial_fit(X, y, classes=self.classes)
        self.dense.predict(X)
        TwoLayerClassifier(hidden_units=8, max_iter=2, random_state=0).fit(X, y)
        self.exact.partial_fit(Xs, y, classes=self.classes)
        self.exact.predict_proba(Xs)
        self.lazy.partial_fit(Xs, y, classes=self.classes)
        self.lazy.predict_proba(Xs)
        self.reg.partial_fit(X, self.yr)
        self.reg.predict(X)
        for e in self.pool_go:
            e.set()
        for e in self.pool_done:
            e.wait()
            e.clear()
        if self.pool_error:
            raise self.pool_error[0]
        return 9 + 4


def snapshot() -> dict:
    gc.collect()
    return {"rss_mb": rss_mb(), "nrt": nrt_stats()}


def run(rounds=None, seconds=None, warmup=30, window=50, seed=0, log=None) -> dict:
    """Run the soak; stop after ``rounds`` rounds or ``seconds`` seconds (the first reached).

    The start figures are taken after ``warmup`` rounds (compilation, workspaces,
    BLAS buffers); the time per round at the start is the median of the ``window``
    rounds after the warm-up, at the end the median of the last ``window`` rounds.
    """
    if rounds is None and seconds is None:
        raise ValueError("give rounds or seconds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        work = Workload(seed)
        try:
            for _ in range(warmup):
                work.round()
            start = snapshot()
            times, calls, t0 = [], 0, time.perf_counter()
            while True:
                t = time.perf_counter()
                calls += work.round()
                times.append(time.perf_counter() - t)
                done = len(times)
                if log is not None and done % 500 == 0:
                    print(f"{done} rounds, {time.perf_counter() - t0:.0f} s, "
                          f"RSS {rss_mb():.1f} MB, NRT balance {nrt_stats()['balance']}",
                          file=log, flush=True)
                if rounds is not None and done >= rounds:
                    break
                if seconds is not None and time.perf_counter() - t0 >= seconds:
                    break
            elapsed = time.perf_counter() - t0
            end = snapshot()
        finally:
            work.close()
    w = min(window, max(len(times) // 3, 1))
    start_ms = 1e3 * statistics.median(times[:w])
    end_ms = 1e3 * statistics.median(times[-w:])
    calls_per_round = calls / len(times)
    return {
        "rounds": len(times), "calls": calls, "warmup_rounds": warmup, "window": w,
        "seconds": elapsed,
        "start": {**start, "ms_per_round": start_ms, "ms_per_call": start_ms / calls_per_round},
        "end": {**end, "ms_per_round": end_ms, "ms_per_call": end_ms / calls_per_round},
        "rss_growth_mb": end["rss_mb"] - start["rss_mb"],
        "nrt_balance_growth": end["nrt"]["balance"] - start["nrt"]["balance"],
        "drift": end_ms / start_ms,
    }


def check(result: dict) -> list[str]:
    """Return the bounds the result breaks (empty when memory, NRT and time stay flat)."""
    problems = []
    if result["rss_growth_mb"] > RSS_BOUND_MB:
        problems.append(f"RSS grew {result['rss_growth_mb']:.1f} MB > {RSS_BOUND_MB} MB")
    if result["nrt_balance_growth"] > NRT_BOUND:
        problems.append(f"NRT live allocations grew by {result['nrt_balance_growth']} > "
                        f"{NRT_BOUND}")
    if result["drift"] > DRIFT_BOUND:
        problems.append(f"median round time grew {result['drift']:.2f}x > {DRIFT_BOUND}x")
    return problems


def report(result: dict) -> str:
    s, e = result["start"], result["end"]
    return "\n".join([
        f"{result['rounds']} rounds, {result['calls']} estimator calls in "
        f"{result['seconds']:.0f} s (after {result['warmup_rounds']} warm-up rounds)",
        f"         RSS MB   NRT alloc  NRT free  balance  ms/round  ms/call "
        f"(median of {result['window']} rounds)",
        *(f"{name:6s} {x['rss_mb']:8.1f} {x['nrt']['alloc']:10d} {x['nrt']['free']:9d} "
          f"{x['nrt']['balance']:8d} {x['ms_per_round']:9.2f} {x['ms_per_call']:8.3f}"
          for name, x in (("start", s), ("end", e))),
        f"growth: RSS {result['rss_growth_mb']:+.1f} MB, NRT balance "
        f"{result['nrt_balance_growth']:+d}, time x{result['drift']:.2f}",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop after this many seconds (default 300 without --rounds)")
    parser.add_argument("--rounds", type=int, default=None, help="stop after this many rounds")
    parser.add_argument("--warmup", type=int, default=30, help="rounds before the start figures")
    parser.add_argument("--window", type=int, default=50, help="rounds of each median")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None or args.rounds is not None else 300.0
    result = run(args.rounds, seconds, args.warmup, args.window, log=sys.stderr)
    problems = check(result)
    result["problems"] = problems
    print(report(result))
    for p in problems:
        print("BOUND BROKEN:", p)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
