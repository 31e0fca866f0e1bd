"""Verification of a running topology: checks against SPIRE's APIs and real handshakes."""

from spire_fabric.verify._local import verify_deployment
from spire_fabric.verify._report import CheckResult, Report

__all__ = ["CheckResult", "Report", "verify_deployment"]
