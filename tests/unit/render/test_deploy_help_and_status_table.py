"""What a user reads first: `deploy --help` says what each command does on which target, and
`status` fits 80 columns without cutting the words that carry the information."""

from __future__ import annotations

import argparse
import time

import pytest
from rich.console import Console

from spire_fabric.deploy.cli import build_parser
from spire_fabric.deploy.status import authority_lines, status_table
from spire_fabric.runtime.deployment import ComponentHealth
from spire_fabric.verify import AuthoritiesReport, AuthorityRow, ServerAuthorities


def _subcommands() -> dict[str, tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    return {name: (helps[name], p) for name, p in sub.choices.items()}


def _targets(p: argparse.ArgumentParser) -> tuple[str, ...]:
    for action in p._actions:
        if "--target" in action.option_strings:
            return tuple(action.choices or ())
    return ()


# commands that act on no deployment at all (the image is the same for every target)
TARGETLESS = {"image"}


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_a_command_that_takes_both_targets_does_not_say_local(name: str) -> None:
    help_text, parser = _subcommands()[name]
    if "kubernetes" in _targets(parser):
        assert "local deployment" not in help_text and "locally" not in help_text, help_text
        if name not in ("plan", "render"):  # these two never said local
            assert "local" in help_text and "Kubernetes" in help_text, help_text
    elif name in TARGETLESS:
        assert "local" not in help_text and "Kubernetes" not in help_text, help_text
    else:
        assert "(local)" in help_text, f"{name}: only local, and its help must say so"


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_option_says_what_it_is_for(name: str) -> None:
    _, parser = _subcommands()[name]
    silent = [
        a.option_strings[0]
        for a in parser._actions
        if a.option_strings and not a.help and a.help != argparse.SUPPRESS
    ]
    assert silent == []


NOW = int(time.time())
ROWS = [  # as runtime/kubernetes/_status.py makes them, with real-length pod names
    ComponentHealth(
        "spire-upstream-mysql", "database", None, True, True,
        "Deployment available in upstream-spire-cluster, pod spire-upstream-mysql-6d9f7c8b5-abcde",
        extra={"cluster": "upstream-spire-cluster", "pod": "spire-upstream-mysql-6d9f7c8b5-abcde"},
    ),
    ComponentHealth(
        "spire-downstream-server", "server", None, True, True, "StatefulSet ready",
        svid_expires_at=NOW + 5 * 3600, extra={"pod": "spire-downstream-server-0"},
    ),
    ComponentHealth(
        "downstream-agent-1", "agent", None, True, False, "DaemonSet 0/1 ready", restarts=3,
        last_exit="spire-agent: exit 1 (Error)", svid_expires_at=NOW + 1800,
        extra={"pod": "downstream-agent-1-x7k2p"},
    ),
    ComponentHealth("enterprise-api", "workload", None, False, False, "not created"),
    ComponentHealth(
        "security-gateway", "workload", None, True, True, "Deployment available",
        svid_expires_at=NOW + 900, extra={"pod": "security-gateway-5f7c9d8b6-q2w3e"},
    ),
]  # fmt: skip


def _render(verbose: bool) -> list[str]:
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    title = "status: enterprise (kubernetes, /root/.local/state/spire-fabric/enterprise@kubernetes)"
    console.print(status_table(ROWS, title=title, kube=True, verbose=verbose))
    return console.export_text().splitlines()


@pytest.mark.parametrize("verbose", [False, True], ids=["table", "verbose"])
def test_status_at_80_columns_keeps_kind_and_health_whole(verbose: bool) -> None:
    lines = _render(verbose)
    assert all(len(line) <= 80 for line in lines)
    assert not any("…" in line for line in lines)  # nothing cut: what does not fit folds
    rows = [ln.split() for ln in lines if ln.split()[:1] in ([r.kind] for r in ROWS)]
    assert [row[0] for row in rows] == [r.kind for r in ROWS]  # each row starts whole
    health = [" ".join(ln.split()) for ln in lines]
    assert sum("running, not healthy" in ln for ln in health) == 1
    assert sum(" healthy " in f" {ln} " and "not healthy" not in ln for ln in health) == 3
    assert sum(" down " in f" {ln} " for ln in health) == 1


def test_status_at_80_columns_keeps_names_whole_and_folds_pods() -> None:
    lines = _render(verbose=False)
    for r in ROWS:
        row = next(ln for ln in lines if f" {r.name} " in ln)  # the name whole, on one line
        assert row.split()[0] == r.kind
    # the longest pod name folds onto the next lines of its column, all of it shown
    header = next(ln for ln in lines if " pod " in ln)
    column = header.index(" pod ") + 1
    first = next(i for i, ln in enumerate(lines) if " spire-upstream-mysql " in ln)
    pieces = [ln[column:].split(" ")[0] for ln in lines[first : first + 4]]
    assert "".join(pieces) == "spire-upstream-mysql-6d9f7c8b5-abcde"


def test_status_of_a_local_deployment_shows_pids_in_the_same_layout() -> None:
    rows = [
        ComponentHealth("supervisor", "supervisor", 4242, True, True, "ok"),
        ComponentHealth("spire-upstream-server", "server", 4243, True, True, "ok"),
        ComponentHealth("downstream-agent-1", "agent", None, False, False, "exited"),
    ]
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    console.print(status_table(rows, title="status: basic (/tmp/s)", kube=False, verbose=False))
    lines = console.export_text().splitlines()
    assert any(ln.split()[:2] == ["kind", "name"] and "pid" in ln for ln in lines)
    assert [
        ln.split()[:3] for ln in lines if ln.split()[:1] in (["supervisor"], ["server"], ["agent"])
    ] == [
        ["supervisor", "supervisor", "4242"],
        ["server", "spire-upstream-server", "4243"],
        ["agent", "downstream-agent-1", "-"],
    ]


def _authorities_report() -> AuthoritiesReport:
    def row(
        kind: str, slot: str, aid: str, hours: float, tainted: bool = False, in_bundle: bool = True
    ) -> AuthorityRow:
        expires = int(NOW + hours * 3600)
        return AuthorityRow(kind, slot, aid, expires, "", in_bundle, tainted, None, 0)  # type: ignore[arg-type]

    return AuthoritiesReport("enterprise", "kubernetes", (
        ServerAuthorities("spire-upstream-server", "enterprise-root.org", authorities=(
            row("x509", "active", "a1b2c3d4e5f60718293a", 40.0),
            row("jwt", "active", "JwtKeyUp1", 30.0),
        )),
        ServerAuthorities("spire-downstream-server", "downstream.example.org", authorities=(
            row("x509", "active", "ffeeddccbbaa99887766", 20.0),
            row("jwt", "active", "JwtKeyDown2", 18.0),
            row("jwt", "old", "JwtKeyDown1", 2.0, tainted=True),
            row("x509", "prepared", "0011", 24.0),
            row("x509", "old", "0010", 4.0, in_bundle=False),
        )),
        ServerAuthorities("spire-other-server", "other.org", error="connection refused"),
    ))  # fmt: skip


def test_status_shows_one_authority_line_per_server() -> None:
    console = Console(width=200, record=True, force_terminal=False, color_system=None)
    for line in authority_lines(_authorities_report(), now=NOW):
        console.print(line)
    lines = console.export_text().splitlines()
    assert lines == [
        "authorities (details: deploy authorities; checks: deploy verify)",
        "  spire-upstream-server: X.509 a1b2c3d4e5f60718 expires in 40.0h; JWT JwtKeyUp1 expires "
        "in 30.0h; no prepared, old or tainted authority",
        "  spire-downstream-server: X.509 ffeeddccbbaa9988 expires in 20.0h; JWT JwtKeyDown2 "
        "expires in 18.0h; old JWT tainted, prepared X.509, old X.509 (revoked)",
        "  spire-other-server: could not be asked: connection refused",
    ]
