"""HTTPS listener and :class:`ApiServer`, the object tests and the lab start and stop.

HTTP/1.1 with keep-alive (the client's connection pool reuses connections), one thread per connection,
TLS handshakes in the connection's thread (a slow client never blocks ``accept``). Watches are sent with
chunked transfer encoding and end with the terminating chunk, also when the server stops, so clients see
a clean end of stream as from a real kube-apiserver shutting down.

``stop()`` closes the listener and every open connection but keeps all state (objects, resourceVersion
counter, tokens, CA, admin token); ``start()`` serves the same state again on the same port.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import select
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .certs import ensure_ca, issue_server_cert, write_kubeconfig, write_private
from .cluster import Cluster, Request, Response, WatchStream

log = logging.getLogger("k8s_standin")

NodeSpec = str | Mapping[str, Any]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "k8s-standin"
    sys_version = ""
    timeout = 300
    server: _HttpServer
    _headers_buffer: list[bytes]

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_PATCH = do_GET
    do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        url = urlsplit(self.path)
        authorization = self.headers.get("Authorization", "")
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
        request = Request(
            method=self.command,
            path=unquote(url.path),
            query=parse_qs(url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
            token=token,
        )
        result = self.server.cluster.handle(request)
        if isinstance(result, WatchStream):
            self._stream(result)
        else:
            self._respond(result)

    def _respond(self, response: Response) -> None:
        payload = response.payload()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for name, value in response.headers:
            self.send_header(name, value)
        # Headers and body in one write: separate small writes meet delayed ACKs and cost ~40 ms each.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(payload)
        self.flush_headers()

    def _peer_closed(self) -> bool:
        """Whether the client has gone away (it sends nothing on a watch connection but its close)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        try:
            self.connection.settimeout(0.01)
            return self.connection.recv(1) == b""
        except (ssl.SSLWantReadError, TimeoutError, BlockingIOError):
            return False
        except (OSError, ssl.SSLError):
            return True
        finally:
            with contextlib.suppress(OSError):
                self.connection.settimeout(self.timeout)

    def _stream(self, stream: WatchStream) -> None:
        self.server.watch_started()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Audit-Id", str(uuid.uuid4()))
            self.end_headers()
            for chunk in stream.events:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                elif self._peer_closed():
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            close = getattr(stream.events, "close", None)
            if close is not None:
                close()
            stream.close()
            self.server.watch_finished()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], cluster: Cluster, context: ssl.SSLContext) -> None:
        self.cluster = cluster
        self.context = context
        self.connections: set[ssl.SSLSocket] = set()
        self.connections_lock = threading.Lock()
        self.watches = 0
        self.watches_changed = threading.Condition()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        if request.family in (socket.AF_INET, socket.AF_INET6):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            with contextlib.suppress(OSError):
                request.close()
            return
        with self.connections_lock:
            self.connections.add(connection)
        try:
            _Handler(connection, client_address, self)
        except (OSError, ssl.SSLError) as exc:
            log.debug("connection from %s ended: %s", client_address, exc)
        finally:
            with self.connections_lock:
                self.connections.discard(connection)
            with contextlib.suppress(OSError):
                connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error serving %s", client_address)

    def watch_started(self) -> None:
        with self.watches_changed:
            self.watches += 1

    def watch_finished(self) -> None:
        with self.watches_changed:
            self.watches -= 1
            self.watches_changed.notify_all()

    def wait_for_watches(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.watches_changed:
            while self.watches > 0 and time.monotonic() < deadline:
                self.watches_changed.wait(max(0.0, deadline - time.monotonic()))

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _HttpServer6(_HttpServer):
    address_family = socket.AF_INET6


def _is_ipv6(host: str) -> bool:
    return ":" in host


class ApiServer:
    """A Kubernetes API **stand-in** (see the package docstring for what it implements and how it differs).

    ``ApiServer(host, port, state_dir)`` creates the CA, admin token and cluster state at once; ``start()``
    listens, ``stop()`` closes the listener and every connection (watches end cleanly) and keeps the
    state, so ``start()`` again serves the same objects with the same CA and token on the same port.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str | Path | None = None,
        *,
        nodes: Iterable[NodeSpec] = (),
        extra_sans: Iterable[str] = (),
        history_size: int = 2000,
        service_cidr: str = "198.18.240.0/20",
        admin_token: str | None = None,
        bookmark_interval: float = 60.0,
        watch_timeout: float = 1800.0,
    ) -> None:
        self.host = host
        self.port = port
        self.extra_sans = list(extra_sans)
        if state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="k8s-standin-"))
            weakref.finalize(self, shutil.rmtree, self.state_dir, True)
        else:
            self.state_dir = Path(state_dir)
            self.state_dir.mkdir(parents=True, exist_ok=True)
        self._ca_pem, self._ca_key_pem = ensure_ca(self.state_dir)
        token_file = self.state_dir / "admin-token"
        if admin_token is None and token_file.exists():
            admin_token = token_file.read_text().strip()
        self.admin_token = admin_token or secrets.token_urlsafe(32)
        write_private(token_file, self.admin_token.encode() + b"\n")
        self.cluster = Cluster(
            admin_token=self.admin_token,
            ca_pem=self._ca_pem.decode(),
            history_size=history_size,
            service_cidr=service_cidr,
            bookmark_interval=bookmark_interval,
            watch_timeout=watch_timeout,
        )
        for node in nodes:
            if isinstance(node, str):
                self.add_node(node)
            else:
                self.add_node(node["name"], node.get("labels"), node.get("addresses", ()))
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._http is not None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else "::1" if self.host == "::" else self.host
        return f"https://[{host}]:{self.port}" if _is_ipv6(host) else f"https://{host}:{self.port}"

    @property
    def ca_file(self) -> str:
        return str(self.state_dir / "ca.crt")

    def start(self) -> ApiServer:
        with self._lock:
            if self._http is not None:
                return self
            sans = ["127.0.0.1", "::1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
            if self.host not in ("", "0.0.0.0", "::"):
                sans.insert(0, self.host)
            cert_pem, key_pem = issue_server_cert(self._ca_pem, self._ca_key_pem, [*sans, *self.extra_sans])
            cert_file, key_file = self.state_dir / "server.crt", self.state_dir / "server.key"
            cert_file.write_bytes(cert_pem)
            write_private(key_file, key_pem)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(cert_file, key_file)
            server_class = _HttpServer6 if _is_ipv6(self.host) else _HttpServer
            self._http = server_class((self.host, self.port), self.cluster, context)
            self.port = self._http.server_address[1]
            self.cluster.server_address = self.url.removeprefix("https://")
            self._thread = threading.Thread(
                target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, name="k8s-standin", daemon=True
            )
            self._thread.start()
            return self

    def stop(self) -> None:
        with self._lock:
            http, thread = self._http, self._thread
            if http is None:
                return
            self._http = self._thread = None
            # End open watches first so their streams finish with the terminating chunk.
            self.cluster.store.close_watchers()
            http.wait_for_watches(2.0)
            http.shutdown()
            http.server_close()
            http.close_connections()
            if thread is not None:
                thread.join(5)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- credentials ---------------------------------------------------------------------------------

    def write_kubeconfig(
        self,
        path: str | Path,
        token: str | None = None,
        server_url: str | None = None,
        namespace: str | None = None,
        user: str = "admin",
    ) -> Path:
        """A kubeconfig with the CA inlined and a bearer token (the admin token by default), mode 0600."""
        return write_kubeconfig(
            path, "k8s-standin", server_url or self.url, self._ca_pem, token or self.admin_token, user, namespace
        )

    def add_token(self, token: str, user: str, groups: Iterable[str] = ()) -> None:
        """Accept another static bearer token for ``user`` (subject to RBAC unless in system:masters)."""
        self.cluster.auth.add_token(token, user, tuple(groups))

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A bound token for an existing ServiceAccount, as the TokenRequest API would issue it."""
        account = self.cluster.store.get(("", "serviceaccounts"), namespace, name)
        if account is None:
            raise KeyError(f'serviceaccounts "{name}" not found in namespace "{namespace}"')
        token, _ = self.cluster.auth.bound_token(namespace, name, account["metadata"]["uid"], seconds, [])
        return token

    # --- state ---------------------------------------------------------------------------------------

    def add_node(
        self, name: str, labels: Mapping[str, str] | None = None, addresses: Iterable[str] = ()
    ) -> dict[str, Any]:
        return self.cluster.add_node(name, dict(labels or {}), addresses)

    def request_counts(self) -> dict[tuple[str, str], int]:
        """Requests served per (verb, resource), e.g. ``("update", "leases")`` or ``("patch", "services/status")``."""
        return self.cluster.request_counts()

    def reset_counts(self) -> None:
        self.cluster.reset_counts()

    def stall_watches(self, resource: str | None = None) -> int:
        """Open watches (of ``resource``, e.g. ``"leases"``; None: all) stay connected but go silent.

        Also ``POST /_standin/stall-watches?resource=leases`` (admin token). See ``Cluster.stall_watches``.
        """
        return self.cluster.stall_watches(resource)

    @property
    def resource_version(self) -> int:
        return self.cluster.store.current_rv()
