"""Sparse text at 1 and 2 threads: seconds an epoch of fastmlp, MLPClassifier and fastText.

For each data set and each thread count ``T`` (``--threads``, default 1 2) this
runs, every model in a process of its own (the child-process approach of
``fastmlp.bench_sparse``; the environment is passed on unchanged, only
``PYTHONPATH`` gains the folder holding the package):

- **fastmlp exact / lazy** (``TwoLayerClassifier(sparse_updates=..., n_threads=T)``)
  and **MLPClassifier** (``hidden_layer_sizes=(100,)``, its BLAS and OpenMP
  limited to ``T`` threads by ``threadpoolctl.threadpool_limits``), per solver
  (``--solvers``, default ``adam sgd``): 100 hidden units, batch 200, L2
  ``alpha=1e-4``, Adam at learning rate 0.001 (the estimators' default solver
  and rate), SGD at 0.05 with Nesterov momentum 0.9 (``fastmlp.bench_sparse``'s
  settings). The child first fits a throw-away model of the same settings on
  the first 800 rows twice (this compiles, or loads from the Numba cache, the
  same kernels: the parallel path depends on the batch shape, the features
  and ``T``, not on the number of rows), then trains a fresh model with
  ``partial_fit``, one call per epoch, timing each of ``--epochs`` epochs (E,
  default 3); reported: the median and the range. The test accuracy is the
  fresh model's after those E epochs. fastmlp trains in float32 (its default),
  MLPClassifier in float64 (X's dtype).
- **fastText** (``pip install fasttext-numpy2-wheel``; the module is
  ``fasttext``; its rows are skipped, with the reason, when it does not import)
  on the SAME documents as text: ``fasttext.train_supervised(dim=100,
  wordNgrams=2, thread=T, minCount=1, lr=--fasttext-lr (0.1, fastText's
  supervised default), bucket=--fasttext-bucket (2,000,000, its default),
  verbose=0)``, trained once with ``epoch=1`` and once with ``epoch=E``. Two
  figures: ``t(E) / E`` (includes reading the file, building the dictionary and
  allocating the ``(words + bucket) x 100`` input matrix) and the epoch cost
  ``(t(E) - t(1)) / (E - 1)`` (those removed; needs E >= 2). The ratios use the
  epoch cost, the fair one. Test accuracy: ``model.predict`` on the test texts
  of the E-epoch model.

Data sets (the train/test split of ``fastmlp.bench_sparse.build_dataset``,
which builds the tf-idf CSR for fastmlp and MLPClassifier):

- ``zipf``: ``bench_sparse.zipf_documents`` (default 50,000 x 100,000, 50 words a
  row, 20 classes, tf-idf). fastText reads each row as the words ``w<index>``
  in the order they were drawn (so each word repeated by its count before
  tf-idf); :func:`zipf_counts` below regenerates them with the same random
  numbers, and the script checks that their tf-idf is the CSR fastmlp trains on.
- ``man``: ``bench_sparse.man_pages`` (the man pages under ``/usr/share/man`` by
  section, TF-IDF; skipped, with the reason, when fewer than 100 are usable).
  fastText reads each page's text lower-cased (TfidfVectorizer lower-cases too)
  with its whitespace collapsed. ``--man-docs N`` keeps a random N of the pages
  for a quick run.

Printed: a markdown table per data set (s/epoch median (range), test accuracy,
peak RSS of the process) and one of ratios from the same run: exact and lazy
T1/T2 speed-ups, fastText-T2's epoch cost over fastmlp-lazy-T2's s/epoch (> 1:
fastmlp faster) and the test accuracy of lazy minus fastText (points) at T2.
``--json PATH`` saves every figure, the machine (CPU, threadpoolctl's info, the
Numba threading layer), the command, the date and the load average at the
start and at the end.

Full measurement (minutes; nothing else running)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/sparse_threads.py \\
        --json sparse_threads.json

(the two variables are unset only on a benchmark command: they force slow AVX2
kernels on these machines; the script itself changes no variable). A quick run::

    python benchmarks/sparse_threads.py --rows 2000 --features 5000 --epochs 2 --man-docs 300
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import scipy.sparse as sp

from fastmlp import bench_sparse as bs
from fastmlp.bench import _cpu_model

HIDDEN = bs.HIDDEN  # 100
BATCH = bs.BATCH  # 200
ALPHA = bs.ALPHA  # 1e-4
LEARNING_RATES = bs.LEARNING_RATES  # adam 0.001, sgd 0.05
MOMENTUM = bs.MOMENTUM  # 0.9, Nesterov
WARM_ROWS = 4 * BATCH
KINDS = ("exact", "lazy", "mlp", "fasttext")
LABELS = {"exact": "fastmlp exact", "lazy": "fastmlp lazy", "mlp": "MLPClassifier",
          "fasttext": "fastText"}
FASTTEXT_INSTALL = "pip install fasttext-numpy2-wheel"


# ------------------------------------------------------------------ data
def zipf_counts(n, d, nnz, classes=20, seed=0):
    """``bench_sparse.zipf_documents`` step by step, returning its draws and counts too.

    Returns ``(X_tfidf, y, counts, draws)``: the same random numbers in the same
    order, so ``X_tfidf`` and ``y`` are ``zipf_documents(n, d, nnz, classes,
    seed)``'s; ``counts`` is the count CSR before tf-idf, ``draws`` the
    ``(n, nnz)`` word indices of each document in the order drawn.
    """
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(seed)
    base = 1.0 / np.arange(1, d + 1) ** 1.1
    y = rng.integers(0, classes, n)
    indices = np.empty(n * nnz, np.int64)
    for c in range(classes):
        p = base.copy()
        p[rng.choice(d, size=d // 20, replace=False)] *= 5.0
        p /= p.sum()
        rows = np.flatnonzero(y == c)
        draw = rng.choice(d, size=(rows.size, nnz), p=p)
        indices.reshape(n, nnz)[rows] = draw
    counts = sp.csr_matrix((np.ones(n * nnz), indices.copy(), np.arange(0, n * nnz + 1, nnz)),
                           shape=(n, d))
    counts.sum_duplicates()
    X = TfidfTransformer(sublinear_tf=True).fit_transform(counts).tocsr()
    return X, y, counts, indices.reshape(n, nnz)


def _check_zipf_counts():
    """zipf_counts must stay zipf_documents (a small instance, exact equality)."""
    X, y, _, _ = zipf_counts(500, 1000, 10)
    X0, y0 = bs.zipf_documents(500, 1000, 10)
    if not (np.array_equal(y, y0) and (X != X0).nnz == 0):
        raise RuntimeError("zipf_counts no longer reproduces bench_sparse.zipf_documents")


def _split_indices(y):
    """build_dataset's train/test split, as indices (it depends only on len(y) and y)."""
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(y, return_counts=True)
    strat = y if counts.min() >= 2 else None
    return train_test_split(np.arange(y.size), test_size=0.2, random_state=0, stratify=strat)


