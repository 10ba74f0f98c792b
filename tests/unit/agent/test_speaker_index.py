"""The speaker's index of the 0.1 Service annotations (the upgrade path): equal to assignments_for after any
events, and O(change) per event.

The Services reach the speaker through a real :class:`Informer` (watch events, re-lists, our own writes
folded in), driven without an API server; the speaker's rounds run on the test thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import l2lb_agent.speaker.runtime as runtime_module
from l2lb_agent.kube import SERVICES, Informer
from l2lb_agent.metrics import Metrics
from l2lb_agent.speaker.runtime import SpeakerRuntime, assignments_for

NODE = "node-a"
NAMES = ["ns1/a", "ns1/b", "ns1/c", "ns2/a", "ns2/d"]
IPS = ["198.18.0.1", "198.18.0.2", "198.18.0.3", "2001:db8::1", "not-an-ip"]
INTERFACES = ["eth0", "eth1", "eth2"]


class ListKube:
    """What the Informer asks of its client when it re-lists, with a world the test sets."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.items: list[dict[str, Any]] = []
        self.rv = "1"

    def list(
        self,
        resource: Any,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": self.rv}, "items": [dict(item) for item in self.items]}


class FakeWire:
    def __init__(self) -> None:
        self.current: dict[str, list[str]] = {}

    def set_assignments(self, assignments: Mapping[str, list[str]]) -> None:
        self.current = dict(assignments)

    def announce(self, ip: str | None = None) -> None:
        pass


def service(key: str, rv: int, spec: tuple[Any, ...] | None) -> dict[str, Any]:
    """``spec``: (ingress IPs, annotations) as drawn below; None: a Service nobody announces yet."""
    namespace, _, name = key.partition("/")
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(rv)},
        "spec": {"type": "LoadBalancer"},
    }
    if spec is not None:
        ips, annotations = spec
        obj["metadata"]["annotations"] = annotations
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}
    return obj


nodes = st.sampled_from([NODE, "node-b"])
interface_lists = st.lists(st.sampled_from(INTERFACES), max_size=3)


@st.composite
def specs(draw: st.DrawFn) -> tuple[Any, ...] | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    ips = draw(st.lists(st.sampled_from(IPS), max_size=3, unique=True))
    form = draw(st.sampled_from(["simple", "per-ip", "none"]))
    annotations: dict[str, str] = {}
    if form == "simple":
        annotations["l2lb.io/announcing-node"] = draw(nodes)
        annotations["l2lb.io/announcing-interfaces"] = ",".join(draw(interface_lists))
    elif form == "per-ip":
        listed = draw(st.lists(st.sampled_from(IPS), min_size=1, max_size=3, unique=True))
        annotations["l2lb.io/announcing-node"] = ",".join(f"{ip}={draw(nodes)}" for ip in listed)
        annotations["l2lb.io/announcing-interfaces"] = ",".join(
            f"{ip}={'+'.join(draw(interface_lists))}" for ip in listed
        )
    return (ips, annotations)


keys = st.sampled_from(NAMES)
operations = st.one_of(
    st.tuples(st.just("watch"), st.sampled_from(["ADDED", "MODIFIED", "DELETED"]), keys, specs()),
    st.tuples(st.just("written"), keys, specs()),
    st.tuples(st.just("relist"), st.dictionaries(keys, specs())),
    st.tuples(st.just("round")),
    st.tuples(st.just("notify")),
    st.tuples(st.just("gone"), st.booleans()),
    st.tuples(st.just("link"), st.sampled_from(INTERFACES), st.booleans()),
    st.tuples(st.just("hold")),
    st.tuples(st.just("release")),
    st.tuples(st.just("fence"), st.sampled_from(IPS[:3])),
    st.tuples(st.just("unfence"), st.sampled_from(IPS[:3])),
)


def answered_reference(runtime: SpeakerRuntime, assigned: Mapping[str, Mapping[str, list[str]]]) -> dict[str, Any]:
    """What the speaker answered when every round recomputed everything (the code before the index)."""
    with runtime._lock:
        gone = bool(runtime._gone)
        fenced = set(runtime._fenced)
        held = dict(runtime._held or {})
        suspended = runtime._links_down | set(runtime._links_unverified)
    desired: dict[str, list[str]] = {}
    if not gone:
        for ip, entry in assigned.items():
            interfaces = sorted(i for i in entry["interfaces"] if i not in suspended)
            if ip in fenced or not interfaces:
                continue
            desired[ip] = interfaces
        for ip, interfaces in held.items():
            usable = [i for i in interfaces if i not in suspended]
            if usable:
                desired.setdefault(ip, usable)
    return desired


