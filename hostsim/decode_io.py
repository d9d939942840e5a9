"""``hostsim decode``: JSON Lines of register states in, KVM's answer for each out.

Input keys are listed in :data:`INPUT_KEYS`; see the README for the schema. Lines are read in
chunks; each chunk is decoded with the vectorised evaluator (grouped by variant) and written in
input order before the next chunk is read, so a bad line stops the run with every line before it
already printed. Errors name the line number and the key and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np

from hostsim import arch
from hostsim.decode import Decision, DecisionBatch, decode_batch, decode_one
from hostsim.intercept import (
    AQIC_SLOTS,
    FLAG_DEFAULTS,
    REGISTER_NAMES,
    TAPQ_SLOTS,
    Intercept,
    InterceptBatch,
)
from hostsim.rules import Kind
from hostsim.variants import DEFAULT_VARIANT, VARIANTS, get_variant

NO_ID = object()  # marks a line without an "id" key (an explicit null id is copied)
INPUT_KEYS = frozenset({*REGISTER_NAMES, *FLAG_DEFAULTS, "variant", "hw_aqic", "hw_tapq", "id"})
OUTPUT_KEYS = (
    "kind",
    "gr1",
    "cc",
    "pgm_code",
    "response_code",
    "guest_visible_rc",
    "hw_aqic_calls",
    "hw_tapq_calls",
    "sleep_ms",
)
#: Lines per vectorised chunk: large enough to amortise numpy's fixed cost per call.
CHUNK = 65536
#: Below this many lines of one variant in a chunk, the scalar evaluator is faster.
SCALAR_BELOW = 200


class DecodeInputError(ValueError):
    """A decode input line that cannot be used; carries the line number and key."""

    def __init__(self, source: str, line: int, key: str | None, message: str) -> None:
        where = f"{source}:{line}" + (f": key {key!r}" if key else "")
        super().__init__(f"{where}: {message}")
        self.line = line
        self.key = key


def _register(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer or a hex string, got {json.dumps(value)}")
    if isinstance(value, int):
        v = value
    elif isinstance(value, str):
        try:
            v = int(value, 0)
        except ValueError:
            raise ValueError(
                f'expected an integer or a string like "0x00800000", got {value!r}'
            ) from None
    else:
        raise ValueError(f"expected an integer or a hex string, got {json.dumps(value)}")
    if not 0 <= v <= arch.MASK64:
        raise ValueError(f"{v:#x} is outside 0 .. 2**64-1")
    return v


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {json.dumps(value)}")
    return value


def _aqic_list(value: Any) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of response codes or 32-bit status words")
    out = []
    for item in value:
        v = _register(item, "hw_aqic")
        if v > arch.MASK32:
            raise ValueError(f"{v:#x} is not a response code (0-0xff) or a 32-bit status word")
        out.append(arch.hw_status_word(v))
    return out


def _tapq_list(value: Any) -> list[tuple[int, bool]]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of [response_code, irq_enabled] pairs")
    out = []
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or isinstance(item[0], bool)
            or not isinstance(item[0], int)
            or not isinstance(item[1], bool)
        ):
            raise ValueError(f"expected [response_code, irq_enabled], got {json.dumps(item)}")
        if not 0 <= item[0] <= 0xFF:
            raise ValueError(f"response code {item[0]} is outside 0-0xff")
        out.append((item[0], item[1]))
    return out


def parse_line(
    text: str, source: str, lineno: int, variant_override: str | None
) -> tuple[Intercept, str, Any]:
    """One input line as (intercept, variant name, id or None); raises DecodeInputError."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DecodeInputError(source, lineno, None, f"not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise DecodeInputError(source, lineno, None, "expected a JSON object")
    for key in obj:
        if key not in INPUT_KEYS:
            raise DecodeInputError(
                source, lineno, key, f"unknown key; expected one of {sorted(INPUT_KEYS)}"
            )
    if "gpr0" not in obj:
        raise DecodeInputError(source, lineno, "gpr0", "missing (gpr0 is required)")
    kw: dict[str, Any] = {}
    key = ""
    try:
        for key in REGISTER_NAMES:
            if key in obj:
                kw[key] = _register(obj[key], key)
        for key in FLAG_DEFAULTS:
            if key in obj:
                kw[key] = _flag(obj[key])
        key = "hw_aqic"
        if key in obj:
            kw[key] = _aqic_list(obj[key])
        key = "hw_tapq"
        if key in obj:
            kw[key] = _tapq_list(obj[key])
        key = "variant"
        name = obj.get("variant", DEFAULT_VARIANT)
        if not isinstance(name, str) or name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; expected one of {list(VARIANTS)}")
    except ValueError as e:
        raise DecodeInputError(source, lineno, key, str(e)) from None
    return Intercept(**kw), variant_override or name, obj.get("id", NO_ID)


