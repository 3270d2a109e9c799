"""Files: reading what a user hands us safely, and writing ours atomically.

Reading, shared by :mod:`fastmlp.datasets` (data files) and :mod:`fastmlp.model_io`
(model files), which may come from anyone:

- :func:`open_regular` refuses devices, pipes, sockets and directories (``/dev/zero``
  would be read until memory runs out, a FIFO would block the open forever);
- :func:`read_bounded` reads at most a given number of bytes;
- :class:`NpzArchive` lists the members of an ``.npz`` archive from its zip directory
  and reads each member's ``.npy`` header (dtype, shape) without its data, so a caller
  can check names, sizes, dtypes and shapes before anything is decompressed. ``np.load``
  decompresses a member before it can be checked (a 2 MB archive can inflate to
  gigabytes), and lets the later of two members with one name win silently.

Writing: :func:`atomic_write` is the one way the package writes a file (models,
predictions, plots, benchmark reports, datasets). The data go to a temporary file in
the target's folder, are flushed and fsynced, and only then replace the target
(``os.replace``, atomic on POSIX). A failure part-way (disk full, read-only folder,
Ctrl-C, a kill) leaves the previous file byte for byte: opening the target with
``"wb"`` would have truncated it first.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import stat
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MAX_FILE_BYTES", "Member", "NpzArchive", "atomic_write", "open_regular",
           "read_bounded", "save_figure"]

MAX_FILE_BYTES = 2**31
"""Default bound, in bytes, on what one data or model file may make us read or allocate."""

# What zipfile and numpy's .npy reader raise on a damaged archive or member: besides
# ValueError (UnicodeDecodeError too) and OSError, zipfile raises NotImplementedError
# (a RuntimeError) for an unknown zip version and struct.error on short records; numpy's
# header parser raises tokenize.TokenError and SyntaxError (and RecursionError, a
# RuntimeError, on deep nesting). Byte-mutation fuzzing of model files found these.
_MEMBER_ERRORS = (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile,
                  RuntimeError, SyntaxError, tokenize.TokenError, struct.error,
                  LookupError, TypeError, OverflowError)
_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


def open_regular(path):
    """Open ``path`` for binary reading if it is a regular file.

    The file is opened without blocking (opening a FIFO for reading would otherwise
    wait for a writer) and checked on the open descriptor, so it cannot be swapped
    between the check and the read.

    Raises
    ------
    ValueError
        Naming the file and what it is, for a directory, device, pipe or socket.
    FileNotFoundError, PermissionError
        As ``open`` does.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = next((name for test, name in _NOT_REGULAR if test(mode)), "not a file")
            raise ValueError(f"{path}: {what}, expected a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


TEMP_SUFFIX = ".fastmlp-tmp"
"""Ending of :func:`atomic_write`'s temporary files (``.<name>.<random>.fastmlp-tmp``)."""


@contextlib.contextmanager
def atomic_write(path, mode="wb", **kwargs):
    """Open a temporary file that replaces ``path`` when the ``with`` block succeeds.

    The temporary is created beside ``path`` (same folder, so the same file system,
    and ``os.replace`` is one atomic rename) with the permissions ``open`` would give
    a new file (0o666 less the umask), or those of the file it replaces. On leaving
    the block normally it is flushed, fsynced and renamed over ``path``; on any
    exception (``OSError`` ENOSPC, ``KeyboardInterrupt``, ...) it is closed and
    removed and the exception propagates: ``path`` keeps its previous content, and
    no temporary is left behind. A process killed part-way leaves ``path`` intact
    too (and a temporary named ``.<name>.<random>.fastmlp-tmp``).

    Parameters
    ----------
    path : str or Path
        The file to write. A symbolic link is written through (its target is
        replaced), as ``open`` would.
    mode : {'wb', 'w'}, default='wb'
        Binary or text.
    **kwargs
        Passed to ``open`` for text mode (``encoding``, ``newline``).

    Yields
    ------
    file object
        The open temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    target = Path(os.path.realpath(path))
    try:
        keep_mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        keep_mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for open()
            break
        except FileExistsError:  # pragma: no cover - 32 random bits taken
            continue
    try:
        try:
            f = os.fdopen(fd, mode, **kwargs)
        except BaseException:
            os.close(fd)
            raise
        with f:
            if keep_mode is not None:
                os.chmod(fd, keep_mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(target.parent)


def save_figure(fig, path, **kwargs) -> None:
    """``fig.savefig(path, **kwargs)`` through :func:`atomic_write`.

    The format comes from the name's suffix, as ``savefig`` takes it from a path
    (matplotlib's default format when there is none).
    """
    fmt = kwargs.pop("format", None) or Path(path).suffix[1:].lower() or None
    with atomic_write(path) as f:
        fig.savefig(f, format=fmt, **kwargs)


def _fsync_folder(folder) -> None:
    """Make a rename in ``folder`` durable (best effort: not every system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - a file system without directory fsync
        pass
    finally:
        os.close(fd)


def read_bounded(fh, max_bytes: int, where) -> bytes:
    """Return the rest of ``fh``, refusing it (``ValueError``) if it exceeds ``max_bytes``."""
    data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{where}: larger than {max_bytes} bytes (max_bytes); pass a larger "
                         "max_bytes if the file is meant to be this big")
    return data


@dataclass(frozen=True)
class Member:
    """One ``.npy`` member of an archive, as its headers describe it (no data read)."""

    name: str  # the array's name (the member's file name without ``.npy``)
    shape: tuple
    dtype: np.dtype
    fortran_order: bool
    nbytes: int
    info: zipfile.ZipInfo

    @property
    def ndim(self) -> int:
        """Number of dimensions, as for an array."""
        return len(self.shape)


class NpzArchive:
    """An ``.npz`` archive opened for checking before reading.

    Parameters
    ----------
    fh : binary file object
        Open, seekable, positioned anywhere.
    where : str or Path
        Names the file in error messages.

    Attributes
    ----------
    infos : dict
        Array name -> ``zipfile.ZipInfo``, from the zip directory alone.

    Raises
    ------
    ValueError
        If the file is not a zip archive, or two members give one array name (a zip
        can hold two entries with the same name; ``x`` and ``x.npy`` also collide).
    """

    def __init__(self, fh, where):
        self.where = where
        try:
            self._zip = zipfile.ZipFile(fh)
        except _MEMBER_ERRORS as exc:
            raise ValueError(f"{where}: not a readable .npz archive ({exc})") from None
        infos: dict[str, zipfile.ZipInfo] = {}
        duplicates = set()
        for info in self._zip.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name in infos:
                duplicates.add(name)
            infos[name] = info
        if duplicates:
            self.close()
            raise ValueError(f"{where}: duplicate members {sorted(duplicates)} (two zip "
                             "entries give one array name)")
        self.infos = infos

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close the zip archive (not the file object it reads)."""
        self._zip.close()

    def _open(self, name: str):
        info = self.infos[name]
        if info.flag_bits & 0x1:
            raise ValueError(f"{self.where}: member {info.filename!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ValueError(f"{self.where}: member {info.filename!r} uses zip compression "
                             f"method {info.compress_type} (an .npz is stored or deflated)")
        return self._zip.open(info)

    def total_size(self, names) -> int:
        """Uncompressed bytes of the members ``names``, as the zip directory declares.

        ``zipfile`` never yields more than a member's declared size, so this bounds
        what reading those members can allocate.
        """
        return sum(self.infos[n].file_size for n in names)

    def member(self, name: str, max_elements: int | None = None) -> Member:
        """Read member ``name``'s ``.npy`` header, not its data.

        Parameters
        ----------
        name : str
            The array's name.
        max_elements : int, optional
            Bound on the number of elements the header may claim (callers pass their
            ``max_bytes``: converting the array allocates per element).

        Raises
        ------
        ValueError
            For a header that is not ``.npy`` format 1.0 or 2.0, an object dtype (it
            would need pickle), a dtype of zero-size items (``S0``, ``U0``, ``V0``:
            any shape would take no bytes, so no size bound would hold it), negative
            dimensions, more than ``max_elements`` elements, or a member whose size
            is not the header's plus the data the header describes.
        """
        info = self.infos[name]
        try:
            with self._open(name) as fp:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
                else:
                    raise ValueError(f".npy format version {version[0]}.{version[1]}, "
                                     "expected 1.0 or 2.0")
                offset = fp.tell()
        except _MEMBER_ERRORS as exc:
            raise ValueError(f"{self.where}: corrupt member {name} ({exc})") from None
        if dtype.hasobject:
            raise ValueError(f"{self.where}: member {name} holds Python objects (dtype "
                             f"{dtype}), which cannot be read without pickle")
        if dtype.itemsize == 0:
            raise ValueError(f"{self.where}: member {name} has dtype {dtype.str} of zero-size "
                             "items (no size bound would hold its shape)")
        if any(d < 0 for d in shape):
            raise ValueError(f"{self.where}: member {name} has negative dimensions {shape}")
        count = math.prod(shape)  # Python ints: no overflow
        nbytes = count * dtype.itemsize
        if info.file_size != offset + nbytes:
            raise ValueError(
                f"{self.where}: member {name}: its .npy header says shape {shape} of "
                f"{dtype} ({nbytes} bytes), but the member holds {info.file_size - offset} "
                "bytes of data"
            )
        if max_elements is not None and count > max_elements:
            raise ValueError(f"{self.where}: member {name}: its .npy header says shape "
                             f"{shape}, {count} elements, more than {max_elements} "
                             "(max_bytes)")
        return Member(name, shape, dtype, fortran, nbytes, info)

    def read(self, member: Member) -> np.ndarray:
        """Read the data of a member whose header :meth:`member` has checked."""
        try:
            with self._open(member.name) as fp:
                a = np.lib.format.read_array(fp, allow_pickle=False)
        except _MEMBER_ERRORS as exc:
            raise ValueError(f"{self.where}: corrupt member {member.name} ({exc})") from None
        if a.dtype.kind == "U" and a.size and (
                np.ascontiguousarray(a).reshape(-1).view(np.uint32).max() > 0x10FFFF):
            # NumPy loads UTF-32 code units unchecked; one past Unicode's last code
            # point makes str() of the element raise SystemError
            raise ValueError(f"{self.where}: member {member.name} holds text that is not "
                             "Unicode (a code point beyond U+10FFFF)")
        return a

