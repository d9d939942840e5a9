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
from hostsim.decode import Decision, decode_one
from hostsim.decode_batch import DecisionBatch, decode_batch
from hostsim.intercept import (
    AQIC_SLOTS,
    FLAG_DEFAULTS,
    REGISTER_NAMES,
    TAPQ_SLOTS,
    Intercept,
    InterceptBatch,
    pad_answers,
)
from hostsim.rules import Kind
from hostsim.variants import DEFAULT_VARIANT, VARIANTS, get_variant

_FLAG_SET = frozenset(FLAG_DEFAULTS)
_REGISTER_SET = frozenset(REGISTER_NAMES)
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
) -> tuple[dict[str, Any], str, Any]:
    """One input line as (intercept fields, variant name, id or NO_ID); raises
    DecodeInputError. The fields are :class:`Intercept` keyword arguments."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DecodeInputError(source, lineno, None, f"not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise DecodeInputError(source, lineno, None, "expected a JSON object")
    if not obj.keys() <= INPUT_KEYS:
        key = next(k for k in obj if k not in INPUT_KEYS)
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
                val = obj[key]
                kw[key] = (
                    val if type(val) is int and 0 <= val <= arch.MASK64 else _register(val, key)
                )
        for key in obj.keys() & _FLAG_SET:
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
    return kw, variant_override or name, obj.get("id", NO_ID)


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


_KIND_NAMES = [Kind(k).name for k in range(len(Kind))]


def _json_int(x: int) -> str:
    return "null" if x < 0 else str(x)


def _batch_lines(b: DecisionBatch, ids: list[Any]) -> list[str]:
    """Output lines of a decided batch, formatted column-wise for speed (same text as
    :func:`decision_to_json` encoded with ``json.dumps``)."""
    cols = zip(
        ids,
        b.kind.tolist(),
        b.gr1.tolist(),
        b.cc.tolist(),
        b.pgm_code.tolist(),
        b.response_code.tolist(),
        b.guest_visible_rc.tolist(),
        b.hw_aqic_calls.tolist(),
        b.hw_tapq_calls.tolist(),
        (b.sleeps.astype(np.int64) * arch.HOOK_SLEEP_MS).tolist(),
        strict=True,
    )
    out = []
    for ident, kind, gr1, cc, pgm, rc, gv, aq, tq, ms in cols:
        if ident is NO_ID:
            head = "{"
        elif type(ident) is int:
            head = f'{{"id": {ident}, '
        else:
            head = '{"id": ' + json.dumps(ident) + ", "
        out.append(
            f'{head}"kind": "{_KIND_NAMES[kind]}", "gr1": {gr1}, "cc": {_json_int(cc)}, '
            f'"pgm_code": {_json_int(pgm)}, "response_code": {_json_int(rc)}, '
            f'"guest_visible_rc": {_json_int(gv)}, "hw_aqic_calls": {aq}, '
            f'"hw_tapq_calls": {tq}, "sleep_ms": {ms}}}'
        )
    return out


def _batch_from_fields(kws: list[dict[str, Any]]) -> InterceptBatch:
    """Columns straight from parsed lines (no per-line Intercept objects)."""
    n = len(kws)
    cols: dict[str, np.ndarray] = {
        name: np.fromiter((kw.get(name, 0) for kw in kws), np.uint64, n) for name in REGISTER_NAMES
    }
    aq = np.zeros((n, AQIC_SLOTS), np.uint32)
    trc = np.zeros((n, TAPQ_SLOTS), np.uint8)
    tirq = np.zeros((n, TAPQ_SLOTS), bool)
    flags = {name: np.full(n, default) for name, default in FLAG_DEFAULTS.items()}
    for i, kw in enumerate(kws):
        if len(kw) > len(kw.keys() & _REGISTER_SET):
            for key, val in kw.items():
                if key in _FLAG_SET:
                    flags[key][i] = val
                elif key == "hw_aqic":
                    aq[i] = pad_answers(val, AQIC_SLOTS)
                elif key == "hw_tapq":
                    tp = pad_answers(val, TAPQ_SLOTS)
                    trc[i] = [a for a, _ in tp]
                    tirq[i] = [b for _, b in tp]
    return InterceptBatch(n, **cols, **flags, hw_aqic=aq, hw_tapq_rc=trc, hw_tapq_irq=tirq)


def decode_many(items: list[tuple[dict[str, Any], str, Any]]) -> list[str]:
    """Decode a chunk of parsed lines to output lines, in input order: vectorised per variant
    where it pays, scalar for the few."""
    out: list[str | None] = [None] * len(items)
    by_variant: dict[str, list[int]] = {}
    for k, (_, name, _) in enumerate(items):
        by_variant.setdefault(name, []).append(k)
    dumps = json.JSONEncoder(separators=(", ", ": ")).encode
    for name, rows in by_variant.items():
        variant = get_variant(name)
        if len(rows) < SCALAR_BELOW:
            for k in rows:
                kw, _, ident = items[k]
                out[k] = dumps(decision_to_json(decode_one(Intercept(**kw), variant), ident))
            continue
        decided = decode_batch(_batch_from_fields([items[k][0] for k in rows]), variant)
        lines = _batch_lines(decided, [items[k][2] for k in rows])
        for k, line in zip(rows, lines, strict=True):
            out[k] = line
    return out  # type: ignore[return-value]


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
    for chunk in _chunks(stream):
        items: list[tuple[dict[str, Any], str, Any]] = []
        error: DecodeInputError | None = None
        for lineno, text in chunk:
            try:
                items.append(parse_line(text, source, lineno, variant))
            except DecodeInputError as e:
                error = e
                break
        if items:
            out.write("".join(line + "\n" for line in decode_many(items)))
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
