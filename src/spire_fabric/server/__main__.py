"""`python -m spire_fabric.server entries ...`: the old spelling of
`python -m spire_fabric.entries ...`, kept for one release with a deprecation warning."""

import sys
import warnings

from spire_fabric.entries._cli import main

warnings.warn(
    "`python -m spire_fabric.server entries ...` is deprecated; "
    "use `python -m spire_fabric.entries ...`",
    DeprecationWarning,
    stacklevel=1,
)
args = sys.argv[1:]
if args[:1] != ["entries"]:
    print("usage: python -m spire_fabric.entries {apply,diff,list} ...", file=sys.stderr)
    raise SystemExit(2)
raise SystemExit(main(args[1:]))
