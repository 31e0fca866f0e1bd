"""Real `spire-server` and `spire-agent` processes for tests, on loopback and in a temp dir.

Why real processes: every user-facing claim in spire_fabric (SVIDs, bundles, federation,
rotation) depends on what SPIRE itself does, so tests run the pinned release instead of a fake.
Each object starts exactly one process and stops exactly that pid; nothing is killed by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from spire_fabric._run import run
from spire_fabric._wait import wait_until
from spire_fabric.errors import SpireFabricError
from spire_fabric.identity import join_token_agent_id, spire_server_id
from spire_fabric.runtime.binaries import SpireBinaries

_JOIN_TOKEN = re.compile(r"Token:\s*(\S+)")
_ENTRY_ID = re.compile(r"Entry ID\s*:\s*(\S+)")


class SpireProcessError(SpireFabricError, RuntimeError):
    """A SPIRE process did not start, did not become healthy, or a CLI call failed."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def short_tempdir(prefix: str) -> Path:
    """A temp dir with a short path: unix socket paths are limited to 107 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


class _SpireProcess:
    """One SPIRE binary run under our control, with its log file and a health probe."""

    name: str
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: Sequence[str]) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise SpireProcessError(f"{self.name} is already running (pid {self._proc.pid})")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it while it runs
        try:
            self._proc = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _healthy(self) -> bool:
        raise NotImplementedError

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def exited() -> str | None:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                return f"exited (code {code}) before it became healthy"
            return None

        def failure(message: str) -> SpireProcessError:
            return SpireProcessError(f"{message}; log {self.log_path}:\n{self.log_tail()}")

        wait_until(self._healthy, timeout, f"{self.name} healthy", interval=0.1,
                   abort=exited, error=failure, retry_on=())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process we started (SIGTERM, then SIGKILL), and only that one."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        """Crash the process (SIGKILL), for tests of what happens when SPIRE dies."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class SpireServerProcess(_SpireProcess):
    """A `spire-server` with SQLite, a disk key manager and join-token node attestation.

    Ports are picked free on 127.0.0.1. With `federation=True` the server also serves its
    bundle on an `https_spiffe` bundle endpoint (`federation_url`).
    """

    def __init__(
        self,
        binaries: SpireBinaries,
        trust_domain: str = "example.org",
        *,
        workdir: Path | None = None,
        default_x509_svid_ttl: str = "1h",
        default_jwt_svid_ttl: str = "5m",
        ca_ttl: str = "24h",
        federation: bool = False,
        log_level: str = "DEBUG",
        extra_server_config: str = "",
        extra_plugins: str = "",
        datastore: tuple[str, str] | None = None,
    ) -> None:
        """`datastore=(database_type, connection_string)` puts SPIRE's DataStore "sql" on an
        external MySQL/MariaDB or PostgreSQL (see `spire_fabric.testing.databases`); the
        default None keeps the embedded SQLite file in `data_dir`."""
        self.binaries = binaries
        self.trust_domain = trust_domain
        self.name = f"spire-server[{trust_domain}]"
        self.workdir = workdir or short_tempdir("sf-server-")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bind_port = free_port()
        self.federation_port = free_port() if federation else None
        self.socket_path = self.workdir / "api.sock"
        self.config_path = self.workdir / "server.conf"
        self.log_path = self.workdir / "server.log"
        self.data_dir = self.workdir / "data"
        federation_block = ""
        if federation:
            federation_block = f"""
  federation {{
    bundle_endpoint {{
      address = "127.0.0.1"
      port = {self.federation_port}
      profile "https_spiffe" {{}}
    }}
  }}"""
        if datastore is None:
            sqlite_path = self.data_dir / "datastore.sqlite3"
            datastore_data = (
                f'      database_type = "sqlite3"\n      connection_string = "{sqlite_path}"'
            )
        else:
            # JSON string escapes are valid HCL string escapes (quotes, backslashes in DSNs)
            database_type, connection_string = datastore
            datastore_data = (
                f"      database_type = {json.dumps(database_type)}\n"
                f"      connection_string = {json.dumps(connection_string)}"
            )
        self.config_path.write_text(
            f"""server {{
  bind_address = "127.0.0.1"
  bind_port = "{self.bind_port}"
  socket_path = "{self.socket_path}"
  trust_domain = "{trust_domain}"
  data_dir = "{self.data_dir}"
  log_level = "{log_level}"
  ca_key_type = "ec-p256"
  ca_ttl = "{ca_ttl}"
  default_x509_svid_ttl = "{default_x509_svid_ttl}"
  default_jwt_svid_ttl = "{default_jwt_svid_ttl}"{federation_block}
{extra_server_config}
}}

plugins {{
  DataStore "sql" {{
    plugin_data {{
{datastore_data}
    }}
  }}
  KeyManager "disk" {{
    plugin_data {{
      keys_path = "{self.data_dir / "keys.json"}"
    }}
  }}
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
{extra_plugins}
}}
"""
        )

    @property
    def address(self) -> str:
        """``host:port`` of the server API over TCP."""
        return f"127.0.0.1:{self.bind_port}"

    @property
    def federation_url(self) -> str:
        """The server's bundle endpoint URL."""
        if self.federation_port is None:
            raise SpireProcessError(f"{self.name} was started without a bundle endpoint")
        return f"https://127.0.0.1:{self.federation_port}"

    @property
    def server_id(self) -> str:
        """The server's own SPIFFE ID (``spiffe://<td>/spire/server``)."""
        return str(spire_server_id(self.trust_domain))

    def start(self, timeout: float = 30.0) -> SpireServerProcess:
        """Write the config, start spire-server and wait until it is healthy; returns self."""
        self._spawn([str(self.binaries.server), "run", "-config", str(self.config_path)])
        self.wait_healthy(timeout)
        return self

    def _healthy(self) -> bool:
        if not self.socket_path.exists():
            return False
        argv = [str(self.binaries.server), "healthcheck", "-socketPath", str(self.socket_path)]
        return run(argv, check=False).returncode == 0

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `spire-server <args> -socketPath <ours>`: SPIRE's own CLI as a test oracle."""
        argv = [str(self.binaries.server), *args, "-socketPath", str(self.socket_path)]
        return run(argv, check=check, what=f"`spire-server {' '.join(args)}`",
                   error=SpireProcessError)

    def bundle_pem(self) -> str:
        """The server's trust bundle, PEM (``spire-server bundle show``)."""
        return self.cli("bundle", "show", "-format", "pem").stdout

    def generate_join_token(self, agent_id: str | None = None, ttl: int = 600) -> str:
        """A join token for an agent (``spire-server token generate``)."""
        args = ["token", "generate", "-ttl", str(ttl)]
        if agent_id:
            args += ["-spiffeID", agent_id]
        match = _JOIN_TOKEN.search(self.cli(*args).stdout)
        if match is None:
            raise SpireProcessError("`spire-server token generate` printed no token")
        return match.group(1)

    def create_entry(
        self,
        spiffe_id: str,
        parent_id: str,
        selectors: Iterable[str],
        *,
        x509_svid_ttl: int | None = None,
        jwt_svid_ttl: int | None = None,
        federates_with: Iterable[str] = (),
        dns_names: Iterable[str] = (),
        hint: str | None = None,
    ) -> str:
        """Register a workload with the CLI; returns the entry ID."""
        args = ["entry", "create", "-spiffeID", spiffe_id, "-parentID", parent_id]
        for selector in selectors:
            args += ["-selector", selector]
        for td in federates_with:
            args += ["-federatesWith", td if td.startswith("spiffe://") else f"spiffe://{td}"]
        for dns in dns_names:
            args += ["-dns", dns]
        if x509_svid_ttl is not None:
            args += ["-x509SVIDTTL", str(x509_svid_ttl)]
        if jwt_svid_ttl is not None:
            args += ["-jwtSVIDTTL", str(jwt_svid_ttl)]
        if hint:
            args += ["-hint", hint]
        match = _ENTRY_ID.search(self.cli(*args).stdout)
        if match is None:
            raise SpireProcessError("`spire-server entry create` printed no entry ID")
        return match.group(1)

    def federate_with(self, other: SpireServerProcess) -> None:
        """Trust `other`'s bundle and follow its bundle endpoint (https_spiffe)."""
        bundle = self.workdir / f"bundle-{other.trust_domain}.pem"
        bundle.write_text(other.bundle_pem())
        self.cli(
            "federation", "create",
            "-trustDomain", other.trust_domain,
            "-bundleEndpointURL", other.federation_url,
            "-bundleEndpointProfile", "https_spiffe",
            "-endpointSpiffeID", other.server_id,
            "-trustDomainBundlePath", str(bundle),
            "-trustDomainBundleFormat", "pem",
        )  # fmt: skip

    def __enter__(self) -> SpireServerProcess:
        return self.start() if not self.running else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SpireAgentProcess(_SpireProcess):
    """A `spire-agent` attested to `server` with a join token, unix workload attestor.

    The disk key manager keeps the agent's SVID in `data_dir`, so `stop()` then `start()`
    brings the same agent back without a new join token.
    """

    def __init__(
        self,
        binaries: SpireBinaries,
        server: SpireServerProcess,
        *,
        workdir: Path | None = None,
        log_level: str = "DEBUG",
        authorized_delegates: Iterable[str] = (),
        extra_agent_config: str = "",
    ) -> None:
        self.binaries = binaries
        self.server = server
        self.name = f"spire-agent[{server.trust_domain}]"
        self.workdir = workdir or short_tempdir("sf-agent-")
        (self.workdir / "public").mkdir(parents=True, exist_ok=True)
        (self.workdir / "admin").mkdir(parents=True, exist_ok=True)
        self.socket_path = self.workdir / "public" / "api.sock"
        self.admin_socket_path = self.workdir / "admin" / "admin.sock"
        self.config_path = self.workdir / "agent.conf"
        self.log_path = self.workdir / "agent.log"
        self.data_dir = self.workdir / "data"
        self.bundle_path = self.workdir / "bootstrap-bundle.pem"
        self.join_token: str | None = None
        delegates = ", ".join(f'"{d}"' for d in authorized_delegates)
        self.config_path.write_text(
            f"""agent {{
  data_dir = "{self.data_dir}"
  log_level = "{log_level}"
  server_address = "127.0.0.1"
  server_port = "{server.bind_port}"
  socket_path = "{self.socket_path}"
  admin_socket_path = "{self.admin_socket_path}"
  trust_bundle_path = "{self.bundle_path}"
  trust_domain = "{server.trust_domain}"
  authorized_delegates = [{delegates}]
{extra_agent_config}
}}

plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  KeyManager "disk" {{
    plugin_data {{
      directory = "{self.data_dir}"
    }}
  }}
  WorkloadAttestor "unix" {{
    plugin_data {{}}
  }}
}}
"""
        )

    @property
    def spiffe_id(self) -> str:
        """The agent's SPIFFE ID: the parent ID for entries this agent should serve."""
        if self.join_token is None:
            raise SpireProcessError(f"{self.name} has not attested yet")
        return str(join_token_agent_id(self.server.trust_domain, self.join_token))

    @property
    def endpoint(self) -> str:
        """The Workload API address in `SPIFFE_ENDPOINT_SOCKET` form."""
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 30.0) -> SpireAgentProcess:
        """Start spire-agent (attesting with a fresh join token the first time) and wait
        until it is healthy; returns self."""
        argv = [str(self.binaries.agent), "run", "-config", str(self.config_path)]
        if self.join_token is None:
            # First start: attest with a fresh join token. Later starts reuse the SVID
            # that the disk key manager kept.
            self.bundle_path.write_text(self.server.bundle_pem())
            self.join_token = self.server.generate_join_token()
            # a 0600 file, not argv: a command line is readable by every local user
            token_file = self.workdir / "join-token"
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.join_token)
            argv += ["-joinTokenFile", str(token_file)]
        self._spawn(argv)
        self.wait_healthy(timeout)
        return self

    def _healthy(self) -> bool:
        if not self.socket_path.exists():
            return False
        argv = [str(self.binaries.agent), "healthcheck", "-socketPath", str(self.socket_path)]
        return run(argv, check=False).returncode == 0

    def __enter__(self) -> SpireAgentProcess:
        return self.start() if not self.running else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def remove_workdir(process: SpireServerProcess | SpireAgentProcess) -> None:
    """Delete a stopped process's temp dir (keep it while the process runs)."""
    if process.running:
        raise SpireProcessError(f"{process.name} is still running; stop it first")
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(process.workdir)


def current_uid_selector() -> str:
    """`unix:uid:<uid>` for this process: what the unix attestor sees for the test itself."""
    return f"unix:uid:{os.getuid()}"
