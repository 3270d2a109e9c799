"""Save and load a fitted ``TwoLayerClassifier`` or ``TwoLayerRegressor`` without pickle.

A model file is one ``.npz`` archive (written by :func:`numpy.savez`) holding

- ``coefs_0`` (n_features, n_hidden), ``coefs_1`` (n_hidden, n_outputs): the weights
  ``W1``, ``W2``;
- ``intercepts_0`` (n_hidden,), ``intercepts_1`` (n_outputs,): the biases ``b1``, ``b2``;
- ``classes_`` (n_classes,): the labels, numbers or a unicode string array (a
  classifier's file only);
- optionally ``validation_scores_``, ``loss_curve_``-like float arrays and
  ``feature_names_in_`` (unicode);
- ``metadata``: a 0-d unicode array holding a JSON document with the format name and
  version, the fastmlp version, the estimator's ``get_params()`` and its scalar fitted
  attributes.

The format name says which estimator the file holds: ``fastmlp.TwoLayerClassifier``
(``out_activation_`` 'softmax' or 'logistic', ``classes_`` required) or
``fastmlp.TwoLayerRegressor`` (``out_activation_`` 'identity' for
``loss='squared_error'``, 'exp' for ``loss='poisson'``, no ``classes_``).

:func:`load_model` reads it with ``allow_pickle=False``, so loading never runs code
from the file. It treats the file as untrusted: the zip directory (member names, sizes)
and each member's ``.npy`` header (dtype, shape) are checked against each other and
against the metadata before any array's data is decompressed, the arrays' total size is
bounded, and every parameter and fitted attribute must be one the estimator accepts.
"""

from __future__ import annotations

import json
import math
import reprlib
import warnings
from pathlib import Path

import numpy as np

from ._files import MAX_FILE_BYTES, NpzArchive, atomic_write, open_regular

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "REGRESSOR_FORMAT_NAME", "load_model",
           "save_model"]

FORMAT_NAME = "fastmlp.TwoLayerClassifier"
REGRESSOR_FORMAT_NAME = "fastmlp.TwoLayerRegressor"
FORMAT_VERSION = 1
# format name -> the output activations its estimator fits
_OUTPUTS = {FORMAT_NAME: ("softmax", "logistic"), REGRESSOR_FORMAT_NAME: ("identity", "exp")}
_REGRESSION_OUTPUT = {"squared_error": "identity", "poisson": "exp"}  # loss -> output

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


def _estimator_class(fmt: str):
    """Return the estimator class a format name stands for."""
    if fmt == REGRESSOR_FORMAT_NAME:
        from .regressor import TwoLayerRegressor

        return TwoLayerRegressor
    from .classifier import TwoLayerClassifier

    return TwoLayerClassifier


