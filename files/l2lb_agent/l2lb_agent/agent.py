"""The agent process: heartbeat, speaker, and — on a warm candidate — controller election + reconcile loop.

Roles (see :mod:`.controller_side`): the elected controller and its warm standbys run the controller side
(watches on everything the controller reads); cold candidates and speaker-only agents watch only their
own objects, pools, policies (and, cold candidates, the controller Lease). :class:`Candidacy` switches.

Lifecycle (:meth:`Agent.run`): start everything; on SIGTERM drain (make-before-break): mark the
heartbeat draining, withdraw from the election, keep answering ARP until the controller has moved
every IP of this node away (seen in the Service watch) or ``drain_timeout`` passes — when this agent
*is* the controller it moves them itself first — then release the controller Lease, delete the
heartbeat Lease and return 0.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .config import AgentConfig
from .controller.runtime import ControllerRuntime
from .controller.types import InterfaceInfo
from .controller_side import ControllerSide
from .election import LeaderElection
from .heartbeat import Heartbeat
from .kube import ASSIGNMENTS, LEASES, NODES, POLICIES, POOLS, Informer, KubeClient, resource_version
from .leases import CONTROLLER_LEASE
from .logs import fields, node_logger
from .metrics import Metrics, MetricsServer
from .model.contract import assignment_name, assignment_standby
from .speaker.runtime import SpeakerRuntime
from .watchdog import Watchdog
from .worker import Worker

HANDOVER_LINGER = 1.0  # seconds a drained node keeps answering moved IPs if it never hears the new node
DEAD_THREAD_GRACE = 2.0  # seconds /healthz names a dead thread before the process exits (1) for a restart
DEBUG_HOOKS_ENV = "L2LB_AGENT_DEBUG_HOOKS"  # "1": POST /debug/kill?thread=NAME from localhost (tests only)
EXIT_THREAD_DIED = 1
COLD_TAKEOVER_DURATIONS = 2.0  # a cold candidate turns warm after the controller Lease was still this many durations

ResponderFactory = Callable[..., Any]
"""responder_factory(on_conflict=..., on_count=...) -> an object with start/stop/set_assignments/announce."""


def _default_responder_factory(config: AgentConfig) -> ResponderFactory:
    from .speaker.responder import Responder, ResponderConfig

    responder_config = ResponderConfig(
        garp_burst_rounds=config.speaker.garp_count,
        garp_burst_interval=config.speaker.garp_interval,
        refresh_interval=config.speaker.refresh_interval,
    )

    def build(**callbacks: Any) -> Any:
        return Responder(responder_config, **callbacks)

    return build


class Agent:
    """One node's agent. Tests may inject ``interfaces`` (what the heartbeat publishes) and a responder."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        interfaces: Callable[[], Sequence[InterfaceInfo]] | None = None,
        responder_factory: ResponderFactory | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.node = config.node_name
        self.namespace = config.namespace
        self.log = node_logger("l2lb.agent", self.node)
        self.metrics = metrics or Metrics()
        self.kube = KubeClient(config.kubeconfig, self.metrics)
        self.kube.health.add_recovery_listener(self._api_recovered)

        # What every agent watches: its own objects, and the pools and policies (the speaker's trust check).
        self.pools = Informer(self.kube, POOLS, name="pools")
        self.policies = Informer(self.kube, POLICIES, name="policies")
        self.own_assignment = Informer(
            self.kube,
            ASSIGNMENTS,
            namespace=self.namespace,
            field_selector=f"metadata.name={assignment_name(self.node)}",
            name="own-assignment",
        )
        self.own_node = Informer(self.kube, NODES, field_selector=f"metadata.name={self.node}", name="own-node")

        self._netwatch: Any = None
        self._interface_patterns = [re.compile(p) for p in config.speaker.interfaces]
        if interfaces is not None:
            self._interfaces: Callable[[], Sequence[InterfaceInfo]] = interfaces
        elif config.speaker.enabled:
            self._interfaces = self._netinfo_interfaces
        else:
            self._interfaces = lambda: ()  # no speaker: never offer this node for announcements

        self.heartbeat = Heartbeat(
            self.kube,
            self.namespace,
            self.node,
            config.heartbeat,
            self._interfaces,
            logger=node_logger("l2lb.heartbeat", self.node),
            clock_skew=config.heartbeat.clock_skew_seconds,
            candidate=config.controller.enabled,
        )
        self.responder: Any = None
        self._responder_factory: ResponderFactory | None = None
        if config.speaker.enabled or responder_factory is not None:
            self._responder_factory = responder_factory or _default_responder_factory(config)
        self.speaker = SpeakerRuntime(
            self.node,
            None,
            self.kube,
            None,
            assignment=self.own_assignment,
            pools=self.pools,
            policies=self.policies,
            namespace=self.namespace,
            logger=node_logger("l2lb.speaker", self.node),
            link_verify_timeout=config.heartbeat.lease_duration,
        )

        self.own_assignment.add_handler(self.speaker.notify_assignment)
        for informer in (self.pools, self.policies):
            informer.add_handler(self.speaker.notify_trust)
            informer.add_handler(self._controller_notify)
        self.own_node.add_handler(self._node_event)
        # Candidates start warm (the controller then chooses its standbys); see controller_side.
        self.side: ControllerSide | None = ControllerSide(self, initial=True) if config.controller.enabled else None
        self.cold_watch: ColdWatch | None = None
        self.candidacy = Candidacy(self)
        self.own_assignment.add_handler(self.candidacy.notify)

        self.metrics.api_reachable.set_function(lambda: 1.0 if self.kube.health.reachable else 0.0)
        self.metrics.fail_static.set_function(lambda: 1.0 if self.fail_static else 0.0)
        self.metrics_server: MetricsServer | None = None
        self.watchdog = Watchdog(
            f"l2lb-watchdog-{self.node}",
            config.heartbeat.renew_interval,
            self.informers,
            judges=lambda: self.side.judges() if self.side is not None else {},
            settle=config.heartbeat.lease_duration,
            logger=node_logger("l2lb.watchdog", self.node),
        )
        self.debug_hooks = os.environ.get(DEBUG_HOOKS_ENV, "") == "1"
        self.exit_reason = ""
        self._stop_requested = threading.Event()
        self._fast_stop = threading.Event()
        self._started = False
        self._stopped = False
        self._draining = False
        self._own_node_seen = False

    # ---- wiring ----

    def _own_informers(self) -> list[Informer]:
        """What every agent watches, whatever its role."""
        return [self.pools, self.policies, self.own_assignment, self.own_node]

    def informers(self) -> list[Informer]:
        side, cold = self.side, self.cold_watch
        extra = side.informers() if side is not None else [cold.informer] if cold is not None else []
        return [*self._own_informers(), *extra]

    # The controller side's parts, while this agent is warm (None while cold).
    @property
    def controller(self) -> ControllerRuntime | None:
        return self.side.controller if self.side is not None else None

    @property
    def election(self) -> LeaderElection | None:
        return self.side.election if self.side is not None else None

    @property
    def leases(self) -> Informer | None:
        return self.side.leases if self.side is not None else None

    @property
    def services(self) -> Informer | None:
        return self.side.services if self.side is not None else None

    @property
    def role(self) -> str:
        side = self.side
        if side is not None:
            return "controller" if side.is_leader() else "standby"
        return "cold" if self.config.controller.enabled else "speaker-only"

    def _is_leader(self) -> bool:
        side = self.side
        return side is not None and side.is_leader()

    def _controller_notify(self, *_: Any) -> None:
        side = self.side
        if side is not None:
            side.notify()

    def own_heartbeat_event(self, kind: str) -> None:
        """Our own heartbeat Lease as a warm agent's watch sees it: deleted by someone else means gone."""
        if kind == "DELETED" and not self._draining:
            self.speaker.set_node_gone("heartbeat", "heartbeat lease deleted")
        elif kind != "DELETED":
            self.speaker.set_node_gone("heartbeat", None)

    def turn_warm(self, why: str) -> None:
        """Become a controller candidate with warm caches (the Candidacy thread calls this)."""
        if self.side is not None or not self.config.controller.enabled or self._draining:
            return
        self.log.info("turning warm: watching what the controller watches", extra=fields(why=why))
        cold, self.cold_watch = self.cold_watch, None
        side = ControllerSide(self)
        for worker in side.threads().values():
            worker.add_death_listener(self._thread_died)
        self.side = side
        side.start()
        self.speaker.set_services(side.services)
        if cold is not None:
            cold.informer.stop(timeout=1.0)

    def turn_cold(self, why: str) -> None:
        """Stop the controller side and watch only our own objects and the controller Lease."""
        side = self.side
        if side is None or side.is_leader() or self._draining:
            return
        self.log.info("turning cold: watching only this node's own objects", extra=fields(why=why))
        cold = ColdWatch(self)
        cold.informer.add_death_listener(self._thread_died)
        self.cold_watch = cold
        cold.informer.start()
        self.side = None
        self.speaker.set_services(None)
        side.stop(release=True)

    def _api_recovered(self, outage_start: float) -> None:
        side = self.side
        if side is not None:
            # Our blindness is not their death: every node gets a fresh grace period.
            side.observer.grace()
            side.notify()
        # A watch that saw nothing since before the outage may hang on a connection the server has
        # forgotten (a partition rather than a restart): open it again from our resourceVersion. The
        # cache is not in doubt, so no re-list: the server replays what we missed, or answers 410 Gone
        # (a restarted kube-apiserver's fresh watch cache, a compacted etcd) and the informer re-lists.
        for informer in self.informers():
            stale = informer.last_event_at is None or informer.last_event_at < outage_start
            if stale and not informer.listing:
                informer.restart_watch(relist=False)

    def _node_event(self, kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
        """Our own Node object (field selector): deleted means this node is gone."""
        obj = new if new is not None else old
        if obj is None or (obj.get("metadata") or {}).get("name") != self.node:
            return
        if kind == "DELETED":
            if self._own_node_seen:
                self.speaker.set_node_gone("node", "Node object deleted")
        else:
            self._own_node_seen = True
            self.speaker.set_node_gone("node", None)

    def _netinfo_interfaces(self) -> list[InterfaceInfo]:
        if self._netwatch is None:
            return []
        result = []
        for iface in self._netwatch.snapshot():
            if not iface.arp or not iface.mac:
                continue
            if self._interface_patterns and not any(p.search(iface.name) for p in self._interface_patterns):
                continue
            # NDP is answered where the interface carries IPv6 at all (a link-local address is enough):
            # with IPv6 off, the kernel would drop what an NA draws to the service address.
            ndp = any(address.family == 6 for address in iface.addresses)
            result.append(InterfaceInfo(iface.name, iface.mac, iface.can_announce, tuple(iface.subnets), ndp))
        return result

    def _interface_changed(self, change: Any) -> None:
        self.heartbeat.renew_now()
        kind = getattr(change, "kind", "")
        iface = getattr(change, "interface", None)
        if iface is None:
            return
        if kind in ("down", "removed"):
            self.speaker.link_changed(iface.name, False)
        elif kind in ("up", "added") and iface.usable:
            self.speaker.link_changed(iface.name, True)

    # ---- lifecycle ----

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return self.metrics_server.address if self.metrics_server is not None else None

    def start(self) -> None:
        """Start every loop; returns at once (readiness: :meth:`health`)."""
        address = self.config.metrics_host_port
        if address is not None:
            debug = self.debug_kill if self.debug_hooks else None
            self.metrics_server = MetricsServer(self.metrics, self.health, *address, debug_kill=debug)
            self.metrics_server.start()
        self.log.info("starting", extra=fields(namespace=self.namespace, version=_version()))
        if self.debug_hooks:
            self.log.warning(f"debug hooks enabled ({DEBUG_HOOKS_ENV}=1): POST /debug/kill kills a thread")
        if self._interfaces == self._netinfo_interfaces:
            from .netinfo import NetlinkWatcher

            self._netwatch = NetlinkWatcher(self._interface_changed)
            self._netwatch.start()
        if self._responder_factory is not None:
            self.responder = self._responder_factory(
                on_conflict=self.speaker.on_conflict, on_count=self.speaker.on_count
            )
            self.responder.start()
            self.speaker.responder = self.responder
        for informer in self._own_informers():
            informer.start()
        self.heartbeat.start()
        self.speaker.start()
        if self.side is not None:
            self.side.start()
            self.speaker.set_services(self.side.services)
        self.candidacy.start()
        self.watchdog.start()
        for worker in self.threads().values():
            worker.add_death_listener(self._thread_died)
        self._started = True

    def request_stop(self, graceful: bool = True) -> None:
        """Ask :meth:`run` to shut down (signal handlers call this); a second request skips the drain."""
        if self._stop_requested.is_set() or not graceful:
            self._fast_stop.set()
        self._stop_requested.set()

    def run(self) -> int:
        """Start, serve until asked to stop, shut down gracefully; the process exit code.

        When a thread dies instead (:meth:`dead_threads`): hand over at once (stop answering, release the
        controller Lease, delete the heartbeat Lease, so the controller moves this node's IPs now), keep
        /healthz naming the dead thread for :data:`DEAD_THREAD_GRACE` seconds, and return 1, so systemd's
        ``Restart=on-failure`` starts a whole agent again.
        """
        self.start()
        while not self._stop_requested.wait(1.0) and not self.dead_threads():
            pass
        if self.dead_threads():
            return self._exit_dead()
        self.shutdown(graceful=not self._fast_stop.is_set())
        return 0

    def _thread_died(self, worker: Worker) -> None:
        self._stop_requested.set()  # run() takes it from here (on the main thread)

    def _exit_dead(self) -> int:
        died_at = time.monotonic()
        dead = self.dead_threads()
        self.exit_reason = "thread died: " + "; ".join(f"{name} ({why})" for name, why in dead.items())
        self.log.error(
            "a thread died: handing this node's IPs over and exiting",
            extra=fields(threads=",".join(dead), grace=DEAD_THREAD_GRACE),
        )
        if not self._stopped:
            self._stop_loops(release=True, keep_metrics=True)
            self.heartbeat.delete()  # the controller moves our IPs now, not when the Lease expires
            self.kube.close()
            self._stopped = True
        # /healthz keeps saying which thread died (a scrape or the role's health wait sees why).
        self._fast_stop.wait(max(0.0, DEAD_THREAD_GRACE - (time.monotonic() - died_at)))
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.log.info("stopped", extra=fields(exit=EXIT_THREAD_DIED))
        return EXIT_THREAD_DIED

    def shutdown(self, graceful: bool = True) -> None:
        """Drain (graceful) and stop everything; safe to call once."""
        if self._stopped:
            return
        if graceful:
            self.drain()
        self._stop_loops(release=graceful)
        if graceful:
            self.heartbeat.delete()  # after the heartbeat loop stopped: nothing can re-create it
        self.kube.close()
        self._stopped = True
        self.log.info("stopped", extra=fields(graceful=graceful))

    def drain(self) -> bool:
        """Make-before-break handover; True when every IP moved before the timeout."""
        self._draining = True
        self.metrics.draining.set(1)
        if self.election is not None:
            self.election.withdraw_candidacy()
        self.speaker.hold()
        self.heartbeat.set_draining()
        count = len(self.speaker.assigned())
        self.log.info("draining: waiting for the controller to move this node's IPs", extra=fields(ips=count))
        timeout = self.config.drain_timeout
        deadline = time.monotonic() + timeout
        moved = self.speaker.wait_for(lambda: not self.speaker.assigned() or self._fast_stop.is_set(), timeout)
        if moved and not self._fast_stop.is_set():
            self.log.info("drained: no Service names this node any more")
            # Make before break: answer until the new nodes are heard (their gratuitous ARP) or a short linger.
            linger = min(HANDOVER_LINGER, max(0.0, deadline - time.monotonic()))
            self.speaker.wait_for(lambda: not self.speaker.held() or self._fast_stop.is_set(), linger)
        else:
            left = sorted(self.speaker.assigned())
            self.log.warning("drain timed out; stopping anyway", extra=fields(left=",".join(left), timeout=timeout))
        self.speaker.release_held()
        return moved

    def crash(self) -> None:
        """Stop every loop without any goodbye (tests: what SIGKILL leaves behind)."""
        if self._stopped:
            return
        self._stop_loops(release=False)
        self.kube.close()
        self._stopped = True

    def _stop_loops(self, release: bool, keep_metrics: bool = False) -> None:
        self.watchdog.stop()
        self.candidacy.stop()
        if self.responder is not None:
            self.responder.stop()
        self.speaker.stop()
        if self.side is not None:
            self.side.stop(release=release)
        self.heartbeat.stop()
        for informer in self.informers():
            informer.stop(timeout=1.0)
        if self._netwatch is not None:
            self._netwatch.stop()
        if self.metrics_server is not None and not keep_metrics:
            self.metrics_server.stop()

    # ---- health ----

    @property
    def fail_static(self) -> bool:
        """The API is out of reach after we knew our assignments: we keep announcing them as they were."""
        return all(i.synced for i in self.informers()) and not self.kube.health.reachable

    def threads(self) -> dict[str, Worker]:
        """Every long-lived thread of this agent, by the name /healthz and the debug hook use."""
        threads: dict[str, Worker] = {}
        if isinstance(self.responder, Worker):  # tests may inject a responder without a thread
            threads["responder"] = self.responder
        if isinstance(self._netwatch, Worker):
            threads["netlink-watcher"] = self._netwatch
        for informer in self.informers():
            threads[f"informer-{informer.name}"] = informer
        threads["heartbeat"] = self.heartbeat
        side = self.side
        if side is not None:
            threads.update(side.threads())
        threads["speaker"] = self.speaker
        threads["candidacy"] = self.candidacy
        threads["watchdog"] = self.watchdog
        return threads

    def dead_threads(self) -> dict[str, str]:
        """name -> why, for every thread that ended without being asked to stop."""
        return {name: w.failure for name, w in self.threads().items() if w.failure is not None}

    def debug_kill(self, name: str) -> tuple[bool, str]:
        """The debug hook: kill one thread (by :meth:`threads` name or thread name) as a bug would."""
        threads = self.threads()
        worker = threads.get(name) or next((w for w in threads.values() if w.thread_name == name), None)
        if worker is None:
            return False, f"no thread {name!r}; threads: {', '.join(threads)}"
        if not worker.kill():
            return False, f"thread {name!r} is not running"
        self.log.warning("debug hook: killed a thread", extra=fields(thread=name))
        return True, f"killed {name}"

    def health(self) -> tuple[bool, str]:
        """(healthy, one line saying why): what /healthz serves."""
        if not self._started:
            return False, "starting"
        dead = self.dead_threads()
        if dead:
            causes = "; ".join(f"{name} ({why})" for name, why in dead.items())
            return False, f"thread died: {causes}; exiting"
        if self._stopped:
            return False, "stopped"
        stopped = [name for name, worker in self.threads().items() if not worker.running]
        if stopped:
            return False, f"loop stopped: {', '.join(stopped)}"
        # A side that turned warm later (a cold agent chosen as standby, or taking over) is still listing:
        # this node keeps answering meanwhile, so that is no reason to call it unhealthy.
        side = self.side
        late = set(side.informers()) if side is not None and not side.initial else set()
        warming = not all(i.synced for i in late)
        synced = all(i.synced for i in self.informers() if i not in late)
        announcing = len(self.speaker.announced())
        role = self.role + (" (warming up)" if warming else "")
        if self._draining:
            return True, f"draining: {len(self.speaker.assigned())} IPs still assigned here"
        if self.heartbeat.fresh() and synced:
            age = time.monotonic() - (self.heartbeat.last_success or 0.0)
            return True, f"ok: {role}, heartbeat renewed {age:.1f}s ago, announcing {announcing} IPs"
        if self.fail_static:
            return True, (
                f"fail-static: API unreachable for {self.kube.health.down_for():.1f}s, "
                f"announcing the last assigned {announcing} IPs"
            )
        if not synced:
            waiting = ", ".join(i.name for i in self.informers() if not i.synced)
            return False, f"starting: waiting for the first list of {waiting}"
        error = self.heartbeat.last_error or "no successful renewal yet"
        return False, f"heartbeat not renewed within {self.config.heartbeat.lease_duration}s: {error}"


def _version() -> str:
    from . import __version__

    return __version__


class ColdWatch:
    """A cold candidate's one extra watch: the controller Lease alone (field selector), judged for stillness."""

    def __init__(self, agent: Agent) -> None:
        self.informer = Informer(
            agent.kube,
            LEASES,
            namespace=agent.namespace,
            field_selector=f"metadata.name={CONTROLLER_LEASE}",
            name="controller-lease",
        )
        self._key = f"{agent.namespace}/{CONTROLLER_LEASE}"
        self._rv = ""
        self._changed_at = time.monotonic()
        self.informer.add_handler(self._event)

    def _event(self, *_: Any) -> None:
        rv = resource_version(self.informer.get(self._key) or {})
        if rv != self._rv or not rv:
            self._rv = rv
            self._changed_at = time.monotonic()

    def still_for(self) -> float:
        """Seconds since the controller Lease last changed (or was found missing), on our own clock."""
        if not self.informer.synced:
            return 0.0
        return time.monotonic() - self._changed_at


class Candidacy(Worker):
    """Turns the agent warm or cold (see :mod:`.controller_side`); wakes on our assignment object, else ticks.

    Warm -> cold: our object says ``standby: false`` (a controller of this version chose others), we are not
    the leader, and we have been warm for two lease durations (so a fresh start does not flap).
    Cold -> warm: our object says ``standby: true``, or the controller Lease has not changed for
    :data:`COLD_TAKEOVER_DURATIONS` lease durations while our own heartbeat writes succeed (no controller
    and no standby left: the warm standby, if any, wins the race before that).
    """

    def __init__(self, agent: Agent) -> None:
        super().__init__(f"l2lb-candidacy-{agent.node}")
        self.agent = agent
        self._warm_since = time.monotonic()

    def notify(self, *_: Any) -> None:
        self._wake.set()

    def _run(self) -> None:
        agent = self.agent
        timing = agent.config.controller
        while not self._stopping.is_set():
            self._wake.wait(timing.renew_interval)
            self._wake.clear()
            if self._stopping.is_set() or not agent.config.controller.enabled or agent._draining:
                continue
            standby = assignment_standby(agent.speaker.own_object())
            if agent.side is not None:
                settled = time.monotonic() - self._warm_since >= 2 * timing.lease_duration
                reachable = agent.kube.health.reachable and agent.heartbeat.fresh()
                if standby is False and settled and reachable and not agent.side.is_leader():
                    agent.turn_cold("the controller chose other standbys")
            else:
                cold = agent.cold_watch
                if standby is True:
                    why = "the controller chose this node as a standby"
                elif (
                    cold is not None
                    and agent.heartbeat.fresh()
                    and cold.still_for() >= COLD_TAKEOVER_DURATIONS * timing.lease_duration
                ):
                    why = "the controller Lease stopped changing"
                else:
                    continue
                agent.turn_warm(why)
                self._warm_since = time.monotonic()
