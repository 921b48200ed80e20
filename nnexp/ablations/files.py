"""Where a study's report goes and how it gets there: `outputs/ablation/<study>/` (or
`ablation.report_dir`), or `experiments/<study>/` when recorded into the repository; written into a
staging directory beside it and put in place in two renames, so that a reader never sees half of one
report and half of another."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nnexp.errors import ConfigError
from nnexp.paths import project_root


def report_dir(name: str, configured: str | None, record: bool) -> Path:
    if record:
        return project_root() / "experiments" / name
    d = Path(configured) if configured else Path("outputs") / "ablation" / name
    return d if d.is_absolute() else project_root() / d


def writable(directory: Path) -> None:
    """Refuse, before anything trains, a report directory that cannot be made or written."""
    parent = directory
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError("ablation.report_dir", str(directory), f"{parent} is not a directory this user can write")


@contextmanager
def staged(directory: Path) -> Iterator[Path]:
    """A staging directory for the report's files; on a clean exit it replaces `directory` whole."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent) as staging:
        yield Path(staging)
        replace(Path(staging), directory)


def replace(stage: Path, directory: Path) -> None:
    """Put the staged report in place of `directory` in two renames (never half of each)."""
    old = directory.with_name(f".{directory.name}.old")
    new = directory.with_name(f".{directory.name}.new")
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(new, ignore_errors=True)
    shutil.copytree(stage, new)
    if directory.exists():
        directory.rename(old)
    new.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
