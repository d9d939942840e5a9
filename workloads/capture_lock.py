"""Lock captures: ``perf lock contention`` output and raw ``lock:contention_begin`` /
``lock:contention_end`` events (``perf script`` or ``trace-cmd report`` text).

``perf lock contention`` (``tools/perf/builtin-lock.c``) prints one row per caller (default),
per lock (``-l``: address and symbol) or per task (``-t``)::

     contended   total wait     max wait     avg wait         type   caller

            12     41.20 ms     24.90 ms      3.43 ms        mutex   handle_pqap+0x1a4
                           0x3ff80126ad4  handle_pqap+0x1a4 [vfio_ap]      (only with -v/-g)

The raw events (``include/trace/events/lock.h``) are ``contention_begin: %p (flags=%s)`` and
``contention_end: %p (ret=%d)``; a wait is the time from a thread's first ``begin`` on a lock
to its ``end`` (a mutex that spins first and then sleeps logs two ``begin``).

Which lock a wait is on (:func:`lock_name`): a symbol that names it; else the caller, the first
frame of the call chain (``perf record -g``) or the ``caller`` column that is not a locking
primitive, looked up in :data:`CALLER_LOCKS` with the lock type; else, for raw events, a
``# lock ADDR NAME`` comment line in the file; else ``lock@ADDR`` / ``other``. KVM's and vfio_ap's
functions are both called ``handle_pqap``: the rwsem one is KVM's (``pqap_hook_rwsem``), the
mutex one vfio_ap's (``mdevs_lock``).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workloads.capture_base import (
    CaptureError,
    CaptureFormat,
    duration_ns,
    numbered,
    register,
    ts_ns,
)

#: A vfio_ap host operation's lock helpers take guests_lock, kvm->lock and mdevs_lock in turn.
UPDATE_LOCKS = "vfio_ap update locks (guests_lock, kvm->lock, mdevs_lock)"
#: caller function -> lock, by lock kind ("rwsem" or "mutex"); "*" for either.
CALLER_LOCKS: dict[str, dict[str, str]] = {
    "handle_pqap": {"rwsem": "pqap_hook_rwsem", "mutex": "mdevs_lock"},
    "vfio_ap_mdev_set_kvm": {"rwsem": "pqap_hook_rwsem", "mutex": UPDATE_LOCKS},
    "vfio_ap_mdev_unset_kvm": {"rwsem": "pqap_hook_rwsem", "mutex": UPDATE_LOCKS},
    "get_update_locks_for_kvm": {"mutex": UPDATE_LOCKS},
    "get_update_locks_for_mdev": {"mutex": UPDATE_LOCKS},
    "get_update_locks_by_apqn": {"mutex": UPDATE_LOCKS},
    "vfio_ap_mdev_ioctl": {"mutex": "mdevs_lock"},
    "vfio_ap_mdev_dma_unmap": {"mutex": "mdevs_lock"},
    "vfio_ap_mdev_probe": {"mutex": "mdevs_lock"},
    "vfio_ap_mdev_remove": {"mutex": UPDATE_LOCKS},
    "matrix_show": {"mutex": "mdevs_lock"},
    "guest_matrix_show": {"mutex": "mdevs_lock"},
    "control_domains_show": {"mutex": "mdevs_lock"},
    "ap_config_show": {"mutex": "mdevs_lock"},
    "kvm_arch_crypto_set_masks": {"mutex": "kvm->lock"},
    "kvm_arch_crypto_clear_masks": {"mutex": "kvm->lock"},
}
_PRIMITIVE_RE = re.compile(
    r"^(?:_*mutex_lock|mutex_lock|__mutex|_*down_(?:read|write)|rwsem_|__rwsem|_raw_|"
    r"queued_|__pv_queued|do_raw_|__traceiter|trace_contention|contention_|lock_acquire|"
    r"__lock_text|osq_lock|schedule|__schedule|preempt_schedule)"
)


def _func(frame: str) -> str:
    """``handle_pqap+0x1a4 [vfio_ap]`` -> ``handle_pqap``."""
    return frame.split()[0].split("+")[0] if frame.strip() else ""


def lock_kind(type_or_flags: str) -> str:
    """``rwsem`` or ``mutex`` (or the text itself) from a perf type or raw flags."""
    t = type_or_flags.upper()
    if "MUTEX" in t:
        return "mutex"
    if "RWSEM" in t or "READ" in t or "WRITE" in t:
        return "rwsem"
    return type_or_flags.lower()


def lock_name(kind: str, caller: str = "", symbol: str = "", stack: list[str] | None = None) -> str:
    """The lock a contention is on (see the module docstring); '' if it cannot be named."""
    for known in ("mdevs_lock", "pqap_hook_rwsem", "guests_lock", "ap_perms_mutex"):
        if known in symbol:
            return known
    frames = [f for f in (stack or []) if not _PRIMITIVE_RE.match(_func(f))]
    func = _func(frames[0]) if frames else _func(caller)
    by_kind = CALLER_LOCKS.get(func, {})
    return by_kind.get(kind, by_kind.get("*", ""))


@dataclass
class LockRow:
    """One row of ``perf lock contention``; times in nanoseconds."""

    contended: int
    total_ns: int
    max_ns: int
    avg_ns: int
    key: str  # the row's key columns as printed (type + caller, address + symbol, pid + comm)
    type: str = ""
    caller: str = ""
    symbol: str = ""
    stack: list[str] = field(default_factory=list)
    line: int = 0

    @property
    def lock(self) -> str:
        """The named lock, or '' (:func:`lock_name`)."""
        return lock_name(lock_kind(self.type), self.caller, self.symbol, self.stack)


@dataclass
class LockContention:
    """A ``perf lock contention`` report: its mode (``caller``, ``address``, ``task``), rows."""

    path: str
    mode: str = "caller"
    rows: list[LockRow] = field(default_factory=list)

    def by_lock(self) -> dict[str, list[LockRow]]:
        """Rows grouped by named lock ('' for rows that name none)."""
        out: dict[str, list[LockRow]] = {}
        for r in self.rows:
            out.setdefault(r.lock, []).append(r)
        return out


_D = r"[\d.]+\s*(?:ns|us|ms|s)"
_LC_HEAD_RE = re.compile(r"^\s*contended\s+total wait\s+max wait\s+avg wait\s+(?P<keys>.*?)\s*$")
_LC_ROW_RE = re.compile(
    rf"^\s*(?P<n>\d+)\s+(?P<tot>{_D})\s+(?P<max>{_D})\s+(?P<avg>{_D})\s+(?P<rest>\S.*?)\s*$"
)
_STACK_RE = re.compile(r"^\s+(?:0x)?[0-9a-fA-F]{6,}\s+(?P<frame>\S.*?)\s*$")
_ADDR_SYM_RE = re.compile(r"^(?P<addr>[0-9a-fA-F]{6,})\s+(?P<sym>.*?)\s*(?:\((?P<type>[^)]*)\))?$")


def read_lock_contention(path: str | Path) -> LockContention:
    """Parse ``perf lock contention`` output (any of its three modes, with or without stacks)."""
    name = str(path)
    out = LockContention(name)
    header = debug = False
    for no, line in numbered(path):
        if debug or not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LC_HEAD_RE.match(line)
        if m:
            keys = m.group("keys").split()
            out.mode = "address" if "address" in keys else "task" if "pid" in keys else "caller"
            header = True
            continue
        if "=== output for debug ===" in line:
            debug = True
            continue
        m = _LC_ROW_RE.match(line) if header else None
        if m:
            row = LockRow(
                int(m.group("n")),
                duration_ns(m.group("tot")) or 0,
                duration_ns(m.group("max")) or 0,
                duration_ns(m.group("avg")) or 0,
                m.group("rest"),
                line=no,
            )
            rest = m.group("rest")
            if out.mode == "caller":
                row.type, _, row.caller = rest.partition(" ")
                row.caller = row.caller.strip()
            elif out.mode == "address":
                a = _ADDR_SYM_RE.match(rest)
                if a:
                    row.symbol, row.type = a.group("sym"), a.group("type") or ""
            out.rows.append(row)
            continue
        s = _STACK_RE.match(line) if out.rows else None
        if s:
            out.rows[-1].stack.append(s.group("frame"))
            continue
        what = "a row (contended, total/max/avg wait, keys)" if header else "the header"
        raise CaptureError(
            name, no, f"expected {what} of `perf lock contention`, got {line.strip()[:80]!r}"
        )
    if not header:
        raise CaptureError(
            name, 0, "expected a `perf lock contention` header (`contended   total wait ...`)"
        )
    return out


@dataclass(frozen=True)
class LockWait:
    """One wait from raw events: thread, lock address, begin and end (ns), flags, caller."""

    tid: int
    comm: str
    addr: int
    t_begin: int
    t_end: int
    flags: str
    ret: int
    caller: str
    line: int

    @property
    def wait_ns(self) -> int:
        return self.t_end - self.t_begin


@dataclass
class LockEvents:
    """Waits paired from ``contention_begin``/``contention_end``, and the lock names found."""

    path: str
    waits: list[LockWait] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # from `# lock ADDR NAME` comments
    unpaired: int = 0

    def lock_of(self, w: LockWait) -> str:
        """The lock of a wait: a ``# lock`` comment, the caller, else ``lock@ADDR``."""
        return (
            self.names.get(w.addr)
            or lock_name(lock_kind(w.flags), "", "", [w.caller] if w.caller else [])
            or f"lock@{w.addr:x}"
        )

    def by_lock(self) -> dict[str, list[LockWait]]:
        out: dict[str, list[LockWait]] = {}
        for w in self.waits:
            out.setdefault(self.lock_of(w), []).append(w)
        return out

    def holds(self) -> list[LockHold]:
        """Holds seen through the waiters: when waiter B was already waiting (began) when waiter
        A got the lock (A's ``contention_end``) and B is the next to get it, B got it at A's
        release, so A held it from its end to B's end (exact for a FIFO hand-off; a taker that
        steals the lock in between makes it longer). Only holds with a queued successor are
        seen, and a longer hold is likelier to have one (a length-biased sample)."""
        out = []
        for lock, waits in self.by_lock().items():
            ws = sorted(waits, key=lambda w: (w.t_end, w.line))
            for a, b in itertools.pairwise(ws):
                if b.t_begin < a.t_end and b.tid != a.tid:
                    out.append(LockHold(lock, a.tid, a.caller, a.t_end, b.t_end - a.t_end))
        return out


