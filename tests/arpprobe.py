"""ARP and NDP prober for tests, built on scapy: who answers an IP, from which MAC, how fast; run it in a netns.

    ip netns exec NS python -m arpprobe --iface l2lb0 --target 198.18.100.100 --count 200
    ip netns exec NS python -m arpprobe --iface l2lb0 --target 198.18.100.100 --interval-ms 20
    ip netns exec NS python -m arpprobe --iface l2lb0 --target 2001:2:0:100::100 --src-ip 2001:2:0:100::2 --count 5

For an IPv6 target the question is a Neighbor Solicitation to the target's solicited-node group (with our MAC
as Source Link-Layer Address), an answer is a Neighbor Advertisement for the target to the asker's address
(its MAC: the Target Link-Layer Address option), and an unsolicited NA to all-nodes is reported like a
gratuitous ARP (``garp`` line, ``op`` ``unsolicited-na``); everything else below holds for both families.

With ``--count`` it sends one who-has at a time: waits for the first answer (``--timeout-ms``), lingers
``--settle-ms`` for further answers (two answers = split brain), then sends the next. Without ``--count``
it probes every ``--interval-ms`` until SIGTERM/SIGINT, end of stdin (``--stop-on-eof``) or ``--duration``,
rotating over the ``--src-ip`` given (ARP has no request id: the sender IP tells which probe a reply
answers, so a late reply is not credited to the next probe) and reporting each probe when its window,
``min(--timeout-ms, interval x number of source IPs)``, closes.

Output: JSON lines on stdout. ``{"type": "ready", ...}`` first, then one ``probe`` line per who-has
(``seq``, ``sent`` on CLOCK_MONOTONIC, ``src_ip``, ``replies``: ``[{"mac", "rtt_ms"}]``), ``garp`` lines for
gratuitous ARPs about the target, and ``{"type": "done"}`` last. scapy builds and dissects the frames
(an oracle independent of the agent's own ARP code); a raw AF_PACKET socket bound to ETH_P_ARP carries
them (no libpcap here). ``rtt_ms`` runs from just before the who-has is sent to the kernel's receive
timestamp of the answer (SO_TIMESTAMPNS), so the prober's own scheduling delays do not count;
``user_rtt_ms`` is the same seen from user space.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
SO_TIMESTAMPNS = 35  # Linux; Python's socket module does not export it
_TIMESPEC = struct.Struct("@qq")


@dataclass
class _Probe:
    seq: int
    src_ip: str
    sent_mono: float
    sent_perf: float
    sent_ns: int
    replies: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, out: _Out) -> None:
        out.write(type="probe", seq=self.seq, sent=self.sent_mono, src_ip=self.src_ip, replies=self.replies)


class _Prober:
    """The raw socket, the prebuilt who-has frames (one per source IP) and reply bookkeeping."""

    def __init__(self, iface: str, target: str, src_ips: Sequence[str], out: _Out) -> None:
        from scapy.layers.l2 import ARP, Ether

        self._arp_layer = ARP
        self._ether_layer = Ether
        self.ipv6 = ":" in target
        self.target = str(ipaddress.ip_address(target))
        self.out = out
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.bind((iface, ETH_P_IPV6 if self.ipv6 else ETH_P_ARP))
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.mac = self.sock.getsockname()[4].hex(":")
        if self.ipv6:
            if not src_ips:
                raise SystemExit("an IPv6 target needs --src-ip")
            self.src_ips = [str(ipaddress.ip_address(ip)) for ip in src_ips]
            self.requests = {ip: self._solicit(ip) for ip in self.src_ips}
        else:
            self.src_ips = list(src_ips) or [_first_ipv4(iface)]
            self.requests = {
                ip: bytes(
                    Ether(dst="ff:ff:ff:ff:ff:ff", src=self.mac)
                    / ARP(op=1, hwsrc=self.mac, psrc=ip, hwdst="00:00:00:00:00:00", pdst=target)
                )
                for ip in self.src_ips
            }
        # Replies name the asker's IP as target: with several source IPs, a late reply still finds its probe.
        self.outstanding: dict[str, _Probe] = {}
        self._dissected: dict[bytes, tuple[int, str, str, str] | tuple[()]] = {}

    def send(self, seq: int, src_ip: str) -> _Probe:
        probe = _Probe(seq, src_ip, time.monotonic(), time.perf_counter(), time.time_ns())
        self.outstanding[src_ip] = probe
        self.sock.send(self.requests[src_ip])
        return probe

    def receive(self, timeout: float) -> None:
        """Wait up to ``timeout`` for frames; file replies under their probe, print gratuitous ARPs."""
        if timeout <= 0:
            return
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return
        while True:
            try:
                data, ancdata, _, address = self.sock.recvmsg(256, 64)
            except BlockingIOError:
                return
            now_ns, now = time.time_ns(), time.perf_counter()
            if address[2] == socket.PACKET_OUTGOING:
                continue
            kernel_ns = now_ns
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    kernel_ns = sec * 1_000_000_000 + nsec
            self._classify(data, now, kernel_ns)

    def _classify(self, data: bytes, now: float, kernel_ns: int) -> None:
        facts = self._dissected.get(data)
        if facts is None:
            facts = self._dissect(data)
            if len(self._dissected) < 4096:  # answers repeat byte for byte: dissect each distinct frame once
                self._dissected[data] = facts
        if not facts:
            return
        op, hwsrc, pdst, eth_src = facts
        if pdst == self.target:
            kind = "unsolicited-na" if self.ipv6 else "request" if op == 1 else "reply"
            self.out.write(type="garp", t=time.monotonic(), mac=hwsrc, op=kind, eth_src=eth_src)
            return
        probe = self.outstanding.get(pdst)
        if op == 2 and probe is not None:
            probe.replies.append(
                {
                    "mac": hwsrc,
                    "eth_src": eth_src,
                    "rtt_ms": round((kernel_ns - probe.sent_ns) / 1e6, 4),
                    "user_rtt_ms": round((now - probe.sent_perf) * 1e3, 4),
                }
            )

    def _solicit(self, src_ip: str) -> bytes:
        from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
        from scapy.utils6 import in6_getnsma, in6_getnsmac

        group = in6_getnsma(socket.inet_pton(socket.AF_INET6, self.target))
        packet = (
            self._ether_layer(dst=in6_getnsmac(group), src=self.mac)
            / IPv6(src=src_ip, dst=socket.inet_ntop(socket.AF_INET6, group), hlim=255)
            / ICMPv6ND_NS(tgt=self.target)
            / ICMPv6NDOptSrcLLAddr(lladdr=self.mac)
        )
        return bytes(packet)

    def _dissect(self, data: bytes) -> tuple[int, str, str, str] | tuple[()]:
        """scapy's reading of an answer about our target: (op, sender MAC, target IP, Ethernet source).

        ARP: the op, sender MAC and target IP of the frame. NDP: an NA for our target is op 2 to the asker's
        address (the "target IP" then), and op 1 with our target as "target IP" when it goes to all-nodes
        (an announcement); the MAC is the NA's Target Link-Layer Address.
        """
        packet = self._ether_layer(data)
        if self.ipv6:
            from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6

            if not packet.haslayer(ICMPv6ND_NA) or packet[IPv6].hlim != 255:
                return ()
            na = packet[ICMPv6ND_NA]
            if str(ipaddress.ip_address(na.tgt)) != self.target:
                return ()
            mac = str(packet[ICMPv6NDOptDstLLAddr].lladdr) if packet.haslayer(ICMPv6NDOptDstLLAddr) else str(packet.src)
            dst = str(ipaddress.ip_address(packet[IPv6].dst))
            if ipaddress.ip_address(dst).is_multicast:
                return (1, mac, self.target, str(packet.src)) if not na.S else ()
            return (2, mac, dst, str(packet.src))
        if not packet.haslayer(self._arp_layer):
            return ()
        arp = packet[self._arp_layer]
        if arp.psrc != self.target:
            return ()
        return int(arp.op), str(arp.hwsrc), str(arp.pdst), str(packet.src)


class _Out:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def write(self, **fields: Any) -> None:
        with self._lock:
            try:
                sys.stdout.write(json.dumps(fields) + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                pass


def _first_ipv4(iface: str) -> str:
    from scapy.arch import get_if_addr

    address: str = get_if_addr(iface)
    if address in ("", "0.0.0.0"):
        raise SystemExit(f"{iface}: no IPv4 address; pass --src-ip")
    return address


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arpprobe", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--iface", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument(
        "--src-ip",
        action="append",
        default=[],
        help="sender IP of the who-has; repeat to rotate over several (continuous mode), so that late "
        "replies are still matched to their probe",
    )
    parser.add_argument("--count", type=int, help="send this many probes one after another, then exit")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="continuous mode: time between probes")
    parser.add_argument("--timeout-ms", type=float, default=200.0, help="how long a probe waits for answers")
    parser.add_argument("--settle-ms", type=float, default=5.0, help="count mode: linger for more answers")
    parser.add_argument("--duration", type=float, help="continuous mode: stop after this many seconds")
    parser.add_argument("--stop-on-eof", action="store_true", help="continuous mode: stop when stdin closes")
    args = parser.parse_args(argv)

    out = _Out()
    prober = _Prober(args.iface, args.target, args.src_ip, out)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.stop_on_eof:

        def stop_on_eof() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=stop_on_eof, daemon=True).start()
    out.write(type="ready", iface=args.iface, mac=prober.mac, ip=prober.src_ips[0], target=args.target, pid=os.getpid())
    if args.count is not None:
        _count_mode(prober, stop, args.count, args.timeout_ms / 1e3, args.settle_ms / 1e3)
    else:
        end = time.monotonic() + args.duration if args.duration else None
        _continuous_mode(prober, stop, args.interval_ms / 1e3, args.timeout_ms / 1e3, end)
    out.write(type="done")
    return 0


def _count_mode(prober: _Prober, stop: threading.Event, count: int, timeout: float, settle: float) -> None:
    src_ip = prober.src_ips[0]
    for seq in range(count):
        if stop.is_set():
            return
        probe = prober.send(seq, src_ip)
        # Wait for the first answer (or the timeout), then linger briefly for duplicates (split brain).
        deadline = probe.sent_perf + timeout
        while not probe.replies and time.perf_counter() < deadline:
            prober.receive(deadline - time.perf_counter())
        settled = time.perf_counter() + settle
        while probe.replies and time.perf_counter() < settled:
            prober.receive(settled - time.perf_counter())
        probe.emit(prober.out)


def _continuous_mode(
    prober: _Prober, stop: threading.Event, interval: float, timeout: float, end: float | None
) -> None:
    # A probe is reported once its window closes; windows never outlive the reuse of the probe's source IP.
    window = min(timeout, interval * len(prober.src_ips))
    pending: collections.deque[_Probe] = collections.deque()
    seq = 0
    next_send = time.perf_counter()
    while True:
        now = time.perf_counter()
        while pending and now - pending[0].sent_perf >= window:
            pending.popleft().emit(prober.out)
        if stop.is_set() or (end is not None and time.monotonic() >= end):
            break
        if now >= next_send:
            src_ip = prober.src_ips[seq % len(prober.src_ips)]
            pending.append(prober.send(seq, src_ip))
            seq += 1
            # Keep the average rate after a short stall (catch up), but do not burst after a long one.
            next_send = max(next_send + interval, now - 10 * interval)
            continue
        prober.receive(next_send - now)
    # Let the last probes collect their answers before reporting them.
    while pending:
        remaining = pending[-1].sent_perf + window - time.perf_counter()
        if remaining > 0:
            prober.receive(remaining)
        else:
            while pending:
                pending.popleft().emit(prober.out)


if __name__ == "__main__":
    sys.exit(main())
