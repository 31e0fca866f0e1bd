"""`python -m spire_fabric.helper`: see `spire_fabric.helper._cli`."""

import sys

from spire_fabric.helper._cli import main

sys.exit(main())
