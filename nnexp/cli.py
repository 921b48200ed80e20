"""Entry-point helpers: user errors become one clear paragraph and a non-zero exit, never a traceback;
SIGTERM is handled like Ctrl-C so that runs end as KILLED rather than staying RUNNING."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from nnexp.errors import ConfigError, choice
from nnexp.interrupts import handled, sigterm_interrupts
from nnexp.paths import CONF_DIR, group_options

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


def fail(message: str, code: int = EXIT_USAGE) -> None:
    sys.stderr.write("error: " + textwrap.fill(message, 100, subsequent_indent="  ") + "\n")
    sys.exit(code)


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
        cause = " ".join(str(e.__cause__).split()) if e.__cause__ else ""
        return f"{text}: {cause}" if cause and cause not in text else text
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


def guarded(fn: Callable[[], Any], interrupted: str = "the run was recorded as KILLED") -> Any:
    """Run fn; ConfigError -> exit 2 with the message; Ctrl-C / SIGTERM -> exit 130."""
    sigterm_interrupts()
    from nnexp.recording import RecordingError

    try:
        return fn()
    except ConfigError as e:
        fail(str(e))
    except RecordingError as e:  # a store that cannot be opened is bad input (2); one that stopped answering, 1
        fail(str(e), EXIT_USAGE if not e.opened else 1)
    except KeyboardInterrupt as e:
        handled()
        sys.stderr.write(f"\ninterrupted ({e or 'Ctrl-C'}): {interrupted}\n")
        sys.exit(EXIT_INTERRUPTED)


def with_default_group(args: Sequence[str], group: str, default: str) -> list[str]:
    """`group=default` first unless the command line already chooses an option of `group`."""
    chosen = any(a.lstrip("+").split("=", 1)[0] == group for a in args)
    return list(args) if chosen else [f"{group}={default}", *args]


def run_sweep(argv: Sequence[str]) -> None:
    """`make sweep` / `make sweep-worker`: argv holds Hydra overrides and, for a worker, --worker[=i]."""
    import os

    from nnexp.console import SweepProgress

    worker = next((a for a in argv if a.startswith("--worker")), None)
    args = with_default_group([a for a in argv if a != worker], "sweep", "default")
    precheck_overrides(args)
    index = None
    if worker is not None:  # a spawned worker says its index; one started by hand gets a seed of its own
        index = int(worker.split("=", 1)[1]) if "=" in worker else 1000 + os.getpid() % 100000

    def go():
        from nnexp.config import compose
        from nnexp.sweeps import worker as sweep
        from nnexp.sweeps.run import run

        cfg = compose(args)
        progress = SweepProgress() if index is None else None
        try:
            return run(cfg, args, worker_index=index, on_population=progress)
        except sweep.SweepError as e:
            fail(f"the sweep stopped: {e}", code=1)

    summary = guarded(go, "trials in progress went back to WAITING and the sweep's runs were closed; run the "
                          "same command again to finish the remaining trials")
    if summary is not None:
        print(summary.text)
        print(f"\nparent run {summary.parent_run} (experiment of the sweep); browse with `make ui`")


def run_ablation(argv: Sequence[str]) -> None:
    """`make ablation` / `make ablation-record` / `make ablation-check`: argv holds --record or --check
    and Hydra overrides (`ablation=<study>` names the study)."""
    check, into_repo = "--check" in argv, "--record" in argv
    args = [a for a in argv if a not in ("--check", "--record")]
    chosen = [a for a in args if a.startswith("ablation=")]
    args = [a for a in args if not a.startswith("ablation=") or a is chosen[-1]]  # ARGS="ablation=x" wins over STUDY
    args = with_default_group(args, "ablation", "seed_claims")
    precheck_overrides(args)

    def go():
        from nnexp.ablations import run
        from nnexp.config import compose

        try:
            if check:
                study = next(a.split("=", 1)[1] for a in args if a.startswith("ablation="))
                return run.check(study, [a for a in args if not a.startswith("ablation=")])
            return run.record(compose(args), args, into_repo=into_repo)
        except run.AblationMismatch as e:
            fail(f"ablation-check failed: {e}", code=1)

    print(guarded(go, "the study's parent run, if it was started, is KILLED; no report was written"))
