"""Out-of-core training on a 2-worker Dask LocalCluster, against the in-memory fit.

1. Worker start: the first fit on a fresh worker whose NUMBA_CACHE_DIR is empty (it
   compiles) and on one whose cache is warm (it loads), and ``fastmlp.dask.warm_up``.
2. Fashion-MNIST (``fastmlp.datasets.load_fashion_mnist``: the full set from the Debian
   package ``dataset-fashion-mnist``, else the shipped sample) repeated to about 2 GB of
   float32, written as chunked ``.npy`` files in a temporary directory.
3. ``dask_ml.wrappers.Incremental(TwoLayerClassifier(...))`` over a dask array that
   reads those files lazily, on a LocalCluster of 2 worker processes (1 thread each,
   loopback, no dashboard) whose memory limit per worker is below the data's size
   (Dask's default memory thresholds: spill, pause, terminate). Seconds per epoch (a
   pass over every block), against ``partial_fit`` on the same data in memory in this
   process (one call per epoch, and one call per block); the peak resident memory of
   each worker (VmHWM) and the most data it held in RAM.

Run: python benchmarks/dask_out_of_core.py [--gb 2] [--memory-limit 896MiB] [--epochs 3]
Needs the dask extra: python -m pip install -e ".[dask]".
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _vm_hwm_bytes():
    """Peak resident set size of this process (Linux VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _first_fit(path_X, path_y, classes):
    """On a worker: the first fit of a fresh process (one partial_fit on a block)."""
    from numba.core import event

    t = time.perf_counter()
    from fastmlp import TwoLayerClassifier

    X, y = np.load(path_X), np.load(path_y)
    with event.install_recorder("numba:compile") as rec:
        TwoLayerClassifier(hidden_units=100, solver="sgd", random_state=0).partial_fit(
            X, y, classes=classes)
    return {"seconds": time.perf_counter() - t,
            "compiled": sum(1 for _, e in rec.buffer if e.is_start)}


def _cluster(n_workers, memory_limit, env=None, local_directory=None):
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        memory_limit=memory_limit, env=env or {}, local_directory=local_directory,
    )


def worker_start(files, classes, tmp):
    """Cold and warm worker start: a new 1-worker cluster on an empty, then a warm cache."""
    from distributed import Client

    import fastmlp.dask

    cache = Path(tempfile.mkdtemp(prefix="numba-cache-", dir=tmp))
    rows = []
    for label in ("cold (empty NUMBA_CACHE_DIR)", "warm (same directory, filled)"):
        t0 = time.perf_counter()
        with _cluster(1, "4GiB", env={"NUMBA_CACHE_DIR": str(cache)},
                      local_directory=tmp) as cluster, Client(cluster) as client:
            client.wait_for_workers(1, timeout=120)
            up = time.perf_counter() - t0
            t = time.perf_counter()
            fut = client.submit(_first_fit, str(files[0][0]), str(files[0][1]), classes,
                                pure=False)
            inside = fut.result(timeout=900)
            first = time.perf_counter() - t
            # warm_up on the same worker now: every path of both dtypes
            w = fastmlp.dask.warm_up(client, timeout=900)
            (res,) = w.values()
        rows.append((label, up, first, inside, res))
        print(f"{label}: cluster up {up:.1f} s; first fit (partial_fit on one "
              f"{np.load(files[0][0], mmap_mode='r').shape} block, float32) {first:.2f} s "
              f"from submit to result ({inside['seconds']:.2f} s inside, "
              f"{inside['compiled']} functions compiled); then warm_up(): "
              f"{res['seconds']:.2f} s, {res['compiled']} compiled "
              f"(cache dir {res['numba_cache_dir']})", flush=True)
    return rows


