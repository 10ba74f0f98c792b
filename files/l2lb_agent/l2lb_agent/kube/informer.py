"""Informers: a thread-safe cache of one resource kept current by LIST, then WATCH (see :class:`Informer`)."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from ..logs import fields
from .client import ApiError, KubeClient, Resource, _short, resource_version

log = logging.getLogger(__name__)


def _untyped(method: Callable[..., Any]) -> Callable[..., Any]:
    """The list method without its return annotation, so ``watch.Watch`` hands us plain dicts.

    With no return type to deserialize into, the client skips building model objects for every event
    and still handles ERROR events (410 Gone) itself; ``deserialize=False`` would break that path.
    """

    def list_or_watch(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    return list_or_watch


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


class Informer:
    """A thread-safe cache of one resource kept current by LIST, then WATCH from the list's resourceVersion.

    On 410 Gone (the resourceVersion is too old) it re-lists; on errors it backs off and re-lists
    (the server may have restarted with another history); a watch the server ends on its timeout is
    resumed from the last resourceVersion. Handlers hear every change, including the differences a
    re-list reveals. During an API outage the cache keeps its last contents (fail-static).
    """

    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
        watch_timeout: tuple[int, int] = (240, 360),
        name: str = "",
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self._keep = keep
        self._watch_timeout = watch_timeout
        self.name = name or resource.plural
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, Any]] = {}
        self._rv = ""
        self._handlers: list[EventHandler] = []
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None
        self._restart = False
        self.listing = False  # a LIST is in flight: the cache is about to be fresh anyway
        self.last_event_at: float | None = None

    # ---- public API ----

    def add_handler(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"l2lb-informer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping.set()
        self._interrupt()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

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

    def restart_watch(self) -> None:
        """Drop the current watch stream (e.g. it looks stalled) and re-list."""
        self._restart = True
        self._interrupt()

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

    def _interrupt(self) -> None:
        current = self._watch
        if current is not None:
            with contextlib.suppress(Exception):
                current.stop()

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
                    need_list = True
                    self.kube.metrics.watch_restarts.labels(self.resource.plural, "restart").inc()
                elif not events and time.monotonic() - started < 1.0 and not self._stopping.is_set():
                    # A stream that ends at once, again and again, must not spin.
                    self._stopping.wait(backoff.next())
            except ApiError as exc:
                if self._stopping.is_set():
                    break
                need_list = True
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
                self._stopping.wait(delay)
            except Exception as exc:
                if self._stopping.is_set():
                    break
                need_list = True
                self.kube.error("watch", self.resource, exc)
                self.kube.metrics.watch_restarts.labels(self.resource.plural, "error").inc()
                delay = backoff.next()
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "watch stream broke; re-listing",
                    extra=fields(resource=self.name, error=_short(exc), delay=round(delay, 2)),
                )
                failing = True
                self._stopping.wait(delay)

    def _relist(self) -> None:
        self.listing = True
        try:
            body = self.kube.list(self.resource, self.namespace, self.label_selector)
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
        stream = watch.Watch()
        self._watch = stream
        if self._stopping.is_set() or self._restart:
            return 0
        count = 0
        try:
            events: Iterator[Any] = stream.stream(_untyped(method), *args, **kwargs)
            first = True
            for event in events:
                if first:
                    first = False
                    self.kube.record("watch", self.resource, 200)
                    self.kube.health.succeeded()
                if self._stopping.is_set():
                    break
                if isinstance(event, dict):
                    count += 1
                    self._apply(event)
        except ApiException as exc:
            if self._stopping.is_set() or self._restart:
                return count
            raise self.kube.error("watch", self.resource, exc) from None
        except Exception:
            if self._stopping.is_set() or self._restart:
                return count
            raise
        finally:
            self._watch = None
        return count

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        self.last_event_at = time.monotonic()
        rv = resource_version(obj)
        if kind == "BOOKMARK":
            if rv:
                self._rv = rv
            return
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
