"""`python -m spire_fabric.server`: see `spire_fabric.server._cli`."""

from spire_fabric.server._cli import main

raise SystemExit(main())
