"""The speed report's code on tiny shapes: the peers train alike, the table and targets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastmlp import bench, reference


@pytest.fixture(scope="module")
def small64():
    # 400 rows = two full batches of 200, digits-shaped, float64
    return bench.synthetic_problem("digits", "float64", rows=400, seed=3)


def test_numpy_epoch_matches_reference_sgd_epoch(small64):
    p = small64
    order = np.random.default_rng(0).permutation(p.X.shape[0])
    params_a = bench.init_params(64, 100, 10, np.float64, seed=1)
    params_b = [w.copy() for w in params_a]
    vel_a = [np.zeros_like(w) for w in params_a]
    vel_b = [np.zeros_like(w) for w in params_b]
    loss_a = bench.numpy_epoch(p.X, p.Y, params_a, vel_a, order, 64)
    loss_b = reference.sgd_epoch(
        p.X,
        p.Y,
        params_b,
        vel_b,
        order,
        64,
        bench.LEARNING_RATE,
        bench.MOMENTUM,
        bench.NESTEROV,
        bench.ALPHA,
    )
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    for a, b in zip(params_a, params_b, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_fastmlp_runner_trains_like_numpy_runner(small64):
    fast = bench.FastmlpEpoch(small64, "sgd", shuffle=False)
    plain = bench.NumpyEpoch(small64, shuffle=False)
    for _ in range(2):
        fast()
        plain()
    for a, b in zip(fast.weights(), plain.weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert fast.loss == pytest.approx(plain.loss, rel=1e-9)


def test_torch_runner_trains_like_numpy_runner(small64):
    pytest.importorskip("torch", reason="PyTorch is optional: pip install torch==2.13.0")
    torch_runner = bench.TorchEpoch(small64, shuffle=False)
    plain = bench.NumpyEpoch(small64, shuffle=False)
    for _ in range(2):
        torch_runner()
        plain()
    for a, b in zip(torch_runner.weights(), plain.weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11)


def test_floor_epoch_computes_the_five_products():
    p = bench.synthetic_problem("digits", "float64", rows=450)  # last batch of 50 rows
    floor = bench.FloorEpoch(p)
    floor()
    start, stop = floor.slices[-1]
    m = stop - start
    assert (start, m) == (400, 50)
    Xb, H2, dZ, dH1 = p.X[start:stop], floor.H2[:m], floor.dZ[:m], floor.dH1[:m]
    np.testing.assert_allclose(floor.H1[:m], Xb @ floor.W1)
    np.testing.assert_allclose(floor.Z[:m], H2 @ floor.W2)
    np.testing.assert_allclose(floor.gW2, H2.T @ dZ)
    np.testing.assert_allclose(floor.dH2[:m], dZ @ floor.W2.T)
    np.testing.assert_allclose(floor.gW1, Xb.T @ dH1)


def test_time_epochs_returns_one_sample_per_repeat(small64):
    calls = []

    class Counter(bench.EpochRunner):
        name = "counter"

        def __call__(self):
            calls.append(1)

    samples = bench.time_epochs([Counter(), Counter()], repeats=3, epochs=2, warmup=1,
                                settle_s=0)
    assert [len(s) for s in samples] == [3, 3]
    assert len(calls) == 2 * (1 + 3 * 2)
    assert all(t >= 0 for s in samples for t in s)
    with pytest.raises(ValueError, match="repeats"):
        bench.time_epochs([Counter()], repeats=0)


def test_bad_workload_and_rows():
    with pytest.raises(ValueError, match="workload"):
        bench.load_problem("mnist")
    with pytest.raises(ValueError, match="rows"):
        bench.load_problem("digits", rows=0)
    with pytest.raises(SystemExit):
        bench.main(["--rows", "0"])
    with pytest.raises(SystemExit):
        bench.main(["--workload", "cifar"])


def test_fashion_falls_back_to_synthetic_and_says_so(monkeypatch):
    import fastmlp.datasets

    def missing(*args, **kwargs):
        raise ValueError("Fashion-MNIST not found")

    monkeypatch.setattr(fastmlp.datasets, "load_fashion_mnist", missing)
    p = bench.fashion_problem("float32", rows=300)
    assert p.X.shape == (300, 784) and p.X.dtype == np.float32
    assert "NOT the real Fashion-MNIST" in p.source and "not found" in p.source


def test_openblas_note():
    assert bench.openblas_note({"PATH": "/bin"}) is None
    note = bench.openblas_note({"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576"})
    assert "OPENBLAS_CORETYPE=Haswell" in note
    assert "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE" in note


def _row(workload, impl, seconds, dtype="float32"):
    return {"workload": workload, "dtype": dtype, "implementation": impl, "median_s": seconds}


@pytest.mark.parametrize(
    ("fast", "expected"),
    [(0.12, ["pass", "pass", "pass"]), (0.2, ["MISS", "MISS", "MISS"])],
)
def test_fashion_targets_pass_or_miss_on_the_ratios(fast, expected):
    rep = bench.Report(command=["test"])
    rep.epochs = [
        _row("fashion", bench.FloorEpoch.name, 0.1),
        _row("fashion", "fastmlp run_epoch sgd", fast),
        _row("fashion", bench.NumpyEpoch.name, 0.2),
        _row("fashion", bench.SklearnEpoch.name, 0.34),
    ]
    targets = {t.goal: t for t in bench.evaluate_targets(rep, threads_compared=False)}
    got = [
        targets["fashion f32: epoch <= 1.25x GEMM floor"],
        targets["fashion f32: >= 2.5x faster than MLPClassifier f32"],
        targets["fashion f32: >= 1.6x faster than plain NumPy"],
    ]
    assert [t.status for t in got] == expected
    assert got[0].measured == f"{fast / 0.1:.2f}x"
    assert targets["digits f32: >= 8x faster than MLPClassifier"].status == "n/a"


@pytest.mark.parametrize(("two", "adam", "expected"), [(0.05, 0.105, "pass"), (0.08, 0.12, "MISS")])
def test_thread_and_adam_targets(two, adam, expected):
    rep = bench.Report(command=["test"])
    rep.epochs = [
        _row("digits", "fastmlp run_epoch sgd", two),
        _row("digits", "fastmlp run_epoch adam", adam * two / 0.1),
        _row("digits", "fastmlp run_epoch sgd, 1 thread", 0.1),
    ]
    targets = {t.goal: t for t in bench.evaluate_targets(rep, threads_compared=True)}
    threads = targets["2 threads: epoch <= 0.6x one-thread epoch"]
    assert (threads.status, threads.measured) == (expected, f"{two / 0.1:.2f}x")
    assert targets["Adam epoch <= 1.1x SGD epoch"].status == expected
    quiet = bench.evaluate_targets(rep, threads_compared=False)
    assert {t.goal: t for t in quiet}["2 threads: epoch <= 0.6x one-thread epoch"].status == "n/a"


def test_main_digits_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = [
        "--workload",
        "digits",
        "--rows",
        "400",
        "--repeats",
        "1",
        "--epochs",
        "1",
        "--no-torch",
        "--no-loops",
        "--json",
        str(out),
    ]
    assert bench.main(args) == 0
    text = capsys.readouterr().out
    assert "GEMM floor (5 np.dot)" in text and "Targets (issues 4, 11, 12 and 13)" in text
    assert "fastmlp TwoLayerRegressor sgd" in text and "scikit-learn MLPRegressor" in text
    assert "BLAS:" in text
    data = json.loads(out.read_text())
    names = {r["implementation"] for r in data["epochs"]}
    assert {
        bench.FloorEpoch.name,
        "fastmlp run_epoch sgd",
        "numpy",
        bench.SklearnEpoch.name,
    } <= names
    assert all(r["median_s"] > 0 and r["rows"] == 400 for r in data["epochs"])
    assert data["predict"][0]["fastmlp_one_row_s"] > 0
    statuses = {t["goal"]: t["status"] for t in data["targets"]}
    assert statuses["digits f32: >= 8x faster than MLPClassifier"] in ("pass", "MISS")
    assert statuses["fashion f32: epoch <= 1.25x GEMM floor"] == "n/a"


def test_png_chart(tmp_path):
    pytest.importorskip("matplotlib", reason="the chart needs the optional matplotlib")
    rep = bench.Report(command=["test"])
    rep.epochs = [
        _row("digits", bench.FloorEpoch.name, 0.001),
        _row("digits", "fastmlp run_epoch sgd", 0.002),
    ]
    path = tmp_path / "chart.png"
    bench.save_png(rep, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_startup_process_plumbing(tmp_path):
    # the fresh-process timer on a trivial script: JSON back, NUMBA_CACHE_DIR passed on
    code = (
        "import json, os, time; t = time.perf_counter(); "
        "print(json.dumps({'import_s': time.perf_counter() - t, 'fit_s': 0.0, "
        "'cache': os.environ.get('NUMBA_CACHE_DIR')}))"
    )
    out = bench._startup_once(code, str(tmp_path))
    assert out["cache"] == str(tmp_path)
    assert out["process_s"] > out["import_s"] >= 0
    with pytest.raises(RuntimeError, match="start-up process failed"):
        bench._startup_once("raise SystemExit(3)", None)


def test_report_says_why_each_missed_target_is_missed():
    # every target the report can miss has its reason and what was tried, and
    # only missed targets print one
    rep = bench.Report(command=["test"])
    goals = [
        "fashion f32: epoch <= 1.25x GEMM floor", "fashion f32: >= 1.6x faster than plain NumPy",
        "digits f32: >= 8x faster than MLPClassifier", "Adam epoch <= 1.1x SGD epoch",
        "2 threads: epoch <= 0.6x one-thread epoch",
        "Numba-loop matmuls >= 60% of BLAS throughput", "predict one row <= 10 us median",
        "predict_proba 10k rows >= 2x faster than MLPClassifier",
        "start-up, warm cache: import + first fit on digits <= 2 s",
        "start-up, cold cache: import + first fit on digits <= 4 s",
        "threaded predict: 2 threads >= 1.5x one thread (100-row calls)",
        "issue 13: fashion sgd epoch <= 1.3x GEMM floor",
        "issue 13: fashion sgd >= 1.7x faster than plain NumPy",
        "issue 13: fashion adam epoch <= 1.1x sgd epoch",
        "issue 13: digits epoch inside fit >= 8x faster than MLPClassifier",
        "issue 13: digits partial_fit faster than plain NumPy",
    ]
    rep.targets = [bench.Target(g, "1.0", "MISS") for g in goals]
    rep.targets.append(bench.Target("Adam epoch <= 1.1x SGD epoch (again)", "1.0", "pass"))
    lines = bench.format_report(rep).split("what was tried:")[1].strip().splitlines()
    assert len(lines) == len(goals)
    for line, goal in zip(lines, goals, strict=True):
        assert line.startswith(f"- {goal}: ") and len(line) > len(goal) + 40


def test_issue_11_targets_from_startup_and_threads():
    rep = bench.Report(command=["test"])
    rep.startup = {
        "what": "fit", "sklearn_import_s": 0.9, "help_s": 0.2,
        "warm": {"import_s": 0.4, "fit_s": 1.0, "process_s": 1.6},
        "cold": {"import_s": 0.4, "fit_s": 8.0, "process_s": 8.6, "compile_s": 7.5,
                 "compile_top": [["_epoch_blas_serial", 3.0]]},
    }
    rep.threads = {"data": "digits", "rows": 100, "threads": 2, "calls": 2000,
                   "serial_calls_per_s": 1000.0, "threaded_calls_per_s": 1600.0,
                   "speedup": 1.6}
    targets = {t.goal: t for t in bench.evaluate_targets(rep, threads_compared=False)}
    cold = targets["start-up, cold cache: import + first fit on digits <= 4 s"]
    assert (cold.status, cold.measured) == ("MISS", "8.4 s")
    vs = targets["start-up, warm cache: at most 1.0 s more than importing scikit-learn"]
    assert (vs.status, vs.measured) == ("pass", "+0.50 s")
    assert targets["python -m fastmlp --help < 0.3 s"].status == "pass"
    tp = targets["threaded predict: 2 threads >= 1.5x one thread (100-row calls)"]
    assert (tp.status, tp.measured) == ("pass", "1.60x")
    text = bench.format_report(rep)
    assert "_epoch_blas_serial" in text and "every result equal to the serial one" in text


def test_epoch_phases_plumbing(small64):
    # every phase of the compiled epoch timed alone and removed, the Python
    # around it, the sums and the whole epoch; timings are not judged here
    ph = bench.epoch_phases(small64, "sgd", repeats=2, settle_s=0)
    from fastmlp import solvers

    names = [r["phase"] for r in ph["phases"]]
    assert names == [*solvers.EPOCH_PHASES, "Python around the compiled epoch"]
    assert all(r["median_s"] >= 0 and r["min_s"] <= r["max_s"] for r in ph["phases"])
    assert all("removed_s" in r for r in ph["phases"][:-1])
    assert ph["sum_s"] == pytest.approx(sum(r["median_s"] for r in ph["phases"]))
    assert ph["epoch_s"] > 0 and ph["replay_s"] > 0 and ph["sum_over_epoch"] > 0
    text = bench.format_phases(ph)
    assert "sum of the phases" in text and "GEMM Xᵀ dH1" in text


def test_epoch_phase_replay_trains_like_the_epoch(small64):
    # every bit of the phase runner set: the same updates as the compiled epoch
    import numpy as np

    from fastmlp import kernels, solvers

    p = small64
    fast = bench.FastmlpEpoch(p, "sgd", shuffle=True, seed=5)
    params = tuple(w.copy() for w in fast.params)
    state = solvers.init_optimizer_state(params, "sgd")
    ws = solvers.Workspace(400, 64, 100, 10, 200, np.float64)
    fast()
    dt = np.float64
    solvers._epoch_phase(
        (1 << len(solvers.EPOCH_PHASES)) - 1, p.X, p.Y, np.ones(400), params, state,
        ws.buffers, ws.tbuffers, 200, np.uint64(5), solvers.SGD, dt(bench.LEARNING_RATE),
        dt(bench.MOMENTUM), bench.NESTEROV, dt(0.9), dt(0.999), dt(1e-8), 0, dt(bench.ALPHA),
        kernels.RELU, solvers.SOFTMAX,
    )
    for a, b in zip(params, fast.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_issue_13_targets():
    rep = bench.Report(command=["test"])
    rep.epochs = [
        _row("fashion", bench.FloorEpoch.name, 0.1),
        _row("fashion", "fastmlp TwoLayerClassifier sgd", 0.12),
        _row("fashion", "fastmlp TwoLayerClassifier adam", 0.14),
        _row("fashion", bench.NumpyEpoch.name, 0.2),
        _row("fashion", bench.SklearnEpoch.name, 0.36),
        _row("digits", "fastmlp run_epoch sgd", 0.001),
        _row("digits", "fastmlp TwoLayerClassifier sgd", 0.003),
        _row("digits", bench.NumpyEpoch.name, 0.002),
        _row("digits", bench.SklearnEpoch.name, 0.009),
    ]
    t = {x.goal: x for x in bench.evaluate_targets(rep, threads_compared=False)}
    got = [(t[g].status, t[g].measured) for g in (
        "issue 13: fashion sgd epoch <= 1.3x GEMM floor",
        "issue 13: fashion sgd >= 1.7x faster than plain NumPy",
        "issue 13: fashion sgd >= 2.5x faster than MLPClassifier",
        "issue 13: fashion adam epoch <= 1.1x sgd epoch",
        "issue 13: digits epoch inside fit >= 8x faster than MLPClassifier",
        "issue 13: digits partial_fit faster than plain NumPy",
    )]
    assert got == [("pass", "1.20x"), ("MISS", "1.67x"), ("pass", "3.00x"), ("MISS", "1.17x"),
                   ("pass", "9.00x"), ("MISS", "0.67x")]


# ------------------------------------------------------------ sparse input (issue 10)
def test_sparse_section_end_to_end(tmp_path, capsys):
    # a tiny Zipf set through the report's main: each model in its own process,
    # the kernel rows, the targets from the figures, the JSON
    import statistics

    from fastmlp import bench_sparse

    out = tmp_path / "sparse.json"
    models = ["mlp-adam", "exact-adam", "lazy-adam", "torch-adam"]
    args = ["--sparse-only", "--sparse-rows", "600", "--sparse-features", "2000",
            "--sparse-nnz", "20", "--sparse-epochs", "1", "--sparse-datasets", "zipf",
            "--sparse-models", *models, "--repeats", "1", "--json", str(out)]
    assert bench.main(args) == 0
    text = capsys.readouterr().out
    assert "Sparse input (issue 10)" in text and "Targets (issues 4, 10, 11, 12 and 13)" in text
    assert "Epochs (D -> 100 ReLU" not in text  # --sparse-only: no dense epochs
    for name in bench_sparse.DATASETS:  # every sparse target is named, run or not
        for goal in bench_sparse._goals(name).values():
            assert goal in text
    sec = json.loads(out.read_text())["sparse"]
    zipf = sec["datasets"]["zipf"]
    assert (zipf["train_rows"], zipf["test_rows"], zipf["features"]) == (480, 120, 2000)
    figs = zipf["models"]
    for key in ("mlp-adam", "exact-adam", "lazy-adam"):
        r = figs[key]
        assert r["epoch_s"] == statistics.median(r["epoch_samples_s"]) > 0
        assert 0 <= r["accuracy"] <= 1 and r["predict_rows"] == 120
        assert r["peak_rss_kb"] >= r["fit_rss_kb"] >= r["import_rss_kb"] >= r["data_rss_kb"] > 0
    assert set(zipf["warm_s"]) == {"exact-adam", "lazy-adam"}  # compiled before, not measured
    if "skipped" in figs["torch-adam"]:
        assert "not installed" in figs["torch-adam"]["skipped"] and "not installed" in text
    # the targets' figures are this run's ratios
    targets = {t["goal"]: t for t in json.loads(out.read_text())["targets"]}
    goals = bench_sparse._goals("zipf")
    ratio = figs["mlp-adam"]["epoch_s"] / figs["exact-adam"]["epoch_s"]
    assert targets[goals["exact-adam"]]["measured"] == f"{ratio:.1f}x"
    gap = 100 * abs(figs["lazy-adam"]["accuracy"] - figs["exact-adam"]["accuracy"])
    assert targets[goals["acc-adam"]]["measured"] == f"{gap:.2f} points"
    assert targets[goals["exact-sgd"]]["status"] == "n/a"  # not among the models run
    assert targets[bench_sparse._goals("man")["memory"]]["note"] == "not run"
    kernels = {k["kernel"]: k for k in zipf["kernels"]}
    assert set(kernels) == {"grouping", "X W1", "Xᵀ dH1"}
    assert kernels.pop("grouping")["fastmlp_s"] > 0
    assert all(k["fastmlp_s"] > 0 and k["scipy_s"] > 0 and k["max_abs_diff"] < 1e-4
               for k in kernels.values())


def _sparse_figures(epoch, accuracy, peak, proba):
    return {"epoch_s": epoch, "epoch_samples_s": [epoch], "first_epoch_s": 2 * epoch,
            "accuracy": accuracy, "peak_rss_kb": peak, "fit_rss_kb": peak - 10_240,
            "import_rss_kb": peak - 51_200, "data_rss_kb": 102_400, "predict_proba_s": proba,
            "predict_rows": 10_000, "epochs": 3, "blas": ["openblas SkylakeX, 1 threads"]}


def _sparse_section():
    f = _sparse_figures
    models = {
        "mlp-adam": f(30.0, 0.760, 700_000, 0.050), "mlp-sgd": f(25.0, 0.530, 650_000, 0.050),
        "exact-adam": f(1.5, 0.760, 560_000, 0.025), "exact-sgd": f(0.5, 0.500, 480_000, 0.020),
        "lazy-adam": f(0.75, 0.772, 560_000, 0.025), "lazy-sgd": f(0.4, 0.500, 720_000, 0.010),
        "torch-adam": {"skipped": "PyTorch is not installed"},
    }
    kernels = [
        {"kernel": "grouping", "fastmlp": "k", "fastmlp_s": 0.05, "scipy_s": None,
         "max_abs_diff": None, "on": "200 batches"},
        {"kernel": "X W1", "fastmlp": "k", "fastmlp_s": 0.1, "scipy_s": 0.2,
         "max_abs_diff": 1e-7, "on": "200 batches"},
        {"kernel": "Xᵀ dH1", "fastmlp": "k", "fastmlp_s": 0.1, "scipy_s": 0.3,
         "max_abs_diff": 1e-7, "on": "200 batches"},
    ]
    zipf = {"description": "Zipf", "train_rows": 40_000, "test_rows": 10_000,
            "features": 100_000, "nnz_per_row": 36.5, "majority_accuracy": 0.05,
            "models": models, "kernels": kernels}
    settings = {"rows": 50_000, "features": 100_000, "nnz": 50, "timed_epochs": 2,
                "hidden": 100, "batch": 200, "alpha": 1e-4,
                "learning_rates": {"adam": 0.001, "sgd": 0.05}, "momentum": 0.9,
                "threads": None, "models": list(models)}
    return {"settings": settings, "torch": "PyTorch is not installed",
            "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [1.5, 1.0, 1.0],
            "datasets": {"zipf": zipf, "man": {"skipped": "only 3 usable man pages"}}}


def test_sparse_targets_are_the_ratios_of_the_figures():
    from fastmlp import bench_sparse

    sec = _sparse_section()
    g = bench_sparse._goals("zipf")

    def got():
        t = {x.goal: x for x in bench_sparse.targets(sec)}
        return {k: (t[v].status, t[v].measured) for k, v in g.items()}

    assert got() == {
        "exact-adam": ("pass", "20.0x"), "exact-sgd": ("pass", "50.0x"),
        "lazy-adam": ("MISS", "40.0x"), "lazy-sgd": ("pass", "62.5x"),
        "acc-adam": ("MISS", "1.20 points"), "acc-sgd": ("pass", "0.00 points"),
        "memory": ("MISS", "1.11x"),  # lazy sgd's 720 MB against 650 MB, the largest ratio
        "proba": ("MISS", "2.0x"),  # the adam rows' 0.025 s against 0.050 s, the smallest
    }
    # change a figure and the targets follow it
    sec["datasets"]["zipf"]["models"]["mlp-adam"]["epoch_s"] = 60.0
    sec["datasets"]["zipf"]["models"]["lazy-sgd"]["peak_rss_kb"] = 600_000
    now = got()
    assert now["lazy-adam"] == ("pass", "80.0x") and now["exact-adam"] == ("pass", "40.0x")
    assert now["memory"] == ("pass", "0.92x")  # lazy sgd's 600 MB against 650 MB
    man = [t for t in bench_sparse.targets(sec) if t.goal.startswith("issue 10, man")]
    assert len(man) == 8 and all(t.status == "n/a" for t in man)
    assert all(t.note == "skipped: only 3 usable man pages" for t in man)


def test_sparse_report_prints_the_section_and_why_targets_missed():
    from fastmlp import bench_sparse

    rep = bench.Report(command=["test"])
    rep.sparse = _sparse_section()
    rep.targets = bench_sparse.targets(rep.sparse)
    text = bench.format_report(rep)
    assert "PyTorch rows: none, PyTorch is not installed" in text
    assert "man: skipped: only 3 usable man pages" in text
    row = next(line for line in text.splitlines() if line.startswith("fastmlp adam lazy"))
    assert "40.0x" in row and "0.7720" in row
    missed = [t.goal for t in rep.targets if t.status == "MISS"]
    why = text.split("what was tried:")[1].strip().splitlines()
    assert len(why) == len(missed) == 4
    for line, goal in zip(why, missed, strict=True):
        assert line.startswith(f"- {goal}: ") and len(line) > len(goal) + 80
    lazy = next(line for line in why if "lazy adam epoch" in line)
    assert "under 0.600 s" in lazy and "0.250 s an epoch, 33% of it" in lazy


def test_man_pages_skip_with_their_reason(tmp_path):
    import gzip

    from fastmlp import bench_sparse

    (tmp_path / "man1").mkdir()
    page = ('.TH LS 1\n.SH NAME\nls \\- list directory contents\n.SH DESCRIPTION\n'
            + "List information about the FILEs, the current directory by default. " * 3)
    with gzip.open(tmp_path / "man1" / "ls.1.gz", "wt") as f:
        f.write(page)
    with gzip.open(tmp_path / "man1" / "dir.1.gz", "wt") as f:
        f.write(".so man1/ls.1\n")  # a redirection: not a page of its own
    texts, labels = bench_sparse.man_pages(tmp_path)
    assert len(texts) == 1 and list(labels) == [1]
    assert "LS 1" not in texts[0] and "list directory contents" in texts[0]
    sec = bench_sparse.run_section(datasets=["man"], man_root=tmp_path, log=lambda m: None)
    why = sec["datasets"]["man"]["skipped"]
    assert "only 1 usable man pages" in why and "fewer than 100" in why
    assert f"man: skipped: {why}" in bench_sparse.format_section(sec)
    man = [t for t in bench_sparse.targets(sec) if t.goal.startswith("issue 10, man")]
    assert {t.status for t in man} == {"n/a"} and {t.note for t in man} == {f"skipped: {why}"}
