"""Tests of fastmlp.datasets: IDX reader, Fashion-MNIST search order, shipped sample, files."""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import struct
import threading
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

from fastmlp import datasets as ds

SAMPLE_SHA256 = {
    "t10k-images-idx3-ubyte.gz":
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz":
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    "train-10k-images-idx3-ubyte.gz":
        "9a11a1bc2396df51fe3f05eaad050a679adbf06587a44844eb8affc77cbbfc3a",
    "train-10k-labels-idx1-ubyte.gz":
        "f10c495dacdfd3df824e9cc7bb3f0aa5297dca3ac029018d92e6a371176077d2",
}
needs_debian = pytest.mark.skipif(
    not (ds.DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"full Fashion-MNIST not installed at {ds.DEBIAN_DIR} "
    "(apt-get install dataset-fashion-mnist)",
)


def idx_bytes(arr, code=0x08):
    """Craft IDX bytes by hand, independently of write_idx."""
    arr = np.asarray(arr)
    big = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4", 0x0E: ">f8"}[code]
    head = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(big).tobytes()


def make_fashion_dir(path, n_train=6, n_test=4, pixels=(3, 2), names=None):
    """A tiny Fashion-MNIST-shaped directory; returns the arrays written."""
    rng = np.random.default_rng(1)
    path.mkdir(parents=True, exist_ok=True)
    Xtr = rng.integers(0, 256, size=(n_train, *pixels), dtype=np.uint8)
    ytr = (np.arange(n_train) % 3).astype(np.uint8)
    Xte = rng.integers(0, 256, size=(n_test, *pixels), dtype=np.uint8)
    yte = (np.arange(n_test) % 3).astype(np.uint8)
    names = names or ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for name, arr in zip(names, (Xtr, ytr, Xte, yte), strict=True):
        data = idx_bytes(arr)
        (path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return Xtr, ytr, Xte, yte


# ------------------------------------------------------------------------------ IDX
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "arr,code",
    [
        (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08),
        (np.array([1, -2, 300], dtype=np.int16), 0x0B),
        (np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2), 0x0D),
        (np.array([[np.pi]]), 0x0E),
    ],
)
def test_read_idx_good(tmp_path, arr, code, gz):
    data = idx_bytes(arr, code)
    f = tmp_path / "a.idx"
    f.write_bytes(gzip.compress(data) if gz else data)
    out = ds.read_idx(f)
    assert out.shape == arr.shape
    assert out.dtype == arr.dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, arr)
    out[...] = 0  # a writable copy, not a view of the file's bytes


def test_write_idx_round_trip_and_deterministic(tmp_path):
    arr = np.arange(60, dtype=np.uint8).reshape(5, 12)
    a = ds.write_idx(tmp_path / "a-idx2-ubyte.gz", arr)
    b = ds.write_idx(tmp_path / "b-idx2-ubyte.gz", arr)
    assert a.read_bytes() == b.read_bytes()  # no time stamp, no file name in the header
    assert gzip.decompress(a.read_bytes()) == idx_bytes(arr)
    np.testing.assert_array_equal(ds.read_idx(a), arr)
    raw = ds.write_idx(tmp_path / "raw.idx", arr.astype(np.float64))
    assert raw.read_bytes() == idx_bytes(arr.astype(np.float64), 0x0E)
    with pytest.raises(ValueError, match="cannot hold dtype"):
        ds.write_idx(tmp_path / "c.idx", np.array([1 + 2j]))


def test_read_idx_wrong_magic(tmp_path):
    f = tmp_path / "not-idx.bin"
    f.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match=r"not-idx\.bin: not an IDX file \(magic number 0x1234"):
        ds.read_idx(f)


def test_read_idx_unknown_type_and_zero_dims(tmp_path):
    f = tmp_path / "odd.idx"
    f.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match=r"odd\.idx: unknown IDX type code 0x07"):
        ds.read_idx(f)
    f.write_bytes(b"\x00\x00\x08\x00")
    with pytest.raises(ValueError, match=r"odd\.idx: IDX header has 0 dimensions"):
        ds.read_idx(f)


