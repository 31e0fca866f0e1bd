"""The modules a fresh interpreter holds after running some code.

Why: import-boundary tests (a local `plan` loads no gRPC, `python -m spire_fabric.entries`
loads only what it uses) cannot ask the test session, which has imported everything
already. The names go to a file of their own, so the code may print what it likes, and a
probe that fails says why instead of returning a partial set.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path


def modules_after(code: str) -> set[str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "modules"
        probe = f"import sys\n{code}\nopen({str(out)!r}, 'w').write('\\n'.join(sys.modules))"
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return set(out.read_text().split())
