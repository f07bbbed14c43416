"""The small parts on their own: rate limiter, ack store, topics, broker URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgectl.errors import RemoteError
from edgectl.remote import AckStore, RateLimiter, Topics, parse_broker_url


def test_rate_limiter_per_client_refill_and_global() -> None:
    rl = RateLimiter(burst=2, per_s=1.0, global_burst=3, global_per_s=1.0)
    assert rl.check("a", 0.0) is None and rl.check("a", 0.0) is None
    reason = rl.check("a", 0.0)
    assert reason is not None and "client 'a'" in reason and "retry in 1.0 s" in reason
    assert rl.check("a", 1.0) is None  # refilled one token (global: 3 - 2 + 1 - 1 = 1 left)
    assert rl.check("b", 1.0) is None  # b's own bucket is full; takes the last global token
    reason = rl.check("b", 1.0)  # b still has a token of its own, but the global bucket is empty
    assert reason is not None and "all clients together" in reason
    assert rl.check("b", 2.0) is None


def test_ack_store_persists_and_prunes(tmp_path: Path) -> None:
    store = AckStore(tmp_path / "a.sqlite", max_entries=5, max_age_s=100.0, prune_every=10)
    for i in range(9):
        store.put(f"c{i}", {"status": "accepted", "i": i}, now_s=1000.0 + i)
    assert len(store) == 9 and store.get("c3") == {"status": "accepted", "i": 3}
    store.put("c9", {"i": 9}, now_s=1009.0)  # 10th put prunes to the newest 5
    assert len(store) == 5 and store.get("c4") is None and store.get("c5") == {"status": "accepted", "i": 5}
    store.close()
    again = AckStore(tmp_path / "a.sqlite", max_age_s=100.0, prune_every=1)
    assert again.get("c9") == {"i": 9}
    again.put("new", {"i": 10}, now_s=1200.0)  # everything older than 100 s goes
    assert len(again) == 1 and again.get("c9") is None
    again.close()


def test_topics() -> None:
    t = Topics("edgectl", "site-1")
    assert t.cmd("operator", "mode") == "edgectl/site-1/cmd/operator/mode"
    assert t.parse_cmd("edgectl/site-1/cmd/admin/carbon_price") == ("admin", "carbon_price")
    assert t.parse_cmd("edgectl/site-1/cmd/admin/a/b") is None
    assert t.parse_cmd("edgectl/other/cmd/admin/a") is None
    assert t.resp_client("edgectl/site-1/resp/alice/123") == "alice"
    for bad in ("edgectl/site-1/resp/alice", "other/resp/alice/1", "edgectl/site-1/resp//1", "edgectl/site-1/resp/a/#"):
        assert t.resp_client(bad) is None


def test_broker_urls() -> None:
    u = parse_broker_url("mqtts://op%40x:p%3Aw@broker.example:8884")
    assert (u.tls, u.host, u.port, u.username, u.password) == (True, "broker.example", 8884, "op@x", "p:w")
    assert parse_broker_url("mqtt://h").port == 1883 and parse_broker_url("mqtts://h").port == 8883
    assert "p:w" not in repr(u)
    for bad in ("http://h", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(RemoteError):
            parse_broker_url(bad)
