"""Verification of a running topology: checks against SPIRE's APIs and real handshakes,
written once against the `Deployment` interface so they run on every target; and the
authorities report (who signs, who holds the keys, who still chains to which)."""

from spire_fabric.verify._authorities import (
    AgentSvidSource,
    AuthoritiesError,
    AuthoritiesReport,
    AuthorityRow,
    BundleAuthority,
    LeakExposure,
    PeerCopy,
    ServerAuthorities,
    UpstreamRow,
    WorkloadSvidSource,
    authorities_report,
)
from spire_fabric.verify._authority_checks import (
    activation_window,
    authority_checks,
    preparation_window,
)
from spire_fabric.verify._report import CheckResult, Report
from spire_fabric.verify.checks import verify_deployment

__all__ = [
    "AgentSvidSource",
    "AuthoritiesError",
    "AuthoritiesReport",
    "AuthorityRow",
    "BundleAuthority",
    "CheckResult",
    "LeakExposure",
    "PeerCopy",
    "Report",
    "ServerAuthorities",
    "UpstreamRow",
    "WorkloadSvidSource",
    "activation_window",
    "authorities_report",
    "authority_checks",
    "preparation_window",
    "verify_deployment",
]
