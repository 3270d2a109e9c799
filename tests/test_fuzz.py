"""Bounded coverage-guided fuzzing of ``load_model`` and the CLI's file readers.

Each target of ``benchmarks/fuzz.py`` (atheris/libFuzzer) runs in a child process for
``SECONDS`` seconds from the seed corpus ``tests/fuzz_corpus/<target>/`` (valid files;
the run grows a temporary copy). The test fails when the child does not end cleanly:
killed by a signal (a segfault), or stopped by an input that raised something other
than the documented clean errors (``ValueError``, ``OSError``) or broke a promise of
the reader (2-D float64, finite, a validated CSR, one label per row). The output names
the input libFuzzer saved; replay it with ``python benchmarks/fuzz.py TARGET --run FILE``.
The longer run: ``python benchmarks/fuzz.py all --seconds 600``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="coverage-guided fuzzing needs atheris (Linux wheels)")

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "benchmarks" / "fuzz.py"
SECONDS = 20


@pytest.mark.parametrize("target", ["model", "csv", "npz", "svmlight"])
def test_fuzz_target_never_crashes(target, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(FUZZ), target, "--seconds", str(SECONDS),
         "--artifacts", str(tmp_path), "-seed=1"],
        capture_output=True, text=True, timeout=SECONDS + 240, cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    out = proc.stdout + proc.stderr
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert proc.returncode == 0 and not crashes, (
        f"{target}: exit status {proc.returncode}, saved {crashes}\n{out[-4000:]}"
    )
    # the run did fuzz: libFuzzer's final statistics count the inputs executed
    assert runs is not None and int(runs.group(1)) > 100, out[-2000:]


# ------------------------------------------------------------ inputs the fuzzer found
# Each input a fuzzing run stopped on, as a regular test: a clean ValueError now.
FOUND = [
    # csv target, 20 s run (-seed=1): a header row wider than the data row gave
    # IndexError in datasets._load_csv (issue 19's "CSV header wider than its rows")
    pytest.param("crash.csv", b'"lW!316","label","a","b"\n0.1206',
                 {"label_column": "label", "target": "values"}, id="csv-header-wider-than-row"),
]


@pytest.mark.parametrize(("name", "data", "kwargs"), FOUND)
def test_fuzz_found_input_is_refused_cleanly(name, data, kwargs, tmp_path):
    from fastmlp import datasets

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=str(path)):
        datasets.load_file(path, **kwargs)
