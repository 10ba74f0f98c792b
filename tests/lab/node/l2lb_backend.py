#!/usr/bin/python3
"""Lab backend: one "pod" of a demo Service, a real server process on node-local addresses of its node (IPv4, IPv6).

Installed into the lab image as /usr/local/bin/l2lb-backend and run by ``l2lb-backend@<name>.service``; the
lab (``lab.py backend ...``) lists it in the Service's EndpointSlices by creating its Pod object. kube-proxy
DNATs the Service IP to this address and port, so what answers tells which backend (and node) served:

    TCP  every connection gets two lines, then FIN:  ``<name>@<node>`` and ``client <ip>:<port>``
    UDP  every datagram gets one:                     ``<name>@<node> client <ip>:<port>``

``client`` is the source address the backend saw: the client's own with ``externalTrafficPolicy: Local``,
a node's (kube-proxy's masquerade) when the packet was forwarded to a backend on another node.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import threading


class TCPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        peer = self.client_address
        conn.sendall(f"{self.server.label}\nclient {peer[0]}:{peer[1]}\n".encode())  # type: ignore[attr-defined]
        # Half-close, then drain what the client sent, so a client that wrote a request gets FIN, not RST.
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        _data, sock = self.request
        peer = self.client_address
        sock.sendto(f"{self.server.label} client {peer[0]}:{peer[1]}\n".encode(), peer)  # type: ignore[attr-defined]


class TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the backend's (its Pod's) name")
    parser.add_argument(
        "--address", required=True, action="append", help="a node-local address of it (the Pod IPs: one per family)"
    )
    parser.add_argument("--port", type=int, default=8080, help="TCP and UDP port (the Services' targetPort)")
    args = parser.parse_args()
    label = f"{args.name}@{socket.gethostname()}"
    servers: list[socketserver.BaseServer] = []
    for address in args.address:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        tcp_class = type("TCP", (TCPServer,), {"address_family": family})
        udp_class = type("UDP", (socketserver.ThreadingUDPServer,), {"address_family": family})
        servers += [tcp_class((address, args.port), TCPHandler), udp_class((address, args.port), UDPHandler)]
    for server in servers:
        server.label = label  # type: ignore[attr-defined]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
