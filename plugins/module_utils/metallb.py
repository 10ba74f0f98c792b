# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MetalLB's layer-2 configuration translated into the l2lb inventory model, plus a plan of Service rewrites.

Pure: it takes the objects (from a cluster or from manifest files) and returns the pools, the policies,
the per-Service annotation/label rewrites, and every part of the input that cannot be expressed, each
with what it means for the user. Nothing is dropped silently.

Input that is *broken* (MetalLB itself would refuse it, or it does not say what it seems to say) is not
translated at all: ``problems`` lists every such problem at once, with the object, the field and the fix,
and the module fails without writing or patching anything. Broken are: a wrong or missing ``apiVersion``;
unknown keys (with "did you mean"), at the top level (``annotations:`` beside ``metadata``), in the specs and
in the legacy ConfigMap; an address that is not a CIDR or an ``a-b`` range (a bare IP, a reversed range,
an octet out of range, mixed families); a value of the wrong type (``spec.ports`` as a mapping); an IP
MetalLB assigned that lies in no imported pool; and pools and policies that the model refuses.

How MetalLB's semantics map (facts from MetalLB's API types and config parser):

* ``IPAddressPool.spec.addresses``: a CIDR (host bits allowed; MetalLB masks them) or ``a-b`` (spaces
  around the dash allowed). MetalLB hands out *every* address of a CIDR, so pools import with
  ``allowFirstLastIPs: true``. ``avoidBuggyIPs`` skips IPv4 addresses ending in .0 or .255: blocks are
  split into ranges around them (exact) while that stays small, else approximated and listed.
* ``autoAssign: false`` and the ``address-pool`` annotation: l2lb (and Cilium) choose pools by the
  pool's ``serviceSelector`` on Service labels, so a Service that asks for a pool gets the label
  ``l2lb.io/requested-pool=<pool>``; a pool without auto-assignment selects exactly that label, and the
  auto-assigning pools exclude Services that asked for another pool.
* ``L2Advertisement``: one policy per node selector (MetalLB ORs its ``nodeSelectors``; l2lb ORs
  policies), interface names become anchored regexes. An advertisement covering only some pools becomes a
  ``serviceSelector`` on the request label where that is exact, and is listed where it is not.
