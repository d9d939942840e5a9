"""Kernel trace export: :class:`TraceWriter` (behind ``hostsim run --trace-out FILE``) writes
simulated requests as kvm-s390 tracepoint text, ``trace-cmd report`` or ``perf script`` style.

For every simulated request, in global timestamp order:

* ``kvm_s390_sie_exit`` (intercept code 4, or 104 ``(0x68)`` for a protected guest, ``pv =
  true``: ICPT_PV_INSTR, which ``sie_intercept_code`` does not name) and
  ``kvm_s390_intercept_instruction`` (``b2af000000000000``) at ``t_exit``;
* a program check: ``kvm_s390_inject_vcpu`` (type ``fffe0001``, ``parm`` = program code) at
  ``t_decode``;
* a userspace exit: ``kvm_userspace_exit`` (``KVM_EXIT_S390_SIEIC (13)``) at ``t_decode``, then
  QEMU's operation exception (``kvm_s390_inject_vcpu ... parm:1``) half-way to ``t_resume``;
* ``kvm_s390_sie_enter`` at ``t_resume``; answered in the kernel, its PSW shows the new
  condition code.

The PSW is shown as a real instruction intercept shows it (host-operations.md section 7): its
address already points past the 4-byte PQAP at ``sie_exit`` (KVM rewinds it only to retry), so
an answered PQAP shows the same address at exit and entry; so do the other paths (the program
new PSW that a delivered program interruption loads is the guest's and not modelled).

Thread ``tid = 10000 + global vCPU index``, comm ``CPU <vCPU id in its guest>/KVM``, host CPU
column ``global vCPU index % 8``, PSW address a fixed ``0x9a1c2e``. The file starts with two
``#`` lines; the second declares the thread map, so importing it back
(:func:`workloads.trace_read.read_trace`) is exact. Timestamps are printed with 9 decimals: real
``trace-cmd`` and ``perf`` print 6 (microseconds) by default, and the reader accepts both, but
only nanoseconds give an exact round trip.

Events that share a timestamp are written in (vCPU, request, event) order; the writer's ``perf``
lines name the systems of ``kernel-pqap.md`` section 8 (``kvm:``, and ``kvm-s390:`` for
``kvm_s390_inject_vcpu``); the reader keys on the event name only.
"""

from __future__ import annotations

from typing import Any, TextIO

import numpy as np

from hostsim import arch
from hostsim.records import Path as RecPath
from hostsim.scenario_types import Scenario
from hostsim.topology import topology
from workloads.trace_format import (
    EV_INJECT,
    EV_INTERCEPT,
    EV_SIE_ENTER,
    EV_SIE_EXIT,
    EV_USER_EXIT,
    FORMATS,
    local_ids,
)

TID_BASE = 10000  # TraceWriter: tid = TID_BASE + global vCPU index
HOST_CPUS = 8  # TraceWriter: host CPU column = global vCPU index % HOST_CPUS
PQAP_ADDR = 0x00000000009A1C2A  # TraceWriter: where the (invented) PQAP instruction is
PQAP_LEN = 4  # RRE
PSW_ADDR = PQAP_ADDR + PQAP_LEN  # the PSW address traced: past the PQAP, at exit and entry
EXIT_TEXT = {  # the sie_exit fields: an instruction intercept, or a PV guest's
    False: f"exit sie icptcode {arch.SIE_ICPT_INSTRUCTION} (Instruction)",
    True: f"exit sie icptcode {arch.SIE_ICPT_PV_INSTRUCTION} (0x{arch.SIE_ICPT_PV_INSTRUCTION:x})",
}
_SYSTEM = {  # kernel-pqap.md section 8
    EV_SIE_EXIT: "kvm",
    EV_INTERCEPT: "kvm",
    EV_INJECT: "kvm-s390",
    EV_USER_EXIT: "kvm",
    EV_SIE_ENTER: "kvm",
}
_HEADER_MAP = "# hostsim thread map: tid = {base} + global vCPU index; host CPU = vCPU % {cpus}"

