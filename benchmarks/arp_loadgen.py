"""Raw-socket ARP/NDP load generator: who-has (or, for an IPv6 target, Neighbor Solicitations) for one IP at a
fixed rate, every reply matched to its request.

    ip netns exec NS python -m benchmarks.arp_loadgen --iface l2lb0 --target 198.18.111.100 --rate 1000 \
        --duration 5 --src-ip 198.18.111.200 [--src-ip ...]
    ip netns exec NS python -m benchmarks.arp_loadgen --iface l2lb0 --target 2001:2:0:111::100 --rate 1000 \
        --duration 5 --src-ip 2001:2:0:111::200 [--src-ip ...]

ARP has no request id, so each who-has carries its own sender hardware address, ``02:b1:`` + a 32-bit
sequence number. Whoever answers (our speaker or the kernel) sends the reply to that address and names it as
the target hardware address, so every reply identifies its request exactly however late it is. The bridge
floods frames for these unknown addresses to the client's port, where this AF_PACKET socket (bound to
ETH_P_ARP) sees them; the client's kernel drops them (not for its MAC). The Ethernet source stays the
client's real MAC, so the bridge never learns the made-up ones.

IPv6 works the same way with the Source Link-Layer Address option of each NS (``02:b1:`` + the sequence number):
the Neighbor Advertisement goes to that address (ours answers to the option, the kernel to the neighbour entry
the option just created), so its Ethernet destination identifies the request. The NS goes to the target's
solicited-node group; its ICMPv6 checksum is precomputed per sender and adjusted for the option's 6 bytes.

Latency = kernel receive timestamp of the reply (SO_TIMESTAMPNS) - wall clock just before the send. Prints one
JSON object: sent, answered, lost (no reply within --timeout-ms), achieved rate and latency percentiles (us).
"""

from __future__ import annotations

import argparse
import json
import math
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
TAG = b"\x02\xb1"
MAX_BURST = 32  # frames sent back to back when the sender fell behind (e.g. after a scheduling delay)


def mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def build_template(src_mac: bytes, target: bytes) -> bytearray:
    """Broadcast who-has ``target``; sender MAC bytes 22..27 and sender IP 28..31 are filled in per request."""
    frame = bytearray(60)
    frame[0:6] = b"\xff" * 6
    frame[6:12] = src_mac
    frame[12:14] = struct.pack("!H", ETH_P_ARP)
    frame[14:22] = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
    frame[38:42] = target
    return frame


def _sum16(data: bytes) -> int:
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def build_ns_templates(src_mac: bytes, target: bytes, senders: Sequence[bytes]) -> list[tuple[bytearray, int]]:
    """Per sender IP: an NS for ``target`` (86 bytes, SLLA option bytes 80..85 left zero) and its checksum's
    partial sum without the option's address; :func:`fill_ns` completes both per request."""
    group = bytes.fromhex("ff0200000000000000000001ff") + target[13:]
    icmp = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + target + bytes([1, 1]) + b"\x00" * 6
    templates = []
    for sender in senders:
        frame = bytearray(b"\x33\x33" + group[12:] + src_mac + struct.pack("!H", ETH_P_IPV6))
        frame += struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255) + sender + group + icmp
        pseudo = sender + group + struct.pack("!I3xB", len(icmp), 58)
        templates.append((frame, _sum16(pseudo + icmp)))
    return templates


def fill_ns(frame: bytearray, partial: int, lladdr: bytes) -> None:
    frame[80:86] = lladdr
    frame[56:58] = struct.pack("!H", ~_fold(partial + _sum16(lladdr)) & 0xFFFF)


def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    rank = max(0, min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1))
    return values[rank]


