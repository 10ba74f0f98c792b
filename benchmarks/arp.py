"""Table 3 — the ARP and NDP responder: reply latency under load, and the highest rate answered without loss.

A network-namespace lab (tests/netns.py) with one node and a client on 198.18.111.0/24 and 2001:2:0:111::/64.
The node runs the speaker on its own (``python -m l2lb_agent.speaker.runner``: the same Responder the agent uses)
for one Service IP of each family; the client runs :mod:`benchmarks.arp_loadgen`, a raw-socket generator that
matches every reply to its request (who-has for IPv4, Neighbor Solicitations for IPv6). At each rate the same
generator also asks for the node's own address, which the node's kernel answers: that is the floor (the wire,
two veths, a bridge and the kernel's ARP or NDP code), measured in the same run. The highest rate without loss
(IPv4) is searched with a ladder of rates, then bisected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import PYTHON, JsonChild, ProcessSet, Table, fmt, log, python_env

SUBNET = "198.18.111.0/24"
SUBNET6 = "2001:2:0:111::/64"
SENDER_IPS = tuple(f"198.18.111.{200 + i}" for i in range(8))
SENDER_IPS6 = tuple(f"2001:2:0:111::{200 + i}" for i in range(8))
GOAL_RATE = 1000
GOAL_P99_US = 2000.0


@dataclass(frozen=True)
class Size:
    rates: tuple[int, ...]
    seconds: float
    ladder: tuple[int, ...]
    ladder_seconds: float
    bisect: int


SIZES = {
    "smoke": Size(rates=(100, 1000), seconds=1.5, ladder=(2000,), ladder_seconds=1.0, bisect=0),
    "full": Size(
        rates=(100, 1000, 5000),
        seconds=5.0,
        ladder=(2000, 5000, 10000, 15000, 20000, 30000, 40000, 60000),
        ladder_seconds=3.0,
        bisect=3,
    ),
}


class Loadgen:
    def __init__(self, lab: Any) -> None:
        self.lab = lab

    def __call__(self, target: str, rate: float, seconds: float) -> dict[str, Any]:
        argv = ["-m", "benchmarks.arp_loadgen", "--iface", self.lab.client.ifname, "--target", target]
        argv += ["--rate", str(rate), "--duration", str(seconds)]
        for ip in SENDER_IPS6 if ":" in target else SENDER_IPS:
            argv += ["--src-ip", ip]
        out = self.lab.run(self.lab.client, [PYTHON, *argv], timeout=60.0 + seconds, env=python_env()).strip()
        result: dict[str, Any] = json.loads(out.splitlines()[-1])
        return result


def speaker_counters(speaker: JsonChild) -> dict[str, int]:
    totals: dict[str, int] = speaker.request({"cmd": "stats"}, "stats")["counters"]["totals"]
    return totals


def run(size_name: str, workdir: Path) -> Table:
    from netns import Lab, netns_capable, ns_argv

    size = SIZES[size_name]
    table = Table(
        key="arp",
        title="3. ARP and NDP responder: question -> answer latency seen by the client (raw-socket load generator)",
        columns=[
            "family",
            "rate req/s",
            "speaker p50 us",
            "speaker p99 us",
            "speaker max us",
            "speaker lost",
            "kernel (floor) p50 us",
            "kernel p99 us",
            "kernel max us",
            "kernel lost",
        ],
        goal="speaker p99 <= 2 ms at 1k requests/s, ARP and NDP",
    )
    reason = netns_capable()
    if reason is not None:
        table.verdict = f"not measured: {reason}"
        return table
    procs = ProcessSet()
    lab = Lab(nodes=1, subnet=SUBNET, subnet6=SUBNET6)
    rows: dict[tuple[str, int], tuple[dict[str, Any], dict[str, Any]]] = {}
    ladder: list[dict[str, Any]] = []
    counters: dict[str, int] = {}
    try:
        lab.start()
        node = lab.node(1)
        vip, vip6 = lab.vip(0), lab.vip6(0)
        argv = ns_argv(
            node.netns,
            [PYTHON, "-m", "l2lb_agent.speaker.runner", "--control", "--iface", node.ifname, "--ip", vip, "--ip", vip6],
        )
        speaker = JsonChild(procs, [*argv, "--log-level", "WARNING"], env=python_env())
        speaker.wait_event("ready", 30.0)
        loadgen = Loadgen(lab)
        loadgen(vip, 100, 0.5)  # warm-up: the first answers also wait for the GARP burst to end
        loadgen(vip6, 100, 0.5)
        for family, target, own in (("IPv4 (ARP)", vip, node.ip), ("IPv6 (NDP)", vip6, node.ip6)):
            for rate in size.rates:
                log(f"arp: {family} {rate}/s for {size.seconds:g} s: speaker, then kernel")
                ours = loadgen(target, rate, size.seconds)
                kernel = loadgen(str(own), rate, size.seconds)
                rows[(family, rate)] = (ours, kernel)
                table.add(
                    family,
                    fmt(rate, 0),
                    fmt(ours["p50_us"], 0),
                    fmt(ours["p99_us"], 0),
                    fmt(ours["max_us"], 0),
                    f"{ours['lost']}/{ours['sent']}",
                    fmt(kernel["p50_us"], 0),
                    fmt(kernel["p99_us"], 0),
                    fmt(kernel["max_us"], 0),
                    f"{kernel['lost']}/{kernel['sent']}",
                )
        best, failed = 0.0, None
        for rate in size.ladder:
            result = loadgen(vip, rate, size.ladder_seconds)
            ladder.append(result)
            log(
                f"arp: ladder {rate}/s: sent at {result['achieved_rate']:.0f}/s, lost {result['lost']}/{result['sent']}"
            )
            if result["lost"] == 0:
                best = max(best, float(result["achieved_rate"]))
            else:
                failed = rate
                break
        if failed is not None:
            low, high = best, float(failed)
            for _ in range(size.bisect):
                middle = round((low + high) / 2, -2)
                if middle <= low or middle >= high:
                    break
                result = loadgen(vip, middle, size.ladder_seconds)
                ladder.append(result)
                log(f"arp: bisect {middle:.0f}/s: lost {result['lost']}/{result['sent']}")
                if result["lost"] == 0:
                    low = best = max(best, float(result["achieved_rate"]))
                else:
                    high = middle
        counters = speaker_counters(speaker)
        speaker.stop()
    finally:
        procs.close()
        lab.close()
    conclude(table, rows, ladder, best, failed, counters, size)
    return table


def conclude(
    table: Table,
    rows: dict[tuple[str, int], tuple[dict[str, Any], dict[str, Any]]],
    ladder: list[dict[str, Any]],
    best: float,
    failed: int | None,
    counters: dict[str, int],
    size: Size,
) -> None:
    verdicts = []
    for (family, rate), (ours, _) in rows.items():
        if rate == GOAL_RATE:
            p99 = ours["p99_us"]
            met = "met" if p99 <= GOAL_P99_US else "missed"
            verdicts.append(f"{family.split()[0]} p99 at 1k/s {p99 / 1e3:.2f} ms: {met} (goal 2 ms)")
    limit = ladder[-1]["achieved_rate"] if ladder else 0
    if failed is None and ladder:
        verdicts.append(
            f"no loss up to {best:,.0f}/s, the highest rate tried (generator reached {limit:,.0f}/s): "
            "the limit is above that"
        )
    elif ladder:
        verdicts.append(f"highest rate answered without loss: {best:,.0f}/s (loss seen at {failed:,}/s)")
    table.verdict = "; ".join(verdicts)
    table.notes.append(
        f"{size.seconds:g} s per rate and target; latency = client kernel receive timestamp of the reply - client wall "
        "clock just before sending the who-has or NS (so it includes the client's send path, two veths and the bridge, "
        "both ways). Lost = no reply within 50 ms. Kernel = the node's own address answered by the node's kernel, the "
        "floor for any responder on this path."
    )
    steps = ", ".join(
        f"{r['rate']:,.0f}/s (sent {r['achieved_rate']:,.0f}/s) lost {r['lost']}/{r['sent']}, p99 {r['p99_us']:,.0f} us"
        for r in ladder
    )
    if steps:
        table.notes.append(f"Rate search, {size.ladder_seconds:g} s per step: {steps}.")
    if counters:
        table.notes.append(
            "Speaker counters over the whole run: "
            + ", ".join(
                f"{k} {v}" for k, v in counters.items() if k in ("requests_seen", "replies_sent", "send_errors")
            )
            + " (requests_seen includes the questions for the node's own addresses, which the speaker ignores)."
        )