def _write_texts(folder, name, texts, y, train, test):
    with open(folder / f"{name}_train.txt", "w", encoding="utf-8") as f:
        for i in train:
            f.write(f"__label__{y[i]} {texts[i]}\n")
    with open(folder / f"{name}_test.txt", "w", encoding="utf-8") as f:
        for i in test:
            f.write(texts[i] + "\n")


def prepare(name, args, folder) -> dict:
    """Build data set ``name``: the CSR split (build_dataset) and the same documents as text."""
    if name == "zipf":
        ds = bs.build_dataset("zipf", args.rows, args.features, args.nnz, folder)
        X, y, _, draws = zipf_counts(args.rows, args.features, args.nnz)
        train, test = _split_indices(y)
        saved = sp.load_npz(folder / "zipf_train.npz").tocsr()
        if not (np.array_equal(np.load(folder / "zipf_y_train.npy"), y[train])
                and (X[train] != saved).nnz == 0):
            raise RuntimeError("the Zipf texts do not match build_dataset's split")
        texts = [" ".join(f"w{j}" for j in row) for row in draws]
        ds["text"] = ("each row as the words w<index> in the order drawn (each word repeated by "
                      "its count before tf-idf)")
    else:
        texts, y = bs.man_pages(args.man_root)
        if args.man_docs and args.man_docs < len(texts):
            keep = np.sort(np.random.default_rng(0).choice(len(texts), args.man_docs,
                                                           replace=False))
            texts, y = [texts[i] for i in keep], y[keep]
        texts = [" ".join(t.lower().split()) for t in texts]
        # build_dataset reads the man pages itself: hand it these (possibly fewer) pages
        with mock.patch.object(bs, "man_pages", lambda root=None: (texts, y)):
            ds = bs.build_dataset("man", 0, 0, 0, folder, args.man_root)
        train, test = _split_indices(y)
        if not np.array_equal(np.load(folder / "man_y_train.npy"), y[train]):
            raise RuntimeError("the man-page texts do not match build_dataset's split")
        ds["text"] = "each page's text lower-cased, whitespace collapsed"
        if args.man_docs:
            ds["description"] += f" (a random {args.man_docs} of the pages, --man-docs)"
    _write_texts(folder, name, texts, y, train, test)
    return ds


