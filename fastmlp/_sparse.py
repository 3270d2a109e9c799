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


_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _index_array(a, what, name):
    """Return ``a`` as a 1-D int32 or int64 array; refuse anything else (``ValueError``).

    Decided on the dtype alone, before any conversion: an unsigned array (whose
    values a ``< 0`` test never catches, and which may not fit int64) or another
    integer width is refused rather than cast, since a cast could wrap. scipy
    itself only ever makes int32 or int64 index arrays.
    """
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype not in _INDEX_DTYPES:
        raise ValueError(
            f"{name} is a malformed sparse matrix: {what} must be a 1-D int32 or int64 "
            f"array, got shape {a.shape} and dtype {a.dtype}"
        )
    return a


def _check_compressed(indptr, indices, n_major, n_minor, n_data, name):
    """Raise ``ValueError`` unless ``(indptr, indices)`` describe a valid compressed matrix.

    ``n_major`` rows (CSR; columns for CSC) of ``n_minor`` entries each;
    ``n_data`` stored values.

    No arithmetic on the stored values (``np.diff`` wraps around near the limits
    of the dtype, so ``[0, 2**63 - 1, -2, 3]`` would pass a ``diff >= 0`` test):
    only comparisons, of neighbours and of every value with ``0`` and ``nnz``.
    """
    indptr = _index_array(indptr, "indptr", name)
    indices = _index_array(indices, "indices", name)
    bad = f"{name} is a malformed sparse matrix:"
    if indptr.shape[0] != n_major + 1:
        raise ValueError(f"{bad} indptr has {indptr.shape[0]} entries, expected {n_major + 1}")
    nnz = indices.shape[0]
    if n_data != nnz:
        raise ValueError(f"{bad} {nnz} indices but {n_data} values (they must agree)")
    if indptr[0] != 0:
        raise ValueError(f"{bad} indptr starts at {indptr[0]}, expected 0")
    if indptr[-1] != nnz:
        raise ValueError(
            f"{bad} indptr ends at {indptr[-1]}, with {nnz} indices and values (they must agree)"
        )
    if ((indptr < 0) | (indptr > nnz)).any():
        raise ValueError(f"{bad} indptr holds values outside [0, {nnz}] (nnz)")
    if (indptr[1:] < indptr[:-1]).any():
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


def _values_1d(data, name):
    data = _check_values(data, name)
    if data.ndim != 1:
        raise ValueError(
            f"{name} is a malformed sparse matrix: data must be 1-D, got shape {data.shape}"
        )
    return data


def _check_coo(row, col, data, n, D, name):
    row = _index_array(row, "row", name)
    col = _index_array(col, "col", name)
    data = _values_1d(data, name)
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
    return row, col, data


def _check_lil(X, n, name):
    """Check the structure scipy's compiled LIL-to-CSR copy trusts.

    ``lil_get_lengths``/``lil_flatten_to_array`` size the output from ``rows``
    and then copy ``data`` into it: a ``data`` list longer than its ``rows`` list,
    or fewer than ``n`` rows, writes or reads past the arrays (heap corruption).
    """
    rows, vals = X.rows, X.data
    bad = f"{name} is a malformed sparse matrix (LIL):"
    for what, a in (("rows", rows), ("data", vals)):
        if not (isinstance(a, np.ndarray) and a.dtype == object and a.shape == (n,)):
            raise ValueError(f"{bad} {what} must be an object array of {n} lists")
    for i, (r, v) in enumerate(zip(rows, vals, strict=True)):
        if type(r) is not list or type(v) is not list or len(r) != len(v):
            raise ValueError(
                f"{bad} row {i} must hold two lists of one length (column indices, values)"
            )


def _dia_to_coo(X, n, D, name):
    """Return the COO arrays of a DIA matrix, made in NumPy (scipy's ``dia_tocsr`` trusts them).

    Explicit zeros are dropped, as scipy's conversions of DIA do.
    """
    data = _check_values(X.data, name)
    offsets = _index_array(X.offsets, "offsets", name)
    if data.ndim != 2 or data.shape[0] != offsets.shape[0]:
        raise ValueError(
            f"{name} is a malformed sparse matrix (DIA): data of shape {data.shape} for "
            f"{offsets.shape[0]} offsets (expected one row of data per offset)"
        )
    L = data.shape[1]
    rows, cols, vals = [], [], []
    for k, o in enumerate(offsets.tolist()):  # Python ints: no wrap-around
        j0, j1 = max(0, o), min(D, L, n + o)  # column j holds entry (j - o, j)
        if j1 > j0:
            j = np.arange(j0, j1, dtype=np.int64)
            v = data[k, j0:j1]
            keep = v != 0
            rows.append(j[keep] - o)
            cols.append(j[keep])
            vals.append(v[keep])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, data.dtype)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def _to_csr(X, name):
    """Return a CSR of ``X`` with validated arrays: the caller's object itself when CSR.

    Every format's raw arrays are checked before scipy's compiled conversions
    (``csr_tocsc``, ``coo_tocsr``, ``bsr_tocsr``, the LIL copy) read them: those
    trust their input, and crash the process on arrays overwritten after
    construction. DIA is converted in NumPy; DOK (a dict of coordinates) through
    scipy's COO constructor, which checks them.
    """
    if not sp.issparse(X):
        raise TypeError(f"{name} must be a scipy sparse matrix or array, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got a sparse array of shape {X.shape}")
    n, D = (int(d) for d in X.shape)
    fmt = X.format
    if fmt == "csr":
        _check_compressed(X.indptr, X.indices, n, D, _values_1d(X.data, name).size, name)
        return X
    if fmt == "csc":
        _check_compressed(X.indptr, X.indices, D, n, _values_1d(X.data, name).size, name)
        csr = X.tocsr()
    elif fmt == "coo":
        _check_coo(X.row, X.col, X.data, n, D, name)
        csr = X.tocsr()
    elif fmt == "bsr":
        data = _check_values(X.data, name)
        if data.ndim != 3 or 0 in data.shape[1:] or n % data.shape[1] or D % data.shape[2]:
            raise ValueError(
                f"{name} is a malformed sparse matrix (BSR): blocks of shape {data.shape[1:]} "
                f"do not tile a {n} x {D} matrix"
            )
        R, Cb = data.shape[1:]
        _check_compressed(X.indptr, X.indices, n // R, D // Cb, data.shape[0], name)
        csr = X.tocsr()
    elif fmt == "lil":
        _check_lil(X, n, name)
        csr = X.tocsr()
    elif fmt == "dia":
        row, col, data = _check_coo(*_dia_to_coo(X, n, D, name), n, D, name)
        csr = sp.csr_matrix(sp.coo_matrix((data, (row, col)), shape=(n, D)))
    elif fmt == "dok":
        try:
            csr = X.tocsr()  # the COO constructor checks the coordinates
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            raise ValueError(f"{name} is a malformed sparse matrix (DOK): {exc}") from None
    else:
        raise ValueError(f"{name}: sparse format {fmt!r} is not supported")
    # checked again as the CSR the kernels will read
    _check_compressed(csr.indptr, csr.indices, n, D, _values_1d(csr.data, name).size, name)
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
