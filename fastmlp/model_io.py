"""Save and load a fitted :class:`~fastmlp.classifier.TwoLayerClassifier` without pickle.

A model file is one ``.npz`` archive (written by :func:`numpy.savez`) holding

- ``coefs_0`` (n_features, n_hidden), ``coefs_1`` (n_hidden, n_outputs): the weights
  ``W1``, ``W2``;
- ``intercepts_0`` (n_hidden,), ``intercepts_1`` (n_outputs,): the biases ``b1``, ``b2``;
- ``classes_`` (n_classes,): the labels, numbers or a unicode string array;
- optionally ``validation_scores_``, ``loss_curve_``-like float arrays and
  ``feature_names_in_`` (unicode);
- ``metadata``: a 0-d unicode array holding a JSON document with the format name and
  version, the fastmlp version, the estimator's ``get_params()`` and its scalar fitted
  attributes.

:func:`load_model` reads it with ``allow_pickle=False``, so loading never runs code
from the file, and checks every name, dtype and shape before building the estimator.
"""

from __future__ import annotations

import json
import math
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_model", "save_model"]

FORMAT_NAME = "fastmlp.TwoLayerClassifier"
FORMAT_VERSION = 1

_WEIGHTS = ("coefs_0", "coefs_1", "intercepts_0", "intercepts_1")
# fitted attributes stored as arrays when the model has them
_OPTIONAL_ARRAYS = ("loss_curve_", "validation_scores_", "validation_loss_curve_",
                    "feature_names_in_")
_LIST_ARRAYS = ("loss_curve_", "validation_scores_", "validation_loss_curve_")
# fitted attributes stored in the JSON metadata
_REQUIRED_SCALARS = ("n_features_in_", "n_outputs_", "out_activation_", "n_layers_",
                     "loss_", "n_iter_")
_OPTIONAL_SCALARS = ("best_loss_", "best_validation_score_", "t_")
_ARRAY_NAMES = set(_WEIGHTS) | {"classes_", "metadata"} | set(_OPTIONAL_ARRAYS)
_NPZ_ERRORS = (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile, KeyError)


class _NotJSON(Exception):
    """A parameter value with no JSON form."""


# --------------------------------------------------------------- parameters <-> JSON
def _encode(value):
    """JSON form of a parameter value; tuples, dicts and dtypes are tagged."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else {"__float__": repr(v)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return {"__dtype__": np.dtype(value).name}
    raise _NotJSON(type(value).__name__)


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v) for v in value["__tuple__"])
        if set(value) == {"__dict__"}:
            return {_hashable(_decode(k)): _decode(v) for k, v in value["__dict__"]}
        if set(value) == {"__dtype__"}:
            return np.dtype(value["__dtype__"]).type
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        raise ValueError(f"unknown tagged value {sorted(value)}")
    return value


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


# ------------------------------------------------------------------------------ save
def _class_array(classes) -> tuple[np.ndarray, str]:
    """Labels as an array that needs no pickle, and the dtype to give them back."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "biuf":
        return classes, classes.dtype.str
    if classes.dtype.kind == "U":
        return classes, classes.dtype.str
    if classes.dtype.kind == "O" and all(isinstance(c, str) for c in classes):
        return classes.astype(str), "object"
    raise ValueError(
        f"cannot save class labels of dtype {classes.dtype} without pickle "
        "(numbers, booleans and strings can be saved)"
    )


