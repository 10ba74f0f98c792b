"""Scheduler rules: eligibility (liveness, policies, interfaces, Local endpoints), stickiness, spreading."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from l2lb_agent.controller.ipam import IPAMResult, ServiceAllocation, allocate
from l2lb_agent.controller.scheduler import ScheduleResult, schedule
from l2lb_agent.controller.types import InterfaceInfo, NodeInfo, PoolInfo, ServiceInfo, ServicePort
from l2lb_agent.model.model import Policy, parse_policy, parse_pool
from l2lb_agent.model.problems import Problems


def policy(name: str = "all", **spec: Any) -> Policy:
    problems = Problems()
    parsed = parse_policy({"name": name, **spec}, 0, problems, [])
    assert parsed is not None, [str(p) for p in problems]
    return parsed


def iface(name: str = "eth0", up: bool = True, *subnets: str, ndp: bool = True) -> InterfaceInfo:
    return InterfaceInfo(name, "02:00:00:00:00:01", up, tuple(subnets) or ("198.18.0.0/15",), ndp)


def node(name: str, *interfaces: InterfaceInfo, **kw: Any) -> NodeInfo:
    return NodeInfo(name, interfaces=interfaces or (iface(),), **kw)


def svc(name: str, *ips: str, **kw: Any) -> ServiceInfo:
    kw.setdefault("ports", (ServicePort(80),))
    return ServiceInfo("default", name, ingress_ips=ips, **kw)


def ipam_of(services: Sequence[ServiceInfo]) -> IPAMResult:
    """An IPAM result that gives every Service exactly its current ingress IPs."""
    allocations = {s.key: ServiceAllocation(s.key, s.ingress_ips) for s in services if s.ingress_ips}
    ip_services: dict[str, tuple[str, ...]] = {}
    for s in services:
        for ip in s.ingress_ips:
            ip_services[ip] = (*ip_services.get(ip, ()), s.key)
    return IPAMResult(allocations, {}, ip_services)


def run(
    services: Sequence[ServiceInfo],
    nodes: Sequence[NodeInfo],
    policies: Sequence[Policy] | None = None,
    local: Mapping[str, set[str]] | None = None,
    current: Mapping[str, str] | None = None,
) -> ScheduleResult:
    return schedule(ipam_of(services), services, policies or [policy()], nodes, local or {}, current or {})


def placement(result: ScheduleResult) -> dict[str, str]:
    return {ip: a.node for ip, a in result.assignments.items()}


NODES = [node("a"), node("b"), node("c")]


def test_single_ip_single_node() -> None:
    result = run([svc("web", "198.18.10.1")], [node("a")])
    ann = result.assignments["198.18.10.1"]
    assert (ann.ip, ann.node, ann.interfaces) == ("198.18.10.1", "a", ("eth0",))
    assert result.unschedulable == {}
    assert result.ip_services == {"198.18.10.1": ("default/web",)}
    assert result.service_ips == {"default/web": ("198.18.10.1",)}


def test_new_ips_spread_least_loaded_ties_by_name() -> None:
    services = [svc(f"s{i}", f"198.18.10.{i + 1}") for i in range(7)]
    result = run(services, list(reversed(NODES)))
    assert placement(result) == {
        "198.18.10.1": "a",
        "198.18.10.2": "b",
        "198.18.10.3": "c",
        "198.18.10.4": "a",
        "198.18.10.5": "b",
        "198.18.10.6": "c",
        "198.18.10.7": "a",
    }


def test_sticky_keeps_current_node_even_if_more_loaded() -> None:
    services = [svc(f"s{i}", f"198.18.10.{i + 1}") for i in range(3)]
    current = {"198.18.10.1": "c", "198.18.10.2": "c"}
    result = run(services, NODES, current=current)
    assert placement(result) == {"198.18.10.1": "c", "198.18.10.2": "c", "198.18.10.3": "a"}


def test_least_loaded_counts_sticky_assignments() -> None:
    services = [svc(f"s{i}", f"198.18.10.{i + 1}") for i in range(4)]
    current = {"198.18.10.1": "a", "198.18.10.2": "a", "198.18.10.3": "b"}
    assert placement(run(services, NODES, current=current))["198.18.10.4"] == "c"


def test_dead_node_loses_ips_and_no_fail_back() -> None:
    services = [svc("s", "198.18.10.1")]
    first = run(services, NODES, current={"198.18.10.1": "b"})
    assert placement(first) == {"198.18.10.1": "b"}
    down = [node("a"), node("b", alive=False), node("c")]
    moved = run(services, down, current=placement(first))
    assert placement(moved) == {"198.18.10.1": "a"}
    back = run(services, NODES, current=placement(moved))
    assert placement(back) == {"198.18.10.1": "a"}


def test_draining_and_unschedulable_nodes_are_not_eligible() -> None:
    services = [svc(f"s{i}", f"198.18.10.{i + 1}") for i in range(4)]
    nodes = [node("a", draining=True), node("b", schedulable=False), node("c")]
    current = {"198.18.10.1": "a", "198.18.10.2": "b"}
    assert set(placement(run(services, nodes, current=current)).values()) == {"c"}


def test_unknown_current_node_is_replaced() -> None:
    result = run([svc("s", "198.18.10.1")], NODES, current={"198.18.10.1": "gone"})
    assert placement(result) == {"198.18.10.1": "a"}


def test_all_nodes_dead_is_unschedulable() -> None:
    nodes = [node("a", alive=False), node("b", draining=True)]
    result = run([svc("s", "198.18.10.1")], nodes)
    assert result.assignments == {}
    refusal = result.unschedulable["198.18.10.1"]
    assert refusal.reason == "NoEligibleNode"
    assert "no policy selects any alive node" in refusal.message
    assert "a (heartbeat expired)" in refusal.message and "b (draining)" in refusal.message


def test_policy_node_selector() -> None:
    nodes = [node("a"), node("b", labels={"l2": "yes"}), node("c")]
    pol = policy("edge", nodeSelector={"matchLabels": {"l2": "yes"}})
    services = [svc(f"s{i}", f"198.18.10.{i + 1}") for i in range(3)]
    assert set(placement(run(services, nodes, [pol])).values()) == {"b"}


def test_policy_node_selector_selects_no_node() -> None:
    pol = policy("edge", nodeSelector={"matchLabels": {"l2": "yes"}})
    refusal = run([svc("s", "198.18.10.1")], NODES, [pol]).unschedulable["198.18.10.1"]
    assert refusal.reason == "NoEligibleNode"
    assert refusal.message == 'no policy selects any alive node (policy "edge")'


def test_policy_service_selector() -> None:
    pol = policy("prod", serviceSelector={"matchLabels": {"env": "prod"}})
    services = [svc("p", "198.18.10.1", labels={"env": "prod"}), svc("d", "198.18.10.2", labels={"env": "dev"})]
    result = run(services, NODES, [pol])
    assert placement(result) == {"198.18.10.1": "a"}
    refusal = result.unschedulable["198.18.10.2"]
    assert refusal.reason == "NoEligibleNode"
    assert "no policy selects the Service default/d" in refusal.message


def test_policies_union_of_nodes() -> None:
    p1 = policy("one", nodeSelector={"matchLabels": {"zone": "1"}})
    p2 = policy("two", nodeSelector={"matchLabels": {"zone": "2"}})
    nodes = [node("a", labels={"zone": "1"}), node("b", labels={"zone": "2"}), node("c", labels={"zone": "3"})]
    services = [svc(f"s{i}", f"198.18.10.{i + 1}") for i in range(4)]
    assert set(placement(run(services, nodes, [p1, p2])).values()) == {"a", "b"}


def test_load_balancer_ips_false_policy_does_not_announce_ingress() -> None:
    pol = policy("ext", loadBalancerIPs=False, externalIPs=True)
    refusal = run([svc("s", "198.18.10.1")], NODES, [pol]).unschedulable["198.18.10.1"]
    assert "loadBalancerIPs: true" in refusal.message


def test_external_ips_announced_only_when_a_policy_asks() -> None:
    ext = svc("ext", type="ClusterIP", external_ips=("198.18.20.5",))
    lb_only = run([ext], NODES, [policy("lb")])
    assert lb_only.assignments == {} and lb_only.unschedulable == {}
    with_ext = run([ext], NODES, [policy("both", externalIPs=True)])
    assert placement(with_ext) == {"198.18.20.5": "a"}
    assert with_ext.service_ips == {"default/ext": ("198.18.20.5",)}


def test_external_ips_normalised_and_invalid_skipped() -> None:
    ext = svc("ext", type="ClusterIP", external_ips=("2001:DB8::1", "not-an-ip"))
    result = run([ext], NODES, [policy("both", externalIPs=True)])
    assert list(result.assignments) == ["2001:db8::1"]


def test_a_policys_service_selector_sees_ciliums_pseudo_labels() -> None:
    only_infra = policy("infra", serviceSelector={"matchLabels": {"io.kubernetes.service.namespace": "infra"}})
    infra = ServiceInfo("infra", "dns", ingress_ips=("198.18.10.1",), ports=(ServicePort(53),))
    other = ServiceInfo("default", "web", ingress_ips=("198.18.10.2",), ports=(ServicePort(80),))
    result = run([infra, other], [node("a")], [only_infra])
    assert placement(result) == {"198.18.10.1": "a"}
    assert result.unschedulable["198.18.10.2"].reason == "NoEligibleNode"


def test_a_services_ips_stay_together_unless_the_node_is_not_eligible_for_one() -> None:
    dual = [svc("d1", "198.18.10.1", "2001:2::1"), svc("d2", "198.18.10.2", "2001:2::2")]
    nodes = [node("a", iface(ndp=True)), node("b", iface(ndp=True))]
    assert placement(run(dual, nodes, [policy()])) == {
        "198.18.10.1": "a",
        "2001:2::1": "a",
        "198.18.10.2": "b",
        "2001:2::2": "b",
    }
    # Sticky wins: an IP that has a node keeps it; the new one joins its partner.
    result = run(dual[:1], nodes, [policy()], current={"198.18.10.1": "b"})
    assert placement(result) == {"198.18.10.1": "b", "2001:2::1": "b"}
    # b answers no NDP: the IPv6 address goes where it can be answered.
    nodes = [node("a", iface(ndp=True)), node("b", iface(ndp=False))]
    result = run(dual[:1], nodes, [policy()], current={"198.18.10.1": "b"})
    assert placement(result) == {"198.18.10.1": "b", "2001:2::1": "a"}


def test_ipv6_goes_only_where_the_speaker_answers_ndp() -> None:
    services = [svc("v6", "2001:2::10")]
    result = run(services, [node("old", iface(ndp=False)), node("new", iface("eth1", True, "2001:2::/64"))], [policy()])
    assert placement(result) == {"2001:2::10": "new"}
    assert result.assignments["2001:2::10"].interfaces == ("eth1",)
    # IPv4 is placed on either: ARP is answered everywhere.
    result = run([svc("v4", "198.18.10.1")], [node("old", iface(ndp=False))], [policy()])
    assert placement(result) == {"198.18.10.1": "old"}


def test_ipv6_without_ndp_anywhere_is_refused_with_the_reason() -> None:
    result = run([svc("v6", "2001:2::10")], [node("a", iface(ndp=False)), node("b", iface(ndp=False))], [policy()])
    refusal = result.unschedulable["2001:2::10"]
    assert refusal.reason == "NoEligibleNode"
    assert refusal.message.startswith("no node answers IPv6 here: a,b have an up interface but answer no NDP on it")
    assert "older than 0.2.0" in refusal.message


def test_interfaces_regex_and_up_state() -> None:
    pol = policy("eth", interfaces=["^eth"])
    nodes = [
        node("a", iface("wlan0")),
        node("b", iface("eth0", False)),
        node("c", iface("eth1"), iface("veth9")),
    ]
    result = run([svc("s", "198.18.10.1")], nodes, [pol])
    assert result.assignments["198.18.10.1"].node == "c"
    assert result.assignments["198.18.10.1"].interfaces == ("eth1",)


def test_no_node_with_matching_up_interface() -> None:
    pol = policy("eth", interfaces=["^eth"])
    nodes = [node("a", iface("wlan0")), node("b", iface("eth0", False))]
    refusal = run([svc("s", "198.18.10.1")], nodes, [pol]).unschedulable["198.18.10.1"]
    assert refusal.reason == "NoEligibleNode"
    assert refusal.message.startswith("nodes a,b have no up interface matching ^eth")


def test_interfaces_on_subnet_preferred_else_all_matching() -> None:
    two = node("a", iface("eth0", True, "10.0.0.0/24"), iface("eth1", True, "198.18.10.0/24"), iface("lo", True))
    pol = policy("eth", interfaces=["^eth"])
    result = run([svc("s", "198.18.10.1"), svc("t", "203.0.113.9")], [two], [pol])
    assert result.assignments["198.18.10.1"].interfaces == ("eth1",)
    assert result.assignments["203.0.113.9"].interfaces == ("eth0", "eth1")


def test_sticky_assignment_recomputes_interfaces() -> None:
    pol = policy("eth", interfaces=["^eth"])
    before = [node("a", iface("eth0"), iface("eth1")), node("b")]
    first = run([svc("s", "198.18.10.1")], before, [pol], current={"198.18.10.1": "a"})
    assert first.assignments["198.18.10.1"].interfaces == ("eth0", "eth1")
    after = [node("a", iface("eth0", False), iface("eth1")), node("b")]
    second = run([svc("s", "198.18.10.1")], after, [pol], current=placement(first))
    assert second.assignments["198.18.10.1"].node == "a"
    assert second.assignments["198.18.10.1"].interfaces == ("eth1",)


def test_local_policy_needs_ready_endpoint() -> None:
    local = svc("l", "198.18.10.1", external_traffic_policy="Local")
    result = run([local], NODES, local={"default/l": {"c"}}, current={"198.18.10.1": "a"})
    assert placement(result) == {"198.18.10.1": "c"}
    none = run([local], NODES, local={})
    refusal = none.unschedulable["198.18.10.1"]
    assert refusal.reason == "NoEligibleNode"
    assert "no ready local endpoint" in refusal.message and "default/l" in refusal.message


def test_local_endpoint_on_ineligible_node_does_not_count() -> None:
    local = svc("l", "198.18.10.1", external_traffic_policy="Local")
    nodes = [node("a"), node("b", draining=True)]
    result = run([local], nodes, local={"default/l": {"b"}})
    assert "no ready local endpoint" in result.unschedulable["198.18.10.1"].message


def test_cluster_policy_ignores_endpoints() -> None:
    result = run([svc("c", "198.18.10.1")], NODES, local={"default/c": {"c"}})
    assert placement(result) == {"198.18.10.1": "a"}


def test_shared_ip_is_one_unit_with_all_local_constraints() -> None:
    a = svc("a", "198.18.10.1", external_traffic_policy="Local")
    b = svc("b", "198.18.10.1", external_traffic_policy="Local", ports=(ServicePort(443),))
    result = run([a, b], NODES, local={"default/a": {"a", "b"}, "default/b": {"b", "c"}})
    assert placement(result) == {"198.18.10.1": "b"}
    assert result.ip_services["198.18.10.1"] == ("default/a", "default/b")
    assert result.service_ips == {"default/a": ("198.18.10.1",), "default/b": ("198.18.10.1",)}
    disjoint = run([a, b], NODES, local={"default/a": {"a"}, "default/b": {"c"}})
    assert "no ready local endpoint" in disjoint.unschedulable["198.18.10.1"].message


def test_shared_ip_needs_one_policy_selecting_every_service() -> None:
    p1 = policy("web", serviceSelector={"matchLabels": {"app": "web"}})
    p2 = policy("db", serviceSelector={"matchLabels": {"app": "db"}})
    a = svc("a", "198.18.10.1", labels={"app": "web"})
    b = svc("b", "198.18.10.1", labels={"app": "db"}, ports=(ServicePort(443),))
    result = run([a, b], NODES, [p1, p2])
    refusal = result.unschedulable["198.18.10.1"]
    assert "no single policy selects all Services sharing this IP" in refusal.message
    both = policy("both", serviceSelector={"matchExpressions": [{"key": "app", "operator": "Exists"}]})
    assert placement(run([a, b], NODES, [p1, p2, both])) == {"198.18.10.1": "a"}


def test_shared_ip_policy_node_selection_is_per_common_policy() -> None:
    # Policy "web" selects a and b's Services only partly; the common one restricts nodes to c.
    p_web = policy("web", serviceSelector={"matchLabels": {"app": "web"}}, nodeSelector={"matchLabels": {"n": "a"}})
    p_all = policy("all", nodeSelector={"matchLabels": {"n": "c"}})
    nodes = [node("a", labels={"n": "a"}), node("b"), node("c", labels={"n": "c"})]
    web = svc("web", "198.18.10.1", labels={"app": "web"})
    db = svc("db", "198.18.10.1", labels={"app": "db"}, ports=(ServicePort(5432),))
    assert placement(run([web, db], nodes, [p_web, p_all])) == {"198.18.10.1": "c"}
    assert placement(run([web], nodes, [p_web, p_all])) == {"198.18.10.1": "a"}


def test_schedule_is_idempotent() -> None:
    services = [svc(f"s{i}", f"198.18.10.{i + 1}") for i in range(10)]
    nodes = [*NODES, node("d", alive=False)]
    first = run(services, nodes)
    assert run(services, nodes, current=placement(first)) == first


def test_with_real_ipam_result_dual_stack() -> None:
    problems = Problems()
    pool = parse_pool(
        {"name": "lan", "blocks": [{"cidr": "198.18.10.0/28"}, {"cidr": "2001:db8::/120"}]}, 0, problems, []
    )
    assert pool is not None
    services = [ServiceInfo("default", "web", ip_families=("IPv4", "IPv6"))]
    ipam = allocate([PoolInfo(pool)], services)
    result = schedule(ipam, services, [policy()], [node("a"), node("b")])
    # One node for both families of a Service (clients of either reach the same node), as MetalLB and Cilium do.
    assert placement(result) == {"198.18.10.1": "a", "2001:db8::1": "a"}
    assert result.service_ips == {"default/web": ("198.18.10.1", "2001:db8::1")}
