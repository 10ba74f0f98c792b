"""What only a warm controller candidate runs: the elected controller and its warm standbys.

Watch load is the cost that grows with the cluster: every watcher of a Lease receives each of its
renewals. So the roles differ in what they watch (each agent reads only its own work):

* **controller** (elected) and **warm standbys** (up to ``controller.standbys``, chosen by the controller
  and named in their assignment objects): this side — informers on Services, EndpointSlices, Nodes, every
  Lease of the agents' namespace (liveness is judged here) and every assignment object, the controller
  loop and the election. A standby has been judging liveness all along, so when the controller dies it
  takes over without the one lease duration a fresh observer needs to settle.
* **cold candidates**: none of this; they watch their own assignment object, their own Node, pools,
  policies and the controller Lease alone (one object). They turn warm when their object names them a
  standby, or when the controller Lease stops changing for two lease durations while their own API
  writes succeed (controller and standbys all gone).
* agents with ``controller.enabled: false``: only their own objects, never warm.

A side is built fresh each time the agent turns warm (informers cannot be restarted) and stopped whole
when it turns cold. See :class:`l2lb_agent.agent.Agent` for the switching.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .controller.runtime import Caches, ControllerRuntime
from .election import LeaderElection
from .kube import ASSIGNMENTS, ENDPOINTSLICES, LEASES, NODES, SERVICES, Informer
from .leases import CONTROLLER_LEASE, node_lease_name, parse_heartbeat
from .liveness import LeaseObserver
from .logs import node_logger
from .model.contract import SERVICE_NAME_LABEL
from .worker import Worker

if TYPE_CHECKING:
    from .agent import Agent


class ControllerSide:
    """The controller machinery of one warm period; see the module docstring."""

    def __init__(self, agent: Agent, *, initial: bool = False) -> None:
        self.agent = agent
        self.initial = initial  # built at agent start (the agent is not healthy before it has listed)
        kube, namespace, node = agent.kube, agent.namespace, agent.node
        self.observer = LeaseObserver(self_name=node_lease_name(node))
        self.services = Informer(kube, SERVICES, name="services")
        self.endpointslices = Informer(
            kube,
            ENDPOINTSLICES,
            label_selector=SERVICE_NAME_LABEL,
            keep=lambda s: SERVICE_NAME_LABEL in ((s.get("metadata") or {}).get("labels") or {}),
            name="endpointslices",
        )
        self.nodes = Informer(kube, NODES, name="nodes")
        self.leases = Informer(kube, LEASES, namespace=namespace, name="leases")
        self.assignments = Informer(kube, ASSIGNMENTS, namespace=namespace, name="assignments")
        self.caches = Caches(
            self.services,
            self.endpointslices,
            self.nodes,
            self.leases,
            agent.pools,
            agent.policies,
            self.assignments,
        )
        self.controller = ControllerRuntime(
            kube,
            self.caches,
            self.observer,
            node,
            self.is_leader,
            logger=node_logger("l2lb.controller", node),
            namespace=namespace,
            standbys=agent.config.controller.standbys,
        )
        self.election = LeaderElection(
            kube,
            namespace,
            node,
            agent.config.controller,
            self.observer,
            lambda: self.leases.get(f"{namespace}/{CONTROLLER_LEASE}"),
            ready=lambda: self.leases.synced,
            on_started=self.controller.activate,
            on_stopped=self.controller.deactivate,
            logger=node_logger("l2lb.election", node),
        )
        for informer in (self.services, self.endpointslices, self.nodes, self.assignments):
            informer.add_handler(self.controller.notify)
        self.services.add_handler(agent.speaker.notify)  # the 0.1 upgrade path reads Services
        self.leases.add_handler(self._lease_event)
        self.started = False

    def informers(self) -> list[Informer]:
        """This side's own informers (pools and policies belong to the agent: the speaker needs them too)."""
        return [self.services, self.endpointslices, self.nodes, self.leases, self.assignments]

    def threads(self) -> dict[str, Worker]:
        threads: dict[str, Worker] = {f"informer-{i.name}": i for i in self.informers()}
        threads["election"] = self.election
        threads["controller"] = self.controller
        return threads

    def is_leader(self) -> bool:
        return self.election.is_leader

    def notify(self, *_: Any) -> None:
        self.controller.notify()

    def start(self) -> None:
        for informer in self.informers():
            informer.start()
        self.controller.start()
        self.election.start()
        self.started = True

    def stop(self, release: bool) -> None:
        if release:
            self.controller.wait_idle()  # let a round in progress finish its writes before we let go
        self.controller.stop()
        self.election.stop(release=release)
        for informer in self.informers():
            informer.stop(timeout=1.0)

    def lease_watch_stalled(self) -> str | None:
        """The Lease watch is stalled when our heartbeat writes succeed but we never see them come back."""
        if self.agent.heartbeat.fresh() and self.leases.synced and self.observer.blind():
            return "our own heartbeat renewals do not come back on the watch"
        return None

    def judges(self) -> Mapping[Informer, Callable[[], str | None]]:
        return {self.leases: self.lease_watch_stalled}

    def _lease_event(self, kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
        if kind == "SYNCED":
            self.controller.notify()
            return
        lease = new if new is not None else old
        if lease is None:
            return
        name = str((lease.get("metadata") or {}).get("name") or "")
        if name == CONTROLLER_LEASE:
            self.observer.observe(name, new)
            self.election.notify()
            return
        was_alive = self.observer.alive(name)
        was_blind = self.observer.blind()
        self.observer.observe(name, new)
        if self.controller.settling:
            self.controller.notify()  # a lease seen changing may be the last one it waits for
        if name == self.agent.heartbeat.lease_name:
            self.agent.own_heartbeat_event(kind)
        before = parse_heartbeat(old) if old is not None else None
        after = parse_heartbeat(new) if new is not None else None
        if (
            was_alive != self.observer.alive(name)
            or was_blind != self.observer.blind()
            or (before is None) != (after is None)
            or (
                before is not None
                and after is not None
                and (before.draining, before.interfaces, before.candidate)
                != (after.draining, after.interfaces, after.candidate)
            )
        ):
            self.controller.notify()
