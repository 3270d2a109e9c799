"""Data for fastmlp: Fashion-MNIST, scikit-learn's digits, synthetic blobs, user files.

Fashion-MNIST (Zalando Research, MIT licence) is looked for, in order, at

1. an explicit ``path`` given to :func:`load_fashion_mnist`,
2. the directory in the environment variable ``FASTMLP_DATA``,
3. ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``),
4. the sample shipped in the repository's ``datasets/fashion-mnist`` directory: the
   original 10,000-image test split and a stratified 10,000-image subset of the
   train split, made by :func:`make_fashion_mnist_sample`.

The files are in IDX format (gzipped or not), read by :func:`read_idx`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import os
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._files import MAX_FILE_BYTES, NpzArchive, atomic_write, open_regular, read_bounded

__all__ = [
    "DEBIAN_DIR",
    "FASHION_CLASSES",
    "SAMPLE_DIR",
    "Dataset",
    "load_digits_split",
    "load_fashion_mnist",
    "load_file",
    "make_fashion_mnist_sample",
    "make_synthetic",
    "read_idx",
    "sha256_file",
    "stratified_indices",
    "write_idx",
]

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# The repository's datasets/ directory, next to the package directory.
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "datasets" / "fashion-mnist"
ENV_VAR = "FASTMLP_DATA"

# File names tried in a Fashion-MNIST directory, first match wins. The shipped
# sample names its train subset "train-10k-..." so it is never taken for the full set.
_FILE_NAMES = {
    "train_images": ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte",
                     "train-10k-images-idx3-ubyte.gz"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte",
                     "train-10k-labels-idx1-ubyte.gz"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"),
}

# IDX type codes (third byte of the magic number) and their big-endian dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


@dataclass
class Dataset:
    """Train and test arrays and where they came from.

    Unpacks like a tuple: ``X_train, y_train, X_test, y_test = load_fashion_mnist()``.

    Attributes
    ----------
    X_train, y_train, X_test, y_test : ndarray
        Features (n_samples, n_features) and labels (n_samples,). For a user file
        holding one unsplit ``X, y``, those are ``X_train, y_train`` and the test
        arrays are ``None``.
    source : str
        ``"path"``, ``"env"``, ``"debian"``, ``"sample"``, ``"sklearn"``, ``"synthetic"``
        or ``"file"``.
    location : str
        The directory or file read, or a short description.
    class_names : tuple of str or None
        Human names of the classes ``0..C-1``, where known.
    files : dict
        The files read, by role (``"train_images"`` ...).
    """

    X_train: np.ndarray
    y_train: np.ndarray | None
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str
    location: str
    class_names: tuple | None = None
    files: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.X_train, self.y_train, self.X_test, self.y_test))

    @property
    def name(self) -> str:
        """One line naming the data: source, location and sizes."""
        n_test = 0 if self.X_test is None else self.X_test.shape[0]
        what = {
            "path": "Fashion-MNIST (given path)",
            "env": f"Fashion-MNIST (${ENV_VAR})",
            "debian": "Fashion-MNIST (full set, Debian package dataset-fashion-mnist)",
            "sample": "Fashion-MNIST (sample shipped in datasets/)",
            "sklearn": "scikit-learn's digits",
        }.get(self.source, self.source)
        return f"{what} at {self.location}: {self.X_train.shape[0]} train, {n_test} test"


# ------------------------------------------------------------------------------ IDX
def _idx_bytes(path: Path, max_bytes: int) -> bytes:
    """Return the IDX bytes of ``path``, gunzipped when they start with the gzip magic.

    The header is read first and the data only as far as it says (plus one byte, to
    tell a longer file), so a small gzip that inflates to gigabytes costs nothing.
    """
    with open_regular(path) as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        try:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\0\0":  # not IDX: read_idx says why
                return head + f.read(64)
            dims = f.read(4 * head[3])
            need = math.prod(struct.unpack(f">{len(dims) // 4}I", dims[: len(dims) // 4 * 4]))
            need *= _IDX_DTYPES[head[2]].itemsize if head[2] in _IDX_DTYPES else 1
            if need > max_bytes:
                raise ValueError(f"{path}: IDX header says {need} bytes of data, more than "
                                 f"max_bytes={max_bytes}")
            return head + dims + f.read(need + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def read_idx(path, *, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or raw.

    The header is two zero bytes, a type code (``0x08`` unsigned byte ... ``0x0E``
    float64), the number of dimensions, then each dimension as a big-endian
    uint32; the data follow in big-endian C order.

    Parameters
    ----------
    path : str or Path
        The file; gzip is recognised by its content, not its name.
    max_bytes : int, default=2**31
        Largest data the header may announce; more is refused before it is read.

    Returns
    -------
    array : ndarray
        In native byte order, shape given by the header.

    Raises
    ------
    ValueError
        Naming the file, for a wrong magic number, an unknown type code, zero
        dimensions, data shorter or longer than the header says, more than
        ``max_bytes``, or a path that is not a regular file (a device, a pipe).
    """
    path = Path(path)
    data = _idx_bytes(path, max_bytes)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(data)} bytes, no header)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number 0x{data[:4].hex()}, expected 0x0000xxyy)"
        )
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header has 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow
    got = len(data) - header
    if got < expected:
        raise ValueError(
            f"{path}: truncated IDX data: header says shape {dims} ({expected} bytes), "
            f"file has {got} bytes"
        )
    if got > expected:
        raise ValueError(
            f"{path}: IDX data longer than its header says: shape {dims} needs {expected} "
            "bytes, the file has more"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # a writable native-order copy


def write_idx(path, array, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzipped if ``compress`` or the name ends in ``.gz``.

    The gzip stream has no time stamp and no file name, so the same array always
    gives the same bytes (with the same zlib).
    """
    path = Path(path)
    arr = np.asarray(array)
    key = arr.dtype.newbyteorder("=")
    if key not in _IDX_CODES:
        raise ValueError(f"IDX cannot hold dtype {arr.dtype} (writing {path})")
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {arr.ndim} (writing {path})")
    header = struct.pack(">HBB", 0, _IDX_CODES[key], arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + np.ascontiguousarray(arr, dtype=_IDX_DTYPES[_IDX_CODES[key]]).tobytes()
    if compress is None:
        compress = path.name.endswith(".gz")
    with atomic_write(path) as raw:  # a failed write keeps the previous file
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9,
                               mtime=0) as gz:
                gz.write(payload)
        else:
            raw.write(payload)
    return path


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- Fashion-MNIST
def _find_files(directory: Path) -> dict | None:
    """Return the four IDX files in ``directory`` by role, or None if any is missing."""
    found = {}
    for role, names in _FILE_NAMES.items():
        for name in names:
            if (directory / name).is_file():
                found[role] = directory / name
                break
        else:
            return None
    return found


def _read_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    X = read_idx(images)
    y = read_idx(labels)
    if X.ndim < 2:
        raise ValueError(f"{images}: expected images (n, rows, cols), got shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"{labels}: expected labels (n,), got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"{images} holds {X.shape[0]} images but {labels} holds {y.shape[0]} labels"
        )
    X = X.reshape(X.shape[0], -1)
    if X.dtype == np.uint8:
        X = X.astype(np.float32) / np.float32(255)  # pixels 0..255 -> [0, 1]
    else:
        X = X.astype(np.float32)
    return X, y.astype(np.int64)


def fashion_mnist_locations(path=None) -> list[tuple[str, Path]]:
    """Return the candidate directories in search order as ``(source, directory)`` pairs."""
    places = []
    if path is not None:
        places.append(("path", Path(path)))
    env = os.environ.get(ENV_VAR)
    if env:
        places.append(("env", Path(env)))
    places.append(("debian", DEBIAN_DIR))
    places.append(("sample", SAMPLE_DIR))
    return places


def load_fashion_mnist(
    path=None, *, sample: bool = False, max_train: int | None = None,
    max_test: int | None = None, seed: int = 0,
) -> Dataset:
    """Load Fashion-MNIST from the first place that has it.

    Searched in order: ``path``, the ``FASTMLP_DATA`` environment variable, the
    Debian location ``/usr/share/datasets/fashion-mnist``, the shipped sample.
    An explicit ``path`` (or ``FASTMLP_DATA``) that lacks the files is an error,
    not a reason to look elsewhere.

    Parameters
    ----------
    path : str or Path, default=None
        A directory holding ``train-images-idx3-ubyte[.gz]``,
        ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]`` and
        ``t10k-labels-idx1-ubyte[.gz]``.
    sample : bool, default=False
        Skip the other places and load the shipped sample.
    max_train, max_test : int, default=None
        Keep at most this many train / test images, a stratified selection
        (:func:`stratified_indices` with ``seed``) in the original order.
    seed : int, default=0
        Seed of that selection.

    Returns
    -------
    data : Dataset
        ``X_*`` float32 of shape (n, 784) in [0, 1], ``y_*`` int64 in 0..9, and
        ``source`` in ``{"path", "env", "debian", "sample"}``.
    """
    places = [("sample", SAMPLE_DIR)] if sample else fashion_mnist_locations(path)
    for source, directory in places:
        files = _find_files(directory)
        if files is None:
            if source in ("path", "env"):
                where = "given path" if source == "path" else f"${ENV_VAR}"
                raise ValueError(
                    f"{directory} ({where}) does not hold the Fashion-MNIST IDX files "
                    "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
                )
            continue
        X_train, y_train = _read_pair(files["train_images"], files["train_labels"])
        X_test, y_test = _read_pair(files["test_images"], files["test_labels"])
        if X_train.shape[1] != X_test.shape[1]:
            raise ValueError(
                f"{files['train_images']} has images of {X_train.shape[1]} pixels but "
                f"{files['test_images']} has {X_test.shape[1]}"
            )
        if max_train is not None and max_train < X_train.shape[0]:
            keep = stratified_indices(y_train, max_train, seed)
            X_train, y_train = X_train[keep], y_train[keep]
        if max_test is not None and max_test < X_test.shape[0]:
            keep = stratified_indices(y_test, max_test, seed)
            X_test, y_test = X_test[keep], y_test[keep]
        return Dataset(X_train, y_train, X_test, y_test, source, str(directory),
                       FASHION_CLASSES, files)
    raise ValueError(
        "Fashion-MNIST not found: looked in "
        + ", ".join(str(d) for _, d in places)
        + " (install the Debian package dataset-fashion-mnist or set FASTMLP_DATA)"
    )


def stratified_indices(y, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` samples of ``y`` with each class's share kept.

    Each class gets ``n * count / total`` rounded down, and the remaining slots go
    to the classes with the largest remainders (ties to the smaller label). Within
    a class the samples are a uniform random choice by ``np.random.default_rng(seed)``.
    """
    y = np.asarray(y)
    total = y.shape[0]
    if not 0 < n <= total:
        raise ValueError(f"n must be in 1..{total} (the number of labels), got {n}")
    classes, counts = np.unique(y, return_counts=True)
    exact = n * counts / total
    take = np.floor(exact).astype(np.int64)
    rest = n - take.sum()
    order = np.lexsort((classes, -(exact - take)))  # largest remainder first
    take[order[:rest]] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(y == c), size=k, replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def make_fashion_mnist_sample(
    source_dir=DEBIAN_DIR, out_dir=SAMPLE_DIR, *, n_train: int = 10_000, seed: int = 0
) -> dict[str, str]:
    """Make the shipped sample from a full Fashion-MNIST directory.

    Copies the test split ``t10k-*`` byte for byte and writes a stratified subset
    of ``n_train`` train images (:func:`stratified_indices` with ``seed``, kept in
    their original order) as ``train-10k-images-idx3-ubyte.gz`` and
    ``train-10k-labels-idx1-ubyte.gz``; writes ``SHA256SUMS`` (``sha256sum -c``
    format).

    Returns
    -------
    checksums : dict
        File name -> hex SHA-256 of each written file.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {
        "train_images": "train-10k-images-idx3-ubyte.gz",
        "train_labels": "train-10k-labels-idx1-ubyte.gz",
    }
    images = read_idx(source_dir / "train-images-idx3-ubyte.gz")
    labels = read_idx(source_dir / "train-labels-idx1-ubyte.gz")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{source_dir}: {images.shape[0]} train images but "
                         f"{labels.shape[0]} labels")
    keep = stratified_indices(labels, n_train, seed)
    write_idx(out_dir / names["train_images"], images[keep])
    write_idx(out_dir / names["train_labels"], labels[keep])
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with open_regular(source_dir / name) as src, atomic_write(out_dir / name) as dst:
            shutil.copyfileobj(src, dst)
    files = sorted([*names.values(), "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
    sums = {name: sha256_file(out_dir / name) for name in files}
    with atomic_write(out_dir / "SHA256SUMS", "w") as f:
        f.write("".join(f"{h}  {n}\n" for n, h in sums.items()))
    return sums


# -------------------------------------------------------------------- other data sets
def load_digits_split(test_size: float = 0.25, seed: int = 0) -> Dataset:
    """Scikit-learn's 1,797 8x8 digits, pixels scaled to [0, 1], stratified split.

    Returns
    -------
    data : Dataset
        ``X_*`` float32 of shape (n, 64), ``y_*`` int64 in 0..9, ``source="sklearn"``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)  # pixels 0..16 -> [0, 1]
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=y
    )
    return Dataset(X_train, y_train, X_test, y_test, "sklearn",
                   "sklearn.datasets.load_digits", tuple(str(c) for c in range(10)))


