"""Persistent memory of acks by correlation id: a repeated command gets the same ack again.

Keyed by the hex of the MQTT 5 CorrelationData. Kept in SQLite so it survives a restart of the daemon;
bounded by age and count (oldest forgotten first).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from edgectl.errors import RemoteError

__all__ = ["AckStore"]


class AckStore:
    def __init__(
        self, path: str | Path, *, max_entries: int = 100_000, max_age_s: float = 7 * 86400.0, prune_every: int = 1000
    ) -> None:
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.prune_every = prune_every
        self._lock = threading.Lock()
        self._puts = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS acks (correlation TEXT PRIMARY KEY, ack TEXT NOT NULL, stored_s REAL NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise RemoteError(f"ack store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, correlation: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT ack FROM acks WHERE correlation = ?", (correlation,)).fetchone()
        return json.loads(row[0]) if row else None

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM acks").fetchone()[0])

    def put(self, correlation: str, ack: dict[str, Any], *, now_s: float | None = None) -> None:
        now_s = time.time() if now_s is None else now_s
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO acks (correlation, ack, stored_s) VALUES (?, ?, ?)",
                    (correlation, json.dumps(ack), now_s),
                )
                self._puts += 1
                if self._puts % self.prune_every == 0:
                    self._db.execute("DELETE FROM acks WHERE stored_s < ?", (now_s - self.max_age_s,))
                    self._db.execute(
                        "DELETE FROM acks WHERE correlation IN (SELECT correlation FROM acks ORDER BY stored_s DESC "
                        "LIMIT -1 OFFSET ?)",
                        (self.max_entries,),
                    )
        except sqlite3.Error as exc:
            raise RemoteError(f"ack store {self.path}: {exc}") from exc
