"""spire_fabric: a Python toolkit for SPIFFE/SPIRE.

Topology builders, SPIRE Server/Agent API clients, a workload SDK with federated mTLS on the
stdlib `ssl` module, and an installer that makes a multi-cluster SPIRE architecture real.
"""

__version__ = "0.1.0"
