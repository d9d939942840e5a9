"""Scenario files: TOML in, validated frozen dataclasses out, and the resolved form back to TOML.

Every error names the file, the key path (``guests[1].workload.rate_hz``), what was found and
what was expected. Unknown keys are errors. ``--set key.path=value`` overrides are applied to the
raw TOML tree before validation, so they get the same checks. See ``docs/scenario.md``.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from enum import IntEnum
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hostsim import arch
from hostsim.costs import COSTS
from hostsim.dists import Dist, DistError, parse_dist
from hostsim.variants import VARIANTS

NS_PER_MS = 1_000_000
LOCK_MODELS = ("global", "per-mdev")
WORKLOAD_KINDS = ("poisson", "closed", "bursty", "boot", "idle")
RETRY_POLICIES = ("none", "on_idle")
MIN_RATE_HZ = 1e-6
#: Malformed register states the adversarial mix can produce (see workloads.registers).
ADVERSARIAL = (
    "problem_state",
    "reserved_bits",
    "t_bit",
    "apxa_range",
    "other_fc",
    "nib_zero",
    "unassigned",
)


class ScenarioError(ValueError):
    """A scenario that cannot be used: names the file, the key path and the expectation."""


class HostEventKind(IntEnum):
    """Host-side work that competes for the locks (spec section 6)."""

    ATTACH = 0  # vfio_ap_mdev_set_kvm: rwsem write sets the hook, then set KVM under the mutex
    DETACH = 1  # vfio_ap_mdev_unset_kvm: rwsem write clears the hook, then disable + reset
    RESET = 2  # reset every queue of the guest under the mutex
    IRQ_DISABLE = 3  # host-side vfio_ap_irq_disable of every queue (teardown, DMA unmap)
    GUEST_RESET = 4  # the guest resets its queues (interpreted) and re-enables interruptions
    REBOOT = 5  # host resets every queue under the mutex; the guest boots and enables again
    ASSIGN = 6  # hot-plug: domains assigned to the mdev under the mutex; the guest enables them
    UNASSIGN = 7  # hot-unplug: domains unassigned (and reset) under the mutex


@dataclass(frozen=True)
class Hardware:
    """How an AP queue answers the host: probabilities of each response code."""

    aqic_rc: tuple[tuple[int, float], ...] = ((0, 1.0),)
    tapq_rc: tuple[tuple[int, float], ...] = ((0, 1.0),)
    tapq_irq_enabled: float = 0.0  # P(the I bit still shows after a disable)
    pin_fail: float = 0.0  # P(vfio_pin_pages fails)
    adapters: tuple[int, ...] | None = None  # override selection (None: all)
    domains: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Host:
    """The machine: kernel variant, lock design, AP adapters and domains, queue behaviour."""

    variant: str = "upstream"
    lock_model: str = "global"
    ap_instructions_available: bool = True
    apxa: bool = True
    adapters: tuple[int, ...] = (0, 1, 2, 3)
    domains: tuple[int, ...] = tuple(range(16))
    hardware: Hardware = Hardware()
    queue_overrides: tuple[Hardware, ...] = ()


@dataclass(frozen=True)
class Workload:
    """What the vCPUs of a guest group issue (see ``workloads/`` and docs/scenario.md)."""

    kind: str = "poisson"
    rate_hz: float = 100.0  # per vCPU (poisson)
    think: Dist | None = None  # closed loop
    rate_on_hz: float = 0.0  # bursty: per-vCPU rate while the group is "on"
    rate_off_hz: float = 0.0  # bursty: ... and while "off"
    on_ms: float = 0.0  # bursty: mean length of an on period (exponential)
    off_ms: float = 0.0  # bursty: mean length of an off period (exponential)
    boot_at_ms: float = 0.0  # boot: when the first guest boots
    spread_ms: float = 0.0  # boot: guests boot uniformly over [boot_at, boot_at + spread]
    gap: Dist | None = None  # boot and re-enable bursts: guest time between two AQICs
    enable_fraction: float = 1.0  # P(IR = 1): enable; else disable
    isc: int = 3
    nib: int = 0x0000_0000_1234_5000
    start_ms: float = 0.0
    retry: str = "none"  # "on_idle": re-issue a BUSY / RESET-IN-PROGRESS enable (Linux 6.7+)
    retry_poll: Dist | None = None  # guest poll interval between retries
    adversarial: tuple[tuple[str, float], ...] = ()  # malformed register states, by probability
    fc_mix: tuple[tuple[int, float], ...] = ((3, 1.0),)  # nested: function codes intercepted


@dataclass(frozen=True)
class GuestGroup:
    """``count`` identical guests of ``vcpus`` vCPUs each."""

    name: str
    count: int
    vcpus: int
    adapters: tuple[int, ...]
    domains: tuple[tuple[int, ...], ...]  # per guest
    mdev: bool = True
    eca_apie: bool = True
    eca_aiv: bool = True
    facility15: bool = True
    facility65: bool = True
    apxa: bool = True
    pv: bool = False
    workload: Workload = Workload()


@dataclass(frozen=True)
class HostEvent:
    """One host-side event at a time, on one guest."""

    at_ns: int
    kind: HostEventKind
    guest: int  # global guest index
    label: str  # "group[i]"
    domains: tuple[int, ...] = ()  # assign / unassign: the APQIs, on the guest's adapters
    rescan: str = "immediate"  # assign: "immediate" (CRW/SEI) or "periodic" (AP bus 30 s scan)
    delay_ms: float = 0.0  # guest_reset: reset wait before re-enabling; reboot: boot time


@dataclass(frozen=True)
class Scenario:
    """A whole validated scenario. ``source`` is the file it came from (for messages)."""

    duration_ns: int
    warmup_ns: int
    seed: int
    host: Host
    costs: dict[str, Dist]
    guests: tuple[GuestGroup, ...]
    events: tuple[HostEvent, ...] = ()
    source: str = "<scenario>"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_guests(self) -> int:
        return sum(g.count for g in self.guests)

    @property
    def n_vcpus(self) -> int:
        return sum(g.count * g.vcpus for g in self.guests)


# ---------------------------------------------------------------------------------------------
class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def err(self, path: str, msg: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {path}: {msg}")

    def table(self, v: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.err(path, f"expected a table, got {_show(v)}")
        for k in v:
            if k not in allowed:
                raise self.err(
                    f"{path}.{k}" if path else k, f"unknown key; expected one of {sorted(allowed)}"
                )
        return v

    def boolean(self, v: Any, path: str) -> bool:
        if not isinstance(v, bool):
            raise self.err(path, f"expected true or false, got {_show(v)}")
        return v

    def integer(self, v: Any, path: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(path, f"expected an integer, got {_show(v)}")
        if lo is not None and v < lo:
            raise self.err(path, f"expected an integer >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise self.err(path, f"expected an integer <= {hi}, got {v}")
        return v

    def number(
        self, v: Any, path: str, lo: float = 0.0, hi: float | None = None, strict: bool = False
    ) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.err(path, f"expected a number, got {_show(v)}")
        if v < lo or (strict and v == lo):
            raise self.err(path, f"expected a number {'>' if strict else '>='} {lo}, got {v}")
        if hi is not None and v > hi:
            raise self.err(path, f"expected a number <= {hi}, got {v}")
        return float(v)

    def choice(self, v: Any, path: str, options: tuple[str, ...] | list[str]) -> str:
        if v not in options:
            raise self.err(path, f"expected one of {list(options)}, got {_show(v)}")
        return v

    def ints(self, v: Any, path: str, hi: int) -> tuple[int, ...]:
        if isinstance(v, int) and not isinstance(v, bool):
            if not 1 <= v <= hi + 1:
                raise self.err(path, f"expected a count 1..{hi + 1} or a list of ids, got {v}")
            return tuple(range(v))
        if not isinstance(v, list) or not v:
            raise self.err(path, f"expected a count or a non-empty list of ids, got {_show(v)}")
        out = tuple(self.integer(x, f"{path}[{i}]", 0, 255) for i, x in enumerate(v))
        if len(set(out)) != len(out):
            raise self.err(path, "ids must not repeat")
        return out

    def dist(self, v: Any, path: str, floor: int = 1) -> Dist:
        try:
            return parse_dist(v, floor)
        except DistError as e:
            raise self.err(path, str(e)) from None


def _show(v: Any) -> str:
    return f"{type(v).__name__} {v!r}" if not isinstance(v, dict | list) else type(v).__name__


def _ms(ctx: _Ctx, t: dict[str, Any], key: str, path: str, default: float) -> int:
    v = ctx.number(t.get(key, default), f"{path}.{key}")
    return round(v * NS_PER_MS)


def _rc_probs(ctx: _Ctx, v: Any, path: str) -> tuple[tuple[int, float], ...]:
    if not isinstance(v, dict) or not v:
        raise ctx.err(
            path,
            "expected a table of response code -> probability, "
            'e.g. { "0x00" = 0.99, "0x05" = 0.01 }',
        )
    out = []
    for k, p in v.items():
        try:
            rc = int(k, 0)
        except ValueError:
            raise ctx.err(f"{path}.{k}", 'expected a response code key like "0x05"') from None
        if not 0 <= rc <= 0xFF:
            raise ctx.err(f"{path}.{k}", "response code must be 0x00-0xff")
        out.append((rc, ctx.number(p, f"{path}.{k}", 0.0, 1.0)))
    total = sum(p for _, p in out)
    if abs(total - 1.0) > 1e-9:
        raise ctx.err(path, f"probabilities must sum to 1, they sum to {total:g}")
    return tuple(sorted(out))


_HW_KEYS = {"aqic_rc", "tapq_rc", "tapq_irq_enabled", "pin_fail"}


def _hardware(ctx: _Ctx, v: Any, path: str, base: Hardware, override: bool) -> Hardware:
    t = ctx.table(v, path, _HW_KEYS | ({"adapters", "domains"} if override else set()))
    return Hardware(
        aqic_rc=_rc_probs(ctx, t["aqic_rc"], f"{path}.aqic_rc") if "aqic_rc" in t else base.aqic_rc,
        tapq_rc=_rc_probs(ctx, t["tapq_rc"], f"{path}.tapq_rc") if "tapq_rc" in t else base.tapq_rc,
        tapq_irq_enabled=ctx.number(
            t.get("tapq_irq_enabled", base.tapq_irq_enabled), f"{path}.tapq_irq_enabled", 0.0, 1.0
        ),
        pin_fail=ctx.number(t.get("pin_fail", base.pin_fail), f"{path}.pin_fail", 0.0, 1.0),
        adapters=ctx.ints(t["adapters"], f"{path}.adapters", 255) if "adapters" in t else None,
        domains=ctx.ints(t["domains"], f"{path}.domains", 255) if "domains" in t else None,
    )


def _host(ctx: _Ctx, v: Any) -> Host:
    t = ctx.table(
        v,
        "host",
        {
            "variant",
            "lock_model",
            "ap_instructions_available",
            "apxa",
            "adapters",
            "domains",
            "hardware",
        },
    )
    apxa = ctx.boolean(t.get("apxa", True), "host.apxa")
    variant = ctx.choice(t.get("variant", "upstream"), "host.variant", list(VARIANTS))
    adapters = ctx.ints(t.get("adapters", 4), "host.adapters", 255)
    domains = ctx.ints(t.get("domains", 16), "host.domains", 255)
    if not apxa:
        if max(adapters) > arch.APID_MAX_NO_APXA:
            raise ctx.err("host.adapters", f"APID {max(adapters)} is above 63 without APXA")
        if max(domains) > arch.APQI_MAX_NO_APXA:
            raise ctx.err("host.domains", f"APQI {max(domains)} is above 15 without APXA")
    hw_raw = t.get("hardware", {})
    hw_t = ctx.table(hw_raw, "host.hardware", _HW_KEYS | {"queues"})
    base = _hardware(
        ctx, {k: x for k, x in hw_t.items() if k != "queues"}, "host.hardware", Hardware(), False
    )
    queues = hw_t.get("queues", [])
    if not isinstance(queues, list):
        raise ctx.err(
            "host.hardware.queues", "expected an array of tables [[host.hardware.queues]]"
        )
    overrides = tuple(
        _hardware(ctx, q, f"host.hardware.queues[{i}]", base, True) for i, q in enumerate(queues)
    )
    return Host(
        variant=variant,
        lock_model=ctx.choice(t.get("lock_model", "global"), "host.lock_model", LOCK_MODELS),
        ap_instructions_available=ctx.boolean(
            t.get("ap_instructions_available", True), "host.ap_instructions_available"
        ),
        apxa=apxa,
        adapters=adapters,
        domains=domains,
        hardware=base,
        queue_overrides=overrides,
    )


_DEFAULT_GAP = {"dist": "uniform", "low_ns": 10_000, "high_ns": 250_000}
_DEFAULT_POLL = {"dist": "fixed", "ns": 250_000}


def _workload(ctx: _Ctx, v: Any, path: str) -> Workload:
    common = {
        "kind",
        "enable_fraction",
        "isc",
        "nib",
        "start_ms",
        "retry",
        "retry_poll",
        "adversarial",
        "fc_mix",
        "gap",
    }
    per_kind = {
        "poisson": {"rate_hz"},
        "closed": {"think"},
        "bursty": {"rate_on_hz", "rate_off_hz", "on_ms", "off_ms"},
        "boot": {"boot_at_ms", "spread_ms"},
        "idle": set(),
    }
    if not isinstance(v, dict):
        raise ctx.err(path, f"expected a table, got {_show(v)}")
    kind = ctx.choice(v.get("kind", "poisson"), f"{path}.kind", WORKLOAD_KINDS)
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
        kw["on_ms"] = ctx.number(t.get("on_ms", 10.0), f"{path}.on_ms", 0.0, strict=True)
        kw["off_ms"] = ctx.number(t.get("off_ms", 90.0), f"{path}.off_ms", 0.0, strict=True)
    elif kind == "boot":
        kw["boot_at_ms"] = ctx.number(t.get("boot_at_ms", 0.0), f"{path}.boot_at_ms")
        kw["spread_ms"] = ctx.number(t.get("spread_ms", 1000.0), f"{path}.spread_ms")
    kw["gap"] = ctx.dist(t.get("gap", _DEFAULT_GAP), f"{path}.gap", floor=0)
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
    fc_mix = _rc_probs(ctx, t["fc_mix"], f"{path}.fc_mix") if "fc_mix" in t else ((3, 1.0),)
    return Workload(
        **kw,
        enable_fraction=ctx.number(
            t.get("enable_fraction", 1.0), f"{path}.enable_fraction", 0.0, 1.0
        ),
        isc=ctx.integer(t.get("isc", 3), f"{path}.isc", 0, 7),
        nib=ctx.integer(nib, f"{path}.nib", 0, arch.MASK64),
        start_ms=ctx.number(t.get("start_ms", 0.0), f"{path}.start_ms"),
        retry=ctx.choice(t.get("retry", "none"), f"{path}.retry", RETRY_POLICIES),
        retry_poll=ctx.dist(t.get("retry_poll", _DEFAULT_POLL), f"{path}.retry_poll", floor=0),
        adversarial=adversarial,
        fc_mix=fc_mix,
    )


_GUEST_FLAGS = ("mdev", "eca_apie", "eca_aiv", "facility15", "facility65", "apxa", "pv")


def _guests(ctx: _Ctx, v: Any, host: Host) -> tuple[GuestGroup, ...]:
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
                *_GUEST_FLAGS,
            },
        )
        name = t.get("name", f"group{i}")
        if not isinstance(name, str) or not name or "[" in name:
            raise ctx.err(f"{path}.name", f"expected a name without brackets, got {_show(name)}")
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
            for f in _GUEST_FLAGS
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


def _events(
    ctx: _Ctx, v: Any, groups: tuple[GuestGroup, ...], duration_ns: int, seed: int
) -> tuple[HostEvent, ...]:
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
            e, path, {"at_ms", "kind", "guest", "spread_ms", "domains", "rescan", "delay_ms"}
        )
        if "at_ms" not in t:
            raise ctx.err(f"{path}.at_ms", "missing: when the event happens, in ms")
        at = _ms(ctx, t, "at_ms", path, 0)
        if at >= duration_ns:
            raise ctx.err(f"{path}.at_ms", "the event is at or after the end of the run")
        spread = _ms(ctx, t, "spread_ms", path, 0)
        kinds = [k.name.lower() for k in HostEventKind]
        kind = HostEventKind[ctx.choice(t.get("kind"), f"{path}.kind", kinds).upper()]
        label = t.get("guest")
        if not isinstance(label, str):
            raise ctx.err(f"{path}.guest", f'expected "group[index]", got {_show(label)}')
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
        if kind in (HostEventKind.ASSIGN, HostEventKind.UNASSIGN):
            if "domains" not in t:
                raise ctx.err(f"{path}.domains", f"missing: the domains to {kind.name.lower()}")
            domains = ctx.ints(t["domains"], f"{path}.domains", 255)
        elif "domains" in t:
            raise ctx.err(f"{path}.domains", "only assign and unassign take domains")
        rescan = ctx.choice(
            t.get("rescan", "immediate"), f"{path}.rescan", ("immediate", "periodic")
        )
        default_delay = 40.0 if kind == HostEventKind.GUEST_RESET else 1000.0
        delay = ctx.number(t.get("delay_ms", default_delay), f"{path}.delay_ms")
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
                    if kind == HostEventKind.ASSIGN and apqn in owned and apqn not in mine:
                        raise ctx.err(
                            f"{path}.domains",
                            f"APQN {a:02x}.{d:04x} belongs to "
                            "another guest; vfio_ap does not share",
                        )
                    if kind == HostEventKind.ASSIGN:
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
                )
            )
    return tuple(sorted(out, key=lambda e: (e.at_ns, e.guest)))


def from_dict(raw: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate a raw TOML tree into a :class:`Scenario`."""
    ctx = _Ctx(source)
    ctx.table(raw, "", {"run", "host", "costs", "guests", "events"})
    run = ctx.table(raw.get("run", {}), "run", {"duration_ms", "warmup_ms", "seed"})
    duration = _ms(ctx, run, "duration_ms", "run", 1000.0)
    if duration <= 0:
        raise ctx.err("run.duration_ms", "expected a positive duration")
    warmup = _ms(ctx, run, "warmup_ms", "run", 0.0)
    if warmup >= duration:
        raise ctx.err(
            "run.warmup_ms",
            f"warm-up ({warmup / NS_PER_MS:g} ms) must be shorter "
            f"than the run ({duration / NS_PER_MS:g} ms)",
        )
    seed = ctx.integer(run.get("seed", 1), "run.seed", 0, 2**63 - 1)
    host = _host(ctx, raw.get("host", {}))
    costs_raw = ctx.table(raw.get("costs", {}), "costs", set(COSTS))
    costs = {
        name: ctx.dist(costs_raw.get(name, spec.default), f"costs.{name}")
        for name, spec in COSTS.items()
    }
    guests = _guests(ctx, raw.get("guests", []), host)
    events = _events(ctx, raw.get("events", []), guests, duration, seed)
    return Scenario(duration, warmup, seed, host, costs, guests, events, source, raw)


