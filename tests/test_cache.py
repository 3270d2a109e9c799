"""Numba's on-disk cache across processes: every cached entry must be self-contained.

Each step runs in a fresh process sharing one empty ``NUMBA_CACHE_DIR``, the way a
user's sessions share the package's cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import pytest

from fastmlp import kernels as K
from fastmlp import solvers as S

pytestmark = pytest.mark.skipif(
    bool(numba.config.DISABLE_JIT), reason="about Numba's on-disk cache; nothing is compiled"
)

_SETUP = """
import numpy as np
from fastmlp import solvers as S
r = np.random.default_rng(0)
X = r.random((5, 3)); W1 = r.random((3, 4)); b1 = r.random(4); W2 = r.random((4, 2))
b2 = r.random(2)
"""


def _run(code, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), NUMBA_DISABLE_JIT="0")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SETUP) + textwrap.dedent(code)],
        env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.slow
def test_entry_compiled_after_its_callees_were_loaded_from_cache(tmp_path):
    # 1. compiles _loss_and_grads, and with it (and into the cache) its callee _forward;
    # 2. compiles forward_proba's _forward_proba while _forward could come from the cache;
    # 3. loads _forward_proba's entry alone. Before every compiled caller used its own
    #    uncached build of each callee, step 3 crashed (SIGSEGV): the entry saved in
    #    step 2 called the cache-loaded _forward by a symbol no fresh process defines.
    steps = [
        """
        ws = S.Workspace(5, 3, 4, 2, 5, np.float64)
        Y = np.eye(2)[[0, 1, 0, 1, 1]]
        S.loss_and_grads(X, Y, np.ones(5), (W1, b1, W2, b2), ws, parallel=False)
        """,
        "print(S.forward_proba(X, (W1, b1, W2, b2), parallel=False).sum())",
        "print(S.forward_proba(X, (W1, b1, W2, b2), parallel=False).sum())",
    ]
    outputs = []
    for i, code in enumerate(steps, 1):
        done = _run(code, tmp_path)
        assert done.returncode == 0, f"step {i} ended with {done.returncode}: {done.stderr[-2000:]}"
        outputs.append(done.stdout.strip())
    assert outputs[1] == outputs[2] == "5.0"  # each row's probabilities sum to one


def test_python_calls_run_the_cached_twin_and_compiled_calls_the_uncached_build():
    # the mechanism behind the test above (fastmlp._jit.EntryDispatcher)
    blas_serial = S.path(use_blas=True, parallel=False)
    copies = blas_serial._epoch.py_func.__globals__  # one path's compiled copies
    for dispatcher in (K.matmul_nt, K.sgd_update, copies["_forward"], copies["_epoch"]):
        assert dispatcher.entry is not dispatcher
        assert dispatcher.entry._cache.__class__.__name__ != "NullCache"
        assert dispatcher._cache.__class__.__name__ == "NullCache"
    # a path hands Python the cached twins directly
    assert blas_serial._epoch is copies["_epoch"].entry


def test_a_pickled_kernel_runs_in_another_process(tmp_path):
    # e.g. a kernel handed to a joblib worker: Numba rebuilds the dispatcher there,
    # and the rebuilt one must get its cached twin too
    import pickle

    path = tmp_path / "kernel.pkl"
    path.write_bytes(pickle.dumps(K.add_scaled))
    code = f"""
    import pickle
    kernel = pickle.loads(open({str(path)!r}, "rb").read())
    out = np.ones(3); kernel(out, 2.0, np.arange(3.0)); print(out.tolist())
    """
    done = _run(code, tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[1.0, 3.0, 5.0]"


def test_a_pickled_solver_path_keeps_its_constants(tmp_path):
    # a path's copy is rebuilt in the other process with its own USE_BLAS and PARALLEL
    import pickle

    import numpy as np

    path = tmp_path / "forward.pkl"
    path.write_bytes(pickle.dumps(S.path(use_blas=False, parallel=False)._forward_proba))
    X = np.random.default_rng(0).random((5, 3))
    params = (X[:3, :4].copy(), np.zeros(4), X[:4, :2].copy(), np.zeros(2))
    P = S.forward_proba(X, params, use_blas=False, parallel=False)
    code = f"""
    import json, pickle
    forward = pickle.loads(open({str(path)!r}, "rb").read())
    g = forward.py_func.__globals__
    X = np.random.default_rng(0).random((5, 3))
    W1, W2 = X[:3, :4].copy(), X[:4, :2].copy()
    P, _ = forward(X, W1, np.zeros(4), W2, np.zeros(2), 0, 0, 1024, False, False)
    print(g["USE_BLAS"], g["PARALLEL"], json.dumps(P.tolist()))
    """
    done = _run(code, tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-2000:]
    use_blas, parallel, out = done.stdout.strip().split(" ", 2)
    assert (use_blas, parallel) == ("False", "False")
    np.testing.assert_allclose(np.array(json.loads(out)), P, rtol=1e-12)


def test_specialize_refuses_unknown_constants():
    from fastmlp._jit import specialize

    with pytest.raises(ValueError, match="has no global"):
        specialize((S._forward,), suffix="_x", PARALEL=True)


@pytest.mark.slow
def test_a_path_compiles_only_its_own_kernels(tmp_path):
    # solvers compiles each (use_blas, parallel) path as its own copy, with the
    # path's flags as constants, so Numba prunes the other paths before typing
    # them. A branch that also depends on a run-time value (``if PARALLEL or
    # alpha < 0``, or a flag passed on as an argument) would silently defeat
    # that and bring back compiling every path on a cold cache.
    code = """
    import json
    from numba.core import event
    Y = np.eye(2)[[0, 1, 0, 1, 1]]
    ws = S.Workspace(5, 3, 4, 2, 2, np.float64)
    params = (W1, b1, W2, b2)
    with event.install_recorder("numba:compile") as rec:
        S.run_epoch(X, Y, np.ones(5), params, S.init_optimizer_state(params, "adam"), ws,
                    optimizer="adam", use_blas=True, parallel=False)
    names = {ev.data["dispatcher"].py_func.__qualname__ for _, ev in rec.buffer}
    print(json.dumps(sorted(names)))
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert {"_epoch_blas_serial", "_loss_and_grads_blas_serial"} <= names
    assert "linear_forward_blas" in names
    other_paths = sorted(
        n for n in names
        if n.endswith("_parallel") or "matmul_nt" in n or "_loss_and_grads_t" in n
    )
    assert other_paths == [], f"the BLAS serial path also compiled {other_paths}"


