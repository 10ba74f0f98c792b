"""Prometheus metrics and the ``/metrics`` + ``/healthz`` listener.

Each agent owns a :class:`Metrics` with its own registry, so several agents can run in one process
(the tests do) without colliding in prometheus_client's global registry.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, str]]
DebugKill = Callable[[str], tuple[bool, str]]
"""debug_kill(thread_name) -> (done, one line): the agent's debug hook behind ``POST /debug/kill``."""
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


class Metrics:
    """Every metric the agent exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.is_controller = Gauge("l2lb_is_controller", "1 while this agent is the elected controller", registry=r)
        self.announced_ips = Gauge("l2lb_announced_ips", "Service IPs this node answers ARP for", registry=r)
        self.arp_replies = Counter("l2lb_arp_replies", "ARP replies sent for service IPs", registry=r)
        self.garp_sent = Counter("l2lb_garp_sent", "Gratuitous ARP frames sent", registry=r)
        self.ndp_replies = Counter(
            "l2lb_ndp_replies", "Neighbor Advertisements sent in answer to solicitations for service IPs", registry=r
        )
        self.unsolicited_na_sent = Counter(
            "l2lb_unsolicited_na_sent", "Unsolicited Neighbor Advertisements sent (IPv6 announcements)", registry=r
        )
        self.dad_probes = Counter(
            "l2lb_dad_probes",
            "IPv6 duplicate address detection probes for an IP this node announces (a host wants it; defended)",
            registry=r,
        )
        self.arp_conflicts = Counter(
            "l2lb_arp_conflicts",
            "Other MACs seen claiming an IP this node announces (ARP or NDP)",
            registry=r,
        )
        self.fence_withdrawals = Counter(
            "l2lb_fence_withdrawals",
            "IPs withdrawn because another MAC claimed them and the API could not confirm ours",
            registry=r,
        )
        self.refused_announcements = Counter(
            "l2lb_refused_announcements",
            "Announcement entries not acted on: outside every pool, malformed, for another node, or written "
            "where only the controller may write (Service annotations)",
            ["reason"],
            registry=r,
        )
        self.api_requests = Counter(
            "l2lb_api_requests", "Kubernetes API requests", ["verb", "resource", "code"], registry=r
        )
        self.api_errors = Counter(
            "l2lb_api_errors",
            "Failed Kubernetes API requests (reason: connection, timeout, throttled, server, client)",
            ["resource", "reason"],
            registry=r,
        )
        self.api_throttled = Counter(
            "l2lb_api_throttled", "API requests answered 429 Too Many Requests (server-side throttling)", registry=r
        )
        self.api_reachable = Gauge("l2lb_api_reachable", "1 while the Kubernetes API answers", registry=r)
        self.watch_events = Counter(
            "l2lb_watch_events",
            "Watch events received (ADDED/MODIFIED/DELETED, not bookmarks), by informer: what this agent costs "
            "the API server to keep informed",
            ["informer"],
            registry=r,
        )
        self.watch_restarts = Counter(
            "l2lb_watch_restarts",
            "Watches restarted (reason: gone = re-list after 410, error, restart = asked to start over)",
            ["resource", "reason"],
            registry=r,
        )
        self.heartbeat_renew = Histogram(
            "l2lb_heartbeat_renew_seconds",
            "Time to renew this node's heartbeat Lease",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.heartbeat_failures = Counter("l2lb_heartbeat_failures", "Heartbeat renewals that failed", registry=r)
        self.nodes_alive = Gauge("l2lb_nodes_alive", "Nodes whose heartbeat this agent sees changing", registry=r)
        self.services_allocated = Gauge(
            "l2lb_services_allocated", "Services with an IP from a pool (controller only)", registry=r
        )
        self.services_refused = Gauge("l2lb_services_refused", "Services refused an IP or a node", registry=r)
        self.pool_available = Gauge("l2lb_pool_available", "Free addresses per pool", ["pool"], registry=r)
        self.pool_used = Gauge("l2lb_pool_used", "Allocated addresses per pool", ["pool"], registry=r)
        self.reconcile_seconds = Histogram(
            "l2lb_reconcile_seconds",
            "Duration of one controller reconcile (compute + writes)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.reconcile_writes = Counter(
            "l2lb_reconcile_writes", "API writes made by the controller", ["kind"], registry=r
        )
        self.fail_static = Gauge(
            "l2lb_fail_static", "1 while announcing the last known assignments during an API outage", registry=r
        )
        self.draining = Gauge("l2lb_draining", "1 while shutting down and handing IPs over", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """A sample's current value (tests and the health text use it)."""
        return self.registry.get_sample_value(name, labels or {})


class MetricsServer:
    """``/metrics`` (Prometheus text) and ``/healthz`` (200 or 503 with a one-line reason).

    With ``debug_kill`` (only when the agent runs with ``L2LB_AGENT_DEBUG_HOOKS=1``; off by default) it
    also serves ``POST /debug/kill?thread=NAME`` to clients on the loopback address, for tests that
    need a thread of a running agent to die. Without it that path is a 404 like any other.
    """

    def __init__(
        self, metrics: Metrics, health: HealthCheck, host: str, port: int, *, debug_kill: DebugKill | None = None
    ) -> None:
        self._metrics = metrics
        self._health = health
        handler = _make_handler(metrics, health, debug_kill)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="l2lb-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(2.0)


def _make_handler(metrics: Metrics, health: HealthCheck, debug_kill: DebugKill | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "l2lb-agent"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/livez", "/readyz"):
                try:
                    ok, text = health()
                except Exception as exc:  # a broken check is itself unhealthy, never a crash
                    ok, text = False, f"health check failed: {exc}"
                self._send(200 if ok else 503, (text + "\n").encode(), "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

        def do_POST(self) -> None:
            path, _, query = self.path.partition("?")
            if debug_kill is None or path != "/debug/kill":
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
                return
            if str(self.client_address[0]) not in LOOPBACK:
                self._send(403, b"debug hooks answer on localhost only\n", "text/plain; charset=utf-8")
                return
            names = parse_qs(query).get("thread") or [""]
            done, text = debug_kill(names[0])
            self._send(200 if done else 404, (text + "\n").encode(), "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line
            return

    return Handler
