# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory model rendered for Cilium: its CRs, the Helm values L2 announcements need, the rate limit.

Pure functions, no I/O. The same validated :class:`Pool`/:class:`Policy` objects that render our own CRs
render ``CiliumLoadBalancerIPPool`` and ``CiliumL2AnnouncementPolicy`` here, so one inventory drives
either backend. Facts about Cilium this relies on (checked against Cilium's docs and API types):

* ``CiliumLoadBalancerIPPool`` is ``cilium.io/v2`` from Cilium 1.18 (``v2alpha1`` before, still served);
  ``spec.cidrs`` was removed in 1.16 (we always write ``blocks``); ``allowFirstLastIPs`` is the string
  ``"Yes"``/``"No"`` and its default flipped to ``Yes`` in 1.16, so we always write it explicitly.
* ``CiliumL2AnnouncementPolicy`` is ``cilium.io/v2alpha1``; ``externalIPs`` and ``loadBalancerIPs``
  default to false in Cilium (true for ``loadBalancerIPs`` in our model), so both are always written.
* Service annotations: ``lbipam.cilium.io/ips`` and ``lbipam.cilium.io/sharing-key`` from 1.15,
  ``io.cilium/lb-ipam-ips`` and ``io.cilium/lb-ipam-sharing-key`` before.
* L2 announcements: one client-go leader election per announced Service, Lease
  ``cilium-l2announce-<namespace>-<service>`` in Cilium's namespace; Helm values
  ``l2announcements.leaseDuration`` / ``leaseRenewDeadline`` / ``leaseRetryPeriod`` (15s / 5s / 2s).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import Model, Policy, Pool
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.render import MANAGED_BY, MANAGED_BY_LABEL
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.selectors import service_selector_labels

GROUP = "cilium.io"
POOL_KIND = "CiliumLoadBalancerIPPool"
POLICY_KIND = "CiliumL2AnnouncementPolicy"
POOL_PLURAL = "ciliumloadbalancerippools"
POLICY_PLURAL = "ciliuml2announcementpolicies"
POLICY_VERSION = "v2alpha1"
LB_CLASS = "io.cilium/l2-announcer"
DEFAULT_VERSION = "1.16.5"
CHART_REPO = "https://helm.cilium.io/"

# client-go's leaderelection.JitterFactor: a non-holder waits retryPeriod x (1 + U[0, 1.2)) between tries.
JITTER_FACTOR = 1.2
# Cilium's own agent budget, for everything but L2 announcements (Cilium >= 1.15 on Kubernetes >= 1.27;
# 5/10 before). We add the announcement load on top of it and never go below it.
BASELINE_QPS = 10
BASELINE_BURST = 20
# Requests per renewal by the holder: GET + UPDATE (client-go < 0.30, and its slow path after a conflict).
HOLDER_REQUESTS = 2
DEFAULT_HEADROOM = 1.5

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class CiliumConfigError(ValueError):
    """A Cilium option the user gave is unusable; the message names the option and the fix."""


def parse_version(text: Any) -> tuple[int, int, int]:
    """``"1.16.5"``, ``"v1.18"``, ``"1.17.0-rc.1"`` -> (major, minor, patch)."""
    match = _VERSION_RE.match(str(text).strip())
    if not match:
        raise CiliumConfigError(f"cilium version {text!r} is not a version such as 1.16.5 (fix: set cilium_version)")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def pool_version(version: Any) -> str:
    """The API version of CiliumLoadBalancerIPPool to write: v2 from Cilium 1.18, v2alpha1 before."""
    return "v2" if parse_version(version) >= (1, 18, 0) else "v2alpha1"


def annotation_names(version: Any) -> dict[str, str]:
    """Cilium's Service annotations for requested IPs and the sharing key, for this Cilium version."""
    if parse_version(version) >= (1, 15, 0):
        return {"ips": "lbipam.cilium.io/ips", "sharing_key": "lbipam.cilium.io/sharing-key"}
    return {"ips": "io.cilium/lb-ipam-ips", "sharing_key": "io.cilium/lb-ipam-sharing-key"}


def _labels() -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY}


