"""The baseline of the API-load table: Cilium's L2 announcements as API clients see them.

Cilium's L2 announcer runs one client-go leader election per (Service, candidate node): every node that
could announce a Service competes for the Lease ``cilium-l2announce-<namespace>-<service>`` in
``kube-system``. This module replays exactly the requests client-go's ``tools/leaderelection`` makes,
with Cilium's defaults (leaseDuration 15 s, renewDeadline 5 s, retryPeriod 2 s), using the official
Python client against the same API server as our agents:

* a candidate that does not hold the Lease runs ``acquire``: ``wait.JitterUntil(tryAcquireOrRenew,
  retryPeriod, 1.2, sliding=true)`` — one GET, then a pause of retryPeriod x (1 + U[0, 1.2)) after it
  returns (on average 1.6 x retryPeriod); when the Lease is free or expired it UPDATEs it (CREATE if absent);
* the holder runs ``renew``: ``wait.Until`` with retryPeriod around ``PollImmediateUntil(tryAcquireOrRenew)``
  — one renewal retryPeriod after the previous one returned. client-go >= 0.30 (Kubernetes 1.30, PR
  kubernetes#122069) renews with a single optimistic UPDATE of the Lease it last wrote (``--variant
  update``); older client-go, as in Cilium releases built on it, GETs and then UPDATEs (``--variant
  get-update``). A holder that cannot renew within renewDeadline loses the Lease and starts acquiring again.

Expected rate in steady state (requests take no time): S x (h/R + (N-1)/(1.6 R)), h = 1 (update) or 2.

    python -m benchmarks.cilium_model --kubeconfig FILE --services S --nodes N [--variant update]

JSON lines: ``{"event": "started"}``, then one answer per stdin command: ``{"cmd": "stats"}`` ->
``{"event": "stats", "requests": {...}, "lag_ms": {...}, "held": ..., ...}``. End of input or
``{"cmd": "stop"}`` exits at once.
"""

from __future__ import annotations

import argparse
import collections
import heapq
import itertools
import json
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config

LEASE_DURATION = 15.0
RENEW_DEADLINE = 5.0
RETRY_PERIOD = 2.0
JITTER_FACTOR = 1.2  # client-go leaderelection.JitterFactor

VARIANTS = ("update", "get-update")


