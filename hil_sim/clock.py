"""One clock abstraction for simulated and wall time.

The same loop code runs on either clock:

* :class:`SimClock` - lock-step: time moves only when the loop calls :meth:`SimClock.advance`;
  ``sleep`` returns at once (it advances the clock). Runs as fast as the machine allows.
* :class:`WallClock` - simulated time = start + K x elapsed wall time (``speed`` K >= 1 speeds the park
  up for a separately started controller); ``sleep`` waits wall time / K.

Both support :meth:`jump` (a clock-jump fault, like an NTP step): ``now()`` moves by the given number of
seconds at once. Physics never runs backwards: the plant is stepped only to times after its own.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SimClock", "WallClock"]


def _utc(start: datetime) -> datetime:
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"start {start!r} must be timezone-aware (UTC inside)")
    return start.astimezone(UTC)


@runtime_checkable
class Clock(Protocol):
    """What a controller or the plant loop needs from time."""

    def now(self) -> datetime:
        """Current (simulated) time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass."""
        ...

    def jump(self, seconds: float) -> None:
        """Move the clock by ``seconds`` at once (fault injection)."""
        ...


class SimClock:
    """Lock-step simulated time, advanced explicitly.

    Parameters
    ----------
    start
        Simulated start time (timezone-aware).
    """

    def __init__(self, start: datetime) -> None:
        self._start = _utc(start)
        self._elapsed_s = 0.0

    @property
    def start(self) -> datetime:
        return self._start

    @property
    def elapsed_s(self) -> float:
        """Simulated seconds since ``start`` [s]."""
        return self._elapsed_s

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed_s)

    def advance(self, seconds: float) -> datetime:
        """Move simulated time forward by ``seconds`` [s] (> 0) and return the new time."""
        if not seconds > 0.0:
            raise ValueError(f"advance seconds {seconds!r} must be > 0")
        self._elapsed_s += seconds
        return self.now()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0.0:
            self._elapsed_s += seconds
        await asyncio.sleep(0)

    def jump(self, seconds: float) -> None:
        self._elapsed_s += seconds


class WallClock:
    """Simulated time running at ``speed`` times wall-clock time.

    Parameters
    ----------
    start
        Simulated time at the moment the clock is made (timezone-aware).
    speed
        K: simulated seconds per wall second (0 < K <= 10000).
    """

    def __init__(self, start: datetime, *, speed: float = 1.0) -> None:
        if not 0.0 < speed <= 10000.0:
            raise ValueError(f"speed {speed!r} must be in (0, 10000]")
        self._start = _utc(start)
        self.speed = float(speed)
        self._t0 = time.monotonic()
        self._offset_s = 0.0

    @property
    def start(self) -> datetime:
        return self._start

    @property
    def elapsed_s(self) -> float:
        """Simulated seconds since ``start`` [s], including jumps."""
        return (time.monotonic() - self._t0) * self.speed + self._offset_s

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.elapsed_s)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def jump(self, seconds: float) -> None:
        self._offset_s += seconds
