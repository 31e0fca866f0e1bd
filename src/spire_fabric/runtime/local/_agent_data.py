"""The agent's own X.509-SVID as SPIRE 1.13's agent keeps it on disk.

Why read a file: SPIRE reports an agent's SVID serial number and expiry (ListAgents) but
not which authority signed it, and the agent serves its own SVID to nobody. The agent
stores it in ``<data_dir>/agent-data.json`` (pkg/agent/storage: ``"svid"`` is a list of
certificates, leaf first, each a PEM block carried as a JSON byte string, i.e. base64).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from cryptography import x509

AGENT_DATA_FILE = "agent-data.json"


def stored_agent_svid(data_dir: Path) -> tuple[x509.Certificate, ...] | None:
    """The chain the agent stored (leaf first); None when there is none or it is unreadable
    (the agent has not attested yet, or is writing it right now)."""
    try:
        data = json.loads((data_dir / AGENT_DATA_FILE).read_text())
        blobs = data.get("svid") or []
        certs = tuple(_certificate(base64.b64decode(b)) for b in blobs)
    except (OSError, ValueError, TypeError, AttributeError, binascii.Error):
        return None
    return certs or None


def _certificate(raw: bytes) -> x509.Certificate:
    if raw.startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(raw)
    return x509.load_der_x509_certificate(raw)
