"""Authentication (bearer tokens) and authorization (RBAC) as kube-apiserver does them.

Tokens:
* the admin token: user ``kubernetes-admin`` in ``system:masters`` (never subject to RBAC, as on kubeadm);
* extra static tokens added with :meth:`Authenticator.add_token`;
* legacy service-account tokens from ``kubernetes.io/service-account-token`` Secrets (valid while the
  Secret and its ServiceAccount exist);
* bound service-account tokens from the TokenRequest API (valid until they expire or the ServiceAccount
  is deleted). Both look like JWTs but are opaque to the stand-in: it looks them up instead of verifying
  a signature.

A service account authenticates as ``system:serviceaccount:<namespace>:<name>`` with groups
``system:serviceaccounts``, ``system:serviceaccounts:<namespace>`` and ``system:authenticated``.

RBAC follows ``k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac``: ClusterRoleBindings grant their
ClusterRole everywhere; RoleBindings grant a Role or ClusterRole inside their namespace; rules match
on verbs, apiGroups, resources (``*``, ``res/sub``, ``*/sub``), resourceNames and nonResourceURLs.
Deliberately not implemented: aggregated ClusterRoles (``aggregationRule``) and the escalation check on
writes of Roles and bindings.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Store

RBAC = "rbac.authorization.k8s.io"
MASTERS = "system:masters"


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    @property
    def is_admin(self) -> bool:
        return MASTERS in self.groups


@dataclass
class Attributes:
    """What a request does, as RBAC sees it (``authorizer.Attributes``)."""

    verb: str
    resource_request: bool = True
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    def describe(self) -> str:
        """The tail of a Forbidden message: what the user cannot do."""
        if not self.resource_request:
            return f'cannot {self.verb} path "{self.path}"'
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        return f'cannot {self.verb} resource "{resource}" in API group "{self.group}" {where}'


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_shaped(claims: dict[str, Any]) -> str:
    header = _b64url(json.dumps({"alg": "RS256", "kid": "k8s-standin"}).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{payload}.{_b64url(secrets.token_bytes(48))}"


def service_account_user(namespace: str, name: str, uid: str = "") -> UserInfo:
    return UserInfo(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        uid,
    )


@dataclass
class _BoundToken:
    namespace: str
    name: str
    uid: str
    expires: float


@dataclass
class Authenticator:
    admin_token: str
    static: dict[str, UserInfo] = field(default_factory=dict)
    _legacy: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (namespace, secret)
    _bound: dict[str, _BoundToken] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_token(self, token: str, user: str, groups: tuple[str, ...] = ()) -> None:
        with self._lock:
            self.static[token] = UserInfo(user, (*groups, "system:authenticated"))

    def legacy_token(self, namespace: str, account: str, uid: str, secret_name: str) -> str:
        return _jwt_shaped(
            {
                "iss": "kubernetes/serviceaccount",
                "kubernetes.io/serviceaccount/namespace": namespace,
                "kubernetes.io/serviceaccount/secret.name": secret_name,
                "kubernetes.io/serviceaccount/service-account.name": account,
                "kubernetes.io/serviceaccount/service-account.uid": uid,
                "sub": f"system:serviceaccount:{namespace}:{account}",
            }
        )

    def bound_token(
        self, namespace: str, account: str, uid: str, seconds: int, audiences: list[str]
    ) -> tuple[str, float]:
        expires = time.time() + seconds
        token = _jwt_shaped(
            {
                "aud": audiences,
                "exp": int(expires),
                "iat": int(time.time()),
                "iss": "https://kubernetes.default.svc",
                "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": account, "uid": uid}},
                "sub": f"system:serviceaccount:{namespace}:{account}",
            }
        )
        with self._lock:
            self._bound[token] = _BoundToken(namespace, account, uid, expires)
        return token, expires

    def index_secret(self, secret: dict[str, Any]) -> None:
        token = (secret.get("data") or {}).get("token")
        if secret.get("type") == "kubernetes.io/service-account-token" and token:
            with self._lock:
                self._legacy[base64.b64decode(token).decode()] = (
                    secret["metadata"]["namespace"],
                    secret["metadata"]["name"],
                )

    def unindex_secret(self, secret: dict[str, Any]) -> None:
        token = (secret.get("data") or {}).get("token")
        if token:
            with self._lock:
                self._legacy.pop(base64.b64decode(token).decode(), None)

    def authenticate(self, token: str, store: Store, secret_key: Any, sa_key: Any) -> UserInfo | None:
        if not token:
            return None
        if secrets.compare_digest(token, self.admin_token):
            return UserInfo("kubernetes-admin", (MASTERS, "system:authenticated"))
        with self._lock:
            if token in self.static:
                return self.static[token]
            legacy = self._legacy.get(token)
            bound = self._bound.get(token)
        if legacy is not None:
            namespace, secret_name = legacy
            secret = store.get(secret_key, namespace, secret_name)
            if secret is None:
                return None
            data = secret.get("data") or {}
            if base64.b64decode(data.get("token", "")).decode() != token:
                return None
            annotations = secret["metadata"].get("annotations") or {}
            account_name = annotations.get("kubernetes.io/service-account.name", "")
            account = store.get(sa_key, namespace, account_name)
            if account is None or account["metadata"]["uid"] != annotations.get(
                "kubernetes.io/service-account.uid", account["metadata"]["uid"]
            ):
                return None
            return service_account_user(namespace, account_name, account["metadata"]["uid"])
        if bound is not None:
            if bound.expires < time.time():
                return None
            account = store.get(sa_key, bound.namespace, bound.name)
            if account is None or account["metadata"]["uid"] != bound.uid:
                return None
            return service_account_user(bound.namespace, bound.name, bound.uid)
        return None


# --- RBAC ----------------------------------------------------------------------------------------------


def _subject_matches(subject: dict[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{subject.get('name')}"
    return False


def _resource_matches(rule_resources: list[str], resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for item in rule_resources:
        if item in ("*", combined):
            return True
        if subresource and item == f"*/{subresource}":
            return True
    return False


def _rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
                return True
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    if not _resource_matches(rule.get("resources") or [], attrs.resource, attrs.subresource):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def rules_for(store: Store, user: UserInfo, namespace: str) -> list[dict[str, Any]]:
    """Every policy rule that applies to ``user`` in ``namespace`` (cluster-wide ones included)."""
    rules: list[dict[str, Any]] = []

    def role_rules(kind: str, name: str, role_namespace: str) -> list[dict[str, Any]]:
        if kind == "ClusterRole":
            role = store.get((RBAC, "clusterroles"), "", name)
        else:
            role = store.get((RBAC, "roles"), role_namespace, name)
        return list((role or {}).get("rules") or [])

    for binding in store.objects((RBAC, "clusterrolebindings")):
        if any(_subject_matches(s, user, "") for s in binding.get("subjects") or []):
            ref = binding.get("roleRef") or {}
            rules += role_rules(ref.get("kind", ""), ref.get("name", ""), "")
    if namespace:
        for binding in store.objects((RBAC, "rolebindings"), namespace):
            if any(_subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
                ref = binding.get("roleRef") or {}
                rules += role_rules(ref.get("kind", ""), ref.get("name", ""), namespace)
    return rules


_PUBLIC_INFO_PATHS = ("/version", "/healthz", "/livez", "/readyz")
_DISCOVERY_PATHS = ("/api", "/apis", "/openapi")
AUTHENTICATED = "system:authenticated"


def _path_in(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def authorize(store: Store, user: UserInfo, attrs: Attributes) -> bool:
    if user.is_admin:
        return True
    # system:public-info-viewer is bound to everyone, anonymous included (system:unauthenticated).
    if not attrs.resource_request and _path_in(attrs.path, _PUBLIC_INFO_PATHS):
        return True
    # system:discovery and system:basic-user are bound to system:authenticated only.
    authenticated = AUTHENTICATED in user.groups
    if authenticated and not attrs.resource_request and _path_in(attrs.path, _DISCOVERY_PATHS):
        return True
    if (
        authenticated
        and attrs.resource_request
        and attrs.group == "authorization.k8s.io"
        and attrs.resource
        in (
            "selfsubjectaccessreviews",
            "selfsubjectrulesreviews",
        )
    ):
        return True  # system:basic-user
    if (
        authenticated
        and attrs.resource_request
        and attrs.group == "authentication.k8s.io"
        and attrs.resource == "selfsubjectreviews"
    ):
        return True
    with store.lock:
        return any(_rule_allows(rule, attrs) for rule in rules_for(store, user, attrs.namespace))
