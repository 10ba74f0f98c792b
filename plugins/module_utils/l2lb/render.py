"""Rendering the model to Kubernetes objects: our CRs and the CRDs that define them.

The CRD schemas reject what the validator rejects wherever OpenAPI v3 can express it (types, enums,
required fields, one of cidr/start, address patterns); cross-object rules (overlaps, duplicate
names) are the validator's and, at runtime, the controller's (the newer overlapping pool is marked
conflicting).
"""

from __future__ import annotations

import copy
from typing import Any

from .contract import (
    API_VERSION,
    ASSIGNMENT_KIND,
    ASSIGNMENT_PLURAL,
    GROUP,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SOURCES,
    VERSION,
)
from .model import Model, Policy, Pool

POOL_KIND = "LoadBalancerIPPool"
POLICY_KIND = "L2AnnouncementPolicy"
POOL_PLURAL = "loadbalancerippools"
POLICY_PLURAL = "l2announcementpolicies"

# Loose shape checks for the schema; the validator does the exact parsing.
_IPV4 = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
_IPV6 = r"[0-9a-fA-F:.]*:[0-9a-fA-F:.]*"
IP_PATTERN = rf"^({_IPV4}|{_IPV6})$"
CIDR_PATTERN = rf"^({_IPV4}/(3[0-2]|[12]?[0-9])|{_IPV6}/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$"


def _labels() -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY}


def render_pool(pool: Pool) -> dict[str, Any]:
    """The ``LoadBalancerIPPool`` CR for a pool."""
    return {
        "apiVersion": API_VERSION,
        "kind": POOL_KIND,
        "metadata": {"name": pool.name, "labels": _labels()},
        "spec": pool.to_spec(),
    }


def render_policy(policy: Policy) -> dict[str, Any]:
    """The ``L2AnnouncementPolicy`` CR for a policy."""
    return {
        "apiVersion": API_VERSION,
        "kind": POLICY_KIND,
        "metadata": {"name": policy.name, "labels": _labels()},
        "spec": policy.to_spec(),
    }


def render_model(model: Model) -> list[dict[str, Any]]:
    """All CRs for a validated model, pools first."""
    return [render_pool(p) for p in model.pools] + [render_policy(p) for p in model.policies]


def _selector_schema(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {
            "matchLabels": {
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": 63},
            },
            "matchExpressions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string", "minLength": 1},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    }


def _conditions_schema() -> dict[str, Any]:
    return {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["type", "status"],
            "properties": {
                "type": {"type": "string"},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "reason": {"type": "string"},
                "message": {"type": "string"},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "observedGeneration": {"type": "integer"},
            },
        },
    }


POOL_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["blocks"],
    "properties": {
        "blocks": {
            "type": "array",
            "minItems": 1,
            "description": "Address blocks: each a cidr, or a start address with an optional stop.",
            "items": {
                "type": "object",
                "properties": {
                    "cidr": {"type": "string", "pattern": CIDR_PATTERN},
                    "start": {"type": "string", "pattern": IP_PATTERN},
                    "stop": {"type": "string", "pattern": IP_PATTERN},
                },
                "oneOf": [
                    {
                        "required": ["cidr"],
                        "not": {"anyOf": [{"required": ["start"]}, {"required": ["stop"]}]},
                    },
                    {"required": ["start"], "not": {"required": ["cidr"]}},
                ],
            },
        },
        "serviceSelector": _selector_schema("Services this pool allocates to; absent means all."),
        "disabled": {"type": "boolean", "default": False},
        "allowFirstLastIPs": {"type": "boolean", "default": False},
    },
}

POLICY_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "nodeSelector": _selector_schema("Nodes that may announce; absent means all."),
        "serviceSelector": _selector_schema("Services announced; absent means all."),
        "interfaces": {
            "type": "array",
            "description": "Regexes (unanchored search) of interfaces to announce on; empty means all.",
            "items": {"type": "string"},
        },
        "externalIPs": {"type": "boolean", "default": False},
        "loadBalancerIPs": {"type": "boolean", "default": True},
    },
}

POOL_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "total": {"type": "string", "description": "Addresses in the pool (a string: IPv6 pools are huge)."},
        "used": {"type": "integer"},
        "available": {"type": "string"},
        "conditions": _conditions_schema(),
    },
}


# A node's assignment object: written only by the agents' ServiceAccount (namespaced, in the agents'
# namespace), read by that node's speaker. The schema is strict; the speaker re-checks every entry anyway.
ASSIGNMENT_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["node", "announcements"],
    "properties": {
        "node": {"type": "string", "minLength": 1, "maxLength": 253},
        "standby": {"type": "boolean"},
        "announcements": {
            "type": "array",
            "maxItems": 65536,
            "items": {
                "type": "object",
                "required": ["ip", "interfaces"],
                "properties": {
                    "ip": {"type": "string", "pattern": IP_PATTERN, "maxLength": 45},
                    "interfaces": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 64,
                        "items": {"type": "string", "minLength": 1, "maxLength": 15, "pattern": r"^[^/\s:]+$"},
                    },
                    "services": {"type": "array", "items": {"type": "string", "maxLength": 317}},
                    "source": {"type": "string", "enum": list(SOURCES)},
                },
            },
        },
    },
}


def _crd(
    kind: str,
    plural: str,
    singular: str,
    short: str,
    spec: dict[str, Any],
    status: dict[str, Any] | None,
    columns: list[dict[str, Any]],
    scope: str = "Cluster",
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": copy.deepcopy(spec),
        },
    }
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "additionalPrinterColumns": columns,
    }
    if status is not None:
        schema["properties"]["status"] = copy.deepcopy(status)
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": _labels()},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": [short],
                "categories": ["l2lb"],
            },
            "versions": [version],
        },
    }


def crd_manifests() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions of group l2lb.io: pools, policies (cluster-wide) and assignments (namespaced)."""
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    return [
        _crd(
            POOL_KIND,
            POOL_PLURAL,
            "loadbalancerippool",
            "lbpool",
            POOL_SPEC_SCHEMA,
            POOL_STATUS_SCHEMA,
            [
                {"name": "Disabled", "type": "boolean", "jsonPath": ".spec.disabled"},
                {"name": "Used", "type": "integer", "jsonPath": ".status.used"},
                {"name": "Available", "type": "string", "jsonPath": ".status.available"},
                age,
            ],
        ),
        _crd(
            POLICY_KIND,
            POLICY_PLURAL,
            "l2announcementpolicy",
            "l2policy",
            POLICY_SPEC_SCHEMA,
            None,
            [
                {"name": "LB IPs", "type": "boolean", "jsonPath": ".spec.loadBalancerIPs"},
                {"name": "External IPs", "type": "boolean", "jsonPath": ".spec.externalIPs"},
                age,
            ],
        ),
        _crd(
            ASSIGNMENT_KIND,
            ASSIGNMENT_PLURAL,
            "l2assignment",
            "l2assign",
            ASSIGNMENT_SPEC_SCHEMA,
            None,
            [
                {"name": "Node", "type": "string", "jsonPath": ".spec.node"},
                {"name": "Standby", "type": "boolean", "jsonPath": ".spec.standby"},
                {"name": "IPs", "type": "string", "jsonPath": ".spec.announcements[*].ip"},
                age,
            ],
            scope="Namespaced",
        ),
    ]
