"""X509Source, JwtSource and BundleSource against a real SPIRE agent: rotation, restart,
federation and caching as a workload experiences them."""

from __future__ import annotations

import threading
import time

import pytest

from spire_fabric.identity import TrustDomain, X509Bundle, parse_and_validate_jwt_svid
from spire_fabric.testing._processes import current_uid_selector
from spire_fabric.workload import (
    BundleSource,
    JwtSource,
    NoIdentityIssuedError,
    NoMatchingSvidError,
    WorkloadApiClosedError,
    X509Source,
    pick_by_hint,
)

from .conftest import Workload, poll, wait_for_identity

pytestmark = pytest.mark.integration

TD = TrustDomain("example.org")


def test_x509_source_serves_svid_and_bundles_as_stable_objects(workload: Workload) -> None:
    with X509Source(endpoint=workload.endpoint) as source:
        svid = source.get_x509_svid()
        assert source.healthy
        assert str(svid.spiffe_id) == workload.spiffe_id
        # No rotation in between: the very same object, so identity means "unchanged".
        assert source.get_x509_svid() is svid
        server_bundle = X509Bundle.parse_pem(TD, workload.server.bundle_pem().encode())
        assert source.get_x509_bundle_for_trust_domain(TD) == server_bundle
        assert source.get_bundle_set().get_x509_bundle_for_trust_domain(TD) == server_bundle
        assert source.get_x509_bundle_for_trust_domain(TrustDomain("other.org")) is None
    with pytest.raises(WorkloadApiClosedError):
        source.get_x509_svid()


def test_x509_source_rotates_svid_and_fires_listeners(
    spire_server_factory, spire_agent_factory
) -> None:
    server = spire_server_factory("example.org")
    agent = spire_agent_factory(server)
    # SPIRE has no minimum X.509 TTL; it backdates NotBefore by 10 s and the agent renews
    # at half life (+-10% jitter), so a 20 s TTL rotates roughly every 15 s.
    server.create_entry(
        "spiffe://example.org/rotating",
        parent_id=agent.spiffe_id,
        selectors=[current_uid_selector()],
        x509_svid_ttl=20,
    )
    wait_for_identity(agent)
    fired = threading.Event()
    with X509Source(endpoint=agent.endpoint) as source:
        first = source.get_x509_svid()
        source.add_listener(fired.set)
        poll(lambda: source.get_x509_svid() is not first, 45, "the SVID to rotate", 0.1)
        second = source.get_x509_svid()

    assert fired.is_set()
    assert second.leaf.serial_number != first.leaf.serial_number
    assert second.leaf.not_valid_after_utc > first.leaf.not_valid_after_utc
    assert second.spiffe_id == first.spiffe_id


def test_sources_recover_after_agent_restart_without_help(workload: Workload) -> None:
    errors: list[Exception] = []
    with (
        X509Source(endpoint=workload.endpoint, on_error=errors.append) as x509,
        BundleSource(endpoint=workload.endpoint) as bundles,
    ):
        before = x509.get_x509_svid()
        workload.agent.stop()
        poll(lambda: not x509.healthy, 15, "X509Source to report unhealthy")
        poll(lambda: not bundles.healthy, 15, "BundleSource to report unhealthy")
        # Still serving the last good state while broken.
        assert x509.get_x509_svid() is before
        assert bundles.get_x509_bundle_for_trust_domain(TD) is not None
        workload.agent.start()
        poll(lambda: x509.healthy and bundles.healthy, 30, "sources to recover")
        after = x509.get_x509_svid()

    assert errors, "the broken stream was not reported to on_error"
    # The restarted agent mints new workload SVIDs; the source delivers them by itself.
    assert after.leaf.serial_number != before.leaf.serial_number


def test_source_created_before_agent_starts_gets_identity_once_it_does(
    workload: Workload,
) -> None:
    workload.agent.stop()
    result: list[object] = []

    def build() -> None:
        try:
            result.append(X509Source(endpoint=workload.endpoint, first_update_timeout=30))
        except Exception as e:
            result.append(e)

    builder = threading.Thread(target=build)
    builder.start()
    time.sleep(1.0)
    workload.agent.start()
    builder.join(40)
    source = result[0]
    assert isinstance(source, X509Source), source
    with source:
        assert str(source.get_x509_svid().spiffe_id) == workload.spiffe_id


