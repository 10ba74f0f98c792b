"""Benchmarks of baremetal.l2lb: API load, failover, ARP and NDP responder, IPAM/scheduling, Ansible wall time.

``python -m benchmarks.run [--size smoke|full] [--only api,failover,arp,ipam,ansible]`` prints the tables
and writes ``benchmarks/RESULTS.md``. These are measurements, not timed tests: a table reports what was
measured (and, where a number is computed from a formula instead, says so), whether a goal was met, and why
not when it was missed.
"""
