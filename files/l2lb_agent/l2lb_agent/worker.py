"""The one-thread lifecycle every long-lived thread of the agent shares: start, stop, running, and death.

The heartbeat, the controller, the speaker, the election, every informer, the ARP responder, the netlink
watcher and the watchdog each run a loop on their own daemon thread that sleeps on ``_wake`` and returns
once ``_stopping`` is set; this is that part, written once. It also tracks the one thing ``/healthz``
must never miss: a thread that ended although nobody asked it to stop (an exception escaped its loop,
or the loop returned). That is recorded here (:attr:`Worker.failure`), logged once at ERROR with the
traceback, and reported to the death listeners (the agent turns unhealthy and exits). A thread that
ends because :meth:`Worker.stop` asked it to is not dead, whatever it raised on the way out.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

DeathListener = Callable[["Worker"], None]


class ThreadKilled(BaseException):
    """Raised inside a worker's thread by :meth:`Worker.kill` (the debug hook). A BaseException, so no
    loop's ``except Exception`` survives it: the thread dies the way an unexpected bug would kill it."""


class Worker:
    """Runs ``self._run`` on one daemon thread named ``name``; ``_run`` must return once ``_stopping`` is set."""

    STOP_TIMEOUT = 5.0
    _thread: threading.Thread | None
    error: BaseException | None

    def __init__(self, name: str) -> None:
        self._thread_name = name
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._death_listeners: list[DeathListener] = []
        self.error: BaseException | None = None
        """What ended the thread, when it ended without being asked to stop (None while it is fine)."""

    def _run(self) -> None:
        raise NotImplementedError

    # ---- lifecycle ----

    def start(self) -> None:
        self._thread = threading.Thread(target=self._worker_main, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end, wake it, and wait for it (not when called from the loop itself)."""
        self._request_stop()
        self._join(self.STOP_TIMEOUT)

    def _request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._poke()

    def _join(self, timeout: float | None) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def thread_name(self) -> str:
        return self._thread_name

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- death ----

    @property
    def failure(self) -> str | None:
        """One line saying why the thread died (it ended without being asked to stop), else None."""
        if self.error is None:
            return None
        return f"{type(self.error).__name__}: {self.error}".rstrip(": ")

    def add_death_listener(self, listener: DeathListener) -> None:
        """``listener(worker)`` runs on the dying thread, once, when it ends without being asked to."""
        self._death_listeners.append(listener)

    def _worker_main(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            if self._stopping.is_set() and not isinstance(exc, ThreadKilled):
                log.debug("%s raised while stopping", self._thread_name, exc_info=exc)
                return
            self._died(exc)
        else:
            if not self._stopping.is_set():
                self._died(RuntimeError("its loop returned although nobody asked it to stop"))

    def _died(self, exc: BaseException) -> None:
        self.error = exc
        log.error("thread %s died: %s", self._thread_name, self.failure, exc_info=exc)
        for listener in list(self._death_listeners):
            try:
                listener(self)
            except Exception:
                log.exception("death listener of %s failed", self._thread_name)

    def _poke(self) -> None:
        """Make a sleeping loop run Python code again soon (stop and :meth:`kill` call this).

        The loops sleep on ``_wake``; a subclass that blocks elsewhere (a socket, a stream, an event
        loop) overrides this to interrupt that wait.
        """
        self._wake.set()

    def kill(self) -> bool:
        """Debug hook: raise :class:`ThreadKilled` inside the thread, as if its loop had a fatal bug.

        The exception is delivered the next time the thread runs Python code (:meth:`_poke` wakes it).
        False when the thread is not running. Only the debug endpoint and tests call this.
        """
        thread = self._thread
        if thread is None or not thread.is_alive() or thread.ident is None:
            return False
        done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(ThreadKilled))
        if done != 1:
            return False
        self._poke()
        return True
