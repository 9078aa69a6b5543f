"""Everything that makes ironlb run and testable on one machine.

An embedded API server, a network-namespace lab built from containerlab topologies, and a user-mode-linux
runner for an IPVS-capable kernel. Components never import this package; the lab and the tests use them.
"""