# ------------------------------------------------------------ a cache that heals
_HEAL_STEP = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    ws = S.Workspace(5, 3, 4, 2, 5, np.float64)
    Y = np.eye(2)[[0, 1, 0, 1, 1]]
    loss, _ = S.loss_and_grads(X, Y, np.ones(5), (W1, b1, W2, b2), ws)
    P = S.forward_proba(X, (W1, b1, W2, b2))
healed = [str(w.message) for w in caught if "damaged compile-cache" in str(w.message)]
print(json.dumps({"loss": float(loss), "P": float(P.sum()), "healed": healed}))
"""


def _heal_step(cache_dir):
    done = _run("import json\n" + _HEAL_STEP, cache_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cache_files(cache_dir, suffix):
    return [os.path.join(d, f) for d, _, fs in os.walk(cache_dir) for f in fs if f.endswith(suffix)]


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip_bytes(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\xff" * 64)


@pytest.mark.slow
@pytest.mark.parametrize("damage, suffix", [
    (_truncate, ".nbc"), (_flip_bytes, ".nbc"), (_truncate, ".nbi"),
])
def test_a_damaged_cache_is_rebuilt_with_one_warning(tmp_path, damage, suffix):
    first = _heal_step(tmp_path)
    assert first["healed"] == []
    files = _cache_files(tmp_path, suffix)
    assert files, "the first run cached nothing"
    for path in files:
        damage(path)
    second = _heal_step(tmp_path)  # used to raise UnpicklingError / LLVM bitcode errors
    assert len(second["healed"]) == 1, second
    assert (second["loss"], second["P"]) == (first["loss"], first["P"])
    third = _heal_step(tmp_path)  # rebuilt: loads without a word
    assert third == first


@pytest.mark.slow
def test_a_foreign_entry_under_our_name_is_rebuilt(tmp_path):
    # e.g. a file written by another Numba for the same name: not ours, so not trusted
    first = _heal_step(tmp_path)
    data = _cache_files(tmp_path, ".nbc")
    import pickle

    for path in data:
        with open(path, "wb") as f:
            pickle.dump(("not", "a", "compile", "result"), f)
    second = _heal_step(tmp_path)
    assert len(second["healed"]) == 1
    assert (second["loss"], second["P"]) == (first["loss"], first["P"])


@pytest.mark.slow
def test_processes_sharing_a_cold_cache_agree(tmp_path):
    # several rounds of several processes at once on one cache (cold in round 1),
    # float32 and float64 at the same time: two signatures of one function racing
    # for the same file number must never hand one the other's machine code
    code = """
    import json
    from fastmlp import solvers as S
    out = {}
    for dt in (np.float32, np.float64) if ORDER else (np.float64, np.float32):
        ws = S.Workspace(5, 3, 4, 2, 5, dt)
        Y = np.eye(2, dtype=dt)[[0, 1, 0, 1, 1]]
        p = tuple(a.astype(dt) for a in (W1, b1, W2, b2))
        loss, _ = S.loss_and_grads(X.astype(dt), Y, np.ones(5, dt), p, ws)
        out[np.dtype(dt).name] = round(float(loss), 5)
    print(json.dumps(out))
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_DISABLE_JIT="0")
    results = []
    for _ in range(3):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(_SETUP) + f"ORDER = {i % 2 == 0}\n"
                 + textwrap.dedent(code)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for i in range(3)
        ]
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r == results[0] for r in results), results


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_while_compiling_stops_the_fit_at_once(tmp_path):
    # The issue reported Ctrl-C lost while Numba compiles (the fit ran 20-27 s on).
    # Measured here with SIGINT handled as in a terminal, the fit returns within
    # 0.3 s (5 of 5 runs): scikit-learn's "Training interrupted by user.", before
    # the first epoch finished compiling. (A child that inherits SIGINT as
    # ignored, as from a background job, never sees it: that is the shell's.)
    import signal
    import time

    code = """
    import signal, warnings
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    from sklearn.datasets import load_digits
    from fastmlp import TwoLayerClassifier
    Xd, yd = load_digits(return_X_y=True)
    print("start", flush=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = TwoLayerClassifier(max_iter=5).fit(Xd / 16, yd)
    compiled = len(S.path(True, False)._epoch.overloads)
    print(json.dumps({"n_iter": clf.n_iter_, "compiled": compiled,
                      "warnings": [str(w.message) for w in caught]}), flush=True)
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_DISABLE_JIT="0")
    child = subprocess.Popen(
        [sys.executable, "-c", "import json\n" + textwrap.dedent(_SETUP) + textwrap.dedent(code)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "start"
        time.sleep(1.5)  # inside the first compilation (several seconds on a cold cache)
        child.send_signal(signal.SIGINT)
        result = json.loads(child.stdout.readline())
    finally:
        child.communicate(timeout=600)
    assert result["n_iter"] == 0
    assert "Training interrupted by user." in result["warnings"]
    assert result["compiled"] == 0  # stopped inside the compilation, not after it


def test_an_entry_of_an_older_version_is_a_miss_not_a_hit(tmp_path):
    # A process killed between writing the index and the data file (Numba writes
    # the index first) leaves a new index naming a data file of the old version.
    # Its bytes are intact, so only the key digest, which covers the source
    # stamp, can tell: the entry is then a miss (compiled afresh), never run.
    from fastmlp import _jit

    checked = type(_jit._HealingFunctionCache(K.matmul_nt.py_func)._cache_file)
    key = (("float32[:, ::1]",), ("x86_64", "cpu", ""), ("code", ""))
    old = checked(str(tmp_path), "f", "OLD STAMP")
    old.save(key, "machine code of the old version")
    assert old.load(key) == "machine code of the old version"
    new = checked(str(tmp_path), "f", "NEW STAMP")
    new._save_index({key: old._data_name(1)})  # what the killed process left
    assert new.load(key) is None


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_inside_llvms_object_callback_is_not_lost(tmp_path):
    # CI caught the timed test above losing its SIGINT once: it had landed inside
    # llvmlite's ctypes callback that hands LLVM's object code to Numba, where
    # CPython prints a KeyboardInterrupt and drops it (the fit then ran its 5
    # epochs). Here the signal is raised from inside that callback every time:
    # it must still stop the fit, without a traceback on stderr.
    code = """
    import json, signal, warnings
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    from numba.core.registry import cpu_target
    from sklearn.datasets import load_digits
    from fastmlp import TwoLayerClassifier
    ee = cpu_target.target_context.codegen()._engine._ee
    notify = ee._object_cache_notify
    calls = []
    def notify_then_sigint(module, buf):
        notify(module, buf)
        calls.append(1)
        if len(calls) == 3:  # a few objects into the first fit's compilation
            signal.raise_signal(signal.SIGINT)
    ee._object_cache_notify = notify_then_sigint
    Xd, yd = load_digits(return_X_y=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = TwoLayerClassifier(max_iter=5).fit(Xd / 16, yd)
    import sys
    restored = sys.getprofile() is None and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    again = TwoLayerClassifier(max_iter=2).fit(Xd / 16, yd).n_iter_  # fit as usual
    print(json.dumps({"n_iter": clf.n_iter_, "calls": len(calls), "again": again,
                      "restored": restored, "warnings": [str(w.message) for w in caught]}))
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["calls"] >= 3  # the signal really was raised inside the callback
    assert result["n_iter"] == 0
    assert "Training interrupted by user." in result["warnings"]
    assert "Exception ignored" not in done.stderr
    assert result["restored"]  # the terminal's handler back, no profile hook left
    assert result["again"] == 2


_FIT_ON_A_FULL_DISK = """
import warnings
import numpy as np
from fastmlp import TwoLayerClassifier
X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    TwoLayerClassifier(hidden_units=4, max_iter=2, random_state=0).fit(X, np.arange(40) % 2)
for w in caught:
    if issubclass(w.category, RuntimeWarning):
        print("WARNING", w.message)
"""


def test_a_full_disk_says_so_and_removes_nothing(tmp_path, tmpfs):
    # a cache that cannot grow is not damaged: one warning naming the cause, no
    # "damaged entry", no index left naming a data file that was never written
    disk = tmp_path / "disk"
    disk.mkdir()
    tmpfs(disk, "64k")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(disk))
    runs = [subprocess.run([sys.executable, "-c", _FIT_ON_A_FULL_DISK], capture_output=True,
                           text=True, timeout=900, env=env) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
        lines = [line for line in r.stdout.splitlines() if line.startswith("WARNING")]
        assert len(lines) == 1, r.stdout
        assert "No space left on device" in lines[0] and "damaged" not in lines[0]
    for _root, _, files in os.walk(disk):
        names = set(files)
        for index in (f for f in files if f.endswith(".nbi")):
            stem = index[: -len(".nbi")]
            assert any(f.startswith(stem + ".") and f.endswith(".nbc") for f in names), index
