"""Pure models shared by the controller, the speaker and the dataplane.

Nothing here imports kopf, kubernetes, pyroute2, scapy or subprocess: plain data and functions only.
"""