def _format_of(model) -> str:
    """Return the format name of a model to save; a ValueError for another estimator."""
    from .classifier import TwoLayerClassifier
    from .regressor import TwoLayerRegressor

    if isinstance(model, TwoLayerRegressor):
        return REGRESSOR_FORMAT_NAME
    if isinstance(model, TwoLayerClassifier):
        return FORMAT_NAME
    raise ValueError(f"save_model saves TwoLayerClassifier and TwoLayerRegressor models, got "
                     f"{type(model).__name__}")


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
    """Write a fitted ``TwoLayerClassifier`` or ``TwoLayerRegressor`` to one ``.npz`` file.

    No pickle inside: arrays and a JSON document (see the module's docstring).

    Parameters
    ----------
    model : TwoLayerClassifier or TwoLayerRegressor
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
    fmt = _format_of(model)
    classifier = fmt == FORMAT_NAME
    needed = ("coefs_", "intercepts_", *(("classes_",) if classifier else ()),
              *_REQUIRED_SCALARS)
    missing = [a for a in needed if not hasattr(model, a)]
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
    fitted = {a: _encode(getattr(model, a)) for a in _REQUIRED_SCALARS}
    for a in _OPTIONAL_SCALARS:
        if hasattr(model, a):  # None too: best_validation_score_ without early stopping
            fitted[a] = _encode(getattr(model, a))
    import fastmlp

    meta = {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "fastmlp_version": fastmlp.__version__,
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "params": params,
        "params_not_saved": left_out,
        "fitted": fitted,
    }
    arrays = {
        "coefs_0": np.asarray(coefs[0]), "coefs_1": np.asarray(coefs[1]),
        "intercepts_0": np.asarray(intercepts[0]), "intercepts_1": np.asarray(intercepts[1]),
    }
    if classifier:
        arrays["classes_"], meta["classes_dtype"] = _class_array(model.classes_)
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
    # a temporary beside path, renamed over it once complete: a failed write (disk
    # full, Ctrl-C, a kill) leaves the previous file as it was
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return path


# ------------------------------------------------------------------------------ load
_MAX_METADATA_BYTES = 1 << 24  # 16 MiB of UTF-32 text for parameters and scalars
_MAX_JSON_DEPTH = 16  # save_model writes 5 levels at most (class_weight's tagged pairs)
_META_KEYS = {"format", "format_version", "fastmlp_version", "estimator", "params",
              "params_not_saved", "fitted", "classes_dtype"}


def _check(condition: bool, path: Path, problem: str) -> None:
    if not condition:
        raise ValueError(f"{path}: {problem}")


def _short(value) -> str:
    """Return a repr short enough for an error message, whatever the file holds."""
    return reprlib.repr(value)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite_number(v) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float range
        return False


def _is_number_or_none(v) -> bool:
    """None, or a number that is not NaN (best_loss_ starts at inf, scores at -inf)."""
    return v is None or _is_finite_number(v) or (isinstance(v, float) and not math.isnan(v))


# fitted scalar -> (test, what it must be)
_FITTED_RULES = {
    "n_features_in_": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "n_outputs_": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "n_layers_": (lambda v: _is_int(v) and v == 3, "3"),
    "loss_": (_is_finite_number, "a finite number"),
    "n_iter_": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "t_": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "best_loss_": (_is_number_or_none, "a number or null"),
    "best_validation_score_": (_is_number_or_none, "a number or null"),
}


def _json_object(pairs):
    """``object_pairs_hook`` refusing a key given twice (``json`` would keep the last)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {_short(key)} appears twice in one object")
        out[key] = value
    return out


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number (save_model tags non-finite numbers)")


