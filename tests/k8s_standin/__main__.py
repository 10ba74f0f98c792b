"""Run the Kubernetes API stand-in as a process (the lab does this inside its network namespace).

    python -m k8s_standin --listen 198.18.0.1:6443 --state-dir DIR [--node NAME ...] [--extra-san IP]

Writes ``DIR/ca.crt``, ``DIR/admin-token`` and ``DIR/admin.kubeconfig`` (both 0600), prints
``k8s-standin ready <url>`` on stdout once it serves, and exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .server import ApiServer


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m k8s_standin", description="Kubernetes API stand-in (not a real kube-apiserver)."
    )
    parser.add_argument("--listen", type=_listen_address, default=("127.0.0.1", 6443), help="HOST:PORT")
    parser.add_argument("--state-dir", type=Path, required=True, help="CA, admin token and kubeconfig go here")
    parser.add_argument("--node", action="append", default=[], help="pre-create a Ready Node (repeatable)")
    parser.add_argument("--extra-san", action="append", default=[], help="extra server certificate SAN")
    parser.add_argument(
        "--history-size", type=int, default=2000, help="watch events kept per resource for resuming watches"
    )
    parser.add_argument("--service-cidr", default="198.18.240.0/20", help="range for Service cluster IPs")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    host, port = args.listen
    server = ApiServer(
        host,
        port,
        args.state_dir,
        nodes=args.node,
        extra_sans=args.extra_san,
        history_size=args.history_size,
        service_cidr=args.service_cidr,
    )
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    server.write_kubeconfig(args.state_dir / "admin.kubeconfig")
    print(f"k8s-standin ready {server.url}", flush=True)
    while not stopping.wait(0.2):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
