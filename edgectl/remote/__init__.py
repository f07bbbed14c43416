"""Remote operation over MQTT 5: topics, command validation, the daemon's link, the operator CLI.

Public surface::

    RemoteLink(site, *, url=None, state_dir, on_command, on_audit=None, on_expire=None, ...)
        .start() / .stop() or ``with``; .publish_state/.publish_telemetry/.publish_plan/.publish_audit(dict)
        .overrides(now=None) -> {name: Command}; .connected; .wait_connected(timeout_s); .stats()
    validate_command(site, role, name, payload, now, current) -> Accepted | Rejected   (pure)
    Command (frozen), Accepted, Rejected, COMMANDS, MODES, Topics, RateLimiter, Outbox, AckStore

Errors: every failure the link raises on purpose is :class:`edgectl.errors.RemoteError`; paho, ssl and
sqlite3 exceptions are translated at this boundary.
"""

from edgectl.remote.commands import (
    COMMANDS,
    MAX_PAYLOAD_BYTES,
    MODES,
    Accepted,
    Command,
    CommandSpec,
    Rejected,
    current_mode,
    required_role,
    validate_command,
)
from edgectl.remote.idempotency import AckStore
from edgectl.remote.link import BrokerUrl, RemoteLink, parse_broker_url
from edgectl.remote.outbox import Outbox
from edgectl.remote.ratelimit import RateLimiter
from edgectl.remote.topics import Topics

__all__ = [
    "COMMANDS",
    "MAX_PAYLOAD_BYTES",
    "MODES",
    "Accepted",
    "AckStore",
    "BrokerUrl",
    "Command",
    "CommandSpec",
    "Outbox",
    "RateLimiter",
    "Rejected",
    "RemoteLink",
    "Topics",
    "current_mode",
    "parse_broker_url",
    "required_role",
    "validate_command",
]
