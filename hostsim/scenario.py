"""Scenario files: TOML in, validated frozen dataclasses out.

Every error names the file, the key path (``guests[1].workload.rate_hz``), what was found and
what was expected. Unknown keys are errors. ``--set key.path=value`` overrides are applied to the
raw TOML tree before validation, so they get the same checks. See ``docs/scenario.md``.

This module holds the loader (:func:`load`, :func:`loads`, :func:`from_dict`, :func:`apply_set`,
:func:`default_text`) and the run, host and cost sections; the guest and event sections are
validated in :mod:`hostsim.scenario_guests`. The rest lives beside it: the dataclasses in
:mod:`hostsim.scenario_types`, the resolved form and its TOML writer in
:mod:`hostsim.scenario_toml`, the topology arrays in :mod:`hostsim.topology`. For convenience
this module re-exports the names users reach for: :class:`Scenario`, :class:`ScenarioError`,
:class:`HostEventKind`, :func:`load` and :func:`loads`.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from hostsim import arch, sleeps, units
from hostsim.costs import COSTS
from hostsim.scenario_check import Ctx, ms_key, ms_keys, ms_to_ns, rc_probs
from hostsim.scenario_guests import guest_groups, host_events
from hostsim.scenario_types import (
    LOCK_MODELS,
    NS_PER_MS,
    Hardware,
    Host,
    HostEventKind,
    Scenario,
    ScenarioError,
)
from hostsim.variants import VARIANTS

__all__ = [
    "HostEventKind",
    "Scenario",
    "ScenarioError",
    "apply_set",
    "default_text",
    "from_dict",
    "load",
    "loads",
]

_HW_KEYS = {"aqic_rc", "tapq_rc", "tapq_irq_enabled", "pin_fail"}


def _hardware(ctx: Ctx, v: Any, path: str, base: Hardware, override: bool) -> Hardware:
    t = ctx.table(v, path, _HW_KEYS | ({"adapters", "domains"} if override else set()))
    return Hardware(
        aqic_rc=rc_probs(ctx, t["aqic_rc"], f"{path}.aqic_rc") if "aqic_rc" in t else base.aqic_rc,
        tapq_rc=rc_probs(ctx, t["tapq_rc"], f"{path}.tapq_rc") if "tapq_rc" in t else base.tapq_rc,
        tapq_irq_enabled=ctx.number(
            t.get("tapq_irq_enabled", base.tapq_irq_enabled), f"{path}.tapq_irq_enabled", 0.0, 1.0
        ),
        pin_fail=ctx.number(t.get("pin_fail", base.pin_fail), f"{path}.pin_fail", 0.0, 1.0),
        adapters=ctx.ints(t["adapters"], f"{path}.adapters", 255) if "adapters" in t else None,
        domains=ctx.ints(t["domains"], f"{path}.domains", 255) if "domains" in t else None,
    )


def _host(ctx: Ctx, v: Any) -> Host:
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
            "kernel",
            "hz",
            "reset_verify",
            "disable_wait",
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
        kernel=_kernel(ctx, t.get("kernel", sleeps.VARIANT_RELEASE[variant])),
        reset_verify=ctx.choice(
            t.get("reset_verify", "flush"), "host.reset_verify", ["flush", "async"]
        ),
        disable_wait=ctx.choice(
            t.get("disable_wait", "locked"), "host.disable_wait", ["locked", "unlocked"]
        ),
        hz=ctx.choice(t.get("hz", sleeps.DEFAULT_HZ), "host.hz", list(sleeps.HZ_CHOICES)),
    )


def _kernel(ctx: Ctx, v: Any) -> str:
    try:
        sleeps.release(v)
    except ValueError as e:
        raise ctx.err("host.kernel", str(e)) from None
    return str(v)


#: costs whose default follows the host's kernel release and HZ (hostsim.sleeps)
SLEEP_COSTS = {"msleep20": sleeps.HOOK_SLEEP_MS, "reset_interval": sleeps.AP_RESET_INTERVAL_MS}


def _default_cost(name: str, host: Host) -> dict[str, Any]:
    if name in SLEEP_COSTS:
        return sleeps.sleep_cost(SLEEP_COSTS[name], host.kernel, host.hz)
    return COSTS[name].default


def from_dict(raw: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate a raw TOML tree into a :class:`Scenario`."""
    ctx = Ctx(source)
    ctx.table(raw, "", {"run", "host", "costs", "guests", "events"})
    run = ctx.table(raw.get("run", {}), "run", ms_keys("duration", "warmup") | {"seed"})
    duration = ms_to_ns(ctx, run, "duration", "run", 1000.0)
    if duration <= 0:
        raise ctx.err(f"run.{ms_key(run, 'duration')}", "expected a positive duration")
    warmup = ms_to_ns(ctx, run, "warmup", "run", 0.0)
    if warmup >= duration:
        raise ctx.err(
            f"run.{ms_key(run, 'warmup')}",
            f"warm-up ({warmup / NS_PER_MS:g} ms) must be shorter "
            f"than the run ({duration / NS_PER_MS:g} ms)",
        )
    seed = ctx.integer(run.get("seed", 1), "run.seed", 0, 2**63 - 1)
    host = _host(ctx, raw.get("host", {}))
    costs_raw = ctx.table(raw.get("costs", {}), "costs", set(COSTS))
    costs = {
        name: ctx.dist(costs_raw.get(name, _default_cost(name, host)), f"costs.{name}")
        for name in COSTS
    }
    guests = guest_groups(ctx, raw.get("guests", []), host)
    events = host_events(ctx, raw.get("events", []), guests, duration, seed)
    return Scenario(duration, warmup, seed, host, costs, guests, events, source, raw)


def _coerce(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_set(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``key.path=value`` override (value in TOML syntax; bare words are strings).

    List elements are addressed by index: ``guests.0.count=12``. A duration replaces the
    table's other spellings of it (``run.duration=4s`` drops ``duration_ms``).
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
        units.replace(node, last, _coerce(value.strip()))
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
