"""Sparse X: seconds per epoch, peak memory, test accuracy and predict_proba, against MLPClassifier.

Every figure is a ratio to MLPClassifier on the same CSR in the same run of this
script. Each model trains in a process of its own (so ``ru_maxrss``, the peak
resident set of that process, is its own): the process loads the CSR the
parent saved, runs one ``partial_fit`` epoch untimed (fastmlp loads its compiled
kernels there), times ``--epochs`` more one by one (the median is reported),
scores the test split, then times ``predict_proba`` on 10,000 test rows (median
of 5). 100 hidden units, batch 200, float32 for fastmlp (its default),
float64 for MLPClassifier (it trains in X's dtype, float64 here).

Data sets:

- ``zipf``: synthetic documents, word frequencies Zipf-distributed (exponent
  1.1) over ``--features`` words, ``--nnz`` words a document, 20 classes that
  each favour 5% of the vocabulary; tf-idf weighted, rows L2-normalised.
- ``man``: the man pages installed on this machine (``/usr/share/man/man{1,2,3,5,7,8}``,
  roff source), labelled by their section (1 user commands, 2 system calls, 3
  library functions, 5 file formats, 7 overviews, 8 administration). The
  ``.TH`` line (which names the section) and roff markup are removed, ``.so``
  redirections and duplicate texts dropped; TfidfVectorizer (unigrams,
  min_df=2, sublinear tf). Real text, no download; the classes are imbalanced
  (section 1 dominates), so the majority-class accuracy is printed too.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/sparse_per_epoch.py``
(``--rows`` scales the synthetic set down; ``--datasets man`` runs one).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

MODELS = {
    # name: (library, solver, sparse_updates)
    "MLPClassifier adam": ("sklearn", "adam", None),
    "MLPClassifier sgd": ("sklearn", "sgd", None),
    "fastmlp adam exact": ("fastmlp", "adam", "exact"),
    "fastmlp sgd exact": ("fastmlp", "sgd", "exact"),
    "fastmlp adam lazy": ("fastmlp", "adam", "lazy"),
    "fastmlp sgd lazy": ("fastmlp", "sgd", "lazy"),
}
BASELINE = {"adam": "MLPClassifier adam", "sgd": "MLPClassifier sgd"}
SECTIONS = ("1", "2", "3", "5", "7", "8")
_ESCAPE = re.compile(r"\\(f[BIRP]|f\(..|\(..|\*\(..|\*.|s[-+]?\d|[-e&|^ 0c~%]|.)")


# ------------------------------------------------------------------ data sets
def zipf_documents(n, d, nnz, classes=20, seed=0):
    """A tf-idf CSR of synthetic documents with Zipf word frequencies, and its labels."""
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
    X = sp.csr_matrix((np.ones(n * nnz), indices, np.arange(0, n * nnz + 1, nnz)), shape=(n, d))
    X.sum_duplicates()  # repeated words: counts
    from sklearn.feature_extraction.text import TfidfTransformer

    return TfidfTransformer(sublinear_tf=True).fit_transform(X).tocsr(), y


def _man_text(raw: str) -> str:
    lines = []
    for line in raw.splitlines():
        if line.startswith(('.\\"', "'\\\"", ".TH", ".so", ".ds", ".de", ".nr", ".ig")):
            continue
        if line.startswith((".", "'")):
            parts = line.split(None, 1)
            line = parts[1] if len(parts) > 1 else ""
        lines.append(_ESCAPE.sub(" ", line).replace('"', " "))
    return " ".join(lines)


def man_pages(max_bytes=1 << 20):
    """Texts of the installed man pages and their sections (see the module's docstring)."""
    texts, labels, seen = [], [], set()
    for section in SECTIONS:
        folder = Path("/usr/share/man") / f"man{section}"
        for path in sorted(folder.glob("*.gz")) if folder.is_dir() else ():
            if path.is_symlink() or not path.is_file():
                continue
            try:
                with gzip.open(path, "rb") as f:
                    raw = f.read(max_bytes).decode("utf-8", errors="replace")
            except (OSError, EOFError):
                continue
            if raw.lstrip().startswith(".so "):
                continue  # a redirection to another page
            text = _man_text(raw)
            if len(text.split()) < 20 or text in seen:
                continue
            seen.add(text)
            texts.append(text)
            labels.append(int(section))
    return texts, np.array(labels)


def build(name, args, folder):
    """Make the data set ``name``, save its train/test CSR to ``folder``; return a description."""
    from sklearn.model_selection import train_test_split

    if name == "zipf":
        X, y = zipf_documents(args.rows, args.features, args.nnz)
        what = (f"synthetic Zipf documents: {args.rows} x {args.features}, {args.nnz} words a "
                "row before duplicates were summed, 20 classes")
    else:
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts, y = man_pages()
        if len(texts) < 100:
            raise SystemExit("too few man pages on this machine for the 'man' data set")
        vec = TfidfVectorizer(min_df=2, sublinear_tf=True, dtype=np.float64)
        X = vec.fit_transform(texts)
        counts = {int(s): int((y == int(s)).sum()) for s in SECTIONS}
        what = (f"man pages by section, {X.shape[0]} documents (per section {counts}), "
                f"TF-IDF {X.shape[1]} features")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0,
                                                        stratify=y)
    sp.save_npz(folder / f"{name}_train.npz", X_train.tocsr())
    sp.save_npz(folder / f"{name}_test.npz", X_test.tocsr())
    np.save(folder / f"{name}_y_train.npy", y_train)
    np.save(folder / f"{name}_y_test.npy", y_test)
    majority = float(np.mean(y_test == np.bincount(y_train).argmax()))
    nnz_row = X.nnz / X.shape[0]
    return f"{what}; {nnz_row:.1f} nonzeros a row; majority-class test accuracy {majority:.3f}"