class Harness:
    def __init__(self) -> None:
        self.kube = ListKube()
        self.informer = Informer(self.kube, SERVICES)  # type: ignore[arg-type]
        self.wire = FakeWire()
        self.runtime = SpeakerRuntime(NODE, self.informer, self.kube, self.wire)  # type: ignore[arg-type]
        self.informer.add_handler(self.runtime.notify)
        self.rv = 1

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def round(self) -> None:
        self.runtime._recompute()
        # Key order decides only the order inside an IP several Services share.
        expected = assignments_for(NODE, dict(sorted(self.informer.snapshot().items())))
        assert self.runtime.assigned() == expected
        assert self.runtime._index.assignments == expected
        assert self.runtime.announced() == answered_reference(self.runtime, expected)
        assert self.wire.current == self.runtime.announced()

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        runtime = self.runtime
        if kind == "watch":
            _, event, key, spec = op
            current = self.informer.get(key)
            if event == "DELETED" and current is not None and spec is None:
                obj = current  # the watch sends the last state of a deleted object
            else:
                obj = service(key, self.next_rv(), spec)
            self.informer._apply({"type": event, "object": obj})
        elif kind == "written":
            self.informer.store_written(service(op[1], self.next_rv(), op[2]))
        elif kind == "relist":
            self.kube.items = [service(key, self.next_rv(), spec) for key, spec in op[1].items()]
            self.kube.rv = str(self.next_rv())
            self.informer._relist()
        elif kind == "round":
            self.round()
        elif kind == "notify":
            runtime.notify()
        elif kind == "gone":
            runtime.set_node_gone("node", "deleted" if op[1] else None)
        elif kind == "link":
            runtime.link_changed(op[1], op[2])
        elif kind == "hold":
            runtime.hold()
        elif kind == "release":
            runtime.release_held()
        elif kind == "fence":
            with runtime._lock:
                runtime._fenced[op[1]] = time.monotonic() + 3600
        elif kind == "unfence":
            with runtime._lock:
                runtime._fenced.pop(op[1], None)


@settings(max_examples=400, deadline=None)
@given(st.lists(operations, max_size=40))
def test_the_index_equals_assignments_for_after_any_events(ops: list[tuple[Any, ...]]) -> None:
    harness = Harness()
    for op in ops:
        harness.apply(op)
    harness.round()


def test_the_index_is_rebuilt_after_a_round_that_failed() -> None:
    harness = Harness()
    harness.informer.store_written(service("ns1/a", harness.next_rv(), (["198.18.0.1"], simple(NODE))))
    harness.round()
    real_get = harness.informer.get
    harness.informer.get = lambda key: (_ for _ in ()).throw(RuntimeError("boom"))  # type: ignore[method-assign]
    harness.informer.store_written(service("ns1/b", harness.next_rv(), (["198.18.0.2"], simple(NODE))))
    with pytest.raises(RuntimeError):
        harness.runtime._recompute()
    harness.informer.get = real_get  # type: ignore[method-assign]
    harness.round()
    assert sorted(harness.runtime.announced()) == ["198.18.0.1", "198.18.0.2"]


def simple(node: str) -> dict[str, str]:
    return {"l2lb.io/announcing-node": node, "l2lb.io/announcing-interfaces": "eth0"}