def write_chunks(X, y, target_bytes, chunk_rows, directory):
    """X, y repeated to about target_bytes as chunk files; returns [(X path, y path)]."""
    n_chunks = max(2, round(target_bytes / (chunk_rows * X.shape[1] * X.itemsize)))
    files = []
    for i in range(n_chunks):
        idx = (np.arange(i * chunk_rows, (i + 1) * chunk_rows)) % X.shape[0]
        fx, fy = directory / f"X_{i:04d}.npy", directory / f"y_{i:04d}.npy"
        np.save(fx, X[idx])
        np.save(fy, y[idx])
        files.append((fx, fy))
    return files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.0, help="size of the data on disk, in GB")
    ap.add_argument("--chunk-rows", type=int, default=20000)
    ap.add_argument("--memory-limit", default="896MiB", help="per worker")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--skip-worker-start", action="store_true")
    args = ap.parse_args(argv)

    import dask
    import dask.array as da
    import dask_ml
    import distributed
    from dask.utils import parse_bytes
    from dask_ml.wrappers import Incremental
    from distributed import Client
    from sklearn.utils import check_random_state

    import fastmlp.dask
    from fastmlp import TwoLayerClassifier
    from fastmlp.datasets import load_fashion_mnist

    warnings.simplefilter("ignore")  # ConvergenceWarning etc.: epochs are counted here
    print(f"dask {dask.__version__}, distributed {distributed.__version__}, "
          f"dask-ml {dask_ml.__version__}, NumPy {np.__version__}, {os.cpu_count()} cores",
          flush=True)
    data = load_fashion_mnist()
    print(data.name, flush=True)
    X0, y0 = np.ascontiguousarray(data.X_train, np.float32), data.y_train
    classes = np.unique(y0)

    with tempfile.TemporaryDirectory(prefix="fastmlp-dask-bench-") as tmp:
        tmp_path = Path(tmp)
        chunk_dir = tmp_path / "chunks"
        chunk_dir.mkdir()
        t = time.perf_counter()
        files = write_chunks(X0, y0, args.gb * 1e9, args.chunk_rows, chunk_dir)
        n_rows = len(files) * args.chunk_rows
        total = n_rows * X0.shape[1] * 4
        print(f"wrote {len(files)} chunks of {args.chunk_rows} x {X0.shape[1]} float32: "
              f"{total / 1e9:.2f} GB ({n_rows} rows, {n_rows / X0.shape[0]:.1f}x the "
              f"train split) in {time.perf_counter() - t:.1f} s", flush=True)

        if not args.skip_worker_start:
            worker_start(files, classes, tmp)

        limit = parse_bytes(args.memory_limit)
        assert limit < total, "the memory limit must be below the data's size"
        load = dask.delayed(np.load, pure=True)
        X = da.concatenate([da.from_delayed(load(str(fx)), (args.chunk_rows, X0.shape[1]),
                                            np.float32) for fx, _ in files])
        y = da.concatenate([da.from_delayed(load(str(fy)), (args.chunk_rows,), y0.dtype)
                            for _, fy in files])

        def estimator(**kw):
            return TwoLayerClassifier(hidden_units=100, solver="sgd", learning_rate_init=0.01,
                                      batch_size=200, random_state=0, **kw)

        with _cluster(2, limit, local_directory=tmp) as cluster, Client(cluster) as client:
            client.wait_for_workers(2, timeout=120)
            warm = fastmlp.dask.warm_up(client, ("float32",), timeout=900)
            print("warm_up():", {a: (round(r["seconds"], 2), r["compiled"])
                                 for a, r in warm.items()}, flush=True)
            client.run(_start_peak_sampler)
            client.get_task_stream()  # start recording what each task did
            inc = Incremental(estimator(), shuffle_blocks=True, random_state=0)
            ooc = []
            for epoch in range(args.epochs):
                t = time.perf_counter()
                if epoch == 0:
                    inc.fit(X, y, classes=classes)
                else:
                    inc.partial_fit(X, y)
                ooc.append(time.perf_counter() - t)
                print(f"out of core, epoch {epoch + 1}: {ooc[-1]:.2f} s", flush=True)
            stream = client.get_task_stream()
            hwm = client.run(_vm_hwm_bytes)
            held = client.run(_stop_peak_sampler)
            spilled = client.run(_spilled_bytes)
            acc_ooc = float(inc.estimator_.score(X0, y0))

        # the same data in this process's memory (compiled code loaded first)
        for kw in ({}, {"n_threads": 1}):
            estimator(**kw).partial_fit(X0[:2000], y0[:2000], classes=classes)
        X_all = np.concatenate([np.load(fx) for fx, _ in files])
        y_all = np.concatenate([np.load(fy) for _, fy in files])
        order = list(range(len(files)))
        check_random_state(0).shuffle(order)
        results = {}
        for name, kw in (("in memory, this process's BLAS threads", {}),
                         ("in memory, 1 BLAS thread (as each worker)", {"n_threads": 1})):
            clf = estimator(**kw)
            times = []
            for _ in range(args.epochs):
                t = time.perf_counter()
                clf.partial_fit(X_all, y_all, classes=classes)
                times.append(time.perf_counter() - t)
            results[name] = times
            clf = estimator(**kw)
            times = []
            for _ in range(args.epochs):
                t = time.perf_counter()
                for i in order:
                    lo = i * args.chunk_rows
                    clf.partial_fit(X_all[lo:lo + args.chunk_rows],
                                    y_all[lo:lo + args.chunk_rows], classes=classes)
                times.append(time.perf_counter() - t)
            results[name.replace("in memory", "in memory, block by block")] = times
            if kw:
                acc_blocks = float(clf.score(X0, y0))

    print()
    print(f"data: {total / 1e9:.2f} GB on disk in {len(files)} blocks; memory limit "
          f"{limit / 2**20:.0f} MiB per worker, 2 workers, 1 thread each")
    med = statistics.median(ooc)
    print(f"out of core (Incremental, 2 workers): {med:.2f} s per epoch (median of "
          f"{len(ooc)}: {', '.join(f'{s:.2f}' for s in ooc)})")
    for name, times in results.items():
        m = statistics.median(times)
        print(f"{name}: {m:.2f} s per epoch (median of {len(times)}: "
              f"{', '.join(f'{s:.2f}' for s in times)}); out of core / this: {med / m:.2f}")
    print("where the out-of-core time went (seconds summed over the workers' threads, "
          "all epochs):", _breakdown(stream))
    for a in sorted(hwm):
        print(f"worker {a}: peak RSS (VmHWM) {hwm[a] / 2**20:.0f} MiB, most data held in "
              f"RAM {held[a] / 2**20:.0f} MiB, spilled to disk at the end "
              f"{spilled[a] / 2**20:.0f} MiB")
    print(f"train accuracy on the original 60,000 rows after {args.epochs} epochs: out of "
          f"core {acc_ooc:.4f}, in memory block by block (1 thread) {acc_blocks:.4f}")


def _breakdown(stream):
    """Seconds per kind of work in a task stream: compute by task prefix, and transfers."""
    out = {}
    for task in stream:
        for part in task.get("startstops", ()):
            if part["action"] == "compute":
                key = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
                name = str(key).rsplit("-", 1)[0]
            else:
                name = part["action"]  # transfer, disk-read, disk-write, ...
            out[name] = out.get(name, 0.0) + part["stop"] - part["start"]
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _start_peak_sampler(dask_worker):
    """Sample the bytes of stored results the worker holds in RAM, every 10 ms."""
    import threading

    state = {"peak": 0, "run": True}

    def sample():
        while state["run"]:
            fast = getattr(dask_worker.data, "fast", None)
            if fast is not None:
                state["peak"] = max(state["peak"], int(fast.total_weight))
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    dask_worker._fastmlp_bench_peak = state


def _stop_peak_sampler(dask_worker):
    state = dask_worker._fastmlp_bench_peak
    state["run"] = False
    return state["peak"]


def _spilled_bytes(dask_worker):
    total = getattr(dask_worker.data, "spilled_total", None)
    return int(total.memory) if total is not None else 0


if __name__ == "__main__":
    main()
