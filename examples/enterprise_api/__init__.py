"""enterprise-api: an mTLS HTTPS API of the downstream trust domain (see README.md)."""
