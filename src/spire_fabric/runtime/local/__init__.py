"""The `local` target: a topology as real SPIRE processes on this machine, supervised.

The public face of the target; its modules each hold one concern (state and lock, process
plan, SPIRE bootstrap, waits, status, plan).
"""

from spire_fabric.runtime.core import UpError, entry_owner
from spire_fabric.runtime.local.deployment import LocalDeployment, server_tiers
from spire_fabric.runtime.local.localize import (
    DEFAULT_PORT_BASE,
    LocalizeError,
    LocalSettings,
    localize,
)
from spire_fabric.runtime.local.state import StateError, default_state_dir, state_lock
from spire_fabric.runtime.local.waits import http_ok

__all__ = [
    "DEFAULT_PORT_BASE",
    "LocalDeployment",
    "LocalSettings",
    "LocalizeError",
    "StateError",
    "UpError",
    "default_state_dir",
    "entry_owner",
    "http_ok",
    "localize",
    "server_tiers",
    "state_lock",
]
