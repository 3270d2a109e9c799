"""Compiled training loops on CSR input: whole epochs with ``X`` never densified.

The sparse twin of :mod:`fastmlp.solvers`. ``X`` arrives as the three arrays of a
canonical CSR (:func:`fastmlp._sparse.check_csr`); ``H1 = X W1 + b1`` and
``dW1 = Xᵀ dH1`` are the sparse kernels of :mod:`fastmlp.kernels_sparse`, and
everything after ``H1`` (activation, ``W2``, loss, ``dW2``, ``dH1``) and every
update rule are the dense kernels of :mod:`fastmlp.kernels`. The shuffle is
:func:`fastmlp.solvers.shuffle` with the same seed semantics, so an epoch here
visits the batches an epoch of :func:`fastmlp.solvers.run_epoch` on
``X.toarray()`` visits.

Two update modes for ``W1``:

- **exact** (the default): the update of the dense epoch. A batch's gradient of
  ``W1`` is ``Xᵀ dH1`` on the rows of the features it holds and zero elsewhere,
  plus ``reg W1`` everywhere, so the optimizer step still touches every row of
  ``W1`` (and of its optimizer state) once per batch: the same model as a dense
  fit of ``X.toarray()`` to float tolerance, at the cost of a D x H pass per
  batch (the products themselves cost nnz x H).
- **lazy** (``lazy=True``): a batch updates only the rows of ``W1`` whose
  features it holds. What the dense epoch would have done to the other rows (they
  see only the L2 gradient ``reg W1``) is applied when they are next touched,
  and to every row at the end of the epoch, so the ``W1`` returned is complete:

  * SGD, with or without (Nesterov) momentum, any ``alpha``: exact. An untouched
    row's ``(w, v)`` pair moves by a per-step linear map, elementwise:
    ``[w; v] <- [[1 - a, mu], [-a, mu]] [w; v]`` (Nesterov:
    ``[[1 - a (1 + mu), mu^2], [-a, mu]]``) with ``a = lr * alpha / sum(sw_batch)``;
    a row untouched for k steps moves by the product of their k maps (for plain
    SGD the product is a scale factor, ``prod(1 - a)``, as scikit-learn's
    ``WeightVector`` keeps; with ``alpha = 0`` and momentum it is the geometric
    series of the velocity). The maps of an epoch are known at its start and kept
    in a segment tree (:func:`fastmlp.kernels_sparse.build_map_tree`), so any
    range's product costs O(log steps). The result equals the exact mode's to
    float rounding.
  * Adam: **LazyAdam** (TensorFlow Addons ``LazyAdam``, PyTorch ``SparseAdam``):
    the touched rows take Adam's step with their gradient (``reg W1`` included)
    and the global step's bias correction; untouched rows, and their moments,
    are left as they are (the moments are not decayed, and the L2 term reaches a
    row only when it is touched). No closed form exists for what dense Adam does
    to an untouched row (its step depends on ``eps`` and ``sqrt(v)`` elementwise),
    and this is the best-known approximation: nothing to catch up.

  The loss reported by a lazy epoch takes its L2 penalty from ``W1`` as stored
  (rows as of their last update): for Adam that is ``W1`` itself, for SGD a
  row not yet caught up counts with its older value.

Nothing here is of size (n, D) or (B, D): the workspace holds the (D, H)
gradient (zero outside the touched rows), per-feature markers and lists, and the
dense (B, H) and (B, C) buffers of the graph after ``H1``.
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import _jit, _sparse
from . import kernels as K
from . import kernels_sparse as KS
from ._blas import blas_threads, counts_matter
from ._jit import specialize
from .solvers import (
    ADAM,
    OUTPUT_CODES,
    SGD,
    _batch_weights,
    _epoch_order,
    _l2_terms,
    _output_block,
    _output_loss,
    _step_size,
    _sum_squares,
    _update,
)


class SparseWorkspace:
    """Every buffer a sparse epoch needs, allocated once per fit.

    ``buffers`` is the tuple handed to compiled code:
    ``(Yb, swb, H1, H2, Z, dZ, dH1, gW1, gb1, gW2, gb2, W2t, order, marker, touched)``;
    ``lazy_buffers`` holds ``(last, rowsq, delta, tree)`` (empty arrays unless
    ``lazy=True``), ``group_buffers`` ``(slot, start, ent_row, ent_val, grow)``,
    a batch's entries grouped by feature (:func:`fastmlp.kernels_sparse.group_by_feature`;
    the entry buffers sized by :meth:`reserve_entries`). ``gW1`` (D, H) holds a
    lazy batch's touched rows and L-BFGS's full gradient; the exact epoch never
    writes it (its update builds each touched row of ``dW1`` in ``grow``).
    """

    def __init__(
        self, n_samples, n_features, n_hidden, n_outputs, batch_size, dtype, *,
        full_batch=False, lazy=False,
    ):
        dtype = np.dtype(dtype)
        n, D, H, C = n_samples, n_features, n_hidden, n_outputs
        B = n if full_batch else min(batch_size, n)
        self.batch_size = B
        self.dtype = dtype
        self.full_batch = full_batch
        self.lazy = lazy
        G = 0 if full_batch else B  # a full batch reads Y and sw in place
        self.buffers = (
            np.empty((G, C), dtype),  # Yb   (B, C)
            np.empty(G, dtype),  # swb  (B,)
            np.empty((B, H), dtype),  # H1   (B, H) pre-activation
            np.empty((B, H), dtype),  # H2   (B, H) activation
            np.empty((B, C), dtype),  # Z    (B, C) logits, then P in place
            np.empty((B, C), dtype),  # dZ   (B, C)
            np.empty((B, H), dtype),  # dH1  (B, H)
            np.zeros((D, H), dtype),  # gW1  (D, H), zero outside the touched rows
            np.empty(H, dtype),  # gb1  (H,)
            np.empty((H, C), dtype),  # gW2  (H, C)
            np.empty(C, dtype),  # gb2  (C,)
            np.empty((C, H), dtype),  # W2t  (C, H)
            np.arange(n, dtype=np.int64),  # order (n,)
            np.zeros(D, np.uint8),  # marker (D,), all zero between batches
            np.empty(D, np.int64),  # touched (D,): a batch's distinct features
        )
        n_steps = -(-n // B) if lazy and n else 0
        size = 1
        while size < n_steps:
            size *= 2
        self.tree_size = size
        L = D if lazy else 0
        self.lazy_buffers = (
            np.zeros(L, np.int64),  # last  (D,): steps of the epoch applied to each row
            np.zeros(L, np.float64),  # rowsq (D,): each row's sum of squares
            np.empty(L, np.float64),  # delta (D,): scratch of the row kernels
            np.empty((2 * size if lazy else 0, 4), np.float64),  # tree: per-step 2x2 maps
        )
        # the batch's entries grouped by feature (kernels_sparse.group_by_feature);
        # the entry buffers are sized by reserve_entries for the largest batch
        self.group_buffers = (
            np.empty(D, np.int64),  # slot (D,): a touched feature's group
            np.empty(D + 1, np.int64),  # start (D + 1,): the groups' offsets
            np.empty(0, np.int64),  # ent_row (E,): each entry's batch row
            np.empty(0, dtype),  # ent_val (E,): each entry's value
            np.empty(H, dtype),  # grow (H,): one row of dW1 (the exact update)
        )
        self._entries_for = None  # (indptr, E) of the last reservation

    def reserve_entries(self, indptr):
        """Size the entry buffers for the largest batch of CSR rows ``indptr`` can make.

        A batch of B rows holds at most the B largest row lengths: that sum, found
        once per CSR (an O(n) partition), never per batch. Reallocates only when
        the buffers are too small.
        """
        last = self._entries_for
        if last is not None and last[0] is indptr:
            return
        lengths = np.diff(indptr)
        n, B = lengths.shape[0], self.batch_size
        E = int(lengths.sum()) if n <= B else int(np.partition(lengths, n - B)[n - B:].sum())
        slot, start, ent_row, ent_val, grow = self.group_buffers
        if ent_row.shape[0] < E:
            ent_row = np.empty(E, np.int64)
            ent_val = np.empty(E, self.dtype)
            self.group_buffers = (slot, start, ent_row, ent_val, grow)
        self._entries_for = (indptr, E)

    def shares(self, n_shares):
        """Scratch of the exact update split over W1's rows: ``(grows (T, H), sqs (T,))``."""
        cache = self.__dict__.setdefault("_shares", {})
        if n_shares not in cache:
            H = self.buffers[2].shape[1]
            cache[n_shares] = (np.empty((n_shares, H), self.dtype), np.empty(n_shares))
        return cache[n_shares]

    def fits(self, n_samples, n_features, n_hidden, n_outputs, batch_size, dtype, lazy=False):
        """Whether this workspace can serve a problem of these sizes."""
        B = n_samples if self.full_batch else min(batch_size, n_samples)
        gW1 = self.buffers[7]
        return (
            np.dtype(dtype) == self.dtype
            and self.batch_size == B
            and gW1.shape == (n_features, n_hidden)
            and self.buffers[4].shape[1] == n_outputs
            and self.buffers[12].shape[0] == n_samples
            and (self.lazy or not lazy)
        )


