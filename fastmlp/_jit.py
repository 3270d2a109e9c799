"""The one place that sets Numba options for fastmlp.

Every compiled function in the package is built by :func:`jit`,
:func:`serial_and_parallel` or :func:`specialize`; no other module passes
``fastmath=`` or calls ``numba.njit`` with options of its own.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import numbers
import os
import threading
import types
import warnings
from collections.abc import Callable, Iterator

import numba

from fastmlp import _interrupt

# fastmath without ``nnan``/``ninf``: NaN and inf still propagate, so bad data
# (or a diverging learning rate) is detected instead of silently optimised away.
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

JIT_OPTIONS = {
    "cache": True,  # a second process loads machine code instead of compiling
    "fastmath": set(FASTMATH),
    "error_model": "numpy",  # x / 0 gives inf/nan like NumPy, no exception check
    "nogil": True,
    "boundscheck": False,
}


# --------------------------------------------------------------- on-disk cache
# Numba stamps a cached function with a hash of its own source file only, so a
# cached epoch loop in solvers.py would keep calling the machine code of an old
# kernel after kernels.py changed (a stale cache, seen as wrong results or a
# crash). fastmlp's compiled functions call each other across its modules, so
# their caches are stamped with a hash of every module that holds compiled code
# instead: any change to one of them recompiles everything once.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
COMPILED_MODULES = (
    "_jit.py", "kernels.py", "solvers.py", "kernels_sparse.py", "solvers_sparse.py"
)


def _package_stamp() -> str:
    digest = hashlib.sha256()
    for name in COMPILED_MODULES:
        with open(os.path.join(_PACKAGE_DIR, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()


def _install_package_stamp() -> None:
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - a Numba without this module
        return
    stamp = _package_stamp()

    def stamped(base):
        class Locator(base):
            def get_source_stamp(self):
                return stamp

            @classmethod
            def from_function(cls, py_func, py_file):
                if os.path.dirname(os.path.abspath(py_file)) != _PACKAGE_DIR:
                    return None
                return super().from_function(py_func, py_file)

        Locator.__name__ = Locator.__qualname__ = "FastmlpStamped" + base.__name__
        return Locator

    bases = ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")
    if not all(hasattr(caching, b) for b in bases) or not hasattr(caching, "CacheImpl"):
        return  # pragma: no cover - Numba's internals moved: keep its own stamps
    locators = caching.CacheImpl._locator_classes
    if not any(c.__name__.startswith("FastmlpStamped") for c in locators):
        locators[:0] = [stamped(getattr(caching, b)) for b in bases]


_install_package_stamp()


# ------------------------------------------------------ a cache that heals itself
# Numba trusts its cache files: a truncated or corrupted one (a full disk, a
# killed process, a copied cache) raised UnpicklingError or "LLVM bitcode
# parsing error" at every later fit until the user deleted the folder, and two
# processes compiling two signatures of one function on a cold cache can both
# number their file 1, leaving the index naming the other signature's machine
# code. So fastmlp's entries carry a SHA-256 of their bytes and a digest of the
# key and source stamp they were made for: an entry whose bytes fail, or that
# fails to load at all, is removed with one warning and compiled afresh; one made
# for another key or version is a miss, compiled afresh and saved over.
_CACHE_MAGIC = b"fastmlp-cache-1\0"
_HEALED: list[str] = []  # what was removed, for the single warning
_UNSAVED: list[str] = []  # functions whose code a full or read-only disk kept out
# a save failing with these is no sign of damage: the disk is full or not writable
_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class DamagedCacheEntry(Exception):
    """A cache file whose bytes or key are not what fastmlp wrote."""


def _key_digest(key, stamp) -> bytes:
    # the source stamp too: the key alone (signature, CPU, the function's own
    # bytecode) is the same before and after a change to another module, so a
    # data file left from an older fastmlp, named by a newer index written just
    # before its process was killed, would otherwise pass
    return hashlib.sha256(repr((stamp, numba.__version__, key)).encode()).digest()


def _checked_cache_classes():
    from numba.core import caching

    class CheckedCacheFile(caching.IndexDataCacheFile):
        """Index and data files whose data carry a digest and their key."""

        def save(self, key, data):
            # The data file first, then the index that names it (Numba writes the
            # index first): a write that fails part-way (a full disk) leaves no
            # index naming a data file that is not there, which every later
            # process would have taken for a damaged entry.
            overloads = self._load_index()
            data_name = overloads.get(key)
            if data_name is None:
                existing = set(overloads.values())
                data_name = next(n for n in map(self._data_name, itertools.count(1))
                                 if n not in existing)
            self._save_data(data_name, (_key_digest(key, self._source_stamp), data))
            if overloads.get(key) != data_name:
                overloads[key] = data_name
                self._save_index(overloads)

        def load(self, key):
            entry = super().load(key)
            if entry is None:
                return None
            if type(entry) is not tuple or len(entry) != 2:
                raise DamagedCacheEntry("an entry of another form")
            if entry[0] != _key_digest(key, self._source_stamp):
                # made for another signature or version (processes racing for a
                # file number, or one killed between index and data): a miss,
                # compiled afresh and saved over it
                return None
            return entry[1]

        def _save_data(self, name, data):
            payload = self._dump(data)
            with self._open_for_write(self._data_path(name)) as f:
                f.write(_CACHE_MAGIC + hashlib.sha256(payload).digest() + payload)

        def _load_data(self, name):
            with open(self._data_path(name), "rb") as f:
                raw = f.read()
            head = len(_CACHE_MAGIC)
            payload = raw[head + 32:]
            if raw[:head] != _CACHE_MAGIC or raw[head:head + 32] != hashlib.sha256(
                payload
            ).digest():
                raise DamagedCacheEntry("a data file that is truncated, altered or foreign")
            import pickle

            return pickle.loads(payload)

        def remove_all(self):
            """Delete this function's index and every data file it may name."""
            prefix = self._index_name[: -len(".nbi")]
            removed = []
            try:
                names = os.listdir(self._cache_path)
            except OSError:
                return removed
            for name in names:
                if name == self._index_name or (
                    name.startswith(prefix + ".") and name.endswith(".nbc")
                ):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self._cache_path, name))
                        removed.append(name)
            return removed

    class HealingFunctionCache(caching.FunctionCache):
        """Numba's per-function cache, with damaged entries removed and rebuilt."""

        def __init__(self, py_func):
            super().__init__(py_func)
            old = self._cache_file
            self._cache_file = CheckedCacheFile(
                old._cache_path, old._index_name[: -len(".nbi")], old._source_stamp
            )

        def _heal(self, error):
            removed = self._cache_file.remove_all()
            _HEALED.append(f"{self._name}: {type(error).__name__}: {error}")
            if len(_HEALED) == 1:  # one warning per process, however many entries
                warnings.warn(
                    f"fastmlp removed a damaged compile-cache entry in {self._cache_path} "
                    f"({', '.join(removed) or 'nothing left to remove'}: "
                    f"{type(error).__name__}) and is compiling it afresh",
                    RuntimeWarning,
                    stacklevel=2,
                )

        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception as error:  # noqa: BLE001 - any failure to load: rebuild
                self._heal(error)
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except OSError as error:
                if error.errno not in _CANNOT_WRITE:
                    self._heal(error)
                    with contextlib.suppress(Exception):
                        super().save_overload(sig, data)
                    return
                # nothing is damaged: the cache just cannot grow. Numba's own
                # temporary is already gone; say why once, remove nothing
                _UNSAVED.append(self._name)
                if len(_UNSAVED) == 1:
                    warnings.warn(
                        f"fastmlp could not save compiled code to its cache in "
                        f"{self._cache_path} ({error.strerror or error}); it works, but "
                        "every new process compiles it again until the cache can be "
                        "written (free space, or set NUMBA_CACHE_DIR)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            except Exception as error:  # noqa: BLE001 - e.g. a damaged index file
                self._heal(error)
                with contextlib.suppress(Exception):  # the compiled code works anyway
                    super().save_overload(sig, data)

    return HealingFunctionCache


try:
    _HealingFunctionCache = _checked_cache_classes()
except (ImportError, AttributeError):  # pragma: no cover - Numba's internals moved
    _HealingFunctionCache = None


def _cached(func: Callable, options: dict):
    """``numba.njit(**options)(func)``, its on-disk cache the healing one."""
    dispatcher = numba.njit(**options)(func)
    if _HealingFunctionCache is not None and options.get("cache") and hasattr(
        dispatcher, "_cache"
    ):
        dispatcher._cache = _HealingFunctionCache(dispatcher.py_func)
    return dispatcher


# Ctrl-C while compiling is raised, not dropped inside an LLVM callback
_interrupt.install()

# Parallel regions run on Numba's default threading layer: TBB (a dependency)
# where it loads, else OpenMP, else the workqueue. TBB and OpenMP launch regions
# from several Python threads at once; the workqueue layer aborts the whole
# process on that ("Concurrent access has been detected"), so on it every
# region takes :data:`PARALLEL_LOCK` (see :func:`parallel_threads`).
PARALLEL_LOCK = threading.RLock()
_LAYER: list[str] = []  # the layer Numba started, found once


def _after_fork_in_child() -> None:
    # the child has none of the parent's other threads: a lock one of them held
    # at the fork would never be released
    global PARALLEL_LOCK
    PARALLEL_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _preload_tbb() -> None:
    # pip puts TBB's library in <env>/lib, where the dynamic loader does not look
    # from a virtual environment (Numba asks for it by name): loaded by its path
    # first, the later load by name finds it in the process
    import ctypes
    import sys

    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix, sys.base_prefix)):
        path = os.path.join(prefix, "lib", "libtbb.so.12")
        if os.path.exists(path):
            with contextlib.suppress(OSError):
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return


