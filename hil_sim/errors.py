"""The hil_sim error hierarchy (pymodbus, socat and data errors are translated here, at the boundary).

    SimError
    +-- ScenarioError      a fault spec or scenario file is invalid (``problems``: one line each)
    +-- ServeError         a Modbus server, serial bus or socat pty could not be started
    +-- LoopError          the lock-step loop could not complete a step (controller or plant)
"""

from __future__ import annotations

__all__ = ["LoopError", "ScenarioError", "ServeError", "SimError"]


class SimError(Exception):
    """Base of every error the simulator raises on purpose."""


class ScenarioError(SimError):
    """Invalid fault spec or scenario file; ``problems`` lists one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class ServeError(SimError):
    """A server could not be started (port taken, socat missing, pty not created)."""


class LoopError(SimError):
    """The lock-step loop failed."""
