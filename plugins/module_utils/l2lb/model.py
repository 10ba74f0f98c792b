"""Pools and L2 announcement policies: parsing, validation and the validated model.

Input comes in two shapes, both accepted anywhere a pool or policy is expected:

* the inventory shape: ``{name: lan, blocks: [...], serviceSelector: ...}``;
* a manifest: ``{apiVersion, kind, metadata: {name}, spec: {...}}`` — our own CRs or Cilium's
  ``CiliumLoadBalancerIPPool`` / ``CiliumL2AnnouncementPolicy``, so existing manifests move one to one.

:func:`build_model` validates everything and raises :class:`ModelError` with *all* problems, or
returns the :class:`Model`; nothing downstream ever sees half-valid input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .ipranges import Block, IPRange, parse_block
from .problems import ModelError, Problem, Problems, check_known_keys, expect_type, join_path
from .selectors import LabelSelector, parse_label_selector, selector_matches

POOL_KEYS = ("name", "blocks", "cidrs", "serviceSelector", "disabled", "allowFirstLastIPs")
POLICY_KEYS = ("name", "nodeSelector", "serviceSelector", "interfaces", "externalIPs", "loadBalancerIPs")
MANIFEST_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")
POOL_KINDS = ("LoadBalancerIPPool", "CiliumLoadBalancerIPPool")
POLICY_KINDS = ("L2AnnouncementPolicy", "CiliumL2AnnouncementPolicy")
CILIUM_POOL_KIND = "CiliumLoadBalancerIPPool"
# The apiVersions each kind is served under (Cilium's pool moved to v2 in 1.18; v2alpha1 is still served).
API_VERSIONS = {
    "LoadBalancerIPPool": ("l2lb.io/v1alpha1",),
    "L2AnnouncementPolicy": ("l2lb.io/v1alpha1",),
    "CiliumLoadBalancerIPPool": ("cilium.io/v2", "cilium.io/v2alpha1"),
    "CiliumL2AnnouncementPolicy": ("cilium.io/v2alpha1",),
}
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Pool:
    """A validated IP pool."""

    name: str
    blocks: tuple[Block, ...]
    service_selector: LabelSelector | None = None
    disabled: bool = False
    allow_first_last_ips: bool = False

    def usable_ranges(self) -> tuple[IPRange, ...]:
        """The ranges IPAM may allocate from, in block order."""
        ranges = (block.usable(self.allow_first_last_ips) for block in self.blocks)
        return tuple(r for r in ranges if r is not None)

    def selects_service(self, labels: Mapping[str, str] | None) -> bool:
        """Absent serviceSelector: the pool serves every Service."""
        return selector_matches(self.service_selector, labels, absent=True)

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"blocks": [b.to_spec() for b in self.blocks]}
        if self.service_selector is not None:
            spec["serviceSelector"] = self.service_selector.to_dict()
        spec["disabled"] = self.disabled
        spec["allowFirstLastIPs"] = self.allow_first_last_ips
        return spec


@dataclass(frozen=True)
class Policy:
    """A validated L2 announcement policy."""

    name: str
    node_selector: LabelSelector | None = None
    service_selector: LabelSelector | None = None
    interfaces: tuple[str, ...] = ()
    external_ips: bool = False
    load_balancer_ips: bool = True
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    def selects_node(self, labels: Mapping[str, str] | None) -> bool:
        """Absent nodeSelector: every node may announce."""
        return selector_matches(self.node_selector, labels, absent=True)

    def selects_service(self, labels: Mapping[str, str] | None) -> bool:
        """Absent serviceSelector: every Service is announced."""
        return selector_matches(self.service_selector, labels, absent=True)

    def matches_interface(self, ifname: str) -> bool:
        """Unanchored regex search, as Cilium does (``eth0`` also matches ``veth0``; anchor with ^ and $)."""
        if not self.interfaces:
            return True
        patterns = self._compiled or tuple(re.compile(p) for p in self.interfaces)
        return any(p.search(ifname) for p in patterns)

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if self.node_selector is not None:
            spec["nodeSelector"] = self.node_selector.to_dict()
        if self.service_selector is not None:
            spec["serviceSelector"] = self.service_selector.to_dict()
        if self.interfaces:
            spec["interfaces"] = list(self.interfaces)
        spec["externalIPs"] = self.external_ips
        spec["loadBalancerIPs"] = self.load_balancer_ips
        return spec


@dataclass(frozen=True)
class Model:
    """The validated set of pools and policies, plus warnings the user should see."""

    pools: tuple[Pool, ...]
    policies: tuple[Policy, ...]
    warnings: tuple[str, ...] = ()

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)

    def policy(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)


@dataclass(frozen=True)
class Overlap:
    """Two blocks sharing addresses."""

    pool_a: str
    index_a: int
    block_a: Block
    pool_b: str
    index_b: int
    block_b: Block
    shared: IPRange


def _label(kind: str, raw: Any, index: int, collection: str) -> str:
    name = _raw_name(raw)
    return f'{kind} "{name}"' if isinstance(name, str) and name else f"{collection}[{index}]"


def _raw_name(raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        return None
    if "spec" in raw or "kind" in raw or "metadata" in raw:
        meta = raw.get("metadata")
        return meta.get("name") if isinstance(meta, Mapping) else None
    return raw.get("name")


def _unwrap(
    raw: Mapping[str, Any], kinds: Sequence[str], known: Sequence[str], obj: str, problems: Problems
) -> tuple[Any, Mapping[str, Any], str]:
    """Return (name, body, field prefix) for either input shape."""
    if not ("spec" in raw or "kind" in raw or "metadata" in raw):
        check_known_keys(raw, known, obj, "", problems)
        return raw.get("name"), raw, ""
    check_known_keys(raw, MANIFEST_KEYS, obj, "", problems)
    kind = raw.get("kind")
    if kind not in kinds:
        problems.add(obj, "kind", f"unexpected kind {kind!r}", f"use one of {', '.join(kinds)}", kind="wrong_kind")
    else:
        served = API_VERSIONS[str(kind)]
        api_version = raw.get("apiVersion")
        if api_version is None:
            problems.add(obj, "apiVersion", "missing", f"add apiVersion: {served[0]}", kind="missing")
        elif api_version not in served:
            problems.add(
                obj,
                "apiVersion",
                f"{kind} is not served as {api_version!r}",
                f"use apiVersion: {' or '.join(served)}",
                kind="wrong_api_version",
            )
    meta = raw.get("metadata")
    name = None
    if expect_type(meta, Mapping, obj, "metadata", problems, "mapping with name") and isinstance(meta, Mapping):
        name = meta.get("name")
    spec = raw.get("spec", {})
    if not expect_type(spec, Mapping, obj, "spec", problems, "mapping"):
        spec = {}
    spec_known = [k for k in known if k != "name"]
    check_known_keys(spec, spec_known, obj, "spec", problems)
    return name, spec, "spec"


def _check_name(name: Any, obj: str, path: str, problems: Problems) -> bool:
    if name is None:
        problems.add(obj, path, "missing", "give it a name such as lan", kind="missing")
        return False
    if not expect_type(name, str, obj, path, problems, "string"):
        return False
    if len(name) > 253 or not _DNS_SUBDOMAIN_RE.match(name):
        fixed = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.") or "pool"
        problems.add(
            obj,
            path,
            f"{name!r} is not a valid Kubernetes object name",
            f"use lowercase letters, digits, '-' and '.', e.g. {fixed!r}",
            kind="invalid_name",
        )
        return False
    return True


def _bool(
    raw: Mapping[str, Any],
    key: str,
    default: bool,
    obj: str,
    path: str,
    problems: Problems,
    yes_no: bool = False,
) -> bool:
    if key not in raw or raw[key] is None:
        return default
    value = raw[key]
    if isinstance(value, bool):
        return value
    if yes_no and value in ("Yes", "No"):
        return value == "Yes"
    allowed = 'true or false (or Cilium\'s "Yes"/"No")' if yes_no else "true or false"
    expect_type(value, bool, obj, join_path(path, key), problems, f"boolean, {allowed}")
    return default


def parse_pool(raw: Any, index: int, problems: Problems, warnings: list[str]) -> Pool | None:
    """Validate one pool in either input shape; problems and warnings are appended."""
    pool, ok = _parse_pool_parts(raw, index, problems, warnings)
    return pool if ok else None


def _parse_pool_parts(raw: Any, index: int, problems: Problems, warnings: list[str]) -> tuple[Pool | None, bool]:
    """The pool with whatever blocks parsed, and whether it had no problems (overlaps need the blocks)."""
    obj = _label("pool", raw, index, "pools")
    if not expect_type(raw, Mapping, obj, "", problems, "mapping describing a pool"):
        return None, False
    before = len(problems)
    name, body, prefix = _unwrap(raw, POOL_KINDS, POOL_KEYS, obj, problems)
    _check_name(name, obj, "metadata.name" if prefix else "name", problems)
    blocks: list[Block] = []
    for key in ("blocks", "cidrs"):
        if key not in body:
            continue
        path = join_path(prefix, key)
        if key == "cidrs":
            warnings.append(f"{obj}: {path} is deprecated (Cilium renamed it); rename it to blocks — same entries")
        entries = body[key]
        if not expect_type(entries, list, obj, path, problems, "list of {cidr} or {start, stop} entries"):
            continue
        for i, entry in enumerate(entries):
            block = parse_block(entry, obj, join_path(path, i), problems)
            if block is not None:
                blocks.append(block)
    if "blocks" not in body and "cidrs" not in body:
        problems.add(
            obj,
            join_path(prefix, "blocks"),
            "missing: a pool needs at least one block",
            "add blocks: [{cidr: 198.18.10.0/28}] or [{start: ..., stop: ...}]",
            kind="missing",
        )
    elif not blocks and len(problems) == before:
        problems.add(
            obj,
            join_path(prefix, "blocks"),
            "empty: a pool needs at least one block",
            "add at least one {cidr} or {start, stop} entry",
            kind="missing",
        )
    selector = parse_label_selector(body.get("serviceSelector"), obj, join_path(prefix, "serviceSelector"), problems)
    disabled = _bool(body, "disabled", False, obj, prefix, problems)
    # Cilium (1.16 and later): "if set to Yes or undefined, the first and last IPs of each CIDR will be
    # allocatable". Our own shape keeps the network and broadcast addresses out unless told otherwise.
    cilium = isinstance(raw, Mapping) and raw.get("kind") == CILIUM_POOL_KIND
    allow = _bool(body, "allowFirstLastIPs", cilium, obj, prefix, problems, yes_no=True)
    label = str(name) if isinstance(name, str) else obj
    return Pool(label, tuple(blocks), selector, disabled, allow), len(problems) == before


def parse_policy(raw: Any, index: int, problems: Problems, warnings: list[str]) -> Policy | None:
    """Validate one announcement policy in either input shape."""
    obj = _label("policy", raw, index, "policies")
    if not expect_type(raw, Mapping, obj, "", problems, "mapping describing an announcement policy"):
        return None
    before = len(problems)
    name, body, prefix = _unwrap(raw, POLICY_KINDS, POLICY_KEYS, obj, problems)
    _check_name(name, obj, "metadata.name" if prefix else "name", problems)
    node_sel = parse_label_selector(body.get("nodeSelector"), obj, join_path(prefix, "nodeSelector"), problems)
    svc_sel = parse_label_selector(body.get("serviceSelector"), obj, join_path(prefix, "serviceSelector"), problems)
    interfaces: list[str] = []
    compiled: list[re.Pattern[str]] = []
    raw_ifaces = body.get("interfaces") or []
    if_path = join_path(prefix, "interfaces")
    if expect_type(raw_ifaces, list, obj, if_path, problems, "list of interface names or regexes"):
        for i, pattern in enumerate(raw_ifaces):
            path = join_path(if_path, i)
            if not expect_type(pattern, str, obj, path, problems, "string (interface name or regex)"):
                continue
            try:
                compiled.append(re.compile(pattern))
                interfaces.append(pattern)
            except re.error as exc:
                problems.add(
                    obj,
                    path,
                    f"{pattern!r} is not a valid regex: {exc}",
                    "escape special characters or fix the expression, e.g. ^eth[0-9]+$",
                    kind="invalid_regex",
                )
    external = _bool(body, "externalIPs", False, obj, prefix, problems)
    lb = _bool(body, "loadBalancerIPs", True, obj, prefix, problems)
    if len(problems) > before:
        return None
    if not external and not lb:
        warnings.append(f'policy "{name}": externalIPs and loadBalancerIPs are both false, so it announces nothing')
    return Policy(str(name), node_sel, svc_sel, tuple(interfaces), external, lb, tuple(compiled))


def find_overlaps(pools: Iterable[Pool]) -> list[Overlap]:
    """Every pair of blocks (within or across pools) that share addresses."""
    entries = sorted(
        ((block, pool.name, i) for pool in pools for i, block in enumerate(pool.blocks)),
        key=lambda e: (e[0].range.version, e[0].range.first, e[0].range.last),
    )
    found: list[Overlap] = []
    for n, (block, pool, idx) in enumerate(entries):
        for other, other_pool, other_idx in entries[n + 1 :]:
            if other.range.version != block.range.version or other.range.first > block.range.last:
                break
            shared = block.range.intersection(other.range)
            if shared is not None:
                found.append(Overlap(pool, idx, block, other_pool, other_idx, other, shared))
    return found


def _check_duplicates(kind: str, raws: Sequence[Any], problems: Problems) -> None:
    seen: dict[str, int] = {}
    for index, raw in enumerate(raws):
        name = _raw_name(raw)
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.add(
                f'{kind} "{name}"',
                "name",
                f"duplicate name: {kind}s[{seen[name]}] and {kind}s[{index}] are both called {name!r}",
                "rename one of them or merge them",
                kind="duplicate_name",
            )
        else:
            seen[name] = index


def build_model(pools: Any, policies: Any = None) -> Model:
    """Validate pools and policies as one set; raise :class:`ModelError` listing every problem."""
    problems = Problems()
    warnings: list[str] = []
    pool_list = _as_list(pools, "pools", problems)
    policy_list = _as_list(policies, "policies", problems)
    _check_duplicates("pool", pool_list, problems)
    _check_duplicates("policy", policy_list, problems)
    parsed_pools = [_parse_pool_parts(raw, i, problems, warnings) for i, raw in enumerate(pool_list)]
    parsed_policies = [parse_policy(raw, i, problems, warnings) for i, raw in enumerate(policy_list)]
    # Overlaps are checked on every block that parsed, even in pools with other problems: all at once.
    any_pools = [p for p, _ in parsed_pools if p is not None]
    for ov in find_overlaps(any_pools):
        if ov.pool_a == ov.pool_b:
            message = f"{ov.block_a} overlaps blocks[{ov.index_b}] ({ov.block_b}) of the same pool in {ov.shared}"
        else:
            message = f'{ov.block_a} overlaps pool "{ov.pool_b}" blocks[{ov.index_b}] ({ov.block_b}) in {ov.shared}'
        problems.add(
            f'pool "{ov.pool_a}"',
            f"blocks[{ov.index_a}]",
            message,
            "make the ranges disjoint (an address belongs to exactly one pool)",
            kind="overlap",
        )
    if problems:
        raise ModelError(problems)
    if pool_list and not policy_list:
        warnings.append("no announcement policy: Services get IPs but no node announces them; add a policy")
    valid_pools = tuple(p for p, ok in parsed_pools if ok and p is not None)
    return Model(valid_pools, tuple(p for p in parsed_policies if p is not None), tuple(warnings))


def _as_list(value: Any, what: str, problems: Problems) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping) and str(value.get("kind") or "").endswith("List") and "items" in value:
        value = value["items"]
    if not isinstance(value, (list, tuple)):
        expect_type(value, list, what, "", problems, f"list of {what}")
        return []
    return list(value)


def validate(pools: Any, policies: Any = None) -> tuple[Model | None, list[Problem]]:
    """Like :func:`build_model` but returns the problems instead of raising."""
    try:
        return build_model(pools, policies), []
    except ModelError as exc:
        return None, exc.problems


def ipv6_reach_warnings(model: Model, nodes: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """(warning, the nodes it is about) for pools with IPv6 blocks that no node would answer: IPv6 is off on every
    up interface that a policy (with loadBalancerIPs) announces on, on every node it selects. An IPv6 address from
    such a pool is allocated and never answered (the controller then reports the Service not announced).

    ``nodes``: name -> ``{"labels": {...}, "interfaces": [{"name", "up", "ipv6": [CIDR, ...]}, ...]}`` (what
    ``node_preflight_info`` reads, plus the node's labels). Says nothing when no policy selects any of these
    nodes: that is a different problem, and the labels known here may not be all the Node objects have.
    """
    v6_pools = [
        pool for pool in model.pools if not pool.disabled and any(block.range.version == 6 for block in pool.blocks)
    ]
    if not v6_pools:
        return []
    selected: dict[str, bool] = {}  # node -> has IPv6 on an up interface some policy announces on
    for name, node in sorted(nodes.items()):
        labels = node.get("labels") or {}
        for policy in model.policies:
            if not policy.load_balancer_ips or not policy.selects_node(labels):
                continue
            selected[name] = selected.get(name, False) or any(
                iface.get("up") and iface.get("ipv6") and policy.matches_interface(str(iface.get("name") or ""))
                for iface in node.get("interfaces") or []
            )
    if not selected or any(selected.values()):
        return []
    return [
        (
            f'pool "{pool.name}" has IPv6 blocks, but no node a policy selects ({", ".join(sorted(selected))}) has '
            "IPv6 on an up interface the policy announces on: its IPv6 addresses would be allocated and never answered "
            "(NDP needs IPv6 on the interface); turn IPv6 on there, or keep IPv6 blocks out of the pool",
            sorted(selected),
        )
        for pool in v6_pools
    ]
