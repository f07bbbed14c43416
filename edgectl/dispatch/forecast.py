"""Forecasts for the planner, from what is known at the time only; forecast error per horizon hour.

The :class:`Forecaster` is fed one observation per plan step (:meth:`Forecaster.observe`: the step's mean
load, cooling demand, available PV, wind speed, air temperature and carbon intensity) and produces
arrays over the horizon (:meth:`Forecaster.forecast`). Nothing it uses lies in the future of the
observations it was given.

Models
    load, cooling, carbon   learned day-of-week x time-of-day profile, the days of the week grouped in
                            three types (Monday-Friday, Saturday, Sunday) so that every type learns
                            at least weekly (exponentially weighted, local time; an all-days profile
                            until a type has data) plus the recent
                            error (last hour) fading with lead time (e-folding ``error_tau_h`` = 3 h for
                            the load, ``weather_tau_h`` = 12 h for cooling, temperature and carbon)
    temperature             the same profile model (drives the chiller COP)
    PV                      with an irradiance/PV forecast given (``pv_forecast_kw``) that is used;
                            else the empirical clear-sky envelope (per UTC time of day, the highest
                            available PV of the last ``envelope_days`` days) x clearness, where the
                            clearness of the last hour persists and relaxes to the clearness of the
                            last days with lead time
    wind                    persistence of the last hour's wind speed through the turbines' power curves
                            (:mod:`edgectl.physics.wind`), relaxing to the recent mean power; a wind
                            forecast (``wind_forecast_ms``) goes through the curves when given

:class:`ErrorStats` accumulates MAE and bias per horizon hour for each quantity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from edgectl.config import SiteConfig
from edgectl.physics import wind as wind_phys

__all__ = ["QUANTITIES", "ErrorStats", "Forecast", "Forecaster", "peak_margin_kw", "site_wind_kw"]

QUANTITIES = ("load_kw", "cooling_kw_th", "pv_kw", "wind_kw", "temp_air_c", "carbon_kg_per_kwh")


def site_wind_kw(site: SiteConfig, wind_ms: np.ndarray) -> np.ndarray:
    """Total available wind power of the site's turbines for a 10-m wind speed [kW].

    Each turbine: shear to hub height and its power curve, both from :mod:`edgectl.physics.wind` (the
    same chain as :func:`edgectl.physics.site.available_profiles`).
    """
    v = np.asarray(wind_ms, dtype=float)
    total = np.zeros_like(v)
    for wt in site.wind:
        hub = wind_phys.hub_wind_speed_ms(v, hub_height_m=wt.hub_height_m, shear_exponent=wt.shear_exponent)
        total = total + wind_phys.curve_power_kw(hub, wind_phys.power_curve(wt.turbine_type))
    return total


@dataclass
class Forecast:
    """Horizon arrays, one entry per step from the forecast's start."""

    load_kw: np.ndarray
    cooling_kw_th: np.ndarray
    pv_kw: np.ndarray
    wind_kw: np.ndarray
    temp_air_c: np.ndarray
    carbon_kg_per_kwh: np.ndarray


def day_type(weekday: int) -> int:
    """0 for Monday..Friday, 1 for Saturday, 2 for Sunday."""
    return 0 if weekday < 5 else weekday - 4


