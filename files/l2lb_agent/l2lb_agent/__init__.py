"""l2lb-agent: the baremetal.l2lb node agent (heartbeat, elected controller, ARP speaker).

``l2lb_agent.model`` is the collection's ``plugins/module_utils/l2lb`` (a symlink in the source tree,
real files in the installed package): one model for the Ansible modules and the agent.
"""

__version__ = "0.1.0"
