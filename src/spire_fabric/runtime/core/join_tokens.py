"""Join tokens for agents that attest with one, minted the same way on every target."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from spire_fabric.identity import agent_alias_id, join_token_agent_id
from spire_fabric.runtime.core.errors import UpError
from spire_fabric.server import NotFoundError, SpireApiError
from spire_fabric.topology import Agent, Topology

if TYPE_CHECKING:
    # annotations only: the client brings gRPC, which a local `plan` does not need
    from spire_fabric.server import SpireServerClient

__all__ = ["JOIN_TOKEN_TTL_S", "mint_join_token"]

# Long enough for an agent that waits on its image; a token attests once and is then gone.
JOIN_TOKEN_TTL_S = 3600


def mint_join_token(
    client: SpireServerClient, topology: Topology, agent: Agent, replaces: str | None = None
) -> str:
    """A new token for ``agent`` under its alias ID (the entries hang on the alias).
    ``replaces``: the token the agent attested with before; that agent is evicted, so the
    old identity cannot come back."""
    td = topology.server(agent.server).trust_domain
    try:
        token = client.create_join_token(
            ttl=JOIN_TOKEN_TTL_S, agent_id=agent_alias_id(td, agent.name)
        ).value
        if replaces is not None:
            with contextlib.suppress(NotFoundError):
                client.delete_agent(join_token_agent_id(td, replaces))
    except SpireApiError as err:
        raise UpError(f"join token for {agent.name} on {agent.server}: {err}") from err
    return token
