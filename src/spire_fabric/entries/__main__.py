"""`python -m spire_fabric.entries apply|diff|list`: see `spire_fabric.entries._cli`."""

from spire_fabric.entries._cli import main

raise SystemExit(main())
