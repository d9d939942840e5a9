"""The attribute declarations the type checker (``mypy``, CI) reads stay true to the code: the
column classes declare exactly their slots, and the fleet's mixins only attributes that
:class:`hostsim.fleet.Fleet` sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hostsim.decode_batch import DecisionBatch
from hostsim.fleet import Fleet
from hostsim.fleet_fifo import FleetFifo
from hostsim.fleet_pool import PlanPool
from hostsim.fleet_records import FleetRecords
from hostsim.fleet_scalar import FleetScalar
from hostsim.fleet_window import FleetWindow
from hostsim.intercept import InterceptBatch
from hostsim.model import Model
from hostsim.request_draws import Block
from hostsim.scenario import load

STEADY = Path(__file__).parents[1] / "bench" / "scenarios" / "steady.toml"


@pytest.mark.parametrize("cls", [DecisionBatch, InterceptBatch, Block])
def test_slotted_classes_declare_exactly_their_slots(cls: type) -> None:
    assert set(cls.__annotations__) == set(cls.__slots__)


def test_fleet_sets_what_its_mixins_declare() -> None:
    m = Model(load(STEADY, ["run.duration_ms=1"]))
    fleet = Fleet(m, np.arange(m.n_vcpus), [0] * m.n_mutexes)
    for mixin in (PlanPool, FleetFifo, FleetWindow, FleetScalar, FleetRecords):
        missing = [name for name in mixin.__annotations__ if not hasattr(fleet, name)]
        assert not missing, f"{mixin.__name__} declares attributes Fleet never sets: {missing}"
