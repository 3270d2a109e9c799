"""Numba kernels for the sparse nodes of the graph: ``X`` a CSR matrix, float32 and float64.

A CSR reaches these kernels as three flat arrays (``data``, ``indices``,
``indptr``), validated once in Python (:func:`fastmlp._sparse.check_csr`) before
any of them indexes with them: the package compiles without bounds checks.
Like :mod:`fastmlp.kernels`, every kernel writes into buffers passed to it and
allocates nothing; loops over the batch are written once with ``prange`` and
compiled twice (:func:`fastmlp._jit.serial_and_parallel`): the plain name runs in
threads, the ``_serial`` twin on the calling thread.

A minibatch is a set of row indices ``rows`` into the CSR, so gathering it
costs nothing: row ``r`` of the batch is CSR row ``rows[r]``. A length-0
``rows`` means the batch is the CSR's rows in order (pass a slice
``indptr[start:stop + 1]`` for a block of consecutive rows: its offsets still
index the full ``data`` and ``indices``).

The nodes (``DESIGN.md``, "Sparse input")::

    X, W1 --sparse_linear_forward--> H1 = X W1 + b1      (nnz(batch) x H multiply-adds)
    X, dH1 --touched_features, sparse_weight_grad--> rows of dW1 = Xᵀ dH1 that can be nonzero
    X, dH1 --sparse_weight_grad_dense--> all of dW1 = Xᵀ dH1 + reg W1   (full batch, L-BFGS)

Everything after ``H1`` is dense and runs the kernels of :mod:`fastmlp.kernels`.
The row-wise update kernels (``sgd_update_rows``, ``adam_update_rows``) apply the
rules of :func:`fastmlp.kernels.sgd_update` and :func:`fastmlp.kernels.adam_update`
to the touched rows of ``W1`` only, and ``linear2_catch_up`` applies to rows of
``(W1, velocity)`` the product of a range of per-step 2x2 linear maps stored in
a segment tree (``build_map_tree``): the pieces the lazy updates of
:mod:`fastmlp.solvers_sparse` are made of.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from . import kernels as K
from ._jit import jit, serial_and_parallel

# Columns of a gradient row handled by one thread in the column-parallel
# kernels: a multiple of 16 float32 (a 64-byte cache line).
_COLUMN_BLOCK = 16


# --------------------------------------------------------------------- forward
def _sparse_linear_forward(data, indices, indptr, rows, W, b, out):
    """out = X[rows] W + b, from the nonzeros of each row.

    .. math:: \\mathrm{out}_{r,:} = b + \\sum_{k \\in \\mathrm{row}(i_r)} x_k W_{j_k,:}

    Row ``r`` of ``out`` (m, H) is the bias plus the rows ``W[indices[k]]``
    scaled by ``data[k]`` over the stored entries ``k`` of CSR row ``rows[r]``
    (of row ``r`` with a length-0 ``rows``): ``X W`` read as a sum of rows of
    ``W``, nnz x H multiply-adds, each along a contiguous row. A length-0 ``b``
    adds no bias. Duplicate indices add twice, as ``X.toarray()`` sums them.
    Parallel over the batch rows (each writes its own row of ``out``).
    """
    m, H = out.shape
    gather = rows.shape[0] == m
    has_bias = b.shape[0] == H
    for r in prange(m):
        i = np.int64(rows[r]) if gather else np.int64(r)
        o = out[r]
        if has_bias:
            for j in range(H):
                o[j] = b[j]
        else:
            for j in range(H):
                o[j] = 0
        k = indptr[i]
        end = indptr[i + 1]
        # four entries a pass: the row of out is loaded and stored once per four rows
        # of W, each element still summed in entry order, so the sums are those of
        # one entry a pass bit for bit (10,000 Zipf rows in blocks of 1024: 8.0 ms ->
        # 5.4 ms; 10,000 man pages 26.5 -> 17.5 ms)
        while k + 4 <= end:
            a0, a1, a2, a3 = data[k], data[k + 1], data[k + 2], data[k + 3]
            w0, w1 = W[indices[k]], W[indices[k + 1]]
            w2, w3 = W[indices[k + 2]], W[indices[k + 3]]
            for j in range(H):
                o[j] = (((o[j] + a0 * w0[j]) + a1 * w1[j]) + a2 * w2[j]) + a3 * w3[j]
            k += 4
        while k < end:
            a = data[k]
            w = W[indices[k]]
            for j in range(H):
                o[j] += a * w[j]  # (H,) row of out
            k += 1


sparse_linear_forward_serial, sparse_linear_forward = serial_and_parallel(_sparse_linear_forward)


# -------------------------------------------------------------------- backward
@jit
def _mark_first_seen(indices, indptr, rows, marker, touched):
    """Set ``marker`` at each feature of the batch rows; list each in ``touched`` once.

    The features land in ``touched[:count]`` in order of first occurrence;
    returns ``count``. ``marker`` must be zero at every feature of the batch.
    """
    count = 0
    for r in range(rows.shape[0]):
        i = rows[r]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if marker[j] == 0:
                marker[j] = 1
                touched[count] = j
                count += 1
    return count


@jit
def touched_features(indices, indptr, rows, marker, touched):
    """List the distinct features (columns) stored in the batch rows ``rows``; return their count.

    The features land in ``touched[:count]``: in increasing order when the batch
    holds at least 1/16 of all features (read back from the marker in one scan
    of n_features bytes, cheaper there than a sort, and the row kernels then walk
    ``W1`` forwards), else in order of first occurrence. ``marker``
    (n_features,) must be all zero on entry and is all zero again on return:
    it is set at a feature when first seen and reset at the features listed,
    so nothing of size n_features x H is scanned or cleared per batch.
    ``touched`` needs room for min(n_features, nnz of the batch) entries.
    """
    count = _mark_first_seen(indices, indptr, rows, marker, touched)
    D = marker.shape[0]
    if 16 * count >= D:
        t = 0
        for j in range(D):
            if marker[j] != 0:
                marker[j] = 0
                touched[t] = j
                t += 1
    else:
        for t in range(count):
            marker[touched[t]] = 0
    return count


@jit
def _scatter_add(data, indices, indptr, rows, G, lo, hi, out):
    """out[j, lo:hi] += x_ij G[r, lo:hi] over the stored entries of the batch rows."""
    m = G.shape[0]
    gather = rows.shape[0] == m
    w = hi - lo
    for r in range(m):
        i = np.int64(rows[r]) if gather else np.int64(r)
        g = G[r, lo:hi]
        for k in range(indptr[i], indptr[i + 1]):
            a = data[k]
            o = out[indices[k], lo:hi]
            # a loop from 0 over slices: Numba vectorises it (over range(lo, hi) it
            # did not, and the kernel ran 4x slower than the forward product)
            for j in range(w):
                o[j] = o[j] + a * g[j]


@jit
def _column_chunks(H, chunks):
    """``(count, width)`` of at most ``chunks`` chunks of columns, each 16-aligned."""
    blocks = (H + _COLUMN_BLOCK - 1) // _COLUMN_BLOCK
    chunks = max(1, min(chunks, blocks))
    width = ((blocks + chunks - 1) // chunks) * _COLUMN_BLOCK
    return (H + width - 1) // width, width


def _sparse_weight_grad(data, indices, indptr, rows, G, touched, count, chunks, out):
    """Rows ``touched[:count]`` of out = X[rows]ᵀ G; no other row is read or written.

    .. math:: \\partial L / \\partial W_{j,:} = \\sum_{r:\\, x_{i_r j} \\ne 0} x_{i_r j} G_{r,:}

    ``G`` is the gradient at the layer's output (m, H), ``out`` is (D, H) and
    ``touched[:count]`` lists the features of the batch
    (:func:`touched_features`): every other row of ``Xᵀ G`` is exactly zero,
    and is left as it is. The listed rows are zeroed, then each stored entry
    ``x_ij`` adds ``x_ij G[r]`` to row ``j``: nnz x H multiply-adds. The L2
    term ``reg W`` is not added here: the update kernels fold it in
    (``sgd_update(..., reg)``), over every row of ``W`` for the exact update
    (whose untouched rows then see the gradient ``reg W`` alone, as in the
    dense epoch) or over the touched rows for a lazy one. Parallel over at most
    ``chunks`` chunks of columns (rows of the batch would race on a shared
    feature): pass the thread count to the parallel build, 1 to the serial one
    (each chunk walks the batch's nonzeros once).
    """
    H = G.shape[1]
    nchunks, width = _column_chunks(H, chunks)
    for c in prange(nchunks):
        lo = c * width
        hi = min(lo + width, H)
        for t in range(count):
            o = out[touched[t]]
            for j in range(lo, hi):
                o[j] = 0
        _scatter_add(data, indices, indptr, rows, G, lo, hi, out)


sparse_weight_grad_serial, sparse_weight_grad = serial_and_parallel(_sparse_weight_grad)


def _sparse_weight_grad_dense(data, indices, indptr, rows, G, W, reg, chunks, out):
    """out = X[rows]ᵀ G + reg W, every row of out written (D, H).

    .. math:: \\partial L / \\partial W = X^\\top G + (\\alpha / n) W

    The dense gradient, for a full-batch solver (L-BFGS) and the inspection
    API: ``reg W`` fills ``out``, then the stored entries add their rows as in
    :func:`sparse_weight_grad`. Parallel over at most ``chunks`` chunks of columns.
    """
    D, H = out.shape
    nchunks, width = _column_chunks(H, chunks)
    for c in prange(nchunks):
        lo = c * width
        hi = min(lo + width, H)
        for k in range(D):
            for j in range(lo, hi):
                out[k, j] = reg * W[k, j]
        _scatter_add(data, indices, indptr, rows, G, lo, hi, out)


sparse_weight_grad_dense_serial, sparse_weight_grad_dense = serial_and_parallel(
    _sparse_weight_grad_dense
)


@jit
def clear_rows(out, rows, count):
    """out[rows[:count]] = 0: restores an all-zero gradient after an exact update."""
    H = out.shape[1]
    for t in range(count):
        o = out[rows[t]]
        for j in range(H):
            o[j] = 0


# ---------------------------------------------------------------- row updates
@jit
def _row_index(rows, t):
    # row t of a list, or row t itself when the list is empty (every row in order)
    return np.int64(rows[t]) if rows.shape[0] > 0 else np.int64(t)


@jit
def _sum_deltas(delta, count):
    total = 0.0
    for t in range(count):
        total += delta[t]
    return total


# The two row kernels below run the rules of kernels.sgd_update and
# kernels.adam_update line for line, on one row at a time. They do not call those
# kernels per row: measured on 50,000 rows of 100 float32, a call per row took
# 16 ms against 6 ms for the same loop written here (5.5 ms for one call over
# the whole array). tests/test_kernels_sparse.py checks both against the dense
# kernels, row by row.
def _sgd_update_rows(param, grad, velocity, rows, count, learning_rate, momentum, nesterov,
                     reg, rowsq, delta):
    """:func:`fastmlp.kernels.sgd_update` on rows ``rows[:count]`` of ``param`` only.

    A length-0 ``rows`` means rows ``0 .. count - 1``. ``rowsq`` (D,) float64
    holds each row's sum of squares and is kept up to date; returns the change
    of the total sum of squares (the next L2 penalty then costs no pass over
    ``param``). ``delta`` (>= count,) float64 is scratch: the per-row changes
    are summed after the parallel loop, not by a parallel reduction (which would
    allocate on every call). Parallel over rows.
    """
    H = param.shape[1]
    r = param.dtype.type(reg)
    for t in prange(count):
        j = _row_index(rows, t)
        p = param[j]
        g = grad[j]
        v = velocity[j]
        sq = 0.0
        for h in range(H):
            gt = g[h] + r * p[h]
            vt = momentum * v[h] - learning_rate * gt
            v[h] = vt
            if nesterov:
                pt = p[h] + (momentum * vt - learning_rate * gt)
            else:
                pt = p[h] + vt
            p[h] = pt
            sq += pt * pt
        delta[t] = sq - rowsq[j]
        rowsq[j] = sq
    return _sum_deltas(delta, count)


sgd_update_rows_serial, sgd_update_rows = serial_and_parallel(_sgd_update_rows)


def _adam_update_rows(param, grad, m, v, rows, count, step_size, beta_1, beta_2, epsilon, reg,
                      rowsq, delta):
    """:func:`fastmlp.kernels.adam_update` on rows ``rows[:count]`` only (and their moments).

    The other rows, and their moments, are not read or written. ``rows``,
    ``rowsq`` and ``delta`` as in :func:`sgd_update_rows`; returns the change of
    the total sum of squares. Parallel over rows.
    """
    H = param.shape[1]
    one = param.dtype.type(1)
    r = param.dtype.type(reg)
    for t in prange(count):
        j = _row_index(rows, t)
        p = param[j]
        g = grad[j]
        mm = m[j]
        vv = v[j]
        sq = 0.0
        for h in range(H):
            gt = g[h] + r * p[h]
            mt = beta_1 * mm[h] + (one - beta_1) * gt
            vt = beta_2 * vv[h] + (one - beta_2) * gt * gt
            mm[h] = mt
            vv[h] = vt
            pt = p[h] - step_size * mt / (np.sqrt(vt) + epsilon)
            p[h] = pt
            sq += pt * pt
        delta[t] = sq - rowsq[j]
        rowsq[j] = sq
    return _sum_deltas(delta, count)


adam_update_rows_serial, adam_update_rows = serial_and_parallel(_adam_update_rows)


@jit
def row_squares(param, rowsq):
    """rowsq[j] = sum of squares of row j of ``param`` (float64); return their total."""
    total = 0.0
    for j in range(param.shape[0]):
        s = 0.0
        for v in param[j]:
            s += v * v
        rowsq[j] = s
        total += s
    return total


# ------------------------------------------------- products of per-step 2x2 maps
# The lazy SGD update (solvers_sparse) moves a row the batch does not touch by a
# linear map of its (weight, velocity) pair, one map per step; a row untouched
# for steps l..r moves by their product. A segment tree holds the maps of an
# epoch so that any range's product costs O(log steps) 2x2 products, with no
# inverse (prefix products divided by one another would lose every digit: the
# maps' determinant is the momentum, so a product over 300 steps is near 1e-14).
@jit
def build_map_tree(tree, size, n_steps):
    """Fill the inner nodes of the segment tree ``tree`` (2 size, 4) float64.

    On entry ``tree[size + s]`` holds step ``s``'s map ``(a, b, c, d)``, meaning
    ``[p; v] <- [[a, b], [c, d]] [p; v]``, for ``s < n_steps``; the remaining
    leaves are set to the identity here. Node ``k`` becomes the product of its
    children, the later steps' map on the left: ``tree[2k + 1] @ tree[2k]``.
    """
    for s in range(size + n_steps, 2 * size):
        tree[s, 0] = 1.0
        tree[s, 1] = 0.0
        tree[s, 2] = 0.0
        tree[s, 3] = 1.0
    for k in range(size - 1, 0, -1):
        _matmul2(tree[2 * k + 1], tree[2 * k], tree[k])


@jit
def _matmul2(A, B, out):
    """out = A @ B for 2x2 matrices stored as (a, b, c, d) rows (out may not alias)."""
    a = A[0] * B[0] + A[1] * B[2]
    b = A[0] * B[1] + A[1] * B[3]
    c = A[2] * B[0] + A[3] * B[2]
    d = A[2] * B[1] + A[3] * B[3]
    out[0] = a
    out[1] = b
    out[2] = c
    out[3] = d


@jit
def range_map(tree, size, lo, hi):
    """Return the product of the maps of steps ``lo .. hi - 1`` (later on the left), as 4 floats.

    The identity when ``lo >= hi``. A bottom-up segment-tree query: the left
    accumulator gathers nodes in increasing step order (each new node goes on
    its left), the right one in decreasing order (each new node on its right).
    """
    la, lb, lc, ld = 1.0, 0.0, 0.0, 1.0
    ra, rb, rc, rd = 1.0, 0.0, 0.0, 1.0
    lo += size
    hi += size
    while lo < hi:
        if lo & 1:
            n = tree[lo]
            la, lb, lc, ld = (n[0] * la + n[1] * lc, n[0] * lb + n[1] * ld,
                              n[2] * la + n[3] * lc, n[2] * lb + n[3] * ld)
            lo += 1
        if hi & 1:
            hi -= 1
            n = tree[hi]
            ra, rb, rc, rd = (ra * n[0] + rb * n[2], ra * n[1] + rb * n[3],
                              rc * n[0] + rd * n[2], rc * n[1] + rd * n[3])
        lo >>= 1
        hi >>= 1
    return (ra * la + rb * lc, ra * lb + rb * ld, rc * la + rd * lc, rc * lb + rd * ld)


def _linear2_catch_up(param, velocity, rows, count, last, now, tree, size, rowsq, delta):
    """Move rows ``rows[:count]`` of ``(param, velocity)`` from step ``last[j]`` to ``now``.

    .. math:: [p; v] \\leftarrow A_{now-1} \\cdots A_{last_j} [p; v]

    elementwise along the row, with the steps' maps from the segment tree
    (:func:`build_map_tree`); then ``last[j] = now``. A length-0 ``rows`` means
    rows ``0 .. count - 1``. ``rowsq``/``delta`` as in :func:`sgd_update_rows`;
    returns the change of the total sum of squares. Parallel over rows.
    """
    H = param.shape[1]
    for t in prange(count):
        j = _row_index(rows, t)
        if last[j] >= now:
            delta[t] = 0.0
            continue
        a, b, c, d = range_map(tree, size, last[j], now)
        last[j] = now
        p = param[j]
        v = velocity[j]
        s = 0.0
        for h in range(H):
            ph = p[h]
            vh = v[h]
            pn = a * ph + b * vh
            p[h] = pn
            v[h] = c * ph + d * vh
            s += pn * pn
        delta[t] = s - rowsq[j]
        rowsq[j] = s
    return _sum_deltas(delta, count)


linear2_catch_up_serial, linear2_catch_up = serial_and_parallel(_linear2_catch_up)


# ------------------------------------------------- the batch's entries grouped by feature
# The scatter of dW1 = Xᵀ dH1 walks the batch row by row and adds x_ij dH1[r] into
# row j of dW1: a random read-modify-write of a (D, H) array, after a pass that
# zeroes the touched rows. Grouping the batch's entries by feature first (a
# counting sort of nnz(batch) entries) lets each touched row be computed once,
# start to end, while dH1 (B x H) stays in cache, and written once: no zeroing
# pass, and (in the exact update) no (D, H) gradient array at all.
@jit
def _sort_features(keys, count, scratch, hist):
    """Sort ``keys[:count]`` (distinct features, each below ``len(hist)``) in place.

    An LSD radix sort, digits of up to 11 bits, each pass a counting sort into
    the other buffer (``scratch`` needs ``count`` entries): O(count + 2^bits)
    per pass, two passes for 4 million features. (Numba's ``ndarray.sort``, a
    quicksort, took 11.5 ms over an epoch's 80 batches of 3,100 Zipf features,
    this sort 1.0 ms.) ``hist`` (D,) is scratch, its first ``2^bits + 1``
    entries used, so the digits are narrower when D is small; a few keys take
    an insertion sort instead.
    """
    if count <= 32:
        for t in range(1, count):
            key = keys[t]
            u = t
            while u > 0 and keys[u - 1] > key:
                keys[u] = keys[u - 1]
                u -= 1
            keys[u] = key
        return
    bits = 1
    while bits < 11 and (1 << (bits + 1)) + 1 <= hist.shape[0]:
        bits += 1
    radix = 1 << bits
    top = 0
    for t in range(count):
        top = max(top, keys[t])
    src, dst = keys, scratch
    shift = 0
    swapped = False
    while True:
        for d in range(radix + 1):
            hist[d] = 0
        for t in range(count):  # digit counts, then their prefix sums: first slots
            hist[((src[t] >> shift) & (radix - 1)) + 1] += 1
        for d in range(radix):
            hist[d + 1] += hist[d]
        for t in range(count):  # stable: equal digits keep their order
            d = (src[t] >> shift) & (radix - 1)
            dst[hist[d]] = src[t]
            hist[d] += 1
        src, dst = dst, src
        swapped = not swapped
        shift += bits
        if (top >> shift) == 0:
            break
    if swapped:  # the sorted keys are in scratch
        for t in range(count):
            keys[t] = scratch[t]


@jit
def group_by_feature(data, indices, indptr, rows, marker, slot, touched, start, ent_row,
                     ent_val):
    """Sort the stored entries of batch rows ``rows`` by feature (counting sort); return ``count``.

    On return ``touched[:count]`` lists the distinct features in increasing order
    (read back from the marker in one scan when the batch holds at least 1/16
    of the features, else sorted in place by :func:`_sort_features`), and the entries of feature
    ``touched[t]`` are ``ent_row[start[t]:start[t + 1]]`` (the batch row ``r``)
    and ``ent_val[...]`` (its value), in batch-row order: the order in which
    :func:`sparse_weight_grad` adds them, so the sums are bit for bit the same.
    ``marker`` (D,) must be all zero on entry and is all zero again on return;
    ``slot`` (D,) is scratch (read only where the marker is set); ``touched``
    and ``start`` need ``min(D, nnz) + 1`` entries, ``ent_row`` and ``ent_val``
    the batch's nnz.
    """
    count = _mark_first_seen(indices, indptr, rows, marker, touched)
    D = marker.shape[0]
    if 16 * count >= D:
        t = 0
        for j in range(D):
            if marker[j] != 0:
                touched[t] = j
                t += 1
    else:
        # slot and start are free until the groups are made: the sort's scratch
        _sort_features(touched, count, start, slot)
    for t in range(count):
        j = touched[t]
        marker[j] = 0
        slot[j] = t
        start[t + 1] = 0
    start[0] = 0
    # counts into start[t + 1], then their prefix sums: start[t] = first entry of t
    for r in range(rows.shape[0]):
        i = rows[r]
        for k in range(indptr[i], indptr[i + 1]):
            start[slot[indices[k]] + 1] += 1
    for t in range(count):
        start[t + 1] += start[t]
    # fill, each feature's cursor running from its start to the next one's; then
    # shift the cursors (now the ends) back to the starts
    for r in range(rows.shape[0]):
        i = rows[r]
        for k in range(indptr[i], indptr[i + 1]):
            t = slot[indices[k]]
            e = start[t]
            ent_row[e] = r
            ent_val[e] = data[k]
            start[t] = e + 1
    for t in range(count, 0, -1):
        start[t] = start[t - 1]
    start[0] = 0
    return count


@jit
def _grad_row(t, start, ent_row, ent_val, G, o):
    """o = sum of x G[r] over the entries of group ``t``: row ``touched[t]`` of Xᵀ G."""
    H = o.shape[0]
    lo = start[t]
    end = start[t + 1]
    a = ent_val[lo]
    g = G[ent_row[lo]]
    for h in range(H):
        o[h] = a * g[h]
    e = lo + 1
    while e + 4 <= end:  # four entries a pass, in order (as in sparse_linear_forward)
        a0, a1, a2, a3 = ent_val[e], ent_val[e + 1], ent_val[e + 2], ent_val[e + 3]
        g0, g1 = G[ent_row[e]], G[ent_row[e + 1]]
        g2, g3 = G[ent_row[e + 2]], G[ent_row[e + 3]]
        for h in range(H):
            o[h] = (((o[h] + a0 * g0[h]) + a1 * g1[h]) + a2 * g2[h]) + a3 * g3[h]
        e += 4
    while e < end:
        a = ent_val[e]
        g = G[ent_row[e]]
        for h in range(H):
            o[h] = o[h] + a * g[h]
        e += 1


def _sparse_weight_grad_grouped(touched, count, start, ent_row, ent_val, G, out):
    """Rows ``touched[:count]`` of out = Xᵀ G, from the entries grouped by feature.

    .. math:: \\partial L / \\partial W_{j,:} = \\sum_{r:\\, x_{i_r j} \\ne 0} x_{i_r j} G_{r,:}

    :func:`group_by_feature` made the groups; each listed row of ``out`` is
    written once (no zeroing first) and no other row is read or written. The
    same sums, in the same order, as :func:`sparse_weight_grad`. Parallel over
    the touched features (each thread owns its rows).
    """
    for t in prange(count):
        _grad_row(t, start, ent_row, ent_val, G, out[touched[t]])


sparse_weight_grad_grouped_serial, sparse_weight_grad_grouped = serial_and_parallel(
    _sparse_weight_grad_grouped
)



@jit
def _sgd_decay_flat(p, v, learning_rate, momentum, nesterov, r):
    """sgd_update's rule on flat elements whose gradient is ``r p`` alone."""
    # a loop from 0 over slices, which Numba vectorises (over range(lo, hi) it
    # did not, and the exact Adam epoch ran 3x slower)
    sq = 0.0
    for t in range(p.shape[0]):
        gt = r * p[t]
        vt = momentum * v[t] - learning_rate * gt
        v[t] = vt
        if nesterov:
            pt = p[t] + (momentum * vt - learning_rate * gt)
        else:
            pt = p[t] + vt
        p[t] = pt
        sq += pt * pt
    return sq


@jit
def _adam_decay_flat(p, m, v, step_size, beta_1, beta_2, epsilon, r):
    """adam_update's rule on flat elements whose gradient is ``r p`` alone (slices, as above)."""
    one = p.dtype.type(1)
    sq = 0.0
    for t in range(p.shape[0]):
        gt = r * p[t]
        mt = beta_1 * m[t] + (one - beta_1) * gt
        vt = beta_2 * v[t] + (one - beta_2) * gt * gt
        m[t] = mt
        v[t] = vt
        pt = p[t] - step_size * mt / (np.sqrt(vt) + epsilon)
        p[t] = pt
        sq += pt * pt
    return sq


@jit
def _sgd_update_exact_rows(param, velocity, touched, t_lo, t_hi, row_lo, row_hi, start, ent_row,
                           ent_val, G, grow, learning_rate, momentum, nesterov, r):
    """:func:`sgd_update_exact` on rows ``row_lo:row_hi`` (touched: ``touched[t_lo:t_hi]``)."""
    H = param.shape[1]
    pf = param.reshape(-1)
    vf = velocity.reshape(-1)
    sq = 0.0
    cur = row_lo  # first row not yet stepped
    for t in range(t_lo, t_hi):
        j = touched[t]
        lo, hi = cur * H, j * H
        sq += _sgd_decay_flat(pf[lo:hi], vf[lo:hi], learning_rate, momentum, nesterov, r)
        _grad_row(t, start, ent_row, ent_val, G, grow)
        sq += K.sgd_update(param[j], grow, velocity[j], learning_rate, momentum, nesterov, r)
        cur = j + 1
    lo, hi = cur * H, row_hi * H
    sq += _sgd_decay_flat(pf[lo:hi], vf[lo:hi], learning_rate, momentum, nesterov, r)
    return sq


@jit
def sgd_update_exact(param, velocity, touched, count, start, ent_row, ent_val, G, grow,
                     learning_rate, momentum, nesterov, reg):
    """Take the dense epoch's SGD step on all of ``param`` (D, H), never storing its gradient.

    :func:`fastmlp.kernels.sgd_update` with the gradient ``Xᵀ G + reg W``: a
    touched row (``touched[:count]``, increasing) gets its row of ``Xᵀ G`` from
    the groups (:func:`group_by_feature`) into ``grow`` (H,) just before its
    step; the runs of untouched rows between them, contiguous in memory, step
    as flat arrays with the gradient ``reg W`` alone. The weights are those of
    ``sgd_update`` on the dense gradient, without a (D, H) gradient to read or
    to clear. Returns the new sum of squares of ``param``.
    """
    return _sgd_update_exact_rows(param, velocity, touched, 0, count, 0, param.shape[0], start,
                                  ent_row, ent_val, G, grow, learning_rate, momentum, nesterov,
                                  param.dtype.type(reg))


@jit
def _adam_update_exact_rows(param, m, v, touched, t_lo, t_hi, row_lo, row_hi, start, ent_row,
                            ent_val, G, grow, step_size, beta_1, beta_2, epsilon, r):
    """:func:`adam_update_exact` on rows ``row_lo:row_hi`` (touched: ``touched[t_lo:t_hi]``)."""
    H = param.shape[1]
    pf = param.reshape(-1)
    mf = m.reshape(-1)
    vf = v.reshape(-1)
    sq = 0.0
    cur = row_lo
    for t in range(t_lo, t_hi):
        j = touched[t]
        lo, hi = cur * H, j * H
        sq += _adam_decay_flat(pf[lo:hi], mf[lo:hi], vf[lo:hi], step_size, beta_1, beta_2,
                               epsilon, r)
        _grad_row(t, start, ent_row, ent_val, G, grow)
        sq += K.adam_update(param[j], grow, m[j], v[j], step_size, beta_1, beta_2, epsilon, r)
        cur = j + 1
    lo, hi = cur * H, row_hi * H
    sq += _adam_decay_flat(pf[lo:hi], mf[lo:hi], vf[lo:hi], step_size, beta_1, beta_2, epsilon, r)
    return sq


@jit
def adam_update_exact(param, m, v, touched, count, start, ent_row, ent_val, G, grow, step_size,
                      beta_1, beta_2, epsilon, reg):
    """Take the dense epoch's Adam step on all of ``param``, as :func:`sgd_update_exact`.

    :func:`fastmlp.kernels.adam_update`'s rule, every row and its moments, with
    the gradient ``Xᵀ G + reg W`` built row by row (touched rows from the
    groups, the runs between them ``reg W``). Returns the new sum of squares.
    """
    return _adam_update_exact_rows(param, m, v, touched, 0, count, 0, param.shape[0], start,
                                   ent_row, ent_val, G, grow, step_size, beta_1, beta_2,
                                   epsilon, param.dtype.type(reg))


@jit
def _row_share(D, T, s, touched, count):
    """Rows ``(row_lo, row_hi)`` of share ``s`` of ``T`` and their touched span ``(t_lo, t_hi)``."""
    row_lo, row_hi = K.share(D, T, s)
    t_lo = np.searchsorted(touched[:count], row_lo)
    t_hi = np.searchsorted(touched[:count], row_hi)
    return row_lo, row_hi, t_lo, t_hi


@jit(parallel=True)
def update_exact_shares(optimizer_is_adam, param, s1, s2, touched, count, start, ent_row,
                        ent_val, G, grows, sqs, hyper, reg):
    """:func:`sgd_update_exact` or :func:`adam_update_exact` with W1's rows in ``T`` shares.

    Share ``s`` steps the rows :func:`fastmlp.kernels.share` gives it (its touched rows
    found by binary search in the increasing ``touched``) with its own gradient
    row ``grows[s]``; the shares' sums of squares ``sqs`` are added in share
    order. ``hyper`` is ``(learning_rate, momentum, nesterov, step_size, beta_1,
    beta_2, epsilon)``. Returns the new sum of squares of ``param``.
    """
    learning_rate, momentum, nesterov, step_size, beta_1, beta_2, epsilon = hyper
    T = sqs.shape[0]
    D = param.shape[0]
    r = param.dtype.type(reg)
    for s in numba.prange(T):
        row_lo, row_hi, t_lo, t_hi = _row_share(D, T, s, touched, count)
        if optimizer_is_adam:
            sqs[s] = _adam_update_exact_rows(param, s1, s2, touched, t_lo, t_hi, row_lo, row_hi,
                                             start, ent_row, ent_val, G, grows[s], step_size,
                                             beta_1, beta_2, epsilon, r)
        else:
            sqs[s] = _sgd_update_exact_rows(param, s1, touched, t_lo, t_hi, row_lo, row_hi,
                                            start, ent_row, ent_val, G, grows[s], learning_rate,
                                            momentum, nesterov, r)
    sq = 0.0
    for s in range(T):
        sq += sqs[s]
    return sq


@jit
def _sgd_update_touched_range(param, velocity, touched, t_lo, t_hi, start, ent_row, ent_val, G,
                              grow, learning_rate, momentum, nesterov, r, rowsq):
    """:func:`sgd_update_touched` on the touched rows ``touched[t_lo:t_hi]``."""
    total = 0.0
    for t in range(t_lo, t_hi):
        j = touched[t]
        _grad_row(t, start, ent_row, ent_val, G, grow)
        sq = K.sgd_update(param[j], grow, velocity[j], learning_rate, momentum, nesterov, r)
        total += sq - rowsq[j]
        rowsq[j] = sq
    return total


@jit
def _adam_update_touched_range(param, m, v, touched, t_lo, t_hi, start, ent_row, ent_val, G,
                               grow, step_size, beta_1, beta_2, epsilon, r, rowsq):
    """:func:`adam_update_touched` on the touched rows ``touched[t_lo:t_hi]``."""
    total = 0.0
    for t in range(t_lo, t_hi):
        j = touched[t]
        _grad_row(t, start, ent_row, ent_val, G, grow)
        sq = K.adam_update(param[j], grow, m[j], v[j], step_size, beta_1, beta_2, epsilon, r)
        total += sq - rowsq[j]
        rowsq[j] = sq
    return total


@jit
def sgd_update_touched(param, velocity, touched, count, start, ent_row, ent_val, G, grow,
                       learning_rate, momentum, nesterov, reg, rowsq):
    """:func:`sgd_update_rows` on the touched rows, each row's gradient built just before its step.

    The lazy update's rows ``touched[:count]`` (from :func:`group_by_feature`)
    get their row of ``Xᵀ G`` in ``grow`` (H,) from the groups, then
    :func:`fastmlp.kernels.sgd_update`'s rule: no (D, H) gradient is written,
    read or cleared. ``rowsq`` is kept up to date; returns the change of the
    total sum of squares. On the calling thread.
    """
    return _sgd_update_touched_range(param, velocity, touched, 0, count, start, ent_row,
                                     ent_val, G, grow, learning_rate, momentum, nesterov,
                                     param.dtype.type(reg), rowsq)


@jit
def adam_update_touched(param, m, v, touched, count, start, ent_row, ent_val, G, grow,
                        step_size, beta_1, beta_2, epsilon, reg, rowsq):
    """:func:`adam_update_rows` on the touched rows, as :func:`sgd_update_touched` (LazyAdam)."""
    return _adam_update_touched_range(param, m, v, touched, 0, count, start, ent_row, ent_val,
                                      G, grow, step_size, beta_1, beta_2, epsilon,
                                      param.dtype.type(reg), rowsq)


@jit(parallel=True)
def update_touched_shares(optimizer_is_adam, param, s1, s2, touched, count, start, ent_row,
                          ent_val, G, grows, sqs, hyper, reg, rowsq):
    """:func:`sgd_update_touched` or :func:`adam_update_touched` with the touched rows in shares.

    Share ``s`` of ``T`` takes a contiguous part of ``touched[:count]``
    (:func:`fastmlp.kernels.share`'s split) with its own gradient row
    ``grows[s]``: each row's gradient is built and stepped while it is in cache,
    as on one thread. The shares' changes of the sum of squares (``sqs``) are
    added in share order. ``hyper`` as in :func:`update_exact_shares`.
    """
    learning_rate, momentum, nesterov, step_size, beta_1, beta_2, epsilon = hyper
    T = sqs.shape[0]
    r = param.dtype.type(reg)
    for s in numba.prange(T):
        t_lo, t_hi = K.share(count, T, s)
        if optimizer_is_adam:
            sqs[s] = _adam_update_touched_range(param, s1, s2, touched, t_lo, t_hi, start,
                                                ent_row, ent_val, G, grows[s], step_size,
                                                beta_1, beta_2, epsilon, r, rowsq)
        else:
            sqs[s] = _sgd_update_touched_range(param, s1, touched, t_lo, t_hi, start, ent_row,
                                               ent_val, G, grows[s], learning_rate, momentum,
                                               nesterov, r, rowsq)
    total = 0.0
    for s in range(T):
        total += sqs[s]
    return total