def render_pool(pool: Pool, version: Any = DEFAULT_VERSION) -> dict[str, Any]:
    """The ``CiliumLoadBalancerIPPool`` for a pool (same blocks, selector and flags)."""
    spec: dict[str, Any] = {"blocks": [b.to_spec() for b in pool.blocks]}
    if pool.service_selector is not None:
        spec["serviceSelector"] = pool.service_selector.to_dict()
    spec["disabled"] = pool.disabled
    # Explicit, because Cilium's default changed in 1.16 and ours is "No" (like Cilium before 1.16).
    spec["allowFirstLastIPs"] = "Yes" if pool.allow_first_last_ips else "No"
    return {
        "apiVersion": f"{GROUP}/{pool_version(version)}",
        "kind": POOL_KIND,
        "metadata": {"name": pool.name, "labels": _labels()},
        "spec": spec,
    }


def render_policy(policy: Policy) -> dict[str, Any]:
    """The ``CiliumL2AnnouncementPolicy`` for a policy; both IP-type flags written (Cilium defaults both off)."""
    return {
        "apiVersion": f"{GROUP}/{POLICY_VERSION}",
        "kind": POLICY_KIND,
        "metadata": {"name": policy.name, "labels": _labels()},
        "spec": policy.to_spec(),
    }


def render_crs(model: Model, version: Any = DEFAULT_VERSION) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pools, policies) as Cilium CRs."""
    return [render_pool(p, version) for p in model.pools], [render_policy(p) for p in model.policies]


def parse_duration(text: Any, option: str) -> float:
    """A Go duration (``"2s"``, ``"200ms"``, ``"1m30s"``) in seconds; numbers are seconds."""
    if isinstance(text, bool):
        raise CiliumConfigError(f"{option}: expected a duration such as 2s or 200ms, got {text!r}")
    if isinstance(text, int | float):
        return float(text)
    value = str(text).strip()
    parts = _DURATION_RE.findall(value)
    if not value or not parts or "".join(n + u for n, u in parts) != value:
        raise CiliumConfigError(f"{option}: {text!r} is not a duration (fix: write it like 2s, 200ms or 1m30s)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """Seconds as a Go duration string Cilium accepts (``2s``, ``200ms``)."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


@dataclass(frozen=True)
class LeaseTimings:
    """Cilium's per-Service leader election timings, validated as client-go requires them."""

    duration: float
    renew_deadline: float
    retry_period: float

    @classmethod
    def parse(cls, duration: Any = "15s", renew_deadline: Any = "5s", retry_period: Any = "2s") -> LeaseTimings:
        timings = cls(
            parse_duration(duration, "cilium_lease_duration"),
            parse_duration(renew_deadline, "cilium_lease_renew_deadline"),
            parse_duration(retry_period, "cilium_lease_retry_period"),
        )
        timings.check()
        return timings

    def check(self) -> None:
        """client-go refuses leaseDuration <= renewDeadline and renewDeadline <= 1.2 x retryPeriod."""
        if self.retry_period <= 0:
            raise CiliumConfigError("cilium_lease_retry_period must be above 0 (fix: use e.g. 2s)")
        if self.duration <= 1:
            raise CiliumConfigError("cilium_lease_duration must be more than 1s (fix: use e.g. 15s)")
        if self.duration <= self.renew_deadline:
            raise CiliumConfigError(
                f"cilium_lease_duration {format_duration(self.duration)} must be longer than "
                f"cilium_lease_renew_deadline {format_duration(self.renew_deadline)} (fix: raise the duration)"
            )
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise CiliumConfigError(
                f"cilium_lease_renew_deadline {format_duration(self.renew_deadline)} must be more than "
                f"{JITTER_FACTOR} x cilium_lease_retry_period {format_duration(self.retry_period)} "
                f"(fix: a renew deadline of at least {format_duration(self.retry_period * 1.25)})"
            )

    @property
    def failover_seconds(self) -> tuple[float, float]:
        """Shortest and longest time from a holder's failure to another node announcing (Cilium's docs)."""
        return self.duration - self.renew_deadline, self.duration + self.renew_deadline

    def helm(self) -> dict[str, str]:
        return {
            "leaseDuration": format_duration(self.duration),
            "leaseRenewDeadline": format_duration(self.renew_deadline),
            "leaseRetryPeriod": format_duration(self.retry_period),
        }


