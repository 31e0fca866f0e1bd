"""Two real SPIRE trust domains, td-a.test and td-b.test, federated both ways.

One agent per trust domain; this test process is the workload of both (unix:uid). Several
identities per agent are told apart by entry hint, picked with ``pick_by_hint``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spire_fabric._wait import wait_until
from spire_fabric.identity import TrustDomain
from spire_fabric.testing import SpireAgentProcess, SpireServerProcess, current_uid_selector
from spire_fabric.workload import X509Source, pick_by_hint

TD_A = TrustDomain("td-a.test")
TD_B = TrustDomain("td-b.test")
SERVICE_A = "spiffe://td-a.test/service-a"
SERVICE_B = "spiffe://td-b.test/service-b"
INTRUDER_B = "spiffe://td-b.test/intruder"


@dataclass
class Federated:
    server_a: SpireServerProcess
    server_b: SpireServerProcess
    agent_a: SpireAgentProcess
    agent_b: SpireAgentProcess

    def register(self, spiffe_id: str, hint: str, *, x509_svid_ttl: int | None = None) -> None:
        """An entry for this process in the ID's trust domain, federating with the other."""
        a_side = spiffe_id.startswith("spiffe://td-a.test/")
        server, agent = (self.server_a, self.agent_a) if a_side else (self.server_b, self.agent_b)
        other = TD_B if a_side else TD_A
        server.create_entry(
            spiffe_id,
            agent.spiffe_id,
            [current_uid_selector()],
            federates_with=[other.name],
            x509_svid_ttl=x509_svid_ttl,
            hint=hint,
        )

    def x509_source(self, spiffe_id: str, hint: str, timeout: float = 60.0) -> X509Source:
        """An X509Source for the hinted SVID, once it also holds the federated bundle."""
        agent = self.agent_a if spiffe_id.startswith("spiffe://td-a.test/") else self.agent_b
        source = X509Source(
            endpoint=agent.endpoint, picker=pick_by_hint(hint), first_update_timeout=timeout
        )
        try:
            wait_for(
                lambda: (
                    str(source.get_x509_svid().spiffe_id) == spiffe_id
                    and all(source.get_x509_bundle_for_trust_domain(td) for td in (TD_A, TD_B))
                ),
                timeout,
                f"{spiffe_id} (hint {hint!r}) with bundles of both trust domains",
            )
        except BaseException:
            source.close()
            raise
        return source


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    wait_until(condition, timeout, what, error=TimeoutError)


def start_federated(server_factory, agent_factory, **server_kwargs) -> Federated:
    server_a = server_factory("td-a.test", federation=True, **server_kwargs)
    server_b = server_factory("td-b.test", federation=True, **server_kwargs)
    server_a.federate_with(server_b)
    server_b.federate_with(server_a)
    return Federated(server_a, server_b, agent_factory(server_a), agent_factory(server_b))
