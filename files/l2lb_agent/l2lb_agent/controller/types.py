"""Plain data the controller's pure logic works on (IPAM and scheduling); no I/O here.

The runtime turns watched API objects into these, calls :mod:`.ipam` and :mod:`.scheduler`, and
writes the results back. Keeping them plain and frozen makes the logic testable with hypothesis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..model.contract import (  # noqa: F401  (re-exported: the controller's names live with the contract)
    ANNOTATION_ANNOUNCING_INTERFACES,
    ANNOTATION_ANNOUNCING_NODE,
    ANNOTATION_IPS,
    ANNOTATION_POOL,
    ANNOTATION_SHARING_KEY,
    LB_CLASS,
    REQUESTED_IP_ANNOTATIONS,
    SHARING_KEY_ANNOTATIONS,
    Announcement,
)
from ..model.model import Pool
from ..model.selectors import service_selector_labels

# Service spec.ipFamilies values and the IP version each stands for.
IP_FAMILY_VERSIONS = {"IPv4": 4, "IPv6": 6}
EXTERNAL_TRAFFIC_POLICY_LOCAL = "Local"

# Refusal reasons (Service condition reason and Event reason).
REASON_INVALID_REQUEST = "InvalidRequest"
REASON_NO_POOL_MATCHES = "NoPoolMatches"
REASON_POOL_EXHAUSTED = "PoolExhausted"
REASON_REQUESTED_IP_UNAVAILABLE = "RequestedIPUnavailable"
REASON_SHARING_REFUSED = "SharingRefused"
REASON_NO_ELIGIBLE_NODE = "NoEligibleNode"


@dataclass(frozen=True)
class ServicePort:
    port: int
    protocol: str = "TCP"
    name: str = ""


@dataclass(frozen=True)
class ServiceInfo:
    """What IPAM and the scheduler need to know about one Service."""

    namespace: str
    name: str
    uid: str = ""
    type: str = "LoadBalancer"
    load_balancer_class: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[ServicePort, ...] = ()
    external_traffic_policy: str = "Cluster"
    ip_families: tuple[str, ...] = ("IPv4",)
    ingress_ips: tuple[str, ...] = ()  # status.loadBalancer.ingress[].ip as it is now
    external_ips: tuple[str, ...] = ()  # spec.externalIPs
    created: str = ""  # metadata.creationTimestamp (RFC 3339); ties broken by key
    # Legacy spec.loadBalancerIP (deprecated since Kubernetes 1.24) is read as a requested IP.
    load_balancer_ip: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def selector_labels(self) -> dict[str, str]:
        """What serviceSelectors match: the labels plus Cilium's pseudo-labels for namespace and name."""
        return service_selector_labels(self.namespace, self.name, self.labels)


@dataclass(frozen=True)
class PoolInfo:
    """A pool as stored in the API: the validated model plus what orders pools (older wins)."""

    pool: Pool
    created: str = ""
    uid: str = ""


@dataclass(frozen=True)
class Refusal:
    """Why a Service got no IP, or an IP got no node; becomes a Service condition + Event."""

    reason: str  # CamelCase, e.g. PoolExhausted, RequestedIPUnavailable, SharingRefused, NoEligibleNode
    message: str


@dataclass(frozen=True)
class InterfaceInfo:
    """One candidate interface as a node's heartbeat publishes it."""

    name: str
    mac: str
    up: bool
    subnets: tuple[str, ...] = ()  # CIDRs of the interface's addresses, e.g. "198.18.0.0/24"
    ndp: bool = False
    """The node's speaker answers NDP here (IPv6 is on on the interface). False from agents that only answer
    ARP (0.1.0 did): IPv6 addresses are then never placed on the interface."""


@dataclass(frozen=True)
class NodeInfo:
    """A node as the controller sees it."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    alive: bool = True  # heartbeat lease seen changing within its duration (observer's monotonic clock)
    draining: bool = False  # agent is shutting down: move its IPs away (make-before-break)
    schedulable: bool = True  # false when the Node is cordoned/being drained (spec.unschedulable)
    interfaces: tuple[InterfaceInfo, ...] = ()
