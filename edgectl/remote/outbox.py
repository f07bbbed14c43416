"""SQLite store-and-forward outbox for telemetry and audit messages.

Messages are appended in order (``seq``). The outbox is bounded: when it holds more than
``max_messages`` rows the oldest rows are dropped and counted (``dropped``, persisted). Rows are deleted
only after the broker acknowledged them (PUBACK), so a crash or an outage loses nothing that fits in the
bound. One :class:`Outbox` object belongs to one thread (the link's sender thread).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edgectl.errors import RemoteError

__all__ = ["Outbox", "OutboxRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    historical INTEGER NOT NULL,
    created_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('dropped', 0);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    topic: str
    payload: bytes
    historical: bool
    created_s: float


class Outbox:
    """Bounded, ordered, persistent queue of messages waiting for a broker acknowledgement."""

    def __init__(self, path: str | Path, *, max_messages: int) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages {max_messages} must be >= 1")
        self.path = Path(path)
        self.max_messages = max_messages
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            self._dropped = int(self._db.execute("SELECT value FROM outbox_meta WHERE key='dropped'").fetchone()[0])
        except sqlite3.Error as exc:
            if db is not None:
                db.close()  # no handle left open on a database that could not be set up
            raise RemoteError(f"outbox {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._count

    @property
    def dropped(self) -> int:
        """Messages dropped because the outbox was full, ever (persisted)."""
        return self._dropped

    def append_many(self, items: list[tuple[str, bytes, bool, float]]) -> list[int]:
        """Append ``(topic, payload, historical, created_s)`` rows in order; drop the oldest beyond the bound.

        Returns the sequence numbers given to the new rows.
        """
        if not items:
            return []
        seqs: list[int] = []
        count, dropped = self._count, self._dropped
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for topic, payload, historical, created_s in items:
                cur = self._db.execute(
                    "INSERT INTO outbox (topic, payload, historical, created_s) VALUES (?, ?, ?, ?)",
                    (topic, payload, int(historical), created_s),
                )
                seqs.append(int(cur.lastrowid or 0))
            count += len(items)
            excess = count - self.max_messages
            if excess > 0:
                cur = self._db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (excess,)
                )
                count -= cur.rowcount
                self._db.execute("UPDATE outbox_meta SET value = value + ? WHERE key='dropped'", (cur.rowcount,))
                dropped += cur.rowcount
            self._db.execute("COMMIT")
            self._count, self._dropped = count, dropped  # the counters follow what was committed
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise RemoteError(f"outbox {self.path}: {exc}") from exc
        return seqs

    def after(self, seq: int, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` rows with a sequence number above ``seq``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, topic, payload, historical, created_s FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [OutboxRow(int(s), t, bytes(p), bool(h), float(c)) for s, t, p, h, c in rows]

    def has_historical(self) -> bool:
        return self._db.execute("SELECT 1 FROM outbox WHERE historical = 1 LIMIT 1").fetchone() is not None

    def delete(self, seqs: list[int]) -> None:
        """Forget acknowledged rows (already-dropped sequence numbers are ignored)."""
        if not seqs:
            return
        try:
            cur = self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self._count -= max(cur.rowcount, 0)
        except sqlite3.Error as exc:
            raise RemoteError(f"outbox {self.path}: {exc}") from exc
