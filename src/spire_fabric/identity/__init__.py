"""SPIFFE identity primitives: IDs, bundles, SVIDs and their verification.

Modelled on go-spiffe's ``spiffeid``, ``bundle/*`` and ``svid/*`` packages. All values are
immutable; errors form one tree rooted at :class:`IdentityError` (a ValueError)::

    IdentityError
    ├── SpiffeIdError (.rule: SpiffeIdRule)
    │   └── TrustDomainError
    ├── BundleError
    ├── X509SvidError
    └── JwtSvidError
"""

from ._bundle_diff import BundleDiff, diff_bundles
from ._bundle_set import BundleSet
from ._errors import (
    BundleError,
    IdentityError,
    JwtSvidError,
    SpiffeIdError,
    SpiffeIdRule,
    TrustDomainError,
    X509SvidError,
)
from ._explain import ChainExplanation, ChainFinding, ChainStep, explain_chain
from ._jwt_bundle import JwtBundle
from ._jwt_svid import JwtSvid, parse_and_validate_jwt_svid, parse_insecure_jwt_svid
from ._sources import JwtBundleSource, X509BundleSource, X509SvidSource
from ._spiffe_bundle import SpiffeBundle
from ._spiffe_id import SpiffeId, TrustDomain
from ._spire_ids import (
    agent_alias_id,
    as_trust_domain,
    join_token_agent_id,
    node_alias_id,
    spire_server_id,
)
from ._x509_bundle import X509Bundle
from ._x509_svid import X509Svid, spiffe_id_from_certificate
from ._x509_verify import verify_x509_svid

__all__ = [
    "BundleDiff",
    "BundleError",
    "BundleSet",
    "ChainExplanation",
    "ChainFinding",
    "ChainStep",
    "IdentityError",
    "JwtBundle",
    "JwtBundleSource",
    "JwtSvid",
    "JwtSvidError",
    "SpiffeBundle",
    "SpiffeId",
    "SpiffeIdError",
    "SpiffeIdRule",
    "TrustDomain",
    "TrustDomainError",
    "X509Bundle",
    "X509BundleSource",
    "X509Svid",
    "X509SvidError",
    "X509SvidSource",
    "agent_alias_id",
    "as_trust_domain",
    "diff_bundles",
    "explain_chain",
    "join_token_agent_id",
    "node_alias_id",
    "parse_and_validate_jwt_svid",
    "parse_insecure_jwt_svid",
    "spiffe_id_from_certificate",
    "spire_server_id",
    "verify_x509_svid",
]