@dataclass(frozen=True)
class LockHold:
    """A hold inferred from two queued waiters: lock, holder thread and caller, start, length."""

    lock: str
    tid: int
    caller: str
    t_start: int
    hold_ns: int


_EV_RE = re.compile(
    r"^\s*(?P<comm>.+?)[- ]\s*(?:\d+/)?(?P<tid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:\S{1,6}\s+)?(?P<sec>\d+)\.(?P<frac>\d{1,9}):\s+(?:\d+\s+)?(?:lock:)?"
    r"(?P<ev>contention_begin|contention_end):\s*(?P<rest>.*?)\s*$"
)
_ANY_EV_RE = re.compile(r"^\s*.+?[- ]\s*\d+\s+.*\[\d+\]\s+.*\d+\.\d+:\s+\S+:")
_BEGIN_RE = re.compile(r"^(?:0x)?(?P<addr>[0-9a-fA-F]+)\s+\(flags=(?P<flags>[A-Z|]*)\)$")
_END_RE = re.compile(r"^(?:0x)?(?P<addr>[0-9a-fA-F]+)\s+\(ret=(?P<ret>-?\d+)\)$")
_NAME_RE = re.compile(r"^#\s*lock\s+(?:0x)?(?P<addr>[0-9a-fA-F]+)\s+(?P<name>\S+)\s*$")
_CHAIN_RE = re.compile(r"^\s+(?P<ip>[0-9a-fA-F]{6,})\s+(?P<sym>\S+)(?:\s+\((?P<dso>.*)\))?\s*$")


