"""The one-thread lifecycle the agent's components share: start, stop (wake the loop, join it), running.

The heartbeat, the controller and the speaker each run a loop on their own daemon thread that sleeps on
``_wake`` and returns once ``_stopping`` is set; this is that part, written once.
"""

from __future__ import annotations

import threading


class Worker:
    """Runs ``self._run`` on one daemon thread named ``name``; ``_run`` must return once ``_stopping`` is set."""

    STOP_TIMEOUT = 5.0

    def __init__(self, name: str) -> None:
        self._thread_name = name
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end, wake it, and wait for it (not when called from the loop itself)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.STOP_TIMEOUT)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
