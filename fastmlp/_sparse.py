"""Validation and canonicalisation of sparse ``X`` before any compiled code reads it.

The sparse kernels (:mod:`fastmlp.kernels_sparse`) index ``W1`` with a CSR's
``indices`` and walk its ``indptr`` without bounds checks, so every structural
fact they rely on is checked here, in NumPy, on the raw arrays: not through
scipy's own ``check_format``, ``sort_indices`` or ``sum_duplicates``, which
trust ``indptr`` and can read out of bounds (or abort) on a matrix whose arrays
were overwritten after construction. Only once the arrays are known good does
scipy convert or canonicalise them, and then on a private copy: the caller's
object is never modified.

The result is three flat, C-contiguous arrays ``(data, indices, indptr)`` of a
canonical CSR (indices sorted within each row, no duplicates: the duplicates
are summed, as scipy does), ``data`` in the working dtype, ``indices`` and
``indptr`` of one integer dtype (int32 when the caller's are, else int64). No
dense copy of ``X`` is made; when the caller's CSR is already canonical and in
the working dtype the arrays are the caller's own (read, never written).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["CSRArrays", "as_csr", "check_csr", "check_csr_arrays"]


def _index_array(a, what, name):
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(
            f"{name} is a malformed sparse matrix: {what} must be a 1-D integer array, "
            f"got shape {a.shape} and dtype {a.dtype}"
        )
    return a


def _check_compressed(indptr, indices, n_major, n_minor, n_data, name):
    """Raise ``ValueError`` unless ``(indptr, indices)`` describe a valid compressed matrix.

    ``n_major`` rows (CSR; columns for CSC) of ``n_minor`` entries each;
    ``n_data`` stored values.
    """
    indptr = _index_array(indptr, "indptr", name)
    indices = _index_array(indices, "indices", name)
    bad = f"{name} is a malformed sparse matrix:"
    if indptr.shape[0] != n_major + 1:
        raise ValueError(f"{bad} indptr has {indptr.shape[0]} entries, expected {n_major + 1}")
    if indptr[0] != 0:
        raise ValueError(f"{bad} indptr starts at {indptr[0]}, expected 0")
    nnz = indices.shape[0]
    if int(indptr[-1]) != nnz or n_data != nnz:
        raise ValueError(
            f"{bad} indptr ends at {indptr[-1]}, with {nnz} indices and {n_data} values "
            "(all three must agree)"
        )
    if n_major and (np.diff(indptr) < 0).any():
        raise ValueError(f"{bad} indptr is not monotone (a row would end before it starts)")
    if nnz:
        lo, hi = indices.min(), indices.max()
        if lo < 0 or hi >= n_minor:
            raise ValueError(
                f"{bad} indices must lie in [0, {n_minor}), found values from {lo} to {hi}"
            )


def _check_values(data, name):
    data = np.asarray(data)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{name} holds values of dtype {data.dtype}; expected real numbers")
    return data


def _check_finite(data, dtype, name):
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        what = "NaN" if np.isnan(data).any() else f"infinity or a value too large for {dtype!r}"
        raise ValueError(f"Input {name} contains {what}.")


def _is_canonical(indices, indptr):
    """Whether indices are strictly increasing within every row (sorted, no duplicates)."""
    nnz = indices.shape[0]
    if nnz < 2:
        return True
    # A step that does not increase is allowed only where a new row starts.
    not_increasing = np.diff(indices) <= 0  # (nnz - 1,): step from k to k + 1
    starts = indptr[1:-1]
    starts = starts[(starts > 0) & (starts < nnz)]
    not_increasing[starts - 1] = False
    return not not_increasing.any()


def _index_dtype(indices, indptr):
    if indices.dtype == np.int32 and indptr.dtype == np.int32:
        return np.dtype(np.int32)
    return np.dtype(np.int64)


def check_csr_arrays(data, indices, indptr, n_features, *, n_samples=None, name="X"):
    """Validate the three arrays of a CSR matrix with ``n_features`` columns.

    Checks what a kernel indexing with them relies on: ``indptr`` of length
    ``n_samples + 1`` (by default ``n_samples`` is taken from it), starting at 0,
    monotone and ending at ``len(indices) == len(data)``; ``0 <= indices <
    n_features``; real, finite ``data``. Raises ``ValueError`` naming ``name``
    otherwise. Sortedness is not required here (the kernels do not need it).

    Parameters
    ----------
    data, indices, indptr : ndarray
        The CSR arrays.
    n_features : int
        The number of columns.
    n_samples : int, optional
        The number of rows, when known.
    name : str, default="X"
        The name used in error messages.
    """
    indptr = _index_array(indptr, "indptr", name)
    data = _check_values(data, name)
    if data.ndim != 1:
        raise ValueError(f"{name} is a malformed sparse matrix: data must be 1-D")
    n = indptr.shape[0] - 1 if n_samples is None else n_samples
    _check_compressed(indptr, indices, n, n_features, data.shape[0], name)
    _check_finite(data, data.dtype, name)


def _to_csr(X, name):
    """Return a CSR of ``X`` with validated arrays: the caller's object itself when CSR."""
    if not sp.issparse(X):
        raise TypeError(f"{name} must be a scipy sparse matrix or array, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got a sparse array of shape {X.shape}")
    n, D = X.shape
    fmt = X.format
    if fmt == "csr":
        _check_compressed(X.indptr, X.indices, n, D, _check_values(X.data, name).size, name)
        return X
    if fmt == "csc":
        _check_compressed(X.indptr, X.indices, D, n, _check_values(X.data, name).size, name)
    elif fmt == "coo":
        data = _check_values(X.data, name)
        row = _index_array(X.row, "row", name)
        col = _index_array(X.col, "col", name)
        if not (row.shape[0] == col.shape[0] == data.shape[0]):
            raise ValueError(
                f"{name} is a malformed sparse matrix: row, col and data have lengths "
                f"{row.shape[0]}, {col.shape[0]} and {data.shape[0]}"
            )
        for what, idx, bound in (("row", row, n), ("col", col, D)):
            if idx.size and (idx.min() < 0 or idx.max() >= bound):
                raise ValueError(
                    f"{name} is a malformed sparse matrix: {what} indices must lie in "
                    f"[0, {bound}), found values from {idx.min()} to {idx.max()}"
                )
    elif fmt == "bsr":
        R, Cb = X.blocksize
        data = _check_values(X.data, name)
        if data.ndim != 3 or data.shape[1:] != (R, Cb) or n % R or D % Cb:
            raise ValueError(f"{name} is a malformed sparse matrix: bad blocks")
        _check_compressed(X.indptr, X.indices, n // R, D // Cb, data.shape[0], name)
    # dia, lil, dok: converted by NumPy-level code, checked below as any CSR
    csr = X.tocsr()
    _check_compressed(csr.indptr, csr.indices, n, D, _check_values(csr.data, name).size, name)
    return csr


def check_csr(X, dtype, *, name="X", canonical=True):
    """Return ``(data, indices, indptr)`` of a canonical CSR of ``X``, validated.

    Parameters
    ----------
    X : sparse matrix or array of shape (n_samples, n_features)
        Any scipy sparse format (CSR, CSC, COO, BSR, LIL, DOK, DIA), integer,
        boolean or float values.
    dtype : numpy dtype
        The working dtype of ``data`` (float32 or float64).
    name : str, default="X"
        The name used in error messages.
    canonical : bool, default=True
        Sort each row's indices and sum its duplicates (on a copy) when they are
        not already. With False a CSR keeps its stored order and duplicates,
        validated all the same: enough for the forward product, which sums a
        row's entries in any order (duplicates add, as ``X.toarray()`` sums
        them), and it saves prediction the sort (3,944 TF-IDF rows of the man
        pages, 644,000 entries, unsorted as ``TfidfVectorizer`` leaves them:
        25 ms, most of a ``predict_proba``).

    Returns
    -------
    data : ndarray of shape (nnz,)
        The stored values in ``dtype``, duplicates summed (explicit zeros kept;
        with ``canonical=False``, duplicates kept).
    indices : ndarray of shape (nnz,)
        Column indices, sorted within each row (with ``canonical=False``, as
        stored), int32 or int64 (as ``indptr``).
    indptr : ndarray of shape (n_samples + 1,)
        Row ``i``'s entries are ``data[indptr[i]:indptr[i + 1]]``.

    The arrays may be the caller's own when they already are canonical and of
    these dtypes; nothing ever writes to them. Otherwise they are new arrays (the
    caller's matrix is not modified). No dense array is made.

    Raises
    ------
    ValueError
        A malformed matrix (``indptr`` of the wrong length, not starting at 0,
        not monotone or not ending at ``len(indices) == len(data)``; an index
        out of ``[0, n_features)``), non-real values, or NaN or infinity among
        the stored values (after the cast to ``dtype``).
    """
    dtype = np.dtype(dtype)
    csr = _to_csr(X, name)
    data, indices, indptr = csr.data, csr.indices, csr.indptr
    idx_dtype = _index_dtype(indices, indptr)
    if canonical and not _is_canonical(indices, indptr):
        # Canonicalise a private copy (validated above, so scipy's routines are
        # safe on it); sum duplicates in at least the input's precision.
        acc = np.promote_types(data.dtype, dtype) if data.dtype.kind == "f" else (
            np.promote_types(dtype, np.float64) if data.dtype.itemsize > 2 else dtype
        )
        copy = sp.csr_matrix(
            (data.astype(acc, copy=True), indices.astype(idx_dtype, copy=True),
             indptr.astype(idx_dtype, copy=True)),
            shape=csr.shape,
            copy=False,
        )
        copy.sum_duplicates()  # sorts the indices of each row, then sums equal ones
        data, indices, indptr = copy.data, copy.indices, copy.indptr
    with np.errstate(over="ignore"):  # a value too large for dtype: inf, refused below
        data = np.ascontiguousarray(data, dtype=dtype)
    indices = np.ascontiguousarray(indices, dtype=idx_dtype)
    indptr = np.ascontiguousarray(indptr, dtype=idx_dtype)
    _check_finite(data, dtype, name)
    return data, indices, indptr


class CSRArrays:
    """The validated arrays of a canonical CSR, as the estimators hand them to compiled code.

    ``data``, ``indices`` and ``indptr`` come from :func:`check_csr` (read-only
    arrays are copied once here: Numba types them apart, and would compile every
    kernel again). ``shape`` and ``dtype`` read like an array's, so code that
    only asks for those (the validation figures) takes either.
    """

    __slots__ = ("data", "indices", "indptr", "shape")

    def __init__(self, data, indices, indptr, shape):
        self.data = data if data.flags.writeable else data.copy()
        self.indices = indices if indices.flags.writeable else indices.copy()
        self.indptr = indptr if indptr.flags.writeable else indptr.copy()
        self.shape = (int(shape[0]), int(shape[1]))

    @classmethod
    def of(cls, X, dtype, *, name="X", canonical=True):
        """Validate ``X`` (any scipy sparse format) with :func:`check_csr`; wrap its arrays."""
        return cls(*check_csr(X, dtype, name=name, canonical=canonical), X.shape)

    @property
    def dtype(self):
        """The dtype of the stored values (the working dtype)."""
        return self.data.dtype

    @property
    def arrays(self):
        """``(data, indices, indptr)``."""
        return self.data, self.indices, self.indptr

    @property
    def nnz(self):
        """The number of stored entries."""
        return int(self.indptr[-1])

    def matrix(self):
        """Return a ``scipy.sparse.csr_matrix`` on these arrays (no copy of ``data``)."""
        return sp.csr_matrix(self.arrays, shape=self.shape, copy=False)


def as_csr(X, dtype, *, name="X"):
    """``X`` validated by :func:`check_csr`, as a canonical ``csr_matrix`` in ``dtype``.

    What scikit-learn's ``validate_data`` may then see safely: it only reads a
    matrix whose arrays are known good. The caller's object is not modified.
    """
    return CSRArrays.of(X, dtype, name=name).matrix()
