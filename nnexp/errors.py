"""The exception types for mistakes a user can fix: bad config values, bad data files, stores that refuse writes."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A user-facing error: names the field, the bad value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str, hint: str = "") -> None:
        self.field, self.value, self.allowed, self.hint = field, value, allowed, hint
        text = f"{field} = {value!r} is not valid: {allowed}."
        super().__init__(f"{text} {hint}".strip())


def choice(field: str, value: object, options: Iterable[str]) -> str:
    """Return `value` if it is one of `options`, else raise ConfigError with the close matches."""
    options = sorted(options)
    if value in options:
        return str(value)
    close = difflib.get_close_matches(str(value), options, n=3)
    hint = f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(field, value, f"expected one of {', '.join(options)}", hint)


class StoreError(ConfigError):
    """A store (tracking database, Optuna storage, artifact directory) that cannot be written: a full
    disk, a read-only file system, no permission. The message names the store, says what was and was
    not written, and what to do; the command line prints it like any ConfigError (exit 2)."""

    def __init__(self, field: str, store: str, message: str) -> None:
        self.field, self.value, self.allowed = field, store, message
        ValueError.__init__(self, f"{field}: {message}")