# ------------------------------------------------------------------ one model
def child(model, name, folder, epochs):
    """Train ``model`` on data set ``name`` in this process; print one JSON line of figures."""
    warnings.simplefilter("ignore")
    X = sp.load_npz(folder / f"{name}_train.npz").tocsr()
    Xt = sp.load_npz(folder / f"{name}_test.npz").tocsr()
    y = np.load(folder / f"{name}_y_train.npy")
    yt = np.load(folder / f"{name}_y_test.npy")
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    library, solver, updates = MODELS[model]
    kw = dict(solver=solver, random_state=0, batch_size=200, learning_rate_init=0.001 if
              solver == "adam" else 0.05, momentum=0.9, alpha=1e-4)
    if library == "sklearn":
        from sklearn.neural_network import MLPClassifier

        est = MLPClassifier(hidden_layer_sizes=(100,), **kw)
    else:
        from fastmlp import TwoLayerClassifier

        est = TwoLayerClassifier(hidden_units=100, sparse_updates=updates, **kw)
    classes = np.unique(y)
    t = time.perf_counter()
    est.partial_fit(X, y, classes=classes)
    first = time.perf_counter() - t
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        est.partial_fit(X, y)
        times.append(time.perf_counter() - t)
    accuracy = float(est.score(Xt, yt))
    rows = Xt[: min(10_000, Xt.shape[0])]
    est.predict_proba(rows[:2])
    ptimes = []
    for _ in range(5):
        t = time.perf_counter()
        est.predict_proba(rows)
        ptimes.append(time.perf_counter() - t)
    print(json.dumps({
        "epoch": float(np.median(times)), "first_epoch": first, "accuracy": accuracy,
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "data_rss_kb": rss_data, "predict_proba": float(np.median(ptimes)),
        "predict_rows": rows.shape[0], "epochs": 1 + epochs,
    }))


def run(model, name, folder, epochs):
    cmd = [sys.executable, __file__, "--child", model, name, str(folder), str(epochs)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{model} on {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def above(r):
    """Peak RSS above what the process held once the data was loaded (kB)."""
    return r["peak_rss_kb"] - r["data_rss_kb"]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["zipf", "man"], choices=["zipf", "man"])
    ap.add_argument("--rows", type=int, default=50_000, help="synthetic rows (default 50000)")
    ap.add_argument("--features", type=int, default=100_000, help="synthetic vocabulary")
    ap.add_argument("--nnz", type=int, default=50, help="synthetic words a document")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after the first")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="fastmlp-sparse-") as tmp:
        folder = Path(tmp)
        for name in args.datasets:
            print(f"\n## {name}: {build(name, args, folder)}")
            results = {}
            for model in args.models:
                results[model] = r = run(model, name, folder, args.epochs)
                print(f"  {model}: {r['epoch']:.3f} s/epoch, acc {r['accuracy']:.4f}, peak RSS "
                      f"{r['peak_rss_kb'] / 1024:.0f} MB", flush=True)
            print("\n| model | s/epoch | epoch speed vs MLPClassifier | peak RSS (MB) | vs MLP | "
                  "peak above the loaded data (MB) | vs MLP | "
                  f"test acc after {args.epochs + 1} epochs | predict_proba "
                  f"{results[args.models[0]]['predict_rows']} rows (s) | vs MLP |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            for model, r in results.items():
                base = results.get(BASELINE[MODELS[model][1]]) or results.get(
                    "MLPClassifier adam")
                if base is None:
                    base = r
                print(f"| {model} | {r['epoch']:.3f} | {base['epoch'] / r['epoch']:.1f}x | "
                      f"{r['peak_rss_kb'] / 1024:.0f} | "
                      f"{r['peak_rss_kb'] / base['peak_rss_kb']:.2f} | "
                      f"{(r['peak_rss_kb'] - r['data_rss_kb']) / 1024:.0f} | "
                      f"{above(r) / max(above(base), 1):.2f} | "
                      f"{r['accuracy']:.4f} | {r['predict_proba']:.4f} | "
                      f"{base['predict_proba'] / r['predict_proba']:.1f}x |")
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