@dataclass(frozen=True)
class RateLimit:
    """The sized ``k8sClientRateLimit`` and the numbers behind it (see the cilium role's README)."""

    services: int
    nodes: int
    retry_period: float
    headroom: float
    qps: int
    burst: int
    agent_peak_rps: float  # one agent holding every Lease: its renewals alone
    agent_mean_rps: float  # Leases spread evenly over the nodes
    cluster_rps: float  # what the API server sees from all agents together (mean)

    def to_dict(self) -> dict[str, Any]:
        return {
            "qps": self.qps,
            "burst": self.burst,
            "services": self.services,
            "nodes": self.nodes,
            "retry_period_seconds": self.retry_period,
            "headroom": self.headroom,
            "agent_peak_requests_per_second": round(self.agent_peak_rps, 2),
            "agent_mean_requests_per_second": round(self.agent_mean_rps, 2),
            "cluster_requests_per_second": round(self.cluster_rps, 2),
            "formula": (
                f"qps = {BASELINE_QPS} + ceil({self.headroom} x {HOLDER_REQUESTS} x S / R) = {BASELINE_QPS} + "
                f"ceil({self.headroom} x {HOLDER_REQUESTS} x {self.services} / {format_duration(self.retry_period)}) "
                f"= {self.qps}; burst = max(2 x qps, {BASELINE_BURST} + {HOLDER_REQUESTS} x S) = {self.burst}"
            ),
        }


def size_rate_limit(
    services: int, nodes: int, retry_period: float = 2.0, headroom: float = DEFAULT_HEADROOM
) -> RateLimit:
    """Size one agent's client rate limit for S announced Services on N candidate nodes.

    Per Service every candidate node runs a client-go leader election on one Lease:

    * the holder renews once per retry period R, a GET + UPDATE (2 requests; client-go >= 0.30 tries a
      single UPDATE first and falls back to GET + UPDATE on conflict, so 2 is the bound);
    * every other node GETs the Lease once per R x (1 + U[0, 1.2)): at most 1/R, on average 1/(1.6 R).

    Leases are first come, first served, so one agent can hold all S of them (always, on one node):
    its peak is 2S/R, whatever N is. N sets the load on the API server, S x (2/R + (N-1)/(1.6 R)), not
    the per-agent limit. qps = Cilium's baseline 10 + ceil(headroom x 2S/R); burst = max(2 x qps, 20 + 2S):
    Cilium's own burst plus a GET and an UPDATE of every Lease at once, which is what an agent sends when
    it starts (every elector tries at once) or takes over the Leases of a failed node.
    """
    if services < 0 or nodes < 0:
        raise CiliumConfigError("the number of announced services and of nodes cannot be negative")
    if retry_period <= 0:
        raise CiliumConfigError("cilium_lease_retry_period must be above 0")
    if headroom < 1:
        raise CiliumConfigError(f"cilium_rate_limit_headroom {headroom} must be at least 1 (fix: use 1.5)")
    n = max(nodes, 1)
    holder = HOLDER_REQUESTS / retry_period
    waiter = 1.0 / ((1 + JITTER_FACTOR / 2) * retry_period)
    peak = services * holder
    cluster = services * (holder + (n - 1) * waiter)
    qps = BASELINE_QPS + math.ceil(round(headroom * peak, 9))
    burst = max(2 * qps, BASELINE_BURST + HOLDER_REQUESTS * services)
    return RateLimit(services, nodes, retry_period, headroom, qps, burst, peak, cluster / n, cluster)


