"""Ctrl-C / SIGTERM never cut a record in half: inside `deferred()` they wait for the block's end."""

import os
import signal
import threading
import time

import pytest

from nnexp.interrupts import check, deferred, handled, sigterm_interrupts


@pytest.fixture
def handlers():
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    sigterm_interrupts()
    yield
    handled()
    for s, h in old.items():
        signal.signal(s, h)


@pytest.mark.parametrize(("sig", "reason"), [(signal.SIGINT, ""), (signal.SIGTERM, "SIGTERM")])
def test_an_interrupt_inside_a_block_is_raised_after_it(handlers, sig, reason):
    done = []
    with pytest.raises(KeyboardInterrupt) as info:
        with deferred():
            os.kill(os.getpid(), sig)
            time.sleep(0.05)  # the handler runs here, and only takes note
            done.append("the whole block ran")
    assert done == ["the whole block ran"] and str(info.value) == reason


def test_a_signal_caught_by_another_thread_still_waits(handlers):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            t = threading.Thread(target=lambda: os.kill(os.getpid(), signal.SIGINT))
            t.start()
            t.join()
            time.sleep(0.05)
            done.append(1)
    assert done == [1]


def test_outside_a_block_an_interrupt_is_immediate(handlers):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_interrupt_swallowed_by_a_finaliser_is_raised_at_the_next_check(handlers):
    class Finalised:
        def __del__(self):  # Python ignores exceptions raised here ("Exception ignored in ...")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)

    Finalised()  # the interrupt is raised inside __del__, and lost there
    with pytest.raises(KeyboardInterrupt):
        check()
    handled()
    check()  # handled: nothing more to raise


def test_an_interrupt_while_a_new_mlflow_store_is_made_leaves_it_whole(handlers, tmp_path, monkeypatch):
    """A Ctrl-C while MLflow creates and migrates a new SQLite store waits until the schema is whole:
    cut halfway, the store failed every later run ("duplicate column name: step")."""
    from alembic.ddl.impl import DefaultImpl

    from nnexp.recording.store import Store

    real, calls = DefaultImpl._exec, []

    def execute(self, *args, **kwargs):  # one statement of MLflow's migrations
        calls.append(1)
        if len(calls) == 40:  # midway through the migrations
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DefaultImpl, "_exec", execute)
    url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(KeyboardInterrupt):
        Store(url)
    handled()
    monkeypatch.undo()
    store = Store(url)
    exp = store.experiment("x")
    store.end(store.create(exp, "k", "after", {}, None, None), "FINISHED")
    assert [r.info.status for r in store.client.search_runs([exp])] == ["FINISHED"]
    assert len(calls) > 40  # the interrupt waited for the migrations' end
