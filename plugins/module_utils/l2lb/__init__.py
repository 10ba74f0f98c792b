"""The baremetal.l2lb inventory model: pools, announcement policies, label selectors, IP ranges.

This package is the single source of the model. Ansible modules import it as
``ansible_collections.baremetal.l2lb.plugins.module_utils.l2lb`` and the node agent ships the very
same files as ``l2lb_agent.model``. It uses only the standard library and relative imports so that
both can load it unchanged.
"""
