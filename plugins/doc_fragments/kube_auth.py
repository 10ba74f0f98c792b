# Copyright: baremetal.l2lb contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared documentation of the Kubernetes connection options (same names as kubernetes.core)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file. Defaults to C(K8S_AUTH_KUBECONFIG), then C(~/.kube/config).
    type: path
  context:
    description: The kubeconfig context to use.
    type: str
  host:
    description: API server URL, instead of a kubeconfig.
    type: str
  api_key:
    description: Bearer token, with I(host).
    type: str
  ca_cert:
    description: CA bundle that signs the API server's certificate, with I(host).
    type: path
  validate_certs:
    description: Verify the API server's certificate.
    type: bool
    default: true
requirements:
  - kubernetes >= 24.2.0 (Python library)
"""
