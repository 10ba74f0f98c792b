"""Raw-socket ARP load generator: who-has for one IP at a fixed rate, every reply matched to its request.

    ip netns exec NS python -m benchmarks.arp_loadgen --iface l2lb0 --target 198.18.111.100 --rate 1000 \
        --duration 5 --src-ip 198.18.111.200 [--src-ip ...]

ARP has no request id, so each who-has carries its own sender hardware address, ``02:b1:`` + a 32-bit
sequence number. Whoever answers (our speaker or the kernel) sends the reply to that address and names it as
the target hardware address, so every reply identifies its request exactly however late it is. The bridge
floods frames for these unknown addresses to the client's port, where this AF_PACKET socket (bound to
ETH_P_ARP) sees them; the client's kernel drops them (not for its MAC). The Ethernet source stays the
client's real MAC, so the bridge never learns the made-up ones.

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


def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    rank = max(0, min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1))
    return values[rank]


def run(
    iface: str, target: str, rate: float, duration: float, src_ips: Sequence[str], timeout: float
) -> dict[str, object]:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((iface, ETH_P_ARP))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    src_mac = sock.getsockname()[4]
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
            # ARP reply (op 2) from the target IP, addressed to one of our tagged hardware addresses.
            if data[20:22] != b"\x00\x02" or data[28:32] != target_bytes or data[32:34] != TAG:
                continue
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
    parser.add_argument("--rate", type=float, required=True, help="who-has per second")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--src-ip", action="append", required=True, help="sender IPs to rotate over (repeatable)")
    parser.add_argument("--timeout-ms", type=float, default=50.0, help="a reply later than this counts as lost")
    args = parser.parse_args(argv)
    result = run(args.iface, args.target, args.rate, args.duration, args.src_ip, args.timeout_ms / 1e3)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
