"""A workload's managed files ({files}): one interface on both targets, names checked."""

from __future__ import annotations

import dataclasses
import stat

import pytest

from spire_fabric.runtime.core import UpError
from spire_fabric.runtime.local import LocalDeployment, LocalSettings
from spire_fabric.topology import TopologyError, preset, validate_topology


def test_the_local_target_keeps_a_file_0600_where_the_workload_reads_it(tmp_path):
    d = LocalDeployment.create(preset("enterprise"), tmp_path / "s", LocalSettings())
    assert d.workload_file("security-gateway", "api-keys.json") is None
    d.put_workload_file("security-gateway", "api-keys.json", b'{"clients": {}}')
    path = tmp_path / "s" / "workloads" / "security-gateway" / "files" / "api-keys.json"
    assert path.read_bytes() == b'{"clients": {}}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert d.workload_file("security-gateway", "api-keys.json") == b'{"clients": {}}'
    # the gateway is told that very path
    gateway = next(p for p in d.workload_processes() if p.workload.name == "security-gateway")
    argv = gateway.component.argv
    assert argv[argv.index("--api-keys") + 1] == str(path)


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "", "x" * 300, "sp ace"])
def test_a_file_name_that_is_not_one_plain_name_is_refused(tmp_path, name):
    d = LocalDeployment.create(preset("enterprise"), tmp_path / "s", LocalSettings())
    with pytest.raises(UpError, match="is not a file name"):
        d.put_workload_file("security-gateway", name, b"x")
    assert not (tmp_path / "s").exists()


def test_a_workload_without_files_is_refused_naming_why(tmp_path):
    d = LocalDeployment.create(preset("enterprise"), tmp_path / "s", LocalSettings())
    with pytest.raises(UpError, match="enterprise-api has no managed files"):
        d.put_workload_file("enterprise-api", "x.json", b"x")


def test_a_workload_may_name_only_its_own_files():
    t = preset("enterprise")
    api = t.workload("enterprise-api")
    assert api.run is not None
    bad = dataclasses.replace(api, run=dataclasses.replace(
        api.run, args=(*api.run.args, "--keys", "{files:security-gateway}/k")))  # fmt: skip
    t = dataclasses.replace(t, workloads=tuple(bad if w is api else w for w in t.workloads))
    with pytest.raises(TopologyError, match="reaches only its own files"):
        validate_topology(t)
