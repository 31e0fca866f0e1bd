"""SpireServerClient against a real spire-server, cross-checked with SPIRE's own CLI."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.server import (
    AlreadyExistsError,
    Bundle,
    Entry,
    FederationRelationship,
    HttpsSpiffeProfile,
    HttpsWebProfile,
    InvalidArgumentError,
    JwtAuthority,
    LogLevel,
    MatchBehavior,
    NotFoundError,
    Selector,
    SpireServerClient,
)
from spire_fabric.testing import SpireAgentProcess, SpireServerProcess

from .conftest import cli_json

pytestmark = pytest.mark.integration

PARENT = "spiffe://example.org/spire/agent/join_token/parent"


def entry(path: str, *selectors: str, **kw: object) -> Entry:
    return Entry(f"spiffe://example.org{path}", PARENT, selectors or ("unix:uid:1000",), **kw)


def cli_entries(server: SpireServerProcess, *args: str) -> dict[str, dict]:
    return {e["id"]: e for e in cli_json(server, "entry", "show", *args)["entries"]}


def test_created_entry_is_stored_exactly_as_the_cli_shows_it(client, spire_server):
    wanted = entry(
        "/web",
        "unix:uid:1000",
        "unix:gid:50",
        x509_svid_ttl=1800,
        jwt_svid_ttl=120,
        dns_names=("web.example.org", "alt.example.org"),
        hint="frontend",
        store_svid=False,
        expires_at=int(time.time()) + 86400,
        admin=True,
        downstream=True,
    )
    created = client.create_entry(wanted)
    assert created.id and created.created_at > 0
    assert created.diff(wanted) == frozenset()
    shown = cli_entries(spire_server, "-entryID", created.id)[created.id]
    assert shown["spiffe_id"] == {"trust_domain": "example.org", "path": "/web"}
    assert shown["x509_svid_ttl"] == 1800 and shown["jwt_svid_ttl"] == 120
    assert set(shown["dns_names"]) == {"web.example.org", "alt.example.org"}
    assert shown["hint"] == "frontend" and shown["admin"] and shown["downstream"]
    assert int(shown["expires_at"]) == wanted.expires_at
    assert {f"{s['type']}:{s['value']}" for s in shown["selectors"]} == {
        "unix:uid:1000",
        "unix:gid:50",
    }
    # get and list return the very same value
    got = client.get_entry(created.id)
    assert got.diff(created) == frozenset() and got.id == created.id
    assert list(client.list_entries(spiffe_id="spiffe://example.org/web")) == [got]


def test_batch_create_reports_each_item_and_keeps_order(client, spire_server):
    first = client.create_entry(entry("/dup"))
    result = client.create_entries(
        [entry("/a"), entry("/dup"), Entry("spiffe://other.org/b", PARENT, ["unix:uid:1"])]
    )
    assert [i.index for i in result] == [0, 1, 2]
    assert result[0].ok and result[0].value.spiffe_id == SpiffeId.parse("spiffe://example.org/a")
    assert isinstance(result[1].error, AlreadyExistsError)
    assert result[1].value.id == first.id  # SPIRE hands back the existing entry
    assert isinstance(result[2].error, InvalidArgumentError)
    assert "failed to convert entry" in result[2].error.message
    paths = {e["spiffe_id"]["path"] for e in cli_entries(spire_server).values()}
    assert paths == {"/dup", "/a"}
    with pytest.raises(AlreadyExistsError):
        result.raise_for_errors()


def test_every_list_filter_selects_what_the_cli_selects(client, spire_server):
    fed = client.create_federation_relationships(
        [
            FederationRelationship(
                "other.org",
                "https://127.0.0.1:1/",
                HttpsWebProfile(),
                Bundle("other.org", client.get_bundle().x509_authorities),
            )
        ]
    )
    fed.raise_for_errors()
    made = client.create_entries(
        [
            entry("/one", "unix:uid:1", "unix:gid:1", hint="h1"),
            entry("/two", "unix:uid:1", federates_with=("other.org",), downstream=True),
            Entry(
                "spiffe://example.org/three", "spiffe://example.org/other-parent", ["unix:uid:3"]
            ),
        ]
    ).raise_for_errors()
    ids = {e.spiffe_id.path: e.id for e in made.succeeded}

    def paths(**filters: object) -> set[str]:
        found = {e.spiffe_id.path for e in client.list_entries(**filters)}
        assert client.count_entries(**filters) == len(found)
        return found

    assert paths(spiffe_id="spiffe://example.org/one") == {"/one"}
    assert paths(parent_id="spiffe://example.org/other-parent") == {"/three"}
    assert paths(selectors=["unix:uid:1"], selector_match=MatchBehavior.EXACT) == {"/two"}
    assert paths(selectors=["unix:uid:1"], selector_match=MatchBehavior.SUPERSET) == {
        "/one",
        "/two",
    }
    assert paths(
        selectors=["unix:uid:1", "unix:gid:1", "unix:x:y"], selector_match=MatchBehavior.SUBSET
    ) == {"/one", "/two"}
    assert paths(selectors=["unix:uid:3", "unix:gid:1"], selector_match=MatchBehavior.ANY) == {
        "/one",
        "/three",
    }
    assert paths(federates_with=["other.org"], federates_with_match=MatchBehavior.ANY) == {"/two"}
    assert paths(hint="h1") == {"/one"}
    assert paths(downstream=True) == {"/two"}
    # oracle: the CLI's own filters agree
    assert set(cli_entries(spire_server, "-parentID", "spiffe://example.org/other-parent")) == {
        ids["/three"]
    }
    assert set(
        cli_entries(spire_server, "-selector", "unix:uid:1", "-matchSelectorsOn", "superset")
    ) == {
        ids["/one"],
        ids["/two"],
    }


def test_pagination_walks_every_page(client, spire_server):
    client.create_entries([entry(f"/p/{i}") for i in range(23)]).raise_for_errors()
    listed = list(client.list_entries(page_size=5))
    assert len(listed) == 23 == len({e.id for e in listed})
    assert set(cli_entries(spire_server)) == {e.id for e in listed}


def test_update_with_mask_changes_only_the_masked_fields(client, spire_server):
    e = client.create_entry(entry("/upd", hint="old", x509_svid_ttl=100))
    changed = Entry(**{**e.__dict__, "hint": "new", "x509_svid_ttl": 999})
    result = client.update_entries([changed], fields=["hint"]).raise_for_errors()
    assert result[0].value.hint == "new" and result[0].value.x509_svid_ttl == 100
    shown = cli_entries(spire_server, "-entryID", e.id)[e.id]
    assert shown["hint"] == "new" and shown["x509_svid_ttl"] == 100
    missing = Entry(**{**e.__dict__, "id": "no-such-entry"})
    assert isinstance(client.update_entries([missing])[0].error, NotFoundError)


def test_delete_reports_each_id(client, spire_server):
    e = client.create_entry(entry("/del"))
    result = client.delete_entries([e.id, "no-such-entry"])
    assert result[0].ok and result[0].value == e.id
    assert isinstance(result[1].error, NotFoundError)
    assert cli_entries(spire_server) == {}
    with pytest.raises(NotFoundError, match="entry not found"):
        client.get_entry(e.id)


def test_batches_larger_than_one_chunk_are_split_and_stay_in_order(client, spire_server):
    many = [entry(f"/bulk/{i:04d}") for i in range(2300)]
    created = client.create_entries(many).raise_for_errors()
    assert [i.value.spiffe_id.path for i in created] == [f"/bulk/{i:04d}" for i in range(2300)]
    assert cli_json(spire_server, "entry", "count")["count"] == 2300
    deleted = client.delete_entries([i.value.id for i in created]).raise_for_errors()
    assert len(deleted) == 2300 and client.count_entries() == 0


def test_server_rejection_comes_back_typed_with_spires_message(client):
    with pytest.raises(InvalidArgumentError, match="malformed parent ID filter"):
        client.count_entries(parent_id="spiffe://not-our-domain.org/x")
    with pytest.raises(NotFoundError, match="bundle not found"):
        client.get_federated_bundle("nobody.org")


def test_agents_list_get_ban_delete_and_join_tokens(client, spire_server, spire_agent):
    agent_id = SpiffeId.parse(spire_agent.spiffe_id)
    agents = list(client.list_agents(attestation_type="join_token"))
    assert [a.id for a in agents] == [agent_id]
    oracle = cli_json(spire_server, "agent", "list")["agents"]
    assert [a["id"]["path"] for a in oracle] == [agent_id.path]
    assert agents[0].x509svid_serial_number == oracle[0]["x509svid_serial_number"]
    got = client.get_agent(agent_id)
    assert got == agents[0] and not got.banned
    assert client.count_agents(banned=False) == 1 and client.count_agents(banned=True) == 0
    assert client.count_agents(attestation_type="x509pop") == 0
    assert client.count_agents(can_reattest=False) == 1
    import datetime

    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3650)
    assert client.count_agents(expires_before=soon) == 1
    assert list(client.list_agents(selectors=["nope:x"], selector_match=MatchBehavior.ANY)) == []

    client.ban_agent(agent_id)
    assert client.get_agent(agent_id).banned
    assert cli_json(spire_server, "agent", "show", "-spiffeID", str(agent_id))["banned"]
    client.delete_agent(agent_id)
    with pytest.raises(NotFoundError, match="agent not found"):
        client.get_agent(agent_id)
    assert cli_json(spire_server, "agent", "count")["count"] == 0

    token = client.create_join_token(ttl=120, agent_id="spiffe://example.org/edge/1")
    assert token.value and token.expires_at >= int(time.time()) + 100
    # SPIRE aliases the token's agent ID with an entry parented to the token's agent path
    aliases = cli_entries(spire_server, "-spiffeID", "spiffe://example.org/edge/1")
    assert [a["parent_id"]["path"] for a in aliases.values()] == [
        f"/spire/agent/join_token/{token.value}"
    ]


def test_bundle_append_and_federated_bundle_crud(client, spire_server):
    own = client.get_bundle()
    assert own.trust_domain == TrustDomain("example.org") and own.x509_authorities
    pem = spire_server.cli("bundle", "show", "-format", "pem").stdout.encode()
    assert [a.certificate for a in own.x509_authorities] == x509.load_pem_x509_certificates(pem)

    extra_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    extra_root = own.x509_authorities[0].certificate  # any cert will do for a federated bundle
    appended = client.append_bundle(
        jwt_authorities=[JwtAuthority("extra-kid", extra_key, expires_at=2_000_000_000)]
    )
    assert "extra-kid" in {k.key_id for k in appended.jwt_authorities}
    jwks = json.loads(spire_server.cli("bundle", "show", "-format", "spiffe").stdout)
    assert "extra-kid" in {k.get("kid") for k in jwks["keys"]}

    a = Bundle("a.org", (extra_root,), refresh_hint=30)
    b = Bundle("b.org", (extra_root,))
    created = client.create_federated_bundles([a, b, a])
    assert created[0].ok and created[1].ok and isinstance(created[2].error, AlreadyExistsError)
    assert client.count_bundles() == 3
    assert {b.trust_domain.name for b in client.list_federated_bundles(page_size=1)} == {
        "a.org",
        "b.org",
    }
    listed = cli_json(spire_server, "bundle", "list")
    assert {b["trust_domain"] for b in listed["bundles"]} == {"a.org", "b.org"}
    assert client.get_federated_bundle("a.org").refresh_hint == 30

    updated = client.update_federated_bundles([Bundle("a.org", (extra_root,), refresh_hint=90)])
    assert updated.raise_for_errors()[0].value.refresh_hint == 90
    assert isinstance(
        client.update_federated_bundles([Bundle("c.org", (extra_root,))])[0].error, NotFoundError
    )
    assert client.set_federated_bundles([Bundle("c.org", (extra_root,))]).ok
    deleted = client.delete_federated_bundles(["a.org", "b.org", "c.org", "zzz.org"])
    assert [i.ok for i in deleted] == [True, True, True, False]
    assert cli_json(spire_server, "bundle", "count")["count"] == 1


def test_federation_relationships_crud_and_refresh(client, spire_server_factory, spire_server):
    other = spire_server_factory("other.org", federation=True)
    other_bundle = SpireServerClient(str(other.socket_path)).get_bundle()
    rel = FederationRelationship(
        "other.org",
        other.federation_url,
        HttpsSpiffeProfile("spiffe://other.org/spire/server"),
        Bundle("other.org", other_bundle.x509_authorities),
    )
    web = FederationRelationship("web.org", "https://web.example/bundle", HttpsWebProfile())
    client.create_federation_relationships([rel, web]).raise_for_errors()
    shown = cli_json(spire_server, "federation", "list")
    by_td = {r["trust_domain"]: r for r in shown["federation_relationships"]}
    assert (
        by_td["other.org"]["https_spiffe"]["endpoint_spiffe_id"]
        == "spiffe://other.org/spire/server"
    )
    assert "https_web" in by_td["web.org"]
    got = client.get_federation_relationship("other.org")
    assert got.profile == rel.profile and got.bundle_endpoint_url == other.federation_url
    assert {r.trust_domain.name for r in client.list_federation_relationships()} == {
        "other.org",
        "web.org",
    }

    client.refresh_bundle("other.org")  # fetches over https_spiffe from the other server
    with pytest.raises(NotFoundError, match="no relationship with trust domain"):
        client.refresh_bundle("nobody.org")

    moved = FederationRelationship("web.org", "https://moved.example/bundle", HttpsWebProfile())
    client.update_federation_relationships(
        [moved], fields=["bundle_endpoint_url"]
    ).raise_for_errors()
    assert (
        client.get_federation_relationship("web.org").bundle_endpoint_url
        == "https://moved.example/bundle"
    )
    deleted = client.delete_federation_relationships(["web.org", "nobody.org"])
    assert deleted[0].ok and isinstance(deleted[1].error, NotFoundError)
    left = cli_json(spire_server, "federation", "list")["federation_relationships"]
    assert [r["trust_domain"] for r in left] == ["other.org"]


def test_minted_svids_chain_to_the_bundle_the_cli_shows(client, spire_server):
    roots = x509.load_pem_x509_certificates(spire_server.bundle_pem().encode())
    svid = client.mint_x509_svid("spiffe://example.org/minted", dns_names=["m.example"], ttl=600)
    assert svid.private_key is not None and svid.spiffe_id == SpiffeId.parse(
        "spiffe://example.org/minted"
    )
    leaf = svid.leaf
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://example.org/minted"
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["m.example"]
    assert leaf.public_key() == svid.private_key.public_key()
    top = svid.cert_chain[-1]
    issuer = next(r for r in roots if r.subject == top.issuer)
    top.verify_directly_issued_by(issuer)

    from spire_fabric.server._requests import make_csr

    key = ec.generate_private_key(ec.SECP256R1())
    own = client.mint_x509_svid(csr=make_csr(key, SpiffeId.parse("spiffe://example.org/own"), []))
    assert own.private_key is None and own.leaf.public_key() == key.public_key()

    jwt = client.mint_jwt_svid("spiffe://example.org/minted", ["aud1", "aud2"], ttl=120)
    header = json.loads(base64.urlsafe_b64decode(jwt.token.split(".")[0] + "=="))
    jwks = json.loads(spire_server.cli("bundle", "show", "-format", "spiffe").stdout)
    assert header["kid"] in {k.get("kid") for k in jwks["keys"]}
    assert jwt.expires_at - jwt.issued_at == 120
    with pytest.raises(InvalidArgumentError, match="CSR URI SAN is required"):
        client.mint_x509_svid(csr=make_csr_without_uri(key))


def make_csr_without_uri(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def test_server_info_and_log_levels_match_the_cli(client, spire_server, spire_agent):
    info = client.server_info()
    assert info.agents_count == 1 and info.federated_bundles_count >= 0
    assert info.svid_chain[0].id == SpiffeId.parse("spiffe://example.org/spire/server")
    assert client.get_log_level().launch == LogLevel.DEBUG
    assert client.set_log_level("warn").current == LogLevel.WARN
    assert cli_json(spire_server, "logger", "get")["current_level"] == "WARN"
    assert client.reset_log_level().current == LogLevel.DEBUG
    assert cli_json(spire_server, "logger", "get")["current_level"] == "DEBUG"


def test_selector_strings_and_objects_are_interchangeable(client):
    client.create_entry(entry("/s", "k8s:ns:default"))
    assert client.count_entries(selectors=[Selector("k8s", "ns:default")]) == 1
    assert client.count_entries(selectors="k8s:ns:default") == 1


def test_client_survives_a_server_restart_without_help(spire_server):
    with SpireServerClient(str(spire_server.socket_path), timeout=20) as client:
        before = client.create_entry(entry("/restart"))
        spire_server.stop()
        spire_server.start()
        # idempotent call: retried through the reconnect
        assert client.get_entry(before.id) == before
        # non-idempotent call: waits for the connection, sent once
        assert client.create_entry(entry("/after")).id
        spire_server.stop()
        restarted_at = time.monotonic()
        import threading

        threading.Timer(1.0, spire_server.start).start()
        assert client.count_entries() == 2  # issued while the server is down
        assert time.monotonic() - restarted_at >= 1.0


def test_tcp_with_admin_svid_authenticates_the_server(spire_server, spire_agent: SpireAgentProcess):
    from .conftest import fetch_x509_svid, register_admin

    admin_id = register_admin(spire_server, spire_agent, "/admin/ops")
    admin = fetch_x509_svid(spire_agent, admin_id)  # an X509Svid is its own svid_source
    with SpireServerClient(
        spire_server.address, svid_source=admin.svid, bundle_source=admin.bundle, timeout=10
    ) as tcp:
        created = tcp.create_entry(entry("/via-tcp"))
        assert created.id in cli_entries(spire_server)
        assert tcp.get_bundle().trust_domain == TrustDomain("example.org")
    # the same SVID, but expecting another trust domain's server: refused before any call
    from spire_fabric.identity import X509Bundle
    from spire_fabric.server import SpireClientConfigError, UnavailableError

    with pytest.raises(SpireClientConfigError, match=r"no X\.509 authorities for trust domain"):
        SpireServerClient(
            spire_server.address,
            svid_source=admin.svid,
            bundle_source=admin.bundle,
            server_trust_domain="other.org",
        )

    wrong = X509Bundle(admin.bundle.trust_domain, (admin.svid.leaf,))  # valid, not our CA
    with (
        SpireServerClient(
            spire_server.address, svid_source=admin.svid, bundle_source=wrong, timeout=2
        ) as bad,
        pytest.raises(
            UnavailableError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"
        ),
    ):
        bad.count_entries()
