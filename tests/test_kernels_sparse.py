"""Sparse kernels and CSR validation against dense NumPy on awkward matrices."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from fastmlp import _sparse, reference
from fastmlp import kernels as K
from fastmlp import kernels_sparse as KS

DTYPES = [np.float32, np.float64]
TWINS = {
    "serial": lambda name: getattr(KS, name + "_serial"),
    "parallel": lambda name: getattr(KS, name),
}


def assert_close(actual, desired, dtype, what=""):
    if dtype == np.float32:
        assert_allclose(actual, desired, rtol=1e-5, atol=1e-5, err_msg=what)
    else:
        assert_allclose(actual, desired, rtol=1e-12, atol=1e-12, err_msg=what)


def _raw(data, indices, indptr, shape):
    return {
        "data": np.asarray(data, np.float64),
        "indices": np.asarray(indices, np.int32),
        "indptr": np.asarray(indptr, np.int32),
        "shape": shape,
    }


def _from_dense(A):
    X = sp.csr_matrix(A)
    return _raw(X.data, X.indices, X.indptr, X.shape)


def _awkward():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(9, 7))
    A[rng.random(A.shape) < 0.5] = 0
    A[[1, 4, 5]] = 0  # empty rows
    A[:, [0, 3]] = 0  # empty columns
    B = rng.normal(size=(6, 1))
    B[[0, 3]] = 0
    return {
        "empty-rows-and-columns": _from_dense(A),
        # row 0 unsorted, row 1 empty, row 2 duplicates (3 three times) and an
        # explicit zero, row 3 a lone explicit zero
        "unsorted-duplicates-zeros": _raw(
            [1.0, 2.0, 0.0, -1.0, 2.0, 5.0, 0.5, 0.0], [4, 1, 2, 3, 3, 0, 3, 2],
            [0, 3, 3, 7, 8], (4, 5),
        ),
        "one-feature": _from_dense(B),
        "one-row": _from_dense(rng.normal(size=(1, 8)) * (rng.random((1, 8)) < 0.5)),
        "no-nonzeros": _raw([], [], [0, 0, 0, 0], (3, 4)),
        # rows of 0 to 13 entries: every remainder of the four-entries-a-pass loops
        "long-rows": _from_dense(_long_rows(rng)),
    }


def _long_rows(rng):
    A = np.zeros((14, 40))
    for i in range(14):
        A[i, rng.choice(40, size=i, replace=False)] = rng.normal(size=i)
    A[:, 7] = rng.normal(size=14)  # one feature in every row: a long group
    A[0, 7] = 0
    return A


AWKWARD = _awkward()


def case(name, dtype):
    """``(data, indices, indptr, dense)`` of an awkward matrix, raw (not canonicalised)."""
    c = AWKWARD[name]
    dense = sp.csr_matrix(
        (c["data"].copy(), c["indices"].copy(), c["indptr"].copy()), shape=c["shape"]
    ).toarray()  # duplicates summed, as scipy does
    return c["data"].astype(dtype), c["indices"].copy(), c["indptr"].copy(), dense.astype(dtype)


def batches(n, dense):
    """Row batches of an n-row matrix: shuffled, reversed halves, one row, only empty rows."""
    rng = np.random.default_rng(n)
    out = {"all-shuffled": rng.permutation(n), "one-row": np.array([n - 1])}
    empty = np.flatnonzero(~dense.any(axis=1))
    if empty.size:
        out["no-nonzeros"] = empty
    if n > 2:
        out["half"] = np.arange(n)[::-2].copy()
    return {k: v.astype(np.int64) for k, v in out.items()}


def weights(D, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(D, H)).astype(dtype), rng.normal(size=H).astype(dtype)


# --------------------------------------------------------------------- forward
@pytest.mark.parametrize("twin", list(TWINS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(AWKWARD))
def test_sparse_linear_forward_matches_dense(name, dtype, twin):
    data, indices, indptr, dense = case(name, dtype)
    n, D = dense.shape
    H = 5
    W, b = weights(D, H, dtype)
    W2 = np.zeros((H, 2), dtype)
    kernel = TWINS[twin]("sparse_linear_forward")
    for what, rows in batches(n, dense).items():
        out = np.full((rows.size, H), np.nan, dtype)
        kernel(data, indices, indptr, rows, W, b, out)
        H1 = reference.forward(dense[rows], W, b, W2, np.zeros(2, dtype))["H1"]
        assert_close(out, H1, dtype, what)
        kernel(data, indices, indptr, rows, W, b[:0], out)  # no bias
        assert_close(out, dense[rows] @ W, dtype, what + " without bias")
    # a length-0 ``rows``: the rows in order, here a block read through an indptr slice
    lo, hi = n // 3, n
    out = np.full((hi - lo, H), np.nan, dtype)
    kernel(data, indices, indptr[lo : hi + 1], indptr[:0].astype(np.int64), W, b, out)
    assert_close(out, dense[lo:hi] @ W + b, dtype, "block")


# -------------------------------------------------------------------- backward
@pytest.mark.parametrize("name", list(AWKWARD))
def test_touched_features_lists_each_stored_column_once(name):
    data, indices, indptr, dense = case(name, np.float64)
    n, D = dense.shape
    marker = np.zeros(D, np.uint8)
    touched = np.full(D, -1, np.int64)
    for what, rows in batches(n, dense).items():
        count = KS.touched_features(indices, indptr, rows, marker, touched)
        stored = [indices[k] for i in rows for k in range(indptr[i], indptr[i + 1])]
        first_seen = list(dict.fromkeys(stored))  # explicit zeros count: they are stored
        if 16 * len(first_seen) >= D:
            first_seen.sort()  # a batch holding 1/16 of the features lists them in order
        assert touched[:count].tolist() == first_seen, what
        assert not marker.any(), what  # reset, at the touched features only


def test_touched_features_orders_a_sparse_batch_by_first_occurrence():
    indices = np.array([40, 7, 99, 7, 3], np.int32)
    indptr = np.array([0, 3, 5], np.int32)
    marker = np.zeros(100, np.uint8)  # 4 of 100 features: fewer than 1/16
    touched = np.empty(100, np.int64)
    count = KS.touched_features(indices, indptr, np.array([0, 1]), marker, touched)
    assert touched[:count].tolist() == [40, 7, 99, 3]
    assert not marker.any()


@pytest.mark.parametrize("chunks", [1, 2, 3])
@pytest.mark.parametrize("twin", list(TWINS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(AWKWARD))
def test_sparse_weight_grad_writes_only_touched_rows(name, dtype, twin, chunks):
    data, indices, indptr, dense = case(name, dtype)
    n, D = dense.shape
    H = 37  # three 16-column blocks, the last one partial
    kernel = TWINS[twin]("sparse_weight_grad")
    rng = np.random.default_rng(1)
    marker = np.zeros(D, np.uint8)
    touched = np.empty(D, np.int64)
    for what, rows in batches(n, dense).items():
        G = rng.normal(size=(rows.size, H)).astype(dtype)
        sentinel = rng.normal(size=(D, H)).astype(dtype)
        out = sentinel.copy()
        count = KS.touched_features(indices, indptr, rows, marker, touched)
        kernel(data, indices, indptr, rows, G, touched, count, chunks, out)
        full = dense[rows].T @ G  # (D, H), the dense reference
        t = touched[:count]
        assert_close(out[t], full[t], dtype, what)
        others = np.setdiff1d(np.arange(D), t)
        assert_array_equal(out[others], sentinel[others], what)  # not written
        assert not full[others].any(), what  # and truly zero in Xᵀ G
        KS.clear_rows(out, touched, count)
        assert not out[t].any()
        assert_array_equal(out[others], sentinel[others])


@pytest.mark.parametrize("chunks", [1, 2])
@pytest.mark.parametrize("twin", list(TWINS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(AWKWARD))
def test_sparse_weight_grad_dense_matches_reference_dW1(name, dtype, twin, chunks):
    data, indices, indptr, dense = case(name, dtype)
    n, D = dense.shape
    H, C, alpha = 18, 3, 0.3
    rng = np.random.default_rng(2)
    W1, b1 = weights(D, H, dtype, seed=3)
    W2, b2 = weights(H, C, dtype, seed=4)
    Y = np.eye(C, dtype=dtype)[rng.integers(0, C, n)]
    sw = np.linspace(0.5, 1.5, n).astype(dtype)
    ref = reference.forward_backward(dense, Y, W1, b1, W2, b2, alpha, sw)
    out = np.full((D, H), np.nan, dtype)
    kernel = TWINS[twin]("sparse_weight_grad_dense")
    reg = dtype(alpha / sw.sum())
    kernel(data, indices, indptr, indptr[:0].astype(np.int64), ref["dH1"], W1, reg, chunks, out)
    assert_close(out, ref["dW1"], dtype)
    rows = batches(n, dense)["all-shuffled"]
    G = ref["dH1"][rows]
    kernel(data, indices, indptr, rows, G, W1, reg, chunks, out)  # a gathered batch
    assert_close(out, dense[rows].T @ G + reg * W1, dtype, "gathered")


# ---------------------------------------------------------------- row updates
def _touched_rows(D, rng):
    rows = rng.permutation(D)[: D // 2].astype(np.int64)
    return rows


@pytest.mark.parametrize("twin", list(TWINS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_update_rows_is_sgd_update_on_those_rows(dtype, twin, nesterov):
    rng = np.random.default_rng(6)
    D, H = 9, 5
    p = rng.normal(size=(D, H)).astype(dtype)
    g = rng.normal(size=(D, H)).astype(dtype)
    v = rng.normal(size=(D, H)).astype(dtype)
    rows = _touched_rows(D, rng)
    lr, mu, reg = dtype(0.1), dtype(0.9), dtype(0.05)
    rowsq = (p.astype(np.float64) ** 2).sum(axis=1)
    delta = np.empty(D)
    p2, v2, rowsq2 = p.copy(), v.copy(), rowsq.copy()
    change = TWINS[twin]("sgd_update_rows")(p2, g, v2, rows, rows.size, lr, mu, nesterov, reg,
                                            rowsq2, delta)
    pe, ve = p.copy(), v.copy()
    for j in rows:
        K.sgd_update(pe[j], g[j], ve[j], lr, mu, nesterov, reg)
    # the same rule as the dense kernel: equal up to the compiler's contraction
    # of multiply-adds (the loops are vectorised differently)
    assert_close(p2, pe, dtype)
    assert_close(v2, ve, dtype)
    others = np.setdiff1d(np.arange(D), rows)
    assert_array_equal(p2[others], p[others])  # untouched rows unchanged
    assert_close(rowsq2, (p2.astype(np.float64) ** 2).sum(axis=1), dtype)  # float32 squares
    assert_close(change, rowsq2.sum() - rowsq.sum(), np.float64)
    assert not np.array_equal(p2[rows], p[rows])


@pytest.mark.parametrize("twin", list(TWINS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_rows_is_adam_update_on_those_rows(dtype, twin):
    rng = np.random.default_rng(7)
    D, H = 8, 3
    p, g = (rng.normal(size=(D, H)).astype(dtype) for _ in range(2))
    m = rng.normal(size=(D, H)).astype(dtype)
    v = rng.random(size=(D, H)).astype(dtype)
    rows = _touched_rows(D, rng)
    hyper = (dtype(0.01), dtype(0.9), dtype(0.999), dtype(1e-8), dtype(0.1))
    rowsq = (p.astype(np.float64) ** 2).sum(axis=1)
    p2, m2, v2, rowsq2 = p.copy(), m.copy(), v.copy(), rowsq.copy()
    change = TWINS[twin]("adam_update_rows")(p2, g, m2, v2, rows, rows.size, *hyper, rowsq2,
                                             np.empty(D))
    pe, me, ve = p.copy(), m.copy(), v.copy()
    for j in rows:
        K.adam_update(pe[j], g[j], me[j], ve[j], *hyper)
    for a, b in ((p2, pe), (m2, me), (v2, ve)):
        assert_close(a, b, dtype)  # the dense kernel's rule, up to fused multiply-adds
    others = np.setdiff1d(np.arange(D), rows)
    for a, b in ((p2, p), (m2, m), (v2, v)):
        assert_array_equal(a[others], b[others])  # moments of untouched rows not decayed
    assert_close(change, rowsq2.sum() - rowsq.sum(), np.float64)


def test_row_squares():
    p = np.arange(12, dtype=np.float32).reshape(4, 3)
    rowsq = np.empty(4)
    assert KS.row_squares(p, rowsq) == (p.astype(np.float64) ** 2).sum()
    assert_array_equal(rowsq, (p.astype(np.float64) ** 2).sum(axis=1))


# ------------------------------------------------------ products of 2x2 maps
def _tree(maps):
    n = len(maps)
    size = 1
    while size < n:
        size *= 2
    tree = np.full((2 * size, 4), np.nan)
    tree[size : size + n] = maps.reshape(n, 4)
    KS.build_map_tree(tree, size, n)
    return tree, size


@pytest.mark.parametrize("n_steps", [1, 2, 5, 8, 13])
def test_range_map_is_the_product_of_the_steps_maps(n_steps):
    maps = np.random.default_rng(n_steps).normal(size=(n_steps, 2, 2))
    tree, size = _tree(maps)
    for lo in range(n_steps + 1):
        for hi in range(lo, n_steps + 1):
            want = np.eye(2)
            for s in range(lo, hi):
                want = maps[s] @ want  # later steps on the left
            got = np.array(KS.range_map(tree, size, lo, hi)).reshape(2, 2)
            assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"[{lo}, {hi})")


@pytest.mark.parametrize("twin", list(TWINS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear2_catch_up_applies_the_missed_steps(dtype, twin):
    rng = np.random.default_rng(8)
    D, H, n_steps = 6, 4, 7
    maps = rng.normal(size=(n_steps, 2, 2)) * 0.5 + np.eye(2)
    tree, size = _tree(maps)
    p = rng.normal(size=(D, H)).astype(dtype)
    v = rng.normal(size=(D, H)).astype(dtype)
    last = np.array([0, 3, 7, 5, 1, 2], np.int64)  # row 2 already current at step 7
    rowsq = (p.astype(np.float64) ** 2).sum(axis=1)
    kernel = TWINS[twin]("linear2_catch_up")
    p2, v2, last2, rowsq2 = p.copy(), v.copy(), last.copy(), rowsq.copy()
    rows = np.array([1, 2, 4], np.int64)
    change = kernel(p2, v2, rows, rows.size, last2, 6, tree, size, rowsq2, np.empty(D))
    pe, ve = p.astype(np.float64), v.astype(np.float64)
    for j in rows:
        for s in range(last[j], 6):
            (a, b), (c, d) = maps[s]
            pe[j], ve[j] = a * pe[j] + b * ve[j], c * pe[j] + d * ve[j]
    assert_close(p2, pe, dtype)
    assert_close(v2, ve, dtype)
    assert last2.tolist() == [0, 6, 7, 5, 6, 2]  # a row already past step 6 is left alone
    assert_close(change, rowsq2.sum() - rowsq.sum(), np.float64)
    # a length-0 list: every row, to the end
    kernel(p2, v2, rows[:0], D, last2, n_steps, tree, size, rowsq2, np.empty(D))
    assert (last2 == n_steps).all()
    assert_close(rowsq2, (p2.astype(np.float64) ** 2).sum(axis=1), dtype)


# ----------------------------------------------------------------- validation
def _canonical_dense(data, indices, indptr, shape):
    return sp.csr_matrix((data, indices, indptr), shape=shape).toarray()


FORMATS = ["csr", "csc", "coo", "bsr", "lil", "dok", "dia"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(AWKWARD))
def test_check_csr_gives_a_canonical_csr_of_any_format(name, dtype, fmt):
    c = AWKWARD[name]
    X = sp.csr_matrix((c["data"].copy(), c["indices"].copy(), c["indptr"].copy()),
                      shape=c["shape"])
    Xf = X.asformat(fmt) if fmt != "csr" else X
    want = X.toarray().astype(dtype)
    data, indices, indptr = _sparse.check_csr(Xf, dtype)
    assert data.dtype == dtype and indices.dtype == indptr.dtype
    assert indices.dtype in (np.int32, np.int64)
    assert all(a.flags.c_contiguous and a.ndim == 1 for a in (data, indices, indptr))
    for i in range(X.shape[0]):
        row = indices[indptr[i] : indptr[i + 1]]
        assert (np.diff(row) > 0).all()  # sorted, no duplicates
    assert_array_equal(_canonical_dense(data, indices, indptr, X.shape), want)


def test_check_csr_leaves_the_callers_matrix_alone():
    c = AWKWARD["unsorted-duplicates-zeros"]
    X = sp.csr_matrix((c["data"].copy(), c["indices"].copy(), c["indptr"].copy()),
                      shape=c["shape"])
    before = [a.copy() for a in (X.data, X.indices, X.indptr)]
    data, indices, indptr = _sparse.check_csr(X, np.float64)
    for a, b in zip((X.data, X.indices, X.indptr), before, strict=True):
        assert_array_equal(a, b)  # not sorted or summed in place
    assert not any(np.shares_memory(a, b) for a, b in
                   zip((data, indices, indptr), (X.data, X.indices, X.indptr), strict=True))
    assert indices.size == 6  # three 3s summed into one
    assert_array_equal(_canonical_dense(data, indices, indptr, X.shape), X.toarray())


def test_check_csr_reuses_a_canonical_matrix_of_the_right_dtype():
    X = sp.random(30, 40, density=0.2, format="csr", dtype=np.float32, random_state=0)
    data, indices, indptr = _sparse.check_csr(X, np.float32)
    assert data is X.data and indices is X.indices and indptr is X.indptr
    data64, _, _ = _sparse.check_csr(X, np.float64)  # converted, not in place
    assert data64.dtype == np.float64 and X.data.dtype == np.float32


@pytest.mark.parametrize(("indices_dtype", "indptr_dtype", "want"), [
    (np.int32, np.int32, np.int32), (np.int64, np.int64, np.int64),
    (np.int32, np.int64, np.int64),
])
def test_check_csr_index_dtype(indices_dtype, indptr_dtype, want):
    X = sp.random(5, 6, density=0.5, format="csr", random_state=1)
    X.indices = X.indices.astype(indices_dtype)
    X.indptr = X.indptr.astype(indptr_dtype)
    _, indices, indptr = _sparse.check_csr(X, np.float64)
    assert indices.dtype == want and indptr.dtype == want


def test_check_csr_refuses_unsigned_indices():
    # a "< 0" test never fires on them, and a cast to int64 could wrap: refused unconverted
    X = sp.random(5, 6, density=0.5, format="csr", random_state=1)
    X.indices = X.indices.astype(np.uint32)
    with pytest.raises(ValueError, match="indices must be a 1-D int32 or int64 array"):
        _sparse.check_csr(X, np.float64)


@pytest.mark.parametrize("values", [np.array([3, 0, 7]), np.array([True, True, False])])
def test_check_csr_integer_and_boolean_values(values):
    X = sp.csr_matrix((values, np.array([0, 2, 1]), np.array([0, 2, 3])), shape=(2, 3))
    data, indices, indptr = _sparse.check_csr(X, np.float32)
    assert data.dtype == np.float32
    assert_array_equal(_canonical_dense(data, indices, indptr, X.shape), X.toarray())


@pytest.mark.parametrize("dtype", DTYPES)
def test_check_csr_not_canonical_keeps_order_and_duplicates(dtype):
    data, indices, indptr, dense = case("unsorted-duplicates-zeros", np.float64)
    X = sp.csr_matrix((data, indices, indptr), shape=dense.shape)
    d, i, p = _sparse.check_csr(X, dtype, canonical=False)
    assert d.dtype == dtype and i.dtype == p.dtype == np.int32
    assert_array_equal(i, indices)  # as stored: unsorted, duplicates kept
    assert_array_equal(p, indptr)
    assert_array_equal(d, data.astype(dtype))
    H = 6
    W, b = weights(dense.shape[1], H, dtype)
    out = np.full((dense.shape[0], H), np.nan, dtype)
    KS.sparse_linear_forward_serial(d, i, p, p[:0].astype(np.int64), W, b, out)
    assert_close(out, dense.astype(dtype) @ W + b, dtype)  # the product needs no canonical form
    # the caller's arrays themselves when already in the working dtype
    Y = sp.csr_matrix((data.astype(dtype), indices, indptr), shape=dense.shape)
    d, i, p = _sparse.check_csr(Y, dtype, canonical=False)
    assert d is Y.data and i is Y.indices and p is Y.indptr


def test_check_csr_makes_no_dense_copy():
    # 2,000 x 1,000,000: a dense float64 copy would be 16 GB. Built from random
    # coordinates: sp.random(..., random_state=2) draws its positions by permuting
    # all 2e9 cells (16 GB of int64 before the test starts measuring)
    rng = np.random.default_rng(2)
    nnz = 20_000
    X = sp.csc_matrix(
        (rng.random(nnz), (rng.integers(0, 2000, nnz), rng.integers(0, 10**6, nnz))),
        shape=(2000, 10**6),
    )
    X.sum_duplicates()
    tracemalloc.start()
    data, indices, indptr = _sparse.check_csr(X, np.float32)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert data.size == X.nnz
    assert peak < 50 * (X.nnz * 16 + X.shape[0] * 8 + 10**6 * 8), peak


def _tampered(what, fmt=sp.csr_matrix):
    """A CSR (or CSC), 4 x 5, whose arrays were overwritten after construction."""
    X = fmt(np.array([[1.0, 0, 2, 0, 0], [0, 0, 0, 3, 0], [0, 4, 0, 0, 5], [0] * 5]))
    if what == "negative-index":
        X.indices[1] = -1
    elif what == "index-past-n_features":
        X.indices[0] = 5
    elif what == "indptr-past-the-end":
        X.indptr[-1] = 50
        X.indptr[-2] = 40
    elif what == "indptr-not-monotone":
        X.indptr[1] = 4
        X.indptr[2] = 3
    elif what == "indptr-not-from-0":
        X.indptr[0] = 1
    elif what == "indptr-short":
        X.indptr = X.indptr[:-1]
    elif what == "data-short":
        X.data = X.data[:-1]
    elif what == "nan":
        X.data[2] = np.nan
    elif what == "inf":
        X.data[0] = -np.inf
    elif what == "too-large-for-float32":
        X.data[0] = 1e300
    elif what == "complex":
        X.data = X.data.astype(complex)
    elif what == "indices-float":
        X.indices = X.indices.astype(float)
    return X


MALFORMED = ["negative-index", "index-past-n_features", "indptr-past-the-end",
             "indptr-not-monotone", "indptr-not-from-0", "indptr-short", "data-short", "nan",
             "inf", "too-large-for-float32", "complex", "indices-float"]


@pytest.mark.parametrize("what", MALFORMED)
def test_check_csr_refuses_a_malformed_matrix(what):
    X = _tampered(what)
    with pytest.raises(ValueError, match="X"):
        _sparse.check_csr(X, np.float32)
    with pytest.raises(ValueError, match="X"):  # validated even when not canonicalised
        _sparse.check_csr(X, np.float32, canonical=False)
    if what == "too-large-for-float32":
        return  # finite in its own float64: only the cast to the working dtype overflows
    with pytest.raises(ValueError, match="X"):
        _sparse.check_csr_arrays(X.data, X.indices, X.indptr, 5, n_samples=4)


@pytest.mark.parametrize("what", ["negative-index", "index-past-n_features",
                                  "indptr-past-the-end", "indptr-not-monotone"])
def test_check_csr_refuses_a_malformed_csc(what):
    X = _tampered(what, sp.csc_matrix)  # indices are rows (< 4), indptr over 5 columns
    with pytest.raises(ValueError, match="X is a malformed sparse matrix"):
        _sparse.check_csr(X, np.float64)


@pytest.mark.parametrize("what", ["row", "col", "negative", "lengths"])
def test_check_csr_refuses_a_malformed_coo(what):
    X = sp.coo_matrix(np.eye(3))
    if what == "row":
        X.row[0] = 3
    elif what == "col":
        X.col[1] = 7
    elif what == "negative":
        X.col[2] = -2
    else:
        X.data = X.data[:2]
    with pytest.raises(ValueError, match="X is a malformed sparse matrix"):
        _sparse.check_csr(X, np.float64)


def test_check_csr_refuses_dense_and_names_the_argument():
    with pytest.raises(TypeError, match="X_val must be a scipy sparse"):
        _sparse.check_csr(np.eye(2), np.float64, name="X_val")
    with pytest.raises(ValueError, match="Input X_val contains NaN"):
        _sparse.check_csr(sp.csr_matrix(np.array([[np.nan, 1.0]])), np.float64, name="X_val")


# ------------------------------------------------- entries grouped by feature
def _groups(data, indices, indptr, rows, D):
    """Run group_by_feature on fresh buffers; return (count, touched, start, ent_row, ent_val)."""
    nnz = int(sum(indptr[i + 1] - indptr[i] for i in rows))
    marker = np.zeros(D, np.uint8)
    slot = np.full(D, -7, np.int64)
    touched = np.full(D, -1, np.int64)
    start = np.full(D + 1, -1, np.int64)
    ent_row = np.full(max(nnz, 1), -1, np.int64)
    ent_val = np.full(max(nnz, 1), np.nan, data.dtype)
    count = KS.group_by_feature(data, indices, indptr, rows, marker, slot, touched, start,
                                ent_row, ent_val)
    assert not marker.any()  # reset, at the touched features only
    return count, touched, start, ent_row[:nnz], ent_val[:nnz]


@pytest.mark.parametrize("name", list(AWKWARD))
def test_group_by_feature_is_a_counting_sort_of_the_batch(name):
    data, indices, indptr, dense = case(name, np.float64)
    n, D = dense.shape
    for what, rows in batches(n, dense).items():
        count, touched, start, ent_row, ent_val = _groups(data, indices, indptr, rows, D)
        stored = [(indices[k], r, data[k]) for r, i in enumerate(rows)
                  for k in range(indptr[i], indptr[i + 1])]
        features = sorted({j for j, _, _ in stored})  # explicit zeros count: they are stored
        assert touched[:count].tolist() == features, what
        assert start[0] == 0 and start[count] == len(stored), what
        for t, j in enumerate(features):
            # the entries of feature j, in batch-row order (a stable sort by feature)
            want = [(r, v) for jj, r, v in stored if jj == j]
            got = list(zip(ent_row[start[t]:start[t + 1]].tolist(),
                           ent_val[start[t]:start[t + 1]].tolist(), strict=True))
            assert got == want, (what, j)


def test_group_by_feature_sorts_a_batch_holding_few_features():
    indices = np.array([40, 7, 99, 7, 3], np.int32)
    indptr = np.array([0, 3, 5], np.int32)
    data = np.arange(1.0, 6.0)
    count, touched, start, ent_row, ent_val = _groups(data, indices, indptr, np.array([0, 1]),
                                                      100)  # 4 of 100: fewer than 1/16
    assert touched[:count].tolist() == [3, 7, 40, 99]
    assert start[: count + 1].tolist() == [0, 1, 3, 4, 5]
    assert ent_row.tolist() == [1, 0, 1, 0, 0] and ent_val.tolist() == [5, 2, 4, 1, 3]


@pytest.mark.parametrize("D", [17, 600, 5000, 100_000, 3_000_000])
@pytest.mark.parametrize("count", [0, 1, 2, 32, 33, 1000])
def test_sort_features_sorts_distinct_keys_with_any_digit_width(D, count):
    rng = np.random.default_rng(D + count)
    count = min(count, D // 16)  # group_by_feature sorts only below 1/16 of the features
    keys = rng.choice(D, size=count, replace=False).astype(np.int64)
    if count > 2:
        keys[:3] = [D - 1, 0, D // 2] if D > 2 else keys[:3]  # the extremes
        keys = np.unique(keys)
        rng.shuffle(keys)
        count = keys.size
    want = np.sort(keys)
    buf = np.concatenate([keys, np.full(3, -7, np.int64)])  # entries past count untouched
    scratch = np.full(count + 1, -9, np.int64)
    hist = np.full(D, -5, np.int64)
    KS._sort_features(buf, count, scratch, hist)
    assert_array_equal(buf[:count], want)
    assert_array_equal(buf[count:], [-7, -7, -7])


def test_group_by_feature_sorts_a_large_batch_of_few_features():
    # more than 32 distinct features, under 1/16 of D: the radix sort, runs of rows
    # whose new features arrive in increasing order (as the rows of a CSR give them)
    rng = np.random.default_rng(4)
    D, n = 50_000, 40
    A = sp.random(n, D, density=0.001, format="csr", random_state=rng)
    A.sum_duplicates()
    data, indices, indptr = A.data, A.indices.astype(np.int32), A.indptr.astype(np.int32)
    rows = rng.permutation(n).astype(np.int64)
    count, touched, start, ent_row, ent_val = _groups(data, indices, indptr, rows, D)
    features = np.unique(A[rows].indices)
    assert 32 < count < D // 16
    assert_array_equal(touched[:count], features)
    sub = A[rows].tocsc()  # entries of each feature in batch-row order
    assert_array_equal(start[: count + 1], sub.indptr[np.r_[features, features[-1] + 1]])
    assert_array_equal(ent_row, sub.indices)
    assert_array_equal(ent_val, sub.data)


@pytest.mark.parametrize("twin", list(TWINS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(AWKWARD))
def test_sparse_weight_grad_grouped_is_the_scatter_bit_for_bit(name, dtype, twin):
    data, indices, indptr, dense = case(name, dtype)
    n, D = dense.shape
    H = 37
    rng = np.random.default_rng(1)
    kernel = TWINS[twin]("sparse_weight_grad_grouped")
    for what, rows in batches(n, dense).items():
        G = rng.normal(size=(rows.size, H)).astype(dtype)
        count, touched, start, ent_row, ent_val = _groups(data, indices, indptr, rows, D)
        sentinel = rng.normal(size=(D, H)).astype(dtype)
        out = sentinel.copy()
        kernel(touched, count, start, ent_row, ent_val, G, out)
        scatter = np.zeros((D, H), dtype)
        KS.sparse_weight_grad_serial(data, indices, indptr, rows, G, touched, count, 1,
                                     scatter)
        t = touched[:count]
        assert_array_equal(out[t], scatter[t], what)  # the same sums in the same order
        assert_close(out[t], (dense[rows].T @ G)[t], dtype, what)
        others = np.setdiff1d(np.arange(D), t)
        assert_array_equal(out[others], sentinel[others], what)  # not written


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-nesterov", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(AWKWARD))
def test_exact_updates_are_the_dense_update_on_the_dense_gradient(name, dtype, optimizer):
    data, indices, indptr, dense = case(name, dtype)
    n, D = dense.shape
    H, reg = 19, dtype(0.03)
    rng = np.random.default_rng(3)
    for what, rows in batches(n, dense).items():
        G = rng.normal(size=(rows.size, H)).astype(dtype)
        count, touched, start, ent_row, ent_val = _groups(data, indices, indptr, rows, D)
        scatter = np.zeros((D, H), dtype)
        KS.sparse_weight_grad_serial(data, indices, indptr, rows, G, touched, count, 1,
                                     scatter)  # Xᵀ G: zero outside the touched rows
        W = rng.normal(size=(D, H)).astype(dtype)
        s1, s2 = rng.normal(size=(D, H)).astype(dtype), rng.random((D, H)).astype(dtype)
        Wd, s1d, s2d = W.copy(), s1.copy(), s2.copy()
        grow = np.empty(H, dtype)
        if optimizer == "adam":
            sq = KS.adam_update_exact(W, s1, s2, touched, count, start, ent_row, ent_val, G,
                                      grow, dtype(0.01), dtype(0.9), dtype(0.999), dtype(1e-8),
                                      reg)
            sqd = K.adam_update(Wd, scatter, s1d, s2d, dtype(0.01), dtype(0.9), dtype(0.999),
                                dtype(1e-8), reg)
        else:
            nesterov = optimizer == "sgd-nesterov"
            sq = KS.sgd_update_exact(W, s1, touched, count, start, ent_row, ent_val, G, grow,
                                     dtype(0.1), dtype(0.9), nesterov, reg)
            sqd = K.sgd_update(Wd, scatter, s1d, dtype(0.1), dtype(0.9), nesterov, reg)
        # the same operations on every element, to an ulp: the flat dense loop and
        # the row loop are vectorised apart (a contracted multiply-add at a row's tail)
        ulps = {"rtol": 4e-7, "atol": 1e-9} if dtype == np.float32 else {"rtol": 1e-15,
                                                                       "atol": 1e-18}
        for a, b in ((W, Wd), (s1, s1d), (s2, s2d)):
            assert_allclose(a, b, **ulps, err_msg=what)
        assert_allclose(sq, sqd, rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-nesterov", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_touched_updates_are_the_row_updates_on_the_grouped_gradient(dtype, optimizer):
    data, indices, indptr, dense = case("empty-rows-and-columns", dtype)
    n, D = dense.shape
    H, reg = 21, dtype(0.02)
    rng = np.random.default_rng(4)
    rows = batches(n, dense)["all-shuffled"]
    G = rng.normal(size=(rows.size, H)).astype(dtype)
    count, touched, start, ent_row, ent_val = _groups(data, indices, indptr, rows, D)
    grad = np.zeros((D, H), dtype)
    KS.sparse_weight_grad_grouped_serial(touched, count, start, ent_row, ent_val, G, grad)
    W = rng.normal(size=(D, H)).astype(dtype)
    s1, s2 = rng.normal(size=(D, H)).astype(dtype), rng.random((D, H)).astype(dtype)
    Wr, s1r, s2r = W.copy(), s1.copy(), s2.copy()
    rowsq, rowsq_r = np.zeros(D), np.zeros(D)
    KS.row_squares(W, rowsq)
    KS.row_squares(Wr, rowsq_r)
    delta = np.empty(D)
    grow = np.empty(H, dtype)
    if optimizer == "adam":
        got = KS.adam_update_touched(W, s1, s2, touched, count, start, ent_row, ent_val, G,
                                     grow, dtype(0.01), dtype(0.9), dtype(0.999), dtype(1e-8),
                                     reg, rowsq)
        want = KS.adam_update_rows_serial(Wr, grad, s1r, s2r, touched, count, dtype(0.01),
                                          dtype(0.9), dtype(0.999), dtype(1e-8), reg, rowsq_r,
                                          delta)
    else:
        nesterov = optimizer == "sgd-nesterov"
        got = KS.sgd_update_touched(W, s1, touched, count, start, ent_row, ent_val, G, grow,
                                    dtype(0.1), dtype(0.9), nesterov, reg, rowsq)
        want = KS.sgd_update_rows_serial(Wr, grad, s1r, touched, count, dtype(0.1), dtype(0.9),
                                         nesterov, reg, rowsq_r, delta)
    for a, b in ((W, Wr), (s1, s1r), (s2, s2r), (rowsq, rowsq_r)):
        assert_close(a, b, dtype)
    assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-9)
    untouched = np.setdiff1d(np.arange(D), touched[:count])
    assert untouched.size  # the case has empty columns
    assert_array_equal(W[untouched], Wr[untouched])
