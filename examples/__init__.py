"""The three example workloads of the enterprise architecture (see docs/architecture.md).

Each is a package run as ``python -m examples.<name>`` from the repository root, with
``SPIFFE_ENDPOINT_SOCKET`` set to its SPIRE agent's socket. They use only the public API
of ``spire_fabric`` and the standard library, so they double as "how to" code.
"""
