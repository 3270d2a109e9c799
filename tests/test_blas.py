"""fastmlp._blas: one BLAS thread inside a block, the previous counts after it."""

from __future__ import annotations

import threading

import pytest
from threadpoolctl import threadpool_info

from fastmlp import _blas
from fastmlp._blas import _blas_libraries, single_blas_thread


def _counts():
    return [lib.get_num_threads() for lib in _blas_libraries()]


def test_one_thread_inside_and_the_counts_restored_after():
    before = _counts()
    assert before, threadpool_info()
    with single_blas_thread():
        assert set(_counts()) == {1}
        with single_blas_thread():  # nested: still one, and the outer block restores
            assert set(_counts()) == {1}
        assert set(_counts()) == {1}
    assert _counts() == before
    with single_blas_thread(enabled=False):
        assert _counts() == before


def test_counts_restored_after_an_exception():
    before = _counts()
    with pytest.raises(RuntimeError):
        with single_blas_thread():
            raise RuntimeError("inside")
    assert _counts() == before


def test_overlapping_blocks_in_two_threads_restore_the_counts():
    # Only the bookkeeping is checked here: which thread's set_num_threads OpenBLAS
    # honours differs between its versions (newer ones keep some of it per thread).
    before = _counts()
    inside, release = threading.Barrier(2), threading.Event()

    def worker():
        with single_blas_thread():
            inside.wait()
            release.wait()

    t = threading.Thread(target=worker)
    t.start()
    with single_blas_thread():
        inside.wait()  # both blocks are open now
    assert _blas._DEPTH == 1  # the worker's block is still open: nothing restored yet
    release.set()
    t.join()
    assert _blas._DEPTH == 0
    assert _counts() == before
