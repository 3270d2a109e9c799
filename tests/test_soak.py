"""A short soak in CI: memory, Numba's live allocations and the call time stay flat.

Runs ``benchmarks/soak.py`` in a child process (Numba counts NRT allocations only when
``NUMBA_NRT_STATS`` is set before its runtime starts) for a bounded number of rounds:
dense and CSR (exact and lazy) ``fit``/``partial_fit``/``predict`` calls, and two
Python threads. After the warm-up rounds the bounds are those of ``soak.check``:
RSS grows by at most ``RSS_BOUND_MB``, the NRT balance (alloc - free) by at most
``NRT_BOUND``, and the median round time by at most ``DRIFT_BOUND`` (a leak
detector, generous so a busy machine does not fail it; speed itself is not tested).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def test_soak_memory_nrt_and_time_stay_flat(tmp_path):
    out = tmp_path / "soak.json"
    env = {**os.environ, "NUMBA_NRT_STATS": "1"}
    # 1,000 rounds (13,000 estimator calls) take ~10 s here once compiled
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--rounds", "1000", "--warmup", "30", "--window", "100",
         "--seconds", "40", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert out.exists(), f"soak did not finish (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert result["rounds"] >= 200, result
    assert result["problems"] == [], proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    # the compiled code allocated and freed during the rounds, so the counters are live
    assert result["end"]["nrt"]["alloc"] > result["start"]["nrt"]["alloc"]