def test_read_idx_truncated(tmp_path):
    data = idx_bytes(np.zeros((4, 5), np.uint8))
    f = tmp_path / "short.idx"
    f.write_bytes(data[:-3])
    with pytest.raises(ValueError, match=r"short\.idx: truncated IDX data.*\(4, 5\).*20 bytes.*17"):
        ds.read_idx(f)
    f.write_bytes(data[:6])  # cut inside the dimensions
    with pytest.raises(ValueError, match=r"short\.idx: truncated IDX header"):
        ds.read_idx(f)
    f.write_bytes(data[:2])
    with pytest.raises(ValueError, match=r"short\.idx: not an IDX file \(only 2 bytes"):
        ds.read_idx(f)


def test_read_idx_bad_dims_extra_data(tmp_path):
    f = tmp_path / "long.idx"
    f.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match=r"long\.idx: IDX data longer than its header says"):
        ds.read_idx(f)


def test_read_idx_truncated_gzip(tmp_path):
    z = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8) % 7))
    f = tmp_path / "cut.gz"
    f.write_bytes(z[: len(z) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz: corrupt or truncated gzip data"):
        ds.read_idx(f)


# ---------------------------------------------------------------- Fashion-MNIST search
def test_explicit_path_loads_and_scales(tmp_path):
    Xtr, ytr, Xte, yte = make_fashion_dir(tmp_path / "fm")
    data = ds.load_fashion_mnist(tmp_path / "fm")
    assert data.source == "path"
    X_train, y_train, X_test, y_test = data  # unpacks like a tuple
    assert X_train.dtype == np.float32 and X_train.shape == (6, 6)
    assert y_train.dtype == np.int64
    np.testing.assert_allclose(X_train, Xtr.reshape(6, -1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(y_test, yte)
    assert X_test.min() >= 0 and X_test.max() <= 1
    assert data.files["train_images"].name == "train-images-idx3-ubyte.gz"


def test_raw_idx_names_are_found(tmp_path):
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    make_fashion_dir(tmp_path, names=names)
    data = ds.load_fashion_mnist(tmp_path)
    assert data.X_train.shape == (6, 6)
    assert data.files["test_labels"].name == "t10k-labels-idx1-ubyte"


def test_mismatched_counts_name_both_files(tmp_path):
    make_fashion_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(5, np.uint8)))
    )
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz holds 6 images but "
                       r".*train-labels-idx1-ubyte\.gz holds 5 labels"):
        ds.load_fashion_mnist(tmp_path)


