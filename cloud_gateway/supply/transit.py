"""What a broker may have lost of a wave not yet delivered: its manifests, put back in line.

Kept apart from dispatch.py (which plans with numpy) so the database's ingest path can
call it when a terminal comes back without importing the engine.
"""

from __future__ import annotations

from .. import sql

# The manifests are numbered and sent at the cutoff; `delivered` needs them no more.
_UNDELIVERED = "('cutoff', 'planned', 'picked', 'dispatched')"


def requeue_in_transit(conn: sql.Connection, store: str | None = None) -> int:
    """Put back in line the manifests (of one store, or all) of every wave between its
    cutoff and its delivery (cutoff, planned, picked, dispatched): a broker that crashed, or
    a terminal whose session it lost, may never have had them, and the store holds the
    pre-orders' stock from the manifest on, so it cannot wait for dispatch. The store
    ignores a manifest id it has. How many."""
    only = "" if store is None else " AND store = ?"
    cur = conn.execute(
        "UPDATE downlink SET published_at = NULL WHERE kind = 'manifest'"
        " AND published_at IS NOT NULL AND ref IN (SELECT m.id FROM manifests m JOIN"
        " supply_cycles c ON c.zone = m.zone AND c.wave = m.wave"
        f" WHERE c.state IN {_UNDELIVERED}){only}", () if store is None else (store,))
    return int(cur.rowcount)
