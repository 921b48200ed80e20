"""Ctrl-C and SIGTERM as one KeyboardInterrupt, and blocks of work they may not cut in half.

A sweep writes records that span several calls (an MLflow run created, filled and ended; an Optuna
trial asked and given its parameters). Inside `deferred()` a SIGINT or SIGTERM is only noted; it is
raised as KeyboardInterrupt when the outermost block ends. Python runs signal handlers in the main
thread whichever thread the kernel picked, so this holds with helper threads around (MLflow's, the
heartbeat, multiprocessing's feeders), where blocking the signal in one thread would not.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class _State:
    depth = 0  # nesting of deferred() blocks
    pending = ""  # the interrupt that arrived inside a block ("" none yet)


_state = _State()


def _handler(signum: int, frame: Any) -> None:
    reason = "SIGTERM" if signum == signal.SIGTERM else ""
    if _state.depth:
        _state.pending = _state.pending or reason or "Ctrl-C"
        return
    raise KeyboardInterrupt(reason)


def sigterm_interrupts() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (deferred inside blocks)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Note SIGINT/SIGTERM until the block is done; one that arrived meanwhile is raised right after."""
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)  # same behaviour outside blocks, deferral inside
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if not _state.depth and _state.pending and main:
        reason, _state.pending = _state.pending, ""
        raise KeyboardInterrupt("" if reason == "Ctrl-C" else reason)
