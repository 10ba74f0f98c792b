"""Passive ARP watcher for the end-to-end tests: every ARP frame on one interface, both directions.

    ip netns exec NS python arpwatch.py --iface l2lb0

Prints JSON lines: ``{"type": "ready", "mac": ...}`` once the socket is bound, then one line per frame:
``{"type": "arp", "t": <CLOCK_MONOTONIC seconds>, "out": <sent by this host>, "op": 1|2, "sha", "spa",
"tha", "tpa", "eth_src", "eth_dst"}``. Stops at end of stdin. The tests use it to prove what a host's
*kernel* sent (``out``: a who-has from the client itself) and received (gratuitous ARP) — an oracle
independent of the agent's ARP code, parsed with ``struct`` only. CLOCK_MONOTONIC is system-wide, so
``t`` compares with ``time.monotonic()`` in the test process.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import threading
import time

ETH_P_ARP = 0x0806
_FRAME = struct.Struct("!6s6sH HHBBH 6s4s6s4s")


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def main() -> int:
    parser = argparse.ArgumentParser(description="print every ARP frame on an interface as JSON lines")
    parser.add_argument("--iface", required=True)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((args.iface, ETH_P_ARP))
    mac = sock.getsockname()[4].hex(":")
    stop = threading.Event()

    def stop_on_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_on_eof, daemon=True).start()
    print(json.dumps({"type": "ready", "mac": mac}), flush=True)
    while not stop.is_set():
        readable, _, _ = select.select([sock], [], [], 0.1)
        if not readable:
            continue
        data, address = sock.recvfrom(256)
        now = time.monotonic()
        if len(data) < _FRAME.size:
            continue
        eth_dst, eth_src, ethertype, _htype, _ptype, _hlen, _plen, op, sha, spa, tha, tpa = _FRAME.unpack_from(data)
        if ethertype != ETH_P_ARP:
            continue
        line = {
            "type": "arp",
            "t": now,
            "out": address[2] == socket.PACKET_OUTGOING,
            "op": op,
            "sha": _mac(sha),
            "spa": socket.inet_ntoa(spa),
            "tha": _mac(tha),
            "tpa": socket.inet_ntoa(tpa),
            "eth_src": _mac(eth_src),
            "eth_dst": _mac(eth_dst),
        }
        print(json.dumps(line), flush=True)
    print(json.dumps({"type": "done"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
