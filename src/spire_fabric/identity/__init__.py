"""SPIFFE identity primitives: IDs, bundles, SVIDs and their verification.

Modelled on go-spiffe's ``spiffeid``, ``bundle/*`` and ``svid/*`` packages. All values are
immutable; errors form one tree rooted at :class:`IdentityError` (a ValueError)::

    IdentityError
    ├── SpiffeIdError (.rule: SpiffeIdRule)
    │   └── TrustDomainError
    ├── BundleError
    ├── X509SvidError
    └── JwtSvidError

py-spiffe users plug in: :func:`from_pyspiffe` / :func:`to_pyspiffe` convert IDs, SVIDs,
bundles and bundle sets both ways, and every place that takes a source (TLS contexts,
``verify_x509_svid``, ``parse_and_validate_jwt_svid``) accepts py-spiffe's ``X509Source``
and ``JwtSource`` as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spire_fabric._lazy import lazy_attributes

if TYPE_CHECKING:
    from ._bundle_diff import (
        BundleDiff,
        diff_bundles,
    )
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
    from ._explain import (
        ChainExplanation,
        ChainFinding,
        ChainStep,
        explain_chain,
    )
    from ._jwt_bundle import JwtBundle
    from ._jwt_svid import (
        JwtSvid,
        parse_insecure_jwt_svid,
    )
    from ._jwt_verify import parse_and_validate_jwt_svid
    from ._pyspiffe import (
        PySpiffeJwtSource,
        PySpiffeX509Source,
        from_pyspiffe,
        jwt_bundle_source_of,
        to_pyspiffe,
        x509_bundle_source_of,
        x509_svid_source_of,
    )
    from ._sources import (
        JwtBundleSource,
        X509BundleSource,
        X509SvidSource,
        is_pyspiffe,
    )
    from ._spiffe_bundle import SpiffeBundle
    from ._spiffe_id import (
        SpiffeId,
        TrustDomain,
    )
    from ._spire_ids import (
        agent_alias_id,
        as_trust_domain,
        installer_admin_id,
        join_token_agent_id,
        node_alias_id,
        spire_server_id,
    )
    from ._x509_bundle import X509Bundle
    from ._x509_svid import (
        X509Svid,
        spiffe_id_from_certificate,
    )
    from ._x509_verify import verify_x509_svid

# Each public name and the module it lives in, imported on first use (PEP 562): the server
# client needs SpiffeId, TrustDomain and the bundles, and not the chain explainer
# (pyOpenSSL), the SVID parsers or the py-spiffe adapters, which were about a third of
# `python -m spire_fabric.entries list`'s start-up.
_LAZY = {
    "BundleDiff": "._bundle_diff",
    "BundleError": "._errors",
    "BundleSet": "._bundle_set",
    "ChainExplanation": "._explain",
    "ChainFinding": "._explain",
    "ChainStep": "._explain",
    "IdentityError": "._errors",
    "JwtBundle": "._jwt_bundle",
    "JwtBundleSource": "._sources",
    "JwtSvid": "._jwt_svid",
    "JwtSvidError": "._errors",
    "PySpiffeJwtSource": "._pyspiffe",
    "PySpiffeX509Source": "._pyspiffe",
    "SpiffeBundle": "._spiffe_bundle",
    "SpiffeId": "._spiffe_id",
    "SpiffeIdError": "._errors",
    "SpiffeIdRule": "._errors",
    "TrustDomain": "._spiffe_id",
    "TrustDomainError": "._errors",
    "X509Bundle": "._x509_bundle",
    "X509BundleSource": "._sources",
    "X509Svid": "._x509_svid",
    "X509SvidError": "._errors",
    "X509SvidSource": "._sources",
    "agent_alias_id": "._spire_ids",
    "as_trust_domain": "._spire_ids",
    "diff_bundles": "._bundle_diff",
    "explain_chain": "._explain",
    "from_pyspiffe": "._pyspiffe",
    "installer_admin_id": "._spire_ids",
    "is_pyspiffe": "._sources",
    "join_token_agent_id": "._spire_ids",
    "jwt_bundle_source_of": "._pyspiffe",
    "node_alias_id": "._spire_ids",
    "parse_and_validate_jwt_svid": "._jwt_verify",
    "parse_insecure_jwt_svid": "._jwt_svid",
    "spiffe_id_from_certificate": "._x509_svid",
    "spire_server_id": "._spire_ids",
    "to_pyspiffe": "._pyspiffe",
    "verify_x509_svid": "._x509_verify",
    "x509_bundle_source_of": "._pyspiffe",
    "x509_svid_source_of": "._pyspiffe",
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)


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
    "PySpiffeJwtSource",
    "PySpiffeX509Source",
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
    "from_pyspiffe",
    "installer_admin_id",
    "is_pyspiffe",
    "join_token_agent_id",
    "jwt_bundle_source_of",
    "node_alias_id",
    "parse_and_validate_jwt_svid",
    "parse_insecure_jwt_svid",
    "spiffe_id_from_certificate",
    "spire_server_id",
    "to_pyspiffe",
    "verify_x509_svid",
    "x509_bundle_source_of",
    "x509_svid_source_of",
]