def _depth(value) -> int:
    """Nesting depth of the lists and objects of a parsed JSON value (no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > _MAX_JSON_DEPTH:
                break
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _read_metadata(npz, path: Path) -> dict:
    """Parse the metadata member: a bounded 0-d string of JSON, not nested too deeply."""
    member = npz.member("metadata")
    _check(member.shape == () and member.dtype.kind == "U", path,
           "not a fastmlp model file ('metadata' is not a JSON string)")
    _check(member.nbytes <= _MAX_METADATA_BYTES, path,
           f"metadata of {member.nbytes} bytes, more than a model's {_MAX_METADATA_BYTES}")
    text = str(npz.read(member))
    try:
        meta = json.loads(text, object_pairs_hook=_json_object,
                          parse_constant=_refuse_constant)
    except RecursionError:
        meta = None  # refused just below, as nested too deeply
    except ValueError as exc:  # invalid JSON, a repeated key, an int of too many digits
        raise ValueError(f"{path}: corrupt metadata (invalid JSON: {exc})") from None
    _check(meta is not None and _depth(meta) <= _MAX_JSON_DEPTH, path,
           f"corrupt metadata (JSON nested deeper than {_MAX_JSON_DEPTH} levels)")
    return meta


def _check_metadata(meta, path: Path) -> tuple[str, dict, dict]:
    """Check the metadata's entries; return the format name, decoded ``params`` and ``fitted``."""
    fmt = meta.get("format") if isinstance(meta, dict) else None
    _check(isinstance(fmt, str) and fmt in _OUTPUTS, path,
           f"not a fastmlp model file (format {_short(fmt)}, expected {FORMAT_NAME!r} or "
           f"{REGRESSOR_FORMAT_NAME!r})")
    version = meta.get("format_version")
    _check(_is_int(version), path, f"format_version {_short(version)} is not an integer")
    _check(version <= FORMAT_VERSION, path,
           f"format version {version} was written by a newer fastmlp "
           f"({_short(meta.get('fastmlp_version'))}); this fastmlp reads version "
           f"{FORMAT_VERSION}")
    _check(version == FORMAT_VERSION, path, f"unknown format version {version}")
    unknown = sorted(set(meta) - _META_KEYS)
    _check(not unknown, path, f"unknown metadata entries {_short(unknown)}")
    for key in ("fastmlp_version", "estimator", "classes_dtype"):
        _check(isinstance(meta.get(key, ""), str), path,
               f"metadata {key} must be a string, got {_short(meta.get(key))}")
    _check(fmt == FORMAT_NAME or "classes_dtype" not in meta, path,
           f"metadata classes_dtype in a {REGRESSOR_FORMAT_NAME} file (a regressor has no "
           "classes)")
    not_saved = meta.get("params_not_saved", [])
    _check(isinstance(not_saved, list) and all(isinstance(n, str) for n in not_saved), path,
           f"metadata params_not_saved must be a list of names, got {_short(not_saved)}")
    for key in ("params", "fitted"):
        _check(isinstance(meta.get(key), dict), path, f"metadata has no '{key}' object")
    try:
        params = {k: _decode(v) for k, v in meta["params"].items()}
        fitted = {k: _decode(v) for k, v in meta["fitted"].items()}
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: corrupt parameter in metadata ({exc})") from None
    estimator = _estimator_class(fmt)
    _check_params(params, path, estimator)

    absent = [a for a in _REQUIRED_SCALARS if a not in fitted]
    _check(not absent, path, f"metadata lacks fitted attributes {absent}")
    for a, v in fitted.items():
        _check(a in _REQUIRED_SCALARS + _OPTIONAL_SCALARS + _OPTIONAL_ARRAYS, path,
               f"unknown fitted attribute {_short(a)}")
        if a in _OPTIONAL_ARRAYS:
            _check(v is None, path, f"{a} must be an array entry")
            continue
        if a == "out_activation_":
            outputs = _OUTPUTS[fmt]
            _check(v in outputs, path, f"fitted attribute {a}={_short(v)}, expected "
                   f"{outputs[0]!r} or {outputs[1]!r} ({estimator.__name__})")
            continue
        test, wanted = _FITTED_RULES[a]
        _check(test(v), path, f"fitted attribute {a}={_short(v)}, expected {wanted}")
    if fmt == REGRESSOR_FORMAT_NAME:
        loss = params.get("loss", "squared_error")
        want = _REGRESSION_OUTPUT[loss]  # loss was validated against the estimator's options
        _check(fitted["out_activation_"] == want, path,
               f"fitted attribute out_activation_={fitted['out_activation_']!r} does not go "
               f"with loss={loss!r} (expected {want!r})")
    return fmt, params, fitted


def _check_params(params: dict, path: Path, estimator) -> None:
    """Each saved parameter must be one ``estimator`` accepts, with a value it accepts."""
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

    accepted = set(estimator().get_params(deep=False))
    unknown = sorted(set(params) - accepted)
    _check(not unknown, path,
           f"parameters {_short(unknown)} are not {estimator.__name__} parameters in this "
           "fastmlp")
    constraints = estimator._parameter_constraints
    for name, value in params.items():
        rules = constraints.get(name, [])
        takes_bool = any(r in ("boolean", "verbose") for r in rules if isinstance(r, str))
        _check(not isinstance(value, bool) or takes_bool or not rules, path,
               f"parameter {name}={value}: a boolean where {name} takes a number or a name")
        try:
            validate_parameter_constraints({name: rules}, {name: value},
                                           caller_name=estimator.__name__)
        except InvalidParameterError as exc:
            rule = str(exc).split(" Got ")[0]
            raise ValueError(f"{path}: parameter {name}={_short(value)} refused: {rule}") from None
    weights = params.get("class_weight")
    if isinstance(weights, dict):
        for label, w in weights.items():
            _check(_is_finite_number(w) and w >= 0, path,
                   f"parameter class_weight: class {_short(label)} has weight {_short(w)}, "
                   "expected a finite number >= 0")
    _check(not params.get("callbacks"), path,
           "parameter callbacks: a model file cannot hold callbacks (they are code)")