def save_model(model, path) -> Path:
    """Write a fitted ``TwoLayerClassifier`` to one ``.npz`` file, no pickle inside.

    Parameters
    ----------
    model : TwoLayerClassifier
        A fitted estimator.
    path : str or Path
        Where to write; ``numpy.savez`` adds ``.npz`` if the name lacks it.

    Returns
    -------
    path : Path
        The file written.

    Warns
    -----
    UserWarning
        For each constructor parameter whose value has no JSON form (a callback, a
        ``RandomState`` instance): it is left out and the loaded model gets its
        default.
    """
    path = Path(path)
    if not path.name.endswith(".npz"):
        path = path.with_name(path.name + ".npz")
    missing = [a for a in ("coefs_", "intercepts_", "classes_", *_REQUIRED_SCALARS)
               if not hasattr(model, a)]
    if missing:
        raise ValueError(f"cannot save an unfitted model: it has no {', '.join(missing)}")
    coefs, intercepts = list(model.coefs_), list(model.intercepts_)
    if len(coefs) != 2 or len(intercepts) != 2:
        raise ValueError(f"expected 2 weight matrices and 2 biases, got {len(coefs)} and "
                         f"{len(intercepts)}")

    params, left_out = {}, []
    for name, value in model.get_params(deep=False).items():
        try:
            params[name] = _encode(value)
        except _NotJSON as exc:
            left_out.append(name)
            warnings.warn(
                f"parameter {name}={exc} is not saved (no JSON form); the loaded model "
                "uses its default",
                UserWarning,
                stacklevel=2,
            )
    classes, classes_dtype = _class_array(model.classes_)
    fitted = {a: _encode(getattr(model, a)) for a in _REQUIRED_SCALARS}
    for a in _OPTIONAL_SCALARS:
        if getattr(model, a, None) is not None:
            fitted[a] = _encode(getattr(model, a))
    import fastmlp

    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fastmlp_version": fastmlp.__version__,
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "params": params,
        "params_not_saved": left_out,
        "fitted": fitted,
        "classes_dtype": classes_dtype,
    }
    arrays = {
        "coefs_0": np.asarray(coefs[0]), "coefs_1": np.asarray(coefs[1]),
        "intercepts_0": np.asarray(intercepts[0]), "intercepts_1": np.asarray(intercepts[1]),
        "classes_": classes,
    }
    for a in _OPTIONAL_ARRAYS:
        if not hasattr(model, a):
            continue
        value = getattr(model, a)
        if value is None:
            fitted[a] = None  # e.g. validation_scores_ without early stopping
            continue
        arr = np.asarray(value)
        arrays[a] = arr.astype(str) if arr.dtype.kind == "O" else arr
    arrays["metadata"] = np.array(json.dumps(meta, sort_keys=True))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


