# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of the interface_info module: interfaces, which match policy regexes, which hold an IP's subnet.

Pure functions over :class:`netinfo.Interface` lists (the listing itself is ``netinfo.list_interfaces``), so
the report is unit-tested with fake interfaces.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb.netinfo import (
    Interface,
    attached_interfaces,
    compile_interface_patterns,
    name_matches,
)


class InterfaceFactsError(ValueError):
    """An option the report cannot use; the message names the option entry and the fix."""


def check_ips(ips: Sequence[str], field_name: str = "ips") -> list[str]:
    """The addresses in canonical form; InterfaceFactsError naming every entry that is not an IP address."""
    canonical, bad = [], []
    for position, value in enumerate(ips):
        try:
            canonical.append(str(ipaddress.ip_address(str(value).strip())))
        except ValueError:
            bad.append(f"{field_name}[{position}] {value!r}")
    if bad:
        raise InterfaceFactsError(f"{', '.join(bad)}: not an IP address (write a single address such as 198.18.0.241)")
    return canonical


def no_match_warning(patterns: Sequence[str], interfaces: Sequence[Interface]) -> str:
    """What to tell the user when the patterns select nothing: the patterns and the names that do exist."""
    names = ", ".join(i.name for i in interfaces) or "none"
    wanted = " or ".join(patterns)
    return (
        f"no interface on this host matches {wanted}; interfaces here: {names} "
        "(patterns are unanchored regular expressions, as in Cilium's L2 announcement policy)"
    )


def interface_report(interfaces: Sequence[Interface], patterns: Sequence[str], ips: Sequence[str]) -> dict[str, Any]:
    """``interfaces`` (facts + ``matches``), ``matching`` names, ``ips`` ({ip: attached, interfaces, subnets})
    and ``warnings``; InterfaceFactsError for a bad pattern or address."""
    try:
        compiled = compile_interface_patterns(patterns, field_name="patterns")
    except ValueError as exc:
        raise InterfaceFactsError(f"{exc}; fix the regular expression") from None
    canonical = check_ips(ips)

    entries = []
    for iface in interfaces:
        entry = iface.to_dict()
        entry["matches"] = name_matches(iface.name, compiled)
        entries.append(entry)
    matching = [e["name"] for e in entries if e["matches"]]

    by_ip: dict[str, dict[str, Any]] = {}
    for ip in canonical:
        holders = attached_interfaces(ip, interfaces)
        address = ipaddress.ip_address(ip)
        subnets = sorted(
            {
                subnet
                for iface in holders
                for subnet in iface.subnets
                if ipaddress.ip_network(subnet).version == address.version and address in ipaddress.ip_network(subnet)
            }
        )
        by_ip[ip] = {
            "attached": bool(holders),
            "interfaces": [i.name for i in holders],
            "matching_interfaces": [i.name for i in holders if i.name in matching],
            "subnets": subnets,
        }

    warnings = []
    if patterns and not matching:
        warnings.append(no_match_warning(patterns, interfaces))
    return {"interfaces": entries, "matching": matching, "ips": by_ip, "warnings": warnings}
