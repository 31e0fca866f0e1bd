"""Checks of server sidecars: the allow list admits exactly who it names, a forged
cross-trust-domain SVID is refused, and the app behind it is reachable on loopback only.

Each check makes a real mutual-TLS connection to the sidecar's port, presenting a real
workload's SVID (from its agent), and asks for the workload's health path:

- every workload of the topology that the allow list names must get an HTTP answer;
- one workload it does not name must not (ghostunnel ends the connection after the
  handshake: in TLS 1.3 the client finishes first, so the refusal shows on the first read);
- an SVID for an *allowed* ID, but signed by another trust domain's intermediate from the
  topology's own CA hierarchy (whose chain reaches the Enterprise Root that both bundles
  hold) must be refused: only the name constraints keep this forgery out (a topology
  whose hierarchy has no CA of another trust domain has no such check);
- locally, the app's plain port must refuse a connection to this machine's non-loopback
  address (the app binds 127.0.0.1); on Kubernetes, from the pod of a workload that calls
  it, the app's plain port on the pod's IP must not answer while the sidecar's port does
  (so the refusal is the binding's and the network policy's, not a broken route).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spire_fabric.identity import SpiffeId, TrustDomain, X509Svid
from spire_fabric.runtime.core.ca import CaStore
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.testing.pki import Ca, make_svid
from spire_fabric.tls import authorize_id, mtls_client_context
from spire_fabric.topology import DiskUpstreamAuthority, Sidecar, Topology, Workload
from spire_fabric.verify._report import CheckFailed, CheckResult, run_check
from spire_fabric.workload import X509Context

__all__ = ["sidecar_checks"]

_TIMEOUT_S = 10.0


def sidecar_checks(
    d: Deployment,
    svid_of: Callable[[Workload], X509Svid],
    context_of: Callable[[Workload], X509Context],
) -> Iterator[CheckResult]:
    t = d.topology
    for w in t.workloads:
        for s in w.sidecars:
            where = f"{w.name}/{s.name}"
            files_of = getattr(d, "sidecar_files", None)  # the local target reads them
            if s.mode == "files" and files_of is not None:
                yield run_check(
                    f"sidecar-files:{where}",
                    f"{where}'s SVID files are the agent's current SVID, with their modes",
                    partial(_files_current, files_of, w, svid_of, context_of,
                            partial(_fresh_svid, d, w)),
                )
            if s.mode != "server":
                continue
            callers = [c for c in t.workloads if c is not w and _admits(s, c)]
            for c in callers:
                yield run_check(
                    f"sidecar-allowed:{c.name}->{where}",
                    f"{where} admits {c.name} (on its allow list)",
                    partial(_through, d, w, c, svid_of, context_of, admitted=True),
                )
            stranger = next((c for c in t.workloads if c is not w and c.run is not None
                             and not _admits(s, c)), None)  # fmt: skip
            if stranger is not None:
                yield run_check(
                    f"sidecar-refused:{stranger.name}->{where}",
                    f"{where} refuses {stranger.name} (not on its allow list)",
                    partial(_through, d, w, stranger, svid_of, context_of, admitted=False),
                )
            if callers and _forgery_possible(t, callers[0]):
                yield run_check(
                    f"sidecar-forged:{callers[0].name}->{where}",
                    f"{where} refuses a forged cross-trust-domain SVID of {callers[0].name}",
                    partial(_forged, d, w, callers[0], context_of),
                )
            if d.target == "local" and s.app_port is not None:
                yield run_check(
                    f"sidecar-loopback-only:{where}",
                    f"{w.name}'s plain port {s.app_port} is not reachable off loopback",
                    partial(_loopback_only, s.app_port),
                )
            from_peer = getattr(d, "plain_port_from_peer", None)  # the Kubernetes target
            if d.target == "kubernetes" and from_peer is not None and s.app_port is not None:
                yield run_check(
                    f"sidecar-loopback-only:{where}",
                    f"{w.name}'s plain port {s.app_port} is not reachable from another pod",
                    partial(_not_from_peer, from_peer, w, s.app_port),
                )


def _admits(s: Sidecar, w: Workload) -> bool:
    sid = SpiffeId.parse(w.spiffe_id)
    return w.spiffe_id in s.allow_ids or sid.trust_domain in s.allow_trust_domains


def _path(w: Workload) -> str:
    return w.run.health.path if w.run is not None and w.run.health is not None else "/"


def _request(d: Deployment, w: Workload, svid: X509Svid, context: X509Context) -> int:
    """GET the workload's health path through its sidecar as `svid`; the HTTP status."""
    address = d.workload_address(w.name)
    if address is None:
        raise CheckFailed("it has no address on this target")
    tls = mtls_client_context(svid, context.get_bundle_set(),
                              authorize_id(SpiffeId.parse(w.spiffe_id)))  # fmt: skip
    conn = http.client.HTTPSConnection(address.host, address.port, context=tls,
                                       timeout=_TIMEOUT_S)  # fmt: skip
    try:
        conn.request("GET", _path(w), headers={"Connection": "close"})
        return conn.getresponse().status
    finally:
        conn.close()


