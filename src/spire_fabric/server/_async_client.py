"""The SPIRE Server API client, for asyncio (grpc.aio) and blocking code.

The asyncio client is the one written by hand; `scripts/gen-sync` generates the blocking
twin from it (the same class name without `Async`, the same methods without `await`).

Every method takes `timeout=` (seconds, overriding the client default) that bounds each
RPC it makes -- one page of a listing, one chunk of a batch -- including retries.
Retry rule per method: "retried" methods are repeated on transient failures
(UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED) with backoff; "sent once" methods are not
re-sent (a second attempt could duplicate or misreport), but wait for the connection to
be ready before sending, so a server restart delays them rather than failing them.
The `list_*` methods return an async iterator that fetches page by page, one page ahead.
"""

from __future__ import annotations

import asyncio  # ASYNC
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc
from cryptography import x509

from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.server._calls import Batch, Call, Paged
from spire_fabric.server._client_config import ClientBase
from spire_fabric.server._errors import SpireApiError
from spire_fabric.server._models import (
    AttestedAgent,
    AuthorityState,
    AuthorityStates,
    BatchResult,
    Bundle,
    Entry,
    EntryField,
    FederationRelationship,
    JoinToken,
    JwtAuthority,
    LoggerLevels,
    LogLevel,
    MatchBehavior,
    MintedJwtSvid,
    MintedX509Svid,
    SelectorLike,
    ServerInfo,
    X509Authority,
)
from spire_fabric.server._requests import AuthorityKind
from spire_fabric.server._transport import open_aio

if True:  # ASYNC
    pass
else:
    from concurrent.futures import ThreadPoolExecutor

T = TypeVar("T")


