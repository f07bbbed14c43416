"""Forecasts: learn from the past only; profiles, clearness, persistence; error statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from edgectl.dispatch.forecast import ErrorStats, Forecaster, peak_margin_kw, site_wind_kw
from edgectl.physics.site import available_profiles  # noqa: F401  (same wind chain, checked below)

T0 = datetime(2025, 6, 2, 4, 0, tzinfo=UTC)  # a Monday, 00:00 in New York
STEP = timedelta(minutes=15)


def weekly_load(k: int) -> float:
    """A load with a weekday/weekend and hour-of-day shape [kW] at step k from T0."""
    day = (k // 96) % 7
    hour = (k % 96) / 4.0
    base = 1500.0 if day < 5 else 900.0
    return base + 600.0 * np.exp(-(((hour - 14.0) / 3.0) ** 2))


def pv_clear(k: int) -> float:
    hour_utc = ((k % 96) / 4.0 + 4.0) % 24  # T0 is 04:00 UTC
    return max(0.0, 1500.0 * np.sin((hour_utc - 10.0) / 14.0 * np.pi))


def feed(fc, n, *, pv_scale=1.0, wind_ms=6.0):
    for k in range(n):
        fc.observe(T0 + k * STEP, load_kw=weekly_load(k), cooling_kw_th=500.0, pv_kw=pv_scale * pv_clear(k),
                   wind_ms=wind_ms, temp_air_c=25.0, carbon_kg_per_kwh=0.5)


def test_learns_the_weekly_profile(site):
    fc = Forecaster(site, step_min=15, horizon_steps=192)
    n = 21 * 96
    feed(fc, n)
    f = fc.forecast(T0 + n * STEP)
    truth = np.array([weekly_load(n + k) for k in range(192)])
    assert np.mean(np.abs(f.load_kw - truth)) < 0.02 * truth.mean()
    assert np.allclose(f.cooling_kw_th, 500.0, atol=1.0)


def test_recent_error_corrects_the_first_hours_then_fades(site):
    fc = Forecaster(site, step_min=15, horizon_steps=192)
    n = 14 * 96
    feed(fc, n)
    for k in range(n, n + 4):  # the last hour ran 300 kW above the usual
        fc.observe(T0 + k * STEP, load_kw=weekly_load(k) + 300.0, cooling_kw_th=500.0, pv_kw=pv_clear(k), wind_ms=6.0,
                   temp_air_c=25.0, carbon_kg_per_kwh=0.5)
    f = fc.forecast(T0 + (n + 4) * STEP)
    truth = np.array([weekly_load(n + 4 + k) for k in range(192)])
    assert f.load_kw[0] - truth[0] > 200.0
    # two days on, away from the bumped slots, the correction has faded
    assert np.max(np.abs(f.load_kw[100:150] - truth[100:150])) < 20.0


def test_pv_clearness_persists_and_wind_goes_through_the_power_curve(site):
    fc = Forecaster(site, step_min=15, horizon_steps=96)
    n = 10 * 96 + 40  # 10 days of clear sky, then the morning of day 11 at half the clear-sky power
    feed(fc, n - 8)
    for k in range(n - 8, n):
        fc.observe(T0 + k * STEP, load_kw=weekly_load(k), cooling_kw_th=500.0, pv_kw=0.5 * pv_clear(k), wind_ms=8.0,
                   temp_air_c=25.0, carbon_kg_per_kwh=0.5)
    f = fc.forecast(T0 + n * STEP)
    clear = np.array([pv_clear(n + k) for k in range(96)])
    assert abs(f.pv_kw[0] / clear[0] - 0.5) < 0.1  # the last hour's clearness persists
    assert f.pv_kw[:96].sum() > 0.5 * clear.sum()  # and relaxes towards the clear days
    # wind: persistence of the last hour's speed, through each turbine's curve
    assert abs(f.wind_kw[0] - site_wind_kw(site, np.array([8.0]))[0]) < 0.15 * f.wind_kw[0]


def test_uses_only_what_it_was_given(site):
    """Two forecasters with the same past give the same forecast, whatever the future holds."""
    a = Forecaster(site, step_min=15, horizon_steps=96)
    b = Forecaster(site, step_min=15, horizon_steps=96)
    feed(a, 8 * 96)
    feed(b, 8 * 96)
    fa = a.forecast(T0 + 8 * 96 * STEP)
    b.observe(T0 + 8 * 96 * STEP, load_kw=9999.0, cooling_kw_th=0.0, pv_kw=0.0, wind_ms=0.0, temp_air_c=0.0,
              carbon_kg_per_kwh=0.0)
    assert not np.allclose(b.forecast(T0 + (8 * 96 + 1) * STEP).load_kw[:4], fa.load_kw[1:5])
    c = Forecaster(site, step_min=15, horizon_steps=96)
    feed(c, 8 * 96)
    assert np.array_equal(c.forecast(T0 + 8 * 96 * STEP).load_kw, fa.load_kw)


def test_own_error_feeds_the_peak_margin(site):
    fc = Forecaster(site, step_min=15, horizon_steps=16)
    before = peak_margin_kw(fc)
    assert np.allclose(before, 0.0)  # nothing observed yet
    rng = np.random.default_rng(1)
    for k in range(3 * 96):
        fc.forecast(T0 + k * STEP)
        fc.observe(T0 + k * STEP, load_kw=weekly_load(k) + rng.normal(0, 100.0), cooling_kw_th=500.0, pv_kw=0.0,
                   wind_ms=0.0, temp_air_c=25.0, carbon_kg_per_kwh=0.5)
    m = peak_margin_kw(fc, z=1.0)
    assert np.all(np.isfinite(m)) and 40.0 < m.mean() < 400.0


def test_error_stats_mae_and_bias_per_hour():
    st = ErrorStats(steps_per_hour=4, horizon_steps=8)
    st.add("load_kw", np.array([10.0] * 8), np.array([8.0] * 4 + [14.0] * 4))
    st.add("load_kw", np.array([10.0] * 8), np.array([10.0] * 6))  # the data ended: a short actual
    t = st.table()["load_kw"]
    assert np.allclose(t["mae"], [1.0, 16.0 / 6], atol=1e-4)
    assert np.allclose(t["bias"], [1.0, -16.0 / 6], atol=1e-4)