# ------------------------------------------------------------ forward and backward
# Constants of the compiled paths (see solvers.py): PARALLEL (the prange
# kernels, or their serial twins) and LAZY (the lazy W1 update, or the exact
# one). Each (PARALLEL, LAZY) pair is compiled as its own copy (_PATHS), so a
# fit compiles only the kernels its path runs. The two small dense products
# (H2 W2 and H2ᵀ dZ, B x H x C) always go through BLAS, on the calling thread.
PARALLEL = False
LAZY = False


def _forward_sparse(data, indices, indptr, rows, W1, b1, W2, b2, activation, H1, H2, Z):
    """Z = act(X[rows] W1 + b1) W2 + b2, keeping H1 and H2 for the backward pass."""
    if PARALLEL:
        KS.sparse_linear_forward(data, indices, indptr, rows, W1, b1, H1)  # (m, H)
        K.activation_forward(H1, activation, H2)
    else:
        KS.sparse_linear_forward_serial(data, indices, indptr, rows, W1, b1, H1)
        K.activation_forward_serial(H1, activation, H2)
    K.linear_forward_blas(H2, W2, b2, Z)  # (m, C)


def _loss_and_grads_sparse(
    data, indices, indptr, rows, Y, sw, scale, W1, b1, W2, b2, alpha, activation, output, ws,
    count, fold_l2, dense_grad, chunks, gb,
):
    """Forward, loss and every parameter gradient of one batch into ``ws``.

    The batch is CSR rows ``rows`` (length 0: the CSR's rows in order); ``Y``
    and ``sw`` are its rows already. With ``dense_grad`` the whole ``gW1 =
    Xᵀ dH1 + reg W1`` is written (full batch, L-BFGS); otherwise ``gW1`` is not
    written at all: the epoch's updates build each touched row of it from
    ``dH1`` and the entries grouped by feature (``gb``) just before its step
    (:func:`KS.sgd_update_exact`, :func:`KS.update_touched_shares`, ...).
    ``fold_l2`` as in :func:`fastmlp.solvers._loss_and_grads`; ``chunks`` is the parallel
    ``dW1`` kernel's column split (the thread count). Returns the batch loss.
    """
    Yb, swb, H1a, H2a, Za, dZa, dH1a, gW1, gb1, gW2, gb2, W2t, order, marker, touched = ws
    m = Y.shape[0]
    H1 = H1a[:m]
    H2 = H2a[:m]
    Z = Za[:m]
    dZ = dZa[:m]
    dH1 = dH1a[:m]
    _forward_sparse(data, indices, indptr, rows, W1, b1, W2, b2, activation, H1, H2, Z)
    # The loss kernels overwrite Z with P; serial, as in the dense epoch. Every
    # output code of the dense solvers (softmax, logistic, identity, exp).
    loss = _output_loss(Z, Y, sw, scale, output, dZ)
    reg, penalty = _l2_terms(W1, W2, alpha, scale, fold_l2)
    loss += penalty
    # dZ -> db2, dW2 = H2ᵀ dZ + reg W2, dH1 = (dZ W2ᵀ) * act'(H1) and db1 fused
    K.bias_grad_serial(dZ, gb2)
    K.weight_grad_blas(H2, dZ, W2, reg, gW2)
    K.transpose_serial(W2, order[:0], W2t)  # (C, H)
    K.hidden_backward_bias_t(dZ, W2t, H1, H2, activation, dH1, gb1)  # (m, H), (H,)
    if dense_grad:
        if PARALLEL:
            KS.sparse_weight_grad_dense(data, indices, indptr, rows, dH1, W1, reg, chunks,
                                        gW1)
        else:
            KS.sparse_weight_grad_dense_serial(data, indices, indptr, rows, dH1, W1, reg, 1,
                                               gW1)
    return loss


