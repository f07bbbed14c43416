"""The MQTT topic tree of one site, under a configurable prefix (default ``edgectl``).

    <prefix>/<site>/status                 retained "online"; last will "offline"
    <prefix>/<site>/state                  retained JSON: mode, active commands with expiry, health
    <prefix>/<site>/telemetry              periodic JSON (QoS 1, store-and-forward, "historical" flag)
    <prefix>/<site>/plan                   retained JSON: the coming hours
    <prefix>/<site>/audit                  JSON: every command, ack and expiry (store-and-forward)
    <prefix>/<site>/cmd/<role>/<name>      commands, role operator | admin (broker ACL enforces roles)
    <prefix>/<site>/resp/<user>/<id>       response topics; each user may read only its own (ACL %u)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Topics"]


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    site: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def plan(self) -> str:
        return f"{self.base}/plan"

    @property
    def audit(self) -> str:
        return f"{self.base}/audit"

    @property
    def cmd_filter(self) -> str:
        return f"{self.base}/cmd/#"

    @property
    def resp_base(self) -> str:
        return f"{self.base}/resp"

    def cmd(self, role: str, name: str) -> str:
        return f"{self.base}/cmd/{role}/{name}"

    def resp(self, user: str, request_id: str) -> str:
        return f"{self.resp_base}/{user}/{request_id}"

    def parse_cmd(self, topic: str) -> tuple[str, str] | None:
        """``(role, name)`` for a command topic of this site, else ``None``."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        if len(parts) != 2 or not all(parts):
            return None
        return parts[0], parts[1]

    def resp_client(self, response_topic: str) -> str | None:
        """The ``<user>`` level of a response topic of this site, else ``None`` (not answerable)."""
        head = f"{self.resp_base}/"
        if not response_topic.startswith(head) or any(c in response_topic for c in "+#\x00"):
            return None
        parts = response_topic[len(head):].split("/")
        if len(parts) < 2 or not all(parts):
            return None
        return parts[0]