def _through(d: Deployment, w: Workload, caller: Workload,
             svid_of: Callable[[Workload], X509Svid],
             context_of: Callable[[Workload], X509Context], *, admitted: bool) -> str:
    svid, context = svid_of(caller), context_of(caller)
    try:
        status = _request(d, w, svid, context)
    except (OSError, ssl.SSLError, http.client.HTTPException) as err:
        if admitted:
            raise CheckFailed(f"{caller.spiffe_id} was refused: {err}") from None
        return f"refused as it must be ({type(err).__name__}: {str(err)[:80]})"
    if not admitted:
        raise CheckFailed(f"{caller.spiffe_id} got through: HTTP {status}")
    return f"{caller.spiffe_id} -> HTTP {status} from {w.name}'s app"


def _forged(d: Deployment, w: Workload, allowed: Workload,
            context_of: Callable[[Workload], X509Context]) -> str:
    """An SVID naming `allowed` signed by an intermediate of another trust domain."""
    victim_td = SpiffeId.parse(allowed.spiffe_id).trust_domain
    signer = _foreign_intermediate(d, victim_td)
    chain = x509.load_pem_x509_certificates(signer[0])
    key = serialization.load_pem_private_key(signer[1], None)
    forged = make_svid(Ca(chain[0], key), allowed.spiffe_id)  # type: ignore[arg-type]
    # presented with the signer's chain up to (not including) the root both bundles hold
    intermediates = [c for c in chain if c.issuer != c.subject]
    forged = X509Svid(forged.spiffe_id, (forged.leaf, *intermediates), forged.private_key)
    try:
        status = _request(d, w, forged, context_of(allowed))
    except (OSError, ssl.SSLError, http.client.HTTPException) as err:
        return (f"{allowed.spiffe_id} signed under {chain[0].subject.rfc4514_string()}: "
                f"refused ({type(err).__name__})")
    raise CheckFailed(f"the forged SVID got through: HTTP {status}")


def _forgery_possible(t: Topology, allowed: Workload) -> bool:
    """Whether the topology's own hierarchy holds a CA of another trust domain than
    `allowed`'s (a disk UpstreamAuthority): with one trust domain there is no boundary to
    forge across, so there is no such check (rather than a red one nobody can turn green)."""
    victim = SpiffeId.parse(allowed.spiffe_id).trust_domain
    return any(s.trust_domain != victim and isinstance(s.upstream_authority,
                                                       DiskUpstreamAuthority)
               for s in t.servers)  # fmt: skip


