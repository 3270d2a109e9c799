"""Ctrl-C while Numba compiles: raised at the next safe point, never lost.

LLVM hands every object file it builds back to Python through two ctypes
callbacks (llvmlite's object-cache hooks, which Numba uses to keep the machine
code for its cache). CPython prints an exception raised inside a ctypes
callback ("Exception ignored on calling ctypes callback function") and drops
it, so a Ctrl-C that lands there is lost: the compilation and the fit simply go
on. Measured on a cold first fit on digits, SIGINT sent at 13 moments: 4 were
lost this way, the fit running to its end; one also left a cache entry without
its object code.

So while the main thread compiles, SIGINT goes to :func:`_on_sigint`. Outside
those callbacks it calls the handler that was there before (Python's own raises
``KeyboardInterrupt`` at once). Inside one it only notes the interrupt and sets
a profile hook on the main thread; the hook raises it at the first Python call
or return outside the callback, a few microseconds later. Nothing else changes:
a handler that is not a Python callable (``SIG_IGN``, ``SIG_DFL``) is left alone,
and other threads are never touched (CPython runs signal handlers on the main
thread only).
"""

from __future__ import annotations

import signal
import sys
import threading

_MAIN = threading.main_thread().ident


def _callback_codes() -> frozenset:
    try:
        from llvmlite.binding.executionengine import ExecutionEngine
    except ImportError:  # pragma: no cover - llvmlite moved its hooks
        return frozenset()
    names = ("_raw_object_cache_notify", "_raw_object_cache_getbuffer")
    return frozenset(
        getattr(ExecutionEngine, n).__code__ for n in names if hasattr(ExecutionEngine, n)
    )


_CALLBACKS = _callback_codes()


def _in_callback(frame) -> bool:
    while frame is not None:
        if frame.f_code in _CALLBACKS:
            return True
        frame = frame.f_back
    return False


class _State:
    depth = 0  # nested compilations on the main thread
    previous = None  # the SIGINT handler to restore; None: ours is not installed
    pending = False  # an interrupt that arrived inside a callback, not yet raised
    profile = None  # the main thread's profile hook before ours


_STATE = _State()


def _raise_pending() -> None:
    _STATE.pending = False
    sys.setprofile(_STATE.profile)
    _STATE.profile = None
    handler = _STATE.previous
    if callable(handler):
        handler(signal.SIGINT, sys._getframe(1))
    else:  # pragma: no cover - only if the listener was unwound in between
        raise KeyboardInterrupt


def _profile_hook(frame, event, arg):
    if not _in_callback(frame):
        _raise_pending()


def _on_sigint(signum, frame):
    if _in_callback(frame):
        if not _STATE.pending:
            _STATE.pending = True
            _STATE.profile = sys.getprofile()
            sys.setprofile(_profile_hook)
        return
    _STATE.previous(signum, frame)


def _on_start() -> None:
    if threading.get_ident() != _MAIN:
        return
    _STATE.depth += 1
    if _STATE.depth == 1:
        try:
            current = signal.getsignal(signal.SIGINT)
        except ValueError:  # pragma: no cover - an interpreter without signals
            return
        if callable(current) and current is not _on_sigint:
            _STATE.previous = current
            signal.signal(signal.SIGINT, _on_sigint)


def _on_end(failed: bool) -> None:
    if threading.get_ident() != _MAIN:
        return
    _STATE.depth -= 1
    if _STATE.depth or _STATE.previous is None:
        return
    previous, _STATE.previous = _STATE.previous, None
    signal.signal(signal.SIGINT, previous)
    if _STATE.pending:  # never reached a safe point inside the compilation
        _STATE.pending = False
        sys.setprofile(_STATE.profile)
        _STATE.profile = None
        if not failed:
            previous(signal.SIGINT, sys._getframe(1))


def install() -> None:
    """Listen to Numba's compile events (once per process)."""
    try:
        from numba.core import event
    except ImportError:  # pragma: no cover - a Numba without events
        return
    if not _CALLBACKS or getattr(event, "_fastmlp_interrupt", False):
        return

    class Listener(event.Listener):
        def on_start(self, ev):
            _on_start()

        def on_end(self, ev):
            _on_end(ev.is_failed)

    event.register("numba:compile", Listener())
    event._fastmlp_interrupt = True
