"""``python -m spire_fabric.workload.relay [--wait S] [AUDIENCE SPIFFE_ID]...``: this
workload's Workload API answers on stdout, for a caller that cannot reach the agent's
socket itself.

Why: on Kubernetes only a pod next to the agent, of the workload's service account, gets
the workload's identity (the agent's ``k8s`` attestor decides who calls). The installer's
verify execs this in such a pod and decodes the answers with the same code as every other
Workload API answer. It is the SDK's own client; the answers travel as the raw protobuf
messages (base64 in one JSON object), so nothing is lost in between. They include the
SVID's private key: only ever run it over a channel the caller already trusts (an exec).

Every JWT-SVID asked for comes from one process, and ``--wait`` keeps asking while the
agent has no identity for it yet (a pod that just started is still being attested): each
exec starts a Python and imports gRPC, about a second on a busy node, so one exec that
waits replaces a round of exec, fail, sleep and exec again.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from spire_fabric.proto.workload import workload_pb2
from spire_fabric.workload._client import WorkloadApiClient
from spire_fabric.workload._errors import (
    NoIdentityIssuedError,
    WorkloadApiError,
    WorkloadApiUnavailableError,
)

__all__ = ["main", "relay"]

# How often a waiting relay asks again: the agent attests a new pod within a second or so.
RETRY_S = 0.25
# The longest --wait: an exec that waits longer than this is stuck, not waiting.
MAX_WAIT_S = 600.0


def _b64(message: Any) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


def relay(
    client: WorkloadApiClient, audiences: Sequence[tuple[str, str]] = (), wait: float = 0
) -> dict[str, Any]:
    """The raw answers: ``x509``, ``jwt_bundles`` and, with audiences (``(audience,
    spiffe_id)`` pairs), ``jwt`` by audience. While the agent has issued nothing to this
    process yet (or its socket is not up), ask again for up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            x509 = client._first("FetchX509SVID", workload_pb2.X509SVIDRequest(), 10)
            break
        except (NoIdentityIssuedError, WorkloadApiUnavailableError):
            if time.monotonic() + RETRY_S > deadline:
                raise
            time.sleep(RETRY_S)
    out: dict[str, Any] = {
        "x509": _b64(x509),
        "jwt_bundles": _b64(client._first("FetchJWTBundles", workload_pb2.JWTBundlesRequest(), 10)),
    }
    if audiences:
        out["jwt"] = {
            audience: _b64(client._unary(
                "FetchJWTSVID",
                workload_pb2.JWTSVIDRequest(audience=[audience], spiffe_id=spiffe_id),
                10,
            ))
            for audience, spiffe_id in audiences
        }  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spire_fabric.workload.relay",
        description="this workload's Workload API answers, as JSON on stdout",
    )
    parser.add_argument("--wait", type=float, default=0.0, metavar="S",
                        help="ask again for up to S seconds while no identity is issued yet")
    parser.add_argument("pairs", nargs="*", metavar="AUDIENCE SPIFFE_ID",
                        help="a JWT-SVID of SPIFFE_ID for AUDIENCE, per pair")  # fmt: skip
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if len(args.pairs) % 2:
        parser.error(f"AUDIENCE and SPIFFE_ID come in pairs; got {len(args.pairs)} values")
    if not 0 <= args.wait <= MAX_WAIT_S:  # also refuses nan, which would wait for ever
        parser.error(f"--wait must be 0 to {MAX_WAIT_S:.0f} seconds, not {args.wait}")
    pairs = list(zip(args.pairs[::2], args.pairs[1::2], strict=True))
    try:
        with WorkloadApiClient() as client:
            answers = relay(client, pairs, args.wait)
    except WorkloadApiError as err:  # the caller reads the last line: the agent's reason
        print(f"relay: {err}", file=sys.stderr)
        return 1
    print(json.dumps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