def _coerce(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_set(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``key.path=value`` override (value in TOML syntax; bare words are strings).

    List elements are addressed by index: ``guests.0.count=12``.
    """
    if "=" not in assignment:
        raise ScenarioError(f"--set {assignment!r}: expected key.path=value")
    path, _, value = assignment.partition("=")
    keys = path.strip().split(".")
    node: Any = raw
    for depth, k in enumerate(keys[:-1]):
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not k.isdigit() or int(k) >= len(node):
                raise ScenarioError(f"--set {path}: {where}: expected an index below {len(node)}")
            node = node[int(k)]
        else:
            if not isinstance(node, dict):
                raise ScenarioError(f"--set {path}: {where} is not a table")
            node = node.setdefault(k, {})
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ScenarioError(f"--set {path}: expected an index below {len(node)}")
        node[int(last)] = _coerce(value.strip())
    elif isinstance(node, dict):
        node[last] = _coerce(value.strip())
    else:
        raise ScenarioError(f"--set {path}: the parent is not a table")


def default_text() -> str:
    """The built-in default scenario (``hostsim run`` with no file)."""
    return resources.files("hostsim").joinpath("data/default.toml").read_text(encoding="utf-8")


def load(path: str | Path | None = None, sets: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Load a scenario file (or the built-in default), apply ``--set`` overrides, validate."""
    if path is None:
        text, source = default_text(), "<built-in default>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ScenarioError(f"{source}: cannot read: {e.strerror}") from None
    return loads(text, source, sets)


def loads(
    text: str, source: str = "<scenario>", sets: list[str] | tuple[str, ...] = ()
) -> Scenario:
    """Parse and validate scenario text."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML: {e}") from None
    for s in sets:
        apply_set(raw, s)
    return from_dict(raw, source)


# --- The resolved scenario, written back as TOML -----------------------------------------------
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
        gd.update({f: getattr(g, f) for f in _GUEST_FLAGS})
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
            if e.kind == HostEventKind.ASSIGN:
                ed["rescan"] = e.rescan
            if e.kind in (HostEventKind.GUEST_RESET, HostEventKind.REBOOT):
                ed["delay_ms"] = e.delay_ms
            out["events"].append(ed)
    return out


def _tv(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_tv(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_tv(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _tv(k)


def to_toml(d: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for the resolved-scenario tree (tables, arrays of tables)."""
    lines: list[str] = []
    subs: list[tuple[str, Any]] = []
    for k, v in d.items():
        if (
            (isinstance(v, dict) and any(isinstance(x, dict | list) for x in v.values()))
            or (isinstance(v, dict) and prefix == "" and k in ("run", "host", "costs"))
        ) or (
            isinstance(v, list)
            and v
            and all(isinstance(x, dict) for x in v)
            and k in ("guests", "events", "queues")
        ):
            subs.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_tv(v)}")
    for k, v in subs:
        name = f"{prefix}{_key(k)}"
        if isinstance(v, list):
            for item in v:
                lines.append(f"\n[[{name}]]")
                lines.append(to_toml(item, f"{name}.").rstrip("\n"))
        else:
            lines.append(f"\n[{name}]")
            lines.append(to_toml(v, f"{name}.").rstrip("\n"))
    return "\n".join(x for x in lines if x != "") + "\n"


def resolved_toml(s: Scenario) -> str:
    """The resolved scenario as TOML text; loading it back gives the same scenario."""
    return "# hostsim resolved scenario: every value this run used\n" + to_toml(resolved(s))


# --- Derived topology as arrays ------------------------------------------------------------------
@dataclass(frozen=True)
class Topology:
    """Guests and vCPUs flattened into arrays (global indices in scenario order)."""

    guest_group: np.ndarray  # per guest: group index
    guest_local: np.ndarray  # per guest: index within its group
    guest_first_vcpu: np.ndarray
    guest_apqns: tuple[np.ndarray, ...]  # per guest: uint16 APQNs (adapter-major)
    vcpu_guest: np.ndarray  # per vCPU: global guest index
    vcpu_group: np.ndarray
    vcpu_local: np.ndarray  # per vCPU: index within its group
    group_first_guest: np.ndarray
    group_first_vcpu: np.ndarray


def topology(s: Scenario) -> Topology:
    """Flatten the guest groups of ``s`` into index arrays."""
    gg, gl, gfv, apqns = [], [], [], []
    gfg, gfvc = [], []
    per_guest_vcpus = []
    vcpu = 0
    for gi, g in enumerate(s.guests):
        gfg.append(len(gg))
        gfvc.append(vcpu)
        for j in range(g.count):
            gg.append(gi)
            gl.append(j)
            gfv.append(vcpu)
            apqns.append(
                np.array([(a << 8) | d for a in g.adapters for d in g.domains[j]], np.uint16)
            )
            per_guest_vcpus.append(g.vcpus)
            vcpu += g.vcpus
    per = np.array(per_guest_vcpus, np.int64)
    vg = np.repeat(np.arange(len(gg), dtype=np.int32), per)
    vgr = np.repeat(np.array(gg, np.int32), per)
    first = np.repeat(np.array(gfvc, np.int64), [g.count * g.vcpus for g in s.guests])
    vl = np.arange(vcpu, dtype=np.int64) - first
    return Topology(
        np.array(gg, np.int32),
        np.array(gl, np.int32),
        np.array(gfv, np.int64),
        tuple(apqns),
        vg,
        vgr,
        vl,
        np.array(gfg, np.int64),
        np.array(gfvc, np.int64),
    )
