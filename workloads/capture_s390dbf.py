"""s390dbf ``SET CRYCB`` lines of a KVM guest: when its AP configuration (APCB) was updated.

KVM logs each guest AP-mask update in the guest's debug feature
(``/sys/kernel/debug/s390dbf/kvm-<pid>/sprintf``; ``kvm_arch_crypto_set_masks`` and
``_clear_masks`` in ``arch/s390/kvm/kvm-s390.c``), with every vCPU of the guest stopped
(``host-operations.md`` section 1). The sprintf view prints
``AREA SEC:USEC LEVEL EXC CPU CALLER  TEXT``::

    00 01733140000:123456 3 - 0002 00000000a1b2c3d4  SET CRYCB: apm 8000000000000000 0 0 0
    00 01733140000:123460 3 - 0002 00000000a1b2c3d4  SET CRYCB: aqm 0004000000000000 0 0 0
    00 01733140000:123461 3 - 0002 00000000a1b2c3d4  SET CRYCB: adm 0004000000000000 0 0 0
    00 01733140002:500000 3 - 0001 00000000a1b2c3d4  CLR CRYCB:

A format-2 CRYCB logs three lines (apm, aqm, adm: one update), format 0/1 one
(``SET CRYCB: apm %016lx aqm %04x adm %04x``). Timestamps are the TOD clock as Unix seconds and
microseconds, not the boot-time clock of ``trace-cmd``/``perf``. ``==> FILE <==`` headers (``tail``
of several files) name the VM; without them the VM is the file's ``kvm-<pid>`` directory name or
the file name. Other debug-feature lines are read and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workloads.capture_base import CaptureError, CaptureFormat, numbered, register

_DBF_RE = re.compile(
    r"^\s*(?P<area>\d+)\s+(?P<sec>\d+):(?P<usec>\d{1,6})\s+(?P<level>\d)\s+(?P<exc>[-*])\s+"
    r"(?P<cpu>\d+)\s+(?P<caller>[0-9a-fA-F]+)\s+(?P<text>.*?)\s*$"
)
_FILE_RE = re.compile(r"^==> (?P<file>.*) <==$")
_MASK_RE = re.compile(r"^SET CRYCB: (?P<which>apm|aqm|adm)((?:\s+[0-9a-fA-F]+){1,4})$")
_FMT01_RE = re.compile(
    r"^SET CRYCB: apm (?P<apm>[0-9a-fA-F]+) aqm (?P<aqm>[0-9a-fA-F]+) adm (?P<adm>[0-9a-fA-F]+)$"
)
_VM_RE = re.compile(r"(kvm-\d+)")


def _bits(words: list[int], width: int) -> tuple[int, ...]:
    """Numbers whose bit is set, bit 0 the leftmost of the first word (AP mask order)."""
    out = []
    for w, word in enumerate(words):
        out += [w * width + b for b in range(width) if word >> (width - 1 - b) & 1]
    return tuple(out)


@dataclass
class ApcbUpdate:
    """One APCB update of a VM: time (ns, TOD as Unix time), ``set`` or ``clear``, masks."""

    vm: str
    t_ns: int
    kind: str
    adapters: tuple[int, ...] = ()
    domains: tuple[int, ...] = ()
    control_domains: tuple[int, ...] = ()
    line: int = 0


@dataclass
class S390dbfCapture:
    """APCB updates per VM, in file order."""

    path: str
    updates: list[ApcbUpdate] = field(default_factory=list)
    other_lines: int = 0

    def host_operations(self) -> list[dict[str, Any]]:
        """The updates as host operations: ``attach`` (a VM's first set), ``assign`` /
        ``unassign`` (domains or adapters added / removed), ``update`` (other change),
        ``detach`` (clear); ``at_ns`` relative to the first update."""
        if not self.updates:
            return []
        t0 = min(u.t_ns for u in self.updates)
        prev: dict[str, ApcbUpdate] = {}
        out: list[dict[str, Any]] = []
        for u in self.updates:
            p = prev.get(u.vm)
            if u.kind == "clear":
                kind = "detach"
            elif p is None or p.kind == "clear":
                kind = "attach"
            else:
                old = set(p.adapters) | {1000 + d for d in p.domains}
                new = set(u.adapters) | {1000 + d for d in u.domains}
                kind = "assign" if new > old else "unassign" if new < old else "update"
            prev[u.vm] = u
            out.append({"at_ns": u.t_ns - t0, "vm": u.vm, "kind": kind, "line": u.line})
        return out


def scenario_events(
    cap: S390dbfCapture, guest_of: dict[str, str], kinds: tuple[str, ...] = ("attach", "detach")
) -> list[dict[str, object]]:
    """The updates of :meth:`S390dbfCapture.host_operations` as scenario ``[[events]]`` tables
    (``at_ms``, ``kind``, ``guest``), for VMs named in ``guest_of`` (``kvm-<pid>`` ->
    ``"group[index]"``) and the ``kinds`` a scenario event reproduces without more detail
    (``assign``/``unassign`` also need the domains, which the masks give but the guest's mdev
    does not: add them by hand)."""
    out = []
    for op in cap.host_operations():
        vm, kind = str(op["vm"]), str(op["kind"])
        if vm in guest_of and kind in kinds:
            out.append({"at_ms": int(op["at_ns"]) / 1e6, "kind": kind, "guest": guest_of[vm]})
    return out


def read_s390dbf(path: str | Path) -> S390dbfCapture:
    """Parse s390dbf sprintf text and collect its ``SET CRYCB`` / ``CLR CRYCB`` updates."""
    name = str(path)
    m0 = _VM_RE.search(name)
    vm = m0.group(1) if m0 else Path(name).name
    out = S390dbfCapture(name)
    open_: dict[str, ApcbUpdate] = {}
    for no, line in numbered(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        f = _FILE_RE.match(line.strip())
        if f:
            mv = _VM_RE.search(f.group("file"))
            vm = mv.group(1) if mv else f.group("file")
            continue
        m = _DBF_RE.match(line)
        if m is None:
            raise CaptureError(
                name,
                no,
                "expected an s390dbf sprintf line (`AREA SEC:USEC LEVEL - CPU CALLER  TEXT`), "
                f"got {line.strip()[:80]!r}",
            )
        text = m.group("text")
        t = int(m.group("sec")) * 1_000_000_000 + int(m.group("usec")) * 1000
        if text.startswith("CLR CRYCB"):
            open_.pop(vm, None)
            out.updates.append(ApcbUpdate(vm, t, "clear", line=no))
            continue
        if not text.startswith("SET CRYCB"):
            out.other_lines += 1
            continue
        f01 = _FMT01_RE.match(text)
        if f01:
            open_.pop(vm, None)
            out.updates.append(
                ApcbUpdate(
                    vm,
                    t,
                    "set",
                    _bits([int(f01.group("apm"), 16)], 64),
                    _bits([int(f01.group("aqm"), 16)], 16),
                    _bits([int(f01.group("adm"), 16)], 16),
                    no,
                )
            )
            continue
        mm = _MASK_RE.match(text)
        if mm is None:
            raise CaptureError(name, no, f"expected `SET CRYCB: apm|aqm|adm WORDS`, got {text!r}")
        bits = _bits([int(w, 16) for w in mm.group(2).split()], 64)
        which = mm.group("which")
        if which == "apm":
            u = open_[vm] = ApcbUpdate(vm, t, "set", adapters=bits, line=no)
            out.updates.append(u)
        elif vm in open_:
            if which == "aqm":
                open_[vm].domains = bits
            else:
                open_[vm].control_domains = bits
                del open_[vm]
        else:
            raise CaptureError(name, no, f"expected the `SET CRYCB: apm` line before {which}")
    return out


def _detect(lines: list[str]) -> bool:
    return any(_DBF_RE.match(x) and "CRYCB" in x for x in lines)


FORMAT = register(CaptureFormat("s390dbf", "s390dbf SET CRYCB lines", _detect, read_s390dbf))
