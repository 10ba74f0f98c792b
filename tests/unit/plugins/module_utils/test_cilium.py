"""Cilium rendering helpers: API versions, annotation names, lease timings, and the rate-limit sizing.

The sizing is checked two ways: against the README's table (the numbers users read), and against a
simulation of client-go's leader election as Cilium runs it (one elector per Service on every node, each
agent's requests through its own token bucket, like client-go's rate limiter). The simulation shows that
the sized limit never throttles - not at start-up, when the first agent up takes every Lease, nor at a
failover - while Cilium's default limit does at 20 Services, as the seed article reports.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import pytest

from ansible_collections.baremetal.l2lb.plugins.module_utils import cilium
from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import build_model

# S, N -> (qps, burst) with Cilium's default timings (retry period 2 s) and headroom 1.5: the README table.
TABLE = {
    (5, 1): (18, 36),
    (5, 3): (18, 36),
    (5, 9): (18, 36),
    (20, 1): (40, 80),
    (20, 3): (40, 80),
    (20, 9): (40, 80),
    (100, 1): (160, 320),
    (100, 3): (160, 320),
    (100, 9): (160, 320),
}
# S, N -> requests/s all agents send together (mean), the API server's side of the same table.
CLUSTER_RPS = {(5, 1): 5.0, (5, 3): 8.12, (5, 9): 17.5, (20, 3): 32.5, (20, 9): 70.0, (100, 9): 350.0}


@pytest.mark.parametrize(("version", "expected"), [("1.14.5", "v2alpha1"), ("v1.17.9", "v2alpha1"), ("1.18.0", "v2")])
def test_pool_api_version_follows_the_cilium_release(version: str, expected: str) -> None:
    assert cilium.pool_version(version) == expected


def test_annotation_names_changed_in_1_15() -> None:
    assert cilium.annotation_names("1.14.5") == {
        "ips": "io.cilium/lb-ipam-ips",
        "sharing_key": "io.cilium/lb-ipam-sharing-key",
    }
    assert cilium.annotation_names("1.15.0")["ips"] == "lbipam.cilium.io/ips"


def test_bad_version_says_how_to_fix_it() -> None:
    with pytest.raises(cilium.CiliumConfigError, match="set cilium_version"):
        cilium.parse_version("latest")


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2.0), ("200ms", 0.2), ("1m30s", 90.0), (3, 3.0), ("1.5s", 1.5)])
def test_durations_parse_like_go(text: object, seconds: float) -> None:
    assert cilium.parse_duration(text, "x") == pytest.approx(seconds)


def test_lease_timings_are_validated_as_client_go_does() -> None:
    assert cilium.LeaseTimings.parse().failover_seconds == (10.0, 20.0)
    assert cilium.LeaseTimings.parse("3s", "1s", "200ms").helm() == {
        "leaseDuration": "3s",
        "leaseRenewDeadline": "1s",
        "leaseRetryPeriod": "200ms",
    }
    with pytest.raises(cilium.CiliumConfigError, match="must be longer than"):
        cilium.LeaseTimings.parse("5s", "5s", "2s")
    with pytest.raises(cilium.CiliumConfigError, match=r"1\.2 x cilium_lease_retry_period"):
        cilium.LeaseTimings.parse("15s", "2.2s", "2s")


@pytest.mark.parametrize(("services", "nodes"), sorted(TABLE))
def test_rate_limit_table(services: int, nodes: int) -> None:
    limit = cilium.size_rate_limit(services, nodes)
    assert (limit.qps, limit.burst) == TABLE[(services, nodes)]
    if (services, nodes) in CLUSTER_RPS:
        assert limit.cluster_rps == pytest.approx(CLUSTER_RPS[(services, nodes)], abs=0.01)


def test_rate_limit_never_below_cilium_defaults_and_burst_covers_a_failover() -> None:
    for services in range(0, 300, 7):
        for retry in (0.2, 1.0, 2.0, 8.0):
            limit = cilium.size_rate_limit(services, 3, retry)
            assert limit.qps >= cilium.BASELINE_QPS and limit.burst >= cilium.BASELINE_BURST
            assert limit.burst >= 2 * limit.qps
            assert limit.burst >= 2 * services  # a GET and an UPDATE for every orphaned Lease at once
            assert limit.qps - cilium.BASELINE_QPS >= limit.agent_peak_rps  # renewals fit the L2 share
    assert cilium.size_rate_limit(0, 1).qps == cilium.BASELINE_QPS
    # Faster failover costs requests: a tenth of the retry period, ten times the L2 share.
    assert cilium.size_rate_limit(20, 3, 0.2).qps == 10 + 300


def test_the_limit_does_not_depend_on_the_node_count_but_the_api_load_does() -> None:
    small, large = cilium.size_rate_limit(20, 1), cilium.size_rate_limit(20, 9)
    assert small.qps == large.qps
    assert large.cluster_rps > 3 * small.cluster_rps


def test_count_announced_services_follows_policies_and_classes() -> None:
    model = build_model(
        [{"name": "lan", "blocks": [{"cidr": "198.18.5.0/28"}]}],
        [
            {"name": "public", "serviceSelector": {"matchLabels": {"public": "true"}}},
            {"name": "ext", "externalIPs": True, "loadBalancerIPs": False},
        ],
    )

    def svc(labels: dict[str, str], **spec: object) -> dict[str, object]:
        return {"metadata": {"labels": labels}, "spec": {"type": "LoadBalancer", **spec}}

    services = [
        svc({"public": "true"}),
        svc({"public": "true"}, loadBalancerClass="io.cilium/l2-announcer"),
        svc({"public": "true"}, loadBalancerClass="other.example/lb"),  # another implementation's
        svc({}),  # no policy announces its LB IP
        svc({}, externalIPs=["198.18.9.9"]),  # the externalIPs policy does
        {"metadata": {"labels": {"public": "true"}}, "spec": {"type": "ClusterIP"}},
    ]
    assert cilium.count_announced_services(services, model) == 3


# --- client-go leader election, simulated -------------------------------------------------------------


@dataclass
class _Bucket:
    """golang.org/x/time/rate as client-go uses it: Wait() until a token is there."""

    qps: float
    burst: int
    tokens: float = 0.0
    last: float = 0.0
    waited: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: float) -> float:
        """Reserve one token (the count may go negative, as rate.Limiter's reservations do); the wait."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.qps)
        self.last = max(self.last, now)
        self.tokens -= 1
        wait = max(0.0, -self.tokens / self.qps)
        self.waited += wait
        return wait


@dataclass
class _Lease:
    holder: str = ""
    renewed: float = -1e9


@dataclass
class _Result:
    waited: dict[str, float] = field(default_factory=dict)
    lost: int = 0  # renewals that missed the renew deadline: the holder gave the Lease up
    held: dict[str, int] = field(default_factory=dict)


def _simulate(
    services: int, nodes: int, qps: float, burst: int, seconds: float = 90.0, kill: str | None = None
) -> _Result:
    """Every node runs one elector per Service; node n0 starts first (it took every Lease at boot)."""
    duration, deadline, retry = 15.0, 5.0, 2.0
    rng = random.Random(7)
    names = [f"n{i}" for i in range(nodes)]
    buckets = {n: _Bucket(qps, burst) for n in names}
    leases = [_Lease() for _ in range(services)]
    result = _Result()
    dead: set[str] = set()
    events = [(i * 3.0 + rng.random() * 0.01, n, s) for i, n in enumerate(names) for s in range(services)]
    heapq.heapify(events)

    def requests(node: str, now: float, count: int) -> float:
        end = now
        for _ in range(count):
            end += buckets[node].take(end)
        return end

    while events:
        now, node, s = heapq.heappop(events)
        if now > seconds:
            break
        if kill and node == kill and now > seconds / 2:
            dead.add(node)
        if node in dead:
            continue
        lease = leases[s]
        if lease.holder == node:  # renew: GET + UPDATE, then again one retry period later
            end = requests(node, now, 2)
            if end - now > deadline:
                result.lost += 1
                lease.holder = ""
            else:
                lease.renewed = end
            heapq.heappush(events, (end + retry, node, s))
            continue
        end = requests(node, now, 1)  # acquire: GET; UPDATE if free or expired
        if not lease.holder or end - lease.renewed > duration:
            end = requests(node, end, 1)
            lease.holder, lease.renewed = node, end
            heapq.heappush(events, (end + retry, node, s))
        else:
            heapq.heappush(events, (end + retry * (1 + rng.random() * cilium.JITTER_FACTOR), node, s))
    result.waited = {n: round(b.waited, 3) for n, b in buckets.items()}
    for lease in leases:
        result.held[lease.holder] = result.held.get(lease.holder, 0) + 1
    return result


@pytest.mark.parametrize(("services", "nodes"), [(5, 3), (20, 3), (20, 9), (100, 3)])
def test_sized_limit_never_throttles_at_start_or_failover(services: int, nodes: int) -> None:
    limit = cilium.size_rate_limit(services, nodes)
    result = _simulate(services, nodes, limit.qps, limit.burst, kill="n0")
    assert result.waited == {f"n{i}": 0.0 for i in range(nodes)}
    assert result.lost == 0
    assert "n0" not in result.held and "" not in result.held, "every Lease moved to a live node"


def test_cilium_default_limit_throttles_and_then_leases_flap() -> None:
    """The seed article's 'client rate limiter Wait returned an error' and 'failed to renew lease'."""
    # 20 Services: every renewal of the agent holding them waits about 2 s for the limiter (renewals at half pace).
    throttled = _simulate(20, 3, cilium.BASELINE_QPS, cilium.BASELINE_BURST, seconds=120.0)
    assert throttled.waited["n0"] > 100.0 and throttled.lost == 0
    # 40 Services: waits pass the 5 s renew deadline, so the holder gives Leases up and they move around.
    flapping = _simulate(40, 3, cilium.BASELINE_QPS, cilium.BASELINE_BURST, seconds=120.0)
    assert flapping.lost > 0
    sized = cilium.size_rate_limit(40, 3)
    assert _simulate(40, 3, sized.qps, sized.burst, seconds=120.0).waited["n0"] == 0.0


def test_the_peak_is_two_requests_per_lease_per_retry_period() -> None:
    """The formula's per-agent peak is tight: a limit just under 2S/R throttles the agent holding every Lease."""
    peak = cilium.size_rate_limit(20, 3).agent_peak_rps
    assert peak == 20.0
    assert _simulate(20, 3, peak - 1, 200, seconds=300.0).waited["n0"] > 0
    assert _simulate(20, 3, peak + 1, 200, seconds=300.0).waited["n0"] == 0.0
