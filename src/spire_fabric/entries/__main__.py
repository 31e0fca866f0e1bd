"""`python -m spire_fabric.entries apply|diff|list`: see `spire_fabric.entries._cli`."""

from spire_fabric._extras import require_extra_or_exit

require_extra_or_exit("cli", "python -m spire_fabric.entries")

from spire_fabric.entries._cli import main  # noqa: E402  (after the extra is known present)

raise SystemExit(main())