def _check_headers(members: dict, fmt: str, params: dict, fitted: dict, path: Path) -> None:
    """Dtypes and shapes of every array, from the ``.npy`` headers, against the metadata."""
    W1, W2 = members["coefs_0"], members["coefs_1"]
    b1, b2 = members["intercepts_0"], members["intercepts_1"]
    for name in _WEIGHTS:
        dtype = members[name].dtype
        _check(dtype in (np.float32, np.float64), path,
               f"{name} has dtype {dtype}, expected float32 or float64")
    _check(len({m.dtype for m in (W1, W2, b1, b2)}) == 1, path,
           "weights and biases do not share one dtype")
    _check(W1.ndim == 2 and W2.ndim == 2 and b1.ndim == 1 and b2.ndim == 1, path,
           f"weights must be 2-D and biases 1-D, got shapes {W1.shape}, {b1.shape}, "
           f"{W2.shape}, {b2.shape}")
    D, H = W1.shape
    C = W2.shape[1]
    _check(b1.shape == (H,) and W2.shape[0] == H and b2.shape == (C,), path,
           f"inconsistent shapes: coefs_0 {W1.shape}, intercepts_0 {b1.shape}, "
           f"coefs_1 {W2.shape}, intercepts_1 {b2.shape}")
    # an empty dimension makes every size bound vacuous (0 x anything is 0 bytes) and a
    # model with no hidden unit predicts a constant
    _check(min(D, H, C) >= 1, path,
           f"empty weights: coefs_0 {W1.shape}, coefs_1 {W2.shape} (every dimension must "
           "be at least 1)")
    _check(fitted["n_features_in_"] == D, path,
           f"n_features_in_={fitted['n_features_in_']} but coefs_0 has {D} rows")
    _check(fitted["n_outputs_"] == C, path,
           f"n_outputs_={fitted['n_outputs_']} but coefs_1 has {C} columns")
    # the loaded model takes the default for a parameter the file leaves out: that
    # default must fit the weights too (a file is untrusted; nothing is guessed)
    if "hidden_units" in params:
        hidden, said = params["hidden_units"], "hidden_units={}"
    else:
        hidden, said = _estimator_class(fmt)().hidden_units, "params has no hidden_units " \
            "(so the default, {}, would apply)"
    _check(hidden == H, path, f"{said.format(hidden)} but coefs_0 has {H} columns")

    for a in _OPTIONAL_ARRAYS:
        if a not in members:
            continue
        m = members[a]
        _check(m.ndim == 1, path, f"{a} must be 1-D, got shape {m.shape}")
        if a == "feature_names_in_":
            _check(m.dtype.kind == "U" and m.shape == (D,), path,
                   f"feature_names_in_ must hold {D} strings")
        else:
            _check(m.dtype.kind == "f", path, f"{a} must hold floats")
    if fmt != FORMAT_NAME:
        return  # a regressor's outputs are its targets: nothing more to match
    classes = members["classes_"]
    _check(classes.ndim == 1 and classes.dtype.kind in "biufU", path,
           f"classes_ must be a 1-D array of numbers or strings, got {classes.dtype} "
           f"shape {classes.shape}")
    n_classes = classes.shape[0]
    if fitted["out_activation_"] == "softmax":
        _check(C == n_classes and n_classes >= 2, path,
               f"softmax output has {C} columns for {n_classes} classes")
    else:
        _check(C == n_classes or (n_classes == 2 and C == 1), path,
               f"logistic output has {C} columns for {n_classes} classes")


