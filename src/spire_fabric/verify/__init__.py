"""Verification of a running topology: checks against SPIRE's APIs and real handshakes,
written once against the `Deployment` interface so they run on every target."""

from spire_fabric.verify._report import CheckResult, Report
from spire_fabric.verify.checks import verify_deployment

__all__ = ["CheckResult", "Report", "verify_deployment"]
