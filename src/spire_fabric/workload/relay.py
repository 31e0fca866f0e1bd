"""``python -m spire_fabric.workload.relay [AUDIENCE SPIFFE_ID]``: this workload's Workload
API answers on stdout, for a caller that cannot reach the agent's socket itself.

Why: on Kubernetes only a pod next to the agent, of the workload's service account, gets
the workload's identity (the agent's ``k8s`` attestor decides who calls). The installer's
verify execs this in such a pod and decodes the answers with the same code as every other
Workload API answer. It is the SDK's own client; the answers travel as the raw protobuf
messages (base64 in one JSON object), so nothing is lost in between. They include the
SVID's private key: only ever run it over a channel the caller already trusts (an exec).
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Sequence
from typing import Any

from spire_fabric.proto.workload import workload_pb2
from spire_fabric.workload._client import WorkloadApiClient

__all__ = ["main", "relay"]


def _b64(message: Any) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


def relay(
    client: WorkloadApiClient, audience: str | None = None, spiffe_id: str = ""
) -> dict[str, str]:
    """The raw answers: ``x509``, ``jwt_bundles`` and, with an audience, ``jwt``."""
    out = {
        "x509": _b64(client._first("FetchX509SVID", workload_pb2.X509SVIDRequest(), 10)),
        "jwt_bundles": _b64(client._first("FetchJWTBundles", workload_pb2.JWTBundlesRequest(), 10)),
    }
    if audience:
        request = workload_pb2.JWTSVIDRequest(audience=[audience], spiffe_id=spiffe_id)
        out["jwt"] = _b64(client._unary("FetchJWTSVID", request, 10))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (0, 2):
        print("usage: python -m spire_fabric.workload.relay [AUDIENCE SPIFFE_ID]", file=sys.stderr)
        return 2
    with WorkloadApiClient() as client:
        answers = relay(client, *args) if args else relay(client)
    print(json.dumps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
