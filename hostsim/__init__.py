"""hostsim: discrete-event simulation of PQAP(AQIC) interception on s390x KVM hosts.

The library API (``docs/api.md``) is :func:`load`, :func:`run`, :func:`sweep`, :func:`compare`,
their results :class:`Result`, :class:`SweepResult`, :class:`CompareResult`, and
:class:`Scenario` and :class:`ScenarioError`. They are loaded on first use, so ``import hostsim``
(and the ``hostsim`` command) stays light.

``run``, ``sweep`` and ``compare`` share their names with the modules ``hostsim.run``,
``hostsim.sweep`` and ``hostsim.compare``: the package attribute is always the function (the
import system's binding of the submodule is ignored), the modules stay reachable with
``from hostsim.run import simulate`` or ``_importlib.import_module("hostsim.run")``.
"""

import importlib as _importlib
import sys as _sys
import types as _types
import typing as _t

# Only the names of __all__ (and the submodules) are public: the helpers here are private.

__all__ = [
    "CompareResult",
    "Result",
    "Scenario",
    "ScenarioError",
    "SweepResult",
    "compare",
    "load",
    "run",
    "sweep",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hostsim")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0"


__version__ = _version()

if _t.TYPE_CHECKING:
    from hostsim.api import CompareResult, Result, SweepResult, compare, load, run, sweep
    from hostsim.scenario_types import Scenario, ScenarioError


def _public(name: str) -> _t.Any:
    if name in ("Scenario", "ScenarioError"):
        return getattr(_importlib.import_module("hostsim.scenario_types"), name)
    return getattr(_importlib.import_module("hostsim.api"), name)


def __getattr__(name: str) -> _t.Any:
    if name in __all__:
        value = _public(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hostsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _ApiName:
    """A public name shadowed by a submodule of the same name: always the API function."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, objtype: type | None = None) -> _t.Any:
        return _public(self.name)

    def __set__(self, obj: object, value: object) -> None:
        if not isinstance(value, _types.ModuleType):  # the import system binds the submodule
            raise AttributeError(f"hostsim.{self.name} cannot be replaced")


class _Package(_types.ModuleType):
    run = _ApiName()
    sweep = _ApiName()
    compare = _ApiName()


_sys.modules[__name__].__class__ = _Package