def _sgd_map(a, momentum, nesterov, out):
    """Write the map of one SGD step on an untouched (w, v) pair (gradient ``(a / lr) w``).

    With ``g = reg w`` and ``a = lr reg``: ``v' = mu v - a w``, then ``w' = w + v'``
    (``[[1 - a, mu], [-a, mu]]``) or, with Nesterov, ``w' = w + mu v' - a w``
    (``[[1 - a (1 + mu), mu^2], [-a, mu]]``): kernels.sgd_update's rule at ``g = 0``.
    """
    if nesterov:
        out[0] = 1.0 - a * (1.0 + momentum)
        out[1] = momentum * momentum
    else:
        out[0] = 1.0 - a
        out[1] = momentum
    out[2] = -a
    out[3] = momentum


def _lazy_sgd_maps(sw, order, n, batch_size, learning_rate, momentum, nesterov, alpha, tree,
                   size):
    """Fill the segment tree with the maps of the epoch's steps (known from the batch weights)."""
    n_steps = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        wsum = 0.0
        for r in range(start, stop):
            wsum += sw[order[r]]
        scale = 1.0 / wsum if wsum > 0 else 0.0
        a = float(learning_rate) * float(alpha) * scale
        _sgd_map(a, float(momentum), nesterov, tree[size + n_steps])
        n_steps += 1
    KS.build_map_tree(tree, size, n_steps)
    return n_steps