def threading_layer() -> str:
    """Return the name of the threading layer Numba runs parallel regions on (starting it)."""
    if not _LAYER:
        from numba.np.ufunc import parallel

        if os.name == "posix" and "NUMBA_THREADING_LAYER" not in os.environ:
            _preload_tbb()
        parallel._launch_threads()
        _LAYER.append(numba.threading_layer())
    return _LAYER[0]


@contextlib.contextmanager
def parallel_threads(n: int) -> Iterator[int]:
    """Run the block's parallel regions on ``n`` threads (within the machine's).

    Numba's thread count is per calling thread, so other Python threads keep
    theirs. On the workqueue layer the block also holds :data:`PARALLEL_LOCK`.
    """
    wanted = max(1, min(int(n), max_threads()))
    with contextlib.ExitStack() as stack:
        if threading_layer() == "workqueue":
            stack.enter_context(PARALLEL_LOCK)
        previous = numba.get_num_threads()
        numba.set_num_threads(wanted)
        stack.callback(numba.set_num_threads, previous)
        yield wanted


# ------------------------------------------------- cached entry points, per call site
# Numba caches a function's machine code as an object file. When the function was
# compiled in a process where one of the functions it calls had itself been
# *loaded* from the cache, the object file only refers to that callee by symbol
# name; a fresh process that loads the caller without having loaded the callee
# jumps to a missing symbol (a segfault). Seen here: fit, then predict in a second
# process (compiling ``_forward_proba`` against the cached ``_forward``), then
# predict in a third.
#
# So every function has two builds. Compiled callers use an uncached one, always
# compiled from IR in the process, so every cached entry is self-contained. Calls
# from Python go to a cached twin of the same function: what a user calls loads
# from the cache, and nothing ever links against a loaded entry.
try:
    from numba.core.registry import CPUDispatcher as _CPUDispatcher
