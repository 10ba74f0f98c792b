"""The speaker: answers ARP for the service IPs scheduled to this node.

``arp`` builds and parses frames (pure), ``responder`` owns the wire, ``runner`` runs one standalone.
"""