# ------------------------------------------------------------------ children
def _estimator(kind, solver, threads):
    kw = dict(solver=solver, random_state=0, batch_size=BATCH, alpha=ALPHA, momentum=MOMENTUM,
              nesterovs_momentum=True, learning_rate_init=LEARNING_RATES[solver])
    if kind == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(hidden_layer_sizes=(HIDDEN,), **kw)
    from fastmlp import TwoLayerClassifier

    return TwoLayerClassifier(hidden_units=HIDDEN, sparse_updates=kind, n_threads=threads, **kw)


def child_network(spec) -> dict:
    """fastmlp or MLPClassifier: warm up, then E timed partial_fit epochs and the test score."""
    import contextlib

    from threadpoolctl import threadpool_info, threadpool_limits

    folder, name = Path(spec["folder"]), spec["dataset"]
    kind, solver, T = spec["kind"], spec["solver"], spec["threads"]
    X = sp.load_npz(folder / f"{name}_train.npz").tocsr()
    Xt = sp.load_npz(folder / f"{name}_test.npz").tocsr()
    y = np.load(folder / f"{name}_y_train.npy")
    yt = np.load(folder / f"{name}_y_test.npy")
    classes = np.unique(y)
    # MLPClassifier's threads are its BLAS's (and OpenMP's); fastmlp holds its own BLAS
    # count and runs its kernels on n_threads. Every library is loaded before the limit
    # (threadpool_limits leaves alone those loaded after it: scipy's OpenBLAS, libgomp)
    _estimator(kind, solver, T)
    import scipy.linalg  # noqa: F401
    import sklearn.utils.extmath  # noqa: F401

    limit = threadpool_limits(limits=T) if kind == "mlp" else contextlib.nullcontext()
    out = {}
    with limit:
        t = time.perf_counter()
        warm = _estimator(kind, solver, T)
        Xw, yw = X[:WARM_ROWS], y[:WARM_ROWS]
        warm.partial_fit(Xw, yw, classes=classes)
        warm.partial_fit(Xw, yw)
        warm.score(Xt[:BATCH], yt[:BATCH])
        out["warmup_s"] = time.perf_counter() - t
        del warm
        est = _estimator(kind, solver, T)
        times = []
        for e in range(spec["epochs"]):
            t = time.perf_counter()
            if e == 0:
                est.partial_fit(X, y, classes=classes)
            else:
                est.partial_fit(X, y)
            times.append(time.perf_counter() - t)
        out["accuracy"] = float(est.score(Xt, yt))
        out["threadpool_info"] = threadpool_info()
    out.update(epoch_samples_s=times, epoch_s=float(statistics.median(times)),
               epoch_min_s=min(times), epoch_max_s=max(times), peak_rss_kb=bs.peak_rss_kb())
    if kind == "mlp":
        out["threads_limited"] = all(b.get("num_threads") == T for b in out["threadpool_info"])
    else:
        from fastmlp import _jit, solvers_sparse

        out["threading_layer"] = _jit.threading_layer()
        out["kernel_options"] = solvers_sparse.kernel_options(
            BATCH, X.nnz / max(X.shape[0], 1), HIDDEN, n_features=X.shape[1], n_threads=T)
    return out


