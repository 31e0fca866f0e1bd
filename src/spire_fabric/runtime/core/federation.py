"""Federation bootstrap through SPIRE's API, the same on every target.

Why bootstrap at all: SPIRE refuses an entry that federates with a trust domain whose
bundle it does not hold, and a relationship alone fetches the peer's bundle only on its
first refresh. So each federating server gets its peer's current bundle from the peer's
Server API first, before any federating entry is registered (DESIGN.md).

Who owns the relationship: the core, unless a controller manager does (its
ClusterFederatedTrustDomain resources); then the core only puts the bundle there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spire_fabric.identity import SpiffeId
from spire_fabric.runtime.deployment import Change
from spire_fabric.server import (
    Bundle,
    FederationRelationship,
    HttpsSpiffeProfile,
    HttpsWebProfile,
    NotFoundError,
)
from spire_fabric.topology import (
    Federation,
    Target,
    Topology,
    bundle_endpoint_url,
    endpoint_spiffe_id,
)

if TYPE_CHECKING:
    # annotations only: the client brings gRPC, which a local `plan` does not need
    from spire_fabric.server import SpireServerClient

__all__ = ["FederationWork"]

_TIMEOUT_S = 15.0


@dataclass
class FederationWork:
    """What federation needs on ``target``, as a plan or done.

    ``server_client`` opens a client of a server's API by name (the deployment's
    ``server``). ``relationships`` False leaves relationships to a controller manager."""

    topology: Topology
    target: Target
    server_client: Callable[[str], SpireServerClient]
    relationships: bool = True

    def changes(self, running: set[str]) -> list[Change]:
        """What :meth:`apply` would do, for federations whose two servers run."""
        return self._work(running, apply=False)

    def apply(self, running: set[str]) -> None:
        """Create or correct relationships and put missing bundles in place."""
        self._work(running, apply=True)

    def _relationship(self, fed: Federation) -> FederationRelationship:
        url = bundle_endpoint_url(self.topology, fed, self.target)
        profile: HttpsSpiffeProfile | HttpsWebProfile = (
            HttpsSpiffeProfile(endpoint_spiffe_id=SpiffeId.parse(endpoint_spiffe_id(fed)))
            if fed.profile == "https_spiffe"
            else HttpsWebProfile()
        )
        return FederationRelationship(fed.trust_domain, url, profile)

    def _work(self, running: set[str], *, apply: bool) -> list[Change]:
        changes: list[Change] = []
        for fed in self.topology.federations:
            remote = next(iter(self.topology.servers_of(fed.trust_domain)), None)
            if remote is None or not {fed.server, remote.name} <= running:
                continue
            name = f"{fed.server} -> {fed.trust_domain}"
            want = self._relationship(fed)
            with self.server_client(fed.server) as own:
                existing = self._existing(own, fed) if self.relationships else None
                has_bundle = self._has_bundle(own, fed)
                create = self.relationships and existing is None
                update = existing is not None and (
                    existing.bundle_endpoint_url != want.bundle_endpoint_url
                    or existing.profile != want.profile
                )
                if create:
                    changes.append(Change("create", "federation", name,
                                          f"{fed.profile} {want.bundle_endpoint_url}"))  # fmt: skip
                elif update:
                    changes.append(
                        Change("update", "federation", name, want.bundle_endpoint_url,
                               ("bundle_endpoint_url", "bundle_endpoint_profile"))
                    )  # fmt: skip
                if not has_bundle and not create:
                    changes.append(Change("set", "federated-bundle", name,
                                          "bootstrap from the API"))  # fmt: skip
                if not apply or not (create or update or not has_bundle):
                    continue
                with self.server_client(remote.name) as peer:
                    bundle: Bundle = peer.get_bundle(timeout=_TIMEOUT_S)
                if create:
                    first = FederationRelationship(
                        fed.trust_domain, want.bundle_endpoint_url, want.profile, bundle
                    )
                    own.create_federation_relationships(
                        [first], timeout=_TIMEOUT_S
                    ).raise_for_errors()
                elif update:
                    own.update_federation_relationships(
                        [want],
                        fields=["bundle_endpoint_url", "bundle_endpoint_profile"],
                        timeout=_TIMEOUT_S,
                    ).raise_for_errors()
                if not has_bundle and not create:
                    own.set_federated_bundles([bundle], timeout=_TIMEOUT_S).raise_for_errors()
        return changes

    @staticmethod
    def _existing(client: SpireServerClient, fed: Federation) -> FederationRelationship | None:
        try:
            return client.get_federation_relationship(fed.trust_domain, timeout=_TIMEOUT_S)
        except NotFoundError:
            return None

    @staticmethod
    def _has_bundle(client: SpireServerClient, fed: Federation) -> bool:
        try:
            client.get_federated_bundle(fed.trust_domain, timeout=_TIMEOUT_S)
        except NotFoundError:
            return False
        return True
