"""Pure physics of the park, shared by the controller's forecasts and the simulator.

One module per physical domain, plain functions with the unit in every name (see
``edgectl/glossary.py``); parameters come from the site config or from data files in ``edgectl/data``.
Functions accept floats or numpy arrays unless their docstring says otherwise.

    solar    sun position, angle of incidence, plane-of-array irradiance
    pv       cell temperature, DC power with temperature derating, inverter, clipping, curtailment, trip
    wind     shear law, power curves (windpowerlib oedb data), cut-in/cut-out, curtailment
    ramp     ramp-rate limit shared by wind and battery
    battery  power limits from SoC, SoC step with charge/discharge efficiency and self-discharge, reversion
    chiller  EIR-style COP curves vs chilled-water and outdoor temperature and part load, staging
    tank     lumped cold-storage tank: flow limits, losses, sensor temperatures
    site     available_profiles(site, dataset): vectorised per-step arrays for a whole dataset
"""

from __future__ import annotations

from edgectl.physics import battery, chiller, pv, ramp, solar, tank, wind

__all__ = ["battery", "chiller", "pv", "ramp", "solar", "tank", "wind"]
