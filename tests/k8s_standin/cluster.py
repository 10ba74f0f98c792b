"""The REST semantics of kube-apiserver, independent of HTTP: routing, verbs, watches, discovery.

:class:`Cluster` takes a parsed :class:`Request` and returns a :class:`Response` or a
:class:`WatchStream`; :mod:`k8s_standin.server` puts it on the wire. All state (objects, tokens,
allocations, request counts) lives here, so the HTTP listener can stop and start again around it.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import errors as e
from . import schema as crd_schema
from . import typed
from .auth import Attributes, Authenticator, UserInfo, authorize, rules_for
from .catalog import builtin_types, crd_types
from .errors import ApiError, FieldError
from .patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from .resources import Registry, ResourceType
from .selectors import FieldSelector, LabelSelector
from .store import Store, Watcher
from .strategies import ServiceAllocator, now
from .validation import validate_immutable_meta, validate_object_meta

log = logging.getLogger("k8s_standin")

Obj = dict[str, Any]
KUBERNETES_VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0-k8s-standin"}
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
_SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    token: str = ""

    def param(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        return self.param(name).lower() in ("true", "1")

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class Response:
    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, separators=(",", ":")).encode()


@dataclass
class WatchStream:
    """Newline-delimited watch events; ``b""`` items are idle ticks that let the HTTP layer look at the socket."""

    events: Iterator[bytes]
    close: Callable[[], None]


@dataclass
class _Target:
    rt: ResourceType
    namespace: str | None
    name: str
    subresource: str
    verb: str


def _error(exc: ApiError) -> Response:
    return Response(exc.code, exc.status())


def _warning_headers(warnings: Iterable[str]) -> list[tuple[str, str]]:
    return [("Warning", "299 - " + json.dumps(w)) for w in warnings]


@dataclass
class _OpenWatch:
    """A watch being served; ``stalled`` ones keep their connection but send nothing more."""

    resource: str
    stalled: bool = False


class Cluster:
    def __init__(
        self,
        *,
        admin_token: str,
        ca_pem: str,
        history_size: int = 2000,
        service_cidr: str = "198.18.240.0/20",
        bookmark_interval: float = 60.0,
        watch_timeout: float = 1800.0,
    ) -> None:
        self.store = Store(history_size=history_size)
        self.registry = Registry(builtin_types())
        self.auth = Authenticator(admin_token)
        self.allocator = ServiceAllocator(service_cidr)
        self.ca_pem = ca_pem
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        self.server_address = ""
        self._counts: Counter[tuple[str, str]] = Counter()
        self._counts_lock = threading.Lock()
        self._open_watches: dict[int, _OpenWatch] = {}
        self._open_watches_lock = threading.Lock()
        self._watch_ids = iter(range(1, 1 << 62))
        # Server-side apply: (resource, namespace, name) -> {fieldManager: (uid, applied configuration)}.
        self._applied: dict[tuple[Any, str, str], dict[str, tuple[str, Obj]]] = {}
        self._bootstrap()

    # --- helpers used by strategies ------------------------------------------------------------------

    def builtin(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.registry.lookup(group, version, plural)
        assert rt is not None, (group, version, plural)
        return rt

    def system_create(self, rt: ResourceType, obj: Obj) -> Obj:
        """Create an object as a controller would (no authorization, no request)."""
        with self.store.lock:
            return self._create_locked(rt, self._external(rt, obj), dry_run=False)

    def system_update(self, rt: ResourceType, obj: Obj) -> Obj:
        with self.store.lock:
            meta = obj["metadata"]
            old = self.store.get(rt.key, meta.get("namespace", ""), meta["name"])
            if old is None:
                raise e.not_found(rt.group, rt.plural, meta["name"])
            result, _ = self._update_locked(rt, old, self._external(rt, obj), "", dry_run=False)
            return result

    def system_delete(self, rt: ResourceType, namespace: str, name: str) -> None:
        with self.store.lock:
            old = self.store.get(rt.key, namespace, name)
            if old is not None:
                self._delete_locked(rt, old, dry_run=False, propagation="Background", force=True)

    def register_crd(self, crd: Obj) -> None:
        self.registry.set_custom(crd["metadata"]["name"], crd_types(crd))

    def unregister_crd(self, name: str) -> None:
        self.registry.set_custom(name, [])

    def _external(self, rt: ResourceType, obj: Obj) -> Obj:
        out = {"apiVersion": rt.api_version, "kind": rt.kind}
        out.update(copy.deepcopy(obj))
        return out

    def _bootstrap(self) -> None:
        namespaces = self.builtin("", "v1", "namespaces")
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.system_create(namespaces, {"metadata": {"name": name}})
        rbac = "rbac.authorization.k8s.io"
        self.system_create(
            self.builtin(rbac, "v1", "clusterroles"),
            {
                "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                "rules": [
                    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]},
                ],
            },
        )
        self.system_create(
            self.builtin(rbac, "v1", "clusterrolebindings"),
            {
                "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": rbac, "kind": "Group", "name": "system:masters"}],
            },
        )

    def add_node(self, name: str, labels: dict[str, str] | None = None, addresses: Iterable[str] = ()) -> Obj:
        """Create a Ready Node as a kubelet would register it."""
        stamp = now()
        node_labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
        }
        node_labels.update(labels or {})
        node_addresses = [{"type": "InternalIP", "address": a} for a in addresses]
        node_addresses.append({"type": "Hostname", "address": name})
        node = {
            "metadata": {"name": name, "labels": node_labels},
            "spec": {},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastHeartbeatTime": stamp,
                        "lastTransitionTime": stamp,
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                    }
                ],
                "addresses": node_addresses,
                "capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"},
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": str(uuid.uuid4()),
                    "containerRuntimeVersion": "none://0",
                    "kernelVersion": "",
                    "kubeProxyVersion": "",
                    "kubeletVersion": KUBERNETES_VERSION["gitVersion"],
                    "machineID": uuid.uuid4().hex,
                    "operatingSystem": "linux",
                    "osImage": "k8s-standin",
                    "systemUUID": str(uuid.uuid4()),
                },
            },
        }
        return self.system_create(self.builtin("", "v1", "nodes"), node)

    # --- request counting ----------------------------------------------------------------------------

    def count(self, verb: str, resource: str) -> None:
        with self._counts_lock:
            self._counts[(verb, resource)] += 1

    def request_counts(self) -> dict[tuple[str, str], int]:
        with self._counts_lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._counts_lock:
            self._counts.clear()

    # --- entry point ---------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response | WatchStream:
        try:
            return self._handle(req)
        except ApiError as exc:
            return _error(exc)
        except Exception as exc:  # a stand-in bug must still answer like a server, and be visible in logs
            log.exception("internal error on %s %s", req.method, req.path)
            return _error(e.internal(f"{type(exc).__name__}: {exc}"))

    def authenticate(self, token: str) -> UserInfo | None:
        return self.auth.authenticate(
            token, self.store, self.builtin("", "v1", "secrets").key, self.builtin("", "v1", "serviceaccounts").key
        )

    def _handle(self, req: Request) -> Response | WatchStream:
        path = req.path.rstrip("/") or "/"
        user = self.authenticate(req.token)
        if user is None:
            if req.token:
                raise e.unauthorized()  # a token was sent and is not valid
            # No token: anonymous, as with kube-apiserver's default --anonymous-auth=true; RBAC then
            # grants it only system:public-info-viewer (/healthz, /livez, /readyz, /version).
            user = UserInfo("system:anonymous", ("system:unauthenticated",))
        if path.startswith("/_standin/"):
            return self._standin_endpoint(req, path, user)
        segments = [s for s in path.split("/") if s]
        if not segments or segments[0] not in ("api", "apis"):
            return self._non_resource(req, path, user)
        if segments[0] == "api":
            if len(segments) == 1:
                return self._non_resource(req, path, user)
            group, version, rest = "", segments[1], segments[2:]
        else:
            if len(segments) <= 2:
                return self._non_resource(req, path, user)
            group, version, rest = segments[1], segments[2], segments[3:]
        if not rest:
            return self._non_resource(req, path, user)
        target = self._route(req, group, version, rest)
        resource = f"{target.rt.plural}/{target.subresource}" if target.subresource else target.rt.plural
        self.count(target.verb, resource)
        self._authorize(req, user, target)
        return self._dispatch(req, user, target)

    # --- routing -------------------------------------------------------------------------------------

    def _route(self, req: Request, group: str, version: str, rest: list[str]) -> _Target:
        if not any(g == group and version in vs for g, vs in self.registry.groups()):
            raise e.resource_not_found()
        legacy_watch = False
        if rest[0] == "watch":
            legacy_watch, rest = True, rest[1:]
            if not rest:
                raise e.resource_not_found()
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise e.resource_not_found()
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        rt = self.registry.lookup(group, version, plural)
        if rt is None:
            raise e.resource_not_found()
        if namespace is not None and not rt.namespaced:
            raise e.resource_not_found()
        if rt.namespaced and namespace is None and name:
            raise e.resource_not_found()
        if subresource and rt.subresource(subresource) is None:
            raise e.resource_not_found()
        verb = self._verb(req, name, subresource, legacy_watch)
        allowed = rt.subresource(subresource).verbs if subresource else rt.verbs  # type: ignore[union-attr]
        if verb not in allowed:
            raise e.method_not_allowed()
        return _Target(rt, namespace, name, subresource, verb)

    @staticmethod
    def _verb(req: Request, name: str, subresource: str, legacy_watch: bool) -> str:
        method = req.method
        if method in ("GET", "HEAD"):
            if legacy_watch:
                return "watch"
            if name:
                return "get"
            return "watch" if req.flag("watch") else "list"
        if method == "POST":
            if name and not subresource:
                raise e.method_not_allowed()
            return "create"
        if method in ("PUT", "PATCH"):
            if not name:
                raise e.method_not_allowed()
            return "update" if method == "PUT" else "patch"
        if method == "DELETE":
            return "delete" if name else "deletecollection"
        raise e.method_not_allowed()

    def _authorize(self, req: Request, user: UserInfo, target: _Target) -> None:
        name = target.name
        if not name and target.verb in ("list", "watch"):
            name = FieldSelector(req.param("fieldSelector")).name()
        attrs = Attributes(
            verb=target.verb,
            group=target.rt.group,
            resource=target.rt.plural,
            subresource=target.subresource,
            namespace=target.namespace or "",
            name=name,
        )
        if not authorize(self.store, user, attrs):
            raise e.forbidden_request(
                target.rt.group, target.rt.plural, target.name, f'User "{user.name}" {attrs.describe()}'
            )

    def _dispatch(self, req: Request, user: UserInfo, target: _Target) -> Response | WatchStream:
        rt, namespace, name, sub, verb = target.rt, target.namespace, target.name, target.subresource, target.verb
        if verb == "get":
            return self._get(rt, namespace or "", name)
        if verb == "list":
            return self._list(rt, namespace, req)
        if verb == "watch":
            return self._watch(rt, namespace, name, req)
        if verb == "create":
            if sub == "token":
                return self._token_request(namespace or "", name, req)
            if rt.virtual:
                return self._review(rt, req, user)
            return self._create(rt, namespace, req)
        if verb == "update":
            return self._update(rt, namespace or "", name, sub, req)
        if verb == "patch":
            return self._patch(rt, namespace or "", name, sub, req)
        if verb == "delete":
            return self._delete(rt, namespace or "", name, req)
        return self._delete_collection(rt, namespace, req)

    # --- non-resource endpoints ----------------------------------------------------------------------

    def _non_resource(self, req: Request, path: str, user: UserInfo) -> Response:
        if req.method not in ("GET", "HEAD"):
            raise e.method_not_allowed()
        self.count("get", path)
        if not user.is_admin:
            attrs = Attributes(verb="get", resource_request=False, path=path)
            if not authorize(self.store, user, attrs):
                raise ApiError(403, "Forbidden", f'forbidden: User "{user.name}" {attrs.describe()}', {})
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return Response(200, "ok", content_type="text/plain; charset=utf-8")
        if path == "/version":
            return Response(
                200,
                dict(
                    KUBERNETES_VERSION,
                    emulationMajor=KUBERNETES_VERSION["major"],
                    emulationMinor=KUBERNETES_VERSION["minor"],
                    gitCommit="0000000000000000000000000000000000000000",
                    gitTreeState="clean",
                    buildDate="2026-01-01T00:00:00Z",
                    goVersion="go1.25.0",
                    compiler="gc",
                    platform="linux/amd64",
                ),
            )
        if path == "/api":
            return Response(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}],
                },
            )
        if path == "/apis":
            groups = [self._api_group(g, vs) for g, vs in self.registry.groups() if g]
            return Response(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        segments = [s for s in path.split("/") if s]
        if segments[0] == "api" and len(segments) == 2 and segments[1] == "v1":
            return Response(200, self._resource_list("", "v1"))
        if segments[0] == "apis" and len(segments) in (2, 3):
            versions = dict(self.registry.groups()).get(segments[1])
            if versions and len(segments) == 2:
                return Response(200, dict(self._api_group(segments[1], versions), kind="APIGroup", apiVersion="v1"))
            if versions and segments[2] in versions:
                return Response(200, self._resource_list(segments[1], segments[2]))
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    @staticmethod
    def _api_group(group: str, versions: list[str]) -> Obj:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def _resource_list(self, group: str, version: str) -> Obj:
        resources: list[Obj] = []
        for rt in self.registry.resources(group, version):
            resources.extend(rt.discovery())
        body: Obj = {"kind": "APIResourceList", "groupVersion": f"{group}/{version}" if group else version}
        if group:
            body["apiVersion"] = "v1"
        body["resources"] = resources
        return body

    def _standin_endpoint(self, req: Request, path: str, user: UserInfo) -> Response:
        if not user.is_admin:
            raise ApiError(403, "Forbidden", f'forbidden: User "{user.name}" cannot use {path}', {})
        if path == "/_standin/stall-watches":
            if req.method != "POST":
                raise e.method_not_allowed()
            stalled = self.stall_watches(req.param("resource") or None)
            return Response(200, {"stalled": stalled})
        if path == "/_standin/requests":
            if req.method == "DELETE":
                self.reset_counts()
                return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
            if req.method == "GET":
                counts = self.request_counts()
                items = [
                    {"verb": verb, "resource": resource, "count": n} for (verb, resource), n in sorted(counts.items())
                ]
                return Response(200, {"total": sum(counts.values()), "items": items})
            raise e.method_not_allowed()
        raise e.resource_not_found()

    # --- reading -------------------------------------------------------------------------------------

    def out(self, rt: ResourceType, stored: Obj) -> Obj:
        return rt.strategy.to_external(rt, stored)

    def _get(self, rt: ResourceType, namespace: str, name: str) -> Response:
        stored = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if stored is None:
            raise e.not_found(rt.group, rt.plural, name)
        return Response(200, self.out(rt, stored))

    def _selection(self, rt: ResourceType, namespace: str | None, req: Request) -> Callable[[Obj], bool]:
        labels = LabelSelector(req.param("labelSelector"))
        fields = FieldSelector(req.param("fieldSelector"))
        getters = rt.field_getters
        fields.check_fields(getters, rt.plural)

        def predicate(obj: Obj) -> bool:
            meta = obj["metadata"]
            if namespace is not None and meta.get("namespace", "") != namespace:
                return False
            return labels.matches(meta.get("labels")) and fields.matches(obj, getters)

        return predicate

    def _list(self, rt: ResourceType, namespace: str | None, req: Request) -> Response:
        predicate = self._selection(rt, namespace, req)
        with self.store.lock:
            rv = self.store.current_rv()
            items = [obj for obj in self.store.objects(rt.key, namespace) if predicate(obj)]
        metadata: Obj = {"resourceVersion": str(rv)}
        limit = req.param("limit")
        token = req.param("continue")
        if token:
            try:
                start = json.loads(base64.b64decode(token))
                after = (start["ns"], start["name"])
            except (ValueError, KeyError):
                raise e.bad_request("continue key is not valid: incorrect encoded start resourceVersion") from None
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
        if limit and limit.isdigit() and int(limit) > 0 and len(items) > int(limit):
            remaining = len(items) - int(limit)
            items = items[: int(limit)]
            last = items[-1]["metadata"]
            metadata["continue"] = base64.b64encode(
                json.dumps({"rv": rv, "ns": last.get("namespace", ""), "name": last["name"]}).encode()
            ).decode()
            if not req.param("labelSelector") and not req.param("fieldSelector"):
                # Like etcd3's GetList: no count for selected lists, it would count non-matching objects.
                metadata["remainingItemCount"] = remaining
        rendered = []
        for obj in items:
            item = self.out(rt, obj)
            if not rt.custom:
                item.pop("apiVersion", None)
                item.pop("kind", None)
            rendered.append(item)
        return Response(
            200, {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": metadata, "items": rendered}
        )

    # --- watch ---------------------------------------------------------------------------------------

    def _watch(self, rt: ResourceType, namespace: str | None, name: str, req: Request) -> WatchStream | Response:
        if name:
            selector = req.param("fieldSelector")
            req.query["fieldSelector"] = [f"metadata.name={name}" + (f",{selector}" if selector else "")]
        predicate = self._selection(rt, namespace, req)
        rv_param = req.param("resourceVersion")
        initial_events = req.param("sendInitialEvents").lower() == "true"
        since: int | None = None
        if rv_param not in ("", "0"):
            try:
                since = int(rv_param)
            except ValueError:
                raise e.bad_request(f'resourceVersion: Invalid value: "{rv_param}": must be a number') from None
        send_initial = since is None or initial_events
        if initial_events:
            since = None
        timeout = self.watch_timeout
        if req.param("timeoutSeconds"):
            try:
                timeout = float(req.param("timeoutSeconds"))
            except ValueError:
                raise e.bad_request("timeoutSeconds must be a number") from None
        bookmarks = req.flag("allowWatchBookmarks")

        try:
            watcher, initial = self.store.watch(rt.key, predicate, since, send_initial)
        except ApiError as exc:
            error_line = json.dumps({"type": "ERROR", "object": exc.status()}).encode() + b"\n"
            return WatchStream(iter([error_line]), lambda: None)
        return WatchStream(
            self._watch_events(rt, watcher, initial, timeout, bookmarks, initial_events),
            lambda: self.store.unwatch(watcher),
        )

    def _event_line(self, rt: ResourceType, kind: str, obj: Obj) -> bytes:
        return json.dumps({"type": kind, "object": self.out(rt, obj)}, separators=(",", ":")).encode() + b"\n"

    def _bookmark(self, rt: ResourceType, rv: int, initial_end: bool = False) -> bytes:
        meta: Obj = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
        return json.dumps({"type": "BOOKMARK", "object": obj}, separators=(",", ":")).encode() + b"\n"

    def _quiet_rv(self, watcher: Watcher) -> int | None:
        """A resourceVersion safe to bookmark: nothing for this watcher is queued up to it."""
        with self.store.lock:
            if watcher.queue.empty():
                return self.store.current_rv()
        return None

    def stall_watches(self, resource: str | None = None) -> int:
        """Make the open watches (of ``resource``, a plural such as ``leases``; None: all) go silent.

        A test's failure injection: their connections stay open and the client sees no error, but no
        event, bookmark or end of stream is sent on them any more (what a half-open connection or a
        wedged server looks like). Watches started later are served normally. Returns how many stalled.
        """
        with self._open_watches_lock:
            chosen = [w for w in self._open_watches.values() if resource is None or w.resource == resource]
            for open_watch in chosen:
                open_watch.stalled = True
        return len(chosen)

    def _watch_events(
        self,
        rt: ResourceType,
        watcher: Watcher,
        initial: list[tuple[str, Obj]],
        timeout: float,
        bookmarks: bool,
        initial_events: bool,
    ) -> Iterator[bytes]:
        state = _OpenWatch(rt.plural)
        with self._open_watches_lock:
            watch_id = next(self._watch_ids)
            self._open_watches[watch_id] = state
        try:
            with self.store.lock:
                start_rv = self.store.current_rv()
            for kind, obj in initial:
                yield self._event_line(rt, kind, obj)
            if initial_events and bookmarks:
                yield self._bookmark(rt, start_rv, initial_end=True)
            deadline = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            while True:
                if state.stalled:
                    time.sleep(0.1)
                    yield b""  # nothing is written; lets the handler notice the client hanging up
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    item = watcher.queue.get(timeout=min(remaining, 0.5))
                except queue.Empty:
                    if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval:
                        rv = self._quiet_rv(watcher)
                        if rv is not None:
                            last_bookmark = time.monotonic()
                            yield self._bookmark(rt, rv)
                            continue
                    yield b""
                    continue
                if item is None:
                    return
                if state.stalled:
                    continue  # stalled while waiting: this event is never sent
                yield self._event_line(rt, item[0], item[1])
        finally:
            with self._open_watches_lock:
                self._open_watches.pop(watch_id, None)
            self.store.unwatch(watcher)

    # --- decoding ------------------------------------------------------------------------------------

    @staticmethod
    def _parse_body(req: Request) -> Any:
        if not req.body:
            return None
        try:
            if "yaml" in req.content_type:
                return yaml.safe_load(req.body)
            return json.loads(req.body)
        except (ValueError, yaml.YAMLError) as exc:
            raise e.bad_request(f"couldn't get version/kind; json parse error: {exc}") from None

    def _decode(self, rt: ResourceType, body: Any, req: Request) -> tuple[Obj, list[str]]:
        """Turn a request body into the object the strategy works on, as the real decoders do."""
        if not isinstance(body, dict):
            raise e.bad_request(f"Object 'Kind' is missing in '{json.dumps(body)}'")
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if rt.custom and not kind:
            raise e.bad_request(f"Object 'Kind' is missing in '{json.dumps(body)}'")
        if (kind and kind != rt.kind) or (api_version and api_version != rt.api_version):
            raise e.bad_request(
                f'{kind or rt.kind} in version "{api_version or rt.version}" cannot be handled as a {rt.kind}: '
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rt.api_version})"
                if api_version != rt.api_version
                else f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        obj = copy.deepcopy(body)
        unknown: list[str] = []
        try:
            if rt.model:
                obj, unknown = typed.decode(obj, rt.model)
            else:
                meta, meta_unknown = typed.decode(obj.get("metadata") or {}, "V1ObjectMeta")
                unknown += [f"metadata.{p}" for p in meta_unknown]
                obj["metadata"] = meta
                if rt.schema is not None:
                    unknown += crd_schema.prune(obj, rt.schema)
                    crd_schema.apply_defaults(obj, rt.schema)
        except typed.DecodeError as exc:
            raise e.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {exc}'
            ) from None
        obj.setdefault("metadata", {})
        warnings = [f'unknown field "{p}"' for p in unknown]
        mode = req.param("fieldValidation", "Warn")
        if mode not in ("Ignore", "Warn", "Strict"):
            raise e.bad_request(
                f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Warn", "Strict"'
            )
        if unknown and mode == "Strict":
            raise e.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: '
                + ", ".join(warnings)
            )
        if mode == "Ignore":
            warnings = []
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        return obj, warnings

    @staticmethod
    def _dry_run(req: Request, options: Obj | None = None) -> bool:
        values = req.query.get("dryRun", []) + list((options or {}).get("dryRun") or [])
        for value in values:
            if value != "All":
                raise e.bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
        return bool(values)

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        if rt.model:
            typed.fill_required(obj, rt.model)
        errors: list[FieldError] = validate_object_meta(meta, rt.name_rule, rt.namespaced)
        if old is not None:
            errors += validate_immutable_meta(meta, old["metadata"])
        errors += rt.strategy.validate(self, rt, obj, old)
        if errors:
            group = rt.group if rt.strategy.validation_group is None else rt.strategy.validation_group
            raise e.invalid_object(group, rt.kind, meta.get("name", ""), errors)

    # --- create --------------------------------------------------------------------------------------

    def _create(self, rt: ResourceType, namespace: str | None, req: Request) -> Response:
        if rt.namespaced and namespace is None:
            raise e.method_not_allowed()
        obj, warnings = self._decode(rt, self._parse_body(req), req)
        meta = obj["metadata"]
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise e.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        if meta.get("resourceVersion"):
            raise e.internal("resourceVersion should not be set on objects to be created")
        dry_run = self._dry_run(req)
        with self.store.lock:
            self._check_namespace(rt, namespace)
            stored = self._create_locked(rt, obj, dry_run)
        return Response(201, self.out(rt, stored), _warning_headers(warnings))

    def _check_namespace(self, rt: ResourceType, namespace: str | None) -> None:
        if not rt.namespaced or namespace is None:
            return
        ns = self.store.get(("", "namespaces"), "", namespace)
        if ns is None:
            raise e.not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise e.forbidden_request(
                rt.group,
                rt.plural,
                "",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _create_locked(self, rt: ResourceType, obj: Obj, dry_run: bool) -> Obj:
        meta = obj.setdefault("metadata", {})
        if not rt.namespaced:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            for _ in range(100):
                candidate = meta["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
                if self.store.get(rt.key, meta.get("namespace", ""), candidate) is None:
                    meta["name"] = candidate
                    break
        for key in (*_SYSTEM_META, "generation", "resourceVersion", "managedFields"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rt.generation:
            meta["generation"] = 1
        rt.strategy.defaults(self, rt, obj)
        if rt.has_status and not rt.status_on_create:
            obj.pop("status", None)
        rt.strategy.prepare_create(self, rt, obj)
        self._validate(rt, obj, None)
        if self.store.get(rt.key, meta.get("namespace", ""), meta["name"]) is not None:
            raise e.already_exists(rt.group, rt.plural, meta["name"])
        rt.strategy.finalize(self, rt, obj, None, dry_run)
        storage = rt.strategy.to_storage(rt, obj)
        if dry_run:
            return storage
        stored = self.store.put(rt.key, storage)
        rt.strategy.after_write(self, rt, None, stored)
        return stored

    # --- update and patch ----------------------------------------------------------------------------

    def _update(self, rt: ResourceType, namespace: str, name: str, sub: str, req: Request) -> Response:
        obj, warnings = self._decode(rt, self._parse_body(req), req)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise e.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise e.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        meta["name"] = name
        dry_run = self._dry_run(req)
        with self.store.lock:
            old = self.store.get(rt.key, namespace, name)
            if old is None:
                if not rt.allow_create_on_update or sub:
                    raise e.not_found(rt.group, rt.plural, name)
                self._check_namespace(rt, namespace)
                meta.pop("resourceVersion", None)
                stored = self._create_locked(rt, obj, dry_run)
                return Response(201, self.out(rt, stored), _warning_headers(warnings))
            result, _ = self._update_locked(rt, old, obj, sub, dry_run)
        return Response(200, self.out(rt, result), _warning_headers(warnings))

    def _patch(self, rt: ResourceType, namespace: str, name: str, sub: str, req: Request) -> Response:
        kind = PATCH_TYPES.get(req.content_type)
        accepted = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
        if rt.merge_keys is not None:
            accepted.insert(2, "application/strategic-merge-patch+json")
        if kind is None or (kind == "strategic" and rt.merge_keys is None):
            raise e.unsupported_media_type(accepted)
        body = self._parse_body(req)
        if body is None:
            raise e.bad_request("the body of the request was empty")
        dry_run = self._dry_run(req)
        if kind == "apply":
            return self._apply(rt, namespace, name, sub, body, req, dry_run)
        with self.store.lock:
            old = self.store.get(rt.key, namespace, name)
            if old is None:
                raise e.not_found(rt.group, rt.plural, name)
            current = copy.deepcopy(self.out(rt, old))
            try:
                if kind == "json":
                    patched = json_patch(current, body)
                elif kind == "merge":
                    if not isinstance(body, dict):
                        raise e.bad_request(
                            "json: cannot unmarshal array into Go value of type map[string]interface {}"
                        )
                    patched = merge_patch(current, body)
                else:
                    patched = strategic_merge_patch(current, body, rt.merge_keys or {})
            except PatchError as exc:
                raise e.unprocessable(str(exc)) from None
            obj, warnings = self._decode(rt, patched, req)
            obj["metadata"]["name"] = name
            if rt.namespaced:
                obj["metadata"]["namespace"] = namespace
            result, _ = self._update_locked(rt, old, obj, sub, dry_run)
        return Response(200, self.out(rt, result), _warning_headers(warnings))

    def _apply(
        self, rt: ResourceType, namespace: str, name: str, sub: str, body: Any, req: Request, dry_run: bool
    ) -> Response:
        """Server-side apply, approximated: create if absent, else merge the applied configuration.

        Each field manager's last applied configuration is remembered: fields it applied before and no
        longer sends are removed, unless another manager's applied configuration still has them (the
        real server's managedFields would also keep fields another manager changed by update).
        """
        if not req.param("fieldManager"):
            raise e.invalid_object(
                "meta.k8s.io", "PatchOptions", "", [e.required("fieldManager", "is required for apply patch")]
            )
        if not isinstance(body, dict):
            raise e.bad_request("apply patches must be a YAML or JSON object")
        body.setdefault("metadata", {}).setdefault("name", name)
        if body["metadata"]["name"] != name:
            raise e.bad_request(
                f"the name of the object ({body['metadata']['name']}) does not match the name on the URL ({name})"
            )
        manager = req.param("fieldManager")
        applied = copy.deepcopy(body)
        with self.store.lock:
            old = self.store.get(rt.key, namespace, name)
            if old is None:
                if sub:
                    raise e.not_found(rt.group, rt.plural, name)
                obj, warnings = self._decode(rt, body, req)
                if rt.namespaced:
                    obj["metadata"]["namespace"] = namespace
                self._check_namespace(rt, namespace)
                stored = self._create_locked(rt, obj, dry_run)
                if not dry_run:
                    key = (rt.key, namespace, name)
                    self._applied[key] = {manager: (stored["metadata"]["uid"], applied)}
                return Response(201, self.out(rt, stored), _warning_headers(warnings))
            current = copy.deepcopy(self.out(rt, old))
            body["metadata"].pop("resourceVersion", None)
            uid = old["metadata"]["uid"]
            key = (rt.key, namespace, name)
            managers = {m: cfg for m, (u, cfg) in self._applied.get(key, {}).items() if u == uid}
            if manager in managers:
                kept = set().union(*(_applied_paths(cfg) for m, cfg in managers.items() if m != manager))
                for path in _applied_paths(managers[manager]) - _applied_paths(applied) - kept:
                    _remove_path(current, path)
            try:
                if rt.merge_keys is not None:
                    patched = strategic_merge_patch(current, body, rt.merge_keys)
                else:
                    patched = merge_patch(current, body)
            except PatchError as exc:
                raise e.unprocessable(str(exc)) from None
            obj, warnings = self._decode(rt, patched, req)
            obj["metadata"]["name"] = name
            if rt.namespaced:
                obj["metadata"]["namespace"] = namespace
            result, _ = self._update_locked(rt, old, obj, sub, dry_run)
            if not dry_run:
                managers[manager] = applied
                self._applied[key] = {m: (uid, cfg) for m, cfg in managers.items()}
        return Response(200, self.out(rt, result), _warning_headers(warnings))

    def _update_locked(self, rt: ResourceType, old_stored: Obj, new: Obj, sub: str, dry_run: bool) -> tuple[Obj, bool]:
        """Apply an update to ``old_stored``; return (object to show, whether it was deleted)."""
        old = copy.deepcopy(self.out(rt, old_stored))
        old_meta = old["metadata"]
        meta = new.setdefault("metadata", {})
        requested_rv = meta.get("resourceVersion")
        if requested_rv:
            if requested_rv != old_meta["resourceVersion"]:
                raise e.conflict(rt.group, rt.plural, old_meta["name"], e.STALE_OBJECT)
        elif not rt.allow_unconditional_update:
            raise e.invalid_object(
                rt.group,
                rt.kind,
                old_meta["name"],
                [e.invalid("metadata.resourceVersion", 0, "must be specified for an update")],
            )
        rt.strategy.defaults(self, rt, new)
        if sub == "status":
            new = self._status_update(rt, new, old)
            meta = new["metadata"]
        elif rt.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        for key in (*_SYSTEM_META, "generation", "resourceVersion"):
            if key in old_meta:
                meta[key] = copy.deepcopy(old_meta[key])
            else:
                meta.pop(key, None)
        meta.pop("managedFields", None)
        if sub != "status":
            rt.strategy.prepare_update(self, rt, new, old)
        if rt.generation and self._spec_changed(rt, new, old):
            meta["generation"] = old_meta.get("generation", 0) + 1
        self._validate(rt, new, old)
        if old_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            if dry_run:
                return rt.strategy.to_storage(rt, new), True
            stored = self.store.put(rt.key, rt.strategy.to_storage(rt, new))
            return self._remove(rt, stored), True
        rt.strategy.finalize(self, rt, new, old, dry_run)
        if new == old:
            return old_stored, False
        storage = rt.strategy.to_storage(rt, new)
        if dry_run:
            return storage, False
        stored = self.store.put(rt.key, storage)
        rt.strategy.after_write(self, rt, old_stored, stored)
        return stored, False

    @staticmethod
    def _status_update(rt: ResourceType, new: Obj, old: Obj) -> Obj:
        if rt.custom:
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            return result
        result = {"apiVersion": new["apiVersion"], "kind": new["kind"], "metadata": new["metadata"]}
        for key, value in old.items():
            if key not in ("apiVersion", "kind", "metadata", "status"):
                result[key] = copy.deepcopy(value)
        if "status" in new:
            result["status"] = new["status"]
        # Status writes keep the object's identity and lifecycle fields, like ResetObjectMetaForStatus.
        for key in ("ownerReferences", "finalizers"):
            if key in old["metadata"]:
                result["metadata"][key] = copy.deepcopy(old["metadata"][key])
            else:
                result["metadata"].pop(key, None)
        return result

    @staticmethod
    def _spec_changed(rt: ResourceType, new: Obj, old: Obj) -> bool:
        skip = {"metadata", "status"} if rt.has_status else {"metadata"}
        return {k: v for k, v in new.items() if k not in skip} != {k: v for k, v in old.items() if k not in skip}

    # --- delete --------------------------------------------------------------------------------------

    def _delete_options(self, req: Request) -> Obj:
        body = self._parse_body(req)
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise e.bad_request("DeleteOptions must be a JSON object")
        return body

    def _delete(self, rt: ResourceType, namespace: str, name: str, req: Request) -> Response:
        options = self._delete_options(req)
        dry_run = self._dry_run(req, options)
        propagation = options.get("propagationPolicy") or req.param("propagationPolicy") or "Background"
        if options.get("orphanDependents") is True or req.flag("orphanDependents"):
            propagation = "Orphan"
        with self.store.lock:
            stored = self.store.get(rt.key, namespace, name)
            if stored is None:
                raise e.not_found(rt.group, rt.plural, name)
            preconditions = options.get("preconditions") or {}
            meta = stored["metadata"]
            if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
                raise e.conflict(
                    rt.group,
                    rt.plural,
                    name,
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                )
            if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta["resourceVersion"]:
                raise e.conflict(
                    rt.group,
                    rt.plural,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{preconditions['resourceVersion']}, ResourceVersion in object meta: {meta['resourceVersion']}",
                )
            result, deleted = self._delete_locked(rt, stored, dry_run, propagation, force=False)
        if not deleted:
            return Response(200 if dry_run else 202, self.out(rt, result))
        if rt.return_deleted_object:
            return Response(200, self.out(rt, rt.strategy.to_storage(rt, self._deleted_view(rt, result))))
        details: Obj = {"name": name}
        if rt.group:
            details["group"] = rt.group
        details.update({"kind": rt.plural, "uid": result["metadata"]["uid"]})
        return Response(
            200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
        )

    @staticmethod
    def _deleted_view(rt: ResourceType, obj: Obj) -> Obj:
        if rt.group == "" and rt.plural == "namespaces":
            view = copy.deepcopy(obj)
            view["metadata"]["deletionTimestamp"] = now()
            view["status"] = {"phase": "Terminating"}
            return view
        return obj

    def _delete_locked(
        self, rt: ResourceType, stored: Obj, dry_run: bool, propagation: str, force: bool
    ) -> tuple[Obj, bool]:
        meta = stored["metadata"]
        if meta.get("finalizers") and not force:
            if meta.get("deletionTimestamp"):
                return stored, False
            marked = copy.deepcopy(stored)
            marked["metadata"]["deletionTimestamp"] = now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            if propagation == "Orphan":
                marked["metadata"]["finalizers"] = [*meta["finalizers"], "orphan"]
            if dry_run:
                return marked, False
            return self.store.put(rt.key, marked), False
        if dry_run:
            return stored, True
        return self._remove(rt, stored, orphan=propagation == "Orphan"), True

    def _remove(self, rt: ResourceType, stored: Obj, orphan: bool = False) -> Obj:
        meta = stored["metadata"]
        rt.strategy.before_delete(self, rt, stored)
        removed = self.store.remove(rt.key, meta.get("namespace", ""), meta["name"])
        if removed is None:
            return stored
        rt.strategy.after_delete(self, rt, removed)
        self._collect_garbage(meta["uid"], orphan)
        return removed

    def _collect_garbage(self, owner_uid: str, orphan: bool) -> None:
        """The garbage collector's effect, done at once: dependents without any other owner are deleted."""
        for key, namespace, name in self.store.dependents(owner_uid):
            dependent_type = self.registry.by_key(key)
            dependent = self.store.get(key, namespace, name)
            if dependent_type is None or dependent is None:
                continue
            refs = dependent["metadata"].get("ownerReferences") or []
            remaining = [r for r in refs if r.get("uid") != owner_uid]
            if remaining or orphan:
                updated = copy.deepcopy(dependent)
                updated["metadata"]["ownerReferences"] = remaining
                if not remaining:
                    del updated["metadata"]["ownerReferences"]
                self.store.put(key, updated)
            else:
                self._delete_locked(dependent_type, dependent, dry_run=False, propagation="Background", force=False)

    def _delete_collection(self, rt: ResourceType, namespace: str | None, req: Request) -> Response:
        options = self._delete_options(req)
        dry_run = self._dry_run(req, options)
        predicate = self._selection(rt, namespace, req)
        deleted = []
        with self.store.lock:
            for obj in [o for o in self.store.objects(rt.key, namespace) if predicate(o)]:
                result, _ = self._delete_locked(rt, obj, dry_run, "Background", force=False)
                item = self.out(rt, result)
                if not rt.custom:
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                deleted.append(item)
            rv = self.store.current_rv()
        return Response(
            200,
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(rv)},
                "items": deleted,
            },
        )

    # --- create-only APIs ----------------------------------------------------------------------------

    def _token_request(self, namespace: str, name: str, req: Request) -> Response:
        body = self._parse_body(req) or {}
        spec = (body.get("spec") or {}) if isinstance(body, dict) else {}
        seconds = spec.get("expirationSeconds") or 3600
        if not isinstance(seconds, int) or seconds < 600:
            raise e.invalid_object(
                "authentication.k8s.io",
                "TokenRequest",
                name,
                [e.invalid("spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes")],
            )
        audiences = spec.get("audiences") or ["https://kubernetes.default.svc"]
        account = self.store.get(("", "serviceaccounts"), namespace, name)
        if account is None:
            raise e.not_found("", "serviceaccounts", name)
        token, expires = self.auth.bound_token(namespace, name, account["metadata"]["uid"], seconds, audiences)
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        return Response(
            201,
            {
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": namespace, "creationTimestamp": now()},
                "spec": {"audiences": audiences, "expirationSeconds": seconds},
                "status": {"token": token, "expirationTimestamp": expiry},
            },
        )

    def _review(self, rt: ResourceType, req: Request, user: UserInfo) -> Response:
        body = self._parse_body(req)
        if not isinstance(body, dict):
            raise e.bad_request(f"Object 'Kind' is missing in '{json.dumps(body)}'")
        spec = body.get("spec") or {}
        if rt.plural == "selfsubjectreviews":
            info = {"username": user.name, "groups": list(user.groups)}
            if user.uid:
                info["uid"] = user.uid
            return Response(
                201,
                {
                    "kind": rt.kind,
                    "apiVersion": rt.api_version,
                    "metadata": {"creationTimestamp": now()},
                    "status": {"userInfo": info},
                },
            )
        if rt.plural == "selfsubjectaccessreviews":
            subject = user
        else:
            subject = UserInfo(spec.get("user", ""), tuple(spec.get("groups") or ()), spec.get("uid", ""))
        resource = spec.get("resourceAttributes")
        if resource:
            attrs = Attributes(
                verb=resource.get("verb", ""),
                group=resource.get("group", ""),
                resource=resource.get("resource", ""),
                subresource=resource.get("subresource", ""),
                namespace=resource.get("namespace", ""),
                name=resource.get("name", ""),
            )
        else:
            non_resource = spec.get("nonResourceAttributes") or {}
            attrs = Attributes(
                verb=non_resource.get("verb", ""), resource_request=False, path=non_resource.get("path", "")
            )
        allowed = authorize(self.store, subject, attrs)
        status: Obj = {"allowed": allowed}
        if allowed and not subject.is_admin:
            status["reason"] = "RBAC: allowed by a binding"
        return Response(
            201,
            {
                "kind": rt.kind,
                "apiVersion": rt.api_version,
                "metadata": {"creationTimestamp": now()},
                "spec": spec,
                "status": status,
            },
        )

    def effective_rules(self, user: UserInfo, namespace: str) -> list[Obj]:
        """The RBAC rules that apply to ``user`` in ``namespace`` (a test helper)."""
        with self.store.lock:
            return rules_for(self.store, user, namespace)


_APPLY_IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


def _applied_paths(config: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The fields an applied configuration sets: paths through maps (a list counts as one field)."""
    if not isinstance(config, dict) or (prefix and not config):
        return {prefix} if prefix and prefix not in _APPLY_IDENTITY else set()
    paths: set[tuple[str, ...]] = set()
    for key, value in config.items():
        paths |= _applied_paths(value, (*prefix, str(key)))
    return paths


def _remove_path(obj: Any, path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        if not isinstance(obj, dict) or key not in obj:
            return
        obj = obj[key]
    if isinstance(obj, dict):
        obj.pop(path[-1], None)
