"""A fault-injecting HTTPS proxy in front of a real kube-apiserver: makes chosen watches go silent.

A watch whose stream stays open but delivers nothing (a NAT or firewall that dropped the flow's state, a
half-dead load balancer) is what the agent's watchdog exists for, and kube-apiserver will not produce one
on request. This proxy terminates TLS with a certificate of the control plane's own CA (so clients trust it
as they trust the API server), forwards each HTTP/1.1 request to kube-apiserver over TLS, and remembers which
connections carry a watch and of what resource. ``stall_watches("leases")`` then stops relaying the
responses of those connections without closing them: the client sees a stream that is open and silent.
Everything else (new connections, new watches) is served normally.

The proxy follows each response's framing (Content-Length, chunked), so a connection counts as watching
only until the last byte of its watch's response has been relayed: a connection back in a client's pool
after its watch ended is not stalled (that would silence whatever request the client sends on it next).

It is a network fault injector, not an API stand-in: every answer a client gets comes from kube-apiserver.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import ssl
import tempfile
import threading
from collections import deque
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pki import ensure_ca, issue_server_cert

_MAX_HEAD = 64 * 1024
_RESOURCE = re.compile(
    r"^/(?:api/v1|apis/[^/]+/[^/]+)(?P<legacy>/watch)?(?:/namespaces/[^/]+)?/(?P<resource>[a-z0-9.-]+)"
)
# What kube-apiserver takes for true (Go's strconv.ParseBool).
_TRUE = ("1", "t", "T", "true", "TRUE", "True")


def watch_resource(target: str) -> str | None:
    """The resource a request target watches (``/api/v1/services?watch=true`` -> ``services``, also the
    deprecated ``/api/v1/watch/services``), or None."""
    parts = urlsplit(target)
    match = _RESOURCE.match(parts.path)
    if not match:
        return None
    if match["legacy"] or parse_qs(parts.query).get("watch", [""])[0] in _TRUE:
        return match["resource"]
    return None


class _ResponseFraming:
    """Where the HTTP/1.1 responses of one connection end (Content-Length, chunked, or at the close)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._state = "head"  # head, length, chunk-size, chunk-data, trailer, close
        self._remaining = 0

    def feed(self, data: bytes, bodiless: bool) -> int:
        """Take the next bytes from the server; return how many responses ended in them. ``bodiless``: the
        response being read answers a HEAD request (it has headers only, whatever they say)."""
        self._buffer += data
        ended = 0
        while True:
            if self._state == "head":
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > _MAX_HEAD:
                        raise ValueError("response head too large")
                    return ended
                lines = self._buffer[:end].decode("latin-1").split("\r\n")
                self._buffer = self._buffer[end + 4 :]
                status = int(lines[0].split(" ")[1])
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if 100 <= status < 200:
                    continue  # an interim response; the final one follows
                if bodiless or status in (204, 304):
                    ended += 1
                elif "chunked" in headers.get("transfer-encoding", "").lower():
                    self._state = "chunk-size"
                elif "content-length" in headers:
                    self._remaining = int(headers["content-length"])
                    self._state = "length"
                else:
                    self._state = "close"  # ends when the server closes the connection
            elif self._state in ("length", "chunk-data"):
                taken = min(self._remaining, len(self._buffer))
                self._buffer, self._remaining = self._buffer[taken:], self._remaining - taken
                if self._remaining:
                    return ended
                if self._state == "length":
                    self._state = "head"
                    ended += 1
                else:
                    self._state = "chunk-size"
            elif self._state in ("chunk-size", "trailer"):
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    return ended
                row, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
                if self._state == "trailer":
                    if not row:
                        self._state = "head"
                        ended += 1
                    continue
                size = int(row.split(b";")[0], 16)
                self._state, self._remaining = ("trailer", 0) if size == 0 else ("chunk-data", size + 2)
            else:
                self._buffer = b""
                return ended


