"""k8s_standin — a **stand-in** for kube-apiserver, for tests and the lab. It is not Kubernetes.

No real kube-apiserver can run on the project's machines, so this package serves the subset of the
Kubernetes API the project uses, with the wire behaviour of a real server, and nothing else. Everything
that works against it must work against a real cluster; contract tests drive it with the official
``kubernetes`` Python client to keep that true.

Implemented
    HTTPS with a generated CA; bearer tokens (admin, static, service-account Secret tokens, TokenRequest)
    with 401 ``Unauthorized`` for a token that is not valid; requests without a token are ``system:anonymous``
    (kube-apiserver's default ``--anonymous-auth=true``), allowed only ``/healthz``, ``/livez``, ``/readyz`` and
    ``/version`` (``system:public-info-viewer``), 403 elsewhere; RBAC for everything but the admin (403
    ``Forbidden`` with the real message).
    Discovery (``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>[/<version>]``) including CRDs,
    so ``kubernetes.dynamic.DynamicClient`` and ``kubernetes.core`` work. Kinds: core/v1 namespaces, nodes,
    services, endpoints, events, serviceaccounts (+ ``token``), secrets, configmaps; discovery.k8s.io/v1
    endpointslices; coordination.k8s.io/v1 leases; events.k8s.io/v1 events (a view of core events);
    rbac.authorization.k8s.io/v1; apiextensions.k8s.io/v1 CRDs and their custom objects (served versions,
    ``status`` subresource, structural-schema pruning, defaulting and validation); subject access reviews.
    Verbs get, list, watch, create, update, patch (JSON, merge, strategic merge, apply), delete,
    deletecollection, with ``dryRun=All``, ``fieldValidation``, label and field selectors, ``limit``/``continue``.
    One global resourceVersion counter, ``409`` on stale updates, status subresource semantics,
    ``metadata.generation``, finalizers, owner-reference garbage collection, namespace cleanup, watches with
    bookmarks and a bounded history (``410 Expired`` as an ``ERROR`` event), request counting per
    (verb, resource) at ``GET/DELETE /_standin/requests``. Failure injection: ``ApiServer.stall_watches()``
    (or ``POST /_standin/stall-watches?resource=PLURAL``) makes open watches go silent without closing them.

Deliberately different
    * No Go types: built-in kinds are decoded with the field list of the Python client's models and
      validated for the rules the project can hit, not every rule kube-apiserver has.
    * Namespace deletion, CRD deletion and garbage collection finish within the request; there is no
      ``Terminating`` phase to wait for (the DELETE response still shows it). Finalizers on objects are
      honoured; objects inside a deleted namespace are removed regardless of their finalizers.
    * Server-side apply is approximated as create-or-merge, where a field manager's re-apply removes the
      fields it applied before and no longer sends; there are no ``managedFields`` and no conflicts.
    * CEL rules (``x-kubernetes-validations``), admission webhooks, conversion webhooks, aggregated
      ClusterRoles, RBAC escalation checks, quotas, pods and workload controllers are not implemented;
      discovery is served in the classic (non-aggregated) JSON form only; no protobuf, no Table output.
    * Watch history is kept per resource (``history_size`` events each, default 2000), like the watch
      cache; there is no etcd behind it to fall back to, so older resourceVersions are always 410.
    * Service cluster IPs come from ``service_cidr`` (default 198.18.240.0/20) and are not routed.
    * State is in memory; ``ApiServer.stop()``/``start()`` keep it, a new process starts empty (the CA and
      admin token are reused from ``state_dir``).

Faithful on purpose, although it may surprise
    * Services have no ``metadata.generation`` (only custom resources and CRDs do), as on a real server.
    * ``/status`` of built-in kinds keeps the request's label and annotation changes (the legacy
      strategies do); ``/status`` of custom resources changes nothing but ``status``.
    * ``status.loadBalancer.ingress[].ipMode`` defaults to ``VIP`` on LoadBalancer Services, and an
      ingress ``ip`` without ``ipMode`` is refused otherwise.
    * Timestamps are re-rendered in UTC: whole seconds, or microseconds for MicroTime fields
      (``Lease.spec.renewTime``, ``acquireTime``, ``Event.eventTime``).
    * A write that changes nothing keeps the resourceVersion and sends no watch event.
"""

from .server import ApiServer

__all__ = ["ApiServer"]
