"""The oracle for our HCL: the real SPIRE 1.13.3 `validate` commands accept every config
we render, for every preset and target, and reject a deliberately broken one.

Note: `validate` checks the core config (server/agent blocks, federation, health checks,
unknown keys) but not plugin_data, which SPIRE only reads when plugins start.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spire_fabric.render import RenderPaths, render_agent_config, render_server_config
from spire_fabric.topology import PRESET_NAMES, TARGETS, DiskUpstreamAuthority, preset

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spire():
    """Real binaries through ensure_spire() only; no fallback, and never a skip."""
    try:
        from spire_fabric.runtime.binaries import ensure_spire
    except ImportError as e:
        pytest.fail(f"spire_fabric.runtime.binaries.ensure_spire is not importable: {e}")
    try:
        return ensure_spire()
    except Exception as e:  # the message says which provisioning steps were tried
        pytest.fail(f"ensure_spire() could not provide SPIRE binaries: {e}")


def _self_signed(path_crt: Path, path_key: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path_crt.parent.mkdir(parents=True, exist_ok=True)
    path_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _materialise(tmp: Path, name: str, target: str) -> list[tuple[str, Path]]:
    """Write every config of a preset plus the files the local configs reference."""
    t = preset(name)
    paths = RenderPaths.local(str(tmp)) if target == "local" else RenderPaths.kubernetes()
    out: list[tuple[str, Path]] = []
    for s in t.servers:
        conf = tmp / "out" / "servers" / s.name / "server.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(render_server_config(t, s.name, paths))
        out.append(("server", conf))
        ua = s.upstream_authority
        if target == "local" and isinstance(ua, DiskUpstreamAuthority):
            _self_signed(
                Path(paths.upstream_ca_cert(s.name, ua.ca)),
                Path(paths.upstream_ca_key(s.name, ua.ca)),
            )
            root = Path(paths.upstream_ca_bundle(s.name, t.ca.root.name))
            if not root.exists():
                _self_signed(root, root.with_suffix(".key"))
    for a in t.agents:
        conf = tmp / "out" / "agents" / a.name / "agent.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(render_agent_config(t, a.name, paths))
        out.append(("agent", conf))
        if target == "local":
            bundle = Path(paths.agent_trust_bundle(a.name))
            _self_signed(bundle, bundle.with_suffix(".key"))
    return out


def _validate(spire, kind: str, conf: Path) -> subprocess.CompletedProcess[str]:
    binary = spire.server if kind == "server" else spire.agent
    return subprocess.run(
        [str(binary), "validate", "-config", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_spire_validate_accepts_every_rendered_config(spire, tmp_path, name, target):
    configs = _materialise(tmp_path, name, target)
    assert configs
    for kind, conf in configs:
        result = _validate(spire, kind, conf)
        assert result.returncode == 0, (
            f"spire-{kind} validate rejected {conf.relative_to(tmp_path)}:\n"
            f"{result.stdout}{result.stderr}\n--- config ---\n{conf.read_text()}"
        )


def test_spire_validate_rejects_a_broken_server_config(spire, tmp_path):
    ((kind, conf), *_) = _materialise(tmp_path, "basic", "local")
    assert kind == "server"
    text = conf.read_text().replace("server {\n", 'server {\n    no_such_knob = "x"\n', 1)
    conf.write_text(text)
    result = _validate(spire, "server", conf)
    assert result.returncode != 0
    assert "unknown configuration" in result.stdout + result.stderr


def test_spire_validate_rejects_a_broken_agent_config(spire, tmp_path):
    agent_conf = next(c for k, c in _materialise(tmp_path, "basic", "local") if k == "agent")
    text = agent_conf.read_text().replace("agent {\n", "agent {\n    insecure_bootstrap = true\n")
    agent_conf.write_text(text)
    result = _validate(spire, "agent", agent_conf)
    assert result.returncode != 0
    assert "insecure_bootstrap" in result.stdout + result.stderr
