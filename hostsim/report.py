"""Human output: the end-of-run report and a progress bar.

The report opens with a ``perf kvm stat report`` table (:mod:`hostsim.report_perf`) or, with
``style="hostsim"``, hostsim's own percentile table; the lock, span and throughput sections
follow either.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from hostsim.records import PATH_NAMES
from hostsim.report_perf import PERF_STYLES, format_perf

_COLUMNS = ("Path", "Samples", "Samples%", "Min(us)", "Avg(us)", "p50(us)", "p99(us)",
            "p99.9(us)", "Max(us)")  # fmt: skip


def _us(ns: float) -> str:
    return f"{ns / 1000:.2f}"


def _pct(lat: Mapping[str, Any], p: str) -> float:
    return float(lat["percentile"].get(p, 0))


def _row(name: str, n: int, total: int, lat: Mapping[str, Any]) -> list[str]:
    share = 100.0 * n / total if total else 0.0
    return [
        name,
        str(n),
        f"{share:.2f}%",
        _us(lat["min"]),
        _us(lat["mean"]),
        _us(_pct(lat, "50.000000")),
        _us(_pct(lat, "99.000000")),
        _us(_pct(lat, "99.900000")),
        _us(lat["max"]),
    ]


def _table(rows: list[list[str]], total_row: list[str]) -> list[str]:
    widths = [
        max(len(r[i]) for r in [list(_COLUMNS), *rows, total_row]) for i in range(len(_COLUMNS))
    ]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))

    return [line(_COLUMNS), "", *(line(r) for r in rows), "", line(total_row)]


def _holder(by: Mapping[str, Any] | None) -> str:
    if not by:
        return "-"
    if by.get("type") == "vcpu":
        return f"vcpu {by['vcpu']} (guest {by['guest']}, request {by['seq']}, {by['path']})"
    return f"host event {by.get('event')} (kind {by.get('kind')}, guest {by.get('guest')})"


def _dist(lat: Mapping[str, Any]) -> str:
    if not lat["N"]:
        return "no samples"
    return (
        f"p50 {_us(_pct(lat, '50.000000'))}  p99 {_us(_pct(lat, '99.000000'))}  "
        f"p99.9 {_us(_pct(lat, '99.900000'))}  max {_us(lat['max'])}  (N={lat['N']})"
    )


def _hostsim_table(summary: Mapping[str, Any]) -> list[str]:
    """hostsim's own table: one row per path with percentiles, and a Total row."""
    paths = summary["paths"]
    total = summary["all"]["N"]
    names = [n for n in PATH_NAMES if paths.get(n, {}).get("N")]
    names += sorted(n for n in paths if n not in PATH_NAMES and paths[n].get("N"))
    rows = [_row(n, paths[n]["N"], total, paths[n]["lat_ns"]) for n in names]
    total_row = _row("Total", total, total, summary["all"]["lat_ns"])
    return ["Analyze events for all VMs, all VCPUs:", "", *_table(rows, total_row)]


def format_report(summary: Mapping[str, Any], style: str = "perf") -> str:
    """The end-of-run report of a :meth:`hostsim.summary.RunStats.summary` dict, as text.

    ``style`` is one of :data:`hostsim.report_perf.PERF_STYLES`: ``perf`` (perf's table, a row
    per path), ``perf-unknown`` (perf's table with the single UNKNOWN row real s390 perf shows)
    or ``hostsim`` (hostsim's percentile table).
    """
    if style not in PERF_STYLES:
        raise ValueError(f"unknown report style {style!r}: expected one of {PERF_STYLES}")
    head = _hostsim_table(summary) if style == "hostsim" else format_perf(summary, style)

    window = summary.get("window", {})
    counts = summary.get("counts", {})
    duration_s = window.get("duration_ns", 0) / 1e9
    out = [*head, ""]
    if counts.get("warmup"):
        out.append(
            f"Warm-up: {counts['warmup']} requests issued before "
            f"{window.get('start_ns', 0) / 1e9:.6f} s excluded"
        )
    if counts.get("incomplete"):
        out.append(f"Incomplete: {counts['incomplete']} requests had not resumed at the end")

    delay = summary.get("issue_delay", {}).get("lat_ns", {})
    if delay.get("max", 0) > 0:
        out.append(
            f"Issue delay (open-loop arrival waiting for its own stalled vCPU, us): {_dist(delay)}"
        )
    span = summary.get("span", {})
    if span.get("last_resume_ns", -1) >= 0:
        first, last = span["first_issue_ns"] / 1e9, span["last_resume_ns"] / 1e9
        out.append(
            f"Span: first issue {first:.6f} s, last resume {last:.6f} s "
            f"(workload done in {last - first:.6f} s)"
        )
    mutex = summary["mutex"]
    per_mdev = summary.get("hostsim", {}).get("lock_model") == "per-mdev"
    out += [
        "",
        "Per-mdev vfio_ap mutexes (one per guest; utilisation is their busy time summed, so it "
        "can exceed 100 %):"
        if per_mdev
        else "Global vfio_ap mutex:",
        f"  Utilisation:   {100.0 * mutex['utilisation']:.2f}%  "
        f"(held {mutex.get('busy_ns', 0) / 1e9:.6f} s of {duration_s:.6f} s)",
        f"  Wait (us):     {_dist(mutex['wait_ns'])}",
        f"  Hold (us):     {_dist(mutex['hold_ns'])}",
        f"  Longest hold:  {_us(mutex['longest_hold_ns'])} us"
        f" by {_holder(mutex['longest_hold_by'])}",
        *_host_locks(summary),
        *_starts(summary),
        "",
        f"Throughput: {summary['throughput_per_s']:.1f} requests per simulated second "
        f"({counts.get('completed_in_window', 0)} completed in {duration_s:.6f} s)",
    ]
    return "\n".join(out) + "\n"


