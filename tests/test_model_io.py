"""Tests of fastmlp.model_io: .npz + JSON model files, no pickle."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import threading
import tracemalloc
import warnings
import zipfile
import zlib

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
    with pytest.raises(ValueError, match=r"obj\.npz: member classes_ holds Python objects"):
        model_io.load_model(bad)


def test_foreign_npz_refused(tmp_path):
    np.savez(tmp_path / "foreign.npz", X=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"foreign\.npz: not a fastmlp model file \(no 'metadata'"):
        model_io.load_model(tmp_path / "foreign.npz")


def test_truncated_file_refused(tmp_path, model):
    path = model_io.save_model(model, tmp_path / "m.npz")
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError,
                       match=r"cut\.npz: (not a readable \.npz archive|corrupt member)"):
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
    with pytest.raises(ValueError, match=r"flip\.npz: corrupt member coefs_0 \(Bad CRC-32"):
        model_io.load_model(tmp_path / "flip.npz")


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(format="sklearn.MLPClassifier"),
     r"not a fastmlp model file \(format 'sklearn.MLPClassifier'"),
    (lambda m: m.update(format_version=2), r"format version 2 was written by a newer fastmlp"),
    (lambda m: m.update(format_version="1"), r"format_version '1' is not an integer"),
    (lambda m: m["fitted"].update(n_features_in_=5), r"n_features_in_=5 but coefs_0 has 6 rows"),
    (lambda m: m["fitted"].update(n_outputs_=4), r"n_outputs_=4 but coefs_1 has 3 columns"),
    (lambda m: m["fitted"].update(out_activation_="tanh"),
     r"fitted attribute out_activation_='tanh', expected 'softmax' or"),
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


# ------------------------------------------------------- untrusted files: headers first
def npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_header(shape, descr):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def deflated_zeros(header, n_zeros):
    """``(pieces, crc)``: raw deflate of ``header`` + ``n_zeros`` zero bytes, ~1000:1.

    A full flush resets the compressor, so every 16 MiB block of zeros compresses to the
    same bytes: the stream is made in a blink and held as references to one block.
    """
    block_len = 1 << 24
    zeros = bytes(block_len)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    k, rest = divmod(n_zeros, block_len)
    last = c.compress(bytes(rest)) + c.flush()
    crc = zlib.crc32(header)
    for _ in range(k):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    return [first, *([block] * k), last], crc


def write_zip(path, entries):
    """A zip archive written by hand, so it can hold what zipfile would not write.

    ``entries``: ``(name, data)`` stored, or ``(name, (pieces, crc, size))`` deflated.
    """
    out, central = bytearray(), bytearray()
    for name, data in entries:
        raw = name.encode()
        if isinstance(data, bytes):
            method, pieces, crc, size = 0, [data], zlib.crc32(data), len(data)
        else:
            method, (pieces, crc, size) = 8, data
        csize = sum(len(p) for p in pieces)
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 33, crc, csize, size,
                           len(raw), 0) + raw
        for p in pieces:
            out += p
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 33, crc,
                               csize, size, len(raw), 0, 0, 0, 0, 0, offset) + raw
    n = len(entries)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), len(out), 0)
    path.write_bytes(bytes(out + central + eocd))
    return path


def model_entries(tmp_path, model, meta_change=None):
    """The members of ``model``'s file as ``[(file name, .npy bytes)]``, metadata edited."""
    path = model_io.save_model(model, tmp_path / "good.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if meta_change is not None:
        meta = json.loads(str(arrays["metadata"]))
        meta_change(meta)
        arrays["metadata"] = np.array(json.dumps(meta))
    return [(f"{k}.npy", npy_bytes(v)) for k, v in arrays.items()]


def load_peak(path):
    """``(exception, peak bytes traced)`` of loading ``path``."""
    tracemalloc.start()
    try:
        model_io.load_model(path)
    except ValueError as exc:
        error = exc
    else:
        error = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


BOMB_ROWS = 82_000_000  # x 7 hidden units x 4 bytes: 2.3 GB of float32 zeros


@pytest.mark.parametrize("where", ["extra member", "coefs_0, as the metadata says"])
def test_zip_bomb_refused_before_decompressing(tmp_path, model, where):
    nbytes = BOMB_ROWS * 7 * 4
    if where == "extra member":
        entries = model_entries(tmp_path, model)
        name, header = "bomb.npy", npy_header((nbytes // 8,), "<f8")
        message = r"unexpected arrays \['bomb'\]"
    else:  # a consistent model with 82 million features: only the size bound stops it
        entries = [e for e in model_entries(
            tmp_path, model, lambda m: m["fitted"].update(n_features_in_=BOMB_ROWS))
            if e[0] != "coefs_0.npy"]
        name, header = "coefs_0.npy", npy_header((BOMB_ROWS, 7), "<f4")
        message = r"its arrays take \d+ bytes uncompressed, more than max_bytes=2147483648"
    pieces, crc = deflated_zeros(header, nbytes)
    bomb = write_zip(tmp_path / "bomb.npz",
                     [*entries, (name, (pieces, crc, len(header) + nbytes))])
    assert bomb.stat().st_size < 3_000_000  # a 2.3 MB file ...
    error, peak = load_peak(bomb)
    assert error is not None and re.search(r"bomb\.npz: " + message, str(error)), error
    assert peak < 50_000_000, f"loading the refused file traced {peak / 1e6:.0f} MB"


def test_size_bound_is_a_parameter(tmp_path, model):
    path = model_io.save_model(model, tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"m\.npz: its arrays take \d+ bytes uncompressed, "
                                         r"more than max_bytes=100; pass a larger max_bytes"):
        model_io.load_model(path, max_bytes=100)
    assert model_io.load_model(path, max_bytes=10**6).hidden_units == 7


def test_header_claiming_terabytes_refused(tmp_path, model):
    # the member holds 6 x 7 floats, its .npy header claims 8 TB: np.load would try
    # to allocate them (MemoryError)
    entries = [(n, npy_header((10**6, 10**6), "<f8") + bytes(168) if n == "coefs_0.npy"
                else data) for n, data in model_entries(tmp_path, model)]
    bad = write_zip(tmp_path / "tera.npz", entries)
    with pytest.raises(ValueError, match=r"tera\.npz: member coefs_0: its \.npy header says "
                                         r"shape \(1000000, 1000000\) of float64 "
                                         r"\(8000000000000 bytes\), but the member holds 168"):
        model_io.load_model(bad)


@pytest.mark.parametrize("second", ["coefs_0.npy", "coefs_0"])
def test_duplicate_member_refused(tmp_path, model, second):
    entries = model_entries(tmp_path, model)
    W1 = model.coefs_[0]
    entries.append((second, npy_bytes(np.full_like(W1, 7.0))))  # would silently win
    bad = write_zip(tmp_path / "dup.npz", entries)
    with pytest.raises(ValueError, match=r"dup\.npz: duplicate members \['coefs_0'\]"):
        model_io.load_model(bad)


def test_unknown_member_refused_without_reading_it(tmp_path, model):
    entries = model_entries(tmp_path, model)
    entries.append(("notes.txt", b"\x00" * 10))  # not even an .npy
    bad = write_zip(tmp_path / "extra.npz", entries)
    with pytest.raises(ValueError, match=r"extra\.npz: unexpected arrays \['notes\.txt'\]"):
        model_io.load_model(bad)


@pytest.mark.parametrize("change,message", [
    (lambda m: m["params"].update(activation="evil"),
     r"parameter activation='evil' refused: The 'activation' parameter of "
     r"TwoLayerClassifier must be a str among"),
    (lambda m: m["params"].update(solver="newton"), r"parameter solver='newton' refused"),
    (lambda m: m["params"].update(n_threads="abc"), r"parameter n_threads='abc' refused"),
    (lambda m: m["params"].update(n_threads=0), r"parameter n_threads=0 refused"),
    (lambda m: m["params"].update(n_threads=2.5), r"parameter n_threads=2\.5 refused"),
    (lambda m: m["params"].update(hidden_units=0), r"parameter hidden_units=0 refused"),
    (lambda m: m["params"].update(hidden_units=7.0), r"parameter hidden_units=7\.0 refused"),
    (lambda m: m["params"].update(hidden_units=True),
     r"parameter hidden_units=True: a boolean where hidden_units takes a number"),
    (lambda m: m["params"].update(batch_size=-5), r"parameter batch_size=-5 refused"),
    (lambda m: m["params"].update(random_state=-1), r"parameter random_state=-1 refused"),
    (lambda m: m["params"].update(dtype={"__dtype__": "object"}), r"parameter dtype=.* refused"),
    (lambda m: m["params"].update(callbacks=["os.system"]),
     r"parameter callbacks: a model file cannot hold callbacks"),
    (lambda m: m["params"].update(class_weight={"__dict__": [[0, -1.0]]}),
     r"parameter class_weight: class 0 has weight -1\.0, expected a finite number >= 0"),
    (lambda m: m["params"].update(class_weight={"__dict__": [[0, {"__float__": "nan"}]]}),
     r"parameter class_weight: class 0 has weight nan"),
    (lambda m: m["fitted"].update(n_outputs_=0), r"fitted attribute n_outputs_=0, expected a "
                                                 r"positive integer"),
    (lambda m: m["fitted"].update(n_features_in_="6"),
     r"fitted attribute n_features_in_='6', expected a positive integer"),
    (lambda m: m["fitted"].update(n_iter_=-1), r"fitted attribute n_iter_=-1, expected an "
                                               r"integer >= 0"),
    (lambda m: m["fitted"].update(loss_="low"), r"fitted attribute loss_='low', expected a "
                                                r"finite number"),
    (lambda m: m["fitted"].update(n_layers_=4), r"fitted attribute n_layers_=4, expected 3"),
    (lambda m: m.update(extra=1), r"unknown metadata entries \['extra'\]"),
    (lambda m: m.update(estimator=["x"]), r"metadata estimator must be a string"),
])
def test_out_of_range_or_mistyped_metadata_refused(tmp_path, model, change, message):
    path = model_io.save_model(model, tmp_path / "m.npz")
    bad = edit_meta(path, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=r"bad\.npz: " + message):
        model_io.load_model(bad)


def test_zero_outputs_refused_at_load(tmp_path, model):
    # today's code loaded this and raised IndexError at predict
    def zero(arrays):
        arrays["coefs_1"] = arrays["coefs_1"][:, :0]
        arrays["intercepts_1"] = arrays["intercepts_1"][:0]
        arrays["classes_"] = arrays["classes_"][:0]
        meta = json.loads(str(arrays["metadata"]))
        meta["fitted"]["n_outputs_"] = 0
        arrays["metadata"] = np.array(json.dumps(meta))

    bad = rewrite(model_io.save_model(model, tmp_path / "m.npz"), tmp_path / "zero.npz", zero)
    with pytest.raises(ValueError, match=r"zero\.npz: fitted attribute n_outputs_=0"):
        model_io.load_model(bad)


@pytest.mark.parametrize("text,message", [
    ("[" * 100_000 + "]" * 100_000, r"JSON nested deeper than 16 levels"),  # RecursionError
    ('{"a": ' * 40 + "1" + "}" * 40, r"JSON nested deeper than 16 levels"),
    ('{"format": "x", "format": "fastmlp.TwoLayerClassifier"}',
     r"invalid JSON: key 'format' appears twice"),
    ('{"format": NaN}', r"invalid JSON: NaN is not a JSON number"),
    ('{"format": ' + "9" * 5000 + "}", r"invalid JSON"),
], ids=["100000 levels", "40 levels", "repeated key", "NaN", "5000 digits"])
def test_hostile_metadata_json_refused(tmp_path, model, text, message):
    path = model_io.save_model(model, tmp_path / "m.npz")
    bad = rewrite(path, tmp_path / "bad.npz", lambda a: a.update(metadata=np.array(text)))
    with pytest.raises(ValueError, match=r"bad\.npz: corrupt metadata \(" + message):
        model_io.load_model(bad)


def test_devices_and_directories_refused(tmp_path):
    with pytest.raises(ValueError, match=r"is a directory|a directory, expected a regular"):
        model_io.load_model(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ValueError, match=r"/dev/zero: a character device, expected a "
                                             r"regular file"):
            model_io.load_model("/dev/zero")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_fifo_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            model_io.load_model(fifo)
        except ValueError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # opening a FIFO waits for a writer: release it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("load_model blocked on a named pipe")
    assert outcome and "model.npz: a pipe (FIFO), expected a regular file" in outcome[0]


# ------------------------------------------------------------------ the regressor's files
def fit_regressor(X, y, **params):
    from fastmlp import TwoLayerRegressor

    settings = dict(hidden_units=5, max_iter=3, random_state=0)
    settings.update(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return TwoLayerRegressor(**settings).fit(X, y)


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 4))
    return X, X @ np.array([1.0, -0.5, 2.0, 0.0]) + 0.1 * rng.normal(size=150)


@pytest.fixture(scope="module")
def regressor(regression_data):
    return fit_regressor(*regression_data)


@pytest.mark.parametrize("params,targets", [
    (dict(), "1"),
    (dict(loss="poisson", dtype=np.float64), "1"),
    (dict(early_stopping=True, max_iter=4, solver="sgd"), "1"),
    (dict(solver="lbfgs", max_iter=20), "3"),
])
def test_regressor_round_trip_predict_exact(tmp_path, regression_data, params, targets):
    from fastmlp import TwoLayerRegressor

    X, y = regression_data
    if params.get("loss") == "poisson":
        y = np.exp(y / 4)  # positive counts-like targets
    if targets == "3":
        y = np.column_stack([y, -y, 2 * y])
    m = fit_regressor(X, y, **params)
    path = model_io.save_model(m, tmp_path / "r.npz")
    with np.load(path, allow_pickle=False) as npz:
        assert "classes_" not in npz.files
        meta = json.loads(str(npz["metadata"]))
    assert meta["format"] == model_io.REGRESSOR_FORMAT_NAME == "fastmlp.TwoLayerRegressor"
    assert "classes_dtype" not in meta
    loaded = model_io.load_model(path)
    assert type(loaded) is TwoLayerRegressor
    assert loaded.get_params() == m.get_params()
    pred = loaded.predict(X)
    assert pred.dtype == m.predict(X).dtype and pred.shape == m.predict(X).shape
    np.testing.assert_array_equal(pred, m.predict(X))
    assert loaded.score(X, y) == m.score(X, y)
    for a in ("n_features_in_", "n_outputs_", "out_activation_", "loss_", "n_iter_",
              "loss_curve_", "best_loss_", "validation_scores_", "validation_loss_curve_",
              "best_validation_score_"):
        assert getattr(loaded, a) == getattr(m, a), a
    assert not hasattr(loaded, "classes_")


@pytest.mark.parametrize("change,message", [
    (lambda m: m["fitted"].update(out_activation_="softmax"),
     r"fitted attribute out_activation_='softmax', expected 'identity' or 'exp' "
     r"\(TwoLayerRegressor\)"),
    (lambda m: m["fitted"].update(out_activation_="exp"),
     r"fitted attribute out_activation_='exp' does not go with loss='squared_error' "
     r"\(expected 'identity'\)"),
    (lambda m: m["params"].update(loss="log_loss"), r"parameter loss='log_loss' refused: The "
                                                    r"'loss' parameter of TwoLayerRegressor"),
    (lambda m: m["params"].update(class_weight="balanced"),
     r"parameters \['class_weight'\] are not TwoLayerRegressor parameters"),
    (lambda m: m["params"].update(hidden_units=0), r"parameter hidden_units=0 refused"),
    (lambda m: m["params"].update(callbacks=["os.system"]),
     r"parameter callbacks: a model file cannot hold callbacks"),
    (lambda m: m.update(classes_dtype="<i8"), r"metadata classes_dtype in a "
                                              r"fastmlp.TwoLayerRegressor file"),
    (lambda m: m["fitted"].update(n_outputs_=2), r"n_outputs_=2 but coefs_1 has 1 columns"),
    (lambda m: m.update(format="fastmlp.TwoLayerRegressorX"),
     r"not a fastmlp model file \(format 'fastmlp.TwoLayerRegressorX', expected "
     r"'fastmlp.TwoLayerClassifier' or 'fastmlp.TwoLayerRegressor'\)"),
])
def test_regressor_metadata_problems_refused(tmp_path, regressor, change, message):
    path = model_io.save_model(regressor, tmp_path / "r.npz")
    bad = edit_meta(path, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=r"bad\.npz: " + message):
        model_io.load_model(bad)


def test_classifier_and_regressor_files_cannot_pass_for_each_other(tmp_path, regressor,
                                                                   model):
    # a regressor file relabelled as a classifier lacks classes_ ...
    path = model_io.save_model(regressor, tmp_path / "r.npz")
    bad = edit_meta(path, tmp_path / "as_clf.npz",
                    lambda m: m.update(format=model_io.FORMAT_NAME))
    with pytest.raises(ValueError, match=r"as_clf\.npz: (parameters \['loss'\] are not "
                                         r"TwoLayerClassifier|.*out_activation_='identity')"):
        model_io.load_model(bad)
    # ... and a classifier's classes_ has no place in a regressor file
    path = model_io.save_model(model, tmp_path / "c.npz")

    def as_regressor(meta):
        meta.update(format=model_io.REGRESSOR_FORMAT_NAME)
        meta.pop("classes_dtype")
        meta["params"].pop("class_weight")
        meta["params"]["loss"] = "squared_error"
        meta["fitted"]["out_activation_"] = "identity"

    bad = edit_meta(path, tmp_path / "as_reg.npz", as_regressor)
    with pytest.raises(ValueError, match=r"as_reg\.npz: unexpected arrays \['classes_'\] in "
                                         r"a fastmlp.TwoLayerRegressor file"):
        model_io.load_model(bad)
    # and a classifier file without its classes_ is refused before any data is read
    bad = rewrite(model_io.save_model(model, tmp_path / "c2.npz"), tmp_path / "nocls.npz",
                  lambda a: a.pop("classes_"))
    with pytest.raises(ValueError, match=r"nocls\.npz: missing arrays \['classes_'\]"):
        model_io.load_model(bad)


def test_regressor_file_size_bound_and_headers_checked(tmp_path, regressor):
    path = model_io.save_model(regressor, tmp_path / "r.npz")
    with pytest.raises(ValueError, match=r"r\.npz: its arrays take \d+ bytes uncompressed"):
        model_io.load_model(path, max_bytes=100)
    entries = [(n, npy_header((10**6, 10**6), "<f8") + bytes(160) if n == "coefs_0.npy"
                else data) for n, data in model_entries(tmp_path, regressor)]
    with pytest.raises(ValueError, match=r"tera\.npz: member coefs_0: its \.npy header says "
                                         r"shape \(1000000, 1000000\)"):
        model_io.load_model(write_zip(tmp_path / "tera.npz", entries))
    bad = rewrite(path, tmp_path / "nan.npz",
                  lambda a: a.update(coefs_1=np.full_like(a["coefs_1"], np.inf)))
    with pytest.raises(ValueError, match=r"nan\.npz: coefs_1 contains NaN or infinity"):
        model_io.load_model(bad)


def test_save_model_refuses_other_estimators(tmp_path):
    from sklearn.linear_model import LinearRegression

    X = np.arange(6.0).reshape(3, 2)
    with pytest.raises(ValueError, match=r"save_model saves TwoLayerClassifier and "
                                         r"TwoLayerRegressor models, got LinearRegression"):
        model_io.save_model(LinearRegression().fit(X, [0.0, 1.0, 2.0]), tmp_path / "l.npz")
    from fastmlp import TwoLayerRegressor

    with pytest.raises(ValueError, match="cannot save an unfitted model: it has no coefs_"):
        model_io.save_model(TwoLayerRegressor(), tmp_path / "u.npz")


# ------------------------------------------------- zero-size items, empty weights, fuzz
def test_zero_itemsize_member_refused(tmp_path, model):
    # ~1 KB: an H=0 model claiming 10**12 features, named by a <U0 array of 10**12
    # strings that takes 0 bytes; today's code raised MemoryError building the names
    def meta_change(meta):
        meta["fitted"]["n_features_in_"] = 10**12
        meta["params"].pop("hidden_units")

    entries = [(n, d) for n, d in model_entries(tmp_path, model, meta_change)
               if n not in ("coefs_0.npy", "intercepts_0.npy", "coefs_1.npy")]
    entries += [("coefs_0.npy", npy_header((10**12, 0), "<f4")),
                ("intercepts_0.npy", npy_header((0,), "<f4")),
                ("coefs_1.npy", npy_header((0, 3), "<f4")),
                ("feature_names_in_.npy", npy_header((10**12,), "<U0"))]
    bad = write_zip(tmp_path / "u0.npz", entries)
    error, peak = load_peak(bad)
    assert error is not None and re.search(
        r"u0\.npz: member feature_names_in_ has dtype <U0 of zero-size items", str(error)), error
    assert peak < 20_000_000, f"refusing the file traced {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("descr", ["|S0", "<U0", "|V0"])
def test_zero_itemsize_classes_refused(tmp_path, model, descr):
    entries = [(n, npy_header((10**12,), descr) if n == "classes_.npy" else d)
               for n, d in model_entries(tmp_path, model)]
    bad = write_zip(tmp_path / "z.npz", entries)
    with pytest.raises(ValueError, match=r"z\.npz: member classes_ has dtype \S+ of zero-size"):
        model_io.load_model(bad)


def test_no_hidden_unit_refused(tmp_path, model):
    # today's code loaded this model (hidden_units left out) and predicted a constant
    def empty(arrays):
        arrays["coefs_0"] = arrays["coefs_0"][:, :0]
        arrays["intercepts_0"] = arrays["intercepts_0"][:0]
        arrays["coefs_1"] = arrays["coefs_1"][:0]
        meta = json.loads(str(arrays["metadata"]))
        meta["params"].pop("hidden_units")
        arrays["metadata"] = np.array(json.dumps(meta))

    bad = rewrite(model_io.save_model(model, tmp_path / "m.npz"), tmp_path / "h0.npz", empty)
    with pytest.raises(ValueError, match=r"h0\.npz: empty weights: coefs_0 \(6, 0\)"):
        model_io.load_model(bad)


@pytest.mark.parametrize("classes", [["c", "a", "b"], [2, 0, 1], [0.0, np.nan, 2.0]])
def test_unsorted_classes_refused(tmp_path, model, classes):
    # the classifier maps labels by np.searchsorted(classes_, y): partial_fit on this
    # file raised IndexError or trained on the wrong columns
    bad = rewrite(model_io.save_model(model, tmp_path / "m.npz"), tmp_path / "uns.npz",
                  lambda a: a.update(classes_=np.array(classes)))
    with pytest.raises(ValueError, match=r"uns\.npz: classes_ must be sorted in increasing"):
        model_io.load_model(bad)


def _structure_positions(raw: bytes) -> list:
    """Offsets of the zip records' fixed fields and of the .npy headers in ``raw``."""
    spans = []
    for sig, length in ((b"PK\x03\x04", 30), (b"PK\x01\x02", 46), (b"PK\x05\x06", 22),
                        (b"\x93NUMPY", 128)):
        start = raw.find(sig)
        while start >= 0:
            spans.extend(range(start, min(start + length, len(raw))))
            start = raw.find(sig, start + 1)
    return sorted(set(spans))


def test_byte_mutations_raise_only_value_error(tmp_path):
    # byte-mutation fuzzing found NotImplementedError ("zip file version 11.8", from
    # zipfile) and tokenize.TokenError (numpy's .npy header parser) escaping load_model
    X, y = make_synthetic(60, 4, 3, seed=1)
    small = fit(X, y, hidden_units=3, max_iter=2)
    raw = model_io.save_model(small, tmp_path / "m.npz").read_bytes()
    rng = np.random.default_rng(20261202)
    structure = np.array(_structure_positions(raw))
    positions = np.concatenate([rng.choice(structure, 300, replace=False),
                                rng.integers(0, len(raw), 100)])
    bad = tmp_path / "bad.npz"
    loaded = 0
    for k, i in enumerate(positions):
        mutated = bytearray(raw)
        mutated[i] = (mutated[i] + 1 + rng.integers(255)) % 256  # never the same byte
        if k % 4 == 0:  # and sometimes a second byte nearby
            j = min(len(raw) - 1, i + 1 + rng.integers(8))
            mutated[j] ^= 1 << rng.integers(8)
        bad.write_bytes(bytes(mutated))
        try:
            model_io.load_model(bad)
        except ValueError:
            pass
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"mutating byte {i} of {len(raw)}: {type(exc).__name__}: {exc}")
        else:
            loaded += 1
    assert loaded < len(positions) // 2  # the mutations did reach the checks
