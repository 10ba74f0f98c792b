"""Per-kind behaviour, after kube-apiserver's registry strategies (``pkg/registry/<group>/<kind>``).

Each :class:`Strategy` does what the Go strategy and defaulting for its kind do and nothing more:
defaults, what create/update may not set, validation (the rules the project can hit, with the real
messages), allocations (Service cluster IPs and node ports) and the controllers whose effect a client
would see immediately (a namespace's ``default`` ServiceAccount, service-account token Secrets, CRD
establishment, namespace and CRD cleanup).
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import re
from typing import TYPE_CHECKING, Any

from . import schema as crd_schema
from .errors import (
    ApiError,
    FieldError,
    bad_request,
    duplicate,
    forbidden,
    invalid,
    invalid_object,
    not_supported,
    required,
    too_long,
)
from .typed import format_time
from .validation import (
    dns1035_label,
    dns1123_label,
    dns1123_subdomain,
    ip_error,
    is_ip,
    port_error,
    qualified_name,
    validate_labels,
)

if TYPE_CHECKING:
    from .cluster import Cluster
    from .resources import ResourceType

Obj = dict[str, Any]


def now(micro: bool = False) -> str:
    return format_time(datetime.datetime.now(datetime.UTC), micro)


class Strategy:
    """Defaults to the generic registry behaviour; subclasses override what their kind does differently."""

    # The API group named in 422 messages, when the real server validates another (internal) kind.
    validation_group: str | None = None

    def to_external(self, rt: ResourceType, obj: Obj) -> Obj:
        out: Obj = {"apiVersion": rt.api_version, "kind": rt.kind}
        out.update((k, v) for k, v in obj.items() if k not in ("apiVersion", "kind"))
        return out

    def to_storage(self, rt: ResourceType, obj: Obj) -> Obj:
        return obj

    def defaults(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        """Defaulting at decode time (every create and update)."""

    def prepare_create(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        """``PrepareForCreate``: clear what a client may not set."""

    def prepare_update(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj) -> None:
        """``PrepareForUpdate`` on the main endpoint."""

    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        return []

    def finalize(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None, dry_run: bool) -> None:
        """Allocations just before the write; may raise an ApiError."""

    def after_write(self, cluster: Cluster, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        """Controllers reacting to the stored object."""

    def before_delete(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        """Run before the object is removed (namespace contents, CRD instances)."""

    def after_delete(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        """Release what the object held."""


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = {}
        obj["spec"] = spec
    return spec


# --- core/v1 Namespace ----------------------------------------------------------------------------------


class NamespaceStrategy(Strategy):
    def defaults(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        if meta.get("name"):
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]

    def prepare_create(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}

    def prepare_update(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj) -> None:
        obj["spec"] = copy.deepcopy(old.get("spec", {}))

    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        phase = obj.get("status", {}).get("phase")
        if phase and phase not in ("Active", "Terminating"):
            return [not_supported("status.phase", phase, ["Active", "Terminating"])]
        return []

    def after_write(self, cluster: Cluster, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        if old is None:
            # The serviceaccount controller creates "default" in every namespace.
            name = new["metadata"]["name"]
            sa_type = cluster.builtin("", "v1", "serviceaccounts")
            if cluster.store.get(sa_type.key, name, "default") is None:
                cluster.system_create(sa_type, {"metadata": {"name": "default", "namespace": name}})

    def before_delete(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        for other in cluster.registry.storage_types():
            if not other.namespaced:
                continue
            for item in cluster.store.objects(other.key, name):
                cluster.system_delete(other, item["metadata"]["namespace"], item["metadata"]["name"])


# --- core/v1 Service ------------------------------------------------------------------------------------

SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
_NODE_PORT_RANGE = (30000, 32767)
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


class ServiceAllocator:
    """Cluster IPs from the service CIDR and node ports from 30000-32767, like the apiserver's allocators."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr)
        self.ips: set[str] = set()
        self.node_ports: set[int] = set()
        self._ip_cursor = 0
        self._port_cursor = 0

    def allocate_ip(self, requested: str, reserve: bool) -> str:
        if requested:
            address = ipaddress.ip_address(requested)
            if address not in self.network:
                raise _alloc_error(
                    "spec.clusterIPs",
                    [requested],
                    f"failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. "
                    f"The range of valid IPs is {self.network}",
                )
            if requested in self.ips:
                raise _alloc_error(
                    "spec.clusterIPs",
                    [requested],
                    f"failed to allocate IP {requested}: provided IP is already allocated",
                )
            if reserve:
                self.ips.add(requested)
            return requested
        hosts = self.network.num_addresses - 2
        for step in range(hosts):
            offset = (self._ip_cursor + step) % hosts + 1
            candidate = str(self.network.network_address + offset)
            if candidate not in self.ips:
                if reserve:
                    self.ips.add(candidate)
                    self._ip_cursor = offset
                return candidate
        raise ApiError(500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: range is full")

    def release_ip(self, ip: str) -> None:
        self.ips.discard(ip)

    def allocate_node_port(self, requested: int, path: str, reserve: bool) -> int:
        low, high = _NODE_PORT_RANGE
        if requested:
            if not low <= requested <= high:
                raise _alloc_error(
                    path,
                    requested,
                    f"provided port is not in the valid range. The range of valid ports is {low}-{high}",
                )
            if requested in self.node_ports:
                raise _alloc_error(path, requested, "provided port is already allocated")
            if reserve:
                self.node_ports.add(requested)
            return requested
        span = high - low + 1
        for step in range(span):
            candidate = low + (self._port_cursor + step) % span
            if candidate not in self.node_ports:
                if reserve:
                    self.node_ports.add(candidate)
                    self._port_cursor = candidate - low + 1
                return candidate
        raise ApiError(500, "InternalError", "Internal error occurred: failed to allocate a nodePort: range is full")

    def release_node_port(self, port: int) -> None:
        self.node_ports.discard(port)


class _AllocationError(ApiError):
    def __init__(self, error: FieldError) -> None:
        super().__init__(422, "Invalid", str(error))
        self.field_error = error


def _alloc_error(path: str, value: Any, detail: str) -> _AllocationError:
    return _AllocationError(invalid(path, value, detail))


def _node_ports_needed(spec: Obj) -> bool:
    kind = spec.get("type")
    return kind == "NodePort" or (kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True))


