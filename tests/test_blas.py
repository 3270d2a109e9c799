"""fastmlp._blas: BLAS thread counts as modes that calls in several threads never mix."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from fastmlp import _blas
from fastmlp._blas import _blas_libraries, blas_threads, single_blas_thread


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
    with blas_threads(None):  # the process's own counts: nothing changed
        assert _counts() == before


def test_a_nested_block_of_another_count_is_refused():
    with blas_threads(1):
        with pytest.raises(RuntimeError, match="inside one for 1"):
            with blas_threads(None):
                pass
    assert _blas._MODES.active == 0


def test_counts_restored_after_an_exception():
    before = _counts()
    with pytest.raises(RuntimeError):
        with single_blas_thread():
            raise RuntimeError("inside")
    assert _counts() == before
    assert _blas._MODES.active == 0


def _in_thread(target):
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


def test_blocks_of_one_count_overlap():
    inside = threading.Barrier(2, timeout=10)

    def worker():
        with blas_threads(1):
            inside.wait()  # both blocks are open at once, or this times out

    t = _in_thread(worker)
    with blas_threads(1):
        inside.wait()
        assert _blas._MODES.active == 2
    t.join(10)
    assert _blas._MODES.active == 0


def test_a_block_of_another_count_waits_for_the_open_ones():
    before = _counts()
    events = []
    opened, release = threading.Event(), threading.Event()

    def holder():
        with blas_threads(1):
            opened.set()
            release.wait(10)
            events.append("holder leaves")

    def other():
        with blas_threads(None):
            events.append(("other enters", _counts()))

    h = _in_thread(holder)
    assert opened.wait(10)
    o = _in_thread(other)
    time.sleep(0.2)
    assert events == []  # still waiting: it would run with one thread otherwise
    release.set()
    h.join(10)
    o.join(10)
    assert events == ["holder leaves", ("other enters", before)]


def test_a_waiting_count_is_not_overtaken():
    # 1 is open, None waits; a new block for 1 queues behind None instead of
    # keeping the count at 1 for ever
    order = []
    opened, release = threading.Event(), threading.Event()

    def holder():
        with blas_threads(1):
            opened.set()
            release.wait(10)
            order.append("first 1")

    def block(n, name):
        with blas_threads(n):
            order.append(name)

    h = _in_thread(holder)
    assert opened.wait(10)
    waiting = _in_thread(lambda: block(None, "None"))
    deadline = time.monotonic() + 10
    while len(_blas._MODES.queue) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    late = _in_thread(lambda: block(1, "second 1"))
    while len(_blas._MODES.queue) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # queued behind None, not joining the open count 1
    time.sleep(0.1)
    assert order == []
    release.set()
    for t in (h, waiting, late):
        t.join(10)
    assert order == ["first 1", "None", "second 1"]


@pytest.mark.skipif(
    not all(lib.internal_api == "openblas" for lib in _blas_libraries()),
    reason="ONE_THREAD_WORK describes OpenBLAS; another BLAS always waits for its count",
)
def test_small_products_round_the_same_with_any_count():
    # why _blas.counts_matter lets a product of at most ONE_THREAD_WORK
    # multiply-adds run under any count: OpenBLAS then uses the calling thread only.
    # The compiled call is made inside explicit blocks of 1 and 2 threads.
    from fastmlp import solvers

    compiled = solvers.path(True, False)._forward_proba
    rng = np.random.default_rng(0)
    for n, D, H in [(1, 784, 100), (3, 784, 100), (40, 64, 100)]:
        assert n * D * H <= _blas.ONE_THREAD_WORK
        W1, W2 = rng.normal(size=(D, H)).astype(np.float32), rng.normal(size=(H, 10)).astype(
            np.float32)
        b1, b2 = np.zeros(H, np.float32), np.zeros(10, np.float32)
        X = rng.normal(size=(n, D)).astype(np.float32)
        out = {}
        for count in (1, 2):
            with blas_threads(count):
                assert set(_counts()) == {count}
                out[count] = compiled(X, W1, b1, W2, b2, 0, 0, n, False, False)[0]
        np.testing.assert_array_equal(out[1], out[2])
    assert _blas.counts_matter(_blas.ONE_THREAD_WORK + 1)


def test_an_interrupted_wait_leaves_no_waiter_behind(monkeypatch):
    # Ctrl-C while a block waits for its count: afterwards blocks of one count
    # must still overlap (a phantom waiter would make every one queue for ever)
    opened, release = threading.Event(), threading.Event()

    def holder():
        with blas_threads(1):
            opened.set()
            release.wait(10)

    h = _in_thread(holder)
    assert opened.wait(10)

    def interrupted_wait(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(_blas._MODES.cond, "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        with blas_threads(None):
            pass
    monkeypatch.undo()
    assert not _blas._MODES.queue
    release.set()
    h.join(10)
    test_blocks_of_one_count_overlap()


def _child_opens_a_block(queue):
    with blas_threads(1):
        one = _counts()
    with blas_threads(None):  # the process's own counts, as before the parent's block
        own = _counts()
    queue.put((one, own))


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX")
def test_a_forked_child_does_not_inherit_an_open_block():
    opened, release = threading.Event(), threading.Event()

    def holder():
        with blas_threads(3):
            opened.set()
            release.wait(20)

    before = _counts()
    h = _in_thread(holder)
    assert opened.wait(10)
    try:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_opens_a_block, args=(queue,))
        child.start()
        one, own = queue.get(timeout=30)  # the parent's open block does not hold it up
        child.join(30)
        assert child.exitcode == 0
        assert set(one) == {1}
        assert own == before  # not the count the parent's block had set
    finally:
        release.set()
        h.join(10)


def test_a_block_in_a_worker_thread_sets_the_count_blas_runs_with():
    # threadpoolctl's controllers obey only the first thread that set a count;
    # the main thread takes that role here, then a worker's block must still act
    for lib in _blas_libraries():
        lib.set_num_threads(lib.get_num_threads())
    seen = []

    def worker():
        with blas_threads(1):
            seen.append(_counts())

    t = _in_thread(worker)
    t.join(10)
    assert seen and set(seen[0]) == {1}
