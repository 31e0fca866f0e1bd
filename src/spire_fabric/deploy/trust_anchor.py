"""``trust-anchor``: the PEM an external client (curl, a browser, a non-SPIFFE service)
trusts to reach a deployment's TLS endpoints, such as the security gateway on 30080.

Why the offline root: it outlives every SPIRE CA rotation, and every X.509-SVID of every
trust domain chains to it (servers send their intermediates). During ``rotate root`` it
prints the old and the new root: a client that re-reads it (and ``rotate root
--external-grace`` at least that period) never sees a certificate it cannot check. A
client checks the server's certificate by its DNS name (an entry's ``dns_names`` become
DNS SANs; SPIRE also makes the first one the CN). Without a CA hierarchy,
``--trust-domain`` gives that trust domain's current X.509 authorities instead; they change
when SPIRE rotates its CA.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from rich.console import Console

from spire_fabric.deploy._common import UsageError, add_deployment_args, choose
from spire_fabric.runtime.core.ca import CaStore
from spire_fabric.runtime.deployment import Deployment


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "trust-anchor",
        help="print the CA certificate TLS clients should trust (local or Kubernetes)",
    )
    add_deployment_args(p)
    p.add_argument(
        "--trust-domain",
        default=None,
        help="the current X.509 authorities of this trust domain instead of the offline root",
    )
    p.add_argument("-o", "--output", type=Path, default=None, help="write to FILE, not stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    with choose(args).open() as deployment:
        return _print_anchor(deployment, args, console)


def _print_anchor(deployment: Deployment, args: argparse.Namespace, console: Console) -> int:
    if args.trust_domain is None:
        roots = CaStore(deployment.ca_directory).trusted_roots(deployment.topology)
        if not roots:
            raise UsageError(
                f"{deployment.name} has no offline root CA; use --trust-domain TD for that "
                "trust domain's current X.509 authorities"
            )
        pem = b"".join(root.public_bytes(serialization.Encoding.PEM) for root in roots)
    else:
        servers = [
            s for s in deployment.topology.servers if str(s.trust_domain) == args.trust_domain
        ]
        if not servers:
            raise UsageError(f"no server of trust domain {args.trust_domain!r} in this topology")
        with deployment.server(servers[0].name) as api:
            bundle = api.get_bundle()
        pem = b"".join(
            a.certificate.public_bytes(serialization.Encoding.PEM) for a in bundle.x509_authorities
        )
    if args.output is None:
        sys.stdout.write(pem.decode())
    else:
        args.output.write_bytes(pem)
        console.print(f"wrote {args.output}")
    return 0