def test_corrupt_file_in_dir_named(tmp_path):
    make_fashion_dir(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage!")
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: not an IDX file"):
        ds.load_fashion_mnist(tmp_path)


def test_search_order_env_then_debian_then_sample(tmp_path, monkeypatch):
    env_dir, deb_dir, sample_dir = tmp_path / "env", tmp_path / "deb", tmp_path / "sample"
    make_fashion_dir(env_dir, n_train=3)
    make_fashion_dir(deb_dir, n_train=6)
    make_fashion_dir(sample_dir, n_train=9, names=[
        "train-10k-images-idx3-ubyte.gz", "train-10k-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
    given = tmp_path / "given"
    make_fashion_dir(given, n_train=12)
    monkeypatch.setattr(ds, "DEBIAN_DIR", deb_dir)
    monkeypatch.setattr(ds, "SAMPLE_DIR", sample_dir)
    monkeypatch.setenv("FASTMLP_DATA", str(env_dir))

    d = ds.load_fashion_mnist(given)
    assert (d.source, d.X_train.shape[0]) == ("path", 12)
    d = ds.load_fashion_mnist()
    assert (d.source, d.X_train.shape[0]) == ("env", 3)
    monkeypatch.delenv("FASTMLP_DATA")
    d = ds.load_fashion_mnist()
    assert (d.source, d.X_train.shape[0], d.location) == ("debian", 6, str(deb_dir))
    shutil.rmtree(deb_dir)
    d = ds.load_fashion_mnist()
    assert (d.source, d.X_train.shape[0]) == ("sample", 9)
    assert "sample" in d.name
    make_fashion_dir(deb_dir, n_train=6)
    assert ds.load_fashion_mnist(sample=True).source == "sample"
    shutil.rmtree(sample_dir)
    shutil.rmtree(deb_dir)
    with pytest.raises(ValueError, match="Fashion-MNIST not found: looked in .*deb.*sample"):
        ds.load_fashion_mnist()


def test_explicit_or_env_path_without_files_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty \(given path\) does not hold the Fashion-MNIST"):
        ds.load_fashion_mnist(tmp_path / "empty")
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"nowhere \(\$FASTMLP_DATA\) does not hold"):
        ds.load_fashion_mnist()


# ---------------------------------------------------------------------- shipped sample
@pytest.mark.parametrize("name", sorted(SAMPLE_SHA256))
def test_shipped_sample_checksums(name):
    assert ds.sha256_file(ds.SAMPLE_DIR / name) == SAMPLE_SHA256[name]


def test_shipped_sha256sums_file_and_readme_agree():
    listed = dict(
        reversed(line.split()) for line in (ds.SAMPLE_DIR / "SHA256SUMS").read_text().splitlines()
    )
    assert listed == SAMPLE_SHA256
    readme = (ds.SAMPLE_DIR.parent / "README.md").read_text()
    for name, digest in SAMPLE_SHA256.items():
        assert f"{digest}  {name}" in readme


def test_shipped_sample_shapes_labels_balance(monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    data = ds.load_fashion_mnist(sample=True)
    assert data.source == "sample"
    assert data.X_train.shape == (10_000, 784) and data.X_test.shape == (10_000, 784)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    for X in (data.X_train, data.X_test):
        assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(data.y_train), np.full(10, 1000))
    np.testing.assert_array_equal(np.bincount(data.y_test), np.full(10, 1000))
    assert data.class_names[0] == "T-shirt/top" and len(data.class_names) == 10
    # real images: no two train images are the same, and the classes differ on average
    assert np.unique(data.X_train[:2000], axis=0).shape[0] == 2000
    means = np.stack([data.X_train[data.y_train == c].mean(0) for c in range(10)])
    assert np.abs(means[1] - means[8]).max() > 0.3  # trousers vs bags


def test_max_train_max_test_stratified(monkeypatch):
    data = ds.load_fashion_mnist(sample=True, max_train=500, max_test=200, seed=3)
    assert data.X_train.shape == (500, 784) and data.X_test.shape == (200, 784)
    np.testing.assert_array_equal(np.bincount(data.y_train), np.full(10, 50))
    np.testing.assert_array_equal(np.bincount(data.y_test), np.full(10, 20))


def test_stratified_indices():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    idx = ds.stratified_indices(y, 10, seed=0)
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(y[idx]), [5, 3, 2])
    idx7 = ds.stratified_indices(y, 7, seed=0)  # 3.5, 2.1, 1.4 -> 3 + 2 + 1, remainder to 0
    np.testing.assert_array_equal(np.bincount(y[idx7]), [4, 2, 1])
    np.testing.assert_array_equal(idx, ds.stratified_indices(y, 10, seed=0))
    assert not np.array_equal(idx, ds.stratified_indices(y, 10, seed=1))
    with pytest.raises(ValueError, match="n must be in 1..100"):
        ds.stratified_indices(y, 101)


def test_make_sample_from_a_crafted_source(tmp_path):
    src = tmp_path / "src"
    Xtr, ytr, Xte, yte = make_fashion_dir(src, n_train=30, n_test=4)
    sums = ds.make_fashion_mnist_sample(src, tmp_path / "out", n_train=9, seed=0)
    out = tmp_path / "out"
    assert sorted(sums) == sorted(SAMPLE_SHA256)
    assert (out / "t10k-images-idx3-ubyte.gz").read_bytes() == (
        src / "t10k-images-idx3-ubyte.gz").read_bytes()
    for name, digest in sums.items():
        assert ds.sha256_file(out / name) == digest
    data = ds.load_fashion_mnist(out)
    keep = ds.stratified_indices(ytr, 9, 0)
    np.testing.assert_array_equal(data.y_train, ytr[keep])
    np.testing.assert_allclose(data.X_train * 255, Xtr[keep].reshape(9, -1), atol=1e-4)
    np.testing.assert_array_equal(np.bincount(data.y_train), [3, 3, 3])


@pytest.mark.fashion
@needs_debian
def test_full_debian_set():
    data = ds.load_fashion_mnist(ds.DEBIAN_DIR)
    assert data.X_train.shape == (60_000, 784) and data.X_test.shape == (10_000, 784)
    np.testing.assert_array_equal(np.bincount(data.y_train), np.full(10, 6000))
    assert data.X_train.dtype == np.float32 and 0 <= data.X_train.min() <= data.X_train.max() <= 1


@pytest.mark.fashion
@pytest.mark.slow
@needs_debian
def test_sample_regenerates_from_debian(tmp_path):
    ds.make_fashion_mnist_sample(ds.DEBIAN_DIR, tmp_path, n_train=10_000, seed=0)
    for name in SAMPLE_SHA256:
        # compare content, not gzip bytes (those could change with another zlib)
        np.testing.assert_array_equal(ds.read_idx(tmp_path / name),
                                      ds.read_idx(ds.SAMPLE_DIR / name))


# --------------------------------------------------------------------- other sources
def test_digits_split():
    data = ds.load_digits_split(test_size=0.25, seed=0)
    assert data.X_train.shape[1] == 64 and data.X_train.dtype == np.float32
    assert data.X_train.shape[0] + data.X_test.shape[0] == 1797
    assert data.X_train.min() == 0 and data.X_train.max() == 1
    assert set(np.unique(data.y_test)) == set(range(10))
    assert data.source == "sklearn"


def test_make_synthetic():
    X, y = ds.make_synthetic(300, 7, 4, seed=2, dtype=np.float64)
    assert X.shape == (300, 7) and X.dtype == np.float64 and X.flags.c_contiguous
    assert y.dtype == np.int64 and set(np.unique(y)) == {0, 1, 2, 3}
    X2, y2 = ds.make_synthetic(300, 7, 4, seed=2, dtype=np.float64)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert ds.make_synthetic(10, 3, 2)[0].dtype == np.float32
    with pytest.raises(ValueError, match="classes must be at least 2"):
        ds.make_synthetic(10, 3, 1)
    with pytest.raises(ValueError, match="dtype must be a floating type"):
        ds.make_synthetic(10, 3, 2, dtype=np.int32)


# ------------------------------------------------------------------------ user files
def test_load_npz_xy_and_split(tmp_path):
    X = np.arange(12.0).reshape(4, 3)
    np.savez(tmp_path / "xy.npz", X=X, y=np.array([0, 1, 0, 1]))
    d = ds.load_file(tmp_path / "xy.npz")
    np.testing.assert_array_equal(d.X_train, X)
    assert d.y_train.dtype == np.int64 and d.X_test is None and d.source == "file"
    np.savez(tmp_path / "split.npz", X_train=X, y_train=np.array(["a", "b", "a", "b"]),
             X_test=X[:2], y_test=np.array(["b", "a"]))
    d = ds.load_file(tmp_path / "split.npz")
    assert d.y_train.dtype.kind == "U" and list(d.y_test) == ["b", "a"]
    np.savez(tmp_path / "xonly.npz", X=X)
    assert ds.load_file(tmp_path / "xonly.npz").y_train is None


def test_load_npz_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", features=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"bad\.npz: expected arrays X \(and y\).*'features'"):
        ds.load_file(tmp_path / "bad.npz")
    np.savez(tmp_path / "rows.npz", X=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"rows\.npz: X has 3 rows but y has shape \(2,\)"):
        ds.load_file(tmp_path / "rows.npz")
    np.savez(tmp_path / "obj.npz", X=np.array([[1, None]], dtype=object), y=np.array([0]))
    with pytest.raises(ValueError, match=r"obj\.npz: member X holds Python objects"):
        ds.load_file(tmp_path / "obj.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "bad.npz").read_bytes()[:40])
    with pytest.raises(ValueError, match=r"cut\.npz"):
        ds.load_file(tmp_path / "cut.npz")
    np.save(tmp_path / "single.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"single\.npy: a single \.npy array"):
        ds.load_file(tmp_path / "single.npy")
    (tmp_path / "fake.npz").write_bytes(b"hello world")
    with pytest.raises(ValueError, match=r"fake\.npz: not a readable \.npz file"):
        ds.load_file(tmp_path / "fake.npz")
    with pytest.raises(FileNotFoundError, match=r"missing\.npz: no such file"):
        ds.load_file(tmp_path / "missing.npz")


def test_load_csv_last_column_and_header(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,b,label\n1,2,cat\n3,4.5,dog\n\n5,6,cat\n")
    d = ds.load_file(f)
    np.testing.assert_array_equal(d.X_train, [[1, 2], [3, 4.5], [5, 6]])
    assert list(d.y_train) == ["cat", "dog", "cat"]
    h = tmp_path / "h.csv"
    h.write_text("a,b,c\n1,2,3\n4,5,6\n")
    d = ds.load_file(h, label_column="a")
    np.testing.assert_array_equal(d.y_train, [1, 4])
    np.testing.assert_array_equal(d.X_train, [[2, 3], [5, 6]])
    assert d.y_train.dtype == np.int64
    g = tmp_path / "noheader.csv"
    g.write_text("0,1.5,2\n1,2.5,3\n")
    d = ds.load_file(g, label_column=0)
    np.testing.assert_array_equal(d.X_train, [[1.5, 2], [2.5, 3]])
    np.testing.assert_array_equal(d.y_train, [0, 1])
    d = ds.load_file(g, label_column=None)
    assert d.X_train.shape == (2, 3) and d.y_train is None


def test_load_csv_errors(tmp_path):
    f = tmp_path / "ragged.csv"
    f.write_text("1,2,0\n3,4\n")
    with pytest.raises(ValueError, match=r"ragged\.csv: line 2 has 2 fields, expected 3"):
        ds.load_file(f)
    f = tmp_path / "text.csv"
    f.write_text("1,2,0\n3,x,1\n")
    with pytest.raises(ValueError, match=r"text\.csv: features must be numbers"):
        ds.load_file(f)
    f = tmp_path / "float_labels.csv"
    f.write_text("1,2,0.5\n3,4,1\n")
    with pytest.raises(ValueError, match=r"float_labels\.csv \[label column 2\]: labels must be"):
        ds.load_file(f)
    with pytest.raises(ValueError, match=r"float_labels\.csv: no column named 'y' \(the file has"):
        ds.load_file(f, label_column="y")
    with pytest.raises(ValueError, match=r"label column 5 out of range for 3 columns"):
        ds.load_file(f, label_column=5)
    f = tmp_path / "empty.csv"
    f.write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.csv: empty CSV file"):
        ds.load_file(f)
    f = tmp_path / "nan.csv"
    f.write_text("1,nan,0\n3,4,1\n")
    with pytest.raises(ValueError, match=r"nan\.csv: features contain NaN"):
        ds.load_file(f)
    with pytest.raises(ValueError, match="is a directory"):
        ds.load_file(tmp_path)


# ----------------------------------------------------------- hostile or odd data files
def peak_of(call):
    """``(exception or None, peak bytes traced)`` of ``call()``."""
    tracemalloc.start()
    try:
        call()
    except ValueError as exc:
        error = exc
    else:
        error = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


def test_csv_field_over_the_csv_module_limit(tmp_path):
    f = tmp_path / "wide.csv"
    f.write_text("1,2,0\n" + "3" * 200_000 + ",4,1\n")
    with pytest.raises(ValueError, match=r"wide\.csv: line 2: not a readable CSV file "
                                         r"\(field larger than field limit \(131072\)\)"):
        ds.load_file(f)


def test_csv_over_max_bytes_refused(tmp_path):
    f = tmp_path / "big.csv"
    f.write_text("1,2,0\n" * 100)
    with pytest.raises(ValueError, match=r"big\.csv: larger than 100 bytes \(max_bytes\)"):
        ds.load_file(f, max_bytes=100)
    assert ds.load_file(f, max_bytes=600).X_train.shape == (100, 2)


def test_device_refused(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    # read to the end, /dev/zero never ends: the old reader ran until MemoryError
    with pytest.raises(ValueError, match=r"/dev/zero: a character device, expected a regular"):
        ds.load_file("/dev/zero")
    with pytest.raises(ValueError, match=r"/dev/zero: a character device"):
        ds.read_idx("/dev/zero")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
@pytest.mark.parametrize("reader", [ds.load_file, ds.read_idx])
def test_named_pipe_refused_without_blocking(tmp_path, reader):
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            reader(fifo)
        except ValueError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # opening a FIFO waits for a writer: release it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail(f"{reader.__name__} blocked on a named pipe")
    assert outcome and "data.csv: a pipe (FIFO), expected a regular file" in outcome[0]


def test_npz_over_max_bytes_refused_before_decompressing(tmp_path):
    f = tmp_path / "zeros.npz"
    X = np.zeros((50_000, 100))  # 40 MB, deflates to ~40 kB
    np.savez_compressed(f, X=X, y=np.zeros(50_000, dtype=np.int64))
    del X
    error, peak = peak_of(lambda: ds.load_file(f, max_bytes=10**6))
    assert error is not None and re.search(
        r"zeros\.npz: arrays \['X', 'y'\] take \d+ bytes uncompressed, more than "
        r"max_bytes=1000000", str(error)), error
    assert peak < 5_000_000, f"refusing the file traced {peak / 1e6:.1f} MB"


def test_npz_header_claiming_terabytes_refused(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    f = tmp_path / "tera.npz"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("X.npy", buf.getvalue() + bytes(64))  # np.load: MemoryError
    with pytest.raises(ValueError, match=r"tera\.npz: member X: its \.npy header says shape "
                                         r"\(1000000, 1000000\) of float64"):
        ds.load_file(f)


def test_npz_duplicate_member_refused(tmp_path):
    f = tmp_path / "dup.npz"
    np.savez(f, X=np.zeros((2, 2)), y=np.array([0, 1]))
    buf = io.BytesIO()
    np.save(buf, np.ones((2, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(f, "a") as z:
            z.writestr("X.npy", buf.getvalue())  # np.load would take this one silently
    with pytest.raises(ValueError, match=r"dup\.npz: duplicate members \['X'\]"):
        ds.load_file(f)


def test_idx_gzip_bomb_read_only_as_far_as_the_header_says(tmp_path):
    f = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(f, "wb", compresslevel=1) as gz:
        gz.write(idx_bytes(np.zeros((2, 2), np.uint8)))
        for _ in range(10):
            gz.write(bytes(10 << 20))  # 100 MB past the 4 bytes the header announces
    assert f.stat().st_size < 1_000_000
    error, peak = peak_of(lambda: ds.read_idx(f))
    assert error is not None and "IDX data longer than its header says" in str(error)
    assert peak < 5_000_000, f"refusing the file traced {peak / 1e6:.1f} MB"


def test_idx_header_over_max_bytes_refused(tmp_path):
    f = tmp_path / "huge.idx"
    f.write_bytes(struct.pack(">HBB3I", 0, 0x08, 3, 1000, 1000, 1000))
    with pytest.raises(ValueError, match=r"huge\.idx: IDX header says 1000000000 bytes of "
                                         r"data, more than max_bytes=1000000"):
        ds.read_idx(f, max_bytes=10**6)


# ------------------------------------------------------------- regression targets
def test_float_targets_with_target_values(tmp_path):
    X = np.arange(12.0).reshape(4, 3)
    y = np.array([0.5, -1.25, 3.0, 2.0])
    np.savez(tmp_path / "r.npz", X=X, y=y)
    with pytest.raises(ValueError, match=r"r\.npz \[y\]: labels must be class labels .*"
                                         r"non-integer numbers \(a regression target: load it "
                                         r"with target='values'\)"):
        ds.load_file(tmp_path / "r.npz")
    d = ds.load_file(tmp_path / "r.npz", target="values")
    assert d.y_train.dtype == np.float64
    np.testing.assert_array_equal(d.y_train, y)
    Y = np.column_stack([y, 2 * y])  # several targets, from a .npz
    np.savez(tmp_path / "split.npz", X_train=X, y_train=Y, X_test=X[:2], y_test=Y[:2])
    d = ds.load_file(tmp_path / "split.npz", target="values")
    assert d.y_train.shape == (4, 2) and d.y_test.shape == (2, 2)
    np.savez(tmp_path / "ints.npz", X=X, y=np.array([1, 2, 3, 4]))
    assert ds.load_file(tmp_path / "ints.npz", target="values").y_train.dtype == np.float64
    f = tmp_path / "r.csv"
    f.write_text("a,b,price\n1,2,10.5\n3,4,-2\n5,6,7.25\n")
    d = ds.load_file(f, label_column="price", target="values")
    np.testing.assert_array_equal(d.y_train, [10.5, -2.0, 7.25])
    np.testing.assert_array_equal(d.X_train, [[1, 2], [3, 4], [5, 6]])


def test_bad_regression_targets_refused(tmp_path):
    X = np.zeros((3, 2))
    np.savez(tmp_path / "nan.npz", X=X, y=np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match=r"nan\.npz \[y\]: regression targets contain NaN"):
        ds.load_file(tmp_path / "nan.npz", target="values")
    np.savez(tmp_path / "rows.npz", X=X, y=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"rows\.npz: X has 3 rows but y has shape \(2, 2\)"):
        ds.load_file(tmp_path / "rows.npz", target="values")
    np.savez(tmp_path / "cube.npz", X=X, y=np.zeros((3, 1, 1)))
    with pytest.raises(ValueError, match=r"cube\.npz \[y\]: regression targets must be 1-D"):
        ds.load_file(tmp_path / "cube.npz", target="values")
    np.savez(tmp_path / "two.npz", X=X, y=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"two\.npz: X has 3 rows but y has shape \(3, 2\)"):
        ds.load_file(tmp_path / "two.npz")  # class labels are one per row
    f = tmp_path / "text.csv"
    f.write_text("1,2,10\n3,4,cheap\n5,6,7\n")
    with pytest.raises(ValueError, match=r"text\.csv \[label column 2\]: regression targets "
                                         r"must be numbers, got 'cheap'"):
        ds.load_file(f, target="values")
    with pytest.raises(ValueError, match=r"target must be 'labels' or 'values', got 'floats'"):
        ds.load_file(f, target="floats")


# ------------------------------------------- zero-size items, rows from headers, long CSV
def npz_of_headers(path, members):
    """An ``.npz`` of ``{name: (shape, descr)}`` members holding only their headers."""
    with zipfile.ZipFile(path, "w") as z:
        for name, (shape, descr) in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                buf, {"descr": descr, "fortran_order": False, "shape": shape})
            z.writestr(f"{name}.npy", buf.getvalue())
    return path


@pytest.mark.parametrize("descr", ["|S0", "<U0", "|V0"])
def test_npz_zero_itemsize_refused(tmp_path, descr):
    # ~400 bytes: an X of 10**12 rows taking 0 bytes; today's code raised numpy's
    # _ArrayMemoryError converting it to float64
    f = npz_of_headers(tmp_path / "zero.npz", {"X": ((10**12, 1), descr)})
    error, peak = peak_of(lambda: ds.load_file(f))
    assert error is not None and re.search(
        r"zero\.npz: member X has dtype \S+ of zero-size items", str(error)), error
    assert peak < 5_000_000, f"refusing the file traced {peak / 1e6:.1f} MB"
    # a y of 10**7 zero-size labels next to a real X: today's code took 836 MB
    g = tmp_path / "y0.npz"
    with zipfile.ZipFile(g, "w") as z:
        buf = io.BytesIO()
        np.save(buf, np.zeros((3, 2)))
        z.writestr("X.npy", buf.getvalue())
    with zipfile.ZipFile(g, "a") as z:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": descr, "fortran_order": False, "shape": (10**7,)})
        z.writestr("y.npy", buf.getvalue())
    error, peak = peak_of(lambda: ds.load_file(g))
    assert error is not None and re.search(
        r"y0\.npz: member y has dtype \S+ of zero-size items", str(error)), error
    assert peak < 5_000_000, f"refusing the file traced {peak / 1e6:.1f} MB"


def test_npz_rows_of_x_and_y_compared_before_converting(tmp_path):
    # 10**7 one-byte labels next to 3 rows: today's code converted the labels to
    # Python strings (hundreds of MB) before the row-count error
    f = tmp_path / "rows.npz"
    np.savez_compressed(f, X=np.zeros((3, 2)), y=np.zeros(10**7, dtype="S1"))
    error, peak = peak_of(lambda: ds.load_file(f))
    assert error is not None and re.search(
        r"rows\.npz: X has 3 rows but y has shape \(10000000,\)", str(error)), error
    assert peak < 5_000_000, f"refusing the file traced {peak / 1e6:.1f} MB"
    g = tmp_path / "split.npz"
    np.savez(g, X_train=np.zeros((3, 2)), y_train=np.zeros(3), X_test=np.zeros((2, 5)),
             y_test=np.zeros(2))
    with pytest.raises(ValueError, match=r"split\.npz: X_train has 2 features, X_test 5"):
        ds.load_file(g)


def test_csv_long_field_refused_without_cells_times_longest(tmp_path):
    # 400 cells of "1" and one 131000-digit field: np.array(rows, dtype=str) gave
    # every cell the longest field's width (646 MB RSS before the ValueError)
    f = tmp_path / "long.csv"
    f.write_text("1,1,1,1\n" * 100 + "9" * 131_000 + ",1,1,0\n")
    # max_bytes bounds the read buffer (read_bounded asks for max_bytes + 1 bytes)
    error, peak = peak_of(lambda: ds.load_file(f, max_bytes=10**7))
    assert peak < 20_000_000, f"refusing the file traced {peak / 1e6:.1f} MB"
    assert error is not None and re.search(
        r"long\.csv: line 101: field 1 has 131000 characters, more than 1000", str(error)), error


def test_csv_fields_of_unequal_length_cost_their_own_size(tmp_path):
    # 200,000 cells of "1" and one 1000-character number: fixed-width text would take
    # 200,000 x 4 x 1000 bytes = 800 MB; the floats take 1.6 MB
    f = tmp_path / "mixed.csv"
    f.write_text("1,1,1,1,0\n" * 40_000 + "2." + "0" * 998 + ",1,1,1,1\n")
    loaded = []
    error, peak = peak_of(lambda: loaded.append(ds.load_file(f, max_bytes=10**7)))
    assert error is None, error
    d = loaded[0]
    assert d.X_train.shape == (40_001, 4) and d.X_train[-1, 0] == 2.0
    assert d.y_train.shape == (40_001,) and d.y_train[-1] == 1
    assert peak < 100_000_000, f"loading the file traced {peak / 1e6:.1f} MB"


def test_csv_label_column_over_max_bytes_refused(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("1,a\n" * 1000 + "1," + "b" * 900 + "\n")
    with pytest.raises(ValueError, match=r"labels\.csv: the label column would take 3603600 "
                                         r"bytes as text .* more than max_bytes=100000"):
        ds.load_file(f, max_bytes=100_000)
    assert ds.load_file(f).y_train.shape == (1001,)


# ------------------------------------------------------------ sparse files (issue 10)
def _csr(seed=0):
    import scipy.sparse as sp

    X = sp.random(40, 25, density=0.2, format="csr", random_state=seed)
    X.sum_duplicates()
    return X, np.arange(40) % 3


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_load_sparse_npz_stays_sparse(tmp_path, fmt):
    import scipy.sparse as sp

    X, y = _csr()
    sp.save_npz(tmp_path / "x.npz", X.asformat(fmt))
    data = ds.load_file(tmp_path / "x.npz")
    assert sp.issparse(data.X_train) and data.X_train.format == "csr"
    assert data.X_train.dtype == np.float64 and data.y_train is None
    assert abs(data.X_train - X).max() == 0
    np.savez(tmp_path / "y.npz", data=X.data, indices=X.indices, indptr=X.indptr,
             shape=np.array(X.shape), format="csr", y=y)
    data = ds.load_file(tmp_path / "y.npz")
    np.testing.assert_array_equal(data.y_train, y)
    assert ds.load_file(tmp_path / "y.npz", target="values").y_train.dtype == np.float64


def test_load_svmlight_stays_sparse(tmp_path):
    import scipy.sparse as sp
    from sklearn.datasets import dump_svmlight_file

    X, y = _csr()
    dump_svmlight_file(X, y, str(tmp_path / "x.svm"))
    data = ds.load_file(tmp_path / "x.svm")
    assert sp.issparse(data.X_train) and data.X_train.shape == X.shape
    assert abs(data.X_train - X).max() < 1e-12
    np.testing.assert_array_equal(data.y_train, y)
    assert ds.load_file(tmp_path / "x.svm", n_features=30).X_train.shape == (40, 30)
    (tmp_path / "f.libsvm").write_text("0.5 1:1\n1.5 2:1\n")
    with pytest.raises(ValueError, match="target='values'"):
        ds.load_file(tmp_path / "f.libsvm")  # non-integer labels
    np.testing.assert_array_equal(ds.load_file(tmp_path / "f.libsvm", target="values").y_train,
                                  [0.5, 1.5])
    with pytest.raises(ValueError, match="f.libsvm"):
        ds.load_file(tmp_path / "f.libsvm", max_bytes=4)  # bounded read


@pytest.mark.parametrize("damage", ["index", "indptr", "nan", "format", "shape", "size"])
def test_malformed_sparse_npz_refused_naming_the_file(tmp_path, damage):
    X, y = _csr()
    members = {"data": X.data.copy(), "indices": X.indices.copy(), "indptr": X.indptr.copy(),
               "shape": np.array(X.shape), "format": np.array(b"csr"), "y": y}
    if damage == "index":
        members["indices"][0] = 99
    elif damage == "indptr":
        members["indptr"][5] = members["indptr"][6] + 3
    elif damage == "nan":
        members["data"][0] = np.nan
    elif damage == "format":
        members["format"] = np.array(b"dia")
    elif damage == "shape":
        members["shape"] = np.array([40])
    np.savez(tmp_path / "bad.npz", **members)
    with pytest.raises(ValueError, match="bad.npz"):
        ds.load_file(tmp_path / "bad.npz", max_bytes=100 if damage == "size" else 2**31)