def decision_to_json(d: Decision, ident: Any = NO_ID) -> dict[str, Any]:
    """The output object of one line (``id`` first when the input had one)."""
    out: dict[str, Any] = {} if ident is NO_ID else {"id": ident}
    out.update(
        kind=d.kind.name,
        gr1=d.gr1,
        cc=d.cc,
        pgm_code=d.pgm_code,
        response_code=d.response_code,
        guest_visible_rc=d.guest_visible_rc,
        hw_aqic_calls=d.hw_aqic_calls,
        hw_tapq_calls=d.hw_tapq_calls,
        sleep_ms=d.sleep_ms,
    )
    return out


def _batch_lines(b: DecisionBatch, idx: np.ndarray) -> list[dict[str, Any]]:
    """Output objects for the rows of a decided batch, built column-wise for speed."""
    kinds = [Kind(k).name for k in range(4)]

    def col(a: np.ndarray) -> list[Any]:
        return [None if x < 0 else x for x in a[idx].tolist()]

    cols = zip(
        [kinds[k] for k in b.kind[idx].tolist()],
        b.gr1[idx].tolist(),
        col(b.cc),
        col(b.pgm_code),
        col(b.response_code),
        col(b.guest_visible_rc),
        b.hw_aqic_calls[idx].tolist(),
        b.hw_tapq_calls[idx].tolist(),
        (b.sleeps[idx].astype(np.int64) * arch.HOOK_SLEEP_MS).tolist(),
        strict=True,
    )
    return [dict(zip(OUTPUT_KEYS, row, strict=True)) for row in cols]


def decode_many(items: list[tuple[Intercept, str, Any]]) -> list[dict[str, Any]]:
    """Decode a chunk: vectorised per variant where it pays, scalar for the few."""
    out: list[dict[str, Any] | None] = [None] * len(items)
    by_variant: dict[str, list[int]] = {}
    for k, (_, name, _) in enumerate(items):
        by_variant.setdefault(name, []).append(k)
    for name, rows in by_variant.items():
        variant = get_variant(name)
        if len(rows) < SCALAR_BELOW:
            for k in rows:
                out[k] = decision_to_json(decode_one(items[k][0], variant))
            continue
        batch = InterceptBatch.from_intercepts([items[k][0] for k in rows])
        decided = decode_batch(batch, variant)
        for k, obj in zip(rows, _batch_lines(decided, np.arange(len(rows))), strict=True):
            out[k] = obj
    result = []
    for k, obj in enumerate(out):
        assert obj is not None
        if items[k][2] is not NO_ID:
            obj = {"id": items[k][2], **obj}
        result.append(obj)
    return result


def _chunks(lines: Iterable[str]) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for lineno, text in enumerate(lines, 1):
        if not text.strip():
            continue
        chunk.append((lineno, text))
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_decode(stream: IO[str], source: str, out: IO[str], variant: str | None = None) -> int:
    """Decode every line of ``stream`` to ``out``; return the exit code (0, or 2 on bad input)."""
    if variant is not None:
        get_variant(variant)
    dumps = json.JSONEncoder(separators=(", ", ": ")).encode
    for chunk in _chunks(stream):
        items: list[tuple[Intercept, str, Any]] = []
        error: DecodeInputError | None = None
        for lineno, text in chunk:
            try:
                items.append(parse_line(text, source, lineno, variant))
            except DecodeInputError as e:
                error = e
                break
        if items:
            out.write("".join(dumps(o) + "\n" for o in decode_many(items)))
            out.flush()
        if error is not None:
            print(f"hostsim decode: {error}", file=sys.stderr)
            return 2
    return 0


__all__ = [
    "AQIC_SLOTS",
    "TAPQ_SLOTS",
    "DecodeInputError",
    "decision_to_json",
    "decode_many",
    "parse_line",
    "run_decode",
]
