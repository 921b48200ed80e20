"""Ctrl-C and SIGTERM as one KeyboardInterrupt, and blocks of work they may not cut in half.

A sweep writes records that span several calls (an MLflow run created, filled and ended; an Optuna
trial asked and given its parameters). Inside `deferred()` a SIGINT or SIGTERM is only noted; it is
raised as KeyboardInterrupt when the outermost block ends. Python runs signal handlers in the main
thread whichever thread the kernel picked, so this holds with helper threads around (MLflow's, the
heartbeat, multiprocessing's feeders), where blocking the signal in one thread would not.

Python drops an exception raised while a weakref callback or a finaliser runs ("Exception ignored
in ..."), and a signal handler can fire just then: an interrupt raised there would be lost. So every
interrupt also stays noted until `handled()` is called by whoever catches it (the command-line entry
points), and the training loops call `check()`, which raises a noted interrupt that never arrived.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class _State:
    depth = 0  # nesting of deferred() blocks
    pending = ""  # an interrupt that arrived inside a block, to raise at its end ("" none)
    unhandled = ""  # an interrupt not yet handled by its catcher ("" none)


_state = _State()


def _interrupt(reason: str) -> KeyboardInterrupt:
    return KeyboardInterrupt("" if reason == "Ctrl-C" else reason)


def _handler(signum: int, frame: Any) -> None:
    reason = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    _state.unhandled = _state.unhandled or reason
    if _state.depth:
        _state.pending = _state.pending or reason
        return
    raise _interrupt(reason)


def check() -> None:
    """Raise an interrupt that was noted but never reached the program (call from normal flow only,
    never from cleanup code run while an interrupt is on its way up)."""
    if _state.unhandled and not _state.depth:
        raise _interrupt(_state.unhandled)


def handled() -> None:
    """The interrupt was caught and acted upon: forget it."""
    _state.unhandled = _state.pending = ""


def sigterm_interrupts() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (deferred inside blocks), and
    keep an interrupt that Python had to drop off the console: `check()` raises it again."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    if getattr(sys.unraisablehook, "__name__", "") != "_quiet_unraisable":
        previous = sys.unraisablehook

        def _quiet_unraisable(info: Any) -> None:
            if not (isinstance(info.exc_value, KeyboardInterrupt) and _state.unhandled):
                previous(info)

        sys.unraisablehook = _quiet_unraisable


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Note SIGINT/SIGTERM until the block is done; one that arrived meanwhile is raised right after."""
    main = threading.current_thread() is threading.main_thread()
    if not main:  # signals reach the main thread only: another thread's block must not hold them back
        yield
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)  # same behaviour outside blocks, deferral inside
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if not _state.depth and _state.pending:
        reason, _state.pending = _state.pending, ""
        raise _interrupt(reason)
