"""See backpropagation node by node: :func:`forward_backward`.

For a learner: every node of the forward pass and every gradient of the
backward pass of ``X W1 + b1 -> ReLU -> W2 + b2 -> softmax -> cross-entropy``,
computed by the Numba kernels (``backend="numba"``) or by the plain NumPy
reference (``backend="numpy"``). ``docs/backprop.md`` derives each formula.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import scipy.sparse as sp

from . import _sparse, reference
from . import kernels as K
from . import kernels_sparse as KS

NODES = ("H0", "H1", "H2", "H3", "Z", "P")
GRADIENTS = ("dZ", "dH3", "db2", "dW2", "dH2", "dH1", "dH0", "db1", "dW1", "dX")
BACKENDS = ("numba", "numpy")
INPUTS = ("X", "Y", "W1", "b1", "W2", "b2")

# The graph of docs/backprop.md, as data: the symbolic shape of every input and
# node (a gradient ``dA`` has the shape of ``A``) and the formula of every node
# and gradient, in the names above. docs/draw_graph.py draws the picture from
# these, and :func:`hand_example_text` prints them next to the numbers.
SHAPES = {
    "X": ("n", "D"), "Y": ("n", "C"), "W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"),
    "b2": ("C",), "H0": ("n", "H"), "H1": ("n", "H"), "H2": ("n", "H"), "H3": ("n", "C"),
    "Z": ("n", "C"), "P": ("n", "C"),
}
SHAPES.update({g: SHAPES[g[1:]] for g in GRADIENTS})
FORMULAS = {
    "H0": "X W1",
    "H1": "H0 + b1",
    "H2": "max(0, H1)",
    "H3": "H2 W2",
    "Z": "H3 + b2",
    "P": "softmax(Z)",
    "dZ": "(P - Y) / n",
    "dH3": "dZ",
    "db2": "1^T dZ",
    "dW2": "H2^T dH3 + (alpha/n) W2",
    "dH2": "dH3 W2^T",
    "dH1": "dH2 * 1[H1 > 0]",
    "dH0": "dH1",
    "db1": "1^T dH1",
    "dW1": "X^T dH0 + (alpha/n) W1",
    "dX": "dH0 W1^T",
}


class BackpropResult(Mapping):
    """The loss, the nodes and the gradients of one forward and backward pass.

    Every value is reachable as an attribute (``result.dW1``) and by key
    (``result["dW1"]``); iterating gives the names in graph order:
    ``loss``, the nodes ``H0 H1 H2 H3 Z P``, then the gradients
    ``dZ dH3 db2 dW2 dH2 dH1 dH0 db1 dW1 dX``.

    ``dH3`` is ``dZ`` and ``dH0`` is ``dH1``, the same arrays: the nodes
    ``Z = H3 + b2`` and ``H1 = H0 + b1`` pass the gradient through unchanged,
    so nothing is computed for them.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict):
        object.__setattr__(self, "_values", dict(values))

    def __getitem__(self, name: str):
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(("loss",) + NODES + GRADIENTS)

    def __len__(self) -> int:
        return 1 + len(NODES) + len(GRADIENTS)

    def __getattr__(self, name: str):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("BackpropResult is read-only")

    def __dir__(self):
        return list(self) + ["keys", "items", "values", "get"]

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{k}{tuple(v.shape)}" for k, v in self._values.items() if k != "loss"
        )
        return f"BackpropResult(loss={self._values['loss']:.6g}, {shapes})"


