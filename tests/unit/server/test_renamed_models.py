"""Each public class name means one thing: the server's records that shared a name with the
canonical class elsewhere are renamed, and the old names still work, with a warning."""

from __future__ import annotations

import importlib
import inspect
import warnings

import pytest

import spire_fabric.identity as identity
import spire_fabric.server as server
from spire_fabric.server._models import AttestedAgent, MintedJwtSvid, MintedX509Svid

RENAMED = [
    ("Agent", AttestedAgent),
    ("X509Svid", MintedX509Svid),
    ("JwtSvid", MintedJwtSvid),
]


@pytest.mark.parametrize(("old", "new"), RENAMED, ids=[old for old, _ in RENAMED])
def test_the_old_name_warns_and_returns_the_renamed_class(old: str, new: type) -> None:
    with pytest.warns(DeprecationWarning, match=rf"server\.{old} is renamed .*{new.__name__}"):
        got = getattr(server, old)
    assert got is new
    assert old not in server.__all__
    assert new.__name__ in server.__all__


def test_from_import_of_an_old_name_still_works() -> None:
    with pytest.warns(DeprecationWarning):
        from spire_fabric.server import X509Svid
    assert X509Svid is MintedX509Svid


def test_the_new_names_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert server.AttestedAgent is AttestedAgent
        assert server.MintedX509Svid is MintedX509Svid
        assert server.MintedJwtSvid is MintedJwtSvid


def test_x509svid_and_jwtsvid_now_name_only_the_identity_classes() -> None:
    assert identity.X509Svid is not MintedX509Svid
    assert identity.JwtSvid is not MintedJwtSvid
    for name in ("X509Svid", "JwtSvid"):
        for module_name in (
            "spire_fabric",
            "spire_fabric.workload",
            "spire_fabric.tls",
            "spire_fabric.federation",
            "spire_fabric.server",
            "spire_fabric.agent",
            "spire_fabric.entries",
        ):
            module = importlib.import_module(module_name)
            if name in module.__all__:
                assert getattr(module, name) is getattr(identity, name), (module_name, name)


def test_the_client_annotates_with_the_new_names() -> None:
    hints = inspect.get_annotations(server.SpireServerClient.get_agent, eval_str=True)
    assert hints["return"] is AttestedAgent
    hints = inspect.get_annotations(server.SpireServerClient.mint_x509_svid, eval_str=True)
    assert hints["return"] is MintedX509Svid
