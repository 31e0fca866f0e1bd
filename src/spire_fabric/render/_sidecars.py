"""Sidecars as commands: what runs beside an app, for either target (pure functions).

The two targets differ only in addresses (`SidecarPlace`): where the Workload API socket
is, which host the public side binds (the pod IP on Kubernetes, loopback locally), how a
target workload is reached, where the SVID files go and which programs to start. The
arguments themselves are decided here once:

- server and client modes run ghostunnel with `--use-workload-api-addr`: its certificate
  and trust bundles come from the agent and rotate without a restart (go-spiffe's X509
  source). The allow lists become `--allow-uri` (server) / `--verify-uri` (client):
  an exact SPIFFE ID, or `spiffe://<trust domain>/**` for a whole trust domain (ghostunnel's
  wildcard: `**` matches every path). The app side is always loopback: ghostunnel itself
  refuses a non-loopback `--target` (server) or `--listen` (client) without `--unsafe-*`,
  which is never passed;
- files mode runs `python -m spire_fabric.helper` as a daemon writing into the SVID
  directory, with the configured signal and pid file, and its health on `status_port`.
"""

from __future__ import annotations

from dataclasses import dataclass

from spire_fabric.topology import Sidecar, Topology, Workload

__all__ = [
    "SVID_SUBDIR",
    "SidecarPlace",
    "allow_patterns",
    "client_address",
    "server_sidecar_app_port",
    "sidecar_command",
    "verify_patterns",
]

# Files mode writes into this directory of the workload's run directory (locally) / of its
# shared emptyDir (Kubernetes); the app finds svid.pem, svid_key.pem and svid_bundle.pem there.
SVID_SUBDIR = "svid"


@dataclass(frozen=True)
class SidecarPlace:
    """What differs between the targets for one workload's sidecars."""

    socket_address: str  # unix:///… of the workload's agent
    public_host: str  # where a server sidecar's TLS side binds
    status_host: str  # where a sidecar's health binds (the kubelet probes the pod IP)
    ghostunnel: str  # the program
    python: tuple[str, ...]  # the interpreter that runs spire_fabric.helper
    svid_dir: str  # files mode's directory (pid_file is relative to it)
    public_port: int | None  # the workload's port (server mode listens there)
    target_addresses: dict[str, str]  # workload name -> host:port, for client sidecars


def server_sidecar_app_port(w: Workload) -> int | None:
    """The app's loopback port when a server sidecar fronts the workload, else None: the
    app's ``{listen}`` is then ``127.0.0.1:<app_port>`` on both targets, and the workload's
    port (``{port}``, ``{url:…}``, the Service) belongs to the sidecar."""
    for s in w.sidecars:
        if s.mode == "server":
            return s.app_port
    return None


def client_address(w: Workload) -> str:
    """``{client}``: where the app reaches its client sidecar (validated to exist)."""
    port = next(s.listen_port for s in w.sidecars if s.mode == "client")
    return f"127.0.0.1:{port}"


def allow_patterns(s: Sidecar) -> list[str]:
    """ghostunnel URI patterns for the allow lists: IDs exactly, trust domains wholly."""
    return [*s.allow_ids, *(f"spiffe://{td}/**" for td in s.allow_trust_domains)]


def verify_patterns(topology: Topology, s: Sidecar) -> list[str]:
    """A client sidecar accepts its target's SPIFFE ID, plus its allow lists."""
    assert s.target is not None
    return [topology.workload(s.target).spiffe_id, *allow_patterns(s)]


def sidecar_command(topology: Topology, w: Workload, s: Sidecar, place: SidecarPlace
                    ) -> list[str]:
    """The argv of sidecar `s` of workload `w` (the topology is validated)."""
    if s.mode == "files":
        argv = [*place.python, "-m", "spire_fabric.helper", "--cert-dir", place.svid_dir,
                "--endpoint", place.socket_address, "--spiffe-id", w.spiffe_id]
        if s.signal is not None and s.pid_file is not None:
            argv += ["--signal", s.signal, "--pid-file", f"{place.svid_dir}/{s.pid_file}"]
        for aud in s.jwt_audiences:
            argv += ["--jwt-svid", f"{aud}={_token_file(aud)}"]
        if s.status_port is not None:
            argv += ["--health-listen", f"{place.status_host}:{s.status_port}"]
        return argv
    argv = [place.ghostunnel, s.mode, "--use-workload-api-addr", place.socket_address]
    if s.mode == "server":
        argv += ["--listen", f"{place.public_host}:{place.public_port}",
                 "--target", f"127.0.0.1:{s.app_port}"]
        for pattern in allow_patterns(s):
            argv += ["--allow-uri", pattern]
    else:
        assert s.target is not None
        argv += ["--listen", f"127.0.0.1:{s.listen_port}",
                 "--target", place.target_addresses[s.target]]
        for pattern in verify_patterns(topology, s):
            argv += ["--verify-uri", pattern]
    if s.status_port is not None:
        # http:// or ghostunnel serves /_status and /_metrics over TLS with the SVID
        # (v1.8.4 socket.ParseHTTPAddress: no scheme means https), which neither
        # Prometheus nor the kubelet's httpGet probe speaks; plain HTTP, like the helper's
        # health and SPIRE's telemetry (loopback locally)
        argv += ["--status", f"http://{place.status_host}:{s.status_port}"]
    # one line per connection would grow the log with every request under load; and a
    # stop waits for open connections at most 5 s (the default, 5 min, outlasts every
    # supervisor's and kubelet's patience because keep-alive clients hold connections)
    return [*argv, "--quiet=conns", "--shutdown-timeout=5s"]


def _token_file(audience: str) -> str:
    """A file name for an audience's JWT-SVID: `jwt-<audience with / and : made ->.token`."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in audience).strip("-.")
    return f"jwt-{safe or 'audience'}.token"
