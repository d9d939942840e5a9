# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # hostsim from a notebook
#
# A short run of a small host, its request records as a pandas DataFrame, latency by path, the
# host events and the locks, and plots drawn on matplotlib `Axes` of our own. This file is a
# notebook in jupytext's percent format: open it in Jupyter (with jupytext) or VS Code, or run
# it as a script, `python examples/notebook.py` (CI does, see `tests/test_api.py`). The API is
# described in `docs/api.md`.
#
# Plots are written to the folder `HOSTSIM_EXAMPLE_OUT` names (default: a new temporary folder).

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import hostsim

OUT = Path(os.environ.get("HOSTSIM_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="hostsim-nb-"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## A scenario from a dict
#
# The same tree as a scenario TOML file (`docs/scenario.md`): 6 guests enabling and disabling
# interruptions, 2 guests without an mdev (KVM answers RC 01 itself), and a host that tears
# one guest's mdev down and attaches it again. `hostsim.load(path)` reads a file instead, and
# `hostsim.load()` the built-in default; `overrides` works on all three.

# %%
scenario = {
    "run": {"duration_ms": 300, "warmup_ms": 20, "seed": 1},
    "host": {"variant": "upstream", "lock_model": "global", "adapters": 2, "domains": 16},
    "guests": [
        {
            "name": "app",
            "count": 6,
            "vcpus": 2,
            "domains_per_guest": 1,
            "workload": {"kind": "poisson", "rate_hz": 400, "enable_fraction": 0.7},
        },
        {
            "name": "nomdev",
            "count": 2,
            "vcpus": 1,
            "domains_per_guest": 0,
            "mdev": False,
            "workload": {"kind": "poisson", "rate_hz": 200},
        },
    ],
    "events": [
        {"at_ms": 120, "kind": "detach", "guest": "app[1]"},
        {"at_ms": 200, "kind": "attach", "guest": "app[1]"},
    ],
}
s = hostsim.load(scenario, overrides={"run.seed": 7})
print(f"{s.n_guests} guests, {s.n_vcpus} vCPUs, {s.duration_ns / 1e6:g} ms simulated")

# %% [markdown]
# ## Run it
#
# `engine="fast"` (the default) or `engine="reference"`: the same records byte for byte.

# %%
res = hostsim.run(s, engine="fast")
print(res.report())

# %% [markdown]
# ## Latency by path
#
# `res.records` has one row per request; `path`, `kind`, `rule`, `variant` and `group` are
# categoricals with names, times are in ns. `measured` marks what the summary counts (issued
# after the warm-up, finished).

# %%
rec = res.records
measured = rec[rec["measured"]]
by_path = (
    measured.groupby("path", observed=True)["latency_ns"]
    .describe(percentiles=[0.5, 0.99])
    .rename(columns=lambda c: c if c == "count" else f"{c} ns")
)
print(by_path)

# %%
print(measured.groupby(["group", "kind"], observed=True).size().unstack(fill_value=0))

# %% [markdown]
# ## Host events and locks

# %%
print(res.host_events[["event", "kind", "label", "t_at", "t_mutex_grant", "t_mutex_rel"]])
print(res.locks.groupby("lock", observed=True)[["wait_ns", "hold_ns"]].max())

# %% [markdown]
# ## Plots on our own Axes
#
# The plot methods draw on the `Axes` they are given and leave the figure (and the backend) to
# us.

# %%
fig, (cdf_ax, tail_ax) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
res.plot_latency_cdf(cdf_ax)
res.plot_latency_cdf(tail_ax, tail=True)
fig.suptitle(f"{s.source}: latency per path")
cdf_png = OUT / "latency_cdf.png"
fig.savefig(cdf_png, dpi=100)
plt.close(fig)

fig, ax = plt.subplots(figsize=(12, 4), layout="constrained")
res.plot_latency_timeline(ax)
for t in res.host_events["t_at"]:
    ax.axvline(t / 1e6, color="crimson", ls="--", lw=1)
timeline_png = OUT / "latency_timeline.png"
fig.savefig(timeline_png, dpi=100)
plt.close(fig)
print("plots:", cdf_png, timeline_png)
