"""The resolved scenario (every value a run used, defaults filled in) and its TOML writer.

The resolved form is saved with each result so that a run can be repeated from its folder alone;
loading :func:`resolved_toml` back with :func:`hostsim.scenario.loads` gives the same scenario.
:func:`resolved_toml` writes it with the one TOML writer, :mod:`hostsim.toml_text`.
"""

from __future__ import annotations

from typing import Any

from hostsim import toml_text
from hostsim.scenario_types import (
    GUEST_FLAGS,
    NS_PER_MS,
    PLUG,
    Hardware,
    HostEventKind,
    Scenario,
)


def resolved(s: Scenario) -> dict[str, Any]:
    """Every value the run used, defaults filled in: what is saved with each result."""

    def hw(h: Hardware) -> dict[str, Any]:
        d: dict[str, Any] = {
            "aqic_rc": {f"0x{rc:02x}": p for rc, p in h.aqic_rc},
            "tapq_rc": {f"0x{rc:02x}": p for rc, p in h.tapq_rc},
            "tapq_irq_enabled": h.tapq_irq_enabled,
            "pin_fail": h.pin_fail,
        }
        if h.adapters is not None:
            d["adapters"] = list(h.adapters)
        if h.domains is not None:
            d["domains"] = list(h.domains)
        return d

    hwd = hw(s.host.hardware)
    if s.host.queue_overrides:
        hwd["queues"] = [hw(q) for q in s.host.queue_overrides]
    guests = []
    for g in s.guests:
        w = g.workload
        wd: dict[str, Any] = {"kind": w.kind}
        if w.kind == "poisson":
            wd["rate_hz"] = w.rate_hz
        elif w.kind == "closed":
            assert w.think is not None
            wd["think"] = w.think.to_toml()
        elif w.kind == "bursty":
            wd.update(
                rate_on_hz=w.rate_on_hz, rate_off_hz=w.rate_off_hz, on_ms=w.on_ms, off_ms=w.off_ms
            )
        elif w.kind == "boot":
            wd.update(boot_at_ms=w.boot_at_ms, spread_ms=w.spread_ms)
        assert w.gap is not None and w.retry_poll is not None
        wd.update(
            gap=w.gap.to_toml(),
            enable_fraction=w.enable_fraction,
            isc=w.isc,
            nib=f"0x{w.nib:x}",
            start_ms=w.start_ms,
            probe_ms=w.probe_ms,
            retry=w.retry,
            retry_poll=w.retry_poll.to_toml(),
            fc_mix={f"0x{fc:02x}": p for fc, p in w.fc_mix},
        )
        if w.adversarial:
            wd["adversarial"] = dict(w.adversarial)
        gd: dict[str, Any] = {
            "name": g.name,
            "count": g.count,
            "vcpus": g.vcpus,
            "adapters": list(g.adapters),
            "domains": [list(d) for d in g.domains],
        }
        gd.update({f: getattr(g, f) for f in GUEST_FLAGS})
        gd["workload"] = wd
        guests.append(gd)
    out: dict[str, Any] = {
        "run": {
            "duration_ms": s.duration_ns / NS_PER_MS,
            "warmup_ms": s.warmup_ns / NS_PER_MS,
            "seed": s.seed,
        },
        "host": {
            "variant": s.host.variant,
            "lock_model": s.host.lock_model,
            "ap_instructions_available": s.host.ap_instructions_available,
            "apxa": s.host.apxa,
            "adapters": list(s.host.adapters),
            "domains": list(s.host.domains),
            "kernel": s.host.kernel,
            "hz": s.host.hz,
            "reset_verify": s.host.reset_verify,
            "disable_wait": s.host.disable_wait,
            "hardware": hwd,
        },
        "costs": {k: d.to_toml() for k, d in s.costs.items()},
        "guests": guests,
    }
    if s.events:
        out["events"] = []
        for e in s.events:
            ed: dict[str, Any] = {
                "at_ms": e.at_ns / NS_PER_MS,
                "kind": e.kind.name.lower(),
                "guest": e.label,
            }
            if e.domains:
                ed["domains"] = list(e.domains)
            if e.adapters:
                ed["adapters"] = list(e.adapters)
            if e.kind in PLUG:
                ed["rescan"] = e.rescan
            if e.kind in (HostEventKind.GUEST_RESET, HostEventKind.REBOOT, HostEventKind.START):
                ed["delay_ms"] = e.delay_ms
            out["events"].append(ed)
    return out


def resolved_toml(s: Scenario) -> str:
    """The resolved scenario as TOML text; loading it back gives the same scenario."""
    return toml_text.dumps(resolved(s), "hostsim resolved scenario: every value this run used")