def child_fasttext(spec) -> dict:
    """fastText: train with epoch=1 and epoch=E, time both, score the E-epoch model."""
    import fasttext

    folder, name, T, E = Path(spec["folder"]), spec["dataset"], spec["threads"], spec["epochs"]
    train = str(folder / f"{name}_train.txt")
    with open(folder / f"{name}_test.txt", encoding="utf-8") as f:
        texts = f.read().splitlines()
    yt = np.load(folder / f"{name}_y_test.npy")
    kw = dict(input=train, dim=HIDDEN, wordNgrams=2, thread=T, lr=spec["lr"], minCount=1,
              bucket=spec["bucket"], verbose=0)

    def train_for(epochs):
        t = time.perf_counter()
        model = fasttext.train_supervised(epoch=epochs, **kw)
        return model, time.perf_counter() - t

    model, t1 = train_for(1)
    if E > 1:
        del model
        model, tE = train_for(E)
    else:
        tE = t1
    labels, _ = model.predict(texts, k=1)
    pred = np.array([int(lab[0].removeprefix("__label__")) for lab in labels])
    return {
        "t1_s": t1, "tE_s": tE, "total_per_epoch_s": tE / E,
        "epoch_cost_s": (tE - t1) / (E - 1) if E > 1 else None,
        "accuracy": float(np.mean(pred == yt)), "peak_rss_kb": bs.peak_rss_kb(),
        "words": len(model.words), "fasttext_args": {k: v for k, v in kw.items() if k != "input"},
    }


def child(spec) -> dict:
    warnings.simplefilter("ignore")
    if spec["kind"] == "fasttext":
        return child_fasttext(spec)
    return child_network(spec)


