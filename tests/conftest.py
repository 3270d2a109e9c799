"""Shared fixtures: a seeded generator, a small random two-layer problem, a small tmpfs."""

from __future__ import annotations

import subprocess
import types
from dataclasses import dataclass

import numpy as np
import pytest


@dataclass
class Problem:
    """Inputs of one two-layer problem: data, labels, one-hot targets and parameters."""

    X: np.ndarray  # (n, D)
    y: np.ndarray  # (n,) int64 class indices
    Y: np.ndarray  # (n, C) one-hot rows of y
    W1: np.ndarray  # (D, H)
    b1: np.ndarray  # (H,)
    W2: np.ndarray  # (H, C)
    b2: np.ndarray  # (C,)

    @property
    def params(self):
        return self.W1, self.b1, self.W2, self.b2


def _make_problem(n, D, H, C, dtype=np.float64, seed=0):
    """Fresh C-contiguous arrays of ``dtype``; weights scaled so logits are O(1)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    y = rng.integers(0, C, size=n)
    Y = np.eye(C)[y]
    W1 = rng.normal(size=(D, H)) / np.sqrt(D)
    b1 = 0.1 * rng.normal(size=H)
    W2 = rng.normal(size=(H, C)) / np.sqrt(H)
    b2 = 0.1 * rng.normal(size=C)
    cast = [np.ascontiguousarray(a, dtype=dtype) for a in (X, Y, W1, b1, W2, b2)]
    X, Y, W1, b1, W2, b2 = cast
    return Problem(X, y.astype(np.int64), Y, W1, b1, W2, b2)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture
def make_problem():
    """``make_problem(n, D, H, C, dtype=np.float64, seed=0) -> Problem``."""
    return _make_problem


@pytest.fixture
def tmpfs():
    """``tmpfs(where, size)``: mount a tmpfs of ``size`` (e.g. "200k") at folder ``where``.

    Skips the test where mounting is not allowed; unmounts after the test. Returns
    a namespace with ``path`` and ``remount(opts)``.
    """
    mounted = []

    def mount(where, size):
        try:
            proc = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                capture_output=True, text=True, timeout=30,
            )
        except OSError as exc:
            pytest.skip(f"cannot run mount: {exc}")
        if proc.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not allowed here: {proc.stderr.strip()}")
        mounted.append(where)
        return types.SimpleNamespace(
            path=where,
            remount=lambda opts: subprocess.run(["mount", "-o", f"remount,{opts}", str(where)],
                                                check=True, timeout=30),
        )

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)
