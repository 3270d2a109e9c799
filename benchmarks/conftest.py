"""Fixtures of the benchmark suite: shapes, dtypes, data sized by the run's mode.

In the ordinary test run (``--benchmark-disable`` from pyproject) every benchmark
runs its function once as a smoke test on small data; with ``--benchmark-enable``
the epoch benchmarks use the workloads' full sizes (60,000 rows for Fashion-MNIST).
``FASTMLP_BENCH_ROWS`` overrides the number of training rows in either mode.
"""

from __future__ import annotations

import os

import pytest
from benchutil import SMOKE_ROWS, timing_enabled

from fastmlp import bench


@pytest.fixture(scope="session")
def timed(request) -> bool:
    return timing_enabled(request.config)


@pytest.fixture(scope="session")
def epoch_rows(timed):
    """``rows(workload)``: training rows of an epoch benchmark in this run's mode."""
    override = os.environ.get("FASTMLP_BENCH_ROWS")
    if override is not None:
        try:
            value = int(override)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"FASTMLP_BENCH_ROWS must be a positive integer, got {override!r}")

    def rows(workload: str) -> int:
        full = bench.WORKLOADS[workload][2]
        if override is not None:
            return min(int(override), full)
        return full if timed else min(SMOKE_ROWS, full)

    return rows


@pytest.fixture(scope="session")
def problems(epoch_rows):
    """``get(workload, dtype)``: a cached :class:`fastmlp.bench.Problem`.

    Digits is the real scikit-learn set; Fashion-MNIST-shaped data is synthetic
    (uniform pixels, random labels): an epoch's cost does not depend on the values.
    """
    cache: dict = {}

    def get(workload: str, dtype: str) -> bench.Problem:
        key = (workload, dtype)
        if key not in cache:
            rows = epoch_rows(workload)
            if workload == "digits":
                cache[key] = bench.load_problem("digits", dtype, rows)
            else:
                cache[key] = bench.synthetic_problem(workload, dtype, rows)
        return cache[key]

    return get
