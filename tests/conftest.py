pytest_plugins = ["spire_fabric.testing.pytest_plugin"]
