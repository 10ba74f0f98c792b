"""The pool and policy examples from our users' articles (shared/seeds/) are accepted as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.model import build_model

SEEDS = Path(__file__).parent / "seeds"


def _load(name: str) -> tuple[list[dict], list[dict]]:
    docs = [d for d in yaml.safe_load_all((SEEDS / name).read_text()) if d]
    pools = [d for d in docs if d["kind"].endswith("LoadBalancerIPPool")]
    policies = [d for d in docs if d["kind"].endswith("L2AnnouncementPolicy")]
    return pools, policies


def test_seed_000_deprecated_cidrs_pool_and_worker_policy() -> None:
    model = build_model(*_load("000_cilium_lb_ipam.yaml"))
    pool = model.pool("cilium-lb-ipam")
    assert pool is not None and str(pool.blocks[0]) == "10.86.5.80/28"
    assert any("cidrs is deprecated" in w and "rename it to blocks" in w for w in model.warnings)
    policy = model.policy("cilium-lb-all-services")
    assert policy is not None
    assert policy.selects_node({"homelab/role": "worker"}) and not policy.selects_node({"homelab/role": "ceph"})
    assert policy.selects_service({"homelab/public-service": "true"}) and not policy.selects_service({})


def test_seed_001_blocks_interfaces_and_summary_start_stop() -> None:
    model = build_model(*_load("001_migrating_from_metallb.yaml"))
    assert [p.name for p in model.pools] == ["default-pool", "summary-pool"]
    summary = model.pool("summary-pool")
    assert summary is not None and [str(b) for b in summary.blocks] == ["198.18.20.0/24", "198.18.21.10-198.18.21.20"]
    policy = model.policy("default-l2-announcement-policy")
    assert policy is not None and policy.external_ips and policy.load_balancer_ips
    assert policy.matches_interface("enp0s25") and not policy.matches_interface("wlp3s0")
    assert model.warnings == ()


def test_seed_002_service_selector_pool_with_deprecated_cidrs() -> None:
    pools, policies = _load("002_nginx_ingress_pool.yaml")
    model = build_model(pools, policies)
    pool = model.pool("nginx-ingress")
    assert pool is not None and not pool.disabled
    assert pool.selects_service({"app.kubernetes.io/name": "ingress-nginx"})
    assert not pool.selects_service({"app.kubernetes.io/name": "grafana"})
    # The article (Cilium before 1.16) says .1 and .2 are usable; Cilium 1.16 and later hand out the whole /30 when
    # allowFirstLastIPs is not set ("Yes or undefined"), and a Cilium-shaped pool means here what it means there.
    usable = pool.usable_ranges()[0]
    assert (str(usable.start), str(usable.stop)) == ("172.198.1.0", "172.198.1.3")


def test_seed_003_empty_node_selector_and_literal_plus_regex_interfaces() -> None:
    model = build_model(*_load("003_k3s_replace_metallb.yaml"))
    policy = model.policy("default-l2-announcement-policy")
    assert policy is not None
    assert policy.node_selector is not None and policy.node_selector.is_empty
    assert policy.selects_node({}) and policy.selects_node({"any": "label"})
    assert policy.matches_interface("ens192") and policy.matches_interface("eth1")
    assert not policy.matches_interface("wlan0")


def test_seed_004_does_not_exist_excludes_control_plane() -> None:
    model = build_model(*_load("004_complete_guide.yaml"))
    policy = model.policy("policy1")
    assert policy is not None
    assert policy.selects_node({"kubernetes.io/hostname": "node-0"})
    assert not policy.selects_node({"node-role.kubernetes.io/control-plane": ""})
    pool = model.pool("blue-pool")
    assert pool is not None and pool.usable_ranges()[0].size == 256, "Cilium's count: first and last included"


@pytest.mark.parametrize("name", sorted(p.name for p in SEEDS.glob("*.yaml")))
def test_every_seed_file_validates_without_problems(name: str) -> None:
    pools, policies = _load(name)
    model = build_model(pools, policies)
    assert len(model.pools) == len(pools) and len(model.policies) == len(policies)
