"""Informers: a thread-safe cache of one resource kept current by LIST, then WATCH (see :class:`Informer`)."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from ..logs import fields
from ..worker import Worker
from .client import ApiError, KubeClient, Resource, _short, resource_version

log = logging.getLogger(__name__)

# What a watch connection that breaks mid-stream raises (a restarted or killed kube-apiserver, a reset).
_TRANSPORT_ERRORS = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError)

# kube-apiserver's watch cache sends every watcher a bookmark about once a minute; two missed in a row
# (plus margin) on a connection that once had them means the stream is dead, not quiet.
DEFAULT_STALL_AFTER = 150.0


def _lines(response: Any) -> Iterator[bytes]:
    """The newline-separated events of a watch response, as the chunks arrive."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line, buffer = buffer[:end], buffer[end + 1 :]
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _socket_of(response: Any) -> socket.socket | None:
    """The socket under a urllib3 response (urllib3 2: ``connection.sock``; else http.client's)."""
    connection = getattr(response, "connection", None) or getattr(response, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        raw = getattr(getattr(getattr(response, "_fp", None), "fp", None), "raw", None)
        sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _older(candidate: str, current: str) -> bool:
    """Whether ``candidate`` is an older resourceVersion than ``current``.

    resourceVersions are opaque, but every real server (etcd revisions) and the stand-in use integers;
    when they are not integers we cannot tell and never call anything older.
    """
    try:
        return int(candidate) < int(current)
    except ValueError:
        return False


EventHandler = Callable[[str, "dict[str, Any] | None", "dict[str, Any] | None"], None]
"""handler(event_type, old, new): ADDED (old None), MODIFIED, DELETED (new None). Runs on the informer
thread: keep it short (set a flag, wake a loop)."""


class Backoff:
    """Exponential backoff with jitter, for reconnecting watches."""

    def __init__(self, initial: float = 0.1, maximum: float = 2.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay * random.uniform(0.8, 1.2)


class Informer(Worker):
    """A thread-safe cache of one resource kept current by LIST, then WATCH from the list's resourceVersion.

    On 410 Gone (the resourceVersion is too old) it re-lists; on errors it backs off and re-lists
    (the server may have restarted with another history); a watch the server ends on its timeout is
    resumed from the last resourceVersion. Handlers hear every change, including the differences a
    re-list reveals. During an API outage the cache keeps its last contents (fail-static).

    The watch is read straight from the HTTP response (``watch=True, _preload_content=False``), which
    the informer keeps: :meth:`restart_watch` shuts its socket down, so even a stream that went silent
    (a half-open connection, a server that stopped sending) ends at once instead of at the read timeout.
    :meth:`stalled` says when a watch looks like that (see ``stall_after``); the agent's watchdog asks.
    """

    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
        watch_timeout: tuple[int, int] = (240, 360),
        name: str = "",
        stall_after: float | None = DEFAULT_STALL_AFTER,
    ) -> None:
        super().__init__(f"l2lb-informer-{name or resource.plural}")
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self._keep = keep
        self._watch_timeout = watch_timeout
        self.name = name or resource.plural
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, Any]] = {}
        self._rv = ""
        self._handlers: list[EventHandler] = []
        self._synced = threading.Event()
        self._response: Any = None  # the urllib3 response of the watch being read
        self._response_lock = threading.Lock()
        self._restart = False
        self._restart_relists = True
        self.listing = False  # a LIST is in flight: the cache is about to be fresh anyway
        self.last_event_at: float | None = None
        self.watch_started_at: float | None = None  # while a watch stream is open
        self.bookmarks_seen = False  # the server sends bookmarks: a long silence then means a dead stream
        self.stall_after = stall_after

    # ---- public API ----

    def add_handler(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def start(self) -> None:
        if self._thread is not None:
            return
        super().start()

    def stop(self, timeout: float = 3.0) -> None:
        self._request_stop()
        self._join(timeout)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items.values())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._items)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(key)

    def restart_watch(self, relist: bool = True) -> None:
        """Drop the current watch stream (e.g. it looks stalled) and re-list, now.

        Shuts the stream's socket down, so a read blocked on a silent connection returns at once.
        With ``relist=False`` the new watch resumes from our resourceVersion instead (a connection the
        server may have forgotten, not a cache we doubt): the server replays what we missed, or says
        410 Gone and we re-list then.
        """
        # A re-list asked for and not yet done stays asked for.
        self._restart_relists = relist or not self._rv or (self._restart and self._restart_relists)
        self._restart = True
        self._poke()

    def stalled(self, now: float | None = None) -> str | None:
        """Why the open watch looks dead, or None.

        Only where the server has shown it sends bookmarks (kube-apiserver: about every minute) does
        silence mean anything: a quiet resource is otherwise indistinguishable from a dead stream. Then
        no event and no bookmark for ``stall_after`` seconds is a stall.
        """
        since = self.watch_started_at
        if since is None or self.stall_after is None or not self.bookmarks_seen:
            return None
        quiet = (time.monotonic() if now is None else now) - max(since, self.last_event_at or 0.0)
        if quiet <= self.stall_after:
            return None
        return f"no event or bookmark for {quiet:.1f}s"

    def store_written(self, obj: Mapping[str, Any]) -> None:
        """Fold the response of our own write into the cache, so we never act on our stale copy.

        The watch event for the same write arrives later with the same resourceVersion and is then a
        no-op; handlers hear about the change now.
        """
        if not obj or not (obj.get("metadata") or {}).get("name"):
            return
        new = dict(obj)
        key = self.resource.key(new)
        with self._lock:
            old = self._items.get(key)
            if old is not None and _older(resource_version(new), resource_version(old)):
                return
            if old is not None and resource_version(old) == resource_version(new):
                return
            self._items[key] = new
        self._fire("MODIFIED" if old is not None else "ADDED", old, new)

    # ---- the informer thread ----

    def _poke(self) -> None:
        """Wake a backoff wait and end the open watch stream (stop, restart, the debug hook)."""
        self._wake.set()
        # Under the lock: the reader forgets the response (under it) before its connection goes back
        # to the pool, so this never shuts down a connection that already serves another request.
        with self._response_lock:
            response = self._response
            sock = _socket_of(response) if response is not None else None
            if sock is not None:
                # shutdown, not close: it wakes the reader blocked in recv (close would not), and the
                # reader's own cleanup then closes the connection. The plain socket's method, under TLS
                # too, so nothing touches the SSL object another thread is reading with.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _pause(self, delay: float) -> None:
        """Back off for ``delay`` seconds, or until stopped or asked to restart."""
        self._wake.wait(delay)
        self._wake.clear()

    def _run(self) -> None:
        backoff = Backoff()
        need_list = True
        failing = False  # log the first failure of an outage as a warning, the rest at debug
        while not self._stopping.is_set():
            try:
                if need_list:
                    self._relist()
                    need_list = False
                    if failing:
                        log.info("watch resumed", extra=fields(resource=self.name))
                        failing = False
                started = time.monotonic()
                events = self._watch_once()
                if events or time.monotonic() - started > 1.0:
                    backoff.reset()
                if self._restart:
                    self._restart = False
                    need_list = self._restart_relists
                    self.kube.metrics.watch_restarts.labels(self.resource.plural, "restart").inc()
                elif not events and time.monotonic() - started < 1.0 and not self._stopping.is_set():
                    # A stream that ends at once, again and again, must not spin.
                    self._pause(backoff.next())
            except ApiError as exc:
                if self._stopping.is_set():
                    break
                # As client-go's reflector: when the API did not answer (a restart, an outage), resume the
                # watch from the resourceVersion we have — the server replays what we missed, or says 410
                # Gone and we re-list then. A re-list after every blip would cost N lists per restart.
                # A re-list that failed is still owed.
                need_list = need_list or not (exc.unavailable and self._rv)
                if exc.gone:
                    self.kube.metrics.watch_restarts.labels(self.resource.plural, "gone").inc()
                    continue
                self.kube.metrics.watch_restarts.labels(self.resource.plural, "error").inc()
                delay = max(backoff.next(), exc.retry_after or 0.0)
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "watch failed; retrying",
                    extra=fields(
                        resource=self.name, status=exc.status, error=exc.message or exc.reason, delay=round(delay, 2)
                    ),
                )
                failing = True
                self._pause(delay)
            except Exception as exc:
                if self._stopping.is_set():
                    break
                # A connection that broke mid-stream resumes like an unanswered request; anything else
                # (a response we could not read as a watch) re-lists.
                need_list = need_list or not (isinstance(exc, _TRANSPORT_ERRORS) and self._rv)
                self.kube.error("watch", self.resource, exc)
                self.kube.metrics.watch_restarts.labels(self.resource.plural, "error").inc()
                delay = backoff.next()
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "watch stream broke; " + ("re-listing" if need_list else "resuming the watch"),
                    extra=fields(resource=self.name, error=_short(exc), delay=round(delay, 2)),
                )
                failing = True
                self._pause(delay)

    def _relist(self) -> None:
        self.listing = True
        try:
            body = self.kube.list(self.resource, self.namespace, self.label_selector, self.field_selector)
        finally:
            self.listing = False
        fresh: dict[str, dict[str, Any]] = {}
        for item in body.get("items") or []:
            if isinstance(item, dict) and self._wanted(item):
                fresh[self.resource.key(item)] = item
        with self._lock:
            old = self._items
            self._items = fresh
            self._rv = resource_version(body)
        self.last_event_at = time.monotonic()
        for key in old.keys() - fresh.keys():
            self._fire("DELETED", old[key], None)
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._fire("ADDED", None, obj)
            elif resource_version(before) != resource_version(obj):
                self._fire("MODIFIED", before, obj)
        first = not self._synced.is_set()
        self._synced.set()
        if first:
            self._fire("SYNCED", None, None)

    def _watch_once(self) -> int:
        """Follow one watch stream until the server ends it, it breaks, or we stop; returns the events seen."""
        method, args = self.kube.list_method(self.resource, self.namespace)
        low, high = self._watch_timeout
        server_timeout = random.randint(low, high)
        kwargs: dict[str, Any] = {
            "resource_version": self._rv,
            "timeout_seconds": server_timeout,
            "allow_watch_bookmarks": True,
            "_request_timeout": (2.0, server_timeout + 15.0),
        }
        if self.label_selector:
            kwargs["label_selector"] = self.label_selector
        if self.field_selector:
            kwargs["field_selector"] = self.field_selector
        self._wake.clear()
        if self._stopping.is_set() or self._restart:
            return 0
        try:
            response = method(*args, watch=True, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise self.kube.error("watch", self.resource, exc) from None
        with self._response_lock:
            self._response = response
        count = 0
        try:
            self.kube.record("watch", self.resource, int(getattr(response, "status", 200)))
            self.kube.health.succeeded()
            self.watch_started_at = time.monotonic()
            if self._stopping.is_set() or self._restart:
                return 0  # asked while the request was on its way: the poke found no response to end
            for line in _lines(response):
                if self._stopping.is_set() or self._restart:
                    break
                try:
                    event = json.loads(line)
                except ValueError:
                    log.debug("watch sent a line that is not JSON", extra=fields(resource=self.name))
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "ERROR":
                    raise self._watch_error(event.get("object"))
                count += 1
                self._apply(event)
        except ApiError:
            raise
        except Exception:
            if self._stopping.is_set() or self._restart:
                return count
            raise
        finally:
            self.watch_started_at = None
            with self._response_lock:
                self._response = None
            with contextlib.suppress(Exception):
                response.close()
            with contextlib.suppress(Exception):
                response.release_conn()
        return count

    def _watch_error(self, status: Any) -> ApiError:
        """An ERROR event (a Status object: 410 Expired, a server error) as the ApiError it stands for."""
        status = status if isinstance(status, dict) else {}
        code = status.get("code")
        exc = ApiException(status=int(code) if isinstance(code, int) else 500, reason=str(status.get("reason") or ""))
        exc.body = json.dumps(status)
        return self.kube.error("watch", self.resource, exc)

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        self.last_event_at = time.monotonic()
        rv = resource_version(obj)
        if kind == "BOOKMARK":
            self.bookmarks_seen = True
            if rv:
                self._rv = rv
            return
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.kube.metrics.watch_events.labels(self.name).inc()
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        key = self.resource.key(obj)
        with self._lock:
            if rv:
                self._rv = rv
            old = self._items.get(key)
            if kind == "DELETED":
                if old is None:
                    return
                del self._items[key]
            else:
                if not self._wanted(obj):
                    if old is None:
                        return
                    del self._items[key]
                    kind = "DELETED"
                elif old is not None and (resource_version(old) == rv or _older(rv, resource_version(old))):
                    return  # our own write, already folded in by store_written
                else:
                    self._items[key] = obj
        if kind == "DELETED":
            self._fire("DELETED", old, None)
        else:
            self._fire("MODIFIED" if old is not None else "ADDED", old, obj)

    def _wanted(self, obj: Mapping[str, Any]) -> bool:
        return self._keep is None or self._keep(obj)

    def _fire(self, kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for handler in self._handlers:
            try:
                handler(kind, old, new)
            except Exception:
                log.exception("informer handler failed", extra=fields(resource=self.name))
