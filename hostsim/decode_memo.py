"""The scalar decode remembered by its whole input: the fast engine's one-at-a-time decodes.

:func:`hostsim.decode.decode_one` is a pure function of the intercept and the variant, and its
:class:`~hostsim.decode.Decision` is frozen, so a decision may be handed out again for an equal
input. A guest that host events touch issues few distinct intercepts (its registers, its
configuration flags and its queues' answers repeat): in the README's knee example, 95 % of the
fast engine's scalar decodes repeat an earlier input. The reference engine decodes every
intercept afresh, as the plain reference should.
"""

from __future__ import annotations

from dataclasses import fields
from operator import attrgetter

from hostsim.decode import Decision, decode_one
from hostsim.intercept import Intercept
from hostsim.variants import Variant

#: Every field of an intercept but the two answer lists (made tuples for the key).
_SCALARS = attrgetter(*(f.name for f in fields(Intercept) if f.name not in ("hw_aqic", "hw_tapq")))
#: Inputs kept at most (then the memo starts again: memory stays bounded whatever the inputs).
LIMIT = 1 << 16


class DecodeMemo:
    """``decode_one`` with a memo of the inputs seen: call it as ``decode_one`` is called."""

    __slots__ = ("_memo", "hits", "misses")

    def __init__(self) -> None:
        self._memo: dict[tuple[object, ...], Decision] = {}
        self.hits = self.misses = 0

    def __call__(self, x: Intercept, variant: Variant) -> Decision:
        key = (variant.name, _SCALARS(x), tuple(x.hw_aqic), tuple(x.hw_tapq))
        d = self._memo.get(key)
        if d is not None:
            self.hits += 1
            return d
        self.misses += 1
        if len(self._memo) >= LIMIT:
            self._memo.clear()
        d = self._memo[key] = decode_one(x, variant)
        return d
