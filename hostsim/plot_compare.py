"""The variant comparison plot (``hostsim compare``): ``compare.png``.

Latency p50 and p99 per kernel variant and lock model, and the outcome counts that differ
between the variants. Imported lazily by :mod:`hostsim.compare`, which it imports back (inside
the function) for the section titles and the differing outcomes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from hostsim.plot_style import color_cycle, save_figure, style_axes, subplots, us_formatter


def _short(v: float) -> str:
    """A bar label: 21938 -> "21,938", 6.958 -> "6.96"."""
    if not math.isfinite(v):
        return ""
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def plot_comparison(cmp: Any, path: str | Path) -> Path:
    """Latency per variant x lock model (left) and the outcome counts that differ (right).

    ``cmp`` is a :class:`hostsim.compare.Comparison`.
    """
    from hostsim.compare import SECTION_TITLES, differing_outcomes

    fig, (lat_ax, out_ax) = subplots(
        1, 2, figsize=(15, 5.6), layout="constrained", width_ratios=(1.1, 1)
    )
    nv, nl = len(cmp.variants), len(cmp.lock_models)
    width = 0.8 / (2 * nl)
    colors = color_cycle(nl)
    x = np.arange(nv)
    for j, lm in enumerate(cmp.lock_models):
        for k, (p, alpha, hatch) in enumerate(((50.0, 0.45, "//"), (99.0, 0.95, None))):
            vals = []
            for v in cmp.variants:
                lat = cmp.run(v, lm).summary["all"]["lat_ns"]
                vals.append(lat["percentile"][f"{p:.6f}"] / 1000 if lat["N"] else np.nan)
            pos = x - 0.4 + width * (2 * j + k + 0.5)
            bars = lat_ax.bar(
                pos,
                vals,
                width,
                color=colors[j],
                alpha=alpha,
                hatch=hatch,
                edgecolor="white" if hatch else None,
                label=f"{lm} lock, p{p:g}",
            )
            lat_ax.bar_label(
                bars, labels=[_short(v) for v in vals], fontsize=7, padding=2, rotation=0
            )
    lat_ax.set_yscale("log")
    lat_ax.set_xticks(x, cmp.variants)
    lat_ax.set_xlabel("kernel variant")
    lat_ax.set_ylabel("latency, all requests (µs, log scale)")
    lat_ax.set_title("Latency p50 (hatched) and p99 per variant and lock model")
    lat_ax.margins(y=0.15)
    us_formatter(lat_ax, "y")
    style_axes(lat_ax)
    lat_ax.grid(False, axis="x", which="both")
    lat_ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2 * nl)

    lm = cmp.lock_models[0]
    diff = differing_outcomes(cmp, lm)
    if not diff:
        out_ax.axis("off")
        out_ax.text(
            0.5,
            0.5,
            "Outcome counts are the same under every variant\n(this scenario does not reach"
            " the requests whose semantics differ)",
            ha="center",
            va="center",
            fontsize=10,
            transform=out_ax.transAxes,
        )
    else:
        y = np.arange(len(diff))
        h = 0.8 / nv
        vcolors = plt.get_cmap("Set2")
        for i, v in enumerate(cmp.variants):
            counts = [cmp.run(v, lm).outcomes.get(s, {}).get(c, 0) for s, c in diff]
            bars = out_ax.barh(y - 0.4 + h * (i + 0.5), counts, h, color=vcolors(i % 8), label=v)
            out_ax.bar_label(bars, fmt="%d", fontsize=7, padding=2)
        out_ax.set_yticks(y, [f"{SECTION_TITLES[s]}: {c}" for s, c in diff])
        out_ax.invert_yaxis()
        out_ax.set_xlabel("measured requests")
        out_ax.set_title(f"Outcome counts that differ between variants ({lm} lock)")
        out_ax.margins(x=0.15)
        style_axes(out_ax)
        out_ax.grid(False, axis="y", which="both")
        out_ax.legend(
            fontsize=8, title="variant", title_fontsize=8, loc="upper left", bbox_to_anchor=(1, 1)
        )
    fig.suptitle(
        f"{cmp.scenario}, seed {cmp.seed}: the same requests under each kernel variant",
        fontsize=11,
    )
    return save_figure(fig, Path(path))
