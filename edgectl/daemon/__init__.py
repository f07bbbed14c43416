"""The edge daemon (``edgectl run``): fast control cycle, MPC job, state store, fail-safes, systemd.

See :mod:`edgectl.daemon.service` for the cycle and its guarantees.
"""

from __future__ import annotations

__all__ = ["Daemon"]


def __getattr__(name: str) -> object:
    if name == "Daemon":
        from edgectl.daemon.service import Daemon

        return Daemon
    raise AttributeError(name)
