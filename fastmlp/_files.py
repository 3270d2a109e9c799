"""Reading files a user hands us: regular files only, bounded reads, ``.npz`` headers first.

Shared by :mod:`fastmlp.datasets` (data files) and :mod:`fastmlp.model_io` (model
files), which may come from anyone:

- :func:`open_regular` refuses devices, pipes, sockets and directories (``/dev/zero``
  would be read until memory runs out, a FIFO would block the open forever);
- :func:`read_bounded` reads at most a given number of bytes;
- :class:`NpzArchive` lists the members of an ``.npz`` archive from its zip directory
  and reads each member's ``.npy`` header (dtype, shape) without its data, so a caller
  can check names, sizes, dtypes and shapes before anything is decompressed. ``np.load``
  decompresses a member before it can be checked (a 2 MB archive can inflate to
  gigabytes), and lets the later of two members with one name win silently.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_FILE_BYTES", "Member", "NpzArchive", "open_regular", "read_bounded"]

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
                return np.lib.format.read_array(fp, allow_pickle=False)
        except _MEMBER_ERRORS as exc:
            raise ValueError(f"{self.where}: corrupt member {member.name} ({exc})") from None

