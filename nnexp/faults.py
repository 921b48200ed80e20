"""Stores that survive faults: a full disk, a read-only file system, a crash in the middle of a write.

Three rules, each reproduced before it was written (tests/test_faults.py):

- A new SQLite store (MLflow's tracking database, an Optuna sqlite:/// storage) appears whole or not at
  all: it is created and migrated under a temporary name beside its final one, then hard-linked into
  place only if no other process placed one first. Migrated in place, a full disk halfway left a
  store that failed every later run ("table secrets already exists").
- A store that refuses a write (full, read-only, no permission) ends the command with one paragraph
  naming the store and what to do (`StoreError`, exit 2 at the command line), not a traceback; the
  runs and trials it was writing are closed as far as the stores still accept writes.
- `cause` tells such faults from bugs, by errno or by SQLite's own message, through MLflow's and
  SQLAlchemy's wrapping.
"""

from __future__ import annotations

import errno
import os
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

from nnexp.errors import ConfigError, StoreError

_ERRNO = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
          errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
          errno.EPERM: "permission denied", errno.EIO: "a disk I/O error"}
_SQLITE = {"database or disk is full": "the disk is full", "attempt to write a readonly database": "it is read-only",
           "unable to open database file": "it cannot be opened", "disk I/O error": "a disk I/O error"}
FULL = ("the disk is full", "the disk quota is used up")


