"""The registry of random-draw families: every kind of draw a run makes, named once.

A family is one named stream of keyed draws (:mod:`hostsim.keyed`). Each family is declared
here, with what keys it and what it is for, and every draw site asks for its family through
:func:`keyed` or :func:`seeded`, which refuse a name that is not declared. Separate families are
what makes common random numbers hold: changing one cost's distribution, adding an ``fc_mix`` or
an adversarial mix, or adding a guest group never moves the draws of another family, group,
guest or host event.

Keys are stable identities, not positions: a guest group is keyed by its name
(:func:`group_key`), a host event by its guest label, kind, time and occurrence
(:func:`event_key`), so inserting a group or an event before another leaves the other's draws
where they were. :func:`check` is the collision check (run at import and by the tests): names
are unique, use no ``/`` (the separator of the hashed key string), and their 64-bit family keys
are distinct.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

from hostsim.costs import COSTS, PER_CALL_COSTS
from hostsim.keyed import KeyedGen, family_key


class DrawRegistryError(ValueError):
    """A draw family used without being declared, or declared twice."""


@dataclass(frozen=True)
class Family:
    """One declared family: its name, what its keys are, and what it draws."""

    name: str
    keyed_by: str
    what: str


FAMILIES: dict[str, Family] = {}


def declare(name: str, keyed_by: str, what: str) -> Family:
    """Declare family ``name`` (once: a second declaration is an error)."""
    if name in FAMILIES:
        raise DrawRegistryError(f"draw family {name!r} is declared twice")
    if "/" in name or not name:
        raise DrawRegistryError(f"draw family name {name!r}: expected a non-empty name without '/'")
    fam = FAMILIES[name] = Family(name, keyed_by, what)
    return fam


REQ = "(group, local vCPU, request k)"
HOST_OP = "(host event, queue index, call)"

ARRIVAL = declare("arrival", REQ, "inter-arrival gap, unit-mean gap or think time")
RETRY_POLL = declare("retry-poll", REQ, "idle-poll wait before a retried enable")
REG_QUEUE = declare("registers:queue", REQ, "which of its guest's queues a request addresses")
REG_ENABLE = declare("registers:enable", REQ, "enable (IR=1) or disable")
REG_FC = declare("registers:fc", REQ, "function code from the fc_mix")
REG_ADVERSARIAL = declare("registers:adversarial", REQ, "malformed category of the issue")
REG_PICK = declare("registers:pick", REQ, "detail within the malformed category")
HW_AQIC = declare("hardware:aqic", REQ, "AQIC answers of each call slot (uniforms)")
HW_TAPQ = declare("hardware:tapq", REQ, "TAPQ response codes of each call slot (uniforms)")
HW_IRQ = declare("hardware:irq", REQ, "TAPQ I bit of each call slot (uniforms)")
HW_PIN = declare("hardware:pin", REQ, "vfio_pin_pages success (uniform)")
SCRIPT_GAP = declare("script-gap", "(group, guest) or (event)", "gaps within an enable burst")
SCRIPT_VCPU = declare("script-vcpu", "(event)", "the vCPU a Linux guest's AP poll timer fires on")
BOOT = declare("boot", "(group, guest)", "boot time within the boot spread")
RESCAN = declare("rescan", "(event)", "when the guest sees an assigned queue (AP bus scan)")
BURSTY = declare("bursty", "(group)", "on/off period lengths of a bursty group")
HOST_HW_AQIC = declare("host-hardware:aqic", HOST_OP, "AQIC answers of a host-side disable")
HOST_HW_TAPQ = declare("host-hardware:tapq", HOST_OP, "TAPQ response codes of a host disable")
HOST_HW_IRQ = declare("host-hardware:irq", HOST_OP, "TAPQ I bit of a host-side disable")


def _cost_families() -> None:
    for name in COSTS:
        declare(f"cost:{name}", REQ, f"cost {name} of a request")
        declare(f"host-cost:{name}", HOST_OP, f"cost {name} of a host operation")
        for j in range(PER_CALL_COSTS.get(name, 0)):
            declare(f"cost:{name}:{j}", REQ, f"cost {name}, call slot {j}, of a request")


_cost_families()


def cost_family(name: str, slot: int | None = None) -> str:
    """The family of request cost ``name`` (call slot ``slot`` of a per-call cost)."""
    return f"cost:{name}" if slot is None else f"cost:{name}:{slot}"


def _known(family: Family | str) -> str:
    name = family.name if isinstance(family, Family) else family
    if name not in FAMILIES:
        raise DrawRegistryError(f"draw family {name!r} is not declared in hostsim.draws")
    return name


def keyed(
    seed: int, family: Family | str, group: int | np.ndarray, lv: np.ndarray, k: np.ndarray
) -> KeyedGen:
    """Keyed draws of a declared family (see :class:`hostsim.keyed.KeyedGen`)."""
    return KeyedGen(seed, _known(family), group, lv, k)


def seeded(seed: int, family: Family | str, *key: int) -> np.random.Generator:
    """A sequential generator for one keyed unit of a declared family (a boot, a burst, a
    bursty clock): its draws depend on the seed, the family and ``key`` alone."""
    name = _known(family)
    ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode()), *key))
    return np.random.Generator(np.random.PCG64(ss))


def _stable(text: str) -> int:
    """A 62-bit key of ``text`` (stable across runs and platforms)."""
    h = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 2


def group_key(name: str) -> int:
    """The draw key of a guest group: from its name, not its position in the file."""
    return _stable(f"group:{name}")


def event_key(label: str, kind: str, at_ns: int, occurrence: int) -> int:
    """The draw key of a host event: its guest, kind, time, and how many identical events
    come before it."""
    return _stable(f"event:{label}:{kind}:{at_ns}:{occurrence}")


def distinct_keys(keys: list[int], what: str) -> None:
    """Refuse two identical draw keys (two groups or events would share their draws)."""
    if len(set(keys)) != len(keys):
        raise DrawRegistryError(f"two {what} have the same draw key")


def check() -> None:
    """The collision check: every family's 64-bit key is distinct."""
    keys = [int(family_key(0, name, 0, 0)) for name in FAMILIES]
    distinct_keys(keys, "draw families")


check()
