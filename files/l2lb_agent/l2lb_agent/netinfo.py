"""Interface facts for the agent.

The implementation lives with the shared model (``plugins/module_utils/l2lb/netinfo.py``, shipped here as
``l2lb_agent.model.netinfo``) so the ``interface_info`` Ansible module and the agent use the same code.
"""

from .model.netinfo import *  # noqa: F403  (re-export the whole public API)
