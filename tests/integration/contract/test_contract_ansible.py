"""Contract: the kubernetes.core Ansible modules work against kube-apiserver, idempotently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from controlplane import ControlPlane

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    kc: "{{ lookup('env', 'K8S_AUTH_KUBECONFIG') }}"
  tasks:
    - name: Namespace
      kubernetes.core.k8s:
        kubeconfig: "{{ kc }}"
        definition: {apiVersion: v1, kind: Namespace, metadata: {name: ansible-contract}}
    - name: CRD
      kubernetes.core.k8s:
        kubeconfig: "{{ kc }}"
        wait: true
        wait_condition: {type: Established, status: "True"}
        definition:
          apiVersion: apiextensions.k8s.io/v1
          kind: CustomResourceDefinition
          metadata: {name: widgets.contract.l2lb.io}
          spec:
            group: contract.l2lb.io
            scope: Namespaced
            names: {plural: widgets, singular: widget, kind: Widget}
            versions:
              - name: v1
                served: true
                storage: true
                schema:
                  openAPIV3Schema:
                    type: object
                    properties:
                      spec: {type: object, properties: {size: {type: integer, default: 1}}}
    - name: Custom object
      kubernetes.core.k8s:
        kubeconfig: "{{ kc }}"
        definition:
          apiVersion: contract.l2lb.io/v1
          kind: Widget
          metadata: {name: w, namespace: ansible-contract}
          spec: {}
    - name: Service, applied
      kubernetes.core.k8s:
        kubeconfig: "{{ kc }}"
        apply: true
        definition:
          apiVersion: v1
          kind: Service
          metadata: {name: web, namespace: ansible-contract, annotations: {l2lb.io/ips: 198.18.100.5}}
          spec: {type: LoadBalancer, ports: [{name: http, port: 80}]}
    - name: Read back
      kubernetes.core.k8s_info:
        kubeconfig: "{{ kc }}"
        api_version: contract.l2lb.io/v1
        kind: Widget
        namespace: ansible-contract
"""


def test_kubernetes_core_modules_are_idempotent(server: ControlPlane, tmp_path: Path) -> None:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    env = dict(
        os.environ,
        K8S_AUTH_KUBECONFIG=str(kubeconfig),
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
    runs = []
    for _ in range(2):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        runs.append(json.loads(done.stdout))
    assert runs[0]["stats"]["localhost"]["changed"] == 4
    assert runs[1]["stats"]["localhost"]["changed"] == 0, "the second run must change nothing"
    read_back = runs[1]["plays"][0]["tasks"][-1]["hosts"]["localhost"]["resources"]
    assert [(w["metadata"]["name"], w["spec"]) for w in read_back] == [("w", {"size": 1})]
