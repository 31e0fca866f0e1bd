"""SPIRE's own SPIFFE ID conventions, and spire_fabric's agent aliases, spelled once.

SPIRE names itself and its agents by fixed paths (pkg/common/idutil in SPIRE):
the server is `spiffe://<td>/spire/server`, an agent attested with a join token is
`spiffe://<td>/spire/agent/join_token/<token>`. spire_fabric gives agents stable aliases
(created with the join token, or per service account on Kubernetes) so that entries
survive re-attestation: `spiffe://<td>/spire-fabric/agent/<name>` and
`spiffe://<td>/spire-fabric/agents/<namespace>/<service account>`.
"""

from __future__ import annotations

from ._spiffe_id import SpiffeId, TrustDomain

__all__ = [
    "agent_alias_id",
    "as_trust_domain",
    "installer_admin_id",
    "join_token_agent_id",
    "node_alias_id",
    "spire_server_id",
]


def as_trust_domain(value: TrustDomain | str) -> TrustDomain:
    """`value` as a TrustDomain: returned as is, or parsed from a name or SPIFFE ID."""
    return value if isinstance(value, TrustDomain) else TrustDomain.parse(value)


def spire_server_id(trust_domain: TrustDomain | str) -> SpiffeId:
    """The SPIFFE ID of the SPIRE server of `trust_domain`: `spiffe://<td>/spire/server`."""
    return SpiffeId.from_parts(as_trust_domain(trust_domain), "spire", "server")


def join_token_agent_id(trust_domain: TrustDomain | str, token: str) -> SpiffeId:
    """The ID SPIRE gives an agent attested with join token `token`."""
    return SpiffeId.from_parts(as_trust_domain(trust_domain), "spire", "agent", "join_token", token)


def agent_alias_id(trust_domain: TrustDomain | str, agent_name: str) -> SpiffeId:
    """spire_fabric's stable alias of one agent (named in the topology)."""
    return SpiffeId.from_parts(as_trust_domain(trust_domain), "spire-fabric", "agent", agent_name)


def node_alias_id(
    trust_domain: TrustDomain | str, namespace: str, service_account: str
) -> SpiffeId:
    """spire_fabric's node alias on Kubernetes: every node attested by one service account."""
    return SpiffeId.from_parts(
        as_trust_domain(trust_domain), "spire-fabric", "agents", namespace, service_account
    )


def installer_admin_id(trust_domain: TrustDomain | str) -> SpiffeId:
    """The ID the installer uses on a server's TCP API where it cannot use the local socket
    (a server in a pod): listed in the server's ``admin_ids``, and only ever held by short-lived
    X.509-SVIDs minted through that server's own socket."""
    return SpiffeId.from_parts(as_trust_domain(trust_domain), "spire-fabric", "installer")
