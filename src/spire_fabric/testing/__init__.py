"""Real SPIRE for tests: server and agent processes on loopback, and pytest fixtures.

Use the fixtures with `pytest_plugins = ["spire_fabric.testing.pytest_plugin"]` in a
conftest.py. They fail (never skip) when the pinned SPIRE binaries cannot be had.
"""

from spire_fabric.testing._processes import (
    SpireAgentProcess,
    SpireProcessError,
    SpireServerProcess,
    current_uid_selector,
    free_port,
    short_tempdir,
)
from spire_fabric.testing.databases import DatabaseError, MariaDbServer, PostgresServer

__all__ = [
    "DatabaseError",
    "MariaDbServer",
    "PostgresServer",
    "SpireAgentProcess",
    "SpireProcessError",
    "SpireServerProcess",
    "current_uid_selector",
    "free_port",
    "short_tempdir",
]