except ImportError:  # pragma: no cover - a Numba without this module
    _CPUDispatcher = None


if _CPUDispatcher is not None:

    class EntryDispatcher(_CPUDispatcher):
        """A Numba dispatcher whose calls from Python run its cached twin ``entry``.

        Compiled code that calls it (typing sees the dispatcher itself) compiles
        the uncached build into its own machine code.
        """

        def __call__(self, *args, **kwargs):
            return self.entry(*args, **kwargs)

        @classmethod
        def _rebuild(cls, *args, **kwargs):
            # unpickled in another process (e.g. a joblib worker): make the twin again
            self = super()._rebuild(*args, **kwargs)
            if not hasattr(self, "entry"):
                parallel = bool(self.targetoptions.get("parallel", False))
                self.entry = _cached(self.py_func, dict(JIT_OPTIONS, parallel=parallel))
            return self


def _build(func: Callable, parallel: bool):
    options = dict(JIT_OPTIONS, parallel=parallel)
    # only compiled callers run this build: it needs no CPython wrapper (measured:
    # about 1 s less CPU time in a cold first fit on digits, 12.7-13.3 s -> 11.6-11.9 s)
    inner = numba.njit(**dict(options, cache=False, no_cpython_wrapper=True))(func)
    if _CPUDispatcher is None or type(inner) is not _CPUDispatcher:
        return inner  # NUMBA_DISABLE_JIT: the plain Python function
    inner.__class__ = EntryDispatcher
    inner.entry = _cached(func, options)
    return inner


