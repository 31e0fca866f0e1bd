import sys

from spire_fabric._extras import require_extra_or_exit

require_extra_or_exit("deploy", "python -m spire_fabric.deploy")

from spire_fabric.deploy.cli import main  # noqa: E402  (after the extra is known present)

sys.exit(main())
