"""Trust domains in the topology are typed (:class:`TrustDomain`), read once from text.

Why here: the model holds ``TrustDomain`` values so nothing downstream re-parses a string,
but a topology is written as text (YAML, the builder); this is the one place text becomes a
trust domain, with an error that names the field. A SPIFFE ID is refused (``TrustDomain``
itself would take its trust domain): in a topology it is almost always a mistake.
"""

from __future__ import annotations

from spire_fabric.identity import TrustDomain, TrustDomainError
from spire_fabric.topology._errors import Problem, TopologyError, shown

__all__ = ["topology_trust_domain"]


def topology_trust_domain(value: TrustDomain | str, path: str) -> TrustDomain:
    if isinstance(value, TrustDomain):
        return value
    if not isinstance(value, str):
        raise TopologyError([Problem(path, f"expected a trust domain name, got {shown(value)}")])
    if ":/" in value:
        raise TopologyError(
            [
                Problem(
                    path,
                    f"expected a bare trust domain name like 'example.org', got {shown(value)}",
                )
            ]
        )
    try:
        return TrustDomain.parse(value)
    except TrustDomainError as err:
        raise TopologyError([Problem(path, f"invalid trust domain: {err}")]) from err
