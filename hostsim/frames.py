"""A run's tables as pandas DataFrames with named categorical columns; times in ns.

The numpy structured arrays of :mod:`hostsim.run` (:data:`~hostsim.records.RECORD_DTYPE` and the
others) hold codes; here every coded column becomes a :class:`pandas.Categorical` whose categories
are the names, in code order (so ``df.groupby("path", observed=True)`` lists the paths in the
order of :class:`hostsim.records.Path`). Times stay integer nanoseconds since the start of the
run, ``-1`` where a request did not pass a stage (as in the arrays and the Parquet files).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hostsim.records import PATH_NAMES
from hostsim.rules import Kind, all_rule_ids
from hostsim.scenario_types import HostEventKind
from hostsim.variants import VARIANTS

KIND_NAMES: tuple[str, ...] = tuple(k.name.lower() for k in Kind)
HOST_EVENT_KIND_NAMES: tuple[str, ...] = tuple(k.name.lower() for k in HostEventKind)
#: ``mode`` of a lock section (:data:`hostsim.program.LOCK_DTYPE`): 0 mutex, 2 rwsem write.
LOCK_MODE_NAMES: dict[int, str] = {0: "mutex", 1: "rwsem_read", 2: "rwsem_write"}


def categorical(codes: np.ndarray, names: Sequence[str]) -> pd.Series:
    """Integer codes as a categorical Series of ``names`` (a code outside them: missing)."""
    c = np.asarray(codes).astype(np.int64)
    c = np.where((c >= 0) & (c < len(names)), c, -1)
    return pd.Series(pd.Categorical.from_codes(c, categories=pd.Index(list(names))))


def _frame(a: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({name: a[name] for name in a.dtype.names or ()})


def records_frame(
    rec: np.ndarray,
    *,
    variant: str | None = None,
    groups: Sequence[str] = (),
    start_ns: int = 0,
) -> pd.DataFrame:
    """Request records as a DataFrame: ``path``, ``kind``, ``rule`` (and ``variant``, and
    ``group`` from ``groups``, the group name of each global guest index) categorical;
    ``latency_ns`` (issue to resume, -1 if not finished) and ``measured`` (issued at or after
    ``start_ns``, the measurement window's start, and finished) added."""
    df = _frame(rec)
    df["path"] = categorical(rec["path"], PATH_NAMES)
    df["kind"] = categorical(rec["kind"], KIND_NAMES)
    df["rule"] = categorical(rec["rule"], all_rule_ids())
    if groups:
        names = list(dict.fromkeys(groups))
        of_guest = np.array([names.index(g) for g in groups], dtype=np.int64)
        g = np.asarray(rec["guest"], dtype=np.int64)
        ok = (g >= 0) & (g < len(of_guest))
        codes = np.where(ok, of_guest[np.where(ok, g, 0)], -1)
        df.insert(2, "group", categorical(codes, names))
    if variant is not None:
        names = list(VARIANTS)
        df.insert(0, "variant", pd.Series(pd.Categorical([variant] * len(df), categories=names)))
    done = rec["t_resume"] >= 0
    df["latency_ns"] = np.where(done, rec["t_resume"] - rec["t_issue"], -1)
    df["measured"] = done & (rec["t_issue"] >= start_ns)
    return df


def host_events_frame(ev: np.ndarray, labels: Sequence[str] = ()) -> pd.DataFrame:
    """Host events as a DataFrame, ``kind`` categorical by :class:`HostEventKind` name (and
    ``label``, each event's label in the scenario, when ``labels`` are given)."""
    df = _frame(ev)
    df["kind"] = categorical(ev["kind"], HOST_EVENT_KIND_NAMES)
    if labels:
        df.insert(2, "label", [labels[int(i)] for i in ev["event"]])
    return df


def locks_frame(
    locks: np.ndarray, lock_labels: Sequence[str], owners: Sequence[str] = ()
) -> pd.DataFrame:
    """Lock sections as a DataFrame: ``lock`` categorical by lock instance name, ``mode`` by
    name, ``owner_name`` (from ``owners``) added; ``wait_ns`` and ``hold_ns`` added."""
    df = _frame(locks)
    df["lock"] = categorical(locks["lock"], lock_labels)
    modes = [LOCK_MODE_NAMES.get(i, str(i)) for i in range(max(LOCK_MODE_NAMES) + 1)]
    df["mode"] = categorical(locks["mode"], modes)
    if owners:
        df.insert(1, "owner_name", categorical(locks["owner"], owners))
    granted = locks["t_grant"] >= 0
    df["wait_ns"] = np.where(granted, locks["t_grant"] - locks["t_req"], -1)
    df["hold_ns"] = np.where(granted & (locks["t_rel"] >= 0), locks["t_rel"] - locks["t_grant"], -1)
    return df


def table_frame(
    cols: dict[str, list[object]], categorical_cols: Sequence[str] = ()
) -> pd.DataFrame:
    """A table given as columns (a sweep or compare table) as a DataFrame; the named string
    columns become categoricals in their order of first appearance."""
    df = pd.DataFrame(cols)
    for c in categorical_cols:
        if c in df.columns:
            df[c] = pd.Categorical(df[c], categories=list(dict.fromkeys(df[c])))
    return df


def _empty_locks() -> np.ndarray:
    from hostsim.program import LOCK_DTYPE

    return np.zeros(0, LOCK_DTYPE)


#: An empty lock table (a run that kept none).
LOCK_DTYPE_EMPTY = _empty_locks()
