"""The result folder of a run, written atomically.

Everything is written into a hidden sibling ``.{name}.tmp-<pid>`` and renamed into place at
:meth:`ResultWriter.close`, so a folder named ``name`` is always complete. A run that fails or is
interrupted keeps what it finished: the folder is renamed to ``name.partial`` with a
``status.json`` saying why. Contents::

    scenario.resolved.toml        the resolved scenario
    records.parquet      one row per request (RECORD_DTYPE columns), a row group per chunk;
                         ``path``, ``kind`` and ``rule`` dictionary-encoded with their names
    host_events.parquet  one row per host event (HOST_EVENT_DTYPE columns; ``kind`` named)
    summary.json         RunStats.summary() as fio JSON (docs/outputs.md), indent 2
    lat_<path>.hgrm      latency percentile distribution per path with samples, in us
    status.json          {"complete": true|false, "reason": ..., row counts, files}

The Parquet files carry no timestamps or random ids: identical input gives identical bytes (for
the same pyarrow version, which is named in the files' ``created_by``).

The coded columns (:data:`NAMED_COLUMNS`) are Arrow dictionary columns whose values are the
names (``hook_enable``, ``program_interrupt``, ``enable.host_aqic`` ...), so pandas, polars or
DuckDB show names, not bare integers. A reader that wants the codes back uses
:func:`column_codes` (files written before the names were added hold the plain integers, and
read the same).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hostsim import __version__
from hostsim.hgrm import write_hgrm
from hostsim.records import HOST_EVENT_DTYPE, PATH_NAMES, RECORD_DTYPE
from hostsim.rules import Kind, all_rule_ids
from hostsim.scenario_types import HostEventKind
from hostsim.summary import RunStats, dumps_summary

RECORDS_FILE = "records.parquet"
HOST_EVENTS_FILE = "host_events.parquet"
SCENARIO_FILE = "scenario.resolved.toml"
SUMMARY_FILE = "summary.json"
STATUS_FILE = "status.json"

_TABLES: dict[str, tuple[np.dtype, str]] = {
    RECORDS_FILE: (RECORD_DTYPE, "records"),
    HOST_EVENTS_FILE: (HOST_EVENT_DTYPE, "host_events"),
}


def _lower_names(enum: type[Kind] | type[HostEventKind]) -> tuple[str, ...]:
    return tuple(m.name.lower() for m in enum)


#: The coded columns of each table written with names: column -> the name of each code.
NAMED_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "records": {"path": PATH_NAMES, "kind": _lower_names(Kind), "rule": all_rule_ids()},
    "host_events": {"kind": _lower_names(HostEventKind)},
}
#: The dictionary index type of a named column (signed, as Arrow readers expect).
_INDEX_TYPES = {"path": pa.int8(), "kind": pa.int8(), "rule": pa.int16()}


def arrow_schema(dtype: np.dtype, table: str) -> pa.Schema:
    """Arrow schema of a structured dtype, with fixed (deterministic) hostsim metadata."""
    named = NAMED_COLUMNS.get(table, {})
    fields = [
        pa.field(
            name,
            pa.dictionary(_INDEX_TYPES[name], pa.string())
            if name in named
            else pa.from_numpy_dtype(dtype[name]),
            nullable=False,
        )
        for name in dtype.names or ()
    ]
    meta = {"hostsim.table": table, "hostsim.time_unit": "ns", "hostsim.version": __version__}
    return pa.schema(fields, metadata=meta)


def to_arrow(chunk: np.ndarray, schema: pa.Schema) -> pa.Table:
    """A structured array as an Arrow table, one column per field (coded columns named)."""
    table = (schema.metadata or {}).get(b"hostsim.table", b"").decode()
    named = NAMED_COLUMNS.get(table, {})
    cols = []
    for name in schema.names:
        v = np.ascontiguousarray(chunk[name])
        if name in named:
            index = pa.array(v.astype(_INDEX_TYPES[name].to_pandas_dtype()))
            cols.append(pa.DictionaryArray.from_arrays(index, pa.array(named[name])))
        else:
            cols.append(pa.array(v))
    return pa.Table.from_arrays(cols, schema=schema)


def column_codes(col: pa.ChunkedArray | pa.Array, names: tuple[str, ...]) -> np.ndarray:
    """The integer codes of a coded column read from Parquet: a dictionary column (whose
    dictionary may hold only the names present) is mapped back through ``names``; a plain
    integer column (an older file) is returned as it is."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    if not pa.types.is_dictionary(col.type):
        return col.to_numpy() if chunks else np.zeros(0, np.int64)
    code = {n: i for i, n in enumerate(names)}
    parts = []
    for c in chunks:
        lut = np.array([code[n] for n in c.dictionary.to_pylist()], dtype=np.int64)
        parts.append(lut[c.indices.to_numpy(zero_copy_only=False)] if len(lut) else lut[:0])
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def read_columns(path: str | Path, table: str, columns: list[str]) -> dict[str, np.ndarray]:
    """Some columns of a Parquet file written by :class:`ResultWriter`, coded columns as
    their integer codes (``table``: ``"records"`` or ``"host_events"``)."""
    t = pq.read_table(path, columns=columns)
    named = NAMED_COLUMNS.get(table, {})
    return {
        c: column_codes(t.column(c), named[c]) if c in named else t.column(c).to_numpy()
        for c in columns
    }


