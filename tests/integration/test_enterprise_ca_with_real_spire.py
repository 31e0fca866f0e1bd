"""Real SPIRE servers under the Enterprise Root CA hierarchy (UpstreamAuthority "disk")."""

from __future__ import annotations

from pathlib import Path

from spire_fabric.identity import BundleSet, TrustDomain, X509Bundle, X509Svid, verify_x509_svid
from spire_fabric.runtime.ca_hierarchy import create_root_ca, issue_intermediate_ca, write_ca
from spire_fabric.testing import current_uid_selector

from .test_workload_svid_from_real_agent import fetch_x509_response


def disk_upstream_authority(cert: Path, key: Path, bundle: Path) -> str:
    return f"""  UpstreamAuthority "disk" {{
    plugin_data {{
      cert_file_path = "{cert}"
      key_file_path = "{key}"
      bundle_file_path = "{bundle}"
    }}
  }}"""


def test_spire_svids_chain_through_the_intermediate_to_the_enterprise_root(
    tmp_path, spire_server_factory, spire_agent_factory
) -> None:
    root = create_root_ca()
    downstream_td = TrustDomain("downstream.example.org")
    intermediate = issue_intermediate_ca(root, downstream_td)
    files = write_ca(intermediate, tmp_path / "ca", "downstream")
    server = spire_server_factory(
        downstream_td.name,
        extra_plugins=disk_upstream_authority(files.cert_path, files.key_path, files.bundle_path),
    )
    agent = spire_agent_factory(server)
    workload_id = "spiffe://downstream.example.org/ns/downstream-workloads/sa/enterprise-api"
    server.create_entry(workload_id, agent.spiffe_id, [current_uid_selector()])

    msg = fetch_x509_response(agent).svids[0]
    svid = X509Svid.parse_der(msg.x509_svid, msg.x509_svid_key)

    # SPIRE's bundle is exactly the Enterprise Root; the SVID chain carries the intermediate.
    assert X509Bundle.parse_pem(downstream_td, server.bundle_pem().encode()).x509_authorities == (
        root.certificate,
    )
    assert intermediate.certificate in svid.cert_chain
    roots_only = BundleSet([X509Bundle(downstream_td, (root.certificate,))])
    spiffe_id, chain = verify_x509_svid(svid.cert_chain, roots_only)
    assert str(spiffe_id) == workload_id
    assert chain[-1] == root.certificate
