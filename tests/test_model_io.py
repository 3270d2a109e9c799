"""Tests of fastmlp.model_io: .npz + JSON model files, no pickle."""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from fastmlp import model_io
from fastmlp.classifier import TwoLayerClassifier
from fastmlp.datasets import make_synthetic


def fit(X, y, **params):
    settings = dict(hidden_units=7, max_iter=3, random_state=0)
    settings.update(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return TwoLayerClassifier(**settings).fit(X, y)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(120, 6, 3, seed=1)


@pytest.fixture(scope="module")
def model(data):
    X, y = data
    return fit(X, y)


def rewrite(src, dst, change):
    """Copy a model file with its arrays passed through ``change(dict)``."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)
    return dst


def edit_meta(src, dst, change):
    def apply(arrays):
        meta = json.loads(str(arrays["metadata"]))
        change(meta)
        arrays["metadata"] = np.array(json.dumps(meta))

    return rewrite(src, dst, apply)


def test_round_trip_predict_proba_exact(tmp_path, model, data):
    X, _ = data
    path = model_io.save_model(model, tmp_path / "m.npz")
    loaded = model_io.load_model(path)
    assert type(loaded) is TwoLayerClassifier
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.get_params() == model.get_params()
    for a in ("n_features_in_", "n_outputs_", "out_activation_", "n_layers_", "loss_",
              "n_iter_", "loss_curve_", "t_", "best_loss_", "validation_scores_"):
        assert getattr(loaded, a) == getattr(model, a), a
    for got, want in zip(loaded.coefs_ + loaded.intercepts_,
                         model.coefs_ + model.intercepts_, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.classes_, model.classes_)


def test_file_holds_no_pickle(tmp_path, model):
    path = model_io.save_model(model, tmp_path / "m")  # .npz appended
    assert path.name == "m.npz"
    with np.load(path, allow_pickle=False) as npz:  # would raise on an object array
        arrays = {k: npz[k] for k in npz.files}
    assert all(a.dtype != object for a in arrays.values())
    meta = json.loads(str(arrays["metadata"]))
    assert meta["format"] == model_io.FORMAT_NAME
    assert meta["format_version"] == model_io.FORMAT_VERSION
    assert meta["params"]["hidden_units"] == 7
    assert meta["fitted"]["n_features_in_"] == 6
    assert arrays["coefs_0"].shape == (6, 7) and arrays["coefs_1"].shape == (7, 3)


@pytest.mark.parametrize("labels", [
    np.array(["cat", "dog", "émeu"]),
    np.array(["cat", "dog", "émeu"], dtype=object),
    np.array([-1.0, 2.0, 7.0]),
    np.array([10, 20, 30]),
])
def test_labels_round_trip(tmp_path, data, labels):
    X, y = data
    m = fit(X, labels[y])
    loaded = model_io.load_model(model_io.save_model(m, tmp_path / "m.npz"))
    assert loaded.classes_.dtype == m.classes_.dtype
    np.testing.assert_array_equal(loaded.classes_, m.classes_)
    pred, want = loaded.predict(X), m.predict(X)
    assert pred.dtype == want.dtype
    np.testing.assert_array_equal(pred, want)


def test_binary_float64_early_stopping_round_trip(tmp_path, data):
    X, y = data
    yb = np.where(y == 0, "no", "yes")
    m = fit(X, yb, dtype=np.float64, early_stopping=True, max_iter=4, alpha=0.0,
            class_weight={"no": 2.0, "yes": 1.0})
    assert m.n_outputs_ == 1 and m.out_activation_ == "logistic"
    loaded = model_io.load_model(model_io.save_model(m, tmp_path / "b.npz"))
    np.testing.assert_array_equal(loaded.predict_proba(X), m.predict_proba(X))
    assert loaded.coefs_[0].dtype == np.float64
    assert loaded.dtype is np.float64
    assert loaded.class_weight == {"no": 2.0, "yes": 1.0}
    assert loaded.validation_scores_ == m.validation_scores_
    assert loaded.best_validation_score_ == m.best_validation_score_


def test_unsavable_param_warns_and_falls_back_to_default(tmp_path, data):
    X, y = data
    m = fit(X, y, random_state=np.random.RandomState(0))
    with pytest.warns(UserWarning, match="parameter random_state=RandomState is not saved"):
        path = model_io.save_model(m, tmp_path / "r.npz")
    loaded = model_io.load_model(path)
    assert loaded.random_state is None
    np.testing.assert_array_equal(loaded.predict_proba(X), m.predict_proba(X))


def test_unfitted_model_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot save an unfitted model: it has no coefs_"):
        model_io.save_model(TwoLayerClassifier(), tmp_path / "u.npz")


def test_pickle_still_works(model, data):
    X, _ = data
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))


# ---------------------------------------------------------------- refusing bad files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz: no such model file"):
        model_io.load_model(tmp_path / "nope.npz")


def test_not_an_npz(tmp_path):
    f = tmp_path / "text.npz"
    f.write_text("hello")
    with pytest.raises(ValueError, match=r"text\.npz: not a fastmlp model file \(not an \.npz"):
        model_io.load_model(f)
    np.save(tmp_path / "arr.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"arr\.npy: not a fastmlp model file \(a single \.npy"):
        model_io.load_model(tmp_path / "arr.npy")


def test_pickle_file_refused_without_unpickling(tmp_path, model):
    f = tmp_path / "model.pkl"
    f.write_bytes(pickle.dumps(model))
    with pytest.raises(ValueError, match=r"model\.pkl: not a fastmlp model file"):
        model_io.load_model(f)


def test_object_array_refused(tmp_path, model):
    path = model_io.save_model(model, tmp_path / "m.npz")

    def add_object(arrays):
        arrays["classes_"] = np.array([1, "a", None], dtype=object)

    bad = rewrite(path, tmp_path / "obj.npz", add_object)
    with pytest.raises(ValueError, match=r"obj\.npz: corrupt model file \(Object arrays cannot"):
        model_io.load_model(bad)


def test_foreign_npz_refused(tmp_path):
    np.savez(tmp_path / "foreign.npz", X=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"foreign\.npz: not a fastmlp model file \(no 'metadata'"):
        model_io.load_model(tmp_path / "foreign.npz")


def test_truncated_file_refused(tmp_path, model):
    path = model_io.save_model(model, tmp_path / "m.npz")
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cut\.npz: (not a fastmlp model file|corrupt)"):
        model_io.load_model(tmp_path / "cut.npz")


def test_corrupt_member_refused(tmp_path, model):
    path = model_io.save_model(model, tmp_path / "m.npz")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    raw = bytearray(path.read_bytes())
    i = raw.index(b"coefs_0.npy") + 200  # inside the stored weights: CRC no longer matches
    raw[i] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(raw))
    assert "coefs_0.npy" in names
    with pytest.raises(ValueError, match=r"flip\.npz: corrupt model file"):
        model_io.load_model(tmp_path / "flip.npz")


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(format="sklearn.MLPClassifier"),
     r"not a fastmlp model file \(format 'sklearn.MLPClassifier'"),
    (lambda m: m.update(format_version=2), r"format version 2 was written by a newer fastmlp"),
    (lambda m: m.update(format_version="1"), r"format_version '1' is not an integer"),
    (lambda m: m["fitted"].update(n_features_in_=5), r"n_features_in_=5 but coefs_0 has 6 rows"),
    (lambda m: m["fitted"].update(n_outputs_=4), r"n_outputs_=4 but coefs_1 has 3 columns"),
    (lambda m: m["fitted"].update(out_activation_="tanh"), r"unknown out_activation_ 'tanh'"),
    (lambda m: m["fitted"].pop("loss_"), r"metadata lacks fitted attributes \['loss_'\]"),
    (lambda m: m["params"].update(hidden_units=8), r"hidden_units=8 but coefs_0 has 7 columns"),
    (lambda m: m["params"].update(n_estimators=3),
     r"parameters \['n_estimators'\] are not TwoLayerClassifier parameters"),
    (lambda m: m["params"].update(dtype={"__lambda__": 1}), r"corrupt parameter in metadata"),
])
def test_metadata_problems_refused(tmp_path, model, change, message):
    path = model_io.save_model(model, tmp_path / "m.npz")
    bad = edit_meta(path, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=r"bad\.npz: " + message):
        model_io.load_model(bad)


def test_invalid_json_refused(tmp_path, model):
    path = model_io.save_model(model, tmp_path / "m.npz")
    bad = rewrite(path, tmp_path / "bad.npz",
                  lambda a: a.update(metadata=np.array("{not json")))
    with pytest.raises(ValueError, match=r"bad\.npz: corrupt metadata \(invalid JSON"):
        model_io.load_model(bad)


@pytest.mark.parametrize("change,message", [
    (lambda a: a.update(coefs_1=a["coefs_1"][:, :2]), r"inconsistent shapes"),
    (lambda a: a.update(intercepts_0=a["intercepts_0"][:-1]), r"inconsistent shapes"),
    (lambda a: a.update(coefs_0=a["coefs_0"].astype(np.float64)),
     r"weights and biases do not share one dtype"),
    (lambda a: a.update(coefs_0=a["coefs_0"].astype(np.int32)), r"coefs_0 has dtype int32"),
    (lambda a: a.update(coefs_0=np.full_like(a["coefs_0"], np.nan)),
     r"coefs_0 contains NaN or infinity"),
    (lambda a: a.pop("intercepts_1"), r"missing arrays \['intercepts_1'\]"),
    (lambda a: a.update(extra=np.zeros(2)), r"unexpected arrays \['extra'\]"),
    (lambda a: a.update(classes_=np.array([0, 1, 1])), r"classes_ has repeated labels"),
    (lambda a: a.update(classes_=np.array([0, 1])), r"softmax output has 3 columns for 2"),
])
def test_array_problems_refused(tmp_path, model, change, message):
    path = model_io.save_model(model, tmp_path / "m.npz")
    bad = rewrite(path, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=r"bad\.npz: " + message):
        model_io.load_model(bad)


@pytest.mark.parametrize("value", [
    None, True, 3, 0.25, "adam", (100,), [1, 2], {0: 2.0, 1: 1.0}, {"a": 1, "b": (1, 2)},
    np.float32, np.float64, float("inf"), np.int64(5), np.float32(0.5),
])
def test_param_json_round_trip(value):
    encoded = json.loads(json.dumps(model_io._encode(value), allow_nan=False))
    decoded = model_io._decode(encoded)
    assert decoded == value
    if isinstance(value, np.generic):  # NumPy scalars come back as Python numbers
        assert type(decoded) is type(value.item())
    else:
        assert type(decoded) is type(value)
