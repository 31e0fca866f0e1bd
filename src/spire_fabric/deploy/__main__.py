import sys

from spire_fabric.deploy.cli import main

sys.exit(main())
