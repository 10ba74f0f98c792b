"""Interface facts for the agent.

The implementation lives with the shared model (``plugins/module_utils/l2lb/netinfo.py``, shipped here as
``l2lb_agent.model.netinfo``) so the ``interface_info`` Ansible module and the agent use the same code.
The agent's :class:`NetlinkWatcher` is the model's ``InterfaceWatcher``, run on the :class:`~l2lb_agent.worker.Worker`
base, so a netlink watcher that dies is recorded and reported like every other thread of the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .model import netinfo as _model
from .model.netinfo import *  # noqa: F403  (re-export the whole public API)
from .worker import Worker


class NetlinkWatcher(Worker, _model.InterfaceWatcher):
    """The model's netlink watcher on the Worker base: its death (after the initial load) is recorded.

    An error before the initial state is loaded is raised by :meth:`start`, as in the model.
    """

    def __init__(self, on_change: _model.ChangeCallback, **options: Any) -> None:
        _model.InterfaceWatcher.__init__(self, on_change, **options)
        Worker.__init__(self, "l2lb-netinfo-watch")

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("InterfaceWatcher already started")
        Worker.start(self)
        if not self._ready.wait(timeout):
            raise TimeoutError("interface watcher did not load the initial state in time")
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        _model.InterfaceWatcher.stop(self, timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc  # start() raises it
                self._stopping.set()  # not a death: the agent never started
                return
            raise
        finally:
            self._ready.set()

    def _poke(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop finished meanwhile
                loop.call_soon_threadsafe(lambda: None)  # wakes the event loop's selector