class _Connection:
    def __init__(self, downstream: ssl.SSLSocket, upstream: ssl.SSLSocket) -> None:
        self.downstream, self.upstream = downstream, upstream
        # The requests sent upstream whose responses have not ended: (method, resource watched or None).
        self.requests: deque[tuple[str, str | None]] = deque()
        self.framing = _ResponseFraming()
        self.stalled = False
        self.closed = False

    @property
    def watching(self) -> str | None:
        """The resource of the watch whose response is being relayed, or None."""
        return self.requests[0][1] if self.requests else None

    def relayed(self, data: bytes) -> None:
        """Note the server's next bytes (about to be relayed): requests whose response ended are done."""
        for _ in range(self.framing.feed(data, bool(self.requests) and self.requests[0][0] == "HEAD")):
            if self.requests:
                self.requests.popleft()

    def close(self) -> None:
        self.closed = True
        for sock in (self.downstream, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class StallProxy:
    """``https://127.0.0.1:<port>`` -> ``upstream`` (host, port); ``stall_watches(resource)``; ``close()``.

    ``pki_dir`` holds the control plane's ``ca.crt``/``ca.key`` (the proxy's certificate is issued by it).
    """

    def __init__(self, upstream: tuple[str, int], pki_dir: Path, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        ca_pem, ca_key_pem = ensure_ca(pki_dir)
        cert_pem, key_pem = issue_server_cert(ca_pem, ca_key_pem, [host, "localhost"])
        self._server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="l2lb-stallproxy-") as scratch:
            cert, key = Path(scratch) / "tls.crt", Path(scratch) / "tls.key"
            cert.write_bytes(cert_pem)
            key.write_bytes(key_pem)
            key.chmod(0o600)
            self._server_context.load_cert_chain(cert, key)
        self._server_context.set_alpn_protocols(["http/1.1"])
        self._client_context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
        self._client_context.set_alpn_protocols(["http/1.1"])
        self.listener = socket.create_server((host, 0))
        self.host, self.port = host, int(self.listener.getsockname()[1])
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._closing = False
        threading.Thread(target=self._accept, name="stallproxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def stall_watches(self, resource: str | None = None) -> int:
        """Open watches of ``resource`` (None: of every resource) stay connected and go silent; how many."""
        with self._lock:
            chosen = [
                c
                for c in self._connections
                if c.watching and not c.stalled and not c.closed and (resource is None or c.watching == resource)
            ]
            for connection in chosen:
                connection.stalled = True
        return len(chosen)

    def close(self) -> None:
        self._closing = True
        # close() alone would not wake the accept() in progress (Linux): the socket would go on listening.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()

    def __enter__(self) -> StallProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- relaying --------------------------------------------------------------------------------------
    # One thread per connection does all of its I/O: an SSL object must never be read in one thread while
    # another writes it (OpenSSL's rule; broken, it hangs a request now and then).

    def _accept(self) -> None:
        while not self._closing:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(raw,), name="stallproxy-conn", daemon=True).start()

    def _open(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(10.0)
            downstream = self._server_context.wrap_socket(raw, server_side=True)
            upstream_raw = socket.create_connection(self.upstream, timeout=10.0)
            upstream = self._client_context.wrap_socket(upstream_raw, server_hostname=self.upstream[0])
        except (OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                raw.close()
            return
        connection = _Connection(downstream, upstream)
        with self._lock:
            self._connections.add(connection)
        try:
            self._relay(connection)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            connection.close()
            with self._lock:
                self._connections.discard(connection)

    def _relay(self, connection: _Connection) -> None:
        down, up = connection.downstream, connection.upstream
        down.setblocking(False)
        up.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(down, selectors.EVENT_READ)
        selector.register(up, selectors.EVENT_READ)
        pending = b""
        try:
            while not self._closing:
                # Bytes already decrypted inside the SSL object do not make the socket readable.
                ready = [s for s in (down, up) if s.fileno() >= 0 and s.pending()]
                if not ready:
                    ready = [key.fileobj for key, _ in selector.select(timeout=1.0)]  # type: ignore[misc]
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        continue
                    if sock is up:
                        if not data:
                            if connection.stalled:  # the server ended it; the client still sees an open stream
                                selector.unregister(up)
                                continue
                            return
                        with self._lock:  # a watch's end is noted before the client can see it
                            stalled = connection.stalled
                            if not stalled:
                                connection.relayed(data)
                        if not stalled:
                            _send(down, data)
                        continue
                    if not data:
                        return
                    pending = self._forward_requests(connection, pending + data)
        finally:
            selector.close()

    def _forward_requests(self, connection: _Connection, buffer: bytes) -> bytes:
        """Send every complete request in ``buffer`` upstream, noting watches; return what is left."""
        while True:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise ValueError("request head too large")
                return buffer
            lines = buffer[:head_end].decode("latin-1").split("\r\n")
            request_line = lines[0].split(" ")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
                elif name.strip().lower() == "transfer-encoding":
                    raise ValueError("chunked requests are not relayed (the Kubernetes clients send Content-Length)")
            end = head_end + 4 + length
            if len(buffer) < end:
                return buffer
            with self._lock:
                connection.requests.append(
                    (request_line[0], watch_resource(request_line[1] if len(request_line) > 1 else "/"))
                )
            _send(connection.upstream, buffer[:end])
            buffer = buffer[end:]


def _send(sock: ssl.SSLSocket, data: bytes) -> None:
    """All of ``data``, blocking for as long as it takes (only this connection's thread uses ``sock``)."""
    sock.setblocking(True)
    try:
        sock.sendall(data)
    finally:
        sock.setblocking(False)