def read_table(path: str | Path, dtype: np.dtype, table: str = "") -> np.ndarray:
    """Read a Parquet file written by :class:`ResultWriter` back into a structured array."""
    names = list(dtype.names or ())
    cols = read_columns(path, table, names)
    out = np.empty(len(cols[names[0]]) if names else 0, dtype)
    for name in names:
        out[name] = cols[name]
    return out


def read_records(folder: str | Path) -> np.ndarray:
    """The ``records.parquet`` of a result folder as a ``RECORD_DTYPE`` array."""
    return read_table(Path(folder) / RECORDS_FILE, RECORD_DTYPE, "records")


def read_host_events(folder: str | Path) -> np.ndarray:
    """The ``host_events.parquet`` of a result folder as a ``HOST_EVENT_DTYPE`` array."""
    return read_table(Path(folder) / HOST_EVENTS_FILE, HOST_EVENT_DTYPE, "host_events")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ResultWriter:
    """Writes one result folder atomically; use as a context manager or call :meth:`close`.

    ``out_dir`` must not exist unless ``overwrite`` is true, in which case the old folder is
    replaced at :meth:`close` (rename aside, rename the new one in, delete the old).
    """

    def __init__(self, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.final = Path(out_dir).absolute()
        self.overwrite = overwrite
        if self.final.exists() and not overwrite:
            raise FileExistsError(
                f"result folder {self.final} already exists: choose another name, remove it, "
                "or pass overwrite=True (--overwrite)"
            )
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.parent / f".{self.final.name}.tmp-{os.getpid()}"
        if self.tmp.exists():  # left by an earlier writer of this very process id
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        self.files: set[str] = set()
        self.rows: dict[str, int] = {RECORDS_FILE: 0, HOST_EVENTS_FILE: 0}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._schemas = {f: arrow_schema(dt, t) for f, (dt, t) in _TABLES.items()}
        self.result: Path | None = None  # where the folder ended up

    # --- content ------------------------------------------------------------------------------
    def write_text(self, name: str, text: str) -> None:
        """Write a text file (UTF-8, ``\\n`` line ends) into the folder."""
        self._check_open()
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"not a plain file name: {name!r}")
        with open(self.tmp / name, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        self.files.add(name)

    def write_scenario(self, text: str) -> None:
        """Save the resolved scenario TOML as ``scenario.resolved.toml``."""
        self.write_text(SCENARIO_FILE, text)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Save the summary as ``summary.json`` (:func:`hostsim.summary.dumps_summary`)."""
        self.write_text(SUMMARY_FILE, dumps_summary(summary))

    def write_hgrm(self, stats: RunStats) -> None:
        """Save ``lat_<path>.hgrm`` for every path with samples (values in us)."""
        self._check_open()
        for name in stats.paths_with_samples():
            file = f"lat_{name}.hgrm"
            write_hgrm(stats.histogram(name), self.tmp / file)
            self.files.add(file)

    def add_records(self, chunk: np.ndarray) -> None:
        """Append a chunk of request records to ``records.parquet`` (one row group)."""
        self._append(RECORDS_FILE, chunk)

    def add_host_events(self, chunk: np.ndarray) -> None:
        """Append a chunk of host-event rows to ``host_events.parquet`` (one row group)."""
        self._append(HOST_EVENTS_FILE, chunk)

    def _append(self, file: str, chunk: np.ndarray) -> None:
        self._check_open()
        dtype = _TABLES[file][0]
        a = np.asarray(chunk)
        if a.dtype != dtype:
            raise TypeError(f"{file}: chunk has dtype {a.dtype}, expected {dtype}")
        a = a.ravel()
        if a.size == 0:
            return
        writer = self._writers.get(file)
        if writer is None:
            writer = self._writers[file] = self._open_parquet(file)
        writer.write_table(to_arrow(a, self._schemas[file]), row_group_size=int(a.size))
        self.rows[file] += int(a.size)

    def _open_parquet(self, file: str) -> pq.ParquetWriter:
        self.files.add(file)
        return pq.ParquetWriter(
            str(self.tmp / file),
            self._schemas[file],
            compression="zstd",
            write_statistics=True,
        )

    # --- lifecycle ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.result is not None:
            raise RuntimeError(f"result folder already closed ({self.result})")

    def _finish_tables(self, create_missing: bool) -> list[str]:
        """Close the Parquet writers; returns the problems met (for status.json)."""
        problems = []
        for file, writer in self._writers.items():
            try:
                writer.close()
            except Exception as e:
                problems.append(f"{file}: {type(e).__name__}: {e}")
        self._writers.clear()
        if create_missing:
            for file in _TABLES:
                if file not in self.files:
                    self._open_parquet(file).close()  # an empty table with the schema
        return problems

    def _write_status(self, complete: bool, reason: str | None, problems: list[str]) -> None:
        status = {
            "complete": complete,
            "reason": reason,
            "problems": problems,
            "rows": {
                "records": self.rows[RECORDS_FILE],
                "host_events": self.rows[HOST_EVENTS_FILE],
            },
            "files": sorted(self.files | {STATUS_FILE}),
        }
        self.write_text(STATUS_FILE, json.dumps(status, sort_keys=True, indent=2) + "\n")

    def _sync(self) -> None:
        for name in self.files:
            _fsync(self.tmp / name)
        _fsync(self.tmp)

    def _move_into(self, dest: Path, replace: bool) -> None:
        """Rename the temporary folder to ``dest``; an existing ``dest`` is replaced if allowed."""
        if dest.exists():
            if not replace:
                raise FileExistsError(f"result folder {dest} appeared while this run was writing")
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.rename(dest, old)
            try:
                os.rename(self.tmp, dest)
            except BaseException:
                os.rename(old, dest)
                raise
            shutil.rmtree(old)
        else:
            os.rename(self.tmp, dest)
        _fsync(dest.parent)
        self.result = dest

    def close(self) -> Path:
        """Finish every file and rename the folder into place; returns its path."""
        self._check_open()
        try:
            problems = self._finish_tables(create_missing=True)
            if problems:
                raise OSError("; ".join(problems))
            self._write_status(True, None, [])
            self._sync()
            self._move_into(self.final, self.overwrite)
        except BaseException as e:
            if self.result is None and self.tmp.exists():
                self.abort(f"closing failed: {type(e).__name__}: {e}")
            raise
        return self.final

    def partial_path(self) -> Path:
        """Where :meth:`abort` puts the folder: ``name.partial`` (``-2``, ``-3`` ... if taken)."""
        base = self.final.with_name(self.final.name + ".partial")
        if self.overwrite or not base.exists():
            return base
        n = 2
        while (cand := base.with_name(f"{base.name}-{n}")).exists():
            n += 1
        return cand

    def abort(self, reason: str) -> Path:
        """Keep what was written as ``name.partial`` with an incomplete ``status.json``."""
        self._check_open()
        problems = self._finish_tables(create_missing=False)
        self._write_status(False, reason, problems)
        dest = self.partial_path()
        self._move_into(dest, replace=self.overwrite)
        return dest

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.result is not None:  # closed or aborted inside the block already
            return
        if exc_type is None:
            self.close()
            return
        reason = (
            "interrupted (KeyboardInterrupt)"
            if exc_type is KeyboardInterrupt
            else (f"{exc_type.__name__}: {exc}")
        )
        try:
            dest = self.abort(reason)
        except Exception as e:  # do not mask the run's own exception
            if exc is not None:
                exc.add_note(f"hostsim: could not save the partial results in {self.tmp}: {e}")
        else:
            if exc is not None:
                exc.add_note(f"hostsim: partial results kept in {dest}")