def cause(exc: BaseException | None) -> str | None:
    """What made a store refuse (e.g. 'the disk is full'), if `exc` or an exception it came from is
    such a fault; None for anything else (a bug, a bad value, an interrupt)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _ERRNO:
            return _ERRNO[exc.errno]
        text = str(exc)
        for message, reason in _SQLITE.items():
            if message in text:
                return reason
        exc = exc.__cause__ or exc.__context__
    return None


def origin(exc: BaseException) -> str | None:
    """'optuna' or 'mlflow': the library whose store raised `exc`, by the innermost of their frames in
    its traceback (or, failing that, in the tracebacks of the exceptions it came from)."""
    for e in _chain(exc):
        for frame in reversed(traceback.extract_tb(e.__traceback__)):
            for lib in ("optuna", "mlflow"):
                if f"{os.sep}{lib}{os.sep}" in frame.filename:
                    return lib
    return None


def best_effort(exc: BaseException, *steps: Callable[[], object]) -> bool:
    """Clean up after `exc` (end a run, put trials back). When `exc` is a store fault the store may
    refuse the clean-up too: the reserves of full disks are given up first (`reserve`), then each step
    is tried and its failure swallowed (False is returned), so that the fault is what the user sees.
    After any other exception a failing step raises, as before."""
    if cause(exc) is not None:
        release()
    done = True
    for step in steps:
        try:
            step()
        except Exception:
            if cause(exc) is None:
                raise
            done = False
    return done


def stopped(exc: BaseException, stores: dict[str, tuple[str, str]], after: str) -> StoreError | None:
    """The StoreError that explains store fault `exc` (None if it is none): `stores` maps 'optuna' /
    'mlflow' to (config field, store), the first one named when the origin is unknown; `after` says
    what was written and closed."""
    if isinstance(exc, ConfigError):
        return None
    reason = cause(exc)
    if reason is None:
        return None
    field, store = stores.get(origin(exc) or "", next(iter(stores.values())))
    named = next((e for e in _chain(exc) if isinstance(e, OSError) and e.filename), None)
    if named is not None:  # a file that is not a database: the journal, an artifact
        store = str(named.filename)
    reason = _full_disk(reason, _file_of(store))
    todo = "free some space" if reason in FULL else "make it writable"
    return StoreError(field, store, f"the store {store} cannot be written: {reason}. {after} To go on, {todo} "
                      f"(or point {field} at another store) and run the same command again.")


def explain(exc: BaseException, stores: dict[str, tuple[str, str]], after: str) -> None:
    """Raise the StoreError explaining `exc` if it is a store fault (see `stopped`); else return, and
    the caller raises `exc` as it is."""
    error = stopped(exc, stores, after)
    if error is not None:
        raise error from exc


def _chain(exc: BaseException | None):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _file_of(store: str) -> Path:
    return sqlite_file(store) or Path(store[len("journal:"):] if store.startswith("journal:") else store)


RESERVE = 1 << 20
_reserves: set[Path] = set()


def _full_disk(reason: str, path: Path) -> str:
    """SQLite reports a full disk as such only when a write fails; opening a WAL store on a full disk
    fails first with "disk I/O error" (its -shm file cannot grow; reproduced on a full tmpfs)."""
    if reason in FULL:
        return reason
    try:
        free = os.statvfs(next(p for p in (path, *path.parents) if p.exists()))
    except (OSError, StopIteration):
        return reason
    return "the disk is full" if free.f_bavail * free.f_frsize < 2 * RESERVE else reason  # (a reserve given up)


def reserve(store: Path) -> None:
    """Keep RESERVE bytes of the store's disk in `<store>.reserve`, given up when the disk is full so that
    the clean-up still fits: on a full disk MLflow could not mark a run FAILED nor Optuna put a trial
    back (reproduced on a full tmpfs: the run stayed RUNNING). Measured on a full tmpfs, 1 MiB takes
    ~8,000 journal records, and two (a store's and its journal's) over 300 MLflow runs tagged and
    ended. Made again by the next process that opens the store, once there is room."""
    path = store.with_name(store.name + ".reserve")
    _reserves.add(path)
    if path.exists():
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:  # another process is making it, or the directory refuses: nothing to keep
        return
    try:
        os.write(fd, bytes(RESERVE))  # written, not sparse: the blocks are really taken
        os.fsync(fd)
    except OSError:  # no room even for this: the next open tries again
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def release() -> None:
    """Give up the reserves this process knows of on disks that are full."""
    for path in _reserves:
        if path.exists() and _full_disk("", path) in FULL:
            path.unlink(missing_ok=True)


def writable(path: Path, field: str, what: str) -> None:
    """Refuse, before anything is written, a store whose file or directory cannot be written (a
    read-only mount, a file without write permission): otherwise the first write fails halfway
    through a run. os.access sees both (EROFS, and mode bits for users other than root)."""
    for p, kind in ((path, "file"), (path.parent, "directory")):
        if p.exists() and not os.access(p, os.W_OK):
            how = "is on a read-only file system" if os.statvfs(p).f_flag & os.ST_RDONLY else \
                "is not writable for this user"
            raise StoreError(field, str(path), f"the {what} {path} cannot be written: its {kind} {p} {how}. Nothing "
                             f"was recorded. Make it writable (or point {field} at another store) and run the same "
                             "command again.")


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory ones."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def create_sqlite(url: str, build: Callable[[str], None], field: str, what: str, wal: bool = False) -> bool:
    """Create the SQLite database of `url` whole or not at all, unless it exists: `build(url)` makes it
    under a temporary name in the same directory, which is linked into place only if the final name
    is still free (a concurrent creator that placed its store first wins; both then use that one).
    Returns True if this call placed it. Any failure removes the temporary files; a store fault
    becomes a StoreError saying nothing was written."""
    from sqlalchemy.engine import make_url

    path = sqlite_file(url)
    if path is None or path.exists():
        return False
    writable(path, field, what)  # its directory, if it exists
    tmp = path.with_name(f"{path.name}.new-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if wal:
            _sqlite(tmp, "PRAGMA journal_mode=WAL")  # kept in the file's header
        build(make_url(url).set(database=str(tmp)).render_as_string(hide_password=False))
        if wal:
            _sqlite(tmp, "PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the one file
        _fsync(tmp)
        return _place(tmp, path)
    except Exception as e:
        reason = cause(e)
        if reason is None or isinstance(e, ConfigError):
            raise
        reason = _full_disk(reason, path)
        todo = "free some space on" if reason in FULL else "make writable"
        raise StoreError(field, str(path), f"could not create the new {what} {path}: {reason} ({_first_line(e)}). "
                         f"Nothing was written: the half-made copy was removed and no store exists at that path. "
                         f"{todo.capitalize()} {path.parent} (or point {field} elsewhere) and run the same command "
                         "again.") from e
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def _sqlite(path: Path, statement: str) -> None:
    import sqlite3

    con = sqlite3.connect(path, timeout=60)
    try:
        con.execute(statement).fetchall()
    finally:
        con.close()  # the last connection to close removes -wal and -shm


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place(tmp: Path, path: Path) -> bool:
    """Give the finished store at `tmp` its final name unless a store is already there."""
    try:
        os.link(tmp, path)  # atomic, and fails if the name is taken: never replaces another's store
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # a file system without hard links (some network and FUSE mounts): rename unless a store appeared
        # meanwhile; two creators finishing within the same moment could still both rename there
        if path.exists():
            return False
        os.rename(tmp, path)
    _fsync(path.parent)
    return True


def _first_line(e: BaseException) -> str:
    root = e
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip().splitlines()
    return f"{type(root).__name__}: {text[0][:200] if text else ''}"
