"""security-gateway: the cross-trust-domain front door to enterprise-api (see README.md)."""