* Service annotations (``metallb.universe.tf/*`` and ``metallb.io/*``): ``loadBalancerIPs`` and
  ``allow-shared-ip`` are rewritten to the target backend's names (l2lb's agent also honours the
  MetalLB ones meanwhile); the IPs MetalLB assigned can be pinned, so no address changes on switch-over.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from ansible_collections.baremetal.l2lb.plugins.module_utils.cilium import annotation_names
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.contract import (
    ANNOTATION_IPS,
    ANNOTATION_SHARING_KEY,
)
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import ModelError, build_model
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.problems import Problem, Problems, check_known_keys
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.selectors import SERVICE_NAMESPACE_LABEL

GROUP = "metallb.io"
VERSION = "v1beta1"
POOL_PLURAL = "ipaddresspools"
ADVERTISEMENT_PLURAL = "l2advertisements"
# What the import reads from a cluster: MetalLB's kinds (BGP ones only to list them as not imported).
CLUSTER_KINDS = (
    ("ipaddresspools", "IPAddressPool"),
    ("l2advertisements", "L2Advertisement"),
    ("bgpadvertisements", "BGPAdvertisement"),
    ("bgppeers", "BGPPeer"),
)
PREFIXES = ("metallb.io/", "metallb.universe.tf/")
# apiVersion per kind this import reads (the legacy ConfigMap and Services are core v1).
API_VERSIONS = {
    "IPAddressPool": (f"{GROUP}/{VERSION}",),
    "L2Advertisement": (f"{GROUP}/{VERSION}",),
    "Service": ("v1",),
    "ConfigMap": ("v1",),
}
OBJECT_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")
CONFIG_MAP_KEYS = ("apiVersion", "kind", "metadata", "data", "binaryData", "immutable")
METADATA_KEYS = ("annotations", "labels", "name", "namespace")  # where a misplaced top-level key belongs
SPEC_KEYS = {
    "IPAddressPool": ("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"),
    "L2Advertisement": ("ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "interfaces"),
}
SERVICE_ALLOCATION_KEYS = ("priority", "namespaces", "namespaceSelectors", "serviceSelectors")
LEGACY_KEYS = ("address-pools", "peers", "bgp-communities")
KNOWN_KINDS = ("IPAddressPool", "L2Advertisement", "Service", "ConfigMap", "AddressPool", "BGPAdvertisement",
               "BGPPeer", "BFDProfile", "Community")  # fmt: skip
_LEGACY_POOL_TYPES = [("name", ("str",)), ("protocol", ("str",)), ("addresses", ("list",)), ("addresses.*", ("str",)),
                      ("auto-assign", ("bool",)), ("avoid-buggy-ips", ("bool",))]  # fmt: skip
LEGACY_POOL_KEYS = ("name", "protocol", "addresses", "auto-assign", "avoid-buggy-ips", "bgp-advertisements")
# The type of every field the translation reads, per kind ("*": each item of a list or value of a mapping).
_SELECTOR_TYPES = [("matchLabels", ("map",)), ("matchLabels.*", ("str",)), ("matchExpressions", ("list",)),
                   ("matchExpressions.*", ("map",)), ("matchExpressions.*.values", ("list",))]  # fmt: skip
_TYPES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "common": [
        ("metadata", ("map",)), ("metadata.name", ("str",)), ("metadata.namespace", ("str",)),
        ("metadata.labels", ("map",)), ("metadata.labels.*", ("str",)),
        ("metadata.annotations", ("map",)), ("metadata.annotations.*", ("str",)),
    ],
    "IPAddressPool": [
        ("spec", ("map",)), ("spec.addresses", ("list",)), ("spec.addresses.*", ("str",)),
        ("spec.autoAssign", ("bool",)), ("spec.avoidBuggyIPs", ("bool",)), ("spec.serviceAllocation", ("map",)),
        ("spec.serviceAllocation.priority", ("int",)), ("spec.serviceAllocation.namespaces", ("list",)),
        ("spec.serviceAllocation.namespaceSelectors", ("list",)),
        ("spec.serviceAllocation.serviceSelectors", ("list",)), ("spec.serviceAllocation.serviceSelectors.*", ("map",)),
        *((f"spec.serviceAllocation.serviceSelectors.*.{p}", t) for p, t in _SELECTOR_TYPES),
    ],
    "L2Advertisement": [
        ("spec", ("map",)), ("spec.ipAddressPools", ("list",)), ("spec.ipAddressPools.*", ("str",)),
        ("spec.ipAddressPoolSelectors", ("list",)), ("spec.ipAddressPoolSelectors.*", ("map",)),
        *((f"spec.ipAddressPoolSelectors.*.{p}", t) for p, t in _SELECTOR_TYPES),
        ("spec.nodeSelectors", ("list",)), ("spec.nodeSelectors.*", ("map",)),
        ("spec.interfaces", ("list",)), ("spec.interfaces.*", ("str",)),
    ],
    "Service": [
        ("spec", ("map",)), ("spec.type", ("str",)), ("spec.loadBalancerClass", ("str",)),
        ("spec.loadBalancerIP", ("str",)), ("spec.externalTrafficPolicy", ("str",)),
        ("spec.ports", ("list",)), ("spec.ports.*", ("map",)), ("spec.ports.*.port", ("int",)),
        ("spec.ports.*.protocol", ("str",)), ("status", ("map",)), ("status.loadBalancer", ("map",)),
        ("status.loadBalancer.ingress", ("list",)), ("status.loadBalancer.ingress.*", ("map",)),
        ("status.loadBalancer.ingress.*.ip", ("str",)),
    ],
    "ConfigMap": [("data", ("map",)), ("data.config", ("str",))],
}  # fmt: skip
REQUEST_LABEL = "l2lb.io/requested-pool"
CILIUM_CROSS_NAMESPACE = "lbipam.cilium.io/sharing-cross-namespace"
# avoidBuggyIPs: split a block into ranges around .0/.255 while it spans at most this many /24s.
MAX_SPLIT_RANGES = 16
_KNOWN = ("loadBalancerIPs", "allow-shared-ip", "address-pool", "ip-allocated-from-pool")
_BGP_KINDS = ("BGPAdvertisement", "BGPPeer", "BFDProfile", "Community")


@dataclass(frozen=True)
class Unexpressible:
    """A part of the MetalLB configuration the inventory model cannot say, and what that means."""

    obj: str
    field: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"object": self.obj, "field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        where = f"{self.obj}: {self.field}" if self.field else self.obj
        return f"{where}: {self.reason}"


@dataclass
class ServiceRewrite:
    """What to change on one Service: annotations to set or remove, labels to set."""

    namespace: str
    name: str
    annotations: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def is_empty(self) -> bool:
        return not (self.annotations or self.remove or self.labels)

    def summary(self) -> str:
        """One line: ``dns/pihole-udp: + l2lb.io/ips=198.18.10.53, - metallb.io/allow-shared-ip``."""
        parts = [f"+ {k}={v}" for k, v in self.annotations.items()]
        parts += [f"+ label {k}={v}" for k, v in self.labels.items()]
        parts += [f"- {k}" for k in self.remove]
        parts += [f"({note})" for note in self.notes]
        return f"{self.ref}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.ref,
            "namespace": self.namespace,
            "name": self.name,
            "set_annotations": dict(self.annotations),
            "remove_annotations": list(self.remove),
            "set_labels": dict(self.labels),
            "notes": list(self.notes),
        }


@dataclass
class ImportResult:
    """The inventory model, the Service plan and everything that could not be expressed."""

    pools: list[dict[str, Any]]
    policies: list[dict[str, Any]]
    rewrites: list[ServiceRewrite]
    unexpressible: list[Unexpressible]
    notes: list[str]
    backend: str
    problems: list[Problem] = field(default_factory=list)
    """Broken input: when there is any, nothing may be written or patched (the module fails)."""

    def inventory_yaml(self) -> str:
        """YAML to paste into group_vars, with what could not be expressed as comments on top."""
        lines = [
            "# Imported from MetalLB by baremetal.l2lb.metallb_import.",
            f"# Target backend: {self.backend}. Review, then paste into group_vars (e.g. group_vars/all/l2lb.yml).",
        ]
        if self.unexpressible:
            lines.append("# Not expressible in the inventory model (decide how to handle each):")
            for item in self.unexpressible:
                wrapped = textwrap.wrap(str(item), width=110, break_on_hyphens=False)
                lines.append(f"#   - {wrapped[0]}")
                lines.extend(f"#     {more}" for more in wrapped[1:])
        body: dict[str, Any] = {}
        if self.backend == "cilium":
            body["l2lb_backend"] = "cilium"
        body["l2lb_pools"] = self.pools
        body["l2lb_policies"] = self.policies
        dumped = yaml.dump(body, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
        return "\n".join(lines) + "\n" + dumped


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True  # a shared selector is written out twice, never as &anchor/*alias


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def flatten(objects: Iterable[Any]) -> list[Mapping[str, Any]]:
    """Objects from manifests: ``List`` kinds unwrapped, empty documents skipped."""
    out: list[Mapping[str, Any]] = []
    for obj in objects:
        if not isinstance(obj, Mapping):
            continue
        if str(obj.get("kind", "")).endswith("List") and isinstance(obj.get("items"), list):
            out.extend(flatten(obj["items"]))
        else:
            out.append(obj)
    return out


def address_problem(text: Any) -> tuple[str, str]:
    """Why an ``addresses`` entry is not a CIDR or an ``a-b`` range, and the fix (for one that is not)."""
    value = str(text).strip()
    if "-" in value:
        first, _, last = (part.strip() for part in value.partition("-"))
        try:
            start, stop = ipaddress.ip_address(first), ipaddress.ip_address(last)
        except ValueError as exc:
            return (
                f"{value!r} is not a range of two IP addresses: {exc}",
                "write first-last, e.g. 198.18.0.10-198.18.0.20",
            )
        if start.version != stop.version:
            return f"range {value!r} mixes IPv{start.version} and IPv{stop.version}", "use one family per range"
        return f"range {value!r} starts after it stops", f"swap them: {stop}-{start}"
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        prefix = 32 if address.version == 4 else 128
        return f"{value!r} is a single address; MetalLB takes CIDRs and ranges", f"write {address}/{prefix}"
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        return f"{value!r} is not a CIDR or a range: {exc}", "write a CIDR such as 198.18.10.0/28 or a range a-b"
    return f"{value!r} is not a CIDR or a range", "write a CIDR such as 198.18.10.0/28 or a range a-b"


def parse_address(text: str) -> tuple[dict[str, str], str] | None:
    """One ``addresses`` entry as a block ``{cidr}`` or ``{start, stop}``, with a note; None if invalid."""
    value = str(text).strip()
    if "-" in value:
        first, _, last = value.partition("-")
        try:
            start, stop = ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip())
        except ValueError:
            return None
        if start.version != stop.version or int(start) > int(stop):
            return None
        return {"start": str(start), "stop": str(stop)}, ""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    if "/" not in value:
        return None  # MetalLB wants a prefix length, /32 for one address
    note = "" if str(network) == value else f"{value} has host bits set; MetalLB used {network}"
    return {"cidr": str(network)}, note


def _block_bounds(block: Mapping[str, str]) -> tuple[int, int, int]:
    if "cidr" in block:
        net = ipaddress.ip_network(block["cidr"])
        return net.version, int(net.network_address), int(net.broadcast_address)
    start, stop = ipaddress.ip_address(block["start"]), ipaddress.ip_address(block["stop"])
    return start.version, int(start), int(stop)


def avoid_buggy_ranges(block: Mapping[str, str]) -> list[tuple[int, int]]:
    """The IPv4 sub-ranges of a block without addresses ending in .0 or .255."""
    _, first, last = _block_bounds(block)
    ranges = []
    for base in range(first >> 8 << 8, last + 1, 256):
        lo, hi = max(first, base + 1), min(last, base + 254)
        if lo <= hi:
            ranges.append((lo, hi))
    return ranges


def _selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels (for ipAddressPoolSelectors); malformed matches nothing."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and key in labels and labels[key] in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def _and_selectors(base: Mapping[str, Any] | None, extra: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not base and not extra:
        return None
    out: dict[str, Any] = {}
    labels = {**((base or {}).get("matchLabels") or {}), **((extra or {}).get("matchLabels") or {})}
    exprs = [*((base or {}).get("matchExpressions") or []), *((extra or {}).get("matchExpressions") or [])]
    if labels:
        out["matchLabels"] = labels
    if exprs:
        out["matchExpressions"] = exprs
    return out


@dataclass
class _Pool:
    name: str
    labels: Mapping[str, str]
    blocks: list[dict[str, str]]
    auto_assign: bool
    allow_first_last: bool = True
    service_selector: dict[str, Any] | None = None
    ranges: list[tuple[int, int, int]] = field(default_factory=list)  # (version, first, last) of the blocks

    def contains(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(v == ip.version and a <= int(ip) <= b for v, a, b in self.ranges)


class _Importer:
    def __init__(self, backend: str, cilium_version: str, pin_assigned_ips: bool, remove_old: bool) -> None:
        if backend == "cilium":
            names = annotation_names(cilium_version)
            self.ips_annotation, self.sharing_annotation = names["ips"], names["sharing_key"]
        else:
            self.ips_annotation, self.sharing_annotation = ANNOTATION_IPS, ANNOTATION_SHARING_KEY
        self.backend = backend
        self.pin = pin_assigned_ips
        self.remove_old = remove_old
        self.unexpressible: list[Unexpressible] = []
        self.notes: list[str] = []
        self.pools: list[_Pool] = []
        self.problems = Problems()
        self.untranslated: list[str] = []  # pools whose wrong types kept them from being translated

    def lost(self, obj: str, path: str, reason: str) -> None:
        self.unexpressible.append(Unexpressible(obj, path, reason))

    def broken(self, obj: str, path: str, message: str, fix: str) -> None:
        """Input MetalLB would refuse, or that does not say what it seems to: the import fails."""
        self.problems.add(obj, path, message, fix)

    def check_object(self, raw: Mapping[str, Any], kind: str, obj: str) -> bool:
        """apiVersion, keys and the types of every field the translation reads; False when a type is wrong (the
        object is then not translated: its problems are the answer)."""
        served = API_VERSIONS[kind]
        api_version = raw.get("apiVersion")
        if api_version not in served:
            what = "missing" if api_version is None else f"{api_version!r} is not the apiVersion of {kind}"
            self.problems.add(
                obj,
                "apiVersion",
                what,
                f"use apiVersion: {' or '.join(served)}",
                kind="missing" if api_version is None else "wrong_api_version",
            )
        top = {key: value for key, value in raw.items() if key not in METADATA_KEYS}
        check_known_keys(top, CONFIG_MAP_KEYS if kind == "ConfigMap" else OBJECT_KEYS, obj, "", self.problems)
        for key in raw:
            if key in METADATA_KEYS:  # annotations: beside metadata instead of under it, so nobody reads them
                self.broken(obj, str(key), "unknown key (beside metadata)", f"move it under metadata: metadata.{key}")
        typed = len(self.problems)
        for path, expected in _TYPES["common"] + _TYPES[kind]:
            self._check_type(raw, path.split("."), obj, "", expected)
        typed = len(self.problems) == typed
        spec = _spec(raw)
        if kind in SPEC_KEYS:
            check_known_keys(spec, SPEC_KEYS[kind], obj, "spec", self.problems)
        if kind == "IPAddressPool":
            if "addresses" not in spec:
                self.broken(obj, "spec.addresses", "missing", "list CIDRs or a-b ranges, e.g. [198.18.10.0/28]")
            allocation = spec.get("serviceAllocation")
            if isinstance(allocation, Mapping):
                check_known_keys(allocation, SERVICE_ALLOCATION_KEYS, obj, "spec.serviceAllocation", self.problems)
        # A wrong apiVersion or an unknown key is listed but does not stop the translation (its own problems are
        # found too, all at once); a value of the wrong type does: the translation would misread it.
        return typed

    def _check_type(self, value: Any, path: list[str], obj: str, done: str, expected: tuple[str, ...]) -> None:
        """Walk ``path`` (``*`` = every list item or mapping value) and check what is there: absent is fine."""
        if not path:
            if value is None:
                return
            kinds = {"str": str, "int": int, "bool": bool, "list": list, "map": Mapping}
            if not any(isinstance(value, kinds[name]) and not (name == "int" and isinstance(value, bool))
                       for name in expected):  # fmt: skip
                words = {"map": "a mapping", "str": "a string", "int": "an integer", "bool": "a boolean",
                         "list": "a list"}  # fmt: skip
                wanted = " or ".join(words[name] for name in expected)
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                self.problems.add(
                    obj, done, f"expected {wanted}, got {type(value).__name__} {shown}", f"write {wanted} there",
                    kind="wrong_type",
                )  # fmt: skip
            elif isinstance(value, Mapping) and any(not isinstance(key, str) for key in value):
                bad = next(key for key in value if not isinstance(key, str))
                self.problems.add(obj, done, f"key {bad!r} is not a string", "quote the key", kind="wrong_type")
            return
        head, rest = path[0], path[1:]
        if head == "*":
            items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
            for key, item in items:
                self._check_type(
                    item, rest, obj, f"{done}[{key}]" if isinstance(key, int) else f"{done}.{key}", expected
                )
            return
        if isinstance(value, Mapping) and head in value:
            self._check_type(value[head], rest, obj, f"{done}.{head}" if done else head, expected)

    # --- pools ------------------------------------------------------------------------------------

    def add_pool(
        self,
        name: str,
        labels: Mapping[str, str],
        addresses: Sequence[Any],
        auto_assign: bool,
        avoid_buggy: bool,
        allocation: Mapping[str, Any] | None,
        obj: str,
        address_path: str = "spec.addresses",
    ) -> None:
        blocks: list[dict[str, str]] = []
        for i, text in enumerate(addresses):
            parsed = parse_address(str(text))
            if parsed is None:
                message, fix = address_problem(text)
                self.broken(obj, f"{address_path}[{i}]", message, fix)
                continue
            block, note = parsed
            if note:
                self.notes.append(f"{obj}: {note}")
            blocks.append(block)
        pool = _Pool(name, labels, [], auto_assign)
        for block in blocks:
            pool.blocks.extend(self._avoid_buggy(pool, block, obj) if avoid_buggy else [block])
        pool.ranges = [_block_bounds(b) for b in pool.blocks]
        if not pool.blocks:
            if not self.problems:
                self.lost(obj, address_path, "no usable address; the pool is not imported")
            return
        self._allocation(pool, allocation or {}, obj)
        self.pools.append(pool)

    def _avoid_buggy(self, pool: _Pool, block: dict[str, str], obj: str) -> list[dict[str, str]]:
        version, first, last = _block_bounds(block)
        if version != 4:
            return [block]
        ranges = avoid_buggy_ranges(block)
        if ranges == [(first, last)]:
            return [block]
        if not ranges:
            self.lost(obj, "spec.avoidBuggyIPs", f"every address of {_show(block)} ends in .0 or .255; dropped")
            return []
        if len(ranges) <= MAX_SPLIT_RANGES:
            return [{"start": str(ipaddress.IPv4Address(a)), "stop": str(ipaddress.IPv4Address(b))} for a, b in ranges]
        pool.allow_first_last = False
        self.lost(
            obj,
            "spec.avoidBuggyIPs",
            f"{_show(block)} spans {len(ranges)} /24s: imported whole with allowFirstLastIPs: false, which skips "
            "only its first and last address - the .0/.255 addresses inside it can be allocated",
        )
        return [block]

    def _allocation(self, pool: _Pool, allocation: Mapping[str, Any], obj: str) -> None:
        if allocation.get("priority") is not None:
            self.lost(
                obj,
                "spec.serviceAllocation.priority",
                f"pool priority {allocation['priority']} has no equivalent: when several pools select a Service, "
                "any of them may allocate",
            )
        if allocation.get("namespaceSelectors"):
            self.lost(
                obj,
                "spec.serviceAllocation.namespaceSelectors",
                "selecting namespaces by their labels has no equivalent (selectors see the Service, not its "
                "namespace's labels); list the namespaces instead (spec.serviceAllocation.namespaces)",
            )
        selectors = [s for s in allocation.get("serviceSelectors") or [] if isinstance(s, Mapping)]
        if selectors:
            pool.service_selector = {k: v for k, v in selectors[0].items() if k in ("matchLabels", "matchExpressions")}
        namespaces = sorted({str(n) for n in allocation.get("namespaces") or []})
        if namespaces:
            # Cilium's (and our) pseudo-label for the Service's namespace says exactly this, ANDed as in MetalLB.
            only = {"matchExpressions": [{"key": SERVICE_NAMESPACE_LABEL, "operator": "In", "values": namespaces}]}
            pool.service_selector = _and_selectors(pool.service_selector, only)
            self.notes.append(
                f"{obj}: serviceAllocation.namespaces became a serviceSelector on {SERVICE_NAMESPACE_LABEL}"
            )
        if len(selectors) > 1:
            self.lost(
                obj,
                "spec.serviceAllocation.serviceSelectors",
                f"{len(selectors)} selectors (ORed) but a pool has one: imported the first only, so Services "
                "matching only the others no longer get addresses from it",
            )

    def gate_pools(self, requested: set[str]) -> set[str]:
        """Apply the request-label scheme where a pool is not auto-assigned or asked for by name."""
        gated = {p.name for p in self.pools if not p.auto_assign}
        if not gated and not requested:
            return gated
        names = sorted(p.name for p in self.pools)
        for pool in self.pools:
            if pool.name in gated:
                extra: dict[str, Any] = {"matchLabels": {REQUEST_LABEL: pool.name}}
            else:
                others = [n for n in names if n != pool.name]
                if not others:
                    continue
                extra = {"matchExpressions": [{"key": REQUEST_LABEL, "operator": "NotIn", "values": others}]}
            pool.service_selector = _and_selectors(pool.service_selector, extra)
        return gated

    # --- advertisements ---------------------------------------------------------------------------

    def policies(self, advertisements: Sequence[Mapping[str, Any]], gated: set[str]) -> list[dict[str, Any]]:
        all_names = {p.name for p in self.pools}
        used_names: set[str] = set()
        out: list[dict[str, Any]] = []
        for adv in advertisements:
            name = str(_meta(adv).get("name") or "l2")
            obj = f'L2Advertisement "{name}"'
            spec = _spec(adv)
            covered = self._covered(spec, obj)
            if covered is not None and not covered:
                self.lost(obj, "spec.ipAddressPools", "selects no imported pool; MetalLB announced nothing with it")
                continue
            selector = self._service_selector(covered, all_names, gated, obj)
            interfaces = [f"^{re.escape(str(i))}$" for i in spec.get("interfaces") or []]
            node_selectors = [s for s in spec.get("nodeSelectors") or [] if isinstance(s, Mapping)]
            for i, node_selector in enumerate(node_selectors or [None]):
                policy_name = name if len(node_selectors) <= 1 else f"{name}-{i}"
                while policy_name in used_names:
                    policy_name += "-x"
                used_names.add(policy_name)
                policy: dict[str, Any] = {"name": policy_name}
                if node_selector:
                    policy["nodeSelector"] = {
                        k: v for k, v in node_selector.items() if k in ("matchLabels", "matchExpressions")
                    }
                if selector:
                    policy["serviceSelector"] = selector
                if interfaces:
                    policy["interfaces"] = interfaces
                policy["loadBalancerIPs"] = True
                policy["externalIPs"] = False
                out.append(policy)
            if len(node_selectors) > 1:
                self.notes.append(
                    f"{obj}: {len(node_selectors)} nodeSelectors became {len(node_selectors)} policies "
                    f"({name}-0 ... {name}-{len(node_selectors) - 1}); a node matching any of them may announce, "
                    "as in MetalLB"
                )
        return out

    def _covered(self, spec: Mapping[str, Any], obj: str) -> set[str] | None:
        """The imported pools an advertisement covers; None means all of them."""
        names = [str(n) for n in spec.get("ipAddressPools") or []]
        selectors = spec.get("ipAddressPoolSelectors") or []
        if not names and not selectors:
            return None
        known = {p.name for p in self.pools}
        for missing in sorted(set(names) - known):
            self.lost(obj, "spec.ipAddressPools", f'pool "{missing}" is not among the imported pools')
        covered = {n for n in names if n in known}
        for selector in selectors:
            covered |= {p.name for p in self.pools if _selector_matches(selector, p.labels)}
        return covered

    def _service_selector(
        self, covered: set[str] | None, all_names: set[str], gated: set[str], obj: str
    ) -> dict[str, Any] | None:
        if covered is None or covered == all_names:
            return None
        if gated and covered <= gated:
            return {"matchExpressions": [{"key": REQUEST_LABEL, "operator": "In", "values": sorted(covered)}]}
        rest = all_names - covered
        if gated and rest <= gated:
            return {"matchExpressions": [{"key": REQUEST_LABEL, "operator": "NotIn", "values": sorted(rest)}]}
        self.lost(
            obj,
            "spec.ipAddressPools",
            f"announces only pools {', '.join(sorted(covered))}: policies select Services, not pools, so the "
            f"imported policy also announces IPs from {', '.join(sorted(rest))}; label the Services of those "
            "pools and give the policy a serviceSelector to keep the restriction",
        )
        return None

    # --- services ---------------------------------------------------------------------------------

    def rewrites(self, services: Sequence[Mapping[str, Any]], gated: set[str]) -> list[ServiceRewrite]:
        plans = []
        groups: dict[str, list[tuple[Mapping[str, Any], ServiceRewrite]]] = {}
        for service in services:
            plan, key = self._rewrite(service, gated)
            if plan is None:
                continue
            if key:
                groups.setdefault(key, []).append((service, plan))
            plans.append(plan)
        for key, members in sorted(groups.items()):
            self._check_sharing(key, members)
        for plan in plans:
            if plan.is_empty():  # nothing to change (or already changed): its notes still count
                self.notes.extend(f'Service "{plan.ref}": {note}' for note in plan.notes)
        return [p for p in plans if not p.is_empty()]

    def _rewrite(self, service: Mapping[str, Any], gated: set[str]) -> tuple[ServiceRewrite | None, str]:
        meta, spec = _meta(service), _spec(service)
        annotations: Mapping[str, str] = meta.get("annotations") or {}
        labels: Mapping[str, str] = meta.get("labels") or {}
        ours = {k: v for k, v in annotations.items() if k.startswith(PREFIXES)}
        plan = ServiceRewrite(str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
        obj = f'Service "{plan.ref}"'
        if spec.get("type") != "LoadBalancer":
            if ours:
                plan.notes.append("not of type LoadBalancer: its MetalLB annotations had no effect; left alone")
            return (plan if ours else None), ""
        if spec.get("loadBalancerClass"):
            self.lost(
                obj,
                "spec.loadBalancerClass",
                f"{spec['loadBalancerClass']!r}: the field is immutable and neither l2lb nor Cilium handles that "
                "class; recreate the Service without it (or with the new backend's class)",
            )
        values: dict[str, str] = {}
        for key, value in ours.items():
            short = key.split("/", 1)[1]
            if short not in _KNOWN:
                self.lost(obj, f"metadata.annotations[{key}]", "unknown MetalLB annotation; left in place")
                continue
            other = values.get(short)
            if other is not None and other != value:
                self.lost(
                    obj,
                    f"metadata.annotations[{key}]",
                    f"disagrees with the other prefix ({other!r} vs {value!r}); using the metallb.io value",
                )
                if key.startswith("metallb.universe.tf/"):
                    continue
            values[short] = value
        requested = self._requested_ips(values, spec, service, plan, obj)
        self._set(plan, annotations, self.ips_annotation, ",".join(requested) if requested else None, obj)
        sharing = (values.get("allow-shared-ip") or "").strip()
        self._set(plan, annotations, self.sharing_annotation, sharing or None, obj)
        pool = (values.get("address-pool") or "").strip()
        known = {p.name for p in self.pools}
        if pool and pool not in known:
            self.lost(obj, "address-pool", f'asks for pool "{pool}", which is not among the imported pools')
        elif pool:
            self._label(plan, labels, pool, obj)
        elif requested:
            # An IP inside a pool that is not auto-assigned is only handed out to Services asking for it.
            for ip in requested:
                home = next((p for p in self.pools if p.contains(ipaddress.ip_address(ip))), None)
                if home is not None and home.name in gated:
                    self._label(plan, labels, home.name, obj)
                    break
        if self.remove_old:
            plan.remove.extend(sorted(k for k in ours if k.split("/", 1)[1] in _KNOWN))
        return plan, sharing

    def _requested_ips(
        self,
        values: Mapping[str, str],
        spec: Mapping[str, Any],
        service: Mapping[str, Any],
        plan: ServiceRewrite,
        obj: str,
    ) -> list[str]:
        raw = values.get("loadBalancerIPs")
        source = "loadBalancerIPs annotation"
        if raw is None and spec.get("loadBalancerIP"):
            raw, source = str(spec["loadBalancerIP"]), "spec.loadBalancerIP (deprecated)"
        if raw is None and self.pin:
            status = (service.get("status") or {}).get("loadBalancer") or {}
            assigned = [str(i["ip"]) for i in status.get("ingress") or [] if isinstance(i, Mapping) and i.get("ip")]
            if assigned:
                raw, source = ",".join(assigned), "the IP MetalLB assigned (pinned so it survives the switch)"
        if raw is None:
            return []
        pinned = source.startswith("the IP MetalLB assigned")
        ips = []
        for part in (p.strip() for p in raw.split(",")):
            try:
                ip = ipaddress.ip_address(part)
            except ValueError:
                self.lost(obj, source, f"{part!r} is not an IP address; not carried over")
                continue
            if not any(p.contains(ip) for p in self.pools):
                if self.untranslated:  # the pool holding it may be one whose own problems kept it out
                    continue
                if pinned and spec.get("loadBalancerClass"):
                    # Another implementation's class: its status IP was perhaps never MetalLB's to give.
                    self.lost(obj, source, f"{ip} lies in no imported pool (the Service has another class); not pinned")
                    continue
                what = "MetalLB assigned it" if pinned else "it is requested"
                self.broken(
                    obj,
                    source,
                    f"{ip} lies in no imported pool, but {what}: the Service would lose its address on the switch "
                    "(MetalLB itself refuses such a configuration)",
                    f"add {ip} to a pool" + ("" if pinned else ", or remove the request"),
                )
                continue
            ips.append(str(ip))
        if ips:
            plan.notes.append(f"requested IPs from {source}: {', '.join(ips)}")
        return ips

    def _set(self, plan: ServiceRewrite, current: Mapping[str, str], key: str, value: str | None, obj: str) -> None:
        if value is None or current.get(key) == value:
            return
        if current.get(key) is not None:
            self.lost(
                obj,
                f"metadata.annotations[{key}]",
                f"already {current[key]!r}, MetalLB's says {value!r}; left as it is",
            )
            return
        plan.annotations[key] = value

    def _label(self, plan: ServiceRewrite, labels: Mapping[str, str], pool: str, obj: str) -> None:
        if labels.get(REQUEST_LABEL) == pool:
            return
        if labels.get(REQUEST_LABEL) is not None:
            self.lost(obj, f"metadata.labels[{REQUEST_LABEL}]", f"already {labels[REQUEST_LABEL]!r}, wanted {pool!r}")
            return
        plan.labels[REQUEST_LABEL] = pool

    def _check_sharing(self, key: str, members: Sequence[tuple[Mapping[str, Any], ServiceRewrite]]) -> None:
        # l2lb refuses two Services on one IP that use the same port and protocol; Cilium refuses the same port
        # number whatever the protocols (a DNS pair on 53/TCP and 53/UDP shares an IP here, not there).
        seen: dict[tuple[str, int], str] = {}
        policies = {str(_spec(s).get("externalTrafficPolicy") or "Cluster") for s, _ in members}
        for service, plan in members:
            ports = _spec(service).get("ports")
            for port in ports if isinstance(ports, list) else []:
                if not isinstance(port, Mapping):
                    continue
                try:
                    number = int(port.get("port") or 0)
                except (TypeError, ValueError):
                    continue
                protocol = str(port.get("protocol") or "TCP")
                proto_port = ("any" if self.backend == "cilium" else protocol, number)
                if proto_port in seen and seen[proto_port] != plan.ref:
                    what = f"port {number}" if self.backend == "cilium" else f"{number}/{protocol}"
                    why = " (Cilium refuses one port number twice on an IP, whatever the protocols)"
                    self.lost(
                        f'Service "{plan.ref}"',
                        "spec.ports",
                        f"shares key {key!r} with {seen[proto_port]} and both use {what}: sharing will be refused"
                        + (why if self.backend == "cilium" else ""),
                    )
                seen.setdefault(proto_port, plan.ref)
        if len(policies) > 1:
            self.lost(
                f"sharing key {key!r}",
                "spec.externalTrafficPolicy",
                f"its Services mix {' and '.join(sorted(policies))}: Services sharing an IP need the same policy",
            )
        namespaces = sorted({plan.namespace for _, plan in members})
        if self.backend == "cilium" and len(namespaces) > 1:
            for _, plan in members:
                others = [n for n in namespaces if n != plan.namespace]
                plan.annotations[CILIUM_CROSS_NAMESPACE] = ",".join(others)
            self.notes.append(
                f"sharing key {key!r} spans namespaces {', '.join(namespaces)}: added {CILIUM_CROSS_NAMESPACE} "
                "(Cilium shares within one namespace unless every member allows the others)"
            )

    # --- result -----------------------------------------------------------------------------------

    def inventory_pools(self) -> list[dict[str, Any]]:
        out = []
        for pool in self.pools:
            entry: dict[str, Any] = {"name": pool.name, "blocks": pool.blocks}
            if pool.service_selector:
                entry["serviceSelector"] = pool.service_selector
            entry["allowFirstLastIPs"] = pool.allow_first_last
            out.append(entry)
        return out


def _show(block: Mapping[str, str]) -> str:
    return block.get("cidr") or f"{block['start']}-{block['stop']}"


def _legacy_config(config_map: Mapping[str, Any], imp: _Importer) -> list[dict[str, Any]]:
    """MetalLB < 0.13's ConfigMap: its layer2 pools, plus an advertisement of them on every node."""
    text = (config_map.get("data") or {}).get("config") or ""
    obj = f'ConfigMap "{_meta(config_map).get("name", "config")}"'
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        imp.broken(obj, "data.config", f"not valid YAML: {exc}", "fix the YAML MetalLB would fail to read too")
        return []
    if not isinstance(config, Mapping):
        imp.broken(obj, "data.config", "expected a mapping with address-pools", "see MetalLB 0.12's config format")
        return []
    check_known_keys(config, LEGACY_KEYS, obj, "data.config", imp.problems)
    pools = config.get("address-pools") or []
    if not isinstance(pools, list):
        imp.broken(obj, "data.config.address-pools", "expected a list of pools", "write address-pools as a list")
        pools = []
    names = []
    for i, pool in enumerate(pools):
        path = f"data.config.address-pools[{i}]"
        if not isinstance(pool, Mapping):
            imp.broken(obj, path, "expected a mapping (name, protocol, addresses)", "write the pool as a mapping")
            continue
        before = len(imp.problems)
        check_known_keys(pool, LEGACY_POOL_KEYS, obj, path, imp.problems)
        for field_path, expected in _LEGACY_POOL_TYPES:
            imp._check_type(pool, field_path.split("."), obj, path, expected)
        name = str(pool.get("name") or f"pool-{i}")
        if pool.get("protocol", "layer2") != "layer2":
            imp.lost(obj, path, f'pool "{name}" uses protocol {pool.get("protocol")}: not imported')
            continue
        addresses = pool.get("addresses")
        if not isinstance(addresses, list):
            got = "missing" if addresses is None else f"expected a list, got {type(addresses).__name__}"
            imp.broken(obj, f"{path}.addresses", got, "list CIDRs or a-b ranges, e.g. [198.18.10.0/28]")
        if len(imp.problems) > before:
            continue
        imp.add_pool(
            name,
            {},
            addresses or [],
            pool.get("auto-assign", True) is not False,
            bool(pool.get("avoid-buggy-ips")),
            None,
            f'{obj} pool "{name}"',
            address_path=f"{path}.addresses",
        )
        names.append(name)
    if config.get("peers"):
        imp.lost(obj, "peers", "BGP peers are out of scope (layer 2 only); not imported")
    if not names:
        return []
    imp.notes.append(f"{obj}: legacy MetalLB configuration (before 0.13); its layer2 pools are announced on every node")
    return [{"metadata": {"name": "legacy-layer2"}, "spec": {"ipAddressPools": names}}]


def import_metallb(
    objects: Iterable[Any],
    backend: str = "l2lb",
    cilium_version: str = "1.16.5",
    pin_assigned_ips: bool = True,
    remove_metallb_annotations: bool = False,
) -> ImportResult:
    """Translate MetalLB objects (pools, advertisements, Services, legacy ConfigMap) for ``backend``."""
    imp = _Importer(backend, cilium_version, pin_assigned_ips, remove_metallb_annotations)
    advertisements: list[Mapping[str, Any]] = []
    services: list[Mapping[str, Any]] = []
    documents = list(objects)
    for index, document in enumerate(documents):
        if document is not None and not isinstance(document, Mapping):
            imp.broken(
                f"document {index + 1}",
                "",
                f"expected a Kubernetes object (a mapping), got {type(document).__name__}",
                "remove it, or fix the indentation that made it a list or a string",
            )
    for obj in flatten(documents):
        kind = str(obj.get("kind") or "")
        name = str(_meta(obj).get("name") or "")
        data = obj.get("data")
        if kind in API_VERSIONS and (kind != "ConfigMap" or (isinstance(data, Mapping) and "config" in data)):
            namespace = _meta(obj).get("namespace")
            label = f'{kind} "{namespace}/{name}"' if kind == "Service" and namespace else f'{kind} "{name}"'
            if not imp.check_object(obj, kind, label):
                if kind == "IPAddressPool":
                    imp.untranslated.append(name)
                continue  # broken: not translated (its problems fail the import)
        if kind == "IPAddressPool":
            spec = _spec(obj)
            imp.add_pool(
                name,
                _meta(obj).get("labels") or {},
                spec.get("addresses") or [],
                spec.get("autoAssign", True) is not False,
                bool(spec.get("avoidBuggyIPs")),
                spec.get("serviceAllocation"),
                f'IPAddressPool "{name}"',
            )
        elif kind == "L2Advertisement":
            advertisements.append(obj)
        elif kind == "Service":
            services.append(obj)
        elif kind == "ConfigMap" and isinstance(data, Mapping) and "config" in data:
            advertisements.extend(_legacy_config(obj, imp))
        elif kind in _BGP_KINDS or kind == "BGPAdvertisement":
            imp.lost(f'{kind} "{name}"', "", "BGP is out of scope (layer 2 only); not imported")
        elif kind == "AddressPool":
            imp.lost(f'AddressPool "{name}"', "", "the deprecated AddressPool kind: convert it to IPAddressPool first")
        elif not kind:
            imp.broken(
                f'object "{name}"' if name else "an object", "kind", "missing", "add the kind, e.g. IPAddressPool"
            )
        elif close := difflib.get_close_matches(kind, KNOWN_KINDS, n=1, cutoff=0.8):
            imp.broken(f'{kind} "{name}"', "kind", f"unknown kind {kind!r}", f'did you mean "{close[0]}"?')
        else:
            imp.notes.append(f'{kind} "{name}": not a MetalLB layer-2 object; ignored')
    if imp.pools and not advertisements:
        imp.lost("L2Advertisement", "", "none found: MetalLB announced none of these pools on layer 2, so no policy")
    requested = {
        str(v).strip()
        for s in services
        for k, v in (_meta(s).get("annotations") or {}).items()
        if k.startswith(PREFIXES) and k.endswith("/address-pool")
    }
    gated = imp.gate_pools(requested)
    policies = imp.policies(advertisements, gated)
    rewrites = imp.rewrites(services, gated)
    pools = imp.inventory_pools()
    if not imp.problems:  # a broken input's translation is not worth validating: fix the input first
        try:
            build_model(pools, policies)
        except ModelError as exc:
            for problem in exc.problems:
                imp.broken(f"imported {problem.obj}", problem.field, problem.message, problem.fix)
    return ImportResult(pools, policies, rewrites, imp.unexpressible, imp.notes, backend, list(imp.problems))