def _as_float_array(value, name, ndim, dtype=None):
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - numpy's own message is clear
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == bool):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def _check_inputs(X, y, W1, b1, W2, b2, sample_weight):
    """Validate shapes and values; return fresh C-contiguous copies in one float dtype."""
    sparse_X = sp.issparse(X)
    arrays = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    if not sparse_X:
        arrays = {"X": X, **arrays}
    dims = {"X": 2, "W1": 2, "b1": 1, "W2": 2, "b2": 1}
    checked = {k: _as_float_array(v, k, dims[k]) for k, v in arrays.items()}
    # float32 only when every floating input is float32; otherwise float64
    floats = [a.dtype for a in checked.values() if np.issubdtype(a.dtype, np.floating)]
    if sparse_X and X.dtype.kind == "f":
        floats.append(X.dtype)
    dtype = np.float32 if floats and all(d == np.float32 for d in floats) else np.float64
    # np.array(..., copy=True) so the caller's arrays are never the ones written to
    W1, b1, W2, b2 = (np.array(checked[k], dtype=dtype, order="C") for k in arrays if k != "X")
    if sparse_X:
        # every raw array checked before a kernel reads it; a canonical CSR in dtype
        # (the caller's matrix is not modified; no dense copy)
        X = _sparse.CSRArrays.of(X, dtype)
    else:
        X = np.array(checked["X"], dtype=dtype, order="C")
    n, D = X.shape
    if n == 0 or D == 0:
        raise ValueError(f"X must have at least one row and one column, got shape {X.shape}")
    if W1.shape[0] != D:
        raise ValueError(f"W1 must have shape (n_features={D}, n_hidden), got {W1.shape}")
    H = W1.shape[1]
    if H == 0:
        raise ValueError("W1 must have at least one column (hidden unit)")
    if b1.shape != (H,):
        raise ValueError(f"b1 must have shape ({H},) to match W1 {W1.shape}, got {b1.shape}")
    if W2.shape[0] != H:
        raise ValueError(f"W2 must have shape (n_hidden={H}, n_classes), got {W2.shape}")
    C = W2.shape[1]
    if C < 2:
        raise ValueError(f"W2 must have at least 2 columns (classes), got {W2.shape}")
    if b2.shape != (C,):
        raise ValueError(f"b2 must have shape ({C},) to match W2 {W2.shape}, got {b2.shape}")

    y_arr = np.asarray(y)
    if y_arr.ndim == 1:
        if y_arr.shape[0] != n:
            raise ValueError(f"y has {y_arr.shape[0]} labels but X has {n} rows")
        if not (np.issubdtype(y_arr.dtype, np.integer) or np.issubdtype(y_arr.dtype, np.floating)):
            raise ValueError(f"y must hold integer class indices, got dtype {y_arr.dtype}")
        if np.issubdtype(y_arr.dtype, np.floating):
            if not np.all(np.isfinite(y_arr)):
                raise ValueError("y contains NaN or infinity")
            if not np.all(y_arr == np.round(y_arr)):
                raise ValueError("y must hold integer class indices 0..C-1, got fractions")
        bad = (y_arr < 0) | (y_arr >= C)
        if np.any(bad):
            raise ValueError(
                f"y must hold class indices in 0..{C - 1} (W2 has {C} columns); "
                f"got {y_arr[bad][0]!r}"
            )
        Y = np.zeros((n, C), dtype=dtype)
        Y[np.arange(n), y_arr.astype(np.int64)] = 1
    elif y_arr.ndim == 2:
        Y = np.array(_as_float_array(y_arr, "y", 2), dtype=dtype, order="C")
        if Y.shape != (n, C):
            raise ValueError(f"y as a target matrix must have shape ({n}, {C}), got {Y.shape}")
        if np.any(Y < 0):
            raise ValueError("y as a target matrix must be non-negative (probabilities)")
        if not np.allclose(Y.sum(axis=1), 1, atol=1e-4 if dtype == np.float32 else 1e-10):
            raise ValueError("each row of the target matrix y must sum to 1")
    else:
        raise ValueError(
            f"y must be class indices (n,) or a target matrix (n, C), got {y_arr.shape}"
        )

    if sample_weight is None:
        sw = np.ones(n, dtype=dtype)
    else:
        sw = np.array(_as_float_array(sample_weight, "sample_weight", 1), dtype=dtype)
        if sw.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},), got {sw.shape}")
        if np.any(sw < 0) or sw.sum() <= 0:
            raise ValueError("sample_weight must be non-negative with a positive sum")
    return X, Y, W1, b1, W2, b2, sw


