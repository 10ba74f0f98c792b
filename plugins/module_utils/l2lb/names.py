"""Names shared by the agent and the Ansible modules: annotations, labels, Lease names, the LB class."""

from __future__ import annotations

LB_CLASS = "l2lb.io/l2-announcer"
ANNOTATION_IPS = "l2lb.io/ips"
ANNOTATION_SHARING_KEY = "l2lb.io/sharing-key"
ANNOTATION_ANNOUNCING_NODE = "l2lb.io/announcing-node"
ANNOTATION_ANNOUNCING_INTERFACES = "l2lb.io/announcing-interfaces"
ANNOTATION_POOL = "l2lb.io/pool"
# Requested-IP annotations honoured for migration, in order of precedence (ours first).
REQUESTED_IP_ANNOTATIONS = (
    ANNOTATION_IPS,
    "lbipam.cilium.io/ips",
    "io.cilium/lb-ipam-ips",
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
)
SHARING_KEY_ANNOTATIONS = (
    ANNOTATION_SHARING_KEY,
    "lbipam.cilium.io/sharing-key",
    "io.cilium/lb-ipam-sharing-key",
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
)
DEFAULT_NAMESPACE = "l2lb-system"
NODE_LEASE_PREFIX = "l2lb-node-"
CONTROLLER_LEASE = "l2lb-controller"
# Cilium's per-service L2 announcement leases (for checks on Cilium clusters).
CILIUM_LEASE_PREFIX = "cilium-l2announce-"


def node_lease_name(node: str) -> str:
    """The heartbeat Lease of a node."""
    return f"{NODE_LEASE_PREFIX}{node}"
