#!/usr/bin/python3
"""Lab node echo server: stands in for a Service's backend pods so a TCP check tells which node served.

Installed into the lab image as /usr/local/bin/l2lb-echo and run by l2lb-echo.service. Every connection
gets exactly one line, the node's hostname (``l2lb-node2\\n``), and is then closed. The node's static
iptables rule (l2lb-kube-proxy.service) REDIRECTs TCP for the whole pool range to this port, the way
kube-proxy DNATs a LoadBalancer IP to a backend.
"""

from __future__ import annotations

import argparse
import socket
import socketserver


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.sendall(f"{socket.gethostname()}\n".encode())
        # Half-close, then drain what the client sent, so a client that wrote a request gets FIN, not RST.
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--address", default="0.0.0.0")
    args = parser.parse_args()
    with EchoServer((args.address, args.port), EchoHandler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
