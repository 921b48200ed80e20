"""Whether a tracking store answers, told without MLflow (whose import takes seconds): the recorder checks
it before its first record, and tells a store that does not answer now (retried) from one that refuses a
record for good."""

from __future__ import annotations

import contextlib
import sqlite3
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from nnexp import faults


class StoreGone(RuntimeError):
    """The tracking store stopped answering and did not come back in time."""


def cannot_open(uri: str, why: str) -> StoreGone:
    return StoreGone(f"tracking.uri = {uri!r}: cannot open this tracking store ({why}). Start the server (make "
                     "server), or point tracking.uri / MLFLOW_TRACKING_URI at a store that answers; nothing was "
                     "recorded")


def preflight(uri: str, timeout: float = 10.0) -> None:
    """Raise StoreGone unless the store answers, checked without MLflow (whose import takes seconds): a
    tracking server takes a connection and answers an HTTP request (its /health; any status counts, and so
    does a TLS handshake this check cannot verify: a proxy, a path prefix or the server's own certificate
    settings are MLflow's to judge when the recorder opens the store), an existing SQLite file is a
    database. Other stores (an RDB) are checked when the recorder opens them."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
                r.read(64)
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError, ValueError) as e:
            if isinstance(getattr(e, "reason", e), ssl.SSLError):
                return  # it answered, over TLS
            raise cannot_open(uri, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    elif uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if path.exists():
            try:
                ro = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"  # '#', '?', '%' in a path are data
                with contextlib.closing(sqlite3.connect(ro, uri=True, timeout=timeout)) as db:
                    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as e:
                raise cannot_open(uri, f"{type(e).__name__}: {e}") from None


def unreachable(e: Exception) -> bool:
    """A store that does not answer now (retried), not one that refuses a record for good."""
    if isinstance(e, StoreGone):  # given up on already
        return False
    text = f"{type(e).__name__}: {e}"
    if faults.cause(e):  # a full disk, a read-only store: the records wait in the spool until it takes them
        return True
    return text.startswith("ParentNotYet") or any(
        w in text for w in ("Connection", "connection", "Max retries", "timed out", "503", "502"))
