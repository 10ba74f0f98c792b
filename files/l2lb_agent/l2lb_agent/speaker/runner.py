"""Run an ARP responder on its own, without the rest of the agent: for tests, debugging and benchmarks.

    python -m l2lb_agent.speaker.runner --iface eth0 --ip 198.18.0.100 [--ip ...] [--control]

Every IP is answered on every ``--iface``. Events go to stdout as JSON lines (``ready``, ``conflict``,
``stopped``; logs go to stderr). With ``--control`` it also reads JSON-line commands on stdin and answers
each with one JSON line:

    {"cmd": "set", "assignments": {"198.18.0.100": ["eth0"]}}   -> {"event": "ack", "cmd": "set"}
    {"cmd": "announce", "ip": "198.18.0.100"}                    -> {"event": "ack", "cmd": "announce"}
    {"cmd": "stats"}    -> {"event": "stats", "counters": {...}, "links": [...], "assignments": {...}}
    {"cmd": "stop"}     (or end of input, SIGTERM, SIGINT)      -> {"event": "stopped", ...}
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, TextIO

from l2lb_agent.speaker.responder import Responder, ResponderConfig


class _EventWriter:
    """JSON lines to a stream, one writer at a time (callbacks run on the responder thread)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, sort_keys=True)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # whoever read our output has gone; keep running until told to stop


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="l2lb-speaker", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--iface", action="append", default=[], help="interface to answer on (repeatable)")
    parser.add_argument("--ip", action="append", default=[], help="IPv4 or IPv6 address to answer for (repeatable)")
    parser.add_argument("--garp-rounds", type=int, default=ResponderConfig.garp_burst_rounds)
    parser.add_argument("--garp-interval", type=float, default=ResponderConfig.garp_burst_interval)
    parser.add_argument("--refresh", type=float, default=ResponderConfig.refresh_interval)
    parser.add_argument("--link-check", type=float, default=ResponderConfig.link_check_interval)
    parser.add_argument("--conflict-holdoff", type=float, default=ResponderConfig.conflict_holdoff)
    parser.add_argument("--control", action="store_true", help="read JSON-line commands on stdin")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.ip and not args.iface:
        parser.error("--ip needs at least one --iface")
    return args


def _handle(command: dict[str, Any], responder: Responder, emit: _EventWriter) -> bool:
    """Run one control command; False when told to stop."""
    cmd = command.get("cmd")
    if cmd == "stop":
        return False
    if cmd == "set":
        responder.set_assignments(command.get("assignments") or {})
        emit("ack", cmd=cmd)
    elif cmd == "announce":
        responder.announce(command.get("ip"))
        emit("ack", cmd=cmd)
    elif cmd == "stats":
        emit(
            "stats",
            counters=responder.counters().to_dict(),
            links=[link.to_dict() for link in responder.links()],
            assignments=responder.assignments(),
        )
    else:
        emit("error", message=f"unknown command {cmd!r}; expected set, announce, stats or stop")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    emit = _EventWriter(sys.stdout)
    config = ResponderConfig(
        garp_burst_rounds=args.garp_rounds,
        garp_burst_interval=args.garp_interval,
        refresh_interval=args.refresh,
        link_check_interval=args.link_check,
        conflict_holdoff=args.conflict_holdoff,
    )
    stop = threading.Event()

    def on_conflict(ip: str, ifname: str, other_mac: str) -> None:
        emit("conflict", ip=ip, ifname=ifname, mac=other_mac)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    responder = Responder(config, on_conflict=on_conflict)
    responder.start()
    try:
        responder.set_assignments({ip: list(args.iface) for ip in args.ip})
        emit("ready", pid=os.getpid(), assignments=responder.assignments())
        if args.control:
            threading.Thread(target=_read_commands, args=(responder, emit, stop), daemon=True).start()
        while not stop.wait(0.5):
            if not responder.running:
                emit("error", message="responder thread died")
                return 1
    except ValueError as exc:
        emit("error", message=str(exc))
        return 2
    finally:
        responder.stop()
        emit("stopped", counters=responder.counters().to_dict())
    return 0


def _read_commands(responder: Responder, emit: _EventWriter, stop: threading.Event) -> None:
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                command = json.loads(line)
                if not isinstance(command, dict):
                    raise ValueError("a command is a JSON object")
                if not _handle(command, responder, emit):
                    break
            except ValueError as exc:
                emit("error", message=str(exc))
    finally:
        stop.set()


if __name__ == "__main__":
    sys.exit(main())
