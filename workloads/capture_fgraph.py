"""function_graph durations: the ftrace ``trace`` file of the ``function_graph`` tracer (with or
without ``funcgraph-abstime`` / ``funcgraph-proc``) or ``trace-cmd report`` of
``trace-cmd record -p function_graph``.

Line shapes (``kernel/trace/trace_functions_graph.c``)::

     1000.100000 |   2)  qemu-sy-5000  |               |  vfio_ap_mdev_ioctl [vfio_ap]() {
     1000.125300 |   2)  qemu-sy-5000  | * 25300.123 us |  }
      2)   5.123 us    |  vfio_ap_irq_enable [vfio_ap]();
     CPU 0/KVM-4321  [003]  1000.200001: funcgraph_entry:        5.123 us   |  vfio_ap_irq_enable();

A leaf (``func();``) carries its duration; a ``func() {`` is closed by the next ``}`` of the same
task (with ``funcgraph-proc`` or trace-cmd) or CPU, which carries it. The start time is the
entry's timestamp, or the closing line's minus the duration; without timestamps it is None.
Context-switch, irq and buffer marker lines are skipped; any other line is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from workloads.capture_base import CaptureError, CaptureFormat, numbered, register, ts_ns

#: The lock holders of host-operations.md section 7, and what hostsim models them as.
HOLDERS = (
    "vfio_ap_irq_enable",
    "vfio_ap_irq_disable",
    "vfio_ap_mdev_reset_queues",
    "apq_reset_check",
    "vfio_ap_mdev_set_kvm",
    "vfio_ap_mdev_unset_kvm",
    "vfio_ap_mdev_ioctl",
)

_TAIL_RE = re.compile(
    r"^(?P<pre>.*?)(?:(?P<mark>[+!#*@$])\s*)?(?:(?P<dur>\d+(?:\.\d+)?)\s*us)?\s*\|\s"
    r"(?P<indent>\s*)(?P<body>(?P<func>[\w.$]+)(?:\s+\[(?P<mod>[\w-]+)\])?\(\)\s*(?P<kind>;|\{)"
    r"|\}(?:\s*/\*\s*(?P<tail>.*?)\s*\*/)?)\s*$"
)
_TC_PRE_RE = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S{1,6}\s+)?"
    r"(?P<sec>\d+)\.(?P<frac>\d{1,9}):\s+funcgraph_(?:entry|exit):\s*$"
)
_RAW_PRE_RE = re.compile(
    r"^\s*(?:(?P<sec>\d+)\.(?P<frac>\d{1,9})\s*\|\s*)?(?P<cpu>\d+)\)\s*"
    r"(?:(?P<task>\S.*?)\s*\|)?\s*$"
)
_SKIP_RE = re.compile(
    r"^\s*(?:#.*|-{5,}.*|.*=>.*|.*#{5}.*|.*={5,}>.*|.*<={5,}.*|cpus=\d+|version\s*=.*|)$"
)
_SUFFIX_RE = re.compile(r"\.(?:isra|constprop|part|cold|llvm)\.\d+.*$")


@dataclass(frozen=True)
class FuncCall:
    """One completed call: function, task, CPU, start (ns, or None), duration (ns), depth."""

    func: str
    module: str
    task: str
    cpu: int
    t_start: int | None
    dur_ns: int
    depth: int
    parent: str
    line: int

    @property
    def t_end(self) -> int | None:
        return None if self.t_start is None else self.t_start + self.dur_ns


@dataclass
class FuncGraph:
    """Completed function_graph calls (in the order they completed)."""

    path: str
    calls: list[FuncCall] = field(default_factory=list)
    unclosed: int = 0

    def durations(self, func: str) -> list[int]:
        """Durations (ns) of every completed call of ``func``."""
        return [c.dur_ns for c in self.calls if c.func == func]


def _name(func: str) -> str:
    return _SUFFIX_RE.sub("", func)


def read_function_graph(path: str | Path) -> FuncGraph:
    """Parse function_graph text (raw ftrace or trace-cmd report)."""
    name = str(path)
    out = FuncGraph(name)
    stacks: dict[str, list[tuple[str, str, int | None, int, int]]] = {}
    for no, line in numbered(path):
        m = _TAIL_RE.match(line)
        if m is None:
            if _SKIP_RE.match(line):
                continue
            raise CaptureError(
                name,
                no,
                "expected a function_graph line (`DURATION |  func();`, `func() {` or `}`), "
                f"got {line.strip()[:80]!r}",
            )
        pre = m.group("pre")
        p = _TC_PRE_RE.match(pre) or _RAW_PRE_RE.match(pre)
        if p is None:
            raise CaptureError(name, no, f"expected a CPU or task prefix, got {pre.strip()[:60]!r}")
        gd = p.groupdict()
        t = ts_ns(gd["sec"], gd["frac"]) if gd.get("sec") else None
        cpu = int(gd["cpu"])
        if gd.get("pid"):
            task = f"{gd['comm'].strip()}-{gd['pid']}"
        else:
            task = (gd.get("task") or "").strip()
        key = task or f"cpu{cpu}"
        stack = stacks.setdefault(key, [])
        dur = None if m.group("dur") is None else round(float(m.group("dur")) * 1000)
        if m.group("func"):
            func = _name(m.group("func"))
            if m.group("kind") == ";":
                if dur is None:
                    raise CaptureError(name, no, f"expected a duration for the leaf {func}()")
                parent = stack[-1][0] if stack else ""
                out.calls.append(
                    FuncCall(func, m.group("mod") or "", task, cpu, t, dur, len(stack), parent, no)
                )
            else:
                stack.append((func, m.group("mod") or "", t, cpu, no))
            continue
        if dur is None:
            raise CaptureError(name, no, "expected a duration on a closing `}`")
        if not stack:
            out.unclosed += 1  # its entry was before the capture started
            continue
        func, mod, t0, cpu0, _ = stack.pop()
        tail = m.group("tail")
        if tail and _name(tail.split()[0]) != func:
            raise CaptureError(name, no, f"expected the close of {func}(), got one of {tail}")
        start = t0 if t0 is not None else (None if t is None else t - dur)
        parent = stack[-1][0] if stack else ""
        out.calls.append(FuncCall(func, mod, task, cpu0, start, dur, len(stack), parent, no))
    out.unclosed += sum(len(s) for s in stacks.values())
    return out


def _detect(lines: list[str]) -> bool:
    if any(x.startswith("# tracer: function_graph") for x in lines):
        return True
    return any("funcgraph_entry:" in x or "funcgraph_exit:" in x for x in lines)


FORMAT = register(
    CaptureFormat("function-graph", "ftrace function_graph text", _detect, read_function_graph)
)
