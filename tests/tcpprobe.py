"""TCP prober for tests: connect to a service IP every few milliseconds and record who answered; run it in a netns.

    ip netns exec NS python -m tcpprobe --target 198.18.0.243 --port 80 --interval-ms 20 --stop-on-eof

One connection at a time, each with ``--timeout-ms`` to connect and read; a new one starts ``--interval-ms``
after the previous one started (or at once, if it took longer). Output: JSON lines on stdout,
``{"type": "ready"}`` first, then one ``probe`` line per connection (``sent`` on CLOCK_MONOTONIC, the same
clock as arpprobe's, ``ok``, ``answer``: the first line the server sent, ``error``), ``{"type": "done"}`` last.
Stops at end of stdin (``--stop-on-eof``), SIGTERM/SIGINT or after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def connect(target: str, port: int, timeout: float) -> tuple[bool, str, str]:
    try:
        with socket.create_connection((target, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            data = b""
            while b"\n" not in data and (chunk := conn.recv(4096)):
                data += chunk
            return True, data.decode("utf-8", "replace").split("\n", 1)[0].strip(), ""
    except OSError as exc:
        return False, "", "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--timeout-ms", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0: until stopped")
    parser.add_argument("--stop-on-eof", action="store_true")
    args = parser.parse_args(argv)
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emit(type="ready", target=args.target, port=args.port)
    started = time.monotonic()
    while not stopping:
        sent = time.monotonic()
        ok, answer, error = connect(args.target, args.port, args.timeout_ms / 1000)
        emit(type="probe", sent=sent, ok=ok, answer=answer, error=error, ms=round((time.monotonic() - sent) * 1000, 2))
        if args.duration and time.monotonic() - started > args.duration:
            break
        wait = max(0.0, sent + args.interval_ms / 1000 - time.monotonic())
        if args.stop_on_eof:
            readable, _, _ = select.select([sys.stdin], [], [], wait)
            if readable and not sys.stdin.readline():
                break
        else:
            time.sleep(wait)
    emit(type="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
