"""Packaging that pyproject.toml cannot say alone: the repository's ``examples/`` ships
inside our namespace as ``spire_fabric.examples`` (the installer runs them from the
topology's description), while the checkout keeps its layout and claims no top-level
``examples`` in site-packages."""

from setuptools import find_packages, setup

examples = ["spire_fabric." + p for p in find_packages(".", include=["examples", "examples.*"])]
setup(
    packages=find_packages("src") + examples,
    package_dir={"": "src", "spire_fabric.examples": "examples"},
)