def _epoch_sparse(
    data, indices, indptr, Y, sw, params, state, ws, lz, gb, tree_size, batch_size, seed,
    do_shuffle, optimizer, learning_rate, momentum, nesterov, beta_1, beta_2, epsilon, step,
    alpha, activation, output, chunks, shares,
):
    W1, b1, W2, b2 = params
    Yb, swb, _, _, _, _, dH1a, gW1, gb1, gW2, gb2, _, order, marker, touched = ws
    last, rowsq, delta, tree = lz
    slot, gstart, ent_row, ent_val, grow = gb  # (start is the batch loop's)
    n = Y.shape[0]
    D = W1.shape[0]
    _epoch_order(order, seed, do_shuffle)
    lazy_sgd = LAZY and optimizer == SGD
    n_steps = 0
    sqW1 = 0.0
    if LAZY:
        if lazy_sgd:
            n_steps = _lazy_sgd_maps(sw, order, n, batch_size, learning_rate, momentum,
                                     nesterov, alpha, tree, tree_size)
            for j in range(D):
                last[j] = 0  # every row is current at the start of the epoch
        sqW1 = KS.row_squares(W1, rowsq)
    # |W1|^2 + |W2|^2 for the L2 penalty, carried from batch to batch by the
    # updates' return values (as in the dense epoch)
    sq = 0.0
    if alpha != 0 and not LAZY:
        sq = _sum_squares(W1) + _sum_squares(W2)
    sqW2 = _sum_squares(W2) if LAZY else 0.0
    total = 0.0
    te = 0  # the step's index within the epoch
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        m = stop - start
        rows = order[start:stop]
        for r in range(m):
            Yb[r, :] = Y[rows[r], :]
        wsum, scale = _batch_weights(sw, rows, swb)
        Ym = Yb[:m]
        swm = swb[:m]
        step += 1
        step_size = _step_size(optimizer, learning_rate, beta_1, beta_2, step)
        hyper = (learning_rate, momentum, nesterov, step_size, beta_1, beta_2, epsilon)
        count = KS.group_by_feature(data, indices, indptr, rows, marker, slot, touched, gstart,
                                    ent_row, ent_val)
        if lazy_sgd:  # the rows this batch reads: bring them to this step first
            if PARALLEL:
                sqW1 += KS.linear2_catch_up(W1, state[0], touched, count, last, te, tree,
                                            tree_size, rowsq, delta)
            else:
                sqW1 += KS.linear2_catch_up_serial(W1, state[0], touched, count, last, te,
                                                   tree, tree_size, rowsq, delta)
        loss = _loss_and_grads_sparse(
            data, indices, indptr, rows, Ym, swm, scale, W1, b1, W2, b2, alpha, activation,
            output, ws, count, True, False, chunks, gb,
        )
        if LAZY:
            sq = sqW1 + sqW2
        if alpha != 0:  # scikit-learn's L2 penalty of this batch
            loss += 0.5 * alpha * scale * sq
        reg = alpha * scale
        if LAZY and PARALLEL:
            # the touched rows in shares, one per thread, each row's Xᵀ dH1 built
            # just before its step (no gW1 to write, read and clear)
            sqW1 += KS.update_touched_shares(optimizer == ADAM, W1, state[0], state[4], touched,
                                             count, gstart, ent_row, ent_val, dH1a[:m],
                                             shares[0], shares[1], hyper, reg, rowsq)
        elif LAZY:
            # each touched row's Xᵀ dH1 built just before its step: no gW1 at all
            dH1 = dH1a[:m]
            if optimizer == SGD:
                sqW1 += KS.sgd_update_touched(W1, state[0], touched, count, gstart, ent_row,
                                              ent_val, dH1, grow, learning_rate, momentum,
                                              nesterov, reg, rowsq)
            else:
                sqW1 += KS.adam_update_touched(W1, state[0], state[4], touched, count, gstart,
                                               ent_row, ent_val, dH1, grow, step_size, beta_1,
                                               beta_2, epsilon, reg, rowsq)
        if LAZY:
            if optimizer == SGD:
                for t in range(count):
                    last[touched[t]] = te + 1
            sqW2 = _update(optimizer, W2, gW2, state[2], state[6], hyper, reg)
        else:
            # exact: every row of W1 steps, the untouched ones with gradient reg W1;
            # the touched rows' Xᵀ dH1 is built row by row inside the update
            dH1 = dH1a[:m]
            if PARALLEL:  # W1's rows in shares, one per thread
                sq = KS.update_exact_shares(optimizer == ADAM, W1, state[0], state[4], touched,
                                            count, gstart, ent_row, ent_val, dH1, shares[0],
                                            shares[1], hyper, reg)
            elif optimizer == SGD:
                sq = KS.sgd_update_exact(W1, state[0], touched, count, gstart, ent_row, ent_val,
                                         dH1, grow, learning_rate, momentum, nesterov, reg)
            else:
                sq = KS.adam_update_exact(W1, state[0], state[4], touched, count, gstart,
                                          ent_row, ent_val, dH1, grow, step_size, beta_1,
                                          beta_2, epsilon, reg)
            sq += _update(optimizer, W2, gW2, state[2], state[6], hyper, reg)
        _update(optimizer, b1, gb1, state[1], state[5], hyper, reg * 0)  # biases: no L2
        _update(optimizer, b2, gb2, state[3], state[7], hyper, reg * 0)
        total += loss * wsum
        te += 1
    if lazy_sgd:  # end of the epoch: every row caught up, so W1 is complete
        if PARALLEL:
            KS.linear2_catch_up(W1, state[0], touched[:0], D, last, n_steps, tree, tree_size,
                                rowsq, delta)
        else:
            KS.linear2_catch_up_serial(W1, state[0], touched[:0], D, last, n_steps, tree,
                                       tree_size, rowsq, delta)
    return total, step


