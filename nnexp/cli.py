"""Entry-point helpers: user errors become one clear paragraph and a non-zero exit, never a traceback;
SIGTERM is handled like Ctrl-C so that runs end as KILLED rather than staying RUNNING."""

from __future__ import annotations

import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from nnexp.config import CONF_DIR
from nnexp.errors import ConfigError, choice

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


def fail(message: str, code: int = EXIT_USAGE) -> None:
    sys.stderr.write("error: " + textwrap.fill(message, 100, subsequent_indent="  ") + "\n")
    sys.exit(code)


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def precheck_overrides(args: Sequence[str]) -> None:
    """Check the command line's overrides before Hydra runs, so that every mistake ends in one
    paragraph naming the problem: a misspelt group option or key gets its close matches, a
    malformed override the parser's complaint."""
    if any(a.startswith("-") for a in args):  # --help, --cfg, -m ...: Hydra's own business
        return
    _check_group_options(args)
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from nnexp.config import compose

    try:
        compose(args)
    except OverrideParseException as e:
        fail(f"could not parse the override: {e}. Overrides look like key=value, e.g. optimizer.lr=0.05")
    except ConfigCompositionException as e:
        fail(_explain_composition_error(e, args))


def _explain_composition_error(e: Exception, args: Sequence[str]) -> str:
    """An unknown key becomes 'no such setting', with the settings that do exist beside it."""
    import difflib
    import re

    from omegaconf import DictConfig, OmegaConf

    from nnexp.config import compose

    text = " ".join(str(e).split())
    m = re.search(r"Could not override '([^']+)'", text)
    if not m:
        return text
    key = m.group(1)
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(compose([a for a in args if not a.startswith(key + "=")]), parent) if parent else None
    if not isinstance(node, DictConfig):
        return f"{key}: no such setting ({text})"
    options = sorted(str(k) for k in node.keys() if k != "_target_")
    close = difflib.get_close_matches(leaf, options, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{key}: no such setting; settings of {parent}: {', '.join(options)}.{hint}"


def _check_group_options(args: Sequence[str]) -> None:
    for arg in args:
        if "=" not in arg or arg.startswith(("hydra", "+", "~", "-")):
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+")
        if "." in key or "/" in key or not (CONF_DIR / key).is_dir():
            continue
        if value in ("null", "") and key == "experiment":
            continue
        try:
            choice(key, value, group_options(key))
        except ConfigError as e:
            fail(f"{e} (config group {key!r} in conf/{key}/)")


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")


def guarded(fn: Callable[[], Any]) -> Any:
    """Run fn; ConfigError -> exit 2 with the message; Ctrl-C / SIGTERM -> exit 130."""
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        return fn()
    except ConfigError as e:
        fail(str(e))
    except KeyboardInterrupt as e:
        sys.stderr.write(f"\ninterrupted ({e or 'Ctrl-C'}): the run was recorded as KILLED\n")
        sys.exit(EXIT_INTERRUPTED)
