#!/usr/bin/python
# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: connect to service IPs and ports from this host, and read what the server says first."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tcp_probe
short_description: Connect to LoadBalancer IPs over TCP and read which backend answered
version_added: "0.2.0"
description:
  - Opens one TCP connection to each of I(targets) from the target host (all at once) and reports whether it
    connected, how fast, and the first line the server sent within I(read_timeout) seconds, if any.
  - Servers that speak first (SSH, SMTP, the lab's backends, which answer with their own name) tell this way
    which backend, and so which node, served the connection; for a server that waits for the client (HTTP) the
    answer is empty and the check is the connection alone. Nothing is sent.
  - The result list feeds the C(tcp) argument of the P(baremetal.l2lb.verify_report#filter) filter.
author:
  - baremetal.l2lb contributors
extends_documentation_fragment:
  - baremetal.l2lb.attributes.read_only
options:
  targets:
    description:
      - What to connect to, each C({ip, port}) and optionally C(service) (carried into the result), as
        P(baremetal.l2lb.verify_tcp_targets#filter) returns them.
    type: list
    elements: dict
    required: true
  timeout:
    description: Seconds to wait for each connection to be accepted.
    type: float
    default: 3
  read_timeout:
    description: Seconds to wait, once connected, for the server's first line; 0 does not read.
    type: float
    default: 0.5
"""

EXAMPLES = r"""
- name: Connect to every TCP port of every service IP
  baremetal.l2lb.tcp_probe:
    targets: "{{ services.services | baremetal.l2lb.verify_tcp_targets }}"
  register: tcp
"""

RETURN = r"""
results:
  description: One entry per target, in the order given.
  returned: always
  type: list
  elements: dict
  sample:
    - {service: default/web, ip: 198.18.0.241, port: 80, ok: true, error: "", connect_ms: 0.8,
       answer: "web-7d9c@node3"}
"""

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible.module_utils.basic import AnsibleModule

MAX_ANSWER = 200  # characters of the first line kept


def probe(target: dict[str, Any], timeout: float, read_timeout: float) -> dict[str, Any]:
    result: dict[str, Any] = {
        "service": target.get("service"),
        "ip": str(target["ip"]),
        "port": int(target["port"]),
        "ok": False,
        "error": "",
        "connect_ms": None,
        "answer": "",
    }
    started = time.monotonic()
    try:
        conn = socket.create_connection((result["ip"], result["port"]), timeout=timeout)
    except OSError as exc:
        result["error"] = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return result
    with conn:
        result["ok"] = True
        result["connect_ms"] = round((time.monotonic() - started) * 1000, 2)
        if read_timeout > 0:
            conn.settimeout(read_timeout)
            data = b""
            try:
                while b"\n" not in data and len(data) < 4096 and (chunk := conn.recv(4096)):
                    data += chunk
            except OSError:
                pass  # a server that does not speak first: the connection is the check
            result["answer"] = data.decode("utf-8", "replace").split("\n", 1)[0].strip()[:MAX_ANSWER]
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "targets": {"type": "list", "elements": "dict", "required": True},
            "timeout": {"type": "float", "default": 3.0},
            "read_timeout": {"type": "float", "default": 0.5},
        },
        supports_check_mode=True,
    )
    targets = module.params["targets"]
    for index, target in enumerate(targets):
        try:
            port = int(target.get("port"))
            ip = str(target.get("ip") or "")
            if not ip or not 0 < port < 65536:
                raise ValueError
        except (TypeError, ValueError):
            module.fail_json(
                msg=f"targets[{index}] is {target!r}: each target needs an ip and a port (1-65535), "
                "as verify_tcp_targets returns them"
            )
            return
    if module.params["timeout"] <= 0 or module.params["read_timeout"] < 0:
        module.fail_json(msg="timeout must be more than 0 and read_timeout 0 or more (seconds)")
        return
    with ThreadPoolExecutor(max_workers=max(1, min(32, len(targets)))) as pool:
        results = list(pool.map(lambda t: probe(t, module.params["timeout"], module.params["read_timeout"]), targets))
    module.exit_json(changed=False, results=results)


if __name__ == "__main__":
    main()