# ------------------------------------------------------------------------------ load
def _read(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive, read with ``allow_pickle=False``."""
    with open(path, "rb") as f:
        head = f.read(6)
        f.seek(0)
        if head.startswith(b"\x93NUMPY"):
            raise ValueError(f"{path}: not a fastmlp model file (a single .npy array)")
        if not head.startswith(b"PK"):
            raise ValueError(f"{path}: not a fastmlp model file (not an .npz archive)")
        try:
            npz = np.load(f, allow_pickle=False)
        except _NPZ_ERRORS as exc:
            raise ValueError(f"{path}: not a fastmlp model file (not a readable .npz: "
                             f"{exc})") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not a fastmlp model file (a single .npy array)")
        with npz:
            try:
                return {k: npz[k] for k in npz.files}
            except _NPZ_ERRORS as exc:
                raise ValueError(f"{path}: corrupt model file ({exc})") from None


def _check(condition: bool, path: Path, problem: str) -> None:
    if not condition:
        raise ValueError(f"{path}: {problem}")


def load_model(path):
    """Load a model written by :func:`save_model`; never unpickles anything.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.

    Returns
    -------
    model : TwoLayerClassifier
        Built from the saved parameters, with the saved weights and fitted attributes.

    Raises
    ------
    ValueError
        Naming the file and the problem, for a file that is not a fastmlp model, a
        format version this fastmlp cannot read, or arrays whose names, dtypes or
        shapes do not fit together.
    FileNotFoundError
        If there is no such file.
    """
    from .classifier import TwoLayerClassifier

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    arrays = _read(path)
    _check("metadata" in arrays, path, "not a fastmlp model file (no 'metadata' entry)")
    meta_arr = arrays["metadata"]
    _check(meta_arr.shape == () and meta_arr.dtype.kind == "U", path,
           "not a fastmlp model file ('metadata' is not a JSON string)")
    try:
        meta = json.loads(str(meta_arr))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt metadata (invalid JSON: {exc})") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    _check(fmt == FORMAT_NAME, path,
           f"not a fastmlp model file (format {fmt!r}, expected {FORMAT_NAME!r})")
    version = meta.get("format_version")
    _check(isinstance(version, int), path, f"format_version {version!r} is not an integer")
    _check(version <= FORMAT_VERSION, path,
           f"format version {version} was written by a newer fastmlp "
           f"({meta.get('fastmlp_version')}); this fastmlp reads version {FORMAT_VERSION}")
    _check(version == FORMAT_VERSION, path, f"unknown format version {version}")
    unknown = sorted(set(arrays) - _ARRAY_NAMES)
    _check(not unknown, path, f"unexpected arrays {unknown} in a version {version} model file")
    absent = [k for k in (*_WEIGHTS, "classes_") if k not in arrays]
    _check(not absent, path, f"missing arrays {absent}")
    for key in ("params", "fitted"):
        _check(isinstance(meta.get(key), dict), path, f"metadata has no '{key}' object")
    fitted = meta["fitted"]
    absent = [a for a in _REQUIRED_SCALARS if a not in fitted]
    _check(not absent, path, f"metadata lacks fitted attributes {absent}")

    # ---- weights: one float dtype, finite, shapes (D, H), (H,), (H, C), (C,)
    W1, W2 = arrays["coefs_0"], arrays["coefs_1"]
    b1, b2 = arrays["intercepts_0"], arrays["intercepts_1"]
    for name in _WEIGHTS:
        a = arrays[name]
        _check(a.dtype in (np.float32, np.float64), path,
               f"{name} has dtype {a.dtype}, expected float32 or float64")
        _check(bool(np.all(np.isfinite(a))), path, f"{name} contains NaN or infinity")
    _check(len({a.dtype for a in (W1, W2, b1, b2)}) == 1, path,
           "weights and biases do not share one dtype")
    _check(W1.ndim == 2 and W2.ndim == 2 and b1.ndim == 1 and b2.ndim == 1, path,
           f"weights must be 2-D and biases 1-D, got shapes {W1.shape}, {b1.shape}, "
           f"{W2.shape}, {b2.shape}")
    D, H = W1.shape
    C = W2.shape[1]
    _check(b1.shape == (H,) and W2.shape[0] == H and b2.shape == (C,), path,
           f"inconsistent shapes: coefs_0 {W1.shape}, intercepts_0 {b1.shape}, "
           f"coefs_1 {W2.shape}, intercepts_1 {b2.shape}")
    _check(fitted["n_features_in_"] == D, path,
           f"n_features_in_={fitted['n_features_in_']} but coefs_0 has {D} rows")
    _check(fitted["n_outputs_"] == C, path,
           f"n_outputs_={fitted['n_outputs_']} but coefs_1 has {C} columns")
    _check(fitted["n_layers_"] == 3, path, f"n_layers_={fitted['n_layers_']}, expected 3")

    # ---- classes: numbers or strings, unique, as many as the outputs need
    classes = arrays["classes_"]
    _check(classes.ndim == 1 and classes.dtype.kind in "biufU", path,
           f"classes_ must be a 1-D array of numbers or strings, got {classes.dtype} "
           f"shape {classes.shape}")
    n_classes = classes.shape[0]
    _check(np.unique(classes).shape[0] == n_classes, path, "classes_ has repeated labels")
    out = fitted["out_activation_"]
    _check(out in ("softmax", "logistic"), path, f"unknown out_activation_ {out!r}")
    if out == "softmax":
        _check(C == n_classes and n_classes >= 2, path,
               f"softmax output has {C} columns for {n_classes} classes")
    else:
        _check(C == n_classes or (n_classes == 2 and C == 1), path,
               f"logistic output has {C} columns for {n_classes} classes")
    if meta.get("classes_dtype") == "object":
        classes = classes.astype(object)

    # ---- the estimator: every saved parameter must be one it accepts
    try:
        params = {k: _decode(v) for k, v in meta["params"].items()}
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: corrupt parameter in metadata ({exc})") from None
    accepted = set(TwoLayerClassifier().get_params(deep=False))
    unknown = sorted(set(params) - accepted)
    _check(not unknown, path,
           f"parameters {unknown} are not TwoLayerClassifier parameters in this fastmlp")
    if "hidden_units" in params and params["hidden_units"] is not None:
        _check(params["hidden_units"] == H, path,
               f"hidden_units={params['hidden_units']} but coefs_0 has {H} columns")
    model = TwoLayerClassifier(**params)
    model.coefs_ = [W1, W2]
    model.intercepts_ = [b1, b2]
    model.classes_ = classes
    for a, v in fitted.items():
        _check(a in _REQUIRED_SCALARS + _OPTIONAL_SCALARS + _OPTIONAL_ARRAYS, path,
               f"unknown fitted attribute {a!r}")
        _check(a not in _OPTIONAL_ARRAYS or v is None, path, f"{a} must be an array entry")
        setattr(model, a, _decode(v))
    for a in _OPTIONAL_ARRAYS:
        if a in arrays:
            value = arrays[a]
            _check(value.ndim == 1, path, f"{a} must be 1-D, got shape {value.shape}")
            if a == "feature_names_in_":
                _check(value.dtype.kind == "U" and value.shape == (D,), path,
                       f"feature_names_in_ must hold {D} strings")
                value = value.astype(object)  # scikit-learn keeps feature names as objects
            else:
                _check(value.dtype.kind == "f", path, f"{a} must hold floats")
                value = value.tolist()  # scikit-learn keeps these curves as lists
            setattr(model, a, value)
    return model
