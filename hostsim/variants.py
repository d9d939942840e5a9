"""Kernel variants: the versions and the alternative argued in 2019, as named switches.

Each variant is a set of facts about one kernel (spec ``kernel-pqap.md`` section 9). The rule
tables in :mod:`hostsim.rules` read these switches; nothing else branches on a variant's name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """What one kernel does differently on the intercepted-PQAP path."""

    name: str
    description: str
    #: "kvm": KVM rejects fc != 3 before anything else; "hook": the hook's switch does it.
    fc_check_in: str
    #: KVM (or, for hook-owns-fc, the hook) checks guest facility 65.
    checks_facility65: bool
    #: "rwsem": per-VM pqap_hook_rwsem (v5.15+); "module": try_module_get on the hook owner.
    hook_guard: str
    #: CC 0 is set when the hook succeeds with RC 0 (83303a4c776c, v6.8); else CC unchanged.
    cc_zero_on_success: bool
    #: The hook answers RC 01 when the mdev has no KVM pointer yet (newer hooks).
    checks_mdev_kvm: bool
    #: "validate": NIB 0 or outside memslots is rejected before pinning (V1);
    #: "pin": no validation, the pin decides (V7, 2019).
    nib_check: str
    #: Protected-virtualization guests must have the NIB page shared (v6.5+).
    checks_pv_nib_shared: bool
    #: RC the hook answers when kvm_s390_gisc_register() fails; None when unchecked (2019).
    gisc_fail_rc: int | None
    #: Name of the global vfio_ap mutex in this kernel.
    global_lock_name: str
    #: "async": ZAPQ every queue, parallel apq_reset_check, flush_work (2023+, H1);
    #: "sync": the 2019 per-queue reset (msleep(20) retries), then irq disable (H11).
    reset_style: str = "sync"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            name="upstream",
            description="today's kernel (K1 + V1): rwsem-guarded hook, CC 0 on success",
            fc_check_in="kvm",
            checks_facility65=True,
            hook_guard="rwsem",
            cc_zero_on_success=True,
            checks_mdev_kvm=True,
            nib_check="validate",
            checks_pv_nib_shared=True,
            gisc_fail_rc=0x06,
            global_lock_name="matrix_dev->mdevs_lock",
            reset_style="async",
        ),
        Variant(
            name="merged-2019",
            description="as first merged in v5.3 (e5282de93105 + V7 hook)",
            fc_check_in="kvm",
            checks_facility65=True,
            hook_guard="module",
            cc_zero_on_success=False,
            checks_mdev_kvm=False,
            nib_check="pin",
            checks_pv_nib_shared=False,
            gisc_fail_rc=None,
            global_lock_name="matrix_dev->lock",
        ),
        Variant(
            name="v4-2019",
            description="the v4 patch under review (Feb 2019): no facility-65 check (inferred)",
            fc_check_in="kvm",
            checks_facility65=False,
            hook_guard="module",
            cc_zero_on_success=False,
            checks_mdev_kvm=False,
            nib_check="pin",
            checks_pv_nib_shared=False,
            gisc_fail_rc=None,
            global_lock_name="matrix_dev->lock",
        ),
        Variant(
            name="hook-owns-fc",
            description="Tony Krowiak's proposal: the hook switches on fc and makes the checks",
            fc_check_in="hook",
            checks_facility65=True,
            hook_guard="module",
            cc_zero_on_success=False,
            checks_mdev_kvm=False,
            nib_check="pin",
            checks_pv_nib_shared=False,
            gisc_fail_rc=None,
            global_lock_name="matrix_dev->lock",
        ),
    )
}

DEFAULT_VARIANT = "upstream"


def get_variant(name: str) -> Variant:
    """The variant called ``name``; a clear error naming the known ones otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise ValueError(f"unknown kernel variant {name!r}; expected one of: {known}") from None
