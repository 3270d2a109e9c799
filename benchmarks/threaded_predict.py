"""Predictions from several Python threads on one fitted model: throughput against one thread.

A bounded load test of a shared ``TwoLayerClassifier`` (:func:`fastmlp.bench.threaded_predict`):
each of ``--threads`` threads makes ``--calls`` ``predict_proba`` calls of ``--rows``
rows (a random size from 1 to 100 with ``--rows 0``), compared with the same calls
made by one thread; every threaded result is checked against the serial one, bit
for bit. The bench report (``python -m fastmlp bench``) runs it with 1,000 calls.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/threaded_predict.py

(the two variables are unset only on a benchmark command: they force slow AVX2
kernels on these machines; tests never change them).
"""

from __future__ import annotations

import argparse
import json

from fastmlp.bench import threaded_predict


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", choices=("digits", "fashion-shape"), default="digits")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=2000, help="calls per thread")
    parser.add_argument("--rows", type=int, default=100, help="rows per call; 0: 1 to 100")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    out = threaded_predict(args.data, args.threads, args.calls, args.rows)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['data']}, {out['rows']} rows a call, {out['calls']} calls: "
              f"{out['serial_calls_per_s']:.0f} calls/s on one thread, "
              f"{out['threaded_calls_per_s']:.0f} calls/s on {out['threads']} threads "
              f"({out['speedup']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