def test_x509_source_without_entry_raises_no_identity_issued(spire_agent) -> None:
    started = time.monotonic()
    with pytest.raises(NoIdentityIssuedError) as err:
        X509Source(endpoint=spire_agent.endpoint, first_update_timeout=2)
    assert time.monotonic() - started < 10
    assert str(spire_agent.socket_path) in str(err.value)


def test_picker_chooses_svid_by_entry_hint(spire_server, spire_agent) -> None:
    for name in ("external", "internal"):
        spire_server.create_entry(
            f"spiffe://example.org/{name}",
            parent_id=spire_agent.spiffe_id,
            selectors=[current_uid_selector()],
            hint=name,
        )
    wait_for_identity(spire_agent)

    def both_issued() -> bool:
        with X509Source(endpoint=spire_agent.endpoint) as s:
            return len(s.get_x509_svids()) == 2

    poll(both_issued, 30, "both entries to be issued", 0.5)
    with X509Source(endpoint=spire_agent.endpoint, picker=pick_by_hint("internal")) as source:
        assert str(source.get_x509_svid().spiffe_id) == "spiffe://example.org/internal"
        assert source.get_x509_svid().hint == "internal"
    with pytest.raises(NoMatchingSvidError, match="'missing'"):
        X509Source(
            endpoint=spire_agent.endpoint, picker=pick_by_hint("missing"), first_update_timeout=2
        )


def test_bundle_source_has_federated_x509_and_jwt_bundles(
    spire_server_factory, spire_agent_factory
) -> None:
    server_a = spire_server_factory("a.example", federation=True)
    server_b = spire_server_factory("b.example", federation=True)
    server_a.federate_with(server_b)
    server_b.federate_with(server_a)
    agent = spire_agent_factory(server_a)
    server_a.create_entry(
        "spiffe://a.example/w",
        parent_id=agent.spiffe_id,
        selectors=[current_uid_selector()],
        federates_with=["b.example"],
    )
    wait_for_identity(agent)
    td_b = TrustDomain("b.example")
    with (
        BundleSource(endpoint=agent.endpoint) as bundles,
        X509Source(endpoint=agent.endpoint) as x509,
    ):
        poll(lambda: bundles.get_x509_bundle_for_trust_domain(td_b), 20, "federated bundle")
        expected = X509Bundle.parse_pem(td_b, server_b.bundle_pem().encode())
        assert bundles.get_x509_bundle_for_trust_domain(td_b) == expected
        assert bundles.get_jwt_bundle_for_trust_domain(td_b) is not None
        assert x509.get_x509_bundle_for_trust_domain(td_b) == expected
        assert td_b in x509.get_bundle_set()


def test_jwt_source_serves_no_token_of_a_tainted_key_once_the_agent_dropped_it(
    spire_server_factory, spire_agent_factory
) -> None:
    """JwtSource asks the agent on every call: the agent drops the JWT-SVIDs a tainted key
    signed, and the source follows at once (a cache of its own would keep serving the
    tainted key's token, refused everywhere once the key is revoked)."""
    from spire_fabric.verify._authorities import jwt_key_id

    server = spire_server_factory("example.org")
    agent = spire_agent_factory(server)
    server.create_entry(
        "spiffe://example.org/jwt",
        parent_id=agent.spiffe_id,
        selectors=[current_uid_selector()],
    )
    wait_for_identity(agent)
    with JwtSource(endpoint=agent.endpoint) as source:
        first = source.fetch_jwt_svid("svc-a")
        assert source.fetch_jwt_svid("svc-a").token == first.token  # the agent's cache
        parse_and_validate_jwt_svid(first.token, source, ["svc-a"])
        old = jwt_key_id(first.token)
        server.cli("localauthority", "jwt", "prepare")
        server.cli("localauthority", "jwt", "activate", "-authorityID",
                   _prepared_jwt_authority(server))  # fmt: skip
        server.cli("localauthority", "jwt", "taint", "-authorityID", old)
        deadline = time.monotonic() + 30
        while jwt_key_id(source.fetch_jwt_svid("svc-a").token) == old:
            assert time.monotonic() < deadline, "the tainted key's token is still served"
            time.sleep(0.5)
        second = source.fetch_jwt_svid("svc-a")
    assert jwt_key_id(second.token) != old


def _prepared_jwt_authority(server) -> str:  # type: ignore[no-untyped-def]
    import json

    out = server.cli("localauthority", "jwt", "show", "-output", "json").stdout
    return str(json.loads(out)["prepared"]["authority_id"])