def _host_locks(summary: Mapping[str, Any]) -> list[str]:
    """The host programs' lock sections and the guests' blocked vCPUs (hostsim.lock_stats)."""
    locks, blocked = summary.get("locks") or {}, summary.get("blocked") or {}
    out: list[str] = []
    if locks:
        out += ["", "Host operations' locks (sections; busiest instance; wait p99; longest hold):"]
        from hostsim.locks import LOCKS

        rank = {spec.name: i for i, spec in enumerate(LOCKS)}  # the kernel's lock order
        for name in sorted(locks, key=lambda n: (rank.get(n, len(rank)), n)):
            v = locks[name]
            w, by = v["wait_ns"], v["longest_hold_by"]
            out.append(
                f"  {name:<16} {v['sections']:>6}  {100.0 * v['utilisation_max']:6.2f}%"
                f"  {_us(w.get('p99', 0))} us  {_us(by['hold_ns'])} us by {by['owner']}"
            )
    if blocked.get("n_guests"):
        longest = max(v["longest_ns"] for v in blocked["guests"].values())
        out += [
            "",
            f"Blocked vCPUs (APCB updates): {blocked['n_guests']} guests, "
            f"{blocked['total_ns'] / 1e6:.3f} ms in all, longest {longest / 1e6:.3f} ms",
        ]
    return out


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f}"


def _starts(summary: Mapping[str, Any]) -> list[str]:
    """Guest starts and reboots: time to ready and what it is made of (hostsim.starts)."""
    st = summary.get("starts") or {}
    if not st.get("n"):
        return []
    ttr = st["time_to_ready_ns"]
    out = [
        "",
        f"Guest starts and reboots: {st['n']}, {st['ready']} with every queue's interrupts on",
    ]
    if ttr.get("N"):
        out.append(
            f"  Time to ready (ms): p50 {_ms(ttr['p50'])}  p99 {_ms(ttr['p99'])}"
            f"  max {_ms(ttr['max'])}  (N={ttr['N']}); storm {st['storm_ns'] / 1e9:.3f} s"
            " from the first event to the last guest ready"
        )
        parts = st["parts_ns"]
        total = sum(parts[p]["mean"] for p in parts) or 1.0
        out.append("  Made of (mean ms, share; p99 ms):")
        for name, label in (
            ("lock_wait", "host waits for its locks"),
            ("host_work", "host open and reset"),
            ("boot", "guest boot to AP probe"),
            ("enable_burst", "guest enable burst"),
        ):
            v = parts[name]
            out.append(
                f"    {label:<26} {_ms(v['mean']):>9}  {100.0 * v['mean'] / total:5.1f}%"
                f"  {_ms(v['p99']):>9}"
            )
    if st["not_ready"]:
        shown = ", ".join(st["not_ready"][:8]) + (" ..." if len(st["not_ready"]) > 8 else "")
        out.append(f"  Not ready at the end (some queue without interrupts: polling): {shown}")
    return out


class Progress:
    """A one-line progress bar on stderr: simulated-time %, requests, requests per wall second.

    Shown only when ``enabled`` and the stream is a terminal, or when ``force`` is true.
    Updates are drawn at most every ``min_interval_s`` of wall time.
    """

    def __init__(
        self,
        total_ns: int,
        enabled: bool = True,
        *,
        force: bool = False,
        stream: TextIO | None = None,
        min_interval_s: float = 0.2,
        width: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled and (force or is_tty)
        self.total_ns = max(int(total_ns), 1)
        self.min_interval_s = min_interval_s
        self.width = width
        self._clock = clock
        self._start = clock()
        self._last_draw: float | None = None
        self._sim_now = 0
        self._requests = 0
        self._last_len = 0

    def update(self, sim_now_ns: int, requests: int | None = None) -> None:
        """Note progress: the simulated time reached and, optionally, requests so far."""
        self._sim_now = int(sim_now_ns)
        if requests is not None:
            self._requests = int(requests)
        if not self.enabled:
            return
        now = self._clock()
        if self._last_draw is not None and now - self._last_draw < self.min_interval_s:
            return
        self._last_draw = now
        self._draw(now)

    def _line(self, now: float) -> str:
        frac = min(max(self._sim_now / self.total_ns, 0.0), 1.0)
        filled = int(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = now - self._start
        rate = self._requests / elapsed if elapsed > 0 else 0.0
        return (
            f"[{bar}] {100 * frac:5.1f}%  sim {self._sim_now / 1e9:.3f}/{self.total_ns / 1e9:.3f} s"
            f"  {self._requests} requests  {rate:,.0f} req/s"
        )

    def _draw(self, now: float) -> None:
        line = self._line(now)
        self.stream.write("\r" + line.ljust(self._last_len))
        self.stream.flush()
        self._last_len = len(line)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if not self.enabled:
            return
        self._draw(self._clock())
        self.stream.write("\n")
        self.stream.flush()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