def _forward_proba_sparse(data, indices, indptr, W1, b1, W2, b2, activation, output, block,
                          argmax):
    """Return ``(P, labels)`` as :func:`fastmlp.solvers._forward_proba`, for CSR rows.

    Blocks of ``block`` rows read ``indptr[start:stop + 1]`` (offsets into the
    full ``data`` and ``indices``); buffers are allocated once, none per block.
    """
    n = indptr.shape[0] - 1
    C = W2.shape[1]
    B = max(1, min(block, n))
    H1 = np.empty((B, W1.shape[1]), W1.dtype)
    H2 = np.empty_like(H1)
    out = np.empty((B if argmax else n, C), W1.dtype)
    labels = np.empty(n if argmax else 0, np.int64)
    in_order = labels[:0]
    for start in range(0, n, B):
        stop = min(start + B, n)
        m = stop - start
        Zm = out[:m] if argmax else out[start:stop]
        _forward_sparse(data, indices, indptr[start:stop + 1], in_order, W1, b1, W2, b2,
                        activation, H1[:m], H2[:m], Zm)
        _output_block(Zm, output, argmax, labels[start:stop])  # labels, or P in place
    if argmax:
        return out[:0], labels
    return out, labels


# ------------------------------------------------------------------ Python entry points
def _check_arrays(data, indices, indptr, n_samples, params, check_input):
    W1 = params[0]
    if data.dtype != W1.dtype:
        raise ValueError(f"X's data is {data.dtype}, the weights {W1.dtype}")
    if indices.dtype != indptr.dtype or indptr.dtype not in (np.int32, np.int64):
        raise ValueError(
            f"X's indices and indptr must both be int32 or int64, got {indices.dtype} and "
            f"{indptr.dtype}"
        )
    if not all(a.ndim == 1 and a.flags.c_contiguous for a in (data, indices, indptr)):
        raise ValueError("X's data, indices and indptr must be 1-D C-contiguous arrays")
    if indptr.shape[0] != n_samples + 1:
        raise ValueError(f"X has {indptr.shape[0] - 1} rows (indptr), Y {n_samples}")
    if check_input:
        _sparse.check_csr_arrays(data, indices, indptr, W1.shape[0])
    elif not (int(indptr[-1]) <= indices.shape[0] == data.shape[0]):
        raise ValueError("X is a malformed sparse matrix: indptr, indices and data disagree")


