"""All Kubernetes API access of the agent, in two parts by job.

``client``: :class:`KubeClient` (typed calls, API health, request metrics) and the resources it knows;
``informer``: :class:`Informer` (a cache kept current by list + watch) and its :class:`Backoff`.
Everything is re-exported here, so ``from .kube import ...`` works for either part.
"""

from .client import (
    ASSIGNMENTS,
    DEFAULT_TIMEOUT,
    ENDPOINTSLICES,
    EVENTS,
    LEASES,
    MERGE_PATCH,
    NODES,
    POLICIES,
    POOL_MAXSIZE,
    POOLS,
    SERVICES,
    ApiError,
    ApiHealth,
    KubeClient,
    Resource,
    resource_version,
)
from .informer import Backoff, EventHandler, Informer

__all__ = [
    "ASSIGNMENTS",
    "DEFAULT_TIMEOUT",
    "ENDPOINTSLICES",
    "EVENTS",
    "LEASES",
    "MERGE_PATCH",
    "NODES",
    "POLICIES",
    "POOLS",
    "POOL_MAXSIZE",
    "SERVICES",
    "ApiError",
    "ApiHealth",
    "Backoff",
    "EventHandler",
    "Informer",
    "KubeClient",
    "Resource",
    "resource_version",
]
