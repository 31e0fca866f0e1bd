"""inventory: nginx from Debian serving JSON, a service with no SPIFFE code (see __main__)."""