def forward_backward(
    X,
    y,
    W1,
    b1,
    W2,
    b2,
    *,
    alpha: float = 0.0,
    sample_weight=None,
    activation: str = "relu",
    backend: str = "numba",
    blas: bool = False,
) -> BackpropResult:
    """Run one forward and backward pass and return every node and gradient.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Input rows. A sparse matrix (any scipy format) stays sparse: it is
        checked and made a canonical CSR, ``H0`` and ``dW1`` come from the
        sparse kernels (the NumPy backend uses scipy's products); ``dX``, the
        gradient of every entry of ``X``, is still a dense (n, D) array.
    y : array-like of shape (n_samples,) or (n_samples, n_classes)
        Class indices ``0..n_classes-1``, or a target matrix whose rows are
        one-hot or probabilities.
    W1 : array-like of shape (n_features, n_hidden)
        First layer weights.
    b1 : array-like of shape (n_hidden,)
        First layer bias.
    W2 : array-like of shape (n_hidden, n_classes)
        Second layer weights.
    b2 : array-like of shape (n_classes,)
        Second layer bias.
    alpha : float, default=0.0
        L2 penalty: the loss gains ``alpha / (2 n) (|W1|^2 + |W2|^2)``.
    sample_weight : array-like of shape (n_samples,), default=None
        Per-sample weights; ``n`` above becomes their sum.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Hidden activation.
    backend : {"numba", "numpy"}, default="numba"
        ``"numba"`` runs the package's kernels, ``"numpy"`` the plain reference.
    blas : bool, default=False
        With ``backend="numba"``, compute the matrix products through BLAS
        instead of the Numba loops.

    Returns
    -------
    result : BackpropResult
        ``loss``, nodes ``H0 H1 H2 H3 Z P`` and gradients
        ``dZ dH3 db2 dW2 dH2 dH1 dH0 db1 dW1 dX``. Arrays are float32 when ``X``
        and the four parameters are all float32, float64 otherwise (``y`` and
        ``sample_weight`` are converted to that dtype). The inputs are not modified.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import forward_backward
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(4, 3))
    >>> r = forward_backward(X, [0, 1, 1, 0], rng.normal(size=(3, 5)), np.zeros(5),
    ...                      rng.normal(size=(5, 2)), np.zeros(2))
    >>> r.dW1.shape, r["db2"].shape
    ((3, 5), (2,))
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if activation not in K.ACTIVATION_CODES:
        raise ValueError(
            f"activation must be one of {tuple(K.ACTIVATION_CODES)}, got {activation!r}"
        )
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a finite non-negative number, got {alpha!r}") from None
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite non-negative number, got {alpha!r}")
    X, Y, W1, b1, W2, b2, sw = _check_inputs(X, y, W1, b1, W2, b2, sample_weight)
    if backend == "numpy":
        values = reference.forward_backward(
            X.matrix() if isinstance(X, _sparse.CSRArrays) else X, Y, W1, b1, W2, b2,
            alpha=alpha, sample_weight=sw, activation=activation,
        )
        values["loss"] = float(values["loss"])
        return BackpropResult(values)
    values = _numba_forward_backward(X, Y, W1, b1, W2, b2, sw, alpha, activation, blas)
    return BackpropResult(values)


def _numba_forward_backward(X, Y, W1, b1, W2, b2, sw, alpha, activation, blas):
    """Every node and gradient through the kernels, one kernel per node."""
    n, D = X.shape
    H, C = W2.shape
    dt = X.dtype.type
    act = K.ACTIVATION_CODES[activation]
    linear = K.linear_forward_blas if blas else K.linear_forward
    weight_grad = K.weight_grad_blas if blas else K.weight_grad
    input_grad = K.input_grad_blas if blas else K.input_grad
    S = sw.sum(dtype=np.float64)
    reg = dt(alpha / S)

    H0 = np.empty((n, H), X.dtype)
    H1 = np.empty((n, H), X.dtype)
    H2 = np.empty((n, H), X.dtype)
    H3 = np.empty((n, C), X.dtype)
    Z = np.empty((n, C), X.dtype)
    P = np.empty((n, C), X.dtype)
    dZ = np.empty((n, C), X.dtype)
    sparse_X = isinstance(X, _sparse.CSRArrays)
    if sparse_X:  # H0 = X W1 over the stored entries of each row (n, H)
        KS.sparse_linear_forward_serial(*X.arrays, X.indptr[:0], W1, b1[:0], H0)
    else:
        linear(X, W1, np.zeros(H, X.dtype), H0)  # H0 = X W1            (n, H)
    K.bias_activation_forward(H0, b1, act, H1, H2)  # H1 = H0 + b1, H2 = act(H1)
    linear(H2, W2, np.zeros(C, X.dtype), H3)  # H3 = H2 W2        (n, C)
    K.bias_activation_forward(H3, b2, K.IDENTITY, Z, Z)  # Z = H3 + b2 (n, C)
    ce = K.softmax_cross_entropy(Z, Y, sw, dt(1.0 / S), P, dZ)
    penalty = alpha / (2 * S) * (np.dot(W1.ravel(), W1.ravel()) + np.dot(W2.ravel(), W2.ravel()))

    dH3 = dZ  # identity: Z = H3 + b2
    db2 = np.empty(C, X.dtype)
    K.bias_grad(dZ, db2)  # column sums             (C,)
    dW2 = np.empty((H, C), X.dtype)
    weight_grad(H2, dH3, W2, reg, dW2)  # H2ᵀ dH3 + reg W2  (H, C)
    dH2 = np.empty((n, H), X.dtype)
    input_grad(dH3, W2, dH2)  # dH3 W2ᵀ            (n, H)
    dH1 = np.empty((n, H), X.dtype)
    if act == K.RELU:
        K.relu_backward(dH2, H1, dH1)  # dH2 * 1[H1 > 0]      (n, H)
    else:
        K.activation_backward(dH2, H1, H2, act, dH1)  # dH2 * act'(H1)  (n, H)
    dH0 = dH1  # identity: H1 = H0 + b1
    db1 = np.empty(H, X.dtype)
    K.bias_grad(dH1, db1)  # (H,)
    dW1 = np.empty((D, H), X.dtype)
    if sparse_X:  # Xᵀ dH0 + reg W1 from the stored entries (D, H)
        KS.sparse_weight_grad_dense_serial(*X.arrays, X.indptr[:0], dH0, W1, reg, 1, dW1)
    else:
        weight_grad(X, dH0, W1, reg, dW1)  # Xᵀ dH0 + reg W1  (D, H)
    dX = np.empty((n, D), X.dtype)
    input_grad(dH0, W1, dX)  # dH0 W1ᵀ                  (n, D)
    return {
        "loss": float(ce + penalty), "H0": H0, "H1": H1, "H2": H2, "H3": H3, "Z": Z, "P": P,
        "dZ": dZ, "dH3": dH3, "db2": db2, "dW2": dW2, "dH2": dH2, "dH1": dH1, "dH0": dH0,
        "db1": db1, "dW1": dW1, "dX": dX,
    }


# ------------------------------------------------------------ the hand example
def hand_example() -> dict:
    """Return the inputs of the worked example of ``docs/backprop.md``.

    ``n = 2`` samples, ``D = 3`` features, ``H = 2`` hidden units, ``C = 2``
    classes, labels ``y = [0, 1]``, no L2 penalty. The numbers are small
    integers, chosen so that a student can redo the whole pass by hand: the
    logits are integers, the first row's two logits are equal (so its
    probabilities are exactly 1/2), the second row's differ by 1 (so
    ``p = e / (1 + e)``), and one hidden pre-activation is exactly 0, where the
    ReLU's backward pass gives 0.

    Returns
    -------
    inputs : dict
        ``X, y, W1, b1, W2, b2``, float64 arrays (``y`` int64): pass them as
        ``forward_backward(**hand_example())``.
    """
    return {
        "X": np.array([[1.0, 2.0, 1.0], [-1.0, 1.0, 0.0]]),  # (n, D) = (2, 3)
        "y": np.array([0, 1]),  # (n,)
        "W1": np.array([[-1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]]),  # (D, H) = (3, 2)
        "b1": np.array([-1.0, 0.0]),  # (H,)
        "W2": np.array([[1.0, -2.0], [-1.0, -2.0]]),  # (H, C) = (2, 2)
        "b2": np.array([-1.0, 1.0]),  # (C,)
    }


def _number(v: float) -> str:
    """Format a whole number as an integer and anything else to 4 decimals.

    A value within 1e-9 of a whole number prints as that number (``0`` for a
    rounding residue such as 1e-17, and never ``-0``).
    """
    v = float(v)
    if abs(v - round(v)) < 1e-9:
        return str(int(round(v)) + 0)
    return f"{v:.4f}"


def _block(name: str, formula: str, value, sizes: dict) -> list[str]:
    """Format an array as a heading line (name, formula, shape) and one line per row."""
    value = np.asarray(value)
    symbolic = SHAPES[name]
    actual = tuple(sizes[s] for s in symbolic)
    shape = f"{str(symbolic).replace(chr(39), '')} = {actual}"  # (n, H) = (2, 2)
    head = f"{name} = {formula}" if formula else name
    rows = value.reshape(1, -1) if value.ndim == 1 else value
    lines = [f"{head:<32}{shape}"]
    lines += ["".join(f"{_number(v):>9}" for v in row) for row in rows]
    return lines


def hand_example_text(backend: str = "numba") -> str:
    """Return every input, node and gradient of :func:`hand_example` as text.

    This is the printout shown in ``docs/backprop.md`` and by
    ``python -m fastmlp gradcheck --example``; a test checks that the document
    shows exactly this text, from both backends.

    Parameters
    ----------
    backend : {"numba", "numpy"}, default="numba"
        Which implementation of :func:`forward_backward` computes the numbers.
    """
    inputs = hand_example()
    r = forward_backward(**inputs, backend=backend)
    X, W1, W2 = inputs["X"], inputs["W1"], inputs["W2"]
    n, D = X.shape
    H, C = W2.shape
    sizes = {"n": n, "D": D, "H": H, "C": C}
    Y = np.eye(C)[inputs["y"]]
    lines = [
        f"hand example: n={n} samples, D={D} features, H={H} hidden units, C={C} classes,",
        f"labels y = {inputs['y'].tolist()}, ReLU, alpha = 0 (no L2 term).",
        "Whole numbers are exact; the others are rounded to 4 decimals.",
        "",
        "inputs",
    ]
    for name, value in (("X", X), ("Y", Y), ("W1", W1), ("b1", inputs["b1"]), ("W2", W2),
                        ("b2", inputs["b2"])):
        formula = "one-hot rows of y" if name == "Y" else ""
        lines += _block(name, formula, value, sizes)
    lines += ["", "forward"]
    for name in NODES:
        lines += _block(name, FORMULAS[name], r[name], sizes)
    lines += [f"loss L = mean cross-entropy = {r.loss:.4f}", "", "backward"]
    for name in GRADIENTS:
        formula = FORMULAS[name].split(" + (alpha/n)")[0]  # alpha = 0 here
        lines += _block(name, formula, r[name], sizes)
    lines += [
        "",
        "for contrast, the naive orders (they run only because H = C = 2, and they are wrong)",
    ]
    lines += _block("dH2", "dH3 W2   (wrong)", r.dH3 @ W2, sizes)
    lines += _block("dW2", "H2 dH3   (wrong)", r.H2 @ r.dH3, sizes)
    return "\n".join(lines) + "\n"