def read_lock_events(path: str | Path) -> LockEvents:
    """Pair raw ``contention_begin``/``_end`` events per thread and lock into waits.

    Other events in the file are ignored; a line that is not an event, a call-chain frame, a
    comment or blank, or a contention event whose fields do not parse, is an error."""
    name = str(path)
    out = LockEvents(name)
    open_: dict[tuple[int, int], list[Any]] = {}  # (tid, addr) -> [t, flags, line, chain]
    last_begin: list[Any] | None = None
    for no, line in numbered(path):
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            m = _NAME_RE.match(line.strip())
            if m:
                out.names[int(m.group("addr"), 16)] = m.group("name")
            continue
        m = _EV_RE.match(line)
        if m is None:
            c = _CHAIN_RE.match(line)
            if c:
                sym = c.group("sym")
                if (
                    last_begin is not None
                    and not last_begin[3]
                    and not _PRIMITIVE_RE.match(_func(sym))
                ):
                    last_begin[3] = sym
                continue
            if _ANY_EV_RE.match(line):
                last_begin = None
                continue  # another event
            raise CaptureError(
                name, no, f"expected a perf script or trace-cmd event line, got {line[:80]!r}"
            )
        tid, t, rest = int(m.group("tid")), ts_ns(m.group("sec"), m.group("frac")), m.group("rest")
        if m.group("ev") == "contention_begin":
            f = _BEGIN_RE.match(rest)
            if f is None:
                raise CaptureError(name, no, f"expected `ADDR (flags=...)`, got {rest[:60]!r}")
            key = (tid, int(f.group("addr"), 16))
            if key in open_:
                open_[key][1] += "|" + f.group("flags")
                last_begin = open_[key]
            else:
                last_begin = open_[key] = [t, f.group("flags"), no, "", m.group("comm").strip()]
        else:
            last_begin = None
            f = _END_RE.match(rest)
            if f is None:
                raise CaptureError(name, no, f"expected `ADDR (ret=N)`, got {rest[:60]!r}")
            addr = int(f.group("addr"), 16)
            b = open_.pop((tid, addr), None)
            if b is None:
                out.unpaired += 1
                continue
            if t < b[0]:
                raise CaptureError(name, no, "expected time not to go backwards on the thread")
            flags = "|".join(dict.fromkeys(x for x in b[1].split("|") if x))
            out.waits.append(
                LockWait(tid, b[4], addr, b[0], t, flags, int(f.group("ret")), b[3], b[2])
            )
    out.unpaired += len(open_)
    return out


def _detect_lc(lines: list[str]) -> bool:
    return any(_LC_HEAD_RE.match(x) for x in lines)


def _detect_ev(lines: list[str]) -> bool:
    return any(_EV_RE.match(x) for x in lines)


FORMAT_CONTENTION = register(
    CaptureFormat(
        "perf-lock-contention", "perf lock contention table", _detect_lc, read_lock_contention
    )
)
FORMAT_EVENTS = register(
    CaptureFormat(
        "lock-events",
        "lock:contention_begin/end events (perf script or trace-cmd report)",
        _detect_ev,
        read_lock_events,
    )
)
