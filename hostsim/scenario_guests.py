"""Validation of the ``[[guests]]`` groups (with their workloads) and the ``[[events]]`` list.

Split from the loader (:mod:`hostsim.scenario`) because these sections carry most of the cross
checks: domains handed out to guests without sharing an APQN, APXA limits on APIDs and APQIs,
event targets resolved from ``"group[index]"`` labels and their spread drawn from the run seed.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from hostsim import arch
from hostsim.scenario_check import Ctx, ms_key, ms_keys, ms_to_ns, rc_probs, show
from hostsim.scenario_types import (
    ADVERSARIAL,
    GUEST_FLAGS,
    MIN_RATE_HZ,
    PLUG,
    RETRY_POLICIES,
    WORKLOAD_KINDS,
    GuestGroup,
    Host,
    HostEvent,
    HostEventKind,
    Workload,
)

_DEFAULT_GAP = {"dist": "uniform", "low_ns": 10_000, "high_ns": 250_000}
_DEFAULT_POLL = {"dist": "fixed", "ns": 250_000}
#: A Linux guest's AP bus (host-operations.md section 5): one tasklet pass enables every queue
#: back to back (an interpreted TAPQ and a few instructions between two AQICs: an estimate),
#: with AP_ISC = 6; a 6.7+ guest retries a failed enable when a reply empties the queue.
_LINUX_GAP = {"dist": "uniform", "low_ns": 2_000, "high_ns": 10_000}
LINUX_ISC = 6
_LINUX_REPLY_HZ = 10.0


def _workload(ctx: Ctx, v: Any, path: str) -> Workload:
    common = {
        "kind",
        "enable_fraction",
        "isc",
        "nib",
        *ms_keys("start", "probe"),
        "retry",
        "retry_poll",
        "adversarial",
        "fc_mix",
        "gap",
    }
    per_kind = {
        "poisson": {"rate_hz"},
        "closed": {"think"},
        "bursty": {"rate_on_hz", "rate_off_hz", *ms_keys("on", "off")},
        "boot": ms_keys("boot_at", "spread"),
        "idle": set(),
        "linux": {"reply_rate_hz"},
    }
    if not isinstance(v, dict):
        raise ctx.err(path, f"expected a table, got {show(v)}")
    kind = ctx.choice(v.get("kind", "poisson"), f"{path}.kind", WORKLOAD_KINDS)
    linux = kind == "linux"
    for k in v:
        if k not in common | per_kind[kind]:
            other = [n for n, keys in per_kind.items() if k in keys]
            why = (
                f"{k!r} belongs to a {other[0]!r} workload, this one is {kind!r}"
                if other
                else f"unknown key; expected one of {sorted(common | per_kind[kind])}"
            )
            raise ctx.err(f"{path}.{k}", why)
    t = v
    kw: dict[str, Any] = {"kind": kind}
    if kind == "poisson":
        kw["rate_hz"] = ctx.number(t.get("rate_hz", 100.0), f"{path}.rate_hz", 0.0, strict=True)
        if kw["rate_hz"] < MIN_RATE_HZ:
            raise ctx.err(
                f"{path}.rate_hz",
                f"expected at least {MIN_RATE_HZ:g} Hz (one issue "
                'in 11.6 days); for no load use kind = "idle"',
            )
    elif kind == "closed":
        kw["think"] = ctx.dist(
            t.get("think", {"dist": "exponential", "mean_ns": 10_000_000}), f"{path}.think", floor=0
        )
    elif kind == "bursty":
        kw["rate_on_hz"] = ctx.number(
            t.get("rate_on_hz", 1000.0), f"{path}.rate_on_hz", 0.0, strict=True
        )
        kw["rate_off_hz"] = ctx.number(t.get("rate_off_hz", 0.0), f"{path}.rate_off_hz", 0.0)
        kw["on_ms"] = ctx.ms(t, "on", path, 10.0, strict=True)
        kw["off_ms"] = ctx.ms(t, "off", path, 90.0, strict=True)
    elif kind == "boot":
        kw["boot_at_ms"] = ctx.ms(t, "boot_at", path, 0.0)
        kw["spread_ms"] = ctx.ms(t, "spread", path, 1000.0)
    kw["gap"] = ctx.dist(
        t.get("gap", _LINUX_GAP if linux else _DEFAULT_GAP), f"{path}.gap", floor=0
    )
    retry = ctx.choice(
        t.get("retry", "on_reply" if linux else "none"), f"{path}.retry", RETRY_POLICIES
    )
    poll: Any = _DEFAULT_POLL
    if retry == "on_reply":
        if "reply_rate_hz" in t and "retry_poll" in t:
            raise ctx.err(f"{path}.reply_rate_hz", "give reply_rate_hz or retry_poll, not both")
        rate = ctx.number(
            t.get("reply_rate_hz", _LINUX_REPLY_HZ), f"{path}.reply_rate_hz", 0.0, strict=True
        )
        poll = {"dist": "exponential", "mean_ns": 1e9 / rate}  # the queue's next reply
    elif "reply_rate_hz" in t:
        raise ctx.err(f"{path}.reply_rate_hz", 'only retry = "on_reply" waits for replies')
    nib = t.get("nib", Workload.nib)
    if isinstance(nib, str):
        try:
            nib = int(nib, 0)
        except ValueError:
            raise ctx.err(f"{path}.nib", f"expected an address, got {nib!r}") from None
    adv = t.get("adversarial", {})
    if not isinstance(adv, dict):
        raise ctx.err(f"{path}.adversarial", "expected a table of category -> probability")
    for k in adv:
        if k not in ADVERSARIAL:
            raise ctx.err(
                f"{path}.adversarial.{k}", f"unknown category; expected one of {list(ADVERSARIAL)}"
            )
    adversarial = tuple(
        (k, ctx.number(adv[k], f"{path}.adversarial.{k}", 0.0, 1.0))
        for k in ADVERSARIAL
        if k in adv
    )
    if sum(p for _, p in adversarial) > 1.0 + 1e-9:
        raise ctx.err(f"{path}.adversarial", "probabilities sum to more than 1")
    fc_mix = rc_probs(ctx, t["fc_mix"], f"{path}.fc_mix") if "fc_mix" in t else ((3, 1.0),)
    return Workload(
        **kw,
        enable_fraction=ctx.number(
            t.get("enable_fraction", 1.0), f"{path}.enable_fraction", 0.0, 1.0
        ),
        isc=ctx.integer(t.get("isc", LINUX_ISC if linux else 3), f"{path}.isc", 0, 7),
        nib=ctx.integer(nib, f"{path}.nib", 0, arch.MASK64),
        start_ms=ctx.ms(t, "start", path, 0.0),
        probe_ms=ctx.ms(t, "probe", path, 40.0),
        retry=retry,
        retry_poll=ctx.dist(t.get("retry_poll", poll), f"{path}.retry_poll", floor=0),
        adversarial=adversarial,
        fc_mix=fc_mix,
    )


def guest_groups(ctx: Ctx, v: Any, host: Host) -> tuple[GuestGroup, ...]:
    """Validate ``[[guests]]``: names, sizes, adapters, and domains handed out without sharing."""
    if not isinstance(v, list) or not v:
        raise ctx.err("guests", "expected at least one [[guests]] table")
    free = [d for d in host.domains]
    owner: dict[int, str] = {}
    groups = []
    names: set[str] = set()
    for i, g in enumerate(v):
        path = f"guests[{i}]"
        t = ctx.table(
            g,
            path,
            {
                "name",
                "count",
                "vcpus",
                "adapters",
                "domains_per_guest",
                "domains",
                "workload",
                *GUEST_FLAGS,
            },
        )
        name = t.get("name", f"group{i}")
        if not isinstance(name, str) or not name or "[" in name:
            raise ctx.err(f"{path}.name", f"expected a name without brackets, got {show(name)}")
        if name in names:
            raise ctx.err(f"{path}.name", f"guest group {name!r} is defined twice")
        names.add(name)
        count = ctx.integer(t.get("count", 1), f"{path}.count", 1)
        vcpus = ctx.integer(t.get("vcpus", 1), f"{path}.vcpus", 1)
        ad_raw = t.get("adapters", "all")
        adapters = host.adapters if ad_raw == "all" else ctx.ints(ad_raw, f"{path}.adapters", 255)
        for a in adapters:
            if a not in host.adapters:
                raise ctx.err(
                    f"{path}.adapters",
                    f"adapter {a} is not one of the host's {list(host.adapters)}",
                )
        flags = {
            f: ctx.boolean(t.get(f, host.apxa if f == "apxa" else f != "pv"), f"{path}.{f}")
            for f in GUEST_FLAGS
        }
        if "domains" in t:
            if "domains_per_guest" in t:
                raise ctx.err(f"{path}.domains", "give domains or domains_per_guest, not both")
            dl = t["domains"]
            if not isinstance(dl, list) or len(dl) != count:
                raise ctx.err(
                    f"{path}.domains", f"expected a list of {count} domain lists (one per guest)"
                )
            per_guest = tuple(
                (ctx.ints(d, f"{path}.domains[{j}]", 255) if d else ())
                if isinstance(d, list)
                else ctx.ints([d], f"{path}.domains[{j}]", 255)
                for j, d in enumerate(dl)
            )
            for d in {x for dd in per_guest for x in dd}:
                if d in free:
                    free.remove(d)
        else:
            dpg = ctx.integer(t.get("domains_per_guest", 1), f"{path}.domains_per_guest", 0)
            need = dpg * count
            if need > len(free):
                raise ctx.err(
                    f"{path}.domains_per_guest",
                    f"{count} guests x {dpg} domains need {need} free domains; the "
                    f"host has {len(free)} left of {len(host.domains)}",
                )
            per_guest = tuple(tuple(free[j * dpg : (j + 1) * dpg]) for j in range(count))
            del free[:need]
        for j, doms in enumerate(per_guest):
            for d in doms:
                if d not in host.domains:
                    raise ctx.err(f"{path}.domains", f"domain {d} is not one of the host's")
                if not flags["apxa"] and d > arch.APQI_MAX_NO_APXA:
                    raise ctx.err(f"{path}.domains", f"APQI {d} is above 15 without APXA")
                for a in adapters:
                    apqn = (a << 8) | d
                    who = f"{name}[{j}]"
                    if apqn in owner:
                        raise ctx.err(
                            f"{path}.domains",
                            f"APQN {a:02x}.{d:04x} is assigned to both {owner[apqn]} "
                            f"and {who}; vfio_ap does not share queues",
                        )
                    owner[apqn] = who
            if not flags["apxa"] and any(a > arch.APID_MAX_NO_APXA for a in adapters):
                raise ctx.err(f"{path}.adapters", "APID above 63 without APXA")
        groups.append(
            GuestGroup(
                name=name,
                count=count,
                vcpus=vcpus,
                adapters=tuple(adapters),
                domains=per_guest,
                workload=_workload(ctx, t.get("workload", {}), f"{path}.workload"),
                **flags,
            )
        )
    return tuple(groups)


def host_events(
    ctx: Ctx, v: Any, groups: tuple[GuestGroup, ...], duration_ns: int, seed: int
) -> tuple[HostEvent, ...]:
    """Validate ``[[events]]`` into one :class:`HostEvent` per targeted guest, sorted by time."""
    if not isinstance(v, list):
        raise ctx.err("events", "expected an array of tables [[events]]")
    base: dict[str, int] = {}
    n = 0
    for g in groups:
        base[g.name] = n
        n += g.count
    counts = {g.name: g.count for g in groups}
    by_name = {g.name: g for g in groups}
    owned = {(a << 8) | d for g in groups for doms in g.domains for d in doms for a in g.adapters}
    out = []
    for i, e in enumerate(v):
        path = f"events[{i}]"
        t = ctx.table(
            e,
            path,
            {"kind", "guest", "domains", "rescan", "adapters", *ms_keys("at", "spread", "delay")},
        )
        if "at_ms" not in t and "at" not in t:
            raise ctx.err(
                f"{path}.at_ms", 'missing: when the event happens (at_ms = 100 or at = "100ms")'
            )
        at = ms_to_ns(ctx, t, "at", path, 0)
        if at >= duration_ns:
            raise ctx.err(
                f"{path}.{ms_key(t, 'at')}", "the event is at or after the end of the run"
            )
        spread = ms_to_ns(ctx, t, "spread", path, 0)
        kinds = [k.name.lower() for k in HostEventKind] + ["stop"]
        name = ctx.choice(t.get("kind"), f"{path}.kind", kinds)
        kind = HostEventKind.DETACH if name == "stop" else HostEventKind[name.upper()]
        label = t.get("guest")
        if not isinstance(label, str):
            raise ctx.err(f"{path}.guest", f'expected "group[index]", got {show(label)}')
        parsed = re.fullmatch(r"([^\[\]]+)(?:\[(\d+|\*)\])?", label)
        if parsed is None:
            raise ctx.err(f"{path}.guest", f'expected "group[index]" or "group[*]", got {label!r}')
        gname, rest = parsed.group(1), parsed.group(2) or ""
        if gname not in base:
            raise ctx.err(f"{path}.guest", f"no guest group {gname!r}; groups: {list(base)}")
        if rest == "*":
            indices = list(range(counts[gname]))
        else:
            try:
                indices = [int(rest)] if rest else [0]
            except ValueError:
                raise ctx.err(
                    f"{path}.guest", f'expected "group[index]" or "group[*]", got {label!r}'
                ) from None
            if not 0 <= indices[0] < counts[gname]:
                raise ctx.err(
                    f"{path}.guest", f"{gname} has {counts[gname]} guests; got index {indices[0]}"
                )
        domains: tuple[int, ...] = ()
        with_domains = (HostEventKind.ASSIGN, HostEventKind.UNASSIGN, HostEventKind.QUEUE_PROBE)
        if kind in with_domains:
            if "domains" not in t:
                raise ctx.err(f"{path}.domains", f"missing: the domains to {kind.name.lower()}")
            domains = ctx.ints(t["domains"], f"{path}.domains", 255)
        elif "domains" in t:
            raise ctx.err(f"{path}.domains", "only assign, unassign and queue_probe take domains")
        adapters: tuple[int, ...] = ()
        if kind == HostEventKind.QUEUE_REMOVE:
            if "adapters" not in t:
                raise ctx.err(f"{path}.adapters", "missing: the adapters whose queue is removed")
            adapters = ctx.ints(t["adapters"], f"{path}.adapters", 255)
            bad = [a for a in adapters if a not in by_name[gname].adapters]
            if bad:
                raise ctx.err(f"{path}.adapters", f"adapter {bad[0]} is not one of {gname}'s")
        elif "adapters" in t:
            raise ctx.err(f"{path}.adapters", "only queue_remove takes adapters")
        rescan = ctx.choice(
            t.get("rescan", "immediate"), f"{path}.rescan", ("immediate", "periodic")
        )
        default_delay = 40.0 if kind == HostEventKind.GUEST_RESET else 1000.0
        delay = ctx.ms(t, "delay", path, default_delay)
        g = by_name[gname]
        jitter = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xE7, i)))
        offsets = jitter.integers(0, spread + 1, len(indices)) if spread else [0] * len(indices)
        for idx, off in zip(indices, offsets, strict=True):
            for d in domains:
                if not g.apxa and d > arch.APQI_MAX_NO_APXA:
                    raise ctx.err(f"{path}.domains", f"APQI {d} is above 15 without APXA")
                for a in g.adapters:
                    apqn = (a << 8) | d
                    mine = {(a2 << 8) | d2 for d2 in g.domains[idx] for a2 in g.adapters}
                    if kind in PLUG and apqn in owned and apqn not in mine:
                        raise ctx.err(
                            f"{path}.domains",
                            f"APQN {a:02x}.{d:04x} belongs to "
                            "another guest; vfio_ap does not share",
                        )
                    if kind in PLUG:
                        owned.add(apqn)
            out.append(
                HostEvent(
                    min(at + int(off), duration_ns - 1),
                    kind,
                    base[gname] + idx,
                    f"{gname}[{idx}]",
                    domains,
                    rescan,
                    delay,
                    adapters,
                )
            )
    return tuple(sorted(out, key=lambda e: (e.at_ns, e.guest)))
