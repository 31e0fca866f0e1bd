"""The one place the version is written.

pyproject.toml reads it (``[tool.setuptools.dynamic]``), ``spire_fabric.__version__``
re-exports it, and the test clusters' image tags are built from it, so a release bumps
this line and nothing else (CHANGELOG.md says what changed).
"""

__version__ = "0.1.0"
