"""plain_poller: a plain-HTTP client job with no SPIFFE code (see __main__)."""