@contextlib.contextmanager
def _compiled_call(parallel, lazy, n_blas, work, n_shares=1):
    """Enter what a compiled call needs and yield its path, as ``solvers._compiled_call``.

    The BLAS count is held only when the largest dense product (``work``
    multiply-adds) is large enough for it to change the rounding; a parallel
    path runs its regions on ``n_shares`` threads (:func:`fastmlp._jit.parallel_threads`).
    """
    with contextlib.ExitStack() as stack:
        if counts_matter(work):
            stack.enter_context(blas_threads(n_blas))
        if parallel:
            stack.enter_context(_jit.parallel_threads(n_shares))
        yield path(parallel, lazy)


# Multiply-adds and row updates of one batch (rows * nnz per row * H for the
# sparse products, plus D * H for the exact update of W1) below which a second
# thread costs more than it saves: such batches run on the calling thread.
PARALLEL_MIN_WORK = 1 << 20


def kernel_options(n_rows, nnz_per_row, n_hidden, n_outputs=1, *, n_features=0,
                   n_threads=None):
    """Kernel options of a sparse epoch's (or prediction's) batches of ``n_rows``.

    The sparse twin of :func:`fastmlp.solvers.kernel_options`, from the shapes
    and ``n_threads`` alone (the same data and seed give the same weights
    however busy the machine is). A batch with enough work (the sparse
    products, ``n_rows * nnz_per_row * n_hidden`` multiply-adds, and the exact
    update's ``n_features * n_hidden``) runs its kernels on ``n_threads``
    threads (``None``: every core): the forward product by batch rows, ``dW1``
    and the lazy updates by touched feature, the exact update by ranges of
    W1's rows. The dense products after ``H1`` stay one BLAS call on one
    thread (``n_rows x n_hidden x n_outputs``, small).
    """
    T = _jit.thread_count(n_threads)
    work = n_rows * nnz_per_row * n_hidden + n_features * n_hidden
    n_shares = T if work >= PARALLEL_MIN_WORK else 1
    return {"parallel": n_shares > 1, "blas_threads": 1, "n_shares": n_shares}


