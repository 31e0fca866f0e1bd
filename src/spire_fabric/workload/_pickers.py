"""Choosing one X509-SVID when the agent issues several (one workload, several entries).

SPIRE orders SVIDs by entry age, and entries can carry a ``hint`` ("internal",
"external") precisely so a workload can tell them apart; a picker is the hook for that,
as go-spiffe's ``WithDefaultX509SVIDPicker``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spire_fabric.identity import SpiffeId, X509Svid

from ._errors import NoMatchingSvidError

__all__ = ["X509SvidPicker", "pick_by_hint", "pick_by_id", "pick_first"]

X509SvidPicker = Callable[[Sequence[X509Svid]], X509Svid]


def _offered(svids: Sequence[X509Svid]) -> str:
    return ", ".join(f"{s.spiffe_id} (hint {s.hint!r})" for s in svids) or "none"


def pick_first(svids: Sequence[X509Svid]) -> X509Svid:
    """The Workload API's default SVID: the first one listed."""
    if not svids:
        raise NoMatchingSvidError("the Workload API issued no X509-SVIDs")
    return svids[0]


def pick_by_hint(hint: str) -> X509SvidPicker:
    """Pick the first SVID whose registration entry has ``hint``."""

    def pick(svids: Sequence[X509Svid]) -> X509Svid:
        for svid in svids:
            if svid.hint == hint:
                return svid
        raise NoMatchingSvidError(
            f"no X509-SVID with hint {hint!r}; the agent issued: {_offered(svids)}"
        )

    pick.__qualname__ = f"pick_by_hint({hint!r})"
    return pick


def pick_by_id(spiffe_id: SpiffeId | str) -> X509SvidPicker:
    """Pick the SVID for exactly ``spiffe_id``."""
    wanted = spiffe_id if isinstance(spiffe_id, SpiffeId) else SpiffeId.parse(spiffe_id)

    def pick(svids: Sequence[X509Svid]) -> X509Svid:
        for svid in svids:
            if svid.spiffe_id == wanted:
                return svid
        raise NoMatchingSvidError(f"no X509-SVID for {wanted}; the agent issued: {_offered(svids)}")

    pick.__qualname__ = f"pick_by_id({str(wanted)!r})"
    return pick
