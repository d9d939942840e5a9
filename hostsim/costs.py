"""The cost model: every latency on the intercept path, by name, with its default and source.

Defaults come from ``shared/spec/timing-calibration.md`` section 7 (and 1.3). Confidence: H =
code constant, M = documented, L = comparable platform or derived, VL = a guess. **No published
s390 measurement exists for any of the L/VL values**: they are placeholders to override from
your own traces (``hostsim`` reports measured per-outcome durations from imported traces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CostSpec:
    """One named cost: its default distribution, confidence and where the value comes from."""

    default: dict[str, Any]
    confidence: str
    source: str
    what: str


COSTS: dict[str, CostSpec] = {
    "sie_exit": CostSpec(
        {"dist": "lognormal", "median_ns": 450, "p99_ns": 1500},
        "L",
        "half of sie_intercept_rtt_us 1.0 (p99 ~3); x86/arm64 perf kvm stat minima 0.4-2.2 us",
        "SIE intercept and exit to KVM's handle_instruction() dispatch",
    ),
    "sie_entry": CostSpec(
        {"dist": "lognormal", "median_ns": 450, "p99_ns": 1500},
        "L",
        "other half of sie_intercept_rtt_us",
        "return from the handler and SIE re-entry",
    ),
    "kvm_decode": CostSpec(
        {"dist": "fixed", "ns": 200},
        "VL",
        "kvm_pqap_dispatch_us 0.2 (priv.c path length)",
        "handle_pqap() guards up to the hook call",
    ),
    "rwsem_read": CostSpec(
        {"dist": "fixed", "ns": 50},
        "VL",
        "part of kvm_pqap_dispatch_us",
        "down_read/up_read of pqap_hook_rwsem (or try_module_get/module_put)",
    ),
    "hook_entry": CostSpec(
        {"dist": "fixed", "ns": 50}, "VL", "estimate", "vfio_ap handle_pqap() up to mutex_lock"
    ),
    "pgm_inject": CostSpec(
        {"dist": "fixed", "ns": 300},
        "VL",
        "estimate",
        "kvm_s390_inject_program_int() and delivery at SIE entry",
    ),
    "userspace_exit": CostSpec(
        {"dist": "lognormal", "median_ns": 7000, "p99_ns": 25000},
        "L",
        "userspace_exit_rtt_us 8 (3-25) plus QEMU's 1 us operation-exception injection",
        "KVM_EXIT_S390_SIEIC round trip through the VMM, PGM_OPERATION injected",
    ),
    "mutex_acquire": CostSpec(
        {"dist": "fixed", "ns": 100},
        "VL",
        "vfio_ap_lock uncontended fast path 0.1 us",
        "mutex_lock/unlock of the global vfio_ap mutex when free",
    ),
    "lookup": CostSpec(
        {"dist": "fixed", "ns": 300},
        "VL",
        "vfio_ap_lookup_us 0.3",
        "APQN lookup in the mdev and NIB validation (gfn_to_hva)",
    ),
    "pin": CostSpec(
        {"dist": "lognormal", "median_ns": 2000, "p99_ns": 10000},
        "L",
        "vfio_pin_pages_us 2.0 (0.5-10); gup_test ~62 ns/page plus vfio overhead",
        "vfio_pin_pages() of the NIB page",
    ),
    "gisc_register": CostSpec(
        {"dist": "fixed", "ns": 200},
        "VL",
        "gisc_register_us 0.2 (spinlock + IAM update)",
        "kvm_s390_gisc_register()",
    ),
    "host_aqic": CostSpec(
        {"dist": "lognormal", "median_ns": 2000, "p99_ns": 20000},
        "VL",
        "host_aqic_us 2.0 (0.5-20); no published figure",
        "one host PQAP(AQIC) to the adapter",
    ),
    "host_tapq": CostSpec(
        {"dist": "lognormal", "median_ns": 1000, "p99_ns": 5000},
        "VL",
        "estimate",
        "one host PQAP(TAPQ) while waiting for the IR bit to clear",
    ),
    "msleep20": CostSpec(
        {"dist": "uniform", "low_ns": 20_000_000, "high_ns": 30_000_000},
        "H",
        "msleep(20) from host.kernel and host.hz (hostsim.sleeps, host-operations.md 4): "
        "20-30 ms from 6.12, 30-40 ms up to 6.11 at HZ=100; the default shown is 6.12+",
        "one msleep(20) in the disable loop or the IR-clear poll, held under the mutex",
    ),
    "reset_interval": CostSpec(
        {"dist": "uniform", "low_ns": 20_000_000, "high_ns": 30_000_000},
        "H",
        "msleep(AP_RESET_INTERVAL = 20) from host.kernel and host.hz, as msleep20",
        "apq_reset_check: the sleep before each TAPQ that verifies a queue reset",
    ),
    "rwsem_write": CostSpec(
        {"dist": "fixed", "ns": 200},
        "VL",
        "estimate",
        "vfio_ap_mdev_set_kvm/unset_kvm: down_write, set or clear the hook, up_write",
    ),
    "mdev_kvm_update": CostSpec(
        {"dist": "lognormal", "median_ns": 50_000, "p99_ns": 200_000},
        "VL",
        "estimate",
        "set/unset KVM under the mutex: APCB update, kvm_arch_crypto_set_masks",
    ),
    "queue_reset": CostSpec(
        {"dist": "lognormal", "median_ns": 5_000_000, "p99_ns": 20_000_000},
        "VL",
        "queue_reset_duration_ms 5 (1-20); no published figure",
        "the adapter's own reset of one queue after a ZAPQ: TAPQ answers 02 (reset in"
        " progress) until it completes; the host's verification sleeps reset_interval first",
    ),
    "zapq": CostSpec(
        {"dist": "lognormal", "median_ns": 1000, "p99_ns": 5000},
        "VL",
        "estimate, as host_tapq",
        "one host PQAP(ZAPQ) instruction (the reset itself runs in the adapter: queue_reset)",
    ),
    "apcb_update": CostSpec(
        {"dist": "lognormal", "median_ns": 20_000, "p99_ns": 100_000},
        "VL",
        "estimate: kvm_s390_vcpu_block_all + CRYCB update + KVM_REQ_VSIE_RESTART broadcast",
        "an APCB (guest AP mask) update, with every vCPU of the guest stopped (H8)",
    ),
    "sysfs_read": CostSpec(
        {"dist": "fixed", "ns": 4000},
        "VL",
        "estimate: host-operations.md section 2, 'us each'",
        "one vfio_ap sysfs attribute (matrix, guest_matrix, ...) formatted under mdevs_lock",
    ),
    "mdev_list": CostSpec(
        {"dist": "fixed", "ns": 1000},
        "VL",
        "estimate",
        "an mdev-list change or one mdev's filtering under mdevs_lock (create, remove, config)",
    ),
}

#: Costs drawn once per host AQIC, per host TAPQ and per sleep (the call slots of one decode).
PER_CALL_COSTS = {"host_aqic": 7, "host_tapq": 5, "msleep20": 11}
