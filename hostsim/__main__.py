"""``python -m hostsim``: the same as the ``hostsim`` console script."""

from hostsim.cli import main

raise SystemExit(main())
