"""Records and results in one SQLite file, so they survive a restart of the API.

One connection behind a lock: the handlers are threads of one process, the statements are
tiny, and SQLite serializes writers anyway. WAL keeps readers from waiting on a writer.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["SAMPLE_RECORDS", "Store"]

# A new store starts with these, so a fresh deployment has something to show.
SAMPLE_RECORDS = (
    ("Acme Corp", "eu-west", 1200.50),
    ("Globex", "us-east", 310.00),
    ("Initech", "ap-south", 87.25),
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer TEXT NOT NULL,
    region TEXT NOT NULL,
    balance REAL NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    through_id INTEGER NOT NULL,
    record_ids TEXT NOT NULL,
    totals TEXT NOT NULL,
    posted_by TEXT NOT NULL,
    posted_at REAL NOT NULL
);
"""


def _record(row: sqlite3.Row) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "customer", "region", "balance", "created_by")}


def _result(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "through_id": row["through_id"],
        "record_ids": json.loads(row["record_ids"]),
        "totals": json.loads(row["totals"]),
        "posted_by": row["posted_by"],
        "posted_at": row["posted_at"],
    }


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            if self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0:
                now = time.time()
                self._db.executemany(
                    "INSERT INTO records (customer, region, balance, created_by, created_at)"
                    " VALUES (?, ?, ?, 'sample', ?)",
                    [(*r, now) for r in SAMPLE_RECORDS],
                )

    def list_records(self, after_id: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM records WHERE id > ? ORDER BY id", (after_id,)
            ).fetchall()
        return [_record(r) for r in rows]

    def get_record(self, record_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM records WHERE id = ?", (record_id,)).fetchone()
        return _record(row) if row else None

    def create_record(
        self, customer: str, region: str, balance: float, created_by: str
    ) -> dict[str, Any]:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO records (customer, region, balance, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (customer, region, balance, created_by, time.time()),
            )
            row = self._db.execute(
                "SELECT * FROM records WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
        return _record(row)

    def add_result(
        self, through_id: int, record_ids: list[int], totals: dict[str, float], posted_by: str
    ) -> dict[str, Any]:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO results (through_id, record_ids, totals, posted_by, posted_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (through_id, json.dumps(record_ids), json.dumps(totals), posted_by, time.time()),
            )
            row = self._db.execute(
                "SELECT * FROM results WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
        return _result(row)

    def list_results(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM results ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_result(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