class _Profile:
    """Day-type x slot EWMA (weekday / Saturday / Sunday, local time), an all-days fallback until a
    day type has data, and a recent-error correction."""

    def __init__(self, slots: int, alpha: float, alpha_all: float) -> None:
        self.s = slots
        self.alpha = alpha
        self.alpha_all = alpha_all
        self.dow = np.zeros((3, slots))
        self.dow_n = np.zeros((3, slots), dtype=int)
        self.all = np.zeros(slots)
        self.all_n = np.zeros(slots, dtype=int)
        self.recent_err: list[float] = []
        self.last = np.nan

    def predict_at(self, d: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``d``: day type (0..2), ``s``: slot of the day."""
        have_all = self.all_n[s] >= 1
        base_all = np.where(have_all, self.all[s], self.last if np.isfinite(self.last) else 0.0)
        return np.where(self.dow_n[d, s] >= 1, self.dow[d, s], base_all)

    def observe(self, d: int, s: int, x: float, n_err: int) -> None:
        if self.all_n[s] or np.isfinite(self.last):
            pred = float(self.predict_at(np.array([d]), np.array([s]))[0])
            self.recent_err.append(x - pred)
            if len(self.recent_err) > n_err:
                self.recent_err.pop(0)
        if self.dow_n[d, s] == 0:
            self.dow[d, s] = x
        else:
            self.dow[d, s] += self.alpha * (x - self.dow[d, s])
        self.dow_n[d, s] += 1
        if self.all_n[s] == 0:
            self.all[s] = x
        else:
            self.all[s] += self.alpha_all * (x - self.all[s])
        self.all_n[s] += 1
        self.last = x

    def forecast(self, d: np.ndarray, s: np.ndarray, lead_h: np.ndarray, tau_h: float) -> np.ndarray:
        base = self.predict_at(d, s)
        err = float(np.mean(self.recent_err)) if self.recent_err else 0.0
        return base + err * np.exp(-lead_h / tau_h)


class Forecaster:
    """Forecasts for one site at a fixed step; feed it :meth:`observe` once per step, in time order.

    Parameters
    ----------
    site : SiteConfig
        The site (timezone, turbines).
    step_min : float
        Step of observations and forecasts [min].
    horizon_steps : int
        Forecast length [steps].
    envelope_days : int
        Days of PV history for the clear-sky envelope.
    error_tau_h : float
        Lead time over which the recent error of the load fades [h].
    weather_tau_h : float
        The same for cooling, temperature and carbon intensity, whose departures last longer [h].
    """

    def __init__(self, site: SiteConfig, *, step_min: float, horizon_steps: int, envelope_days: int = 10,
                 error_tau_h: float = 3.0, weather_tau_h: float = 12.0, alpha: float = 0.35,
                 alpha_all: float = 0.2) -> None:
        if step_min <= 0 or (1440.0 / step_min) % 1:
            raise ValueError(f"step_min={step_min!r} is not allowed: must divide a day into whole steps")
        self.site = site
        self.zone = ZoneInfo(site.site.timezone)
        self.step_min = float(step_min)
        self.h = int(horizon_steps)
        self.slots = round(1440.0 / step_min)
        self.per_h = 60.0 / step_min
        self.tau_h = float(error_tau_h)
        # weather-driven quantities keep their departure from the profile longer (a hot day stays hot)
        self.taus = {"load_kw": float(error_tau_h), "cooling_kw_th": float(weather_tau_h),
                     "temp_air_c": float(weather_tau_h), "carbon_kg_per_kwh": float(weather_tau_h)}
        self.n_err = max(1, round(self.per_h))  # last hour
        self.profiles = {q: _Profile(self.slots, alpha, alpha_all) for q in ("load_kw", "cooling_kw_th", "temp_air_c", "carbon_kg_per_kwh")}
        self.env_days = int(envelope_days)
        self.pv_hist = np.zeros((self.env_days, self.slots))  # by UTC day ring x UTC slot
        self.pv_recent: list[tuple[float, int]] = []  # (pv_kw, utc_slot) of the last hour
        self.pv_energy = np.zeros(2)  # (actual, envelope) EW sums for the recent-days clearness
        self.wind_recent: list[float] = []
        self.wind_mean = np.nan
        self.wind_kw_mean = np.nan  # mean of the power (the curve is not linear: not the power of the mean)
        self.last_t: datetime | None = None
        self.n_obs = 0
        # online error of the net electric load forecast per lead step (from resolved forecasts only)
        cp = site.chiller_plant
        self.cop_ref = float(np.mean([c.cop_nominal for c in cp.chillers])) if cp is not None else 1.0
        self._pend_issue = np.full(self.h, -(10**9), dtype=np.int64)
        self._pend_fc = np.zeros((self.h, self.h))
        self._pend_ptr = 0
        self.net_mae_kw = np.full(self.h, np.nan)
        self.net_mae_slot_kw = np.full(self.slots, np.nan)  # by UTC slot of the day, leads >= 1 h

    @property
    def ready(self) -> bool:
        """True once a full day has been observed: before that the forecasts are guesses and a plan made
        from them can set a month peak on its own; the caller should let the fallback chain act."""
        return self.n_obs >= self.slots

    # ----------------------------------------------------------------------------- calendar
    def _local(self, t: datetime) -> tuple[int, int]:
        """(weekday 0..6, slot of the local day)."""
        lt = t.astimezone(self.zone)
        return lt.weekday(), int((lt.hour * 60 + lt.minute) // self.step_min)

    def _utc_slot(self, t: datetime) -> tuple[int, int]:
        day = int(t.timestamp() // 86400)
        return day, int(((t.timestamp() % 86400) / 60.0) // self.step_min)

    # ----------------------------------------------------------------------------- observe
    def observe(self, t: datetime, *, load_kw: float, cooling_kw_th: float, pv_kw: float, wind_ms: float,
                temp_air_c: float, carbon_kg_per_kwh: float) -> None:
        """Record the mean values of the step starting at ``t`` (UTC, tz-aware)."""
        if np.isfinite(load_kw) and np.isfinite(cooling_kw_th) and np.isfinite(pv_kw) and np.isfinite(wind_ms):
            actual = float(load_kw) + float(cooling_kw_th) / self.cop_ref - float(pv_kw) - float(site_wind_kw(self.site, np.array([wind_ms]))[0])
            lead = self.n_obs - self._pend_issue
            ok = (lead >= 0) & (lead < self.h)
            if np.any(ok):
                rows = np.nonzero(ok)[0]
                err = np.abs(self._pend_fc[rows, lead[ok]] - actual)
                for ld, e in zip(lead[ok], err):
                    prev = self.net_mae_kw[ld]
                    self.net_mae_kw[ld] = e if not np.isfinite(prev) else prev + 0.01 * (e - prev)
                far = lead[ok] >= self.per_h
                if np.any(far):
                    _, us = self._utc_slot(t)
                    e = float(np.mean(err[far]))
                    prev = self.net_mae_slot_kw[us]
                    self.net_mae_slot_kw[us] = e if not np.isfinite(prev) else prev + 0.2 * (e - prev)
        d, s = self._local(t)
        for name, x in (("load_kw", load_kw), ("cooling_kw_th", cooling_kw_th), ("temp_air_c", temp_air_c),
                        ("carbon_kg_per_kwh", carbon_kg_per_kwh)):
            if np.isfinite(x):
                self.profiles[name].observe(day_type(d), s, float(x), self.n_err)
        day, us = self._utc_slot(t)
        if np.isfinite(pv_kw):
            ring = day % self.env_days
            if self.last_t is None or self._utc_slot(self.last_t)[0] != day:
                self.pv_hist[ring] = 0.0  # a new UTC day overwrites the oldest day of the ring
            self.pv_hist[ring, us] = max(float(pv_kw), 0.0)
            self.pv_recent.append((max(float(pv_kw), 0.0), us))
            if len(self.pv_recent) > self.n_err:
                self.pv_recent.pop(0)
            env = float(self.pv_hist[:, us].max())
            decay = 1.0 - 1.0 / (3.0 * self.slots)  # about three days of memory
            self.pv_energy = self.pv_energy * decay + np.array([max(float(pv_kw), 0.0), env])
        if np.isfinite(wind_ms):
            self.wind_recent.append(float(wind_ms))
            if len(self.wind_recent) > self.n_err:
                self.wind_recent.pop(0)
            a = 1.0 / (2.0 * self.slots)  # about two days
            self.wind_mean = float(wind_ms) if not np.isfinite(self.wind_mean) else self.wind_mean + a * (wind_ms - self.wind_mean)
            p_kw = float(site_wind_kw(self.site, np.array([wind_ms]))[0])
            self.wind_kw_mean = p_kw if not np.isfinite(self.wind_kw_mean) else self.wind_kw_mean + a * (p_kw - self.wind_kw_mean)
        self.last_t = t
        self.n_obs += 1

    # ----------------------------------------------------------------------------- forecast
    def forecast(self, t0: datetime, *, pv_forecast_kw: np.ndarray | None = None,
                 wind_forecast_ms: np.ndarray | None = None) -> Forecast:
        """Forecast the ``horizon_steps`` steps starting at ``t0`` (UTC, tz-aware)."""
        h = self.h
        k = np.arange(h)
        d0, s0 = self._local(t0)
        s_abs = s0 + k
        s = s_abs % self.slots
        wd = (d0 + s_abs // self.slots) % 7
        d = np.where(wd < 5, 0, wd - 4)
        lead_h = (k + 1) / self.per_h
        out = {}
        for name, prof in self.profiles.items():
            out[name] = prof.forecast(d, s, lead_h, self.taus[name])
        out["load_kw"] = np.maximum(out["load_kw"], 0.0)
        out["cooling_kw_th"] = np.maximum(out["cooling_kw_th"], 0.0)
        out["carbon_kg_per_kwh"] = np.maximum(out["carbon_kg_per_kwh"], 0.0)
        # PV
        if pv_forecast_kw is not None:
            pv = np.asarray(pv_forecast_kw, dtype=float)[:h]
        else:
            _, us0 = self._utc_slot(t0)
            us = (us0 + k) % self.slots
            env_slot = self.pv_hist.max(axis=0)
            env = env_slot[us]
            k_days = self.pv_energy[0] / self.pv_energy[1] if self.pv_energy[1] > 1e-6 else 0.7
            num = sum(x for x, _ in self.pv_recent)
            den = sum(float(env_slot[u]) for _, u in self.pv_recent)
            peak = float(env_slot.max()) if env_slot.size else 0.0
            k_now = num / den if den > 0.05 * peak * max(len(self.pv_recent), 1) and den > 0 else k_days
            w = np.exp(-lead_h / 2.0)
            pv = env * np.clip(w * k_now + (1.0 - w) * k_days, 0.0, 1.2)
        # wind
        if wind_forecast_ms is not None:
            v = np.asarray(wind_forecast_ms, dtype=float)[:h]
        else:
            # the last hour's speed through the power curves, relaxing to the recent mean power
            v_now = float(np.mean(self.wind_recent)) if self.wind_recent else 0.0
            p_now = float(site_wind_kw(self.site, np.array([v_now]))[0])
            p_mean = self.wind_kw_mean if np.isfinite(self.wind_kw_mean) else p_now
            w = np.exp(-lead_h / 6.0)
            v = None
            wind = w * p_now + (1.0 - w) * p_mean
        if v is not None:
            wind = site_wind_kw(self.site, v)
        self._pend_issue[self._pend_ptr] = self.n_obs
        self._pend_fc[self._pend_ptr] = out["load_kw"] + out["cooling_kw_th"] / self.cop_ref - np.maximum(pv, 0.0) - wind
        self._pend_ptr = (self._pend_ptr + 1) % self.h
        return Forecast(load_kw=out["load_kw"], cooling_kw_th=out["cooling_kw_th"], pv_kw=np.maximum(pv, 0.0),
                        wind_kw=wind, temp_air_c=out["temp_air_c"], carbon_kg_per_kwh=out["carbon_kg_per_kwh"])


def _fill_nan(x: np.ndarray, default: float) -> np.ndarray:
    out = x.copy()
    if np.all(~np.isfinite(out)):
        return np.full_like(out, default)
    last = default
    for i in range(out.size):
        if np.isfinite(out[i]):
            last = out[i]
        else:
            out[i] = last
    return out


def peak_margin_kw(forecaster: Forecaster, t0: datetime | None = None, *, z: float = 1.0,
                   default_frac: float = 0.05) -> np.ndarray:
    """Peak margin per step of a forecast from ``t0`` for the planner [kW].

    ``z`` x the forecaster's own running MAE of the net electric load (load + cooling / COP - PV - wind),
    learned from its resolved forecasts only: by lead step, and with ``t0`` given, the larger of that and
    the MAE by UTC time of day (PV errors make noon far less certain than midnight). Before any error is
    known: ``default_frac`` of the last load.
    """
    last = forecaster.profiles["load_kw"].last
    default = default_frac * (last if np.isfinite(last) else 0.0)
    by_lead = _fill_nan(forecaster.net_mae_kw, default)
    if t0 is not None and np.any(np.isfinite(forecaster.net_mae_slot_kw)):
        _, us0 = forecaster._utc_slot(t0)
        by_slot = _fill_nan(forecaster.net_mae_slot_kw, default)[(us0 + np.arange(forecaster.h)) % forecaster.slots]
        # the first hour is nearly known: the time-of-day figure phases in with lead time
        ramp = np.clip(np.arange(1, forecaster.h + 1) / forecaster.per_h, 0.0, 1.0)
        by_lead = np.maximum(by_lead, ramp * by_slot)
    return z * by_lead


@dataclass
class ErrorStats:
    """MAE and bias (forecast - actual) per horizon hour, per quantity.

    Parameters
    ----------
    steps_per_hour : float
        Forecast steps per hour.
    horizon_steps : int
        Forecast length [steps].
    """

    steps_per_hour: float
    horizon_steps: int
    sum_abs: dict[str, np.ndarray] = field(default_factory=dict)
    sum_err: dict[str, np.ndarray] = field(default_factory=dict)
    count: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.n_hours = int(np.ceil(self.horizon_steps / self.steps_per_hour))
        self._hour = (np.arange(self.horizon_steps) // self.steps_per_hour).astype(int)

    def add(self, quantity: str, forecast: np.ndarray, actual: np.ndarray) -> None:
        """Add one forecast and the actual values of the steps it covered (both from step 0; may be short)."""
        n = min(len(forecast), len(actual), self.horizon_steps)
        if n == 0:
            return
        e = np.asarray(forecast[:n], dtype=float) - np.asarray(actual[:n], dtype=float)
        if quantity not in self.sum_abs:
            self.sum_abs[quantity] = np.zeros(self.n_hours)
            self.sum_err[quantity] = np.zeros(self.n_hours)
            self.count[quantity] = np.zeros(self.n_hours)
        hr = self._hour[:n]
        self.sum_abs[quantity] += np.bincount(hr, weights=np.abs(e), minlength=self.n_hours)
        self.sum_err[quantity] += np.bincount(hr, weights=e, minlength=self.n_hours)
        self.count[quantity] += np.bincount(hr, minlength=self.n_hours)

    def table(self) -> dict[str, dict[str, list[float]]]:
        """``{quantity: {"mae": [...per hour], "bias": [...]}}``."""
        out = {}
        for q in self.sum_abs:
            c = np.maximum(self.count[q], 1)
            out[q] = {"mae": list(np.round(self.sum_abs[q] / c, 4)), "bias": list(np.round(self.sum_err[q] / c, 4))}
        return out
