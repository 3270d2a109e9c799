"""Coverage-guided fuzzing (atheris/libFuzzer) of ``load_model`` and the CLI's file readers.

Targets, each fed the bytes of one file:

- ``model``: :func:`fastmlp.load_model`; a model that loads must be consistent (weight
  shapes against each other, ``n_features_in_``, ``n_outputs_``, ``hidden_units`` and
  ``classes_``; finite), save again to the same weights, and predict on a few dense
  and CSR rows of its width, as ``python -m fastmlp predict`` does;
- ``csv``, ``npz``, ``svmlight``: :func:`fastmlp.datasets.load_file` (what the CLI's
  ``train``/``predict``/``evaluate`` read), the options (``target``, ``label_column``,
  ``n_features``) chosen from a checksum of the bytes; the data it returns must be what
  the docstring promises (2-D float64, finite, a validated CSR, as many labels as rows),
  and a model of its width predicts on it.

A clean refusal is one of the documented errors (``ValueError``, ``OSError`` and their
subclasses). Anything else (another exception, a broken promise, a signal such as
SIGSEGV) is a crash: libFuzzer writes the input to ``crash-*`` under
``--artifacts`` and the process exits non-zero.

Coverage comes from atheris' bytecode instrumentation of the Python readers
(``fastmlp.model_io``, ``datasets``, ``_files``, ``_sparse``, the estimators' Python
code, ``zipfile`` and numpy's ``.npy`` header parser); the compiled kernels are not
instrumented (Numba compiles from bytecode).

Usage::

    python benchmarks/fuzz.py model --seconds 600        # the long run, one target
    python benchmarks/fuzz.py all --seconds 600          # each target in turn
    python benchmarks/fuzz.py csv --seconds 20 --corpus-out /tmp/c   # grow a corpus copy
    python benchmarks/fuzz.py model --run crash-1234     # replay one input
    python benchmarks/fuzz.py --make-corpus              # rewrite tests/fuzz_corpus

The seed corpus (valid files, a few KB each) is ``tests/fuzz_corpus/<target>/``;
``tests/test_fuzz.py`` runs each target for a bounded time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

TARGETS = ("model", "csv", "npz", "svmlight")
SUFFIX = {"model": ".npz", "csv": ".csv", "npz": ".npz", "svmlight": ".svm"}
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fuzz_corpus"
# documented clean refusals of load_model, load_file and predict
CLEAN_ERRORS = (ValueError, OSError)
MAX_WIDTH = 256  # predict only on data this wide or narrower (a model is fitted per width)
MAX_ROWS = 2000

_INSTRUMENTED = ["fastmlp.model_io", "fastmlp.datasets", "fastmlp._files", "fastmlp._sparse",
                 "fastmlp._base", "fastmlp.classifier", "fastmlp.regressor", "zipfile",
                 "numpy.lib._format_impl", "numpy.lib.format",
                 "sklearn.datasets._svmlight_format_io"]


class Harness:
    """One target's test function; the file is rewritten for every input.

    ``tolerate``: further exception classes taken as clean refusals (a long run's way
    past a known defect that already has its test; never in CI).
    """

    def __init__(self, target: str, workdir: Path, tolerate=()):
        import builtins

        import numpy as np

        global CLEAN_ERRORS
        CLEAN_ERRORS = (ValueError, OSError, *(getattr(builtins, t) for t in tolerate))
        self.np = np
        self.target = target
        self.path = workdir / f"input{SUFFIX[target]}"
        self.models: dict = {}

    def _model(self, width: int):
        """A small fitted classifier of ``width`` features (fitted once per width)."""
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        from fastmlp import TwoLayerClassifier

        if width not in self.models:
            rng = self.np.random.default_rng(width)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.models[width] = TwoLayerClassifier(
                    hidden_units=3, max_iter=1, random_state=0
                ).fit(rng.random((6, width)), [0, 1, 2] * 2)
        return self.models[width]

    def _predict(self, model, X):
        """Predict as the CLI does; a clean refusal is allowed."""
        try:
            out = model.predict(X)
        except CLEAN_ERRORS:
            return
        assert out.shape[0] == X.shape[0], (out.shape, X.shape)

    def __call__(self, data: bytes):
        self.path.write_bytes(data)
        if self.target == "model":
            self._load_model()
        else:
            self._load_file(data)

    def _load_model(self):
        import scipy.sparse as sp

        from fastmlp import load_model

        try:
            model = load_model(self.path)
        except CLEAN_ERRORS:
            return
        self._check_model(model)
        d = model.n_features_in_
        if 0 < d <= MAX_WIDTH:
            X = self.np.linspace(-1, 1, 3 * d).reshape(3, d)
            self._predict(model, X)
            self._predict(model, sp.csr_matrix(X))

    def _check_model(self, model):
        """What ``load_model`` promises of a model it returns: consistent, finite, re-savable."""
        from fastmlp import load_model, save_model

        np = self.np
        W1, W2 = model.coefs_
        b1, b2 = model.intercepts_
        D, H = W1.shape
        C = model.n_outputs_
        assert model.n_features_in_ == D and model.hidden_units == H, (D, H, model.hidden_units)
        assert b1.shape == (H,) and W2.shape == (H, C) and b2.shape == (C,), (
            W1.shape, b1.shape, W2.shape, b2.shape, C)
        assert len({W1.dtype, b1.dtype, W2.dtype, b2.dtype}) == 1
        assert all(np.isfinite(a).all() for a in (W1, b1, W2, b2))
        if hasattr(model, "classes_"):
            k = len(model.classes_)
            assert C == k or (k == 2 and C == 1), (C, k)
        # a model that loads saves again, and loads as the same weights
        again = self.path.with_name("resaved.npz")
        save_model(model, again)
        other = load_model(again)
        for a, b in zip(model.coefs_ + model.intercepts_, other.coefs_ + other.intercepts_,
                        strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)

    def _load_file(self, data: bytes):
        import scipy.sparse as sp

        from fastmlp import _sparse, datasets

        # options from a checksum of the bytes: each input is read one way, reproducibly
        h = zlib.crc32(data)
        target = ("labels", "values")[h & 1]
        kwargs = {"target": target}
        if self.target == "csv":
            kwargs["label_column"] = (-1, 0, None, "label", 1)[(h >> 1) % 5]
        if self.target == "svmlight":
            kwargs["n_features"] = (None, 8, 1)[(h >> 1) % 3]
        try:
            ds = datasets.load_file(self.path, **kwargs)
        except CLEAN_ERRORS:
            return
        pairs = [(ds.X_train, ds.y_train)]
        if ds.X_test is not None:
            pairs.append((ds.X_test, ds.y_test))
        for X, y in pairs:
            assert X.ndim == 2 and X.dtype == self.np.float64, (type(X), X.dtype, X.shape)
            if sp.issparse(X):
                assert X.format == "csr", X.format
                # the reader promises a validated CSR: the kernels' own check accepts it
                _sparse.check_csr(X, self.np.float64, canonical=False)
                assert self.np.isfinite(X.data).all()
            else:
                assert self.np.isfinite(X).all()
            if y is not None:
                assert y.shape[0] == X.shape[0], (y.shape, X.shape)
                if target == "values":
                    assert y.dtype == self.np.float64 and self.np.isfinite(y).all()
            if 0 < X.shape[1] <= MAX_WIDTH and 0 < X.shape[0] <= MAX_ROWS:
                self._predict(self._model(X.shape[1]), X)


def zip_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    """Mutate an ``.npz`` archive inside its members, then rezip it with valid CRCs.

    Byte-level mutation of a zip rarely gets past the members' CRC-32 checks; this
    mutator reaches the ``.npy`` headers, the arrays and the metadata JSON behind
    them: it changes one member as an array (:func:`_mutate_array`) or mutates its
    bytes (libFuzzer's own mutations), or drops, duplicates or renames a member, and
    writes the archive again (stored or deflated). One input in five, and any input that is not a zip, gets plain
    byte mutation, so the zip structure itself is fuzzed too.
    """
    import io
    import random
    import zipfile

    import atheris

    rng = random.Random(seed)
    if rng.random() < 0.2:
        return atheris.Mutate(data, max_size)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = [(i.filename, z.read(i)) for i in z.infolist()]
    except Exception:  # not a readable zip: mutate its bytes
        return atheris.Mutate(data, max_size)
    if not members:
        return atheris.Mutate(data, max_size)
    k = rng.randrange(len(members))
    name, body = members[k]
    op = rng.random()
    if op < 0.45:
        try:
            changed = _mutate_array(body, rng)
        except Exception:  # a mutator's own failure is never the target's crash
            changed = None
        members[k] = (name, changed or atheris.Mutate(body, len(body) + 256))
    elif op < 0.8:
        members[k] = (name, atheris.Mutate(body, len(body) + 256))
    elif op < 0.87:
        del members[k]
    elif op < 0.94:
        members.append((name, body))
    else:
        members[k] = (rng.choice([m[0] for m in members]) + rng.choice(["", ".npy", "x"]),
                      body)
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if rng.random() < 0.3 else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", method) as z:  # duplicate names warn: ignored in fuzz()
        for n, b in members:
            z.writestr(n, b)
    return out.getvalue()[:max_size]


def _mutate_array(body: bytes, rng) -> bytes | None:
    """One ``.npy`` member changed as an array (shape, dtype, a value, or its JSON).

    Byte mutation of an ``.npy`` rarely keeps its header and data the same size; these
    changes keep the member well formed, so the checks behind the header (shapes
    against each other and the metadata, values, parameters) are reached.
    """
    import io
    import json

    import numpy as np

    try:
        a = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception:
        return None
    if not isinstance(a, np.ndarray):  # a member that is itself an archive
        return None
    op = rng.randrange(7)
    if a.ndim == 0 and a.dtype.kind == "U":  # the metadata: a JSON document
        try:
            doc = json.loads(str(a))
        except ValueError:
            return None
        paths = []

        def walk(v, path):
            paths.append(path)
            if isinstance(v, dict):
                for key, x in v.items():
                    walk(x, (*path, key))
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    walk(x, (*path, i))

        walk(doc, ())
        path = rng.choice(paths[1:] or [()])
        if not path:
            return None
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        values = [None, 0, -1, 1, 2, 3, 10**20, 1e308, -0.5, "", "relu", "softmax", "exp",
                  "float32", True, [], {}, [1, 2], {"__nan__": True}]
        if op < 2 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = rng.choice(values)
        a = np.array(json.dumps(doc))
    elif op == 0 and a.ndim >= 1 and a.shape[0] > 0:
        a = a[:-1]  # one row fewer
    elif op == 1 and a.ndim >= 1 and a.shape[0] > 0:
        a = np.concatenate([a, a[-1:]])  # one row more
    elif op == 2 and a.ndim == 2:
        a = a.T.copy()
    elif op == 3:
        a = a.reshape(-1) if a.ndim != 1 else a.reshape(1, -1)
    elif op == 4:
        try:
            a = a.astype(rng.choice(["float32", "float64", "int64", "U4", "bool", "float16"]))
        except (ValueError, OverflowError):
            return None
    elif op == 5 and a.size and a.dtype.kind == "f":
        a = a.copy()
        a.flat[rng.randrange(a.size)] = rng.choice([np.nan, np.inf, 1e38, 5e-324, -0.0])
    else:
        a = a[:0] if a.ndim else a
    out = io.BytesIO()
    np.save(out, a, allow_pickle=False)
    return out.getvalue()


def fuzz(target: str, seconds: float, corpus_dirs: list[str], artifacts: str,
         extra: list[str], tolerate=()) -> None:
    """Run atheris on ``target`` in this process (atheris exits the process at the end)."""
    import atheris

    with atheris.instrument_imports(include=_INSTRUMENTED):
        import numpy.lib.format  # noqa: F401
        import sklearn.datasets  # noqa: F401

        import fastmlp  # noqa: F401
        from fastmlp import _files, _sparse, datasets, model_io  # noqa: F401
    import warnings

    # a warning is not a crash (numpy's header parser, scikit-learn's svmlight reader)
    warnings.simplefilter("ignore")
    workdir = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-", dir="/dev/shm"
                                    if os.path.isdir("/dev/shm") else None))
    harness = Harness(target, workdir, tolerate)
    if target != "model":
        harness._model(4)  # compile (or load from the cache) before the clock matters
    args = [sys.argv[0], f"-max_total_time={int(seconds)}", "-rss_limit_mb=4096",
            "-max_len=65536",
            "-timeout=30", "-print_final_stats=1", f"-artifact_prefix={artifacts}/",
            *extra, *corpus_dirs]
    mutator = zip_mutator if target in ("model", "npz") else None
    atheris.Setup(args, harness, custom_mutator=mutator)
    atheris.Fuzz()


def replay(target: str, files: list[str]) -> int:
    """Feed saved inputs (e.g. crash files) to the target without atheris."""
    workdir = Path(tempfile.mkdtemp(prefix=f"replay-{target}-"))
    harness = Harness(target, workdir)
    for f in files:
        print(f"{f}: ", end="", flush=True)
        harness(Path(f).read_bytes())
        print("ok")
    shutil.rmtree(workdir)
    return 0


def make_corpus(out: Path = CORPUS) -> None:
    """Write the seed corpus: small valid files of every kind the targets read."""
    import warnings

    import numpy as np
    import scipy.sparse as sp
    from sklearn.datasets import dump_svmlight_file
    from sklearn.exceptions import ConvergenceWarning

    from fastmlp import TwoLayerClassifier, TwoLayerRegressor, save_model

    rng = np.random.default_rng(0)
    X = np.round(rng.normal(size=(12, 4)), 3)
    y = np.array([0, 1, 2] * 4)
    for t in TARGETS:
        (out / t).mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        save_model(TwoLayerClassifier(hidden_units=3, max_iter=2, random_state=0).fit(X, y),
                   out / "model" / "classifier.npz")
        save_model(TwoLayerClassifier(hidden_units=2, max_iter=2, random_state=0)
                   .fit(X, np.array(["cat", "dog"] * 6)), out / "model" / "binary_strings.npz")
        save_model(TwoLayerRegressor(hidden_units=2, max_iter=2, random_state=0)
                   .fit(X, X[:, 0]), out / "model" / "regressor.npz")
        save_model(TwoLayerRegressor(hidden_units=2, max_iter=2, random_state=0, loss="poisson")
                   .fit(X, np.abs(X[:, :2])), out / "model" / "poisson_2_outputs.npz")
    rows = [",".join(f"{v:g}" for v in r) for r in X]
    (out / "csv" / "plain.csv").write_text(
        "\n".join(f"{r},{c}" for r, c in zip(rows, y, strict=True)) + "\n")
    (out / "csv" / "header_strings.csv").write_text(
        "a,b,c,d,label\n" + "\n".join(f"{r},{'xy'[c % 2]}" for r, c in
                                      zip(rows, y, strict=True)) + "\n")
    (out / "csv" / "quoted_values.csv").write_text(
        '"label","a","b"\n' + "\n".join(f'{v:g},"{a:g}",{b:g}' for v, (a, b) in
                                      zip(X[:, 0], X[:, 1:3], strict=True)) + "\n")
    np.savez(out / "npz" / "dense.npz", X=X, y=y)
    np.savez(out / "npz" / "split.npz", X_train=X[:8], y_train=y[:8], X_test=X[8:],
             y_test=y[8:])
    Xs = sp.random(12, 6, density=0.3, format="csr", random_state=0)
    sp.save_npz(out / "npz" / "sparse_csr.npz", Xs, compressed=False)
    np.savez(out / "npz" / "sparse_coo_with_y.npz", format=np.array("coo"),
             shape=np.array([12, 6]), row=Xs.tocoo().row, col=Xs.tocoo().col,
             data=Xs.tocoo().data, y=y)
    with open(out / "svmlight" / "labels.svm", "wb") as f:
        dump_svmlight_file(Xs, y, f)
    with open(out / "svmlight" / "values_zero_based.svm", "wb") as f:
        dump_svmlight_file(Xs, X[:, 0], f, zero_based=True)
    (out / "svmlight" / "qid_comments.svm").write_text(
        "# a comment\n1 qid:1 1:0.5 3:2\n0 qid:1 2:1e-3\n2 qid:2 4:-1 # tail\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", nargs="?", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--seconds", type=float, default=600, help="fuzzing time per target")
    parser.add_argument("--corpus-out", default=None,
                        help="folder for the corpus the run grows (default: a temporary copy "
                             "of the seeds, deleted; the seeds are never modified)")
    parser.add_argument("--artifacts", default=".", help="folder for crash-* inputs")
    parser.add_argument("--run", nargs="+", default=None, help="replay these inputs and exit")
    parser.add_argument("--make-corpus", action="store_true", help="rewrite the seed corpus")
    parser.add_argument("--tolerate", nargs="+", default=[], metavar="EXCEPTION",
                        help="also take these built-in exceptions as clean refusals (to run "
                             "past a known defect that has its test)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args(argv)
    if args.make_corpus:
        make_corpus()
        return 0
    if args.run:
        return replay(args.target, args.run)
    targets = TARGETS if args.target == "all" else (args.target,)
    if args.child:
        fuzz(targets[0], args.seconds, extra[:1], args.artifacts, extra[1:], args.tolerate)
        return 0  # not reached: atheris exits
    worst = 0
    for t in targets:
        grow = Path(args.corpus_out or tempfile.mkdtemp(prefix=f"corpus-{t}-")) / t
        grow.mkdir(parents=True, exist_ok=True)
        for seed in (CORPUS / t).iterdir():
            shutil.copy(seed, grow / seed.name)
        print(f"== {t}: {args.seconds:.0f} s from {len(list(grow.iterdir()))} inputs", flush=True)
        proc = subprocess.run([sys.executable, __file__, t, "--child", "--seconds",
                               str(args.seconds), "--artifacts", args.artifacts, str(grow),
                               *extra, *(["--tolerate", *args.tolerate] if args.tolerate
                                         else [])])
        print(f"== {t}: exit status {proc.returncode}", flush=True)
        worst = worst or proc.returncode
        if args.corpus_out is None:
            shutil.rmtree(grow.parent)
    return worst


if __name__ == "__main__":
    sys.exit(main())
