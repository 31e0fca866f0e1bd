"""SPIRE Agent admin API client: Delegated Identity, Debug and Logger on the admin socket.

    from spire_fabric.agent import SpireAgentClient

    with SpireAgentClient("/run/spire/agent/admin/admin.sock") as agent:
        with agent.subscribe_to_x509_svids(["k8s:pod-uid:1234"]) as updates:
            for update in updates:
                ...

`AsyncSpireAgentClient` is the same API for asyncio (the hand-written one; the blocking
client is generated from it by scripts/gen-sync). Errors, models and retry rules are the
Server API client's (`spire_fabric.server`); who may call: see `spire_fabric.agent._api`.
"""

from spire_fabric.agent._api import AgentInfo, X509SvidUpdate
from spire_fabric.agent._async_client import AsyncSpireAgentClient, AsyncSubscription
from spire_fabric.agent._client import SpireAgentClient, Subscription

__all__ = [
    "AgentInfo",
    "AsyncSpireAgentClient",
    "AsyncSubscription",
    "SpireAgentClient",
    "Subscription",
    "X509SvidUpdate",
]
