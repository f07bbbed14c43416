"""The edgectl error hierarchy (drivers and hil_sim have their own, translated at their boundary).

    EdgectlError
    +-- ConfigError        a site file or command line is invalid (exit 78, EX_CONFIG)
    +-- DispatchError      the planner could not produce a plan (the fallback chain takes over)
    +-- StoreError         the SQLite state store failed and could not be recovered
    +-- RemoteError        the MQTT link or a remote command failed
"""

from __future__ import annotations

__all__ = ["EX_CONFIG", "ConfigError", "DispatchError", "EdgectlError", "ForecastWarmingUp", "RemoteError", "StoreError"]

EX_CONFIG = 78


class EdgectlError(Exception):
    """Base of every error edgectl raises on purpose."""


class ConfigError(EdgectlError):
    """Invalid configuration: ``problems`` lists one line per problem (key path, value, what is allowed)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class DispatchError(EdgectlError):
    """The optimiser failed or timed out."""


class ForecastWarmingUp(DispatchError):
    """No plan yet: the forecaster has less than ``dispatch.warmup_h`` of history. The rule-based
    controller acts meanwhile; this is normal operation after a first start, not a planning failure."""


class StoreError(EdgectlError):
    """The persistent store is unusable."""


class RemoteError(EdgectlError):
    """MQTT transport or remote-command failure."""
