"""Where the project's files are: the checkout holding `conf/` (configs) and the embedded stores."""

from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def project_root() -> Path:
    """The checkout holding conf/ (where the embedded stores live)."""
    return CONF_DIR.parent


def group_options(group: str) -> list[str]:
    """The options of config group `group`: the files in conf/<group>/."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