_EV_DTYPE = np.dtype(
    [
        ("t", np.int64),
        ("vcpu", np.int32),
        ("t_issue", np.int64),  # tie-break: request order within a vCPU
        ("e", np.int8),  # event index within the request
        ("typ", np.int8),  # 0 sie_exit, 1 intercept, 2 inject, 3 userspace exit, 4 sie_enter
        ("psw", np.uint64),
        ("addr", np.uint64),
        ("parm", np.int64),
    ]
)
_T_EXIT, _T_ICPT, _T_INJECT, _T_UEXIT, _T_ENTER = range(5)
_TYPE_EVENT = (EV_SIE_EXIT, EV_INTERCEPT, EV_INJECT, EV_USER_EXIT, EV_SIE_ENTER)


class TraceWriter:
    """Writes simulated requests as kvm-s390 tracepoint text (``trace-cmd`` or ``perf``).

    Call :meth:`add` with record chunks in canonical order (``t_issue`` never decreasing across
    calls), then :meth:`close`. Events are merged across requests and written in global time
    order; an event is written once no record still to come can precede it (a watermark: every
    event of a request is at or after its ``t_issue``). ``out`` is not closed.
    """

    def __init__(self, out: TextIO, scenario: Scenario, fmt: str = "trace-cmd") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown trace format {fmt!r}; expected one of {list(FORMATS)}")
        self.out = out
        self.fmt = fmt
        self.lines = 0
        self._pending = np.zeros(0, _EV_DTYPE)
        self._watermark = -(2**62)
        self._closed = False
        local = local_ids(scenario).tolist()
        self._local = local
        groups = topology(scenario).vcpu_group.tolist()
        self._exit = [EXIT_TEXT[bool(scenario.guests[g].pv)] for g in groups]
        self._heads: list[str] = []
        for v, lid in enumerate(local):
            comm, tid, cpu = f"CPU {lid}/KVM", TID_BASE + v, v % HOST_CPUS
            if fmt == "trace-cmd":
                self._heads.append(f"{comm:>16}-{tid:<5} [{cpu:03d}] ")
            else:
                self._heads.append(f"{comm:>16} {tid:>6} [{cpu:03d}] ")
        if fmt == "trace-cmd":
            self._names = tuple(f"{n + ':':<21} " for n in _TYPE_EVENT)
        else:
            self._names = tuple(f"{_SYSTEM[n]}:{n}: " for n in _TYPE_EVENT)
        out.write(
            f"# hostsim trace-out ({fmt}): simulated kvm-s390 tracepoints, ns timestamps\n"
            + _HEADER_MAP.format(base=TID_BASE, cpus=HOST_CPUS)
            + "\n"
        )
        self.lines += 2

    def add(self, records: np.ndarray) -> None:
        """Queue a chunk of :data:`~hostsim.records.RECORD_DTYPE` rows and write what is final."""
        if self._closed:
            raise ValueError("TraceWriter.add() after close()")
        if len(records) == 0:
            return
        ti = records["t_issue"]
        if int(ti[0]) < self._watermark or np.any(ti[1:] < ti[:-1]):
            raise ValueError("records must come in canonical order (t_issue never decreasing)")
        events = np.concatenate([self._pending, _events_of(records)])
        events = events[np.lexsort((events["e"], events["t_issue"], events["vcpu"], events["t"]))]
        self._watermark = int(ti[-1])
        cut = int(np.searchsorted(events["t"], self._watermark, side="left"))
        self._write(events[:cut])
        self._pending = events[cut:].copy()

    def close(self) -> None:
        """Write every event still held back. Idempotent; does not close ``out``."""
        if not self._closed:
            self._write(self._pending)
            self._pending = self._pending[:0]
            self._closed = True

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, ev: np.ndarray) -> None:
        if len(ev) == 0:
            return
        heads, names, local, exits = self._heads, self._names, self._local, self._exit
        out: list[str] = []
        for t, v, typ, psw, addr, parm in zip(
            ev["t"].tolist(),
            ev["vcpu"].tolist(),
            ev["typ"].tolist(),
            ev["psw"].tolist(),
            ev["addr"].tolist(),
            ev["parm"].tolist(),
            strict=True,
        ):
            lid = local[v]
            if typ == _T_EXIT:
                body = f"{lid:02d}[{psw:016x}-{addr:016x}]: {exits[v]}"
            elif typ == _T_ICPT:
                body = (
                    f"{lid:02d}[{psw:016x}-{addr:016x}]: "
                    "intercepted instruction b2af000000000000 (0xb2af)"
                )
            elif typ == _T_INJECT:
                body = (
                    f"inject (vcpu {lid}): type:fffe0001 (program interrupt) "
                    f"parm:{parm & 0xFFFFFFFF:x} parm64:0"
                )
            elif typ == _T_UEXIT:
                body = "reason KVM_EXIT_S390_SIEIC (13)"
            else:
                body = f"{lid:02d}[{psw:016x}-{addr:016x}]: entering sie flags 0"
            sec, ns = divmod(t, 1_000_000_000)
            out.append(f"{heads[v]}{sec:5d}.{ns:09d}: {names[typ]}{body}\n")
        self.out.write("".join(out))
        self.lines += len(out)


