"""Cost of launching one parallel region on each Numba threading layer.

    LAYER=tbb python benchmarks/dev/launch_cost.py; LAYER=workqueue python benchmarks/dev/launch_cost.py
"""
import os, time, numpy as np, numba
from numba import njit, prange
numba.config.THREADING_LAYER = os.environ.get("LAYER", "workqueue")
@njit(parallel=True, nogil=True)
def region(a, T):
    for t in prange(T):
        a[t * 16] += 1.0
@njit(nogil=True)
def many(a, T, k):
    for i in range(k):
        region(a, T)
a = np.zeros(64)
many(a, 2, 10)
for _ in range(3):
    t0 = time.perf_counter(); many(a, 2, 10000); t1 = time.perf_counter()
    print(numba.threading_layer(), "us per launch", (t1 - t0) / 10000 * 1e6)
