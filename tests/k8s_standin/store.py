"""Object storage with etcd-like resourceVersions and a bounded watch history.

* One global counter: every write (create, update, delete) gets the next ``resourceVersion``, rendered as
  a decimal string, exactly like etcd revisions seen through kube-apiserver.
* Stored objects are never mutated after they are stored; readers may share them, writers copy.
* The last ``history_size`` events of each resource are kept, like kube-apiserver's per-resource watch
  cache. A watch from an older resourceVersion is *expired*: the caller must send an ``ERROR`` event
  with a 410 ``Expired`` Status, as kube-apiserver does.
* Watchers are registered under the store lock together with their replay, so no event falls between
  "what the watcher was given" and "what it will be sent".
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, expired

StorageKey = tuple[str, str]
ObjectKey = tuple[str, str]  # (namespace, name)
Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Event:
    rv: int
    key: StorageKey
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


class Watcher:
    """One open watch: a queue of (type, object) pairs, already filtered for this watch."""

    def __init__(self, key: StorageKey, predicate: Predicate, max_queue: int) -> None:
        self.key = key
        self.predicate = predicate
        self.queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.max_queue = max_queue
        self.closed = False
        self.overflowed = False

    def offer(self, event: Event) -> None:
        if self.closed:
            return
        new_match = self.predicate(event.obj)
        old_match = event.old is not None and self.predicate(event.old)
        if event.type == "ADDED":
            kind = "ADDED" if new_match else None
        elif event.type == "DELETED":
            kind = "DELETED" if (new_match or old_match) else None
        elif new_match and old_match:
            kind = "MODIFIED"
        elif new_match:
            kind = "ADDED"
        elif old_match:
            kind = "DELETED"
        else:
            kind = None
        if kind is None:
            return
        if self.queue.qsize() >= self.max_queue:
            # A watcher that cannot keep up is terminated; the client re-watches from its last resourceVersion.
            self.overflowed = True
            self.stop()
            return
        self.queue.put((kind, event.obj))

    def stop(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put(None)


class Store:
    def __init__(self, history_size: int = 2000, max_watch_queue: int = 10000) -> None:
        self.lock = threading.RLock()
        self._objects: dict[StorageKey, dict[ObjectKey, dict[str, Any]]] = {}
        self._rv = 0
        self._history: dict[StorageKey, deque[Event]] = {}
        self._history_size = max(1, history_size)
        self._compacted_rv: dict[StorageKey, int] = {}
        self._watchers: dict[StorageKey, set[Watcher]] = {}
        self._max_watch_queue = max_watch_queue
        self._dependents: dict[str, set[tuple[StorageKey, str, str]]] = {}

    # --- reads ---------------------------------------------------------------------------------------

    def current_rv(self) -> int:
        with self.lock:
            return self._rv

    def get(self, key: StorageKey, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self._objects.get(key, {}).get((namespace, name))

    def objects(self, key: StorageKey, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            bucket = self._objects.get(key, {})
            keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
            return [bucket[k] for k in keys]

    def keys(self) -> list[StorageKey]:
        with self.lock:
            return list(self._objects)

    def dependents(self, owner_uid: str) -> list[tuple[StorageKey, str, str]]:
        """Objects whose ``metadata.ownerReferences`` name ``owner_uid`` (for garbage collection)."""
        with self.lock:
            return sorted(self._dependents.get(owner_uid, ()))

    def _index_owners(self, key: StorageKey, obj: dict[str, Any] | None, add: bool) -> None:
        if obj is None:
            return
        meta = obj["metadata"]
        entry = (key, meta.get("namespace", ""), meta["name"])
        for ref in meta.get("ownerReferences") or []:
            uid = ref.get("uid", "")
            if add:
                self._dependents.setdefault(uid, set()).add(entry)
            elif uid in self._dependents:
                self._dependents[uid].discard(entry)
                if not self._dependents[uid]:
                    del self._dependents[uid]

    # --- writes --------------------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(self, event: Event) -> None:
        history = self._history.setdefault(event.key, deque())
        if len(history) >= self._history_size:
            self._compacted_rv[event.key] = history.popleft().rv
        history.append(event)
        for watcher in list(self._watchers.get(event.key, ())):
            watcher.offer(event)
            if watcher.closed:
                self._watchers[event.key].discard(watcher)

    def put(self, key: StorageKey, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` (which the caller hands over) with a new resourceVersion; emit ADDED or MODIFIED."""
        with self.lock:
            meta = obj["metadata"]
            object_key = (meta.get("namespace", ""), meta["name"])
            bucket = self._objects.setdefault(key, {})
            old = bucket.get(object_key)
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            bucket[object_key] = obj
            self._index_owners(key, old, add=False)
            self._index_owners(key, obj, add=True)
            self._record(Event(rv, key, "MODIFIED" if old is not None else "ADDED", obj, old))
            return obj

    def remove(self, key: StorageKey, namespace: str, name: str) -> dict[str, Any] | None:
        """Delete an object; the DELETED event carries its last state with the deletion's resourceVersion."""
        with self.lock:
            bucket = self._objects.get(key, {})
            old = bucket.pop((namespace, name), None)
            if old is None:
                return None
            self._index_owners(key, old, add=False)
            rv = self._next_rv()
            last = dict(old)
            last["metadata"] = dict(old["metadata"], resourceVersion=str(rv))
            self._record(Event(rv, key, "DELETED", last, old))
            return last

    # --- watches -------------------------------------------------------------------------------------

    def watch(
        self,
        key: StorageKey,
        predicate: Predicate,
        since: int | None,
        send_initial: bool,
    ) -> tuple[Watcher, list[tuple[str, dict[str, Any]]]]:
        """Register a watcher; return it with the events to send first (synthetic ADDED or replay).

        ``since=None`` starts at the current state; ``send_initial`` adds a synthetic ADDED per existing
        object (what an unset or "0" resourceVersion means). Raises 410 Expired for a compacted ``since``.
        """
        with self.lock:
            initial: list[tuple[str, dict[str, Any]]] = []
            if since is None:
                if send_initial:
                    for obj in self.objects(key):
                        if predicate(obj):
                            initial.append(("ADDED", obj))
            else:
                error = self.check_rv(key, since)
                if error is not None:
                    raise error
                probe = Watcher(key, predicate, max_queue=1 << 30)
                for event in self._history.get(key, ()):
                    if event.rv > since:
                        probe.offer(event)
                while not probe.queue.empty():
                    item = probe.queue.get_nowait()
                    if item is not None:
                        initial.append(item)
            watcher = Watcher(key, predicate, self._max_watch_queue)
            self._watchers.setdefault(key, set()).add(watcher)
            return watcher, initial

    def unwatch(self, watcher: Watcher) -> None:
        with self.lock:
            watcher.stop()
            self._watchers.get(watcher.key, set()).discard(watcher)

    def close_watchers(self, key: StorageKey | None = None) -> None:
        """End open watches (of one resource, or all); each stream finishes after what it has queued."""
        with self.lock:
            for watched, watchers in list(self._watchers.items()):
                if key is None or watched == key:
                    for watcher in watchers:
                        watcher.stop()
                    del self._watchers[watched]

    def watcher_count(self) -> int:
        with self.lock:
            return sum(len(w) for w in self._watchers.values())

    def check_rv(self, key: StorageKey, since: int) -> ApiError | None:
        """410 Expired if events of ``key`` after ``since`` are no longer all retained."""
        with self.lock:
            if since < self._compacted_rv.get(key, 0):
                oldest = self._history[key][0].rv
                return expired(f"too old resource version: {since} ({oldest})")
            return None