def rate_limit_table(
    services: Sequence[int] = (5, 20, 100),
    nodes: Sequence[int] = (1, 3, 9),
    retry_period: float = 2.0,
    headroom: float = DEFAULT_HEADROOM,
) -> list[RateLimit]:
    """The sizing for every (S, N) pair, for the README table."""
    return [size_rate_limit(s, n, retry_period, headroom) for s in services for n in nodes]


def _selected(selector: Any, labels: Mapping[str, str] | None) -> bool:
    return selector is None or selector.matches(labels)


def count_announced_services(services: Iterable[Mapping[str, Any]], model: Model) -> int:
    """How many Services Cilium would run an election for: LoadBalancer IPs or externalIPs a policy selects."""
    count = 0
    for service in services:
        meta, spec = service.get("metadata") or {}, service.get("spec") or {}
        labels = service_selector_labels(
            str(meta.get("namespace") or ""), str(meta.get("name") or ""), meta.get("labels")
        )
        selecting = [p for p in model.policies if _selected(p.service_selector, labels)]
        is_lb = spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (None, LB_CLASS)
        if (is_lb and any(p.load_balancer_ips for p in selecting)) or (
            spec.get("externalIPs") and any(p.external_ips for p in selecting)
        ):
            count += 1
    return count


@dataclass(frozen=True)
class ValuesOptions:
    """What the Helm values need beyond the model (the role's variables)."""

    timings: LeaseTimings
    rate_limit: RateLimit
    kube_proxy_replacement: Any = True
    external_ips: bool | None = None  # None: on exactly when a policy announces externalIPs
    rollout_pods: bool = True
    k8s_service_host: str = ""
    k8s_service_port: int | None = None
    extra: Mapping[str, Any] | None = None


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def helm_values(model: Model, options: ValuesOptions) -> dict[str, Any]:
    """The Helm values that turn on L2 announcements for this model (merged with ``extra`` last)."""
    external = options.external_ips
    if external is None:
        external = any(p.external_ips for p in model.policies)
    values: dict[str, Any] = {
        "kubeProxyReplacement": options.kube_proxy_replacement,
        "l2announcements": {"enabled": True, **options.timings.helm()},
        "externalIPs": {"enabled": bool(external)},
        "k8sClientRateLimit": {"qps": options.rate_limit.qps, "burst": options.rate_limit.burst},
        # The chart puts a checksum of its ConfigMap on the pods: a changed option restarts them.
        "rollOutCiliumPods": options.rollout_pods,
        "operator": {"rollOutPods": options.rollout_pods},
    }
    if options.k8s_service_host:
        values["k8sServiceHost"] = options.k8s_service_host
    if options.k8s_service_port:
        values["k8sServicePort"] = int(options.k8s_service_port)
    return _merge(values, options.extra or {})


def kustomization(
    version: Any, release: str, namespace: str, chart_repo: str = CHART_REPO, values_file: str = "values.yaml"
) -> dict[str, Any]:
    """A kustomization that renders the chart with our values and adds the pools and policies (GitOps)."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["ippools.yaml", "l2policies.yaml"],
        "helmCharts": [
            {
                "name": "cilium",
                "repo": chart_repo.rstrip("/"),
                "version": ".".join(str(p) for p in parse_version(version)),
                "releaseName": release,
                "namespace": namespace,
                "valuesFile": values_file,
            }
        ],
    }


def helm_command(
    version: Any, release: str, namespace: str, values_file: str, chart: str = "cilium", repo: str = CHART_REPO
) -> str:
    """The exact upgrade to run where helm is installed; --reuse-values keeps the rest of the install."""
    chart_version = ".".join(str(p) for p in parse_version(version))
    source = f"{chart} --repo {repo}" if "/" not in chart else chart
    return (
        f"helm upgrade {release} {source} --version {chart_version} --namespace {namespace} "
        f"--reuse-values -f {values_file}"
    )