class AsyncSpireServerClient(ClientBase):
    """Client for one SPIRE server.

    `address` is the server's local API socket (`unix:///run/spire/server/api.sock` or a
    plain path) or, for remote admin, `host:port` together with `svid_source` (an admin
    X.509-SVID) and `bundle_source`; see `spire_fabric.server._transport` for exactly
    how the server is authenticated. Use `async with AsyncSpireServerClient(...) as client:`,
    or `await client.close()`.
    """

    def __init__(self, address: str, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self._channel = open_aio(self._spec)
        self._make_stubs(self._channel)

    async def close(self) -> None:
        """Close the channel (and the admin tunnel, if one was opened). Idempotent."""
        if not self._closed:
            self._closed = True
            await self._channel.close()
            self._spec.close()

    async def __aenter__(self) -> AsyncSpireServerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- sending -----------------------------------------------------------------------

    async def _attempt(self, call: Call[T], deadline: float) -> T:
        method, remaining = self._method(call, deadline)
        try:
            response = await method(
                call.request, timeout=remaining, wait_for_ready=not call.idempotent
            )
        except grpc.RpcError as err:
            raise self._rpc_error(err, call) from err
        return call.parse(response)

    async def _send(self, call: Call[T], timeout: float | None) -> T:
        deadline = self._deadline(timeout)
        if not call.idempotent:
            return await self._attempt(call, deadline)
        async for attempt in self.retry.aio(deadline):
            with attempt:
                return await self._attempt(call, deadline)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _iterate(self, paged: Paged[T], timeout: float | None) -> AsyncIterator[T]:
        # The next page is asked for as soon as this page's token is known, before this
        # page is converted and consumed: the server reads page N+1 while we convert page N.
        # Its errors are raised where they were before, when iteration reaches that page; a
        # caller that stops early leaves at most one page read for nothing.
        if True:  # ASYNC
            ahead: Any = None
        else:
            pool = ThreadPoolExecutor(1, thread_name_prefix="spire-list-ahead")
        try:
            raw, token = await self._send(paged.page(""), timeout)
            while True:
                if token:
                    if True:  # ASYNC
                        ahead = asyncio.ensure_future(self._send(paged.page(token), timeout))
                        await asyncio.sleep(0)  # let it send the request now
                    else:
                        ahead = pool.submit(self._send, paged.page(token), timeout)
                for item in paged.convert(raw):
                    yield item
                if not token:
                    return
                if True:  # ASYNC
                    raw, token = await ahead
                else:
                    raw, token = ahead.result()
        finally:
            if True:  # ASYNC
                if ahead is not None and not ahead.done():
                    ahead.cancel()
            else:
                pool.shutdown(wait=False, cancel_futures=True)

    async def _send_batch(self, batch: Batch[T], timeout: float | None) -> BatchResult[T]:
        done: list[Any] = []
        for call in batch.chunks:
            try:
                done.append(await self._send(call, timeout))
            except SpireApiError as err:
                raise batch.fail(err, done) from err
        return batch.merge(done)

    # ---- entries -----------------------------------------------------------------------

    async def count_entries(
        self,
        *,
        spiffe_id: SpiffeId | str | None = None,
        parent_id: SpiffeId | str | None = None,
        selectors: Iterable[SelectorLike] | SelectorLike | None = None,
        selector_match: MatchBehavior = MatchBehavior.EXACT,
        federates_with: Iterable[TrustDomain | str] | None = None,
        federates_with_match: MatchBehavior = MatchBehavior.EXACT,
        hint: str | None = None,
        downstream: bool | None = None,
        timeout: float | None = None,
    ) -> int:
        """Number of entries matching every given filter (retried)."""
        call = self._ops.count_entries(
            spiffe_id=spiffe_id,
            parent_id=parent_id,
            selectors=selectors,
            selector_match=selector_match,
            federates_with=federates_with,
            federates_with_match=federates_with_match,
            hint=hint,
            downstream=downstream,
        )
        return await self._send(call, timeout)

    def list_entries(
        self,
        *,
        spiffe_id: SpiffeId | str | None = None,
        parent_id: SpiffeId | str | None = None,
        selectors: Iterable[SelectorLike] | SelectorLike | None = None,
        selector_match: MatchBehavior = MatchBehavior.EXACT,
        federates_with: Iterable[TrustDomain | str] | None = None,
        federates_with_match: MatchBehavior = MatchBehavior.EXACT,
        hint: str | None = None,
        downstream: bool | None = None,
        id_prefix: str = "",
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Entry]:
        """Entries matching every given filter, fetched page by page as you iterate (retried);
        the next page is asked for while this one is converted, so stopping early may leave
        one page read for nothing.

        Filters are checked when called, before iteration starts. ``id_prefix`` keeps the
        entries whose ID starts with it (owned entries: ``"<owner>."``); SPIRE cannot filter
        on it, so the others still travel, but are dropped before they are converted.
        """
        paged = self._ops.list_entries(
            page_size,
            id_prefix,
            spiffe_id=spiffe_id,
            parent_id=parent_id,
            selectors=selectors,
            selector_match=selector_match,
            federates_with=federates_with,
            federates_with_match=federates_with_match,
            hint=hint,
            downstream=downstream,
        )
        return self._iterate(paged, timeout)

    async def get_entry(self, entry_id: str, *, timeout: float | None = None) -> Entry:
        """One entry by ID; NotFoundError if there is none (retried)."""
        return await self._send(self._ops.get_entry(entry_id), timeout)

    async def create_entries(
        self, entries: Sequence[Entry], *, timeout: float | None = None
    ) -> BatchResult[Entry]:
        """Create entries; per-item results in input order (sent once, chunked).

        An item that matches an existing entry fails with AlreadyExistsError and its
        `value` is the existing entry.
        """
        return await self._send_batch(self._ops.create_entries(entries), timeout)

    async def create_entry(self, entry: Entry, *, timeout: float | None = None) -> Entry:
        """Create one entry and return it as stored; raises its error (sent once)."""
        item = (await self.create_entries([entry], timeout=timeout))[0]
        if item.error is not None:
            raise item.error
        assert item.value is not None
        return item.value

    async def update_entries(
        self,
        entries: Sequence[Entry],
        *,
        fields: Iterable[EntryField | str] | None = None,
        timeout: float | None = None,
    ) -> BatchResult[Entry]:
        """Update entries by ID; `fields` limits what is written (None = all) (retried)."""
        return await self._send_batch(self._ops.update_entries(entries, fields), timeout)

    async def delete_entries(
        self, entry_ids: Sequence[str], *, timeout: float | None = None
    ) -> BatchResult[str]:
        """Delete entries by ID; per-item results in input order (sent once, chunked)."""
        return await self._send_batch(self._ops.delete_entries(entry_ids), timeout)

    async def get_authorized_entries(self, *, timeout: float | None = None) -> list[Entry]:
        """Entries the caller (an agent or admin SVID) is authorized for (retried)."""
        return await self._send(self._ops.get_authorized_entries(), timeout)

    # ---- agents ------------------------------------------------------------------------

    async def count_agents(
        self,
        *,
        attestation_type: str | None = None,
        selectors: Iterable[SelectorLike] | SelectorLike | None = None,
        selector_match: MatchBehavior = MatchBehavior.EXACT,
        banned: bool | None = None,
        can_reattest: bool | None = None,
        expires_before: datetime | None = None,
        timeout: float | None = None,
    ) -> int:
        """Number of agents matching every given filter (retried)."""
        call = self._ops.count_agents(
            attestation_type=attestation_type,
            selectors=selectors,
            selector_match=selector_match,
            banned=banned,
            can_reattest=can_reattest,
            expires_before=expires_before,
        )
        return await self._send(call, timeout)

    def list_agents(
        self,
        *,
        attestation_type: str | None = None,
        selectors: Iterable[SelectorLike] | SelectorLike | None = None,
        selector_match: MatchBehavior = MatchBehavior.EXACT,
        banned: bool | None = None,
        can_reattest: bool | None = None,
        expires_before: datetime | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[AttestedAgent]:
        """Agents matching every given filter, page by page as you iterate (retried)."""
        paged = self._ops.list_agents(
            page_size,
            attestation_type=attestation_type,
            selectors=selectors,
            selector_match=selector_match,
            banned=banned,
            can_reattest=can_reattest,
            expires_before=expires_before,
        )
        return self._iterate(paged, timeout)

    async def get_agent(
        self, agent_id: SpiffeId | str, *, timeout: float | None = None
    ) -> AttestedAgent:
        """One agent by SPIFFE ID; NotFoundError if unknown (retried)."""
        return await self._send(self._ops.get_agent(agent_id), timeout)

    async def ban_agent(self, agent_id: SpiffeId | str, *, timeout: float | None = None) -> None:
        """Ban an agent: its SVID is revoked and it cannot re-attest (retried)."""
        await self._send(self._ops.ban_agent(agent_id), timeout)

    async def delete_agent(self, agent_id: SpiffeId | str, *, timeout: float | None = None) -> None:
        """Forget an agent; it may attest again (sent once)."""
        await self._send(self._ops.delete_agent(agent_id), timeout)

    async def create_join_token(
        self,
        *,
        ttl: int,
        agent_id: SpiffeId | str | None = None,
        timeout: float | None = None,
    ) -> JoinToken:
        """A new join token valid `ttl` seconds; `agent_id` aliases the agent (sent once)."""
        return await self._send(self._ops.create_join_token(ttl, agent_id), timeout)

    # ---- bundles -----------------------------------------------------------------------

    async def get_bundle(self, *, timeout: float | None = None) -> Bundle:
        """The server's own trust domain bundle (retried)."""
        return await self._send(self._ops.get_bundle(), timeout)

    async def count_bundles(self, *, timeout: float | None = None) -> int:
        """Number of bundles, the server's own included (retried)."""
        return await self._send(self._ops.count_bundles(), timeout)

    async def append_bundle(
        self,
        *,
        x509_authorities: Iterable[X509Authority | x509.Certificate] = (),
        jwt_authorities: Iterable[JwtAuthority] = (),
        timeout: float | None = None,
    ) -> Bundle:
        """Add authorities to the server's own bundle; returns the new bundle (retried)."""
        return await self._send(self._ops.append_bundle(x509_authorities, jwt_authorities), timeout)

    def list_federated_bundles(
        self, *, page_size: int | None = None, timeout: float | None = None
    ) -> AsyncIterator[Bundle]:
        """Bundles of other trust domains, page by page (retried)."""
        return self._iterate(self._ops.list_federated_bundles(page_size), timeout)

    async def get_federated_bundle(
        self, trust_domain: TrustDomain | str, *, timeout: float | None = None
    ) -> Bundle:
        """Another trust domain's bundle; NotFoundError if the server has none (retried)."""
        return await self._send(self._ops.get_federated_bundle(trust_domain), timeout)

    async def create_federated_bundles(
        self, bundles: Sequence[Bundle], *, timeout: float | None = None
    ) -> BatchResult[Bundle]:
        """Add bundles for new trust domains (sent once)."""
        return await self._send_batch(self._ops.create_federated_bundles(bundles), timeout)

    async def update_federated_bundles(
        self, bundles: Sequence[Bundle], *, timeout: float | None = None
    ) -> BatchResult[Bundle]:
        """Replace existing federated bundles; NotFound per unknown one (retried)."""
        return await self._send_batch(self._ops.update_federated_bundles(bundles), timeout)

    async def set_federated_bundles(
        self, bundles: Sequence[Bundle], *, timeout: float | None = None
    ) -> BatchResult[Bundle]:
        """Create or replace federated bundles (retried)."""
        return await self._send_batch(self._ops.set_federated_bundles(bundles), timeout)

    async def delete_federated_bundles(
        self,
        trust_domains: Sequence[TrustDomain | str],
        *,
        mode: str = "restrict",
        timeout: float | None = None,
    ) -> BatchResult[TrustDomain]:
        """Delete federated bundles (sent once).

        `mode` is SPIRE's: "restrict" refuses while entries federate with the trust
        domain, "delete" also deletes those entries, "dissociate" unlinks them.
        """
        return await self._send_batch(
            self._ops.delete_federated_bundles(trust_domains, mode), timeout
        )

    # ---- federation relationships ------------------------------------------------------

    def list_federation_relationships(
        self, *, page_size: int | None = None, timeout: float | None = None
    ) -> AsyncIterator[FederationRelationship]:
        """Configured federation relationships, page by page (retried)."""
        return self._iterate(self._ops.list_federation_relationships(page_size), timeout)

    async def get_federation_relationship(
        self, trust_domain: TrustDomain | str, *, timeout: float | None = None
    ) -> FederationRelationship:
        """The relationship with one trust domain; NotFoundError if none (retried)."""
        return await self._send(self._ops.get_federation_relationship(trust_domain), timeout)

    async def create_federation_relationships(
        self, relationships: Sequence[FederationRelationship], *, timeout: float | None = None
    ) -> BatchResult[FederationRelationship]:
        """Create relationships (and their initial bundles, if given) (sent once)."""
        return await self._send_batch(
            self._ops.create_federation_relationships(relationships), timeout
        )

    async def update_federation_relationships(
        self,
        relationships: Sequence[FederationRelationship],
        *,
        fields: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> BatchResult[FederationRelationship]:
        """Update relationships; `fields` from bundle_endpoint_url, bundle_endpoint_profile,
        trust_domain_bundle (None = all) (retried)."""
        batch = self._ops.update_federation_relationships(relationships, fields)
        return await self._send_batch(batch, timeout)

    async def delete_federation_relationships(
        self, trust_domains: Sequence[TrustDomain | str], *, timeout: float | None = None
    ) -> BatchResult[TrustDomain]:
        """Delete relationships (the bundles stay) (sent once)."""
        return await self._send_batch(
            self._ops.delete_federation_relationships(trust_domains), timeout
        )

    async def refresh_bundle(
        self, trust_domain: TrustDomain | str, *, timeout: float | None = None
    ) -> None:
        """Fetch a federated trust domain's bundle from its endpoint now (retried)."""
        await self._send(self._ops.refresh_bundle(trust_domain), timeout)

    # ---- SVIDs -------------------------------------------------------------------------

    async def mint_x509_svid(
        self,
        spiffe_id: SpiffeId | str | None = None,
        *,
        csr: x509.CertificateSigningRequest | bytes | None = None,
        dns_names: Sequence[str] = (),
        ttl: int = 0,
        timeout: float | None = None,
    ) -> MintedX509Svid:
        """Mint an X.509-SVID for `spiffe_id` (a P-256 key and CSR are made for you), or
        sign your own `csr`; ttl 0 = server default (sent once)."""
        return await self._send(
            self._ops.mint_x509_svid(spiffe_id, csr=csr, dns_names=dns_names, ttl=ttl), timeout
        )

    async def mint_jwt_svid(
        self,
        spiffe_id: SpiffeId | str,
        audience: Sequence[str],
        *,
        ttl: int = 0,
        timeout: float | None = None,
    ) -> MintedJwtSvid:
        """Mint a JWT-SVID for `spiffe_id` and `audience`; ttl 0 = default (sent once)."""
        return await self._send(self._ops.mint_jwt_svid(spiffe_id, audience, ttl), timeout)

    # ---- local authorities (CA rotation by hand) -----------------------------------------
    # The LocalAuthority API of SPIRE 1.13: a server holds one active authority of each
    # kind and one "next" slot, prepared (in the bundle, not signing) or old (signed
    # before the last activation). Rotation by hand: prepare, wait until every agent and
    # federated peer holds the new key, activate, taint the old one (agents and
    # workloads renew away from it), revoke it (it leaves the bundle). Whether an
    # authority is tainted is in the bundle (`get_bundle`), not in these states.

    async def get_authority_state(
        self, kind: AuthorityKind = "x509", *, timeout: float | None = None
    ) -> AuthorityStates:
        """The server's active, prepared and old X.509 (``"x509"``) or JWT (``"jwt"``)
        authorities, from the LocalAuthority API (retried)."""
        return await self._send(self._ops.get_authority_state(kind), timeout)

    async def prepare_authority(
        self, kind: AuthorityKind = "x509", *, timeout: float | None = None
    ) -> AuthorityState:
        """Prepare a new authority: it joins the bundle but does not sign yet (sent once)."""
        return await self._send(self._ops.prepare_authority(kind), timeout)

    async def activate_authority(
        self, authority_id: str, kind: AuthorityKind = "x509", *, timeout: float | None = None
    ) -> AuthorityState:
        """Make the prepared authority ``authority_id`` the one that signs; the one that
        signed until now becomes old (sent once)."""
        return await self._send(self._ops.activate_authority(kind, authority_id), timeout)

    async def taint_authority(
        self, authority_id: str, kind: AuthorityKind = "x509", *, timeout: float | None = None
    ) -> AuthorityState:
        """Mark the old authority ``authority_id`` tainted in the bundle: agents renew
        every SVID it signed. SPIRE refuses the active or a prepared authority, and an
        X.509 authority of a server with an upstream authority (sent once)."""
        return await self._send(self._ops.taint_authority(kind, authority_id), timeout)

    async def revoke_authority(
        self, authority_id: str, kind: AuthorityKind = "x509", *, timeout: float | None = None
    ) -> AuthorityState:
        """Remove the old (tainted) authority ``authority_id`` from the bundle: what it
        signed stops verifying. SPIRE refuses the active or a prepared authority, and one
        not tainted first (sent once)."""
        return await self._send(self._ops.revoke_authority(kind, authority_id), timeout)

    async def taint_upstream_authority(
        self, subject_key_id: str, *, timeout: float | None = None
    ) -> str:
        """Mark the upstream authority that signed the old X.509 authority (its subject
        key ID, ``upstream_authority_subject_key_id`` of the old state) tainted; returns
        the key ID as SPIRE stored it. Only on a server with an upstream authority
        (sent once)."""
        return await self._send(self._ops.taint_upstream_authority(subject_key_id), timeout)

    async def revoke_upstream_authority(
        self, subject_key_id: str, *, timeout: float | None = None
    ) -> str:
        """Remove the tainted upstream authority ``subject_key_id`` from the bundle;
        returns the key ID as SPIRE stored it (sent once)."""
        return await self._send(self._ops.revoke_upstream_authority(subject_key_id), timeout)

    # ---- debug / logger ----------------------------------------------------------------

    async def server_info(self, *, timeout: float | None = None) -> ServerInfo:
        """Uptime, counts and the server's own SVID chain (retried)."""
        return await self._send(self._ops.server_info(), timeout)

    async def get_log_level(self, *, timeout: float | None = None) -> LoggerLevels:
        """Current and launch log levels (retried)."""
        return await self._send(self._ops.get_log_level(), timeout)

    async def set_log_level(
        self, level: LogLevel | str, *, timeout: float | None = None
    ) -> LoggerLevels:
        """Change the server's log level at runtime (retried)."""
        return await self._send(self._ops.set_log_level(level), timeout)

    async def reset_log_level(self, *, timeout: float | None = None) -> LoggerLevels:
        """Back to the level the server was launched with (retried)."""
        return await self._send(self._ops.reset_log_level(), timeout)