def _check_workspace(workspace, n, params, lazy):
    D, H = params[0].shape
    C = params[2].shape[1]
    if not workspace.fits(n, D, H, C, workspace.batch_size, params[0].dtype, lazy):
        raise ValueError(
            f"workspace was made for {workspace.buffers[12].shape[0]} samples with "
            f"(D, H)={workspace.buffers[7].shape}, C={workspace.buffers[4].shape[1]}, "
            f"{workspace.dtype}, lazy={workspace.lazy}; got {n} samples with D={D}, H={H}, "
            f"C={C}, {params[0].dtype}, lazy={lazy}"
        )


def run_epoch_sparse(
    data,
    indices,
    indptr,
    Y,
    sample_weight,
    params,
    state,
    workspace,
    *,
    optimizer="sgd",
    learning_rate=0.001,
    momentum=0.0,
    nesterov=False,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-8,
    step=0,
    alpha=0.0,
    activation="relu",
    output="softmax",
    shuffle=True,
    seed=0,
    use_blas=True,
    parallel=False,
    blas_threads=None,
    n_shares=1,
    lazy=False,
    check_input=True,
):
    """Run one compiled epoch on CSR ``X``, updating ``params`` and ``state`` in place.

    The keywords are those of :func:`fastmlp.solvers.run_epoch`, with the same
    meaning and the same batches for a seed, plus ``lazy`` (the lazy update of
    ``W1``, see the module's docstring) and ``check_input``. ``use_blas`` has no
    effect (the sparse products are Numba loops; the two small dense ones always
    BLAS), ``parallel`` picks the threaded kernels, ``blas_threads`` is the BLAS
    thread count held for the call (``None``: the process's own; held only when
    a batch's dense products are large enough for it to matter).

    Parameters
    ----------
    data, indices, indptr : ndarray
        A canonical CSR of X (n_samples, n_features) from
        :func:`fastmlp._sparse.check_csr`, ``data`` in the working dtype.
    Y : ndarray of shape (n_samples, n_outputs)
        Targets in the working dtype.
    sample_weight : ndarray of shape (n_samples,)
        Per-sample weights in the working dtype.
    params : tuple (W1, b1, W2, b2)
        Updated in place.
    state : tuple of 8 arrays
        From :func:`fastmlp.solvers.init_optimizer_state`; updated in place.
    workspace : SparseWorkspace
        Made for this problem's sizes (with ``lazy=True`` for a lazy epoch).
    lazy : bool, default=False
        Update only the rows of ``W1`` a batch touches (exact catch-up for SGD,
        LazyAdam for Adam).
    check_input : bool, default=True
        Validate the CSR arrays (an O(nnz) pass in NumPy); pass False only for
        arrays :func:`fastmlp._sparse.check_csr` returned.

    Returns
    -------
    mean_loss : float
        The epoch's loss, each batch's weighted by its total sample weight.
    step : int
        ``step`` plus the number of batches.
    """
    n = Y.shape[0]
    _check_arrays(data, indices, indptr, n, params, check_input)
    _check_workspace(workspace, n, params, lazy)
    if workspace.full_batch:
        raise ValueError("run_epoch_sparse needs a workspace made with full_batch=False")
    workspace.reserve_entries(indptr)  # once per CSR: the largest batch's entries
    dt = data.dtype.type
    args = (
        data, indices, indptr, Y, sample_weight, params, state, workspace.buffers,
        workspace.lazy_buffers, workspace.group_buffers, workspace.tree_size,
        workspace.batch_size, np.uint64(seed),
        bool(shuffle), ADAM if optimizer == "adam" else SGD, dt(learning_rate), dt(momentum),
        bool(nesterov), dt(beta_1), dt(beta_2), dt(epsilon), int(step), dt(alpha),
        K.ACTIVATION_CODES[activation], OUTPUT_CODES[output], n_shares if parallel else 1,
        workspace.shares(n_shares if parallel else 0),
    )
    work = workspace.batch_size * params[2].size  # B x H x C, the largest dense product
    with _compiled_call(parallel, lazy, blas_threads, work, n_shares) as run:
        total, new_step = run._epoch_sparse(*args)
    weight = float(sample_weight.sum())
    return total / weight if weight > 0 else float("nan"), new_step


