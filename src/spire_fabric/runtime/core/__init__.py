"""The installer core: what `up` and `plan` do the same way on every target.

Why a core: the CA hierarchy, federation bootstrap, join tokens and registration entries
are decided by the topology and done through SPIRE's own API, whatever runs SPIRE. Written
once here against :class:`~spire_fabric.runtime.Deployment` (and a server-client factory),
the targets only materialise components and wait for them, as a Terraform provider only
creates and reads while the core owns plan and apply.
"""

from spire_fabric.runtime.core.ca import CaStore
from spire_fabric.runtime.core.errors import UpError
from spire_fabric.runtime.core.federation import FederationWork
from spire_fabric.runtime.core.join_tokens import JOIN_TOKEN_TTL_S, mint_join_token
from spire_fabric.runtime.core.registrations import (
    apply_registrations,
    entry_changes,
    entry_owner,
    registration_entries,
)

__all__ = [
    "JOIN_TOKEN_TTL_S",
    "CaStore",
    "FederationWork",
    "UpError",
    "apply_registrations",
    "entry_changes",
    "entry_owner",
    "mint_join_token",
    "registration_entries",
]