def _events_of(rec: np.ndarray) -> np.ndarray:
    """The tracepoint events of a chunk of records (unsorted)."""
    path = rec["path"]
    us = path == RecPath.USERSPACE_EXIT
    pc = path == RecPath.PROGRAM_CHECK
    kern = ~(us | pc)
    cc = rec["cc"]
    answered = kern & (cc >= 0)
    psw = rec["psw_mask"].astype(np.uint64)
    cc_bits = np.where(answered, cc, 0).astype(np.uint64) << np.uint64(arch.PSW_CC_SHIFT)
    psw_after = np.where(answered, (psw & np.uint64(arch.MASK64 ^ arch.PSW_CC_MASK)) | cc_bits, psw)
    addr = np.full(len(rec), PSW_ADDR, np.uint64)
    parts = []

    def part(mask: np.ndarray | None, t: np.ndarray, e: int, typ: int, **kw: Any) -> None:
        sel = slice(None) if mask is None else mask
        n = len(rec) if mask is None else int(mask.sum())
        a = np.zeros(n, _EV_DTYPE)
        a["t"] = t[sel]
        a["vcpu"] = rec["vcpu"][sel]
        a["t_issue"] = rec["t_issue"][sel]
        a["e"] = e
        a["typ"] = typ
        a["psw"] = kw.get("psw", psw)[sel]
        a["addr"] = kw.get("addr", addr)[sel]
        if "parm" in kw:
            a["parm"] = kw["parm"][sel]
        parts.append(a)

    t_exit, t_decode, t_resume = rec["t_exit"], rec["t_decode"], rec["t_resume"]
    part(None, t_exit, 0, _T_EXIT)
    part(None, t_exit, 1, _T_ICPT)
    part(pc, t_decode, 2, _T_INJECT, parm=rec["pgm_code"].astype(np.int64))
    part(us, t_decode, 2, _T_UEXIT)
    mid = t_decode + (t_resume - t_decode) // 2
    part(us, mid, 3, _T_INJECT, parm=np.full(len(rec), arch.PgmCode.OPERATION, np.int64))
    part(None, t_resume, 4, _T_ENTER, psw=psw_after)
    return np.concatenate(parts)


def write_trace(
    out: TextIO, scenario: Scenario, records: np.ndarray, fmt: str = "trace-cmd"
) -> int:
    """Write ``records`` (canonical order) as a whole trace; returns the number of lines."""
    w = TraceWriter(out, scenario, fmt)
    w.add(records)
    w.close()
    return w.lines