def expected_rate(services: int, nodes: int, variant: str = "update", retry: float = RETRY_PERIOD) -> float:
    """Requests/s by the formula (no request time): the holder's renewals plus the other candidates' GETs."""
    holder = 1.0 if variant == "update" else 2.0
    return services * (holder / retry + (nodes - 1) / ((1 + JITTER_FACTOR / 2) * retry))


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One candidate's client-go LeaderElector for one Service's Lease."""

    __slots__ = ("acquiring", "identity", "lease", "name", "observed", "observed_raw", "observed_time", "renewed_at")

    def __init__(self, name: str, identity: str) -> None:
        self.name = name
        self.identity = identity
        self.lease: dict[str, Any] | None = None  # the object last read or written (its resourceVersion)
        self.observed: dict[str, Any] = {}  # the LeaderElectionRecord last observed
        self.observed_raw: tuple[Any, ...] | None = None
        self.observed_time = 0.0
        self.acquiring = True
        self.renewed_at = 0.0

    def is_leader(self) -> bool:
        return self.observed.get("holderIdentity") == self.identity

    def lease_valid(self, now: float) -> bool:
        return self.observed_time + float(self.observed.get("leaseDurationSeconds") or 0) > now

    def set_observed(self, record: dict[str, Any]) -> None:
        self.observed = record
        self.observed_raw = None
        self.observed_time = time.monotonic()


class Model:
    def __init__(
        self, kubeconfig: str, namespace: str, services: int, nodes: int, workers: int, variant: str, prefix: str
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.variant = variant
        self.electors = [
            Elector(f"cilium-l2announce-default-bench-svc-{s:04d}", f"{prefix}-{n:02d}")
            for s in range(services)
            for n in range(1, nodes + 1)
        ]
        self._heap: list[tuple[float, int, Elector]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._work: queue.SimpleQueue[tuple[float, Elector]] = queue.SimpleQueue()
        self._stats_lock = threading.Lock()
        self.requests: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.lags: list[float] = []
        self.workers = workers
        self.transitions = 0

    # ---- scheduling (the timers of wait.JitterUntil / wait.Until) ----

    def schedule(self, elector: Elector, due: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), elector))
            if self._heap[0][2] is elector:
                self._cond.notify()

    def _dispatch(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due, _, elector = heapq.heappop(self._heap)
                    self._work.put((due, elector))
                self._cond.wait(self._heap[0][0] - now if self._heap else 1.0)

    def _worker(self) -> None:
        api = client.CoordinationV1Api(kube_config.new_client_from_config(config_file=self.kubeconfig))
        while True:
            due, elector = self._work.get()
            start = time.monotonic()
            with self._stats_lock:
                self.lags.append(start - due)
            delay = self.step(api, elector)
            self.schedule(elector, time.monotonic() + delay)

    def start(self) -> None:
        now = time.monotonic()
        for elector in self.electors:  # agents start at different times: spread the first attempts
            self.schedule(elector, now + random.uniform(0, RETRY_PERIOD))
        threading.Thread(target=self._dispatch, daemon=True).start()
        for _ in range(self.workers):
            threading.Thread(target=self._worker, daemon=True).start()

    # ---- one iteration of acquire() or renew() ----

    def step(self, api: client.CoordinationV1Api, e: Elector) -> float:
        """Run one tryAcquireOrRenew; return the delay before the next one (after this one returned)."""
        ok = self.try_acquire_or_renew(api, e)
        now = time.monotonic()
        if e.acquiring:
            if ok:
                e.acquiring = False
                e.renewed_at = now
                with self._stats_lock:
                    self.transitions += 1
                return 0.0  # renew() starts with PollImmediateUntil: the first renewal is immediate
            return RETRY_PERIOD * (1 + random.random() * JITTER_FACTOR)
        if ok:
            e.renewed_at = now
            return RETRY_PERIOD  # wait.Until(..., retryPeriod): the next round retryPeriod after this one
        if now - e.renewed_at >= RENEW_DEADLINE:  # renewDeadline passed: leadership lost, Cilium re-runs
            e.acquiring = True
            return RETRY_PERIOD * (1 + random.random() * JITTER_FACTOR)
        return RETRY_PERIOD  # PollImmediateUntil retries every retryPeriod until the deadline

    def _call(self, verb: str, fn: Any, *args: Any) -> dict[str, Any]:
        with self._stats_lock:
            self.requests[verb] += 1
        try:
            response = fn(*args, _preload_content=False, _request_timeout=30)
        except client.ApiException as exc:
            with self._stats_lock:
                self.errors[f"{verb} {exc.status}"] += 1
            raise
        except Exception as exc:
            with self._stats_lock:
                self.errors[f"{verb} {type(exc).__name__}"] += 1
            raise
        result: dict[str, Any] = json.loads(response.data)
        return result

    def _record(self, e: Elector, transitions: int, acquire_time: str | None = None) -> dict[str, Any]:
        now = micro_time()
        return {
            "holderIdentity": e.identity,
            "leaseDurationSeconds": int(LEASE_DURATION),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _update(self, api: client.CoordinationV1Api, e: Elector, record: dict[str, Any]) -> bool:
        assert e.lease is not None
        body = dict(e.lease)
        body["spec"] = record
        try:
            e.lease = self._call("update", api.replace_namespaced_lease, e.name, self.namespace, body)
        except Exception:
            return False
        e.set_observed(record)
        return True

    def try_acquire_or_renew(self, api: client.CoordinationV1Api, e: Elector) -> bool:
        now = time.monotonic()
        # 1. fast path (client-go >= 0.30): the holder updates optimistically, without a GET
        if self.variant == "update" and e.is_leader() and e.lease_valid(now) and e.lease is not None:
            record = self._record(e, e.observed.get("leaseTransitions", 0), e.observed.get("acquireTime"))
            if self._update(api, e, record):
                return True
        # 2. get or create the record
        try:
            lease = self._call("get", api.read_namespaced_lease, e.name, self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                return False
            record = self._record(e, 0)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": e.name, "namespace": self.namespace},
                "spec": record,
            }
            try:
                e.lease = self._call("create", api.create_namespaced_lease, self.namespace, body)
            except Exception:
                return False
            e.set_observed(record)
            return True
        except Exception:
            return False
        e.lease = lease
        spec = lease.get("spec") or {}
        raw = tuple(
            spec.get(k)
            for k in ("holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions")
        )
        # 3. the record changed since we last looked: restart the expiry clock (observer's own clock)
        if raw != e.observed_raw:
            e.observed = dict(spec)
            e.observed_raw = raw
            e.observed_time = time.monotonic()
        if spec.get("holderIdentity") and e.lease_valid(now) and not e.is_leader():
            return False
        # 4. free, expired, or ours: update it
        transitions = int(spec.get("leaseTransitions") or 0)
        if e.is_leader():
            record = self._record(e, transitions, spec.get("acquireTime"))
        else:
            record = self._record(e, transitions + 1)
        return self._update(api, e, record)

    # ---- reporting ----

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            lags, self.lags = self.lags, []
            requests, errors, transitions = dict(self.requests), dict(self.errors), self.transitions
        lags.sort()

        def pct(p: float) -> float:
            return round(lags[min(len(lags) - 1, int(p / 100 * len(lags)))] * 1e3, 1) if lags else 0.0

        held = {e.name for e in self.electors if not e.acquiring}
        return {
            "event": "stats",
            "t": time.monotonic(),
            "requests": requests,
            "errors": errors,
            "lag_ms": {"p50": pct(50), "p99": pct(99), "max": round(lags[-1] * 1e3, 1) if lags else 0.0},
            "held": len(held),
            "holders": sum(1 for e in self.electors if not e.acquiring),
            "transitions": transitions,
            "queued": self._work.qsize(),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.cilium_model")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--namespace", default="kube-system")
    parser.add_argument("--workers", type=int, default=24)
    parser.add_argument("--variant", choices=VARIANTS, default="update")
    parser.add_argument("--prefix", default="bench-node")
    args = parser.parse_args(argv)
    model = Model(args.kubeconfig, args.namespace, args.services, args.nodes, args.workers, args.variant, args.prefix)
    model.start()
    print(json.dumps({"event": "started", "electors": len(model.electors), "pid": os.getpid()}), flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            if command.get("cmd") == "stop":
                break
            if command.get("cmd") == "stats":
                print(json.dumps(model.stats()), flush=True)
    finally:
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
