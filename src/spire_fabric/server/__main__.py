"""`python -m spire_fabric.server entries ...`: the old spelling of
`python -m spire_fabric.entries ...`, kept for one release with a deprecation warning."""

import sys
import warnings

from spire_fabric._extras import require_extra_or_exit

require_extra_or_exit("cli", "python -m spire_fabric.entries")

from spire_fabric.entries._cli import main  # noqa: E402  (after the extra is known present)

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
