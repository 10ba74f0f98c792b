"""The strictARP edit of kube-proxy's config.conf: one line changes, or one is added; nothing else."""

from __future__ import annotations

from ansible_collections.baremetal.l2lb.plugins.modules.kube_proxy_strict_arp import with_strict_arp

KUBEADM = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
kind: KubeProxyConfiguration
mode: ipvs
"""


def test_strict_arp_changes_one_line_and_is_idempotent() -> None:
    after = with_strict_arp(KUBEADM)
    changed = [(a, b) for a, b in zip(KUBEADM.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [("  strictARP: false", "  strictARP: true")]
    assert with_strict_arp(after) == after


def test_strict_arp_is_added_where_missing() -> None:
    assert with_strict_arp("mode: ipvs\nipvs:\n  scheduler: rr\nkind: X\n") == (
        "mode: ipvs\nipvs:\n  strictARP: true\n  scheduler: rr\nkind: X\n"
    )
    assert with_strict_arp("mode: ipvs\n") == "mode: ipvs\nipvs:\n  strictARP: true\n"


def test_restart_patch_is_what_kubectl_rollout_restart_writes() -> None:
    import datetime

    from ansible_collections.baremetal.l2lb.plugins.modules.kube_proxy_strict_arp import restart_patch

    now = datetime.datetime(2026, 12, 7, 17, 30, 5, 123456, tzinfo=datetime.timezone.utc)  # noqa: UP017
    assert restart_patch(now) == {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-07T17:30:05Z"}}}
        }
    }