def _foreign_intermediate(d: Deployment, victim: TrustDomain) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM) of a disk UpstreamAuthority CA of a trust domain other than
    `victim`'s: the topology's own hierarchy, so the forgery chains to a trusted root."""
    store = CaStore(d.ca_directory)
    for server in d.topology.servers:
        if server.trust_domain == victim or not isinstance(server.upstream_authority,
                                                           DiskUpstreamAuthority):
            continue
        ca = store.signing_ca(d.topology, server)
        if ca is not None:
            return ca.chain, ca.key
    raise CheckFailed(f"no CA of a trust domain other than {victim} to forge with")


_MODES = {"svid.pem": 0o644, "svid_key.pem": 0o600, "svid_bundle.pem": 0o644}


def _fresh_svid(d: Deployment, w: Workload) -> X509Svid:
    """The SVID the agent serves ``w`` at this moment (not verify's one read of the run)."""
    for svid in d.x509_context(w.name).svids:
        if str(svid.spiffe_id) == w.spiffe_id:
            return svid
    raise CheckFailed(f"agent {w.agent} does not issue {w.spiffe_id}")


# With short SVIDs the agent may rotate between verify's read of the SVID and the read of
# the files (on Kubernetes each read is an exec of a second or more): then both are read
# again, the agent's first, so the files must have caught up with it.
_FILES_ATTEMPTS = 3


def _files_current(files_of: Callable[[str], dict[str, tuple[bytes, int]]], w: Workload,
                   svid_of: Callable[[Workload], X509Svid],
                   context_of: Callable[[Workload], X509Context],
                   fresh_svid: Callable[[], X509Svid] | None = None) -> str:
    """svid.pem is the chain the agent serves now, the key is its key, the bundle holds the
    trust domain's authorities, and each file has the helper's mode (key 0600)."""
    served = svid_of(w)
    for attempt in range(_FILES_ATTEMPTS):
        files = files_of(w.name)
        try:
            return _files_match(files, w, served, context_of)
        except _Rotated:
            if fresh_svid is None or attempt == _FILES_ATTEMPTS - 1:
                break
            time.sleep(1)
            served = fresh_svid()
    on_disk = X509Svid.parse_pem(files["svid.pem"][0], files["svid_key.pem"][0])
    raise CheckFailed(f"svid.pem (serial {on_disk.leaf.serial_number:x}) is not the SVID the "
                      f"agent serves now (serial {served.leaf.serial_number:x})")


class _Rotated(Exception):
    """svid.pem is another SVID than the one compared with."""


def _files_match(files: dict[str, tuple[bytes, int]], w: Workload, served: X509Svid,
                 context_of: Callable[[Workload], X509Context]) -> str:
    missing = [n for n in _MODES if n not in files]
    if missing:
        raise CheckFailed(f"missing {', '.join(missing)} (found: {', '.join(files) or 'none'})")
    wrong = [f"{n} is {files[n][1]:04o}, not {m:04o}" for n, m in _MODES.items()
             if files[n][1] != m]  # fmt: skip
    if wrong:
        raise CheckFailed("; ".join(wrong))
    on_disk = X509Svid.parse_pem(files["svid.pem"][0], files["svid_key.pem"][0])  # key matches
    if on_disk.cert_chain != served.cert_chain:
        raise _Rotated
    own = context_of(w).bundles.get(served.spiffe_id.trust_domain)
    trusted = set(x509.load_pem_x509_certificates(files["svid_bundle.pem"][0]))
    if own is None or not set(own.x509_authorities) <= trusted:
        raise CheckFailed("svid_bundle.pem lacks authorities of the agent's bundle")
    expires = on_disk.leaf.not_valid_after_utc.strftime("%H:%M:%SZ")
    return f"serial {on_disk.leaf.serial_number:x} (expires {expires}); modes 0644/0600/0644"


def _not_from_peer(from_peer: Callable[[str, int], Any], w: Workload, app_port: int) -> str:
    probe = from_peer(w.name, app_port)
    public = next(p for p in probe.results if p != app_port)
    if probe.results[public] != "open":
        raise CheckFailed(f"from {probe.peer}'s pod, {probe.pod_ip}:{public} (the sidecar) "
                          f"does not answer either ({probe.results[public]}): no route to try")
    if probe.results[app_port] == "open":
        raise CheckFailed(f"from {probe.peer}'s pod, {probe.pod_ip}:{app_port} accepted a "
                          "connection: the app listens beyond loopback")
    return (f"from {probe.peer}'s pod: {probe.pod_ip}:{app_port} refused "
            f"({probe.results[app_port][:60]}); the sidecar's :{public} answers")


def _non_loopback_address() -> str:
    """An IPv4 address of this machine that is not loopback (the route to a public one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            address = str(s.getsockname()[0])
        except OSError:
            address = ""
    if not address or address.startswith("127."):
        raise CheckFailed("this machine has no non-loopback IPv4 address to try")
    return address


def _loopback_only(port: int) -> str:
    address = _non_loopback_address()
    try:
        with socket.create_connection((address, port), timeout=3):
            pass
    except OSError as err:
        refused = f"{address}:{port} refused ({type(err).__name__})"
    else:
        raise CheckFailed(f"{address}:{port} accepted a connection: the app listens beyond "
                          "loopback")
    try:  # and the port is really the app's, listening where it should
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            pass
    except OSError as err:
        raise CheckFailed(f"127.0.0.1:{port} does not answer either ({err}): is the app up?") \
            from None
    return f"{refused}; 127.0.0.1:{port} serves"
