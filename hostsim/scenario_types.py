"""The scenario as data: frozen dataclasses, the host-event kinds, the option constants and
:class:`ScenarioError`.

These are the types every other module works with (the engines, the model, the report), kept
apart from the TOML loader (:mod:`hostsim.scenario`) so that reading a scenario's fields does not
pull in the validation code. See ``docs/scenario.md`` for what each field means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from hostsim.dists import Dist

NS_PER_MS = 1_000_000
LOCK_MODELS = ("global", "per-mdev")
WORKLOAD_KINDS = ("linux", "poisson", "closed", "bursty", "boot", "idle")
RETRY_POLICIES = ("none", "on_reply", "on_idle")
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

    ATTACH = 0  # open: vfio_ap_mdev_set_kvm (hook published, APCB update)
    DETACH = 1  # close ("stop"): vfio_ap_mdev_unset_kvm (hook cleared, masks cleared, reset)
    RESET = 2  # VFIO_DEVICE_RESET: vfio_ap_mdev_reset_queues under mdevs_lock
    IRQ_DISABLE = 3  # DMA unmap: vfio_ap_irq_disable of every queue with interrupts on
    GUEST_RESET = 4  # the guest resets its queues (interpreted) and re-enables interruptions
    REBOOT = 5  # the machine reset (VFIO_DEVICE_RESET); the guest boots and enables again
    ASSIGN = 6  # hot-plug: domains assigned to the mdev (APCB update); the guest enables them
    UNASSIGN = 7  # hot-unplug: domains unassigned (APCB update, their queues reset)
    START = 8  # a guest start as QEMU does it: open, then the machine reset; the guest boots
    SYSFS_READ = 9  # a *_show of the mdev (matrix, guest_matrix, ...): mdevs_lock, formatting
    MDEV_CREATE = 10  # vfio_ap_mdev_probe: the mdev added to the list under mdevs_lock
    MDEV_REMOVE = 11  # vfio_ap_mdev_remove (after a stop): guests -> mdevs, every queue reset
    QUEUE_PROBE = 12  # vfio_ap_mdev_probe_queue: new APQNs (domains) linked and hot-plugged
    QUEUE_REMOVE = 13  # vfio_ap_mdev_remove_queue: the whole adapter unplugged, its queues reset
    CONFIG_CHANGED = 14  # vfio_ap_on_cfg_changed / on_scan_complete: every mdev, an APCB update


#: Events that add queues to the guest's configuration, and that take them away.
PLUG = (HostEventKind.ASSIGN, HostEventKind.QUEUE_PROBE)
UNPLUG = (HostEventKind.UNASSIGN, HostEventKind.QUEUE_REMOVE, HostEventKind.MDEV_REMOVE)


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
    kernel: str = "6.15"  # release: the length of msleep() (hostsim.sleeps); variant's default
    hz: int = 100  # CONFIG_HZ (s390 defconfig: 100)
    #: what-if: "flush" (upstream: flush_work of every reset check under mdevs_lock) or
    #: "async" (the lock is dropped after the ZAPQs; nobody waits for the resets to complete)
    reset_verify: str = "flush"
    #: what-if: "locked" (upstream: vfio_ap_irq_disable's msleep(20)s under mdevs_lock) or
    #: "unlocked" (the host's disable loops drop the lock across each sleep)
    disable_wait: str = "locked"


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
    probe_ms: float = 40.0  # after a start or reboot: RAPQ to the enabling tasklet pass
    #: "on_reply": a failed enable is re-issued when a crypto reply empties the queue (Linux
    #: 6.7+, ``ap_sm_read``); "on_idle": a BUSY / RESET-IN-PROGRESS enable re-issued after a
    #: poll (synthetic)
    retry: str = "none"
    retry_poll: Dist | None = None  # wait before a retry: the next reply, or the poll
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


#: The boolean switches of a guest group, in the order they are read and written back.
GUEST_FLAGS = ("mdev", "eca_apie", "eca_aiv", "facility15", "facility65", "apxa", "pv")


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
    adapters: tuple[int, ...] = ()  # queue_remove: the adapters whose queue leaves vfio_ap


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
