"""Refresh the golden summary of the built-in default scenario (never done by a test).

Run ``python -m tests.update_golden`` after a change that is *meant* to move the default
scenario's outcome counts, and commit the new ``tests/data/default_summary_counts.json`` with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hostsim.run import simulate
from hostsim.scenario import load

GOLDEN = Path(__file__).parent / "data" / "default_summary_counts.json"


def golden_counts(summary: dict[str, Any]) -> dict[str, Any]:
    """The part of a run summary the golden file pins: every count, and the total measured."""
    return {
        "seed": summary["hostsim"]["seed"],
        "total": summary["all"]["N"],
        "counts": summary["counts"],
    }


def main() -> None:
    summary = simulate(load(None), "fast").summary
    GOLDEN.write_text(json.dumps(golden_counts(summary), sort_keys=True, indent=2) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
