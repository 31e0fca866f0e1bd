"""The values of the installer's Secrets, kept on the installer's machine.

Why kept here too: the renderer makes the Secrets from these values, and `deploy render`
of a deployment must make the same objects as `up` without asking the clusters. MySQL
passwords are random, made once and kept (MySQL's certificates too, ``_mysql_tls``); a
deployment made before they were kept here has them only in its cluster, so they are read
back from there once. Join tokens are
minted by the core and kept here and in the agent's Secret. The file is 0600 in the 0700
state directory, next to the CA keys.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

from spire_fabric.render.kubernetes import (
    InstallerSecrets,
    MySqlPasswords,
    SigningCaPem,
    join_token_secret_name,
    mysql_instance,
)
from spire_fabric.runtime.core import CaStore
from spire_fabric.runtime.kubernetes._clusters import ClusterApi
from spire_fabric.runtime.kubernetes._mysql_tls import MySqlTlsStore
from spire_fabric.runtime.kubernetes._objects import ObjectRef, get_live
from spire_fabric.topology import Topology

__all__ = ["SecretValues"]

SECRETS_FILE = "secrets.json"


class SecretValues:
    """The recorded values (``secrets.json``) and the CA hierarchy of one deployment."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / SECRETS_FILE
        self.ca = CaStore(state_dir / "ca")
        self.mysql_tls = MySqlTlsStore(state_dir / "mysql-tls")
        raw = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.mysql: dict[str, dict[str, str]] = dict(raw.get("mysql", {}))
        self.join_tokens: dict[str, str] = dict(raw.get("join_tokens", {}))

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{SECRETS_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"mysql": self.mysql, "join_tokens": self.join_tokens}, f, indent=2)
        os.replace(tmp, self.path)

    def forget_join_tokens(self) -> None:
        """After `down`: the tokens went with the agents' Secrets and servers."""
        if self.join_tokens:
            self.join_tokens = {}
            self.save()

    def adopt_live(self, topology: Topology, clusters: dict[str, ClusterApi]) -> None:
        """Values the clusters hold: passwords made before they were kept here (read back
        once), and the join tokens the agents' Secrets hold now."""
        for s in topology.servers:
            inst = mysql_instance(s)
            if s.kubernetes is None or inst is None or s.name in self.mysql:
                continue
            ref = ObjectRef("v1", "Secret", s.kubernetes.namespace, inst.password_secret)
            data = _data(get_live(clusters[s.kubernetes.cluster], ref))
            if "password" in data and "root-password" in data:
                self.mysql[s.name] = {"password": data["password"],
                                      "root_password": data["root-password"]}  # fmt: skip
        # A join token is current only while its agent's Secret holds it (a `down`, or a
        # cluster cleaned by hand, makes the next `up` mint a new one).
        self.join_tokens = {}
        for a in topology.agents:
            if a.kubernetes is None:
                continue
            ref = ObjectRef("v1", "Secret", a.kubernetes.namespace, join_token_secret_name(a))
            token = _data(get_live(clusters[a.kubernetes.cluster], ref)).get("token")
            if token:
                self.join_tokens[a.name] = token

    def values(self, topology: Topology, *, make: bool) -> InstallerSecrets:
        """The values to render with. ``make`` creates what is missing (passwords, the CA
        hierarchy, MySQL's certificates), as `up` does; `plan` and `render` make nothing."""
        if make:
            for s in topology.servers:
                if mysql_instance(s) is not None and s.name not in self.mysql:
                    self.mysql[s.name] = {"password": secrets.token_urlsafe(24),
                                          "root_password": secrets.token_urlsafe(24)}  # fmt: skip
            self.ca.ensure(topology)
            self.save()
        cas = {}
        for s in topology.servers:
            pem = self.ca.signing_ca(topology, s)
            if pem is not None:
                cas[s.name] = SigningCaPem(pem.chain, pem.key, pem.root)
        mysql = {n: MySqlPasswords(v["password"], v["root_password"])
                 for n, v in self.mysql.items()}  # fmt: skip
        return InstallerSecrets(
            mysql=mysql,
            mysql_tls=self.mysql_tls.values(topology, make=make),
            signing_cas=cas,
            join_tokens=dict(self.join_tokens),
        )


def _data(live: dict[str, object] | None) -> dict[str, str]:
    raw = (live or {}).get("data") or {}
    assert isinstance(raw, dict)
    return {k: base64.b64decode(v).decode() for k, v in raw.items()}
