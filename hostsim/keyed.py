"""Counter-based random draws: every draw is a pure function of what it is for.

A draw of request ``k`` of local vCPU ``lv`` of group ``group``, in family ``family`` (arrivals,
registers, hardware, each named cost), is a hash of ``(seed, family, group, call, lv, k)``:
two rounds of the SplitMix64 finaliser over a 64-bit key, turned into a uniform in [0, 1) with
53 bits. Nothing is consumed in order, so any set of requests, in any order and in any grouping,
gets the same values: the reference engine draws a block of requests at a time, the fast engine
exactly the requests it reaches, and both see the same numbers. No draw is made for a request
that never happens.

:class:`KeyedGen` offers the subset of ``numpy.random.Generator`` that the workload and cost
code uses (``random``, ``exponential``, ``lognormal``, ``uniform``, ``integers``), so that code
takes either. Each method call is one *call slot*: the n-th call on a generator draws from slot
n, and a trailing dimension beyond the key's shape (per-call slots, hardware retries) gets its
own sub-slots. Normals come from Box-Muller on one 64-bit hash (40 bits for the radius, 24 for
the angle, its cosine in float32: tails reach 7.4 standard deviations).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_G1 = np.uint64(0x9E3779B97F4A7C15)
_G2 = np.uint64(0xD6E8FEB86659FD93)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S11, _S24 = np.uint64(11), np.uint64(24)
_LOW24 = np.uint64(0xFFFFFF)
_TWO_PI = 2.0 * np.pi


@lru_cache(maxsize=65536)
def family_key(seed: int, family: str, group: int, slot: int) -> np.uint64:
    """The 64-bit key of one call slot of one family of draws of one group."""
    h = hashlib.blake2b(f"{seed}/{family}/{group}/{slot}".encode(), digest_size=8)
    return np.uint64(int.from_bytes(h.digest(), "little"))


def _fmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, in place (a bijection of 64-bit words)."""
    y = x >> _S30
    x ^= y
    x *= _M1
    np.right_shift(x, _S27, out=y)
    x ^= y
    x *= _M2
    np.right_shift(x, _S31, out=y)
    x ^= y
    return x


def hash64(key: np.uint64 | np.ndarray, lv: np.ndarray, k: np.ndarray) -> np.ndarray:
    """64 random bits for each ``(lv, k)`` under ``key`` (arrays of one shape, or broadcast;
    ``key`` too may be an array that broadcasts over them)."""
    with np.errstate(over="ignore"):
        x = np.asarray(lv, np.uint64) * _G1
        x += key
        _fmix(x)
        x ^= np.asarray(k, np.uint64) * _G2
        _fmix(x)
    return x


def uniform01(bits: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from 64-bit hashes (53 bits each)."""
    return (bits >> _S11) * (1.0 / 9007199254740992.0)


def standard_normal(bits: np.ndarray) -> np.ndarray:
    """Standard normals from 64-bit hashes (Box-Muller, one hash each)."""
    r = ((bits >> _S24) + np.uint64(1)) * (1.0 / 1099511627776.0)  # u1 in (0, 1]
    np.log(r, out=r)
    r *= -2.0
    np.sqrt(r, out=r)
    # The angle has 24 bits: float32 holds it exactly and its cosine is vectorised (~1e-7).
    angle = (bits & _LOW24).astype(np.float32)
    angle *= np.float32(_TWO_PI / 16777216.0)
    r *= np.cos(angle)
    return r


class KeyedGen:
    """Draws for the requests ``(lv, k)`` of one family of one group (see module docstring).

    ``group`` may be an array of groups, one per row of the keys' first axis: the draws of
    several groups at once, each row the same values as its group's own generator gives."""

    __slots__ = ("_calls", "_family", "_group", "_k", "_lv", "_seed", "shape")

    def __init__(
        self, seed: int, family: str, group: int | np.ndarray, lv: np.ndarray, k: np.ndarray
    ) -> None:
        lv, k = np.broadcast_arrays(np.asarray(lv, np.int64), np.asarray(k, np.int64))
        self._seed = seed
        self._family = family
        self._group = group
        self._lv = lv
        self._k = k
        self.shape: tuple[int, ...] = lv.shape
        self._calls = 0

    def _key(self, slot: int) -> np.uint64 | np.ndarray:
        """The key of call slot ``slot``: one, or one per row (broadcast over the rest)."""
        g = self._group
        if isinstance(g, np.ndarray):
            keys = [family_key(self._seed, self._family, int(x), slot) for x in g.tolist()]
            return np.array(keys, np.uint64).reshape((-1,) + (1,) * (len(self.shape) - 1))
        return family_key(self._seed, self._family, g, slot)

    def _bits(self, shape: int | tuple[int, ...] | None) -> np.ndarray:
        """64-bit hashes for the next call slot, ``shape`` = the key shape plus at most one
        trailing dimension (sub-slots)."""
        slot = self._calls
        self._calls += 1
        shape = self.shape if shape is None else (shape if isinstance(shape, tuple) else (shape,))
        if shape == self.shape:
            return hash64(self._key(slot), self._lv, self._k)
        if shape[:-1] != self.shape:
            raise ValueError(f"draw shape {shape} does not extend the key shape {self.shape}")
        if shape[-1] > 256:  # sub-slots are packed in 8 bits: more would reach the next slot
            raise ValueError(f"draw shape {shape}: at most 256 sub-slots per call")
        out = np.empty(shape, np.uint64)
        for j in range(shape[-1]):
            out[..., j] = hash64(self._key((slot << 8) | j), self._lv, self._k)
        return out

    def random(self, shape: int | tuple[int, ...] | None = None) -> np.ndarray:
        """Uniforms in [0, 1)."""
        return uniform01(self._bits(shape))

    def exponential(
        self, scale: float = 1.0, shape: int | tuple[int, ...] | None = None
    ) -> np.ndarray:
        """Exponential draws with mean ``scale`` (inversion: ``-scale * log(1 - u)``)."""
        u = uniform01(self._bits(shape))  # (in place from here: the same operations)
        np.negative(u, out=u)
        np.log1p(u, out=u)
        u *= -scale
        return u

    def lognormal(
        self, mean: float = 0.0, sigma: float = 1.0, shape: int | tuple[int, ...] | None = None
    ) -> np.ndarray:
        """Lognormal draws: ``exp(mean + sigma * z)``."""
        z = standard_normal(self._bits(shape))  # (in place: the same operations)
        z *= sigma
        z += mean
        return np.exp(z, out=z)

    def uniform(
        self, low: float = 0.0, high: float = 1.0, shape: int | tuple[int, ...] | None = None
    ) -> np.ndarray:
        """Uniform draws in [low, high)."""
        return low + (high - low) * uniform01(self._bits(shape))

    def integers(
        self, low: int, high: int | None = None, shape: int | tuple[int, ...] | None = None
    ) -> np.ndarray:
        """Integers in [low, high) (numpy's convention: one bound means [0, low))."""
        if high is None:
            low, high = 0, low
        u = uniform01(self._bits(shape))
        return np.minimum(low + (u * (high - low)).astype(np.int64), high - 1)
