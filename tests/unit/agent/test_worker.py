"""The Worker base: a thread that dies is recorded once (and told), a thread that was asked to stop is
not dead whatever it raised, a loop that returns unasked is dead, and kill() (the debug hook) ends a
sleeping loop the way a bug would."""

from __future__ import annotations

import time

import pytest

from l2lb_agent.speaker.responder import Responder
from l2lb_agent.worker import ThreadKilled, Worker


class Loop(Worker):
    def __init__(self, body: object = None) -> None:
        super().__init__("test-loop")
        self.body = body
        self.rounds = 0

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.rounds += 1
            if callable(self.body):
                self.body(self)
            self._wake.wait(10.0)
            self._wake.clear()


def _wait(check: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_an_exception_is_recorded_logged_once_and_told(caplog: pytest.LogCaptureFixture) -> None:
    told: list[Worker] = []

    def boom(worker: Worker) -> None:
        raise ValueError("boom")

    loop = Loop(boom)
    loop.add_death_listener(told.append)
    loop.start()
    _wait(lambda: not loop.running)
    assert loop.failure == "ValueError: boom"
    assert told == [loop]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is not None, "one ERROR line with the traceback"
    assert "test-loop" in errors[0].getMessage()


def test_a_normal_stop_is_not_a_death_even_if_it_raises_on_the_way_out() -> None:
    class Cleanup(Worker):
        def _run(self) -> None:
            self._stopping.wait()
            raise RuntimeError("cleanup failed")

    for worker in (Loop(), Cleanup("cleanup")):
        told: list[Worker] = []
        worker.add_death_listener(told.append)
        worker.start()
        time.sleep(0.05)
        worker.stop()
        assert not worker.running
        assert worker.failure is None and told == []


def test_a_loop_that_returns_unasked_is_dead() -> None:
    class Quitter(Worker):
        def _run(self) -> None:
            return

    quitter = Quitter("quitter")
    quitter.start()
    _wait(lambda: not quitter.running)
    assert quitter.failure is not None and "nobody asked it to stop" in quitter.failure


def test_kill_ends_a_sleeping_loop_with_thread_killed() -> None:
    loop = Loop()
    assert not loop.kill(), "nothing to kill before start"
    loop.start()
    _wait(lambda: loop.rounds >= 1)
    assert loop.kill()
    _wait(lambda: not loop.running, timeout=1.0)
    assert isinstance(loop.error, ThreadKilled)
    assert loop.failure is not None and loop.failure.startswith("ThreadKilled")
    assert not loop.kill(), "a dead thread cannot be killed again"


def test_kill_reaches_the_arp_responder_blocked_in_select() -> None:
    responder = Responder()
    responder.start()
    try:
        time.sleep(0.1)  # in select(), with nothing to do until the link check
        started = time.monotonic()
        assert responder.kill()
        _wait(lambda: not responder.running, timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert isinstance(responder.error, ThreadKilled)
    finally:
        responder.stop()


def test_kill_reaches_the_netlink_watcher_in_its_event_loop() -> None:
    from l2lb_agent.netinfo import NetlinkWatcher

    watcher = NetlinkWatcher(lambda change: None)
    try:
        watcher.start()
    except Exception as exc:  # no netlink here
        pytest.skip(f"netlink unavailable: {exc}")
    try:
        time.sleep(0.1)
        assert watcher.kill()
        _wait(lambda: not watcher.running, timeout=1.0)
        assert isinstance(watcher.error, ThreadKilled)
    finally:
        watcher.stop()
    quiet = NetlinkWatcher(lambda change: None)
    quiet.start()
    quiet.stop()
    assert not quiet.running and quiet.failure is None