def _hc_node_port_needed(spec: Obj) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


class ServiceStrategy(Strategy):
    def defaults(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        spec = _spec(obj)
        kind = spec.setdefault("type", "ClusterIP")
        if kind != "ExternalName":
            spec.setdefault("sessionAffinity", "None")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "targetPort" not in port and "port" in port:
                    port["targetPort"] = port["port"]
        if kind in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        if kind == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        status = obj.setdefault("status", {})
        status.setdefault("loadBalancer", {})
        if kind == "LoadBalancer":
            for ingress in status["loadBalancer"].get("ingress") or []:
                if isinstance(ingress, dict) and ingress.get("ip") and "ipMode" not in ingress:
                    ingress["ipMode"] = "VIP"

    def prepare_create(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        obj["status"] = {"loadBalancer": {}}

    def prepare_update(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj) -> None:
        spec, old_spec = _spec(obj), old.get("spec", {})
        # patchAllocatedValues: a client that omits allocated values keeps them.
        if spec.get("type") != "ExternalName" and old_spec.get("type") != "ExternalName":
            if not spec.get("clusterIP") and old_spec.get("clusterIP"):
                spec["clusterIP"] = old_spec["clusterIP"]
                spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
            for key in ("ipFamilies", "ipFamilyPolicy"):
                if key not in spec and key in old_spec:
                    spec[key] = copy.deepcopy(old_spec[key])
        if _node_ports_needed(spec) and _node_ports_needed(old_spec):
            old_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort") for p in old_spec.get("ports") or []}
            for port in spec.get("ports") or []:
                if not port.get("nodePort") and old_ports.get((port.get("port"), port.get("protocol"))):
                    port["nodePort"] = old_ports[(port.get("port"), port.get("protocol"))]
        keeps_hc_port = _hc_node_port_needed(spec) and _hc_node_port_needed(old_spec)
        if keeps_hc_port and not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]
        self._drop_type_dependent_fields(spec, old_spec)
        if spec.get("type") != "LoadBalancer":
            obj.setdefault("status", {})["loadBalancer"] = {}

    @staticmethod
    def _drop_type_dependent_fields(spec: Obj, old_spec: Obj) -> None:
        """Fields the old type implied and the new type does not use go away unless the client changed them."""

        def unchanged(key: str) -> bool:
            return spec.get(key) == old_spec.get(key)

        old_type, new_type = old_spec.get("type"), spec.get("type")
        if old_type != "ExternalName" and new_type == "ExternalName" and unchanged("clusterIP"):
            for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                spec.pop(key, None)
        if _node_ports_needed(old_spec) and not _node_ports_needed(spec):
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
        if _hc_node_port_needed(old_spec) and not _hc_node_port_needed(spec) and unchanged("healthCheckNodePort"):
            spec.pop("healthCheckNodePort", None)
        if old_type == "LoadBalancer" and new_type != "LoadBalancer":
            for key in ("loadBalancerClass", "allocateLoadBalancerNodePorts"):
                if unchanged(key):
                    spec.pop(key, None)
        external = ("NodePort", "LoadBalancer")
        if old_type in external and new_type not in external and unchanged("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)

    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        errors: list[FieldError] = []
        spec = obj.get("spec", {})
        kind = spec.get("type")
        if kind not in SERVICE_TYPES:
            errors.append(not_supported("spec.type", kind, SERVICE_TYPES))
        ports = spec.get("ports") or []
        headless = spec.get("clusterIP") == "None"
        if not ports and kind != "ExternalName" and not headless:
            errors.append(required("spec.ports"))
        if kind == "ExternalName":
            name = spec.get("externalName", "")
            if not name:
                errors.append(required("spec.externalName"))
        names: set[str] = set()
        seen_ports: set[tuple[Any, Any]] = set()
        for i, port in enumerate(ports):
            path = f"spec.ports[{i}]"
            name = port.get("name", "")
            if len(ports) > 1 and not name:
                errors.append(required(f"{path}.name"))
            elif name:
                for problem in dns1123_label(name):
                    errors.append(invalid(f"{path}.name", name, problem))
                if name in names:
                    errors.append(duplicate(f"{path}.name", name))
                names.add(name)
            number = port.get("port")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                errors.append(port_error(f"{path}.port", number))
            protocol = port.get("protocol")
            if protocol not in ("TCP", "UDP", "SCTP"):
                errors.append(not_supported(f"{path}.protocol", protocol, ["SCTP", "TCP", "UDP"]))
            if (number, protocol) in seen_ports:
                errors.append(duplicate(path, {"port": number, "protocol": protocol}))
            seen_ports.add((number, protocol))
            target = port.get("targetPort")
            if isinstance(target, int) and not isinstance(target, bool):
                if not 1 <= target <= 65535 and not headless:
                    errors.append(port_error(f"{path}.targetPort", target))
            elif isinstance(target, str) and not _IANA_SVC_NAME.match(target):
                errors.append(
                    invalid(
                        f"{path}.targetPort",
                        target,
                        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                    )
                )
            if port.get("nodePort") and kind not in ("NodePort", "LoadBalancer"):
                errors.append(forbidden(f"{path}.nodePort", "may not be used when `type` is 'ClusterIP'"))
        cluster_ip = spec.get("clusterIP", "")
        if cluster_ip and cluster_ip != "None" and not is_ip(cluster_ip):
            errors.append(invalid("spec.clusterIPs[0]", cluster_ip, "must be empty, 'None', or a valid IP address"))
        for i, ip in enumerate(spec.get("externalIPs") or []):
            if not is_ip(ip):
                errors.append(ip_error(f"spec.externalIPs[{i}]", ip))
        if spec.get("loadBalancerIP") and not is_ip(spec["loadBalancerIP"]):
            errors.append(ip_error("spec.loadBalancerIP", spec["loadBalancerIP"]))
        for i, cidr in enumerate(spec.get("loadBalancerSourceRanges") or []):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                errors.append(invalid(f"spec.loadBalancerSourceRanges[{i}]", cidr, "must be a list of IP ranges"))
        lb_class = spec.get("loadBalancerClass")
        if lb_class is not None:
            if kind != "LoadBalancer":
                errors.append(forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
            for problem in qualified_name(lb_class):
                errors.append(invalid("spec.loadBalancerClass", lb_class, problem))
        policy = spec.get("externalTrafficPolicy")
        if policy:
            if kind not in ("NodePort", "LoadBalancer"):
                errors.append(
                    invalid("spec.externalTrafficPolicy", policy, "may only be set for externally-accessible services")
                )
            elif policy not in ("Cluster", "Local"):
                errors.append(not_supported("spec.externalTrafficPolicy", policy, ["Cluster", "Local"]))
        if spec.get("internalTrafficPolicy") not in (None, "Cluster", "Local"):
            errors.append(
                not_supported("spec.internalTrafficPolicy", spec["internalTrafficPolicy"], ["Cluster", "Local"])
            )
        affinity = spec.get("sessionAffinity")
        if affinity is not None and affinity not in ("ClientIP", "None"):
            errors.append(not_supported("spec.sessionAffinity", affinity, ["ClientIP", "None"]))
        errors += validate_labels(spec.get("selector"), "spec.selector")
        errors += _validate_lb_status(obj.get("status", {}))
        if old is not None:
            old_spec = old.get("spec", {})
            old_class = old_spec.get("loadBalancerClass")
            if old_spec.get("type") == "LoadBalancer" and kind == "LoadBalancer" and old_class != lb_class:
                errors.append(invalid("spec.loadBalancerClass", lb_class, "may not change once set"))
            old_ip = old_spec.get("clusterIP")
            if old_ip and cluster_ip and old_ip != cluster_ip and kind != "ExternalName":
                errors.append(invalid("spec.clusterIPs[0]", [cluster_ip], "may not change once set"))
        return errors

    def finalize(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None, dry_run: bool) -> None:
        allocator = cluster.allocator
        spec = obj["spec"]
        old_spec = (old or {}).get("spec", {})
        reserve = not dry_run
        try:
            if spec.get("type") != "ExternalName":
                ip = spec.get("clusterIP", "")
                if ip != "None" and ip != old_spec.get("clusterIP"):
                    spec["clusterIP"] = allocator.allocate_ip(ip, reserve)
                spec["clusterIPs"] = [spec["clusterIP"]]
                spec.setdefault("ipFamilies", ["IPv6" if ":" in spec["clusterIP"] else "IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
            old_node_ports = {p.get("nodePort") for p in old_spec.get("ports") or [] if p.get("nodePort")}
            if _node_ports_needed(spec):
                for i, port in enumerate(spec.get("ports") or []):
                    wanted = port.get("nodePort", 0)
                    if wanted and wanted in old_node_ports:
                        continue
                    port["nodePort"] = allocator.allocate_node_port(wanted, f"spec.ports[{i}].nodePort", reserve)
            if _hc_node_port_needed(spec):
                wanted = spec.get("healthCheckNodePort", 0)
                if not wanted or wanted != old_spec.get("healthCheckNodePort"):
                    spec["healthCheckNodePort"] = allocator.allocate_node_port(
                        wanted, "spec.healthCheckNodePort", reserve
                    )
        except _AllocationError as exc:
            raise invalid_object(rt.group, rt.kind, obj["metadata"].get("name", ""), [exc.field_error]) from None
        if reserve and old is not None:
            self._release(cluster, old, keep=obj)

    def after_delete(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        self._release(cluster, obj, keep=None)

    @staticmethod
    def _release(cluster: Cluster, old: Obj, keep: Obj | None) -> None:
        old_spec, new_spec = old.get("spec", {}), (keep or {}).get("spec", {})
        if old_spec.get("clusterIP") and old_spec.get("clusterIP") != new_spec.get("clusterIP"):
            cluster.allocator.release_ip(old_spec["clusterIP"])
        kept = {p.get("nodePort") for p in new_spec.get("ports") or []} | {new_spec.get("healthCheckNodePort")}
        for port in [p.get("nodePort") for p in old_spec.get("ports") or []] + [old_spec.get("healthCheckNodePort")]:
            if port and port not in kept:
                cluster.allocator.release_node_port(port)


def _validate_lb_status(status: Obj) -> list[FieldError]:
    errors: list[FieldError] = []
    for i, ingress in enumerate((status.get("loadBalancer") or {}).get("ingress") or []):
        path = f"status.loadBalancer.ingress[{i}]"
        ip = ingress.get("ip")
        if ip and not is_ip(ip):
            errors.append(ip_error(f"{path}.ip", ip))
        hostname = ingress.get("hostname")
        if hostname:
            for problem in dns1123_subdomain(hostname):
                errors.append(invalid(f"{path}.hostname", hostname, problem))
            if is_ip(hostname):
                errors.append(invalid(f"{path}.hostname", hostname, "must be a DNS name, not an IP address"))
        mode = ingress.get("ipMode")
        if ip and mode is None:
            errors.append(required(f"{path}.ipMode", "must be specified when `ip` is set"))
        if mode is not None:
            if not ip:
                errors.append(forbidden(f"{path}.ipMode", "may not be specified when `ip` is not set"))
            elif mode not in ("VIP", "Proxy"):
                errors.append(not_supported(f"{path}.ipMode", mode, ["Proxy", "VIP"]))
    for i, condition in enumerate(status.get("conditions") or []):
        errors += _validate_condition(condition, f"status.conditions[{i}]")
    return errors


def _validate_condition(condition: Obj, path: str) -> list[FieldError]:
    """``metav1.Condition`` rules (type, status, reason, lastTransitionTime)."""
    errors: list[FieldError] = []
    if condition.get("status") not in ("True", "False", "Unknown"):
        errors.append(not_supported(f"{path}.status", condition.get("status", ""), ["False", "True", "Unknown"]))
    if not condition.get("type"):
        errors.append(required(f"{path}.type"))
    if not condition.get("lastTransitionTime"):
        errors.append(required(f"{path}.lastTransitionTime", "must be set"))
    reason = condition.get("reason", "")
    if not reason:
        errors.append(required(f"{path}.reason"))
    elif not re.fullmatch(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?", reason):
        errors.append(
            invalid(
                f"{path}.reason",
                reason,
                "a condition reason must start with alphabetic character, optionally followed by a string of "
                "alphanumeric characters or '_,:', and must end with an alphanumeric character or '_' (e.g. "
                "'my_name',  or 'MY_NAME',  or 'MyName',  or 'ReasonA,ReasonB',  or 'ReasonA:ReasonB', regex used "
                "for validation is '[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?')",
            )
        )
    if len(condition.get("message", "")) > 32768:
        errors.append(too_long(f"{path}.message", 32768))
    return errors


# --- core/v1 Node, ConfigMap, Endpoints -----------------------------------------------------------------


class NodeStrategy(Strategy):
    def prepare_update(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj) -> None:
        # Nodes keep status across spec updates like any kind with a status subresource.
        pass


_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def _validate_config_keys(data: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for key in data or {}:
        if len(key) > 253 or not _CONFIG_KEY.fullmatch(key):
            errors.append(
                invalid(
                    path,
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
                    "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                )
            )
    return errors


class ConfigMapStrategy(Strategy):
    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        errors = _validate_config_keys(obj.get("data"), "data") + _validate_config_keys(
            obj.get("binaryData"), "binaryData"
        )
        for key in set(obj.get("data") or {}) & set(obj.get("binaryData") or {}):
            errors.append(invalid("data", key, "duplicate of key present in binaryData"))
        if (
            old is not None
            and old.get("immutable")
            and (obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"))
        ):
            errors.append(forbidden("data", "field is immutable when `immutable` is set"))
        return errors


# --- core/v1 Secret and ServiceAccount (with the token controller) ----------------------------------------

SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class SecretStrategy(Strategy):
    def defaults(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if string_data:
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = _b64(value)
        for key, value in (obj.get("data") or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except ValueError:
                raise bad_request(
                    'Secret in version "v1" cannot be handled as a Secret: '
                    f"illegal base64 data at input byte 0 (data[{key}])"
                ) from None

    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        errors = _validate_config_keys(obj.get("data"), "data")
        annotations = obj["metadata"].get("annotations") or {}
        if obj.get("type") == SA_TOKEN_TYPE and not annotations.get(SA_NAME_ANNOTATION):
            errors.append(required(f"metadata.annotations[{SA_NAME_ANNOTATION}]"))
        if old is not None:
            if obj.get("type") != old.get("type"):
                errors.append(invalid("type", obj.get("type"), "field is immutable"))
            if old.get("immutable") and obj.get("data") != old.get("data"):
                errors.append(forbidden("data", "field is immutable when `immutable` is set"))
        return errors

    def finalize(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None, dry_run: bool) -> None:
        if not dry_run:
            fill_service_account_token(cluster, obj)

    def after_write(self, cluster: Cluster, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        cluster.auth.index_secret(new)

    def after_delete(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        cluster.auth.unindex_secret(obj)


def fill_service_account_token(cluster: Cluster, secret: Obj) -> bool:
    """What the token controller does for a ``kubernetes.io/service-account-token`` Secret."""
    if secret.get("type") != SA_TOKEN_TYPE:
        return False
    meta = secret["metadata"]
    annotations = meta.setdefault("annotations", {})
    sa_name = annotations.get(SA_NAME_ANNOTATION)
    namespace = meta.get("namespace", "")
    sa_type = cluster.builtin("", "v1", "serviceaccounts")
    account = cluster.store.get(sa_type.key, namespace, sa_name or "")
    data = secret.setdefault("data", {})
    if account is None or data.get("token"):
        return False
    annotations[SA_UID_ANNOTATION] = account["metadata"]["uid"]
    token = cluster.auth.legacy_token(namespace, sa_name or "", account["metadata"]["uid"], meta["name"])
    data["token"] = _b64(token)
    data["ca.crt"] = _b64(cluster.ca_pem)
    data["namespace"] = _b64(namespace)
    return True


class ServiceAccountStrategy(Strategy):
    def after_write(self, cluster: Cluster, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        if old is not None:
            return
        secret_type = cluster.builtin("", "v1", "secrets")
        namespace, name = new["metadata"]["namespace"], new["metadata"]["name"]
        for secret in cluster.store.objects(secret_type.key, namespace):
            annotations = secret["metadata"].get("annotations") or {}
            if secret.get("type") == SA_TOKEN_TYPE and annotations.get(SA_NAME_ANNOTATION) == name:
                updated = copy.deepcopy(secret)
                if fill_service_account_token(cluster, updated):
                    cluster.system_update(secret_type, updated)

    def after_delete(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        secret_type = cluster.builtin("", "v1", "secrets")
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        for secret in cluster.store.objects(secret_type.key, namespace):
            annotations = secret["metadata"].get("annotations") or {}
            if secret.get("type") == SA_TOKEN_TYPE and annotations.get(SA_NAME_ANNOTATION) == name:
                cluster.system_delete(secret_type, namespace, secret["metadata"]["name"])


# --- coordination.k8s.io/v1 Lease -----------------------------------------------------------------------


class LeaseStrategy(Strategy):
    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        errors: list[FieldError] = []
        spec = obj.get("spec", {})
        duration = spec.get("leaseDurationSeconds")
        if duration is not None and duration <= 0:
            errors.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
        transitions = spec.get("leaseTransitions")
        if transitions is not None and transitions < 0:
            errors.append(invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
        return errors


# --- discovery.k8s.io/v1 EndpointSlice ------------------------------------------------------------------

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]


class EndpointSliceStrategy(Strategy):
    def defaults(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        for port in obj.get("ports") or []:
            port.setdefault("name", "")
            port.setdefault("protocol", "TCP")

    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        errors: list[FieldError] = []
        address_type = obj.get("addressType")
        if not address_type:
            errors.append(required("addressType"))
        elif address_type not in ADDRESS_TYPES:
            errors.append(not_supported("addressType", address_type, ADDRESS_TYPES))
        endpoints = obj.get("endpoints") or []
        if len(endpoints) > 1000:
            errors.append(FieldError("too_many", "endpoints", len(endpoints), "must have at most 1000 items"))
        for i, endpoint in enumerate(endpoints):
            addresses = endpoint.get("addresses") or []
            if not addresses:
                errors.append(required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
            elif len(addresses) > 100:
                errors.append(
                    FieldError("too_many", f"endpoints[{i}].addresses", len(addresses), "must have at most 100 items")
                )
            for j, address in enumerate(addresses):
                path = f"endpoints[{i}].addresses[{j}]"
                if address_type == "IPv4" and not (is_ip(address) and ":" not in address):
                    errors.append(invalid(path, address, "must be a valid IPv4 address"))
                elif address_type == "IPv6" and not (is_ip(address) and ":" in address):
                    errors.append(invalid(path, address, "must be a valid IPv6 address"))
                elif address_type == "FQDN":
                    for problem in dns1123_subdomain(address):
                        errors.append(invalid(path, address, problem))
            node_name = endpoint.get("nodeName")
            if node_name:
                for problem in dns1123_subdomain(node_name):
                    errors.append(invalid(f"endpoints[{i}].nodeName", node_name, problem))
        for i, port in enumerate(obj.get("ports") or []):
            number = port.get("port")
            if number is not None and not 1 <= number <= 65535:
                errors.append(port_error(f"ports[{i}].port", number))
            if port.get("protocol") not in ("TCP", "UDP", "SCTP"):
                errors.append(not_supported(f"ports[{i}].protocol", port.get("protocol"), ["SCTP", "TCP", "UDP"]))
        if old is not None and old.get("addressType") != address_type:
            errors.append(invalid("addressType", address_type, "field is immutable"))
        return errors


# --- core/v1 Event and events.k8s.io/v1 Event -------------------------------------------------------------

# core/v1 field -> events.k8s.io/v1 field
_EVENT_FIELDS = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}
_EVENT_FIELDS_BACK = {v: k for k, v in _EVENT_FIELDS.items()}


def _validate_event_type(obj: Obj) -> list[FieldError]:
    kind = obj.get("type")
    if kind and kind not in ("Normal", "Warning"):
        return [not_supported("type", kind, ["Normal", "Warning"])]
    return []


def _legacy_event_errors(
    namespace: str, involved: Obj, event: Obj, reporting_field: str, reporting_controller: str
) -> list[FieldError]:
    """``legacyValidateEvent``: every Event passes it, whichever API version it is written through."""
    errors: list[FieldError] = []
    involved_namespace = involved.get("namespace", "") or ""
    if not event.get("eventTime"):
        if not involved_namespace:
            if namespace not in ("", "default"):
                errors.append(invalid("involvedObject.namespace", "", "does not match event.namespace"))
        elif namespace and namespace != involved_namespace:
            errors.append(invalid("involvedObject.namespace", involved_namespace, "does not match event.namespace"))
    else:
        if not involved_namespace and namespace not in ("default", "kube-system"):
            errors.append(invalid("involvedObject.namespace", "", "does not match event.namespace"))
        elif involved_namespace and namespace != involved_namespace:
            errors.append(invalid("involvedObject.namespace", involved_namespace, "does not match event.namespace"))
        if not reporting_controller:
            errors.append(required(reporting_field))
        for problem in qualified_name(reporting_controller):
            errors.append(invalid(reporting_field, reporting_controller, problem))
        for key in ("reportingInstance", "action", "reason"):
            if not event.get(key):
                errors.append(required(key))
    return errors


class CoreEventStrategy(Strategy):
    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        namespace = obj["metadata"].get("namespace", "")
        errors = _legacy_event_errors(
            namespace, obj.get("involvedObject") or {}, obj, "reportingComponent", obj.get("reportingComponent", "")
        )
        return errors + _validate_event_type(obj)


class EventsV1Strategy(Strategy):
    """events.k8s.io/v1 is another view of the core/v1 Event storage, converted field by field."""

    validation_group = ""  # validated as the core Event: 'Event "x" is invalid: ...'

    def to_external(self, rt: ResourceType, obj: Obj) -> Obj:
        out: Obj = {"apiVersion": rt.api_version, "kind": rt.kind}
        for key, value in obj.items():
            if key in ("apiVersion", "kind"):
                continue
            out[_EVENT_FIELDS.get(key, key)] = value
        out.setdefault("eventTime", None)  # a Go MicroTime without omitempty: legacy events show null
        return out

    def to_storage(self, rt: ResourceType, obj: Obj) -> Obj:
        out: Obj = {"apiVersion": "v1", "kind": "Event"}
        for key, value in obj.items():
            if key in ("apiVersion", "kind"):
                continue
            out[_EVENT_FIELDS_BACK.get(key, key)] = value
        return out

    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        # ValidateEventCreate: the legacy rules (on the core fields), then the strict events.k8s.io ones.
        namespace = obj["metadata"].get("namespace", "")
        errors = _legacy_event_errors(
            namespace, obj.get("regarding") or {}, obj, "reportingController", obj.get("reportingController", "")
        )
        if not obj.get("eventTime"):
            errors.append(required("eventTime"))
        if obj.get("type") not in ("Normal", "Warning"):
            errors.append(invalid("type", "", f"has invalid value: {obj.get('type') or ''}"))
        for key in ("reportingController", "reportingInstance", "action", "reason"):
            if len(obj.get(key, "") or "") > 128:
                errors.append(too_long(key, 128))
        if len((obj.get("note", "") or "").encode()) > 1024:
            errors.append(too_long("note", 1024))
        return errors


# --- rbac.authorization.k8s.io/v1 -----------------------------------------------------------------------

RBAC_GROUP = "rbac.authorization.k8s.io"


class RoleStrategy(Strategy):
    def __init__(self, cluster_scoped: bool) -> None:
        self.cluster_scoped = cluster_scoped

    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        errors: list[FieldError] = []
        for i, rule in enumerate(obj.get("rules") or []):
            path = f"rules[{i}]"
            if not rule.get("verbs"):
                errors.append(required(f"{path}.verbs", "verbs must contain at least one value"))
            if rule.get("nonResourceURLs"):
                if not self.cluster_scoped:
                    errors.append(
                        invalid(
                            f"{path}.nonResourceURLs",
                            rule["nonResourceURLs"],
                            "namespaced rules cannot apply to non-resource URLs",
                        )
                    )
                if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                    errors.append(
                        invalid(
                            f"{path}.nonResourceURLs",
                            rule["nonResourceURLs"],
                            "rules cannot apply to both regular resources and non-resource URLs",
                        )
                    )
                continue
            if not rule.get("apiGroups"):
                errors.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
            if not rule.get("resources"):
                errors.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
        return errors


class BindingStrategy(Strategy):
    def __init__(self, cluster_scoped: bool) -> None:
        self.cluster_scoped = cluster_scoped

    def defaults(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        for subject in obj.get("subjects") or []:
            if subject.get("kind") in ("User", "Group"):
                subject.setdefault("apiGroup", RBAC_GROUP)
            elif subject.get("kind") == "ServiceAccount":
                subject.setdefault("apiGroup", "")

    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        errors: list[FieldError] = []
        ref = obj.get("roleRef") or {}
        if ref.get("apiGroup") != RBAC_GROUP:
            errors.append(not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), [RBAC_GROUP]))
        kinds = ["ClusterRole"] if self.cluster_scoped else ["ClusterRole", "Role"]
        if ref.get("kind") not in kinds:
            errors.append(not_supported("roleRef.kind", ref.get("kind", ""), kinds))
        if not ref.get("name"):
            errors.append(required("roleRef.name"))
        for i, subject in enumerate(obj.get("subjects") or []):
            path = f"subjects[{i}]"
            kind = subject.get("kind")
            if kind not in ("ServiceAccount", "User", "Group"):
                errors.append(not_supported(f"{path}.kind", kind, ["Group", "ServiceAccount", "User"]))
                continue
            if not subject.get("name"):
                errors.append(required(f"{path}.name"))
            if kind == "ServiceAccount":
                if subject.get("apiGroup"):
                    errors.append(not_supported(f"{path}.apiGroup", subject["apiGroup"], [""]))
                if self.cluster_scoped and not subject.get("namespace"):
                    errors.append(required(f"{path}.namespace"))
            elif subject.get("apiGroup") != RBAC_GROUP:
                errors.append(not_supported(f"{path}.apiGroup", subject.get("apiGroup"), [RBAC_GROUP]))
        if old is not None and old.get("roleRef") != obj.get("roleRef"):
            errors.append(invalid("roleRef", ref, "cannot change roleRef"))
        return errors


# --- apiextensions.k8s.io/v1 CustomResourceDefinition ---------------------------------------------------


class CrdStrategy(Strategy):
    def defaults(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        spec = _spec(obj)
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
        spec.setdefault("conversion", {"strategy": "None"})

    def prepare_create(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        obj["status"] = self._status(obj, None)

    def prepare_update(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj) -> None:
        obj["status"] = self._status(obj, old)

    @staticmethod
    def _status(obj: Obj, old: Obj | None) -> Obj:
        spec = obj.get("spec", {})
        stored = list((old or {}).get("status", {}).get("storedVersions") or [])
        for version in spec.get("versions") or []:
            if version.get("storage") and version.get("name") not in stored:
                stored.append(version["name"])
        previous = {c["type"]: c for c in (old or {}).get("status", {}).get("conditions") or []}
        stamp = now()
        conditions = [
            previous.get("NamesAccepted")
            or {
                "type": "NamesAccepted",
                "status": "True",
                "lastTransitionTime": stamp,
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            previous.get("Established")
            or {
                "type": "Established",
                "status": "True",
                "lastTransitionTime": stamp,
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ]
        return {
            "conditions": conditions,
            "acceptedNames": copy.deepcopy(spec.get("names", {})),
            "storedVersions": stored,
        }

    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        errors: list[FieldError] = []
        spec = obj.get("spec", {})
        group = spec.get("group", "")
        names = spec.get("names", {})
        plural = names.get("plural", "")
        name = obj["metadata"].get("name", "")
        if not group:
            errors.append(required("spec.group"))
        elif "." not in group:
            errors.append(invalid("spec.group", group, "should be a domain with at least one dot"))
        if name and plural and group and name != f"{plural}.{group}":
            errors.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
        if spec.get("scope") not in ("Cluster", "Namespaced"):
            errors.append(not_supported("spec.scope", spec.get("scope", ""), ["Cluster", "Namespaced"]))
        for key in ("plural", "singular"):
            value = names.get(key, "")
            if not value:
                errors.append(required(f"spec.names.{key}"))
            else:
                for problem in dns1035_label(value):
                    errors.append(invalid(f"spec.names.{key}", value, problem))
        for key in ("kind", "listKind"):
            value = names.get(key, "")
            if not value:
                errors.append(required(f"spec.names.{key}"))
            elif not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", value) or value[0].islower():
                errors.append(
                    invalid(
                        f"spec.names.{key}",
                        value,
                        "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
                    )
                )
        versions = spec.get("versions") or []
        if not versions:
            errors.append(required("spec.versions", "must have exactly one version marked as storage version"))
        if sum(1 for v in versions if v.get("storage")) != 1 and versions:
            errors.append(invalid("spec.versions", versions, "must have exactly one version marked as storage version"))
        seen: set[str] = set()
        for i, version in enumerate(versions):
            path = f"spec.versions[{i}]"
            vname = version.get("name", "")
            for problem in dns1035_label(vname):
                errors.append(invalid(f"{path}.name", vname, problem))
            if vname in seen:
                errors.append(invalid(f"{path}.name", vname, "must be unique"))
            seen.add(vname)
            open_api = (version.get("schema") or {}).get("openAPIV3Schema")
            if open_api is None:
                errors.append(required(f"{path}.schema.openAPIV3Schema", "schemas are required"))
            else:
                errors += crd_schema.structural_errors(open_api, f"{path}.schema.openAPIV3Schema")
        if old is not None:
            old_spec = old.get("spec", {})
            if old_spec.get("scope") != spec.get("scope"):
                errors.append(invalid("spec.scope", spec.get("scope"), "field is immutable"))
            if old_spec.get("group") != group:
                errors.append(invalid("spec.group", group, "field is immutable"))
            if old_spec.get("names", {}).get("plural") != plural:
                errors.append(invalid("spec.names.plural", plural, "field is immutable"))
        return errors

    def after_write(self, cluster: Cluster, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        cluster.register_crd(new)

    def before_delete(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        types = cluster.registry.custom_types(obj["metadata"]["name"])
        if types:
            custom = types[0]
            for item in cluster.store.objects(custom.key):
                cluster.system_delete(custom, item["metadata"].get("namespace", ""), item["metadata"]["name"])

    def after_delete(self, cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
        types = cluster.registry.custom_types(obj["metadata"]["name"])
        cluster.unregister_crd(obj["metadata"]["name"])
        if types:
            cluster.store.close_watchers(types[0].key)


class CustomResourceStrategy(Strategy):
    """Objects of a CRD: schema pruning, defaulting and validation; generation on any non-metadata change."""

    def validate(self, cluster: Cluster, rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
        if rt.schema is None:
            return []
        return crd_schema.validate(obj, rt.schema)


def dns_label_errors(value: str) -> list[str]:
    return dns1123_label(value)