def _count(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the speaker module's calls of its global ``name``."""
    calls = [0]
    real: Callable[..., Any] = getattr(runtime_module, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime_module, name, counting)
    return calls


def per_event_work(monkeypatch: pytest.MonkeyPatch, size: int) -> list[tuple[int, int, int]]:
    """(annotation parses, answer decisions, cache snapshots) for each of a few single-Service events.

    ``size`` Services exist already, a tenth of them announced by this node (like 10 agents).
    """
    harness = Harness()
    harness.kube.items = [
        service(f"bench/s{i}", i + 2, ([f"198.18.{i // 250}.{i % 250 + 1}"], simple(f"node-{'ab'[i % 10 > 0]}")))
        for i in range(size)
    ]
    harness.rv = size + 2
    harness.informer._relist()
    harness.round()
    assert len(harness.runtime.announced()) == (size + 9) // 10
    parses = _count(monkeypatch, "parse_announcements")
    answers = _count(monkeypatch, "_answer")
    snapshots = [0]
    real_snapshot = harness.informer.snapshot

    def counting_snapshot() -> dict[str, dict[str, Any]]:
        snapshots[0] += 1
        return real_snapshot()

    monkeypatch.setattr(harness.informer, "snapshot", counting_snapshot)
    new_ip = (["198.19.0.1"], simple(NODE))
    events = [
        ("ADDED", service("bench/new", harness.next_rv(), new_ip)),  # ours: answered
        ("MODIFIED", service("bench/new", harness.next_rv(), (["198.19.0.1"], simple("node-b")))),  # moved away
        ("MODIFIED", service("bench/s1", harness.next_rv(), (["198.18.0.2"], simple("node-c")))),  # not ours at all
        ("DELETED", service("bench/new", harness.next_rv(), None)),
        ("ADDED", service("bench/plain", harness.next_rv(), None)),  # not announced yet
    ]
    work = []
    for event, obj in events:
        before = (parses[0], answers[0], snapshots[0])
        harness.informer._apply({"type": event, "object": obj})
        harness.runtime._recompute()
        work.append((parses[0] - before[0], answers[0] - before[1], snapshots[0] - before[2]))
    monkeypatch.undo()
    harness.round()
    return work


def test_work_per_service_event_does_not_grow_with_the_number_of_services(monkeypatch: pytest.MonkeyPatch) -> None:
    small = per_event_work(monkeypatch, 10)
    large = per_event_work(monkeypatch, 1000)
    assert small == large
    assert [parses for parses, _, _ in large] == [1, 1, 1, 0, 1]  # a deleted Service is not parsed at all
    assert [answers for _, answers, _ in large] == [1, 1, 0, 0, 0]  # only this node's IPs that changed
    assert [snapshots for _, _, snapshots in large] == [0] * 5


def test_one_full_rebuild_when_not_told_what_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    harness = Harness()
    harness.kube.items = [service(f"bench/s{i}", i + 2, ([f"198.18.0.{i + 1}"], simple(NODE))) for i in range(20)]
    harness.informer._relist()  # first sync: the ADDED events, then SYNCED (a rebuild)
    harness.round()
    parses = _count(monkeypatch, "parse_announcements")
    harness.runtime._recompute()
    assert parses[0] == 0, "nothing changed: nothing parsed"
    harness.runtime.notify()
    harness.runtime._recompute()
    assert parses[0] == 20


def test_events_from_several_threads_while_the_speaker_runs() -> None:
    """The informer thread and writers (the controller, the fence) fire events while the speaker recomputes."""
    harness = Harness()
    harness.runtime.start()
    try:
        done = threading.Barrier(3)
        lock = threading.Lock()

        def writer(offset: int, via_watch: bool) -> None:
            # Both write the same Services, as the controller's writes and the watch do.
            for round_ in range(60):
                for i in range(20):
                    with lock:
                        rv = harness.next_rv()
                    node = NODE if (i + round_ + offset) % 3 else "node-b"
                    obj = service(f"w/s{i}", rv, ([f"198.18.0.{i + 1}"], simple(node)))
                    if via_watch:
                        harness.informer._apply({"type": "MODIFIED", "object": obj})
                    else:
                        harness.informer.store_written(obj)
            done.wait()

        threads = [
            threading.Thread(target=writer, args=(0, True)),
            threading.Thread(target=writer, args=(1, False)),
        ]
        for thread in threads:
            thread.start()
        done.wait()
        for thread in threads:
            thread.join()

        def settled() -> bool:
            expected = assignments_for(NODE, dict(sorted(harness.informer.snapshot().items())))
            return harness.runtime.assigned() == expected and harness.wire.current == answered_reference(
                harness.runtime, expected
            )

        assert harness.runtime.wait_for(settled, 5.0)
        assert harness.wire.current, "some of the Services end up on this node"
    finally:
        harness.runtime.stop()