def make_synthetic(n: int, d: int, classes: int, seed: int = 0, dtype=np.float32):
    """Gaussian blobs for benchmarks and tests: ``(X, y)``.

    ``classes`` centres drawn from N(0, 1) in ``d`` dimensions; each sample is
    its class's centre plus N(0, 1) noise; labels are uniform over the classes.

    Returns
    -------
    X : ndarray of shape (n, d), C-contiguous, of ``dtype``
    y : ndarray of shape (n,), int64 in ``0..classes-1``
    """
    if n < 1 or d < 1:
        raise ValueError(f"n and d must be positive, got n={n}, d={d}")
    if classes < 2:
        raise ValueError(f"classes must be at least 2, got {classes}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating type, got {dtype}")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d))
    y = rng.integers(0, classes, size=n, dtype=np.int64)
    X = centres[y] + rng.standard_normal((n, d))  # (n, d)
    return np.ascontiguousarray(X, dtype=dtype), y


# ------------------------------------------------------------------------- user files
def _labels(values, where: str) -> np.ndarray:
    """Labels as int64 when all are integers, float labels refused, else strings."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{where}: labels must be class labels (integers or strings), "
                             "got non-integer numbers (a regression target: load it with "
                             "target='values')")
        return arr.astype(np.int64)
    if arr.dtype.kind in "US" or arr.dtype == object:
        strs = np.asarray([str(v) for v in arr.ravel()]).reshape(arr.shape)
        try:
            as_float = strs.astype(np.float64)
        except ValueError:
            return strs
        return _labels(as_float, where)
    raise ValueError(f"{where}: cannot use labels of dtype {arr.dtype}")


def _values(values, where: str) -> np.ndarray:
    """Regression targets: float64 of shape (n,) or (n, n_targets), finite numbers."""
    arr = np.asarray(values)
    if arr.dtype.kind in "US" or arr.dtype == object:
        strs = [str(v) for v in arr.ravel()]
        try:
            arr = np.asarray(strs, dtype=np.float64).reshape(arr.shape)
        except ValueError:
            bad = next(v for v in strs if not _is_number(v))
            raise ValueError(f"{where}: regression targets must be numbers, got "
                             f"{bad[:40]!r}") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{where}: cannot use regression targets of dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"{where}: regression targets must be 1-D (n,) or 2-D "
                         f"(n, n_targets), got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: regression targets contain NaN or infinity")
    return arr


def _targets(values, where: str, target: str) -> np.ndarray:
    """``y`` as class labels (``target='labels'``) or as numbers (``'values'``)."""
    if np.ndim(values) == 0:
        raise ValueError(f"{where}: targets must hold one per row, got a single value "
                         "(a 0-d array)")
    return _values(values, where) if target == "values" else _labels(values, where)


def _features(values, where: str) -> np.ndarray:
    try:
        X = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: features must be numbers ({exc})") from None
    if X.ndim != 2:
        if X.ndim >= 3:  # images: flatten all but the first axis
            X = X.reshape(X.shape[0], -1)
        else:
            raise ValueError(f"{where}: features must be 2-D (n_samples, n_features), "
                             f"got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{where}: no data (shape {X.shape})")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{where}: features contain NaN or infinity")
    return X


def _npz_arrays(path: Path, npz: NpzArchive, max_bytes: int) -> list:
    """Return ``[X_train, y_train, X_test, y_test]`` from an open archive (``None`` if absent).

    Only the arrays used are read, after their sizes (at most ``max_bytes`` in all)
    and ``.npy`` headers are checked.
    """
    keys = set(npz.infos)
    if {"X_train", "y_train", "X_test", "y_test"} <= keys:
        names = ("X_train", "y_train", "X_test", "y_test")
    elif "X" in keys:
        names = ("X", "y" if "y" in keys else None, None, None)
    else:
        raise ValueError(
            f"{path}: expected arrays X (and y), or X_train, y_train, X_test, y_test; "
            f"found {sorted(keys)}"
        )
    used = [k for k in names if k is not None]
    total = npz.total_size(used)
    if total > max_bytes:
        raise ValueError(f"{path}: arrays {used} take {total} bytes uncompressed, more than "
                         f"max_bytes={max_bytes}; pass a larger max_bytes if you trust the file")
    # headers: sizes match, no objects, no zero-size items, elements within max_bytes
    members = {k: npz.member(k, max_bytes) for k in used}
    _check_npz_shapes(path, [None if k is None else members[k] for k in names])
    return [None if k is None else npz.read(members[k]) for k in names]


def _check_npz_shapes(path: Path, members: list) -> None:
    """Rows of X against y (and features of X_train against X_test), from the headers.

    Checked before any member is read or converted, so a ``y`` of millions of strings
    next to an ``X`` of three rows is refused without converting the strings.
    """
    X_train, y_train, X_test, y_test = members
    for X, y, nx, ny in ((X_train, y_train, "X", "y"), (X_test, y_test, "X_test", "y_test")):
        if X is None or y is None or X.ndim == 0 or y.ndim == 0:
            continue  # no pair, or a 0-d array the conversions refuse
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"{path}: {nx} has {X.shape[0]} rows but {ny} has shape "
                             f"{y.shape}")
    if X_test is not None and X_train.ndim >= 2 and X_test.ndim >= 2:
        d_train, d_test = math.prod(X_train.shape[1:]), math.prod(X_test.shape[1:])
        if d_train != d_test:
            raise ValueError(f"{path}: X_train has {d_train} features, X_test {d_test}")


SVMLIGHT_SUFFIXES = (".svm", ".svmlight", ".libsvm")
_SPARSE_NPZ_MEMBERS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
                       "coo": ("data", "row", "col")}


def _sparse_features(X, where: str):
    """Check a sparse ``X`` (every raw array, NaN/inf); return it as a canonical float64 CSR.

    Never densified: the estimators train on it as it is.
    """
    from ._sparse import CSRArrays

    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{where}: no data (shape {X.shape})")
    try:
        return CSRArrays.of(X, np.float64, name="X").matrix()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _load_sparse_npz(path: Path, npz: NpzArchive, max_bytes: int, target: str) -> Dataset:
    """Read a ``scipy.sparse.save_npz`` archive: X sparse (CSR, CSC or COO), labels ``y`` if any.

    Every member's header is checked before it is read, the sizes together
    bounded by ``max_bytes``, and the arrays validated before scipy builds the
    matrix from them (an index out of range or a non-monotone ``indptr`` is a
    ValueError naming the file).
    """
    import scipy.sparse as sp

    from . import _sparse

    keys = set(npz.infos)
    fmt_member = npz.member("format", 64)
    if fmt_member.dtype.kind not in "SU" or fmt_member.shape != ():
        raise ValueError(f"{path}: member 'format' must be a string such as 'csr'")
    fmt = str(npz.read(fmt_member).item(), "ascii") if fmt_member.dtype.kind == "S" else str(
        npz.read(fmt_member).item())
    if fmt not in _SPARSE_NPZ_MEMBERS:
        raise ValueError(f"{path}: sparse format {fmt!r} is not supported (csr, csc or coo)")
    names = list(_SPARSE_NPZ_MEMBERS[fmt]) + ["shape"] + (["y"] if "y" in keys else [])
    missing = [k for k in names if k not in keys]
    if missing:
        raise ValueError(f"{path}: a {fmt} matrix needs the arrays {missing}; found "
                         f"{sorted(keys)}")
    total = npz.total_size(names)
    if total > max_bytes:
        raise ValueError(f"{path}: arrays {names} take {total} bytes uncompressed, more than "
                         f"max_bytes={max_bytes}; pass a larger max_bytes if you trust the file")
    members = {k: npz.member(k, max_bytes) for k in names}
    shape_m = members["shape"]
    if shape_m.dtype.kind not in "iu" or shape_m.shape != (2,):
        raise ValueError(f"{path}: member 'shape' must hold two integers")
    arrays = {k: npz.read(m) for k, m in members.items()}
    n, d = (int(v) for v in arrays["shape"])
    if n < 0 or d < 0:
        raise ValueError(f"{path}: negative shape {(n, d)}")
    if 8 * (max(n, d) + 1) > max_bytes:  # scipy's conversion allocates an indptr that long
        raise ValueError(f"{path}: shape {(n, d)} needs index arrays of more than max_bytes="
                         f"{max_bytes} bytes; pass a larger max_bytes if you trust the file")
    data = arrays["data"]
    try:
        if fmt == "coo":
            X = sp.coo_matrix((np.empty(0), (np.empty(0, np.int64), np.empty(0, np.int64))),
                              shape=(n, d))
            X.data, X.row, X.col = data, arrays["row"], arrays["col"]  # checked by check_csr
        else:
            major, minor = (n, d) if fmt == "csr" else (d, n)
            _sparse.check_csr_arrays(data, arrays["indices"], arrays["indptr"], minor,
                                     n_samples=major, name="X")
            cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
            X = cls((data, arrays["indices"], arrays["indptr"]), shape=(n, d), copy=False)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    X = _sparse_features(X, f"{path} [X]")
    y = None
    if "y" in arrays:
        y = _targets(arrays["y"], f"{path} [y]", target)
        if y.shape[0] != X.shape[0] or (y.ndim != 1 and target == "labels"):
            raise ValueError(f"{path}: X has {X.shape[0]} rows but y has shape {y.shape}")
    return Dataset(X, y, None, None, "file", str(path), files={"data": path})


def _load_svmlight(path: Path, raw: bytes, target: str, n_features=None) -> Dataset:
    """svmlight/libsvm text (``label index:value ...`` a line): X a float64 CSR, y its labels.

    Read by ``sklearn.datasets.load_svmlight_file`` from the bytes already read
    (bounded); indices zero- or one-based as it decides (``zero_based='auto'``:
    one-based unless an index 0 occurs). ``n_features`` widens X to a model's
    input (an evaluation file need not use the last feature).
    """
    from sklearn.datasets import load_svmlight_file

    try:
        X, y = load_svmlight_file(io.BytesIO(raw), n_features=n_features, dtype=np.float64)
    except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise ValueError(f"{path}: not a readable svmlight/libsvm file ({exc})") from None
    X = _sparse_features(X, f"{path} [X]")
    y = _targets(y, f"{path} [labels]", target)
    return Dataset(X, y, None, None, "file", str(path), files={"data": path})


def _load_npz(path: Path, fh, max_bytes: int, target: str = "labels") -> Dataset:
    if not fh.read(2) == b"PK":
        raise ValueError(f"{path}: not a readable .npz file (not a zip archive)")
    fh.seek(0)
    with NpzArchive(fh, path) as npz:
        if {"indptr", "shape", "format"} <= set(npz.infos) or {"row", "col", "format"} <= set(
                npz.infos):  # scipy.sparse.save_npz
            return _load_sparse_npz(path, npz, max_bytes, target)
        arrays = _npz_arrays(path, npz, max_bytes)
    X_train, y_train, X_test, y_test = arrays
    X_train = _features(X_train, f"{path} [X]")
    y_train = None if y_train is None else _targets(y_train, f"{path} [y]", target)
    if X_test is not None:
        X_test = _features(X_test, f"{path} [X_test]")
        y_test = _targets(y_test, f"{path} [y_test]", target)
        if X_test.shape[1] != X_train.shape[1]:
            raise ValueError(f"{path}: X_train has {X_train.shape[1]} features, X_test "
                             f"{X_test.shape[1]}")
        if y_test.shape[0] != X_test.shape[0] or (y_test.ndim != 1 and target == "labels"):
            raise ValueError(f"{path}: X_test has {X_test.shape[0]} rows but y_test has shape "
                             f"{y_test.shape}")
    if y_train is not None and (y_train.shape[0] != X_train.shape[0]
                                or (y_train.ndim != 1 and target == "labels")):
        raise ValueError(f"{path}: X has {X_train.shape[0]} rows but y has shape "
                         f"{y_train.shape}")
    return Dataset(X_train, y_train, X_test, y_test, "file", str(path), files={"data": path})


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_MAX_CSV_FIELD = 1000
"""Longest CSV field read, in characters: a number needs far fewer, and so does a label."""


def _csv_features(rows: list, where) -> np.ndarray:
    """Return the rows' fields as float64 (n, width), converted one number at a time.

    ``np.array(rows, dtype=str)`` would give every cell the width of the longest
    field (4 bytes a character): cells x longest field, whatever the file's size.
    """
    n, width = len(rows), len(rows[0])
    cells = (c for row in rows for c in row)
    try:
        flat = np.fromiter(map(float, cells), dtype=np.float64, count=n * width)
    except ValueError:
        bad = next(c for row in rows for c in row if not _is_number(c))
        raise ValueError(f"{where}: features must be numbers (could not convert "
                         f"{bad.strip()[:40]!r} to a number)") from None
    return flat.reshape(n, width)


def _load_csv(path: Path, raw: bytes, label_column, target: str = "labels",
              max_bytes: int = MAX_FILE_BYTES) -> Dataset:
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Excel) is not a header cell
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text CSV file ({exc})") from None
    del raw
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, lines = [], []  # the non-blank records and the lines they end on
    try:
        for row in reader:
            if row and any(c.strip() for c in row):
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() characters
        raise ValueError(f"{path}: line {reader.line_num}: not a readable CSV file ({exc})"
                         ) from None
    if not rows:
        raise ValueError(f"{path}: empty CSV file")
    header = None
    # The first row is a header when it has text in a column where the next rows
    # (up to 10) all hold numbers.
    following = rows[1:11]
    if following and any(
        not _is_number(c)
        and all(j < len(r) and _is_number(r[j]) for r in following)
        for j, c in enumerate(rows[0])
    ):
        header_line = lines[0]
        header, rows, lines = [c.strip() for c in rows[0]], rows[1:], lines[1:]
    width = len(rows[0])
    if header is not None and len(header) != width:
        raise ValueError(f"{path}: the header row (line {header_line}) has "
                         f"{len(header)} fields but line {lines[0]} has {width}")
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{path}: line {lines[i]} has {len(row)} fields, expected {width}")
        longest = max(len(c) for c in row)
        if longest > _MAX_CSV_FIELD:
            j = next(j for j, c in enumerate(row) if len(c) == longest)
            raise ValueError(f"{path}: line {lines[i]}: field {j + 1} has {longest} "
                             f"characters, more than {_MAX_CSV_FIELD} (not a number, nor a "
                             "class label)")
    if label_column is None:
        col = None
    elif isinstance(label_column, str) and not label_column.lstrip("-").isdigit():
        if header is None or label_column not in header:
            raise ValueError(f"{path}: no column named {label_column!r}"
                             + (f" (columns: {', '.join(header)})" if header else
                                " (the file has no header row)"))
        col = header.index(label_column)
    else:
        col = int(label_column)
        if not -width <= col < width:
            raise ValueError(f"{path}: label column {col} out of range for {width} columns")
        col %= width
    y = None
    if col is not None:
        labels = [row[col] for row in rows]
        longest = max(len(c) for c in labels)
        need = len(labels) * 4 * max(longest, 1)  # as fixed-width unicode
        if need > max_bytes:
            raise ValueError(f"{path}: the label column would take {need} bytes as text "
                             f"({len(labels)} labels of up to {longest} characters), more "
                             f"than max_bytes={max_bytes}")
        y = _targets(np.char.strip(np.array(labels, dtype=str)),
                     f"{path} [label column {col}]", target)
        del labels
        rows = [row[:col] + row[col + 1:] for row in rows]
    X = _csv_features(rows, path) if width > (col is not None) else np.empty((len(rows), 0))
    X = _features(X, str(path))
    return Dataset(X, y, None, None, "file", str(path), files={"data": path})


def load_file(path, *, label_column=-1, target: str = "labels",
              max_bytes: int = MAX_FILE_BYTES, n_features=None) -> Dataset:
    """Load a data file a user brings: ``.npz``, svmlight/libsvm or CSV.

    Sparse files stay sparse: a ``scipy.sparse.save_npz`` archive (CSR, CSC or
    COO; labels, if any, in an extra array ``y``: ``numpy.savez`` of the same
    members plus ``y`` is read too) and svmlight/libsvm text (``.svm``,
    ``.svmlight``, ``.libsvm``: ``label index:value ...``, read by
    ``sklearn.datasets.load_svmlight_file``) give ``X`` as a validated float64
    CSR matrix, never a dense array.

    Parameters
    ----------
    path : str or Path
        ``.npz`` with arrays ``X`` (and ``y``), or ``X_train, y_train, X_test,
        y_test``; or a CSV file (``.csv``, ``.txt``; any other name is read as
        CSV too), numbers separated by commas, an optional header row.
    label_column : int, str or None, default=-1
        CSV only: the column holding the labels, by index (negative counts from
        the end) or by header name; ``None`` when the file has no labels.
    target : {'labels', 'values'}, default='labels'
        What ``y`` holds: class labels (int64, or strings; non-integer numbers are
        refused), or the numbers of a regression target (float64, shape (n,) or,
        from a ``.npz``, (n, n_targets); NaN and infinity refused).
    max_bytes : int, default=2**31
        Bound on what is read: the CSV's (or svmlight file's) bytes, or the
        uncompressed size of the ``.npz`` arrays used (checked from the archive's
        headers before reading).
    n_features : int, optional
        svmlight/libsvm only: the width of ``X`` (a file whose rows do not use
        the last features would otherwise come out narrower).

    Returns
    -------
    data : Dataset
        ``X_train`` float64 (n, d) and ``y_train`` (int64, or strings when the
        labels are not numbers; float64 with ``target='values'``), or ``None``
        without labels; ``X_test, y_test``
        from a split ``.npz``, else ``None``. ``source="file"``.

    Raises
    ------
    ValueError
        Naming the file and the problem, also for a directory, a device or a pipe
        (only regular files are read) and for data over ``max_bytes``.
    """
    path = Path(path)
    if target not in ("labels", "values"):
        raise ValueError(f"target must be 'labels' or 'values', got {target!r}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a .npz or CSV file")
    with open_regular(path) as f:
        head = f.read(4)
        if head == b"\x93NUM":
            raise ValueError(f"{path}: a single .npy array; save features and labels "
                             "together with numpy.savez(path, X=X, y=y)")
        f.seek(0)
        if path.suffix.lower() == ".npz" or head == b"PK\x03\x04":
            return _load_npz(path, f, max_bytes, target)
        raw = read_bounded(f, max_bytes, path)
    if path.suffix.lower() in SVMLIGHT_SUFFIXES:
        return _load_svmlight(path, raw, target, n_features)
    return _load_csv(path, raw, label_column, target, max_bytes)
