# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verify report: service -> IP -> announcing node -> MAC on the wire -> TCP, with a diagnosis.

Pure: it takes what service_info, lease_info, arp_probe and the TCP checks returned and decides, per
service IP, whether it works and if not, why — in the words an operator would use at 2 a.m.

On Cilium clusters (verify_cilium_namespace set) a Service announced by Cilium has no l2lb heartbeat: its
announcing node is the holder of Cilium's ``cilium-l2announce-<namespace>-<service>`` Lease, judged alive
the same way (the Lease changed while observed), and Cilium publishes no node MACs, so a single answer
from an unknown MAC is accepted there (and shown as such).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.contract import CILIUM_LEASE_PREFIX

# Refusal reasons (Service condition reasons written by the controller) and how the report names them.
_NO_IP_REASONS = {
    "PoolExhausted": "pool exhausted",
    "NoPoolMatches": "no pool matches",
    "RequestedIPUnavailable": "requested IP unavailable",
    "SharingRefused": "sharing refused",
    "InvalidRequest": "invalid IP request",
}


def mac_owners(heartbeats: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """MAC (lowercase) -> (node, interface), from the interfaces each heartbeat publishes."""
    owners: dict[str, tuple[str, str]] = {}
    for node, lease in heartbeats.items():
        for iface in lease.get("interfaces") or []:
            mac = str(iface.get("mac") or "").lower()
            if mac:
                owners[mac] = (node, str(iface.get("name") or ""))
    return owners


def _condition(service: Mapping[str, Any], suffix: str) -> Mapping[str, Any] | None:
    return next((c for c in service.get("conditions") or [] if str(c.get("type", "")).endswith(suffix)), None)


def _whose(mac: str, owners: Mapping[str, tuple[str, str]]) -> str:
    owner = owners.get(mac.lower())
    return f"{owner[0]}/{owner[1]}" if owner else "unknown"


def cilium_lease(service: Mapping[str, Any], leases: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Cilium's announcement Lease of this Service (lease_info keys them ``<namespace>-<service>``)."""
    return (leases.get("cilium") or {}).get(f"{service.get('namespace')}-{service.get('name')}")


def _runs_l2lb(leases: Mapping[str, Any]) -> bool:
    return bool(leases.get("heartbeats")) or bool(leases.get("controller"))


def _announcement(service: Mapping[str, Any], ip: str) -> Mapping[str, Any]:
    """This IP's node and interfaces: a Service's IPs may sit on different nodes, and one may be announced while
    another is not. Without per-IP facts (Cilium, whose leases are per Service) the Service's."""
    per_ip = service.get("announcements") or {}
    if not isinstance(per_ip, Mapping) or not per_ip:
        return {"node": service.get("announcing_node") or "", "interfaces": service.get("announcing_interfaces") or []}
    entry = per_ip.get(ip)
    return entry if isinstance(entry, Mapping) else {"node": "", "interfaces": []}


def _row(service: Mapping[str, Any], ip: str) -> dict[str, Any]:
    return {
        "service": f"{service.get('namespace')}/{service.get('name')}",
        "ip": ip,
        "node": _announcement(service, ip)["node"],
        "heartbeat": "",
        "mac": "",
        "mac_owner": "",
        "tcp": "",
        "backend": "",
        "ok": False,
        "diagnosis": "",
    }


def _diagnose_ip(
    row: dict[str, Any],
    service: Mapping[str, Any],
    leases: Mapping[str, Any],
    probe: Mapping[str, Any] | None,
    tcp: Sequence[Mapping[str, Any]],
    owners: Mapping[str, tuple[str, str]],
) -> None:
    node = row["node"]
    wire = "NDP" if ":" in row["ip"] else "ARP"  # how this IP's neighbours are asked
    heartbeat = (leases.get("heartbeats") or {}).get(node) if node else None
    lease = cilium_lease(service, leases)
    by_cilium = heartbeat is None and lease is not None and bool(node) and lease.get("holder") == node
    shown = lease if by_cilium else heartbeat
    if shown is not None:
        alive = shown.get("alive")
        age = shown.get("renew_age_seconds")
        row["heartbeat"] = ("cilium lease " if by_cilium else "") + (
            ("alive" if alive else "STALE" if alive is False else "?")
            + (f" ({age:.1f}s)" if isinstance(age, int | float) else "")
        )
    responders = list((probe or {}).get("responders") or [])
    if responders:
        row["mac"] = ",".join(r["mac"] for r in responders)
        row["mac_owner"] = ",".join(_whose(r["mac"], owners) for r in responders)
    # TCP results of this Service's own ports (Services sharing an IP have different ports).
    ports = [t for t in tcp if t.get("ip") == row["ip"] and t.get("service", row["service"]) == row["service"]]
    if ports:
        row["tcp"] = ",".join(f"{t['port']}:{'ok' if t.get('ok') else 'FAIL'}" for t in ports)
        row["backend"] = ",".join(dict.fromkeys(str(t["answer"]) for t in ports if t.get("ok") and t.get("answer")))

    ready = service.get("ready_endpoints")
    local = service.get("external_traffic_policy") == "Local"
    # None: EndpointSlices were not readable. A TCP check that got through wins: endpoints that are terminating
    # but still serving (a drain) are not ready, yet kube-proxy keeps sending traffic to them.
    if ready == 0 and not any(t.get("ok") for t in ports):
        row["diagnosis"] = (
            f"no ready endpoints: {row['service']} has no ready backend in its EndpointSlices (no Pod matches its "
            "selector, or none is Ready), so "
            + (
                "no node may announce it (externalTrafficPolicy: Local)"
                if local
                else f"kube-proxy has nowhere to send its traffic whatever answers {wire}"
            )
        )
        return

    if not node:
        announced = _condition(service, "Announced")
        if announced and announced.get("reason") == "NoEligibleNode":
            row["diagnosis"] = f"no eligible node: {announced.get('message', '')}"
        elif not _runs_l2lb(leases):
            row["diagnosis"] = (
                f"no announcing node: no l2lb controller runs and no Cilium lease {CILIUM_LEASE_PREFIX}"
                f"{service.get('namespace')}-{service.get('name')} exists (on Cilium: does a CiliumL2Announcement"
                "Policy select this Service and a node, with l2announcements.enabled=true? is "
                "verify_cilium_namespace set?)"
            )
        else:
            row["diagnosis"] = (
                "no announcing node assigned (is an l2lb controller running? see the l2lb-controller lease)"
            )
        return
    if by_cilium and lease is not None:
        if lease.get("alive") is False:
            row["diagnosis"] = (
                f"stale Cilium lease: {node} did not renew {CILIUM_LEASE_PREFIX}{service.get('namespace')}-"
                f"{service.get('name')} while observed; its cilium-agent is down, cut off from the API or "
                "throttled (client rate limiter: raise k8sClientRateLimit, see the cilium role)"
            )
            return
    elif heartbeat is None:
        row["diagnosis"] = f"stale heartbeat: node {node} has no heartbeat lease (agent not running there?)"
        return
    if heartbeat is not None and heartbeat.get("alive") is False:
        row["diagnosis"] = (
            f"stale heartbeat: node {node}'s lease did not change while observed; its agent is "
            "down or cut off from the API"
        )
        return
    if probe is None:
        row["diagnosis"] = f"not probed: no {wire} result for this IP"
        return
    if probe.get("error"):  # not probed at all (wrong subnet, no raw socket): arp_probe says why
        row["diagnosis"] = str(probe.get("diagnosis") or probe["error"])
        return
    if len(responders) > 1:
        row["diagnosis"] = (
            "split brain: "
            + " and ".join(f"{r['mac']} ({_whose(r['mac'], owners)})" for r in responders)
            + f" both answer {wire}"
        )
        return
    if not responders:
        ifaces = ",".join(_announcement(service, row["ip"])["interfaces"]) or "its interfaces"
        row["diagnosis"] = (
            f"no {wire} answer: node {node} should announce on {ifaces} but nothing answered; its agent is alive, "
            f"so look at its log (responder errors, link down) and at what filters {wire} between here and it"
        )
        return
    owner = owners.get(responders[0]["mac"].lower())
    if owner is None and by_cilium:
        row["mac_owner"] = "not published (Cilium)"
    elif owner is None:
        row["diagnosis"] = f"MAC {responders[0]['mac']} belongs to no l2lb node, but the assignment says {node}"
        return
    if owner is not None and owner[0] != node:
        row["diagnosis"] = f"MAC {responders[0]['mac']} belongs to node {owner[0]}, but the assignment says {node}"
        return
    failed = [t for t in ports if not t.get("ok")]
    endpoint_nodes = service.get("endpoint_nodes")
    if failed and local and isinstance(endpoint_nodes, Mapping) and node not in endpoint_nodes:
        row["diagnosis"] = (
            f"{wire} fine ({node} answers) but {node} has no ready endpoint of this externalTrafficPolicy: Local "
            f"Service (they run on {', '.join(sorted(n for n in endpoint_nodes if n)) or 'no node'}), so its "
            "kube-proxy drops the traffic; the controller moves such an IP to a node with one: is it running?"
        )
        return
    if failed:
        row["diagnosis"] = (
            f"{wire} fine ({node} answers) but TCP fails on port "
            + ", ".join(f"{t['port']} ({t.get('error') or 'no connection'})" for t in failed)
            + ": dataplane problem (kube-proxy rules, endpoints, firewall)"
        )
        return
    row["ok"] = True


def tcp_targets(services: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every (IP, TCP port) to check; UDP/SCTP ports cannot be checked with a connect and are skipped."""
    targets = []
    for service in services:
        for ip in service.get("ips") or []:
            for port in service.get("ports") or []:
                if str(port.get("protocol") or "TCP").upper() == "TCP":
                    targets.append(
                        {
                            "service": f"{service.get('namespace')}/{service.get('name')}",
                            "ip": ip,
                            "port": int(port["port"]),
                        }
                    )
    return targets


def _tcp_results(tcp: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Accept plain {ip, port, ok, error} entries or the registered results of a wait_for loop."""
    results = []
    for entry in tcp:
        if "item" in entry:  # a wait_for loop result: success reports state=started
            item = entry["item"]
            ok = entry.get("state") == "started"
            error = "" if ok else str(entry.get("msg") or "no connection")
            results.append(
                {"service": item.get("service"), "ip": item["ip"], "port": item["port"], "ok": ok, "error": error}
            )
        else:
            results.append(dict(entry))
    return [{k: v for k, v in r.items() if v is not None} for r in results]


def build_report(
    services: Sequence[Mapping[str, Any]],
    leases: Mapping[str, Any],
    probes: Mapping[str, Mapping[str, Any]],
    tcp: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Rows (one per service IP, or one per service without IP), problems, and the printable table."""
    owners = mac_owners(leases.get("heartbeats") or {})
    tcp = _tcp_results(tcp)
    rows: list[dict[str, Any]] = []
    for service in services:
        if not service.get("ips"):
            row = _row(service, "-")
            allocated = _condition(service, "IPAllocated")
            reason = str((allocated or {}).get("reason") or "")
            ipam = _condition(service, "IPAMRequestSatisfied")
            if reason in _NO_IP_REASONS:
                row["diagnosis"] = f"no IP: {_NO_IP_REASONS[reason]}: {allocated.get('message', '')}"  # type: ignore[union-attr]
            elif ipam is not None and ipam.get("status") == "False":
                row["diagnosis"] = f"no IP: Cilium LB-IPAM: {ipam.get('reason', '')}: {ipam.get('message', '')}"
            elif not _runs_l2lb(leases) and leases.get("cilium"):
                row["diagnosis"] = "no IP: no CiliumLoadBalancerIPPool allocated one (does a pool select it?)"
            else:
                row["diagnosis"] = "no IP at all and no l2lb condition: is an l2lb controller running?"
            rows.append(row)
            continue
        for ip in service["ips"]:
            row = _row(service, ip)
            _diagnose_ip(row, service, leases, probes.get(ip), tcp, owners)
            rows.append(row)
    problems = [f"{r['service']} {r['ip']}: {r['diagnosis']}" for r in rows if not r["ok"]]
    return {
        "rows": rows,
        "problems": problems,
        "healthy": not problems and bool(rows),
        "lines": render_table(rows, leases),
    }


_COLUMNS = (
    ("SERVICE", "service"),
    ("IP", "ip"),
    ("NODE", "node"),
    ("HEARTBEAT", "heartbeat"),
    ("MAC ON THE WIRE", "mac"),
    ("MAC OF", "mac_owner"),
    ("TCP", "tcp"),
    ("SERVED BY", "backend"),
    ("RESULT", "result"),
)


def render_table(rows: Sequence[Mapping[str, Any]], leases: Mapping[str, Any]) -> list[str]:
    """The report as lines of text (Ansible's debug prints a list one line each)."""
    cells = [{**r, "result": "OK" if r["ok"] else "FAIL"} for r in rows]
    widths = [max([len(title)] + [len(str(c[key] or "-")) for c in cells]) for title, key in _COLUMNS]
    lines = ["  ".join(title.ljust(w) for (title, _), w in zip(_COLUMNS, widths, strict=True)).rstrip()]
    for cell in cells:
        lines.append(
            "  ".join(str(cell[key] or "-").ljust(w) for (_, key), w in zip(_COLUMNS, widths, strict=True)).rstrip()
        )
        if not cell["ok"]:
            lines.append(f"    -> {cell['diagnosis']}")
    controller = leases.get("controller") or {}
    alive = sorted(n for n, lease in (leases.get("heartbeats") or {}).items() if lease.get("alive") is not False)
    cilium = leases.get("cilium") or {}
    if _runs_l2lb(leases) or not cilium:
        lines.append(
            f"controller: {controller.get('holder') or 'none'}; nodes with a live heartbeat: "
            f"{', '.join(alive) or 'none'}"
        )
    if cilium:
        holders: dict[str, int] = {}
        for lease in cilium.values():
            holders[lease.get("holder") or "nobody"] = holders.get(lease.get("holder") or "nobody", 0) + 1
        stale = sum(1 for lease in cilium.values() if lease.get("alive") is False)
        lines.append(
            f"Cilium L2 announcement leases: {len(cilium)}, held by "
            + ", ".join(f"{h} ({n})" for h, n in sorted(holders.items()))
            + (f"; {stale} not renewed while observed" if stale else "")
        )
    if not rows:
        lines.append("no LoadBalancer Services found")
    return lines
