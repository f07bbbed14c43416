"""Token-bucket rate limiting of remote commands, per client and overall.

MQTT does not tell a subscriber who published a message. The client key is the ``<user>`` level of the
command's response topic (``<prefix>/<site>/resp/<user>/...``); the broker ACL lets each account read
only its own response topics, so a client that claims another's key cannot read its acks. A global
bucket bounds the total command rate whatever the keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RateLimiter"]


@dataclass
class _Bucket:
    tokens: float
    stamp_s: float


@dataclass
class RateLimiter:
    """``burst`` commands at once, refilled at ``per_s`` commands per second, per client and globally.

    Times are monotonic seconds supplied by the caller (pure; no clock inside).
    """

    burst: float = 10.0
    per_s: float = 2.0
    global_burst: float = 50.0
    global_per_s: float = 20.0
    max_clients: int = 10_000
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _global: _Bucket | None = None

    def _take(self, bucket: _Bucket, burst: float, per_s: float, now_s: float) -> float:
        bucket.tokens = min(burst, bucket.tokens + (now_s - bucket.stamp_s) * per_s)
        bucket.stamp_s = now_s
        if bucket.tokens >= 1.0:
            return 0.0
        return (1.0 - bucket.tokens) / per_s

    def check(self, client: str, now_s: float) -> str | None:
        """Take one token for ``client``; ``None`` when allowed, else the rejection reason."""
        if self._global is None:
            self._global = _Bucket(self.global_burst, now_s)
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._buckets.clear()
            bucket = self._buckets[client] = _Bucket(self.burst, now_s)
        wait = self._take(bucket, self.burst, self.per_s, now_s)
        if wait > 0.0:
            return (
                f"rate limit: client {client!r} may send {self.burst:g} commands at once and "
                f"{self.per_s:g} per second; retry in {wait:.1f} s"
            )
        wait = self._take(self._global, self.global_burst, self.global_per_s, now_s)
        if wait > 0.0:
            return f"rate limit: all clients together may send {self.global_per_s:g} commands per second; retry in {wait:.1f} s"
        bucket.tokens -= 1.0
        self._global.tokens -= 1.0
        return None
