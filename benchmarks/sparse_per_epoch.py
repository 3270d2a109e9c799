"""Sparse X: seconds per epoch, peak memory, test accuracy and predict_proba, against MLPClassifier.

A thin wrapper: the section lives in ``fastmlp.bench_sparse`` (data sets, one
process per model, kernel rows against scipy, issue 10's targets) and runs as
``python -m fastmlp bench --sparse-only``; this script passes its options on
(``--sparse-rows``, ``--sparse-features``, ``--sparse-nnz``, ``--sparse-epochs``,
``--sparse-datasets``, ``--sparse-models``, ``--json``; see ``--help``).

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/sparse_per_epoch.py``
"""

from __future__ import annotations

import sys

from fastmlp import bench
from fastmlp.bench_sparse import man_pages, zipf_documents  # noqa: F401  (the data sets)


def main(argv=None) -> int:
    return bench.main(["--sparse-only", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