def run_child(spec) -> dict:
    """Run :func:`child` in a fresh process; its figures, or why it failed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env=bs._child_env(None))
    if out.returncode != 0:
        return {"failed": out.stderr[-3000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fasttext_missing() -> str | None:
    try:
        import fasttext  # noqa: F401
    except Exception as exc:  # ImportError, or a wheel built for another NumPy
        return f"fasttext does not import ({type(exc).__name__}: {exc}); {FASTTEXT_INSTALL}"
    return None


# ------------------------------------------------------------------ the run


def machine() -> dict:
    import numba
    import sklearn
    from threadpoolctl import threadpool_info

    from fastmlp import _jit

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "scipy": __import__("scipy").__version__, "scikit-learn": sklearn.__version__,
                "numba": numba.__version__}
    try:
        from importlib.metadata import version

        versions["fastmlp"] = version("fastmlp")
        versions["fasttext-numpy2-wheel"] = version("fasttext-numpy2-wheel")
    except Exception:
        pass
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("OPENBLAS", "OMP_", "MKL_", "NUMBA_", "BLIS"))}
    return {"cpu": _cpu_model(), "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(), "versions": versions,
            "numba_threading_layer": _jit.threading_layer(),
            "threadpool_info": threadpool_info(), "environment": env}


def row_key(kind, solver, threads):
    return f"{kind}-{solver}-T{threads}" if solver else f"{kind}-T{threads}"


def ratios(rows, solver, t_lo, t_hi) -> dict:
    """The same-run ratios of one solver (None where a row is missing)."""
    def get(kind, T, field, slv=solver):
        r = rows.get(row_key(kind, slv, T), {})
        return r.get(field)

    def div(a, b):
        return a / b if a is not None and b else None

    ft_lo = get("fasttext", t_lo, "epoch_cost_s", None)
    ft_hi = get("fasttext", t_hi, "epoch_cost_s", None)
    lazy_acc, ft_acc = get("lazy", t_hi, "accuracy"), get("fasttext", t_hi, "accuracy", None)
    return {
        "threads": [t_lo, t_hi],
        "exact_speedup": div(get("exact", t_lo, "epoch_s"), get("exact", t_hi, "epoch_s")),
        "lazy_speedup": div(get("lazy", t_lo, "epoch_s"), get("lazy", t_hi, "epoch_s")),
        "mlp_speedup": div(get("mlp", t_lo, "epoch_s"), get("mlp", t_hi, "epoch_s")),
        "fasttext_speedup": div(ft_lo, ft_hi),
        "fasttext_over_lazy": div(ft_hi, get("lazy", t_hi, "epoch_s")),
        "fasttext_total_over_lazy": div(get("fasttext", t_hi, "total_per_epoch_s", None),
                                        get("lazy", t_hi, "epoch_s")),
        "mlp_over_lazy": div(get("mlp", t_hi, "epoch_s"), get("lazy", t_hi, "epoch_s")),
        "accuracy_lazy_minus_fasttext_points": (100 * (lazy_acc - ft_acc)
                                                if lazy_acc is not None and ft_acc is not None
                                                else None),
    }


def run(args, log) -> dict:
    _check_zipf_counts()
    no_fasttext = fasttext_missing() if "fasttext" in args.models else None
    rep = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg_start": list(os.getloadavg()),
        "machine": machine(),
        "settings": {"rows": args.rows, "features": args.features, "nnz": args.nnz,
                     "man_docs": args.man_docs, "epochs": args.epochs, "threads": args.threads,
                     "solvers": args.solvers, "models": args.models, "hidden": HIDDEN,
                     "batch": BATCH, "alpha": ALPHA, "learning_rates": LEARNING_RATES,
                     "momentum": MOMENTUM, "fasttext_lr": args.fasttext_lr,
                     "fasttext_bucket": args.fasttext_bucket, "warmup_rows": WARM_ROWS},
        "fasttext": no_fasttext,
        "datasets": {},
    }
    t_lo, t_hi = args.threads[0], args.threads[-1]
    with tempfile.TemporaryDirectory(prefix="fastmlp-sparse-threads-") as tmp:
        folder = Path(tmp)
        for name in args.datasets:
            log(f"{name}: building")
            try:
                ds = prepare(name, args, folder)
            except bs.Skipped as exc:
                rep["datasets"][name] = {"skipped": str(exc)}
                log(f"{name}: skipped: {exc}")
                continue
            rows = ds["rows"] = {}
            base = {"folder": str(folder), "dataset": name, "epochs": args.epochs}
            for solver in args.solvers:
                for kind in ("exact", "lazy", "mlp"):
                    if kind not in args.models:
                        continue
                    for T in args.threads:
                        log(f"{name}: {LABELS[kind]} {solver}, {T} thread(s)")
                        r = run_child({**base, "kind": kind, "solver": solver, "threads": T})
                        rows[row_key(kind, solver, T)] = {"kind": kind, "solver": solver,
                                                          "threads": T, **r}
            if "fasttext" in args.models:
                for T in args.threads:
                    key = row_key("fasttext", None, T)
                    if no_fasttext:
                        rows[key] = {"kind": "fasttext", "solver": None, "threads": T,
                                     "skipped": no_fasttext}
                        continue
                    log(f"{name}: fastText, {T} thread(s)")
                    r = run_child({**base, "kind": "fasttext", "threads": T,
                                   "lr": args.fasttext_lr, "bucket": args.fasttext_bucket})
                    rows[key] = {"kind": "fasttext", "solver": None, "threads": T, **r}
            ds["ratios"] = {s: ratios(rows, s, t_lo, t_hi) for s in args.solvers}
            rep["datasets"][name] = ds
    rep["loadavg_end"] = list(os.getloadavg())
    return rep


# ------------------------------------------------------------------ output
def _md(head, lines) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in cells) + " |" for cells in lines]
    return "\n".join(out)


def _f(x, fmt="{:.2f}", none="-"):
    return none if x is None else fmt.format(x)


def format_report(rep) -> str:
    s, m = rep["settings"], rep["machine"]
    E = s["epochs"]
    out = [
        f"# Sparse text, seconds an epoch at {' and '.join(map(str, s['threads']))} thread(s)",
        "",
        f"{m['cpu']}, {m['cpus']} CPUs; Numba threading layer {m['numba_threading_layer']}; "
        f"load average {rep['loadavg_start'][0]:.2f} at the start, "
        f"{rep['loadavg_end'][0]:.2f} at the end; {rep['date']}",
        f"fastmlp and MLPClassifier: D -> {s['hidden']} ReLU -> softmax, batch {s['batch']}, "
        f"alpha {s['alpha']}, adam lr {s['learning_rates']['adam']}, sgd lr "
        f"{s['learning_rates']['sgd']} Nesterov {s['momentum']}; after a warm-up fit on "
        f"{s['warmup_rows']} rows, a fresh model's {E} partial_fit epochs timed one by one: "
        "median (min-max). fastText: dim 100, wordNgrams 2, minCount 1, lr "
        f"{s['fasttext_lr']}, bucket {s['fasttext_bucket']}; its s/epoch is the epoch cost "
        + (f"(t({E}) - t(1)) / {E - 1}" if E > 1 else "(none: needs --epochs >= 2)")
        + f", with t({E}) / {E} (dictionary and allocation included) in brackets. Test "
        f"accuracy after {E} epochs.",
    ]
    if rep.get("fasttext"):
        out.append(f"fastText rows: none, {rep['fasttext']}")
    for name, ds in rep["datasets"].items():
        out.append("")
        out.append(f"## {name}")
        out.append("")
        if "skipped" in ds:
            out.append(f"skipped: {ds['skipped']}")
            continue
        out.append(f"{ds['description']}; {ds['train_rows']} train / {ds['test_rows']} test rows, "
                   f"{ds['nnz_per_row']:.1f} nonzeros a row; majority-class test accuracy "
                   f"{ds['majority_accuracy']:.3f}. fastText text: {ds['text']}.")
        out.append("")
        lines = []
        for r in ds["rows"].values():
            label = LABELS[r["kind"]] + (f" {r['solver']}" if r["solver"] else "")
            if "skipped" in r or "failed" in r:
                why = r.get("skipped") or "failed: " + r["failed"].strip().splitlines()[-1]
                lines.append([label, r["threads"], "-", "-", "-", why])
                continue
            if r["kind"] == "fasttext":
                epoch = (f"{_f(r['epoch_cost_s'], '{:.4g}')} "
                         f"({r['total_per_epoch_s']:.4g})")
                note = f"t(1) {r['t1_s']:.3g} s, t({E}) {r['tE_s']:.3g} s, {r['words']} words"
            else:
                epoch = (f"{r['epoch_s']:.4g} ({r['epoch_min_s']:.4g}-"
                         f"{r['epoch_max_s']:.4g})")
                ko = r.get("kernel_options")
                note = (f"n_shares {ko['n_shares']}" if ko else
                        "BLAS " + ", ".join(f"{b.get('internal_api')} {b.get('num_threads')}"
                                            for b in r.get("threadpool_info", [])
                                            if b.get("user_api") == "blas"))
            lines.append([label, r["threads"], epoch, f"{r['accuracy']:.4f}",
                          f"{r['peak_rss_kb'] / 1024:.0f}", note])
        out.append(_md(["model", "threads", "s/epoch median (range)", "test acc",
                        "peak RSS MB", "notes"], lines))
        out.append("")
        lo, hi = s["threads"][0], s["threads"][-1]
        rl = []
        for solver, q in ds["ratios"].items():
            rl.append([solver, _f(q["exact_speedup"], "{:.2f}x"), _f(q["lazy_speedup"], "{:.2f}x"),
                       _f(q["mlp_speedup"], "{:.2f}x"), _f(q["fasttext_speedup"], "{:.2f}x"),
                       _f(q["fasttext_over_lazy"], "{:.2f}x"),
                       _f(q["fasttext_total_over_lazy"], "{:.2f}x"),
                       _f(q["accuracy_lazy_minus_fasttext_points"], "{:+.2f}")])
        out.append(_md(["solver", f"exact T{lo}/T{hi}", f"lazy T{lo}/T{hi}",
                        f"MLPC T{lo}/T{hi}", f"fastText T{lo}/T{hi} (epoch cost)",
                        f"fastText-T{hi} epoch cost / lazy-T{hi} s/epoch",
                        "(fastText t(E)/E instead)",
                        f"acc lazy-T{hi} - fastText-T{hi} (points)"], rl))
    return "\n".join(out)


# ------------------------------------------------------------------ options
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", choices=bs.DATASETS, default=list(bs.DATASETS))
    p.add_argument("--rows", type=int, default=50_000, help="rows of the Zipf documents")
    p.add_argument("--features", type=int, default=100_000, help="vocabulary of the Zipf documents")
    p.add_argument("--nnz", type=int, default=50, help="words a Zipf document")
    p.add_argument("--man-docs", type=int, default=0,
                   help="keep a random N of the man pages (0: all)")
    p.add_argument("--man-root", default=None, help="man page folder (default /usr/share/man)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs E (>= 2 for fastText's "
                   "epoch cost)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="thread counts; the ratios compare the first with the last")
    p.add_argument("--solvers", nargs="+", choices=("adam", "sgd"), default=["adam", "sgd"])
    p.add_argument("--models", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--fasttext-lr", type=float, default=0.1,
                   help="fastText's learning rate (its supervised default)")
    p.add_argument("--fasttext-bucket", type=int, default=2_000_000,
                   help="fastText's word n-gram buckets (its default)")
    p.add_argument("--json", metavar="PATH", help="save every figure to PATH")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 1 or min(args.threads) < 1 or args.rows < 100 or args.features < 20:
        p.error("--epochs and --threads must be >= 1, --rows >= 100, --features >= 20")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    rep = run(args, lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_report(rep))
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
