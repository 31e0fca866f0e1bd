"""Registration entries as code: a YAML format, a reconcile that touches only owned entries,
and the `python -m spire_fabric.entries apply|diff|list` CLI.

    from spire_fabric.entries import apply_entries, load_entries_file
    from spire_fabric.server import SpireServerClient

    spec = load_entries_file("entries.yaml")
    with SpireServerClient("unix:///tmp/spire-server/private/api.sock") as spire:
        result = apply_entries(spire, spec.entries, owner=spec.owner)
"""

from spire_fabric.entries._file import (
    EntriesFile,
    EntriesFileError,
    entry_to_dict,
    load_entries_file,
    parse_entries,
)
from spire_fabric.entries._reconcile import (
    ApplyResult,
    EntryChange,
    EntryPlan,
    apply_entries,
    apply_entries_async,
    owned_entry_id,
    plan_entries,
)

__all__ = [
    "ApplyResult",
    "EntriesFile",
    "EntriesFileError",
    "EntryChange",
    "EntryPlan",
    "apply_entries",
    "apply_entries_async",
    "entry_to_dict",
    "load_entries_file",
    "owned_entry_id",
    "parse_entries",
    "plan_entries",
]
