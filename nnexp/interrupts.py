"""Ctrl-C and SIGTERM as one KeyboardInterrupt, and blocks of work they may not cut in half.

A sweep writes records that span several calls (an MLflow run created, filled and ended; an Optuna
trial asked and given its parameters). `deferred()` holds both signals for the length of such a block
and delivers them right after it. Helper threads block the signals for good (`quiet_thread`), so the
kernel always delivers them to the main thread, which holds them while it is inside a block.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

SIGNALS = {signal.SIGINT, signal.SIGTERM}
_POSIX = hasattr(signal, "pthread_sigmask")


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")


def sigterm_interrupts() -> None:
    """Make SIGTERM raise KeyboardInterrupt("SIGTERM") in the main thread, like Ctrl-C."""
    signal.signal(signal.SIGTERM, _sigterm)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done; one that arrived meanwhile is raised after it."""
    if not _POSIX:
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def quiet_thread() -> None:
    """Call first thing in a helper thread: it never receives SIGINT or SIGTERM."""
    if _POSIX:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