def run(
    iface: str, target: str, rate: float, duration: float, src_ips: Sequence[str], timeout: float
) -> dict[str, object]:
    ipv6 = ":" in target
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((iface, ETH_P_IPV6 if ipv6 else ETH_P_ARP))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    src_mac = sock.getsockname()[4]
    if ipv6:
        target_bytes = socket.inet_pton(socket.AF_INET6, target)
        templates = build_ns_templates(src_mac, target_bytes, [socket.inet_pton(socket.AF_INET6, i) for i in src_ips])
    else:
        target_bytes = socket.inet_aton(target)
        frame = build_template(src_mac, target_bytes)
        senders = [socket.inet_aton(ip) for ip in src_ips]
    sent_at: dict[int, int] = {}
    latencies: list[float] = []
    late = 0
    interval = 1.0 / rate
    count = max(1, int(rate * duration))
    seq = 0
    start = time.perf_counter()
    next_send = start

    def receive() -> None:
        nonlocal late
        while True:
            try:
                data, ancdata, _flags, address = sock.recvmsg(128, 64)
            except BlockingIOError:
                return
            if address[2] == socket.PACKET_OUTGOING or len(data) < 42:
                continue
            if ipv6:
                # A Neighbor Advertisement for the target, to one of our tagged hardware addresses.
                is_na = len(data) >= 78 and data[20] == 58 and data[54] == 136
                if not is_na or data[0:2] != TAG or data[62:78] != target_bytes:
                    continue
                number = int.from_bytes(data[2:6], "big")
            # ARP reply (op 2) from the target IP, addressed to one of our tagged hardware addresses.
            elif data[20:22] != b"\x00\x02" or data[28:32] != target_bytes or data[32:34] != TAG:
                continue
            else:
                number = int.from_bytes(data[34:38], "big")
            sent = sent_at.pop(number, None)
            if sent is None:
                continue  # a duplicate answer
            received = time.time_ns()
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    received = sec * 1_000_000_000 + nsec
            latency = (received - sent) / 1e3
            if latency > timeout * 1e6:
                late += 1
            else:
                latencies.append(latency)

    while seq < count:
        now = time.perf_counter()
        if now >= next_send:
            burst = 0
            while seq < count and now >= next_send and burst < MAX_BURST:
                if ipv6:
                    frame, partial = templates[seq % len(templates)]
                    fill_ns(frame, partial, TAG + seq.to_bytes(4, "big"))
                else:
                    frame[22:28] = TAG + seq.to_bytes(4, "big")
                    frame[28:32] = senders[seq % len(senders)]
                sent_at[seq] = time.time_ns()
                sock.send(frame)
                seq += 1
                burst += 1
                next_send += interval
            if now - next_send > 0.05:  # more than 50 ms behind: do not burst to catch up, just go on
                next_send = now
        receive()
        wait = next_send - time.perf_counter()
        if wait > 0:
            select.select([sock], [], [], wait)
    send_seconds = time.perf_counter() - start
    deadline = time.perf_counter() + timeout + 0.05
    while sent_at and time.perf_counter() < deadline:
        select.select([sock], [], [], max(0.0, deadline - time.perf_counter()))
        receive()
    sock.close()
    latencies.sort()
    return {
        "target": target,
        "rate": rate,
        "achieved_rate": round(seq / send_seconds, 1),
        "sent": seq,
        "answered": len(latencies),
        "lost": seq - len(latencies),
        "late": late,
        "p50_us": round(pct(latencies, 50), 1),
        "p99_us": round(pct(latencies, 99), 1),
        "p999_us": round(pct(latencies, 99.9), 1),
        "max_us": round(latencies[-1], 1) if latencies else math.nan,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.arp_loadgen", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--iface", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--rate", type=float, required=True, help="who-has (or NS) per second")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--src-ip", action="append", required=True, help="sender IPs to rotate over (repeatable)")
    parser.add_argument("--timeout-ms", type=float, default=50.0, help="a reply later than this counts as lost")
    args = parser.parse_args(argv)
    result = run(args.iface, args.target, args.rate, args.duration, args.src_ip, args.timeout_ms / 1e3)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
