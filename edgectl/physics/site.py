"""Per-step profiles of a whole site from a dataset, vectorised with numpy.

Used by the controller's forecasts and by the simulator (which precomputes everything weather-driven
once, so a plant step costs microseconds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgectl.physics import chiller, pv, solar, wind

__all__ = ["Profiles", "available_profiles"]


@dataclass(frozen=True)
class Profiles:
    """Per-step arrays of length ``n`` on the dataset's grid (each value holds over one step)."""

    t_unix_s: np.ndarray  # period start [s since epoch, UTC]
    step_s: int
    load_kw: np.ndarray  # park electric load without chillers [kW]
    cooling_kw_th: np.ndarray  # cooling demand [kW_th]
    temp_air_c: np.ndarray  # [degC]
    p_pv_avail_kw: dict[str, np.ndarray]  # per PV inverter, AC after clipping [kW]
    p_wind_avail_kw: dict[str, np.ndarray]  # per turbine [kW]
    wind_hub_ms: dict[str, np.ndarray]  # per turbine, hub height [m/s]
    cop_chiller: np.ndarray  # plant COP when chillers follow the demand (best staging) [-]
    p_chiller_kw: np.ndarray  # chiller electric power when following min(demand, capacity) [kW]
    price_import: np.ndarray  # [currency/kWh]
    price_export: np.ndarray  # [currency/kWh]
    carbon_kg_per_kwh: np.ndarray  # [kg CO2/kWh]

    @property
    def n(self) -> int:
        return int(self.t_unix_s.size)


def available_profiles(site, dataset) -> Profiles:
    """Compute available PV and wind power, chiller COP, demand and prices for every step.

    Parameters
    ----------
    site : edgectl.config.SiteConfig
    dataset : edgectl.dataset.Dataset

    Returns
    -------
    Profiles
    """
    ds = dataset
    t_mid = ds.t_unix_s + ds.step_s / 2.0
    zen, azi = solar.solar_position_deg(t_mid, site.site.latitude_deg, site.site.longitude_deg)
    p_pv: dict[str, np.ndarray] = {}
    for inv in site.pv:
        poa = solar.poa_irradiance_wm2(
            ds.ghi_wm2, ds.dni_wm2, ds.dhi_wm2, zen, azi,
            surface_tilt_deg=inv.tilt_deg, surface_azimuth_deg=inv.azimuth_deg,
        )
        t_cell = pv.cell_temperature_c(poa, ds.temp_air_c, inv.noct_c)
        p_dc = pv.dc_power_kw(poa, t_cell, dc_kwp=inv.dc_kwp, temp_coeff_per_c=inv.temp_coeff_per_c)
        p_pv[inv.id] = pv.inverter_ac_kw(p_dc, ac_kw=inv.ac_kw, inverter_eff=inv.inverter_eff)
    p_wind: dict[str, np.ndarray] = {}
    v_hub: dict[str, np.ndarray] = {}
    for wt in site.wind:
        v_hub[wt.id] = wind.hub_wind_speed_ms(ds.wind_ms, hub_height_m=wt.hub_height_m, shear_exponent=wt.shear_exponent)
        p_wind[wt.id] = wind.available_power_kw(
            ds.wind_ms, turbine_type=wt.turbine_type, hub_height_m=wt.hub_height_m,
            shear_exponent=wt.shear_exponent, rated_kw=wt.rated_kw,
        )
    plant = site.chiller_plant
    if plant is not None:
        q = np.minimum(ds.cooling_kw, plant.capacity_kw_th)
        _, p_each = chiller.stage_chillers(
            q,
            capacity_kw_th=[c.capacity_kw_th for c in plant.chillers],
            cop_nominal=[c.cop_nominal for c in plant.chillers],
            min_part_load=[c.min_part_load for c in plant.chillers],
            t_supply_c=plant.supply_temp_c,
            temp_air_c=ds.temp_air_c,
        )
        p_ch = p_each.sum(axis=0)
        # COP where there is no demand: the COP at the smallest part load of the first chiller
        c0 = plant.chillers[0]
        cop_idle = chiller.chiller_cop(c0.min_part_load, t_supply_c=plant.supply_temp_c, temp_air_c=ds.temp_air_c,
                                       cop_nominal=c0.cop_nominal, min_part_load=c0.min_part_load)
        cop = np.where(p_ch > 0.0, q / np.where(p_ch > 0.0, p_ch, 1.0), cop_idle)
    else:
        p_ch = np.zeros(ds.n)
        cop = np.zeros(ds.n)
    p_imp, p_exp = ds.prices(site)
    return Profiles(
        t_unix_s=ds.t_unix_s,
        step_s=ds.step_s,
        load_kw=ds.load_kw,
        cooling_kw_th=ds.cooling_kw,
        temp_air_c=ds.temp_air_c,
        p_pv_avail_kw=p_pv,
        p_wind_avail_kw=p_wind,
        wind_hub_ms=v_hub,
        cop_chiller=cop,
        p_chiller_kw=p_ch,
        price_import=np.asarray(p_imp, dtype=float),
        price_export=np.asarray(p_exp, dtype=float),
        carbon_kg_per_kwh=ds.carbon(site),
    )
