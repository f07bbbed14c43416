"""PNG plot of a window of a run: POI power, PV, wind, battery, SoC, tank, price and carbon.

matplotlib is an optional dependency (extra ``plot``), imported only when a plot is drawn.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from hil_sim.errors import SimError
from hil_sim.plant import Trace

__all__ = ["plot_window"]


def plot_window(
    trace: Trace,
    path: str | Path,
    *,
    start: datetime | None = None,
    hours: float = 72.0,
    tz: str = "UTC",
    title: str = "",
) -> Path:
    """Draw ``hours`` of the run from ``start`` (default: the first step) into a PNG file.

    Parameters
    ----------
    trace : the plant's per-step trace
    path : PNG file to write
    start : tz-aware start of the window
    hours : window length [h], > 0
    tz : IANA zone for the time axis (the site's zone)
    title : figure title

    Returns
    -------
    The path written. Raises :class:`SimError` when the window holds no step or matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SimError("plotting needs matplotlib: pip install 'edgectl[plot]'") from exc
    if not hours > 0:
        raise SimError(f"hours {hours!r} must be > 0")
    a = trace.arrays()
    t = a["t_unix_s"]
    if t.size == 0:
        raise SimError("the trace is empty: nothing to plot")
    t0 = float(t[0]) if start is None else start.timestamp()
    sel = (t >= t0) & (t < t0 + hours * 3600.0)
    if not sel.any():
        raise SimError(
            f"no step in the window starting {datetime.fromtimestamp(t0, tz=UTC).isoformat()} "
            f"({hours:g} h); the run covers "
            f"{datetime.fromtimestamp(float(t[0]), tz=UTC).isoformat()} .. "
            f"{datetime.fromtimestamp(float(t[-1] + a['dt_s'][-1]), tz=UTC).isoformat()}"
        )
    zone = ZoneInfo(tz)
    x = [datetime.fromtimestamp(v, tz=zone) for v in t[sel].tolist()]
    g = {k: v[sel] for k, v in a.items()}
    fig, axes = plt.subplots(4, 1, figsize=(12, 10), sharex=True, constrained_layout=True)
    ax = axes[0]
    ax.step(x, g["p_grid_kw"], where="post", label="POI (+import)", color="black", lw=1.2)
    ax.step(x, g["p_load_served_kw"] + g["p_chiller_kw"], where="post", label="load + chillers", color="tab:gray", lw=1)
    ax.axhline(0, color="0.7", lw=0.5)
    ax.set_ylabel("kW")
    ax.legend(loc="upper left", ncol=2, fontsize=8)
    ax.set_title(title or "HIL run")
    ax = axes[1]
    ax.step(x, g["p_pv_kw"], where="post", label="PV", color="gold")
    ax.step(x, g["p_wind_kw"], where="post", label="wind", color="tab:blue")
    ax.step(x, g["p_batt_kw"], where="post", label="battery (+dis)", color="tab:green")
    ax.plot(x, g["p_pv_avail_kw"] + g["p_wind_avail_kw"], ":", color="0.5", lw=0.8, label="PV + wind available")
    ax.axhline(0, color="0.7", lw=0.5)
    ax.set_ylabel("kW")
    ax.legend(loc="upper left", ncol=4, fontsize=8)
    ax = axes[2]
    ax.plot(x, g["soc_pct"], label="battery SoC", color="tab:green")
    ax.plot(x, g["tank_soc_pct"], label="cold tank", color="tab:cyan")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[3]
    ax.step(x, g["price_import"], where="post", label="import price", color="tab:red")
    ax.step(x, g["price_export"], where="post", label="export price", color="tab:orange", lw=0.8)
    ax.set_ylabel("currency/kWh")
    ax2 = ax.twinx()
    ax2.plot(x, g["carbon_kg_per_kwh"], color="tab:purple", lw=0.8, label="carbon")
    ax2.set_ylabel("kg CO2/kWh")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8, ncol=3)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=zone))
    fig.autofmt_xdate()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
