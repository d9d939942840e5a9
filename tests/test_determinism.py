"""Same scenario and seed, same bytes: the result folder of ``hostsim run`` is reproducible file for
file, a different seed changes the records, and an interrupted run leaves ``<out>.partial``."""

from __future__ import annotations

import importlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hostsim.cli import main
from hostsim.results import read_host_events, read_records
from hostsim.run import simulate
from hostsim.scenario import load
from hostsim.sink import RecordSink
from tests.helpers import RESULT_FILES as REQUIRED
from tests.helpers import console_script

SCENARIOS = Path(__file__).parent / "scenarios"
PATHS = SCENARIOS / "paths.toml"

# hostsim.run is the API function; the module is reached through sys.modules.
run_module = importlib.import_module("hostsim.run")


def hostsim_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_result_folders(tmp_path: Path) -> None:
    outs = [tmp_path / "one", tmp_path / "two"]
    for out in outs:
        p = hostsim_run(str(PATHS), "--seed", "42", "--out", str(out), "--quiet", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert p.stdout == ""
    a, b = files(outs[0]), files(outs[1])
    assert set(a) >= REQUIRED
    assert any(name.endswith(".hgrm") for name in a)
    assert set(a) == set(b)
    for name in a:
        assert a[name] == b[name], f"{name} differs between two runs with the same seed"
    status = json.loads(a["status.json"])
    assert status["complete"] is True
    assert set(status["files"]) == set(a)
    summary = json.loads(a["summary.json"])
    assert summary["hostsim"]["seed"] == 42
    assert summary["counts"]["records"] == status["rows"]["records"] > 0
    # Nothing in the folder names where it was written.
    for name, data in a.items():
        assert str(tmp_path).encode() not in data, name


def test_different_seed_gives_different_records(tmp_path: Path) -> None:
    recs = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}"
        p = hostsim_run(str(PATHS), "--seed", seed, "--out", str(out), "--quiet", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        recs.append(read_records(out))
        assert f"seed = {seed}\n" in (out / "scenario.resolved.toml").read_text()
    assert len(recs[0]) > 100 and len(recs[1]) > 100
    assert not np.array_equal(recs[0], recs[1])
    # The seed moves the arrivals themselves, not just a detail.
    n = min(len(recs[0]), len(recs[1]))
    assert np.count_nonzero(recs[0]["t_issue"][:n] != recs[1]["t_issue"][:n]) > n // 2


def test_both_engines_write_identical_record_files(tmp_path: Path) -> None:
    s = load(SCENARIOS / "rwsem.toml")
    ref = simulate(s, "reference", tmp_path / "ref")
    fast = simulate(s, "fast", tmp_path / "fast")
    assert ref.out_dir is not None and fast.out_dir is not None
    for name in ("records.parquet", "host_events.parquet", "scenario.resolved.toml"):
        assert (ref.out_dir / name).read_bytes() == (fast.out_dir / name).read_bytes(), name
    for name in (p.name for p in ref.out_dir.glob("*.hgrm")):
        assert (ref.out_dir / name).read_bytes() == (fast.out_dir / name).read_bytes(), name
    a = json.loads((ref.out_dir / "summary.json").read_text())
    b = json.loads((fast.out_dir / "summary.json").read_text())
    assert (a["hostsim"].pop("engine"), b["hostsim"].pop("engine")) == ("reference", "fast")
    assert a == b
    assert len(read_host_events(ref.out_dir)) == len(s.events)


# --- Interrupted runs --------------------------------------------------------------------------
CHUNK = 100


def failing_sink(exc: BaseException, after_chunks: int) -> type[RecordSink]:
    """A RecordSink with small chunks whose emit raises ``exc`` at chunk ``after_chunks + 1``."""

    class Failing(RecordSink):
        def __init__(self, emit, chunk: int = CHUNK) -> None:  # type: ignore[no-untyped-def]
            self.emitted = 0

            def wrapped(rows: np.ndarray) -> None:
                if self.emitted == after_chunks:
                    raise exc
                self.emitted += 1
                emit(rows)

            super().__init__(wrapped, CHUNK)

    return Failing


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt(), RuntimeError("disk on fire")], ids=["ctrl-c", "error"]
)
def test_interrupted_run_leaves_partial_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, exc: BaseException
) -> None:
    s = load(PATHS)
    full = simulate(s, engine, keep_records=True).records
    assert full is not None and len(full) > 4 * CHUNK
    monkeypatch.setattr(run_module, "RecordSink", failing_sink(exc, after_chunks=3))
    out = tmp_path / "res"
    with pytest.raises(type(exc)):
        simulate(s, engine, out)
    assert not out.exists()
    partial = tmp_path / "res.partial"
    assert partial.is_dir()
    status = json.loads((partial / "status.json").read_text())
    assert status["complete"] is False
    assert type(exc).__name__ in status["reason"]
    assert status["rows"]["records"] == 3 * CHUNK
    assert "summary.json" not in status["files"]
    assert not (partial / "summary.json").exists()
    assert (partial / "scenario.resolved.toml").exists()
    # What was finished is kept, readable, and is exactly the start of the full run.
    assert pq.ParquetFile(partial / "records.parquet").metadata.num_rows == 3 * CHUNK
    assert np.array_equal(read_records(partial), full[: 3 * CHUNK])
    # No temporary folder is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.partial"]


def test_cli_ctrl_c_exits_130_and_names_the_partial_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run_module, "RecordSink", failing_sink(KeyboardInterrupt(), 2))
    out = tmp_path / "res"
    rc = main(["run", str(PATHS), "--out", str(out), "--quiet"])
    assert rc == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and f"{out}.partial" in err
    status = json.loads((tmp_path / "res.partial" / "status.json").read_text())
    assert status["complete"] is False
    assert status["rows"]["records"] == 2 * CHUNK
