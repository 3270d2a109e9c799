"""Constants and helpers shared by the benchmark files (imported as ``benchutil``)."""

from __future__ import annotations

import numpy as np

# (batch, D, H, C) of one training step
SHAPES = {"digits": (200, 64, 100, 10), "fashion": (200, 784, 100, 10)}
DTYPES = ("float32", "float64")
SMOKE_ROWS = 2000


def timing_enabled(config) -> bool:
    """Whether pytest-benchmark times this run (its own rule: disable unless enable)."""
    return not config.getoption("benchmark_disable") or config.getoption("benchmark_enable")


def tolerance(dtype) -> dict:
    """assert_allclose tolerances for a kernel against its NumPy expression."""
    if np.dtype(dtype) == np.float32:
        return {"rtol": 2e-4, "atol": 2e-5}
    return {"rtol": 1e-9, "atol": 1e-12}
