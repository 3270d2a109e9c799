"""Input a hostile or careless user hands us: refused with one clear error, never a crash.

Every reproducer of issue 19 runs in a child process, so that a regression (a segfault:
return code 139 or -11) fails its test instead of killing the pytest run. The child
prints one ``REFUSED <message>`` line per case; anything else fails the test.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from fastmlp import TwoLayerClassifier, TwoLayerRegressor, datasets
from fastmlp.model_io import load_model, save_model

# Shared by every child: a helper asserting a clear ValueError, and the crafted CSRs.
PRELUDE = '''
import sys, warnings
warnings.simplefilter("ignore")
import numpy as np, scipy.sparse as sp
from fastmlp import TwoLayerClassifier, TwoLayerRegressor, forward_backward

def refused(call, *fragments):
    try:
        call()
    except ValueError as exc:
        message = str(exc)
        missing = [f for f in fragments if f not in message]
        if missing:
            raise SystemExit(f"WRONG MESSAGE {message!r}, missing {missing}")
        print("REFUSED", message.splitlines()[0], flush=True)
        return
    raise SystemExit("ACCEPTED " + repr(call))

def csr(indptr):
    X = sp.csr_matrix((np.ones(3), [0, 1, 2], [0, 3, 3, 3]), shape=(3, 5))
    X.indptr = indptr
    return X

# np.diff wraps around: [0, 2**63 - 1, -2, 3] passed a "diff >= 0" test; an unsigned
# indptr can never be negative, and 10**6 points far past the 3 stored entries
HOSTILE = [
    csr(np.array([0, 2**63 - 1, -2, 3])),
    csr(np.array([0, 10**6, 3, 3], np.uint64)),
    csr(np.array([0, 2**31 - 1, -2, 3], np.int32)),
    csr(np.array([0, -(2**63), 3, 3])),
]
X5 = np.random.default_rng(0).random((6, 5))
Y3 = np.array([0, 1, 2] * 2)
'''


def run_child(code, timeout=300):
    """Run ``PRELUDE + code`` in a fresh interpreter; return its stdout (asserts rc 0)."""
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode} (a negative code or 139 is a crash)\n"
        f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
    )
    return proc.stdout


def assert_refused(out, count):
    lines = [line for line in out.splitlines() if line.startswith("REFUSED")]
    assert len(lines) == count, out


# ------------------------------------------------------------------ sparse indptr
ENTRY_POINTS = {
    "predict": """
        m = TwoLayerClassifier(hidden_units=4, max_iter=2).fit(X5, Y3)
        for X in HOSTILE:
            refused(lambda: m.predict(X), "malformed sparse matrix", "indptr")
            refused(lambda: m.predict_proba(X), "indptr")
        r = TwoLayerRegressor(hidden_units=4, max_iter=2).fit(X5, Y3 * 1.0)
        for X in HOSTILE:
            refused(lambda: r.predict(X), "indptr")
    """,
    "fit-sgd": """
        for X in HOSTILE:
            refused(lambda: TwoLayerClassifier(hidden_units=4, solver="sgd", max_iter=2)
                    .fit(X, [0, 1, 2]), "indptr")
    """,
    "fit-lbfgs": """
        for X in HOSTILE:
            refused(lambda: TwoLayerClassifier(hidden_units=4, solver="lbfgs", max_iter=2)
                    .fit(X, [0, 1, 2]), "indptr")
            refused(lambda: TwoLayerRegressor(hidden_units=4, solver="lbfgs", max_iter=2)
                    .fit(X, [0.0, 1.0, 2.0]), "indptr")
    """,
    "fit-lazy": """
        for X in HOSTILE:
            for solver in ("sgd", "adam"):
                refused(lambda: TwoLayerClassifier(hidden_units=4, solver=solver, max_iter=2,
                        sparse_updates="lazy").fit(X, [0, 1, 2]), "indptr")
    """,
    "partial_fit": """
        m = TwoLayerClassifier(hidden_units=4)
        for X in HOSTILE:
            refused(lambda: m.partial_fit(X, [0, 1, 2], classes=[0, 1, 2]), "indptr")
        m.partial_fit(X5, Y3, classes=[0, 1, 2])
        for X in HOSTILE:
            refused(lambda: m.partial_fit(X, [0, 1, 2]), "indptr")
    """,
    "forward_backward": """
        rng = np.random.default_rng(0)
        W1, b1, W2, b2 = rng.random((5, 4)), rng.random(4), rng.random((4, 3)), rng.random(3)
        for X in HOSTILE:
            for backend in ("numba", "numpy"):
                refused(lambda: forward_backward(X, [0, 1, 2], W1, b1, W2, b2,
                                                 backend=backend), "indptr")
    """,
}


REFUSALS = {"predict": 12, "fit-sgd": 4, "fit-lbfgs": 8, "fit-lazy": 8, "partial_fit": 8,
            "forward_backward": 8}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_hostile_indptr_is_refused_in_a_child(entry):
    out = run_child(ENTRY_POINTS[entry])
    assert_refused(out, REFUSALS[entry])


def test_other_sparse_formats_are_checked_before_scipy_converts_them():
    # scipy's compiled conversions (csr_tocsc, bsr_tocsr, coo_tocsr, the LIL copy,
    # dia_tocsr) trust their arrays: each of these crashed the process through them
    out = run_child("""
        m = TwoLayerClassifier(hidden_units=4, max_iter=2).fit(X5[:, :4], Y3)
        def csc():
            X = sp.csc_matrix(np.eye(3, 4)); X.indptr = np.array([0, 2**63 - 1, -2, 3, 3])
            return X
        def csc_unsigned():
            X = sp.csc_matrix(np.eye(3, 4)); X.indptr = X.indptr.astype(np.uint64)
            X.indptr[1] = 10**6
            return X
        def bsr():
            X = sp.bsr_matrix(np.eye(4), blocksize=(2, 2))
            X.indptr = np.array([0, 2**63 - 1, 2])
            return X
        def coo():
            X = sp.coo_matrix(np.eye(3, 4)); X.row = X.row.astype(np.int64); X.row[0] = 10**6
            return X
        def coo_unsigned():
            X = sp.coo_matrix(np.eye(3, 4)); X.coords = (X.row, X.col.astype(np.uint64))
            return X
        def lil_long_data():
            X = sp.lil_matrix((3, 4)); X[0, 1] = 1.0; X.data[0] = [1.0] * 100000
            return X
        def lil_short_rows():
            X = sp.lil_matrix((3, 4)); X[0, 1] = 1.0; X.rows = X.rows[:1]; X.data = X.data[:1]
            return X
        def lil_column():
            X = sp.lil_matrix((3, 4)); X[0, 1] = 1.0; X.rows[0] = [10**9]
            return X
        def dia_wide_data():
            X = sp.dia_matrix((np.ones((1, 4)), [0]), shape=(3, 4)); X.data = np.ones((3, 10**5))
            return X
        def dok_key():
            X = sp.dok_matrix((3, 4)); X[0, 1] = 1.0; X._dict[(10**6, 10**6)] = 2.0
            return X
        for make in (csc, csc_unsigned, bsr, coo, coo_unsigned, lil_long_data, lil_short_rows,
                     lil_column, dia_wide_data, dok_key):
            refused(lambda: m.predict(make()), "malformed sparse matrix")
            refused(lambda: TwoLayerClassifier(hidden_units=4, max_iter=2)
                    .fit(make(), [0, 1, 2]), "malformed sparse matrix")
    """)
    assert_refused(out, 20)


def test_every_sparse_format_still_gives_the_dense_answer():
    from fastmlp import _sparse

    rng = np.random.default_rng(3)
    dense = rng.random((7, 6)) * (rng.random((7, 6)) < 0.4)
    want = sp.csr_matrix(dense)
    want.sum_duplicates()
    for fmt in ("csr", "csc", "coo", "bsr", "lil", "dia", "dok"):
        X = sp.csr_matrix(dense).asformat(fmt)
        data, indices, indptr = _sparse.check_csr(X, np.float64)
        got = sp.csr_matrix((data, indices, indptr), shape=dense.shape).toarray()
        np.testing.assert_array_equal(got, dense, err_msg=fmt)
    # an offset past the matrix holds nothing, as in scipy
    X = sp.dia_matrix((np.ones((1, 6)), [0]), shape=(7, 6))
    X.offsets = np.array([2**63 - 1])
    assert _sparse.check_csr(X, np.float64)[0].size == 0


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64, np.int16, np.int8])
def test_index_dtypes_other_than_int32_int64_are_refused(dtype):
    from fastmlp import _sparse

    X = sp.csr_matrix(np.eye(3))
    X.indices = X.indices.astype(dtype)
    with pytest.raises(ValueError, match="int32 or int64"):
        _sparse.check_csr(X, np.float64)


def test_hostile_sparse_npz_through_the_cli(tmp_path):
    X = np.random.default_rng(0).random((6, 5))
    save_model(TwoLayerClassifier(hidden_units=4, solver="lbfgs").fit(X, [0, 1, 2] * 2),
               tmp_path / "m.npz")
    base = sp.csr_matrix((np.ones(3), [0, 1, 2], [0, 3, 3, 3]), shape=(3, 5))
    for name, indptr in (("wrap.npz", np.array([0, 2**63 - 1, -2, 3])),
                         ("unsigned.npz", np.array([0, 10**6, 3, 3], np.uint64))):
        np.savez(tmp_path / name, data=base.data, indices=base.indices, indptr=indptr,
                 shape=np.array(base.shape), format=np.array("csr"), y=np.array([0, 1, 2]))
        for command in ("predict", "evaluate"):
            proc = subprocess.run(
                [sys.executable, "-m", "fastmlp", command, "-m", "m.npz", "--data", name],
                cwd=tmp_path, capture_output=True, text=True, timeout=300,
            )
            assert proc.returncode == 1, (command, name, proc.returncode, proc.stderr)
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and "indptr" in lines[0], proc.stderr


# ------------------------------------------------------------- weights a user edited
def test_edited_weights_are_refused_before_compiled_code_reads_them():
    out = run_child("""
        import copy
        def fitted():
            return TwoLayerClassifier(hidden_units=3, max_iter=2).fit(X5, Y3)
        Xs = sp.csr_matrix(X5)
        # W1 with fewer rows than the fitted features: a sparse row's index 4 read past it
        m = fitted(); m.coefs_[0] = m.coefs_[0][:2]
        for call in (lambda: m.predict(Xs), lambda: m.predict(X5),
                     lambda: m.predict_proba(Xs), lambda: m.score(Xs, Y3),
                     lambda: m.partial_fit(Xs, Y3), lambda: m.partial_fit(X5, Y3)):
            refused(call, "coefs_[0] has 2 rows", "n_features_in_=5")
        # the segfault of the sweep: n_features_in_ of 10**7 against a W1 of 5 rows
        m = fitted(); m.n_features_in_ = 10**7
        wide = sp.csr_matrix(([1.0], [10**7 - 1], [0, 1]), shape=(1, 10**7))
        refused(lambda: m.predict(wide), "coefs_[0] has 5 rows", "n_features_in_=10000000")
        # partial_fit: intercepts_ lengths, coefs_[1].shape[0]
        m = fitted(); m.intercepts_[0] = np.zeros(7)
        refused(lambda: m.partial_fit(X5, Y3), "inconsistent")
        m = fitted(); m.coefs_[1] = np.zeros((5, 3))
        refused(lambda: m.partial_fit(Xs, Y3), "inconsistent")
        m = fitted(); m.intercepts_[1] = np.zeros(1)
        refused(lambda: m.predict(X5), "inconsistent")
        m = fitted(); m.intercepts_ = [m.intercepts_[0]]
        refused(lambda: m.score(X5, Y3), "two arrays")
        # output units against n_outputs_ and the classes
        m = fitted(); m.coefs_[1] = m.coefs_[1][:, :2]; m.intercepts_[1] = m.intercepts_[1][:2]
        refused(lambda: m.predict(X5), "n_outputs_=3")
        m = fitted(); m.classes_ = m.classes_[:2]
        refused(lambda: m.predict(X5), "2 classes")
        # warm start on edited weights
        m = fitted(); m.set_params(warm_start=True); m.coefs_[0] = np.zeros((6, 3))
        refused(lambda: m.fit(X5, Y3), "coefs_[0] has 6 rows")
        # regressor
        r = TwoLayerRegressor(hidden_units=3, max_iter=2).fit(X5, Y3 * 1.0)
        r.coefs_[0] = r.coefs_[0][:1]
        refused(lambda: r.predict(Xs), "coefs_[0] has 1 rows")
        refused(lambda: r.partial_fit(X5, Y3 * 1.0), "coefs_[0] has 1 rows")
    """)
    assert_refused(out, 16)


def test_a_failed_weight_check_leaves_the_model_as_it_was():
    X = np.random.default_rng(0).random((6, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = TwoLayerClassifier(hidden_units=3, max_iter=2).fit(X, [0, 1, 2] * 2)
    m.intercepts_[0] = np.zeros(7)
    before = {k: v for k, v in m.__dict__.items()}
    with pytest.raises(ValueError, match="inconsistent"):
        m.partial_fit(X, [0, 1, 2] * 2)
    assert m.__dict__.keys() == before.keys()
    assert m.intercepts_[0].shape == (7,) and m.n_iter_ == before["n_iter_"]


# ------------------------------------------------------------------ smaller defects
def test_csv_header_wider_than_its_rows(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("a,b,c,d\n1,2\n3,4\n")
    for label_column in (-1, "d", "b"):
        with pytest.raises(ValueError, match=r"header row \(line 1\) has 4 fields but line 2 "
                                             r"has 2"):
            datasets.load_file(path, label_column=label_column)


def test_zero_d_targets_in_an_npz(tmp_path):
    X = sp.csr_matrix(np.eye(3))
    np.savez(tmp_path / "sparse.npz", data=X.data, indices=X.indices, indptr=X.indptr,
             shape=np.array(X.shape), format=np.array("csr"), y=np.array(5))
    np.savez(tmp_path / "dense.npz", X=np.eye(3), y=np.array(5))
    for name in ("sparse.npz", "dense.npz"):
        for target in ("labels", "values"):
            with pytest.raises(ValueError, match=r"\[y\]: targets must hold one per row"):
                datasets.load_file(tmp_path / name, target=target)


@pytest.mark.parametrize("Estimator", [TwoLayerClassifier, TwoLayerRegressor])
def test_pandas_sparse_columns_fit_and_predict(Estimator):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.random((30, 4)) * (rng.random((30, 4)) < 0.5)
    y = np.arange(30) % 3
    names = [f"f{i}" for i in range(4)]
    sparse_df = pd.DataFrame({n: pd.arrays.SparseArray(X[:, i], fill_value=0.0)
                              for i, n in enumerate(names)})
    dense_df = pd.DataFrame(X, columns=names)
    kw = dict(hidden_units=5, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        a = Estimator(**kw).fit(sparse_df, y)
        b = Estimator(**kw).fit(dense_df, y)
    np.testing.assert_allclose(a.predict(sparse_df), b.predict(dense_df), rtol=1e-5)
    assert a.score(sparse_df, y) == pytest.approx(b.score(dense_df, y), rel=1e-5)
    if Estimator is TwoLayerClassifier:
        np.testing.assert_allclose(a.predict_proba(sparse_df), b.predict_proba(dense_df),
                                   rtol=1e-5)


def _without_hidden_units(src, dst):
    import json
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "metadata.npy":
                import io

                meta = json.loads(str(np.load(io.BytesIO(data))))
                del meta["params"]["hidden_units"]
                buf = io.BytesIO()
                np.save(buf, np.array(json.dumps(meta, sort_keys=True)))
                data = buf.getvalue()
            zout.writestr(info, data)


def test_model_file_without_hidden_units(tmp_path):
    X = np.random.default_rng(0).random((6, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = TwoLayerClassifier(hidden_units=3, max_iter=2).fit(X, [0, 1, 2] * 2)
        default = TwoLayerClassifier(max_iter=2).fit(X, [0, 1, 2] * 2)
    save_model(small, tmp_path / "small.npz")
    _without_hidden_units(tmp_path / "small.npz", tmp_path / "small-edited.npz")
    with pytest.raises(ValueError, match=r"params has no hidden_units \(so the default, 100, "
                                         r"would apply\) but coefs_0 has 3 columns"):
        load_model(tmp_path / "small-edited.npz")
    # weights that agree with the default: the default is what the file means
    save_model(default, tmp_path / "default.npz")
    _without_hidden_units(tmp_path / "default.npz", tmp_path / "default-edited.npz")
    loaded = load_model(tmp_path / "default-edited.npz")
    assert loaded.hidden_units == 100
    save_model(loaded, tmp_path / "resaved.npz")  # and it saves again


def test_partial_fit_lets_keyboard_interrupt_through_and_keeps_the_last_update():
    X = np.random.default_rng(0).random((40, 5))
    y = np.arange(40) % 3
    m = TwoLayerClassifier(hidden_units=4, random_state=0)
    m.partial_fit(X, y, classes=[0, 1, 2])
    m.partial_fit(X, y)
    saved = ([w.copy() for w in m.coefs_ + m.intercepts_], m.n_iter_, m.t_,
             list(m.loss_curve_))

    def interrupt(est, info):
        raise KeyboardInterrupt

    m.set_params(callbacks=[interrupt])
    with pytest.raises(KeyboardInterrupt):
        m.partial_fit(X, y)
    for a, b in zip(m.coefs_ + m.intercepts_, saved[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert (m.n_iter_, m.t_, m.loss_curve_) == saved[1:]
    m.set_params(callbacks=None)
    m.partial_fit(X, y)  # and it goes on from there
    assert m.t_ == saved[2] + 40
    # fit keeps scikit-learn's behaviour: a warning and the last whole epoch
    f = TwoLayerRegressor(hidden_units=4, max_iter=5, callbacks=[interrupt])
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        f.fit(X, y * 1.0)
    assert f.n_iter_ == 1


def test_ctrl_c_stops_a_partial_fit_loop():
    code = """
        import os, signal, time
        X = np.random.default_rng(0).random((2000, 20)); y = np.arange(2000) % 3
        m = TwoLayerClassifier(hidden_units=16)
        m.partial_fit(X, y, classes=[0, 1, 2])
        print("LOOPING", flush=True)
        calls = 0
        try:
            while True:
                m.partial_fit(X, y)
                calls += 1
        except KeyboardInterrupt:
            assert m.t_ == 2000 * (calls + 1), (m.t_, calls)
            print("STOPPED", flush=True)
    """
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "LOOPING"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # the old code looped for ever
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "STOPPED" in out, (proc.returncode, out, err)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastmlp", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("args", "fragment"), [
    (("--seed", "-1"), "argument --seed: expected an integer from 0 to"),
    (("--alpha", "1e300"), "argument --alpha: expected a number from 0 to 1000"),
    (("--alpha", "inf"), "argument --alpha"),
])
def test_gradcheck_names_the_bad_option(tmp_path, args, fragment):
    proc = _cli("gradcheck", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert "Warning" not in proc.stderr + proc.stdout


def test_gradcheck_largest_alpha_still_agrees(tmp_path):
    proc = _cli("gradcheck", "--alpha", "1000", cwd=tmp_path)
    assert proc.returncode == 0 and "all gradients agree" in proc.stdout, proc


def test_dask_warm_up_local_takes_one_dtype_as_a_string():
    from fastmlp import dask as fdask

    assert fdask._dtype_names("float32") == ("float32",)
    assert fdask._dtype_names(np.float64) == ("float64",)
    assert fdask._dtype_names(["float64", np.dtype("float32")]) == ("float64", "float32")
    for bad, match in ((3, "sequence"), ("int64", "not a working dtype"), (["float16"], "float16"),
                       ((), "empty")):
        with pytest.raises(ValueError, match=match):
            fdask._dtype_names(bad)
    with pytest.raises(ValueError, match="not a working dtype"):
        fdask.warm_up_local("float16")
    assert fdask.warm_up_local("float32")["dtypes"] == ("float32",)


def test_bench_stops_on_ctrl_c_where_the_scikit_learn_peer_swallows_it(tmp_path):
    # the interrupt lands inside MLPClassifier.partial_fit, which catches it, warns and
    # returns; the bench must stop at its next step all the same
    code = textwrap.dedent("""
        import sys, os, signal
        import sklearn.neural_network._multilayer_perceptron as mlp
        from fastmlp import __main__ as cli
        real = mlp.MLPClassifier._backprop
        sent = []
        def backprop(self, *a, **k):
            if not sent:  # once, inside the try block of the peer's _fit_stochastic
                sent.append(1)
                os.kill(os.getpid(), signal.SIGINT)
            return real(self, *a, **k)
        mlp.MLPClassifier._backprop = backprop
        sys.exit(cli.main(["bench", "--workload", "digits", "--dtype", "float32",
                           "--repeats", "1", "--epochs", "1", "--no-torch", "--no-loops"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 130, (proc.returncode, proc.stdout[-1500:], proc.stderr[-1500:])
    assert proc.stderr.strip().splitlines()[-1] == "fastmlp: error: interrupted"


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="no SIGINT on this platform")
def test_sigint_outside_the_bench_is_unchanged():
    from fastmlp import __main__ as cli

    before = signal.getsignal(signal.SIGINT)
    with cli._ctrl_c_stops(cli):
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before and sys.getprofile() is None
