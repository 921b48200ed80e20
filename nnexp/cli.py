"""The command line (`make train`, `make sweep`, `make ablation`, ...): thin wrappers of the Python API
(`nnexp.train`, `nnexp.sweep`, `nnexp.ablation`). User errors become one clear paragraph and exit 2,
never a traceback; Ctrl-C and SIGTERM, from the first instant (imports included), end the command with
exit 130 and one line, its runs KILLED rather than left RUNNING.

This module imports nothing heavy at its top: the entry scripts install the interrupt handlers first.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from nnexp.errors import ConfigError
from nnexp.interrupts import handled, sigterm_interrupts

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


def fail(message: str, code: int = EXIT_USAGE) -> None:
    # paths and commands in a message stay whole on one line, so they can be copied (not cut at a hyphen)
    sys.stderr.write("error: " + textwrap.fill(message, 100, subsequent_indent="  ", break_long_words=False,
                                               break_on_hyphens=False) + "\n")
    sys.exit(code)


def guarded(fn: Callable[[], Any], interrupted: str = "the run was recorded as KILLED") -> Any:
    """Run fn; ConfigError -> exit 2 with the message; a store that cannot be opened -> exit 2, one that
    stopped answering -> 1; Ctrl-C / SIGTERM -> exit 130."""
    sigterm_interrupts()
    try:
        from nnexp.recording import RecordingError

        try:
            return fn()
        except ConfigError as e:
            fail(str(e))
        except RecordingError as e:
            fail(str(e), EXIT_USAGE if not e.opened else 1)
    except KeyboardInterrupt as e:
        handled()
        sys.stderr.write(f"\ninterrupted ({str(e) or 'Ctrl-C'}): {interrupted}\n")  # Ctrl-C: an empty message
        sys.exit(EXIT_INTERRUPTED)


def run_train(argv: Sequence[str]) -> None:
    """`make train`: one tracked run; exit 1 if it diverged. `--best=<study>` (`make train-best`) trains
    a sweep's best trial again (its storage: `sweep.storage=...` among the overrides, else the default)."""

    def go():
        import nnexp
        from nnexp.runner import summary_text

        args = list(argv)
        best = next((a for a in args if a.startswith("--best=")), None)
        if best is not None:
            from nnexp.sweeps.storage import best_overrides

            storage = next((a for a in args if a.startswith("sweep.storage=")), None)
            args = [a for a in args if a not in (best, storage)]
            args = [*best_overrides(best.split("=", 1)[1], storage.split("=", 1)[1] if storage else None), *args]
        summary = nnexp.train(args, progress=None)
        print(summary_text(summary))
        return summary

    summary = guarded(go, "nothing was trained to the end; the run, if it was started, is recorded as KILLED")
    if summary.status != "FINISHED":
        sys.exit(1)


def run_sweep(argv: Sequence[str]) -> None:
    """`make sweep` / `make sweep-worker`: argv holds Hydra overrides and, for a worker, --worker[=i]."""
    worker = next((a for a in argv if a.startswith("--worker")), None)
    args = [a for a in argv if a != worker]
    index = None
    if worker is not None:  # a spawned worker says its index; one started by hand gets a seed of its own
        index = int(worker.split("=", 1)[1]) if "=" in worker else 1000 + os.getpid() % 100000

    def go():
        import nnexp
        from nnexp.console import SweepProgress
        from nnexp.sweeps.worker import SweepError

        try:
            return nnexp.sweep(args, worker=index, progress=SweepProgress() if index is None else None)
        except SweepError as e:
            fail(f"the sweep stopped: {e}", code=1)

    summary = guarded(go, "trials in progress went back to WAITING and the sweep's runs were closed; run the "
                          "same command again to finish the remaining trials")
    if summary is not None:
        print(summary.text)
        print(f"\nparent run {summary.parent_run} (experiment of the sweep); browse with `make ui`")


def run_ablation(argv: Sequence[str]) -> None:
    """`make ablation` / `make ablation-record` / `make ablation-check`: argv holds --record or --check
    and Hydra overrides (`ablation=<study>` names the study; the last one given wins)."""
    check, into_repo = "--check" in argv, "--record" in argv
    args = [a for a in argv if a not in ("--check", "--record")]
    chosen = [a for a in args if a.startswith("ablation=")]
    args = [a for a in args if not a.startswith("ablation=") or a is chosen[-1]]  # ARGS="ablation=x" wins over STUDY

    def go():
        import nnexp
        from nnexp.ablations import run

        try:
            if check:
                study = chosen[-1].split("=", 1)[1] if chosen else "seed_claims"
                return run.check(study, [a for a in args if not a.startswith("ablation=")])
            return nnexp.ablation(args, record=into_repo).text
        except run.AblationMismatch as e:
            fail(f"ablation-check failed: {e}", code=1)

    print(guarded(go, "the study's parent run, if it was started, is KILLED; no report was written"))