def load_model(path, *, max_bytes: int = MAX_FILE_BYTES):
    """Load a model written by :func:`save_model`; never unpickles anything.

    The file may come from anyone: its zip directory and each array's ``.npy``
    header (dtype, shape) are read and checked against the metadata before any
    array's data is decompressed, so a small file claiming a huge array costs
    nothing.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.
    max_bytes : int, default=2**31
        Bound on the arrays' total uncompressed size; a larger file is refused
        before any of it is decompressed.

    Returns
    -------
    model : TwoLayerClassifier or TwoLayerRegressor
        The estimator the file's format names, built from the saved parameters, with
        the saved weights and fitted attributes.

    Raises
    ------
    ValueError
        Naming the file and the problem (the member, parameter or fitted attribute
        at fault), for a file that is not a fastmlp model (a directory, device or
        pipe too), a format version this fastmlp cannot read, unknown or duplicate
        members, arrays over ``max_bytes``, metadata that is invalid or nested too
        deeply, a parameter the estimator would refuse, or arrays whose names,
        dtypes or shapes do not fit together or with the metadata.
    FileNotFoundError
        If there is no such file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    with open_regular(path) as fh:
        head = fh.read(6)
        fh.seek(0)
        if head.startswith(b"\x93NUMPY"):
            raise ValueError(f"{path}: not a fastmlp model file (a single .npy array)")
        if not head.startswith(b"PK"):
            raise ValueError(f"{path}: not a fastmlp model file (not an .npz archive)")
        with NpzArchive(fh, path) as npz:
            # ---- the zip directory: names and sizes, nothing decompressed yet
            _check("metadata" in npz.infos, path,
                   "not a fastmlp model file (no 'metadata' entry)")
            unknown = sorted(set(npz.infos) - _ARRAY_NAMES)
            _check(not unknown, path, f"unexpected arrays {_short(unknown)} in a model file")
            absent = [k for k in _WEIGHTS if k not in npz.infos]
            _check(not absent, path, f"missing arrays {absent}")
            total = npz.total_size(npz.infos)
            _check(total <= max_bytes, path,
                   f"its arrays take {total} bytes uncompressed, more than max_bytes="
                   f"{max_bytes}; pass a larger max_bytes to load_model if you trust the file")
            # ---- the metadata, then every .npy header against it
            meta = _read_metadata(npz, path)
            fmt, params, fitted = _check_metadata(meta, path)
            classifier = fmt == FORMAT_NAME
            _check(classifier or "classes_" not in npz.infos, path,
                   f"unexpected arrays ['classes_'] in a {fmt} file (a regressor has no "
                   "classes)")
            _check(not classifier or "classes_" in npz.infos, path,
                   "missing arrays ['classes_']")
            members = {name: npz.member(name, max_bytes) for name in npz.infos
                       if name != "metadata"}
            _check_headers(members, fmt, params, fitted, path)
            # ---- only now the data, each member's size checked
            arrays = {name: npz.read(m) for name, m in members.items()}

    for name in _WEIGHTS:
        _check(bool(np.all(np.isfinite(arrays[name]))), path,
               f"{name} contains NaN or infinity")
    model = _estimator_class(fmt)(**params)
    if classifier:
        classes = arrays["classes_"]
        _check(np.unique(classes).shape[0] == classes.shape[0], path,
               "classes_ has repeated labels")
        # the classifier maps labels to columns by np.searchsorted(classes_, y); NaN
        # compares False, so it is refused here too
        _check(bool(np.all(classes[1:] > classes[:-1])), path,
               f"classes_ must be sorted in increasing order (as fit stores them), got "
               f"{_short(classes.tolist())}")
        if meta.get("classes_dtype") == "object":
            classes = classes.astype(object)
        model.classes_ = classes
    model.coefs_ = [arrays["coefs_0"], arrays["coefs_1"]]
    model.intercepts_ = [arrays["intercepts_0"], arrays["intercepts_1"]]
    for a, v in fitted.items():
        setattr(model, a, v)
    for a in _OPTIONAL_ARRAYS:
        if a in arrays:
            value = arrays[a]
            if a == "feature_names_in_":
                value = value.astype(object)  # scikit-learn keeps feature names as objects
            else:
                value = value.tolist()  # scikit-learn keeps these curves as lists
            setattr(model, a, value)
    return model
