"""data-processor: a client that calls enterprise-api over mTLS in a loop (see README.md)."""
