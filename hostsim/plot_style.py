"""What every plot shares: figures without pyplot, path colours and labels, axis styling, saving.

The plots of a result folder (:mod:`hostsim.plot_run`), of a sweep folder
(:mod:`hostsim.plot_sweep`) and of a variant comparison (:mod:`hostsim.plot_compare`) draw the
paths in the same colours, label log axes in plain numbers and save at the same resolution, so
they are kept here once. The figures written to files are made with :class:`Figure` directly, not
through pyplot, so plotting works under any matplotlib backend and never changes it: importing
hostsim leaves a notebook's backend alone (only the ``hostsim`` command picks Agg).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

DPI = 120
#: Fixed colour per path, so every plot tells the paths apart the same way.
PATH_COLORS: dict[str, str] = {
    "all": "black",
    "userspace_exit": "tab:purple",
    "program_check": "tab:red",
    "no_hook_rc01": "tab:green",
    "hook_software": "tab:brown",
    "hook_enable": "tab:blue",
    "hook_disable": "tab:orange",
}
PATH_LABELS: dict[str, str] = {
    "all": "all requests",
    "userspace_exit": "exit to userspace",
    "program_check": "program check",
    "no_hook_rc01": "no hook: RC 01, CC 3",
    "hook_software": "hook, no adapter call",
    "hook_enable": "hook: enable",
    "hook_disable": "hook: disable",
}


class PlotError(ValueError):
    """A folder that cannot be plotted."""


def subplots(
    nrows: int = 1,
    ncols: int = 1,
    *,
    figsize: tuple[float, float],
    layout: Literal["constrained", "compressed", "tight"] | None = "constrained",
    **kw: Any,
) -> tuple[Figure, Any]:
    """Like ``plt.subplots`` but without pyplot: a figure no backend window manages."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kw)


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI`, close it, return ``path``."""
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def style_axes(ax: Axes) -> None:
    """The common look: major and minor grid, no top or right spine."""
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.spines[["top", "right"]].set_visible(False)


def _tick(v: float) -> str:
    """A log-axis tick label without exponents: 0.5, 2, 100, 10,000."""
    return f"{v:,.0f}" if v >= 1000 else f"{v:g}"


def us_formatter(ax: Axes, axis: str = "x") -> None:
    """Plain numbers on a log axis (call after plotting); more ticks when the range is narrow."""
    a = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    if lo > 0 and hi / lo < 4:  # under a decade: plain evenly spaced ticks read best
        a.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=6))
    elif lo > 0 and hi / lo < 30:
        a.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: _tick(v)))
    a.set_minor_formatter(matplotlib.ticker.NullFormatter())


def color_cycle(n: int) -> list[Any]:
    """``n`` distinct colours (tab10, repeating after ten)."""
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]