def loss_and_grads_sparse(
    data, indices, indptr, Y, sample_weight, params, workspace, *, alpha=0.0,
    activation="relu", output="softmax", parallel=False, blas_threads=None, n_shares=1,
    check_input=True,
):
    """Full-batch loss and gradients ``(loss, (gW1, gb1, gW2, gb2))`` on CSR ``X`` (L-BFGS).

    The workspace must be made with ``full_batch=True``; the returned gradients
    (``gW1`` dense, ``Xᵀ dH1 + (alpha / sum(sw)) W1``) are views into it,
    overwritten by the next call.
    """
    n = Y.shape[0]
    _check_arrays(data, indices, indptr, n, params, check_input)
    _check_workspace(workspace, n, params, False)
    if not workspace.full_batch:
        raise ValueError("loss_and_grads_sparse needs a workspace made with full_batch=True")
    W1, b1, W2, b2 = params
    dt = data.dtype.type
    wsum = float(sample_weight.sum())
    rows = workspace.buffers[12][:0]  # every row, in order
    with _compiled_call(parallel, False, blas_threads, n * W2.size, n_shares) as run:
        loss = run._loss_and_grads_sparse(
            data, indices, indptr, rows, Y, sample_weight, dt(1.0 / wsum), W1, b1, W2, b2,
            dt(alpha), K.ACTIVATION_CODES[activation], OUTPUT_CODES[output], workspace.buffers,
            0, False, True, n_shares if parallel else 1, workspace.group_buffers,
        )
    return loss, workspace.buffers[7:11]


def forward_proba_sparse(
    data, indices, indptr, params, *, activation="relu", output="softmax", block=1024,
    parallel=False, blas_threads=None, n_shares=1, argmax=False,
):
    """Output probabilities (n_samples, n_outputs) of CSR ``X``, in blocks of rows.

    With ``argmax=True``, the index of each row's largest output instead (int64,
    (n_samples,)). The arrays must come from :func:`fastmlp._sparse.check_csr`
    (validated there, so this runs no check of its own beyond the dtypes).
    """
    W1, b1, W2, b2 = params
    n = indptr.shape[0] - 1
    _check_arrays(data, indices, indptr, n, params, False)
    work = min(n, block) * W2.size
    with _compiled_call(parallel and n > 1, False, blas_threads, work, n_shares) as run:
        P, labels = run._forward_proba_sparse(
            data, indices, indptr, W1, b1, W2, b2, K.ACTIVATION_CODES[activation],
            OUTPUT_CODES[output], max(1, int(block)), bool(argmax),
        )
    return labels if argmax else P


# ------------------------------------------------------------ the compiled paths
_PATHS = {
    (parallel, lazy): specialize(
        (_forward_sparse, _loss_and_grads_sparse, _sgd_map, _lazy_sgd_maps, _epoch_sparse,
         _forward_proba_sparse),
        suffix="_sparse" + ("_parallel" if parallel else "_serial") + ("_lazy" if lazy else ""),
        PARALLEL=parallel,
        LAZY=lazy,
    )
    for parallel in (True, False)
    for lazy in (True, False)
}


def path(parallel, lazy=False):
    """Return the compiled functions of one sparse path (``_epoch_sparse``, ...)."""
    return _PATHS[bool(parallel), bool(lazy)]