def jit(func: Callable | None = None, *, parallel: bool = False):
    """Compile ``func`` with the package's Numba options.

    Usable as ``@jit`` or ``@jit(parallel=True)``. Calls from Python run a
    cached build (``.entry``); calls from other compiled functions compile an
    uncached one into the caller (see :class:`EntryDispatcher`).
    """
    if func is None:
        return lambda f: _build(f, parallel)
    return _build(func, parallel)


def _renamed_copy(func: Callable, suffix: str, namespace: dict) -> Callable:
    """``func`` as a new function named ``<name><suffix>``, reading globals from ``namespace``.

    Numba names a cache entry after the function's qualified name, so each copy
    caches apart from the original and from other copies.
    """
    copy = types.FunctionType(
        func.__code__, namespace, func.__name__ + suffix, func.__defaults__, func.__closure__
    )
    copy.__qualname__ = func.__qualname__ + suffix
    copy.__doc__ = func.__doc__
    copy.__module__ = func.__module__
    return copy


def serial_and_parallel(func: Callable):
    """Compile one loop twice: serially and with ``prange`` running in threads.

    Returns ``(serial, parallel)``. Write the loop once with ``numba.prange`` on the
    batch axis; in the serial build ``prange`` is an ordinary ``range``.

    Numba names a cache entry after the function and its signature, not its
    options, so the parallel build is made from a renamed copy of ``func``
    (``<name>_parallel``): otherwise each twin could load the other's machine code.
    """
    twin = _renamed_copy(func, "_parallel", func.__globals__)
    return jit(func, parallel=False), jit(twin, parallel=True)


def specialize(funcs, *, suffix: str, **constants) -> types.SimpleNamespace:
    """Compile copies of ``funcs`` in which the globals ``constants`` are fixed.

    Numba reads a module-level global as a compile-time constant and prunes a
    branch on one (``if PARALLEL:``) before typing it, so a copy compiles only
    the code its constants select. The copies see one another under their
    original names (a call from one reaches the copy of the same
    specialisation) and everything else in the module as it stands when this is
    called. Each copy is named ``<name><suffix>`` so its cache entries are its
    own. Returns, as attributes named after the originals, what Python calls:
    each copy's cached twin (``.entry``), reached without
    :class:`EntryDispatcher`'s extra Python frame.
    """
    module = funcs[0].__globals__
    if any(func.__globals__ is not module for func in funcs):
        raise ValueError("specialize needs functions of one module")
    unknown = sorted(set(constants) - set(module))
    if unknown:  # a misspelt constant would otherwise be a new, unread global
        raise ValueError(f"{module['__name__']} has no global {unknown}")
    namespace = dict(module, **constants)
    compiled = {}
    for func in funcs:
        compiled[func.__name__] = jit(_renamed_copy(func, suffix, namespace))
    namespace.update(compiled)
    return types.SimpleNamespace(**{k: getattr(f, "entry", f) for k, f in compiled.items()})


def max_threads() -> int:
    """Return the number of threads Numba was started with."""
    return numba.config.NUMBA_NUM_THREADS


def thread_count(n: int | None) -> int:
    """Return the thread count that ``n_threads=n`` asks for, within this machine's.

    ``None`` is every thread Numba starts (:func:`max_threads`); a larger count
    than that is capped. Zero, a negative count or a non-integer is a
    ``ValueError`` that names ``n_threads``.
    """
    limit = max_threads()
    if n is None:
        return limit
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n_threads must be a positive integer or None; got {n!r}")
    return min(int(n), limit)


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[int]:
    """Bound the threads of Numba's parallel regions inside a ``with`` block.

    ``n`` as in :func:`thread_count`.
    """
    previous = numba.get_num_threads()
    wanted = previous if n is None else thread_count(n)
    numba.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        numba.set_num_threads(previous)
