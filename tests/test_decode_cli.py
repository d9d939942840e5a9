"""``hostsim decode``: the installed console script (subprocess) and ``hostsim.cli.main``.

JSON Lines in, one JSON object per line out, in input order, ``id`` copied; bad input stops the
run with exit code 2 and a message naming the line number and the key, after every line before
the bad one has been written.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hostsim import decode_io
from hostsim.cli import main
from hostsim.decode import decode_one
from hostsim.variants import VARIANTS

from .helpers import (
    GR0_AQIC,
    GR1_ENABLE,
    NIB,
    decision_as_output,
    intercept_from_json,
    load_examples,
)

EXAMPLES = load_examples()
HOSTSIM = shutil.which("hostsim")


def run_script(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    assert HOSTSIM, "the hostsim console script is not installed (pip install -e .)"
    return subprocess.run(
        [HOSTSIM, *args], input=stdin, capture_output=True, text=True, timeout=300, check=False
    )


def run_main(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch, stdin: str = ""
) -> tuple[int, str, str]:
    """hostsim.cli.main in-process, with ``stdin`` as standard input."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(s) for s in text.splitlines()]


def expected_for(obj: dict[str, Any], variant: str | None = None) -> dict[str, Any]:
    """What the decode should print for one input object (scalar reference, own conversion)."""
    name = variant or obj.get("variant", "upstream")
    inp = {k: v for k, v in obj.items() if k not in ("id", "variant")}
    out = decision_as_output(decode_one(intercept_from_json(inp), VARIANTS[name]))
    return {"id": obj["id"], **out} if "id" in obj else out


def example_lines() -> str:
    return "".join(json.dumps({"id": e["id"], **e["input"]}) + "\n" for e in EXAMPLES)


# --- The worked examples round trip ---------------------------------------------------------
def test_script_examples_file_round_trip(tmp_path: Path) -> None:
    """Subprocess: every example's output equals its expected, ids copied, order kept."""
    src = tmp_path / "examples.jsonl"
    src.write_text(example_lines())
    r = run_script("decode", str(src))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    got = lines(r.stdout)
    assert [g["id"] for g in got] == [e["id"] for e in EXAMPLES]
    assert [{k: v for k, v in g.items() if k != "id"} for g in got] == [
        e["expected"] for e in EXAMPLES
    ]


def test_main_examples_file_round_trip(tmp_path: Path, capsys, monkeypatch) -> None:
    """In-process: the same round trip through hostsim.cli.main; id is the first key."""
    src = tmp_path / "examples.jsonl"
    src.write_text(example_lines())
    code, out, err = run_main(["decode", str(src)], capsys, monkeypatch)
    assert (code, err) == (0, "")
    got = lines(out)
    assert got == [{"id": e["id"], **e["expected"]} for e in EXAMPLES]
    assert all(next(iter(g)) == "id" for g in got)


def test_main_examples_through_the_vectorised_path(tmp_path: Path, capsys, monkeypatch) -> None:
    """With SCALAR_BELOW = 1 every variant group of the examples goes through decode_batch;
    with CHUNK = 4 chunk boundaries fall between and inside variant groups."""
    monkeypatch.setattr(decode_io, "SCALAR_BELOW", 1)
    monkeypatch.setattr(decode_io, "CHUNK", 4)
    src = tmp_path / "examples.jsonl"
    src.write_text(example_lines())
    code, out, _ = run_main(["decode", str(src)], capsys, monkeypatch)
    assert code == 0
    assert lines(out) == [{"id": e["id"], **e["expected"]} for e in EXAMPLES]


def test_script_stdin_dash() -> None:
    """Subprocess: ``hostsim decode -`` reads standard input."""
    r = run_script("decode", "-", stdin=example_lines())
    assert r.returncode == 0, r.stderr
    assert lines(r.stdout) == [{"id": e["id"], **e["expected"]} for e in EXAMPLES]


def test_main_stdin_dash(capsys, monkeypatch) -> None:
    """In-process: ``-`` is standard input."""
    code, out, _ = run_main(["decode", "-"], capsys, monkeypatch, stdin=example_lines())
    assert code == 0
    assert lines(out) == [{"id": e["id"], **e["expected"]} for e in EXAMPLES]


def test_script_python_m_hostsim_is_the_same_command() -> None:
    """``python -m hostsim`` runs the same main as the console script."""
    r = subprocess.run(
        [sys.executable, "-m", "hostsim", "decode", "-"],
        input=example_lines(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert lines(r.stdout) == [{"id": e["id"], **e["expected"]} for e in EXAMPLES]


def test_blank_lines_are_skipped_and_empty_input_is_fine(capsys, monkeypatch) -> None:
    """Blank lines produce no output; empty input exits 0 with no output."""
    code, out, _ = run_main(["decode", "-"], capsys, monkeypatch, stdin="")
    assert (code, out) == (0, "")
    text = '\n{"gpr0": 50332929}\n   \n{"gpr0": 50332929}\n\n'
    code, out, _ = run_main(["decode", "-"], capsys, monkeypatch, stdin=text)
    assert code == 0 and len(lines(out)) == 2


# --- --variant override ---------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_script_variant_override(variant: str) -> None:
    """``--variant V`` overrides every line's own variant."""
    r = run_script("decode", "-", "--variant", variant, stdin=example_lines())
    assert r.returncode == 0, r.stderr
    want = [expected_for({"id": e["id"], **e["input"]}, variant) for e in EXAMPLES]
    assert lines(r.stdout) == want


def test_main_variant_override_changes_the_cc_rule(capsys, monkeypatch) -> None:
    """Spec 9.4: a successful hook gives CC 0 upstream and leaves CC unchanged (null) in the
    2019 variants; --variant picks which."""
    line = json.dumps({"gpr0": GR0_AQIC, "gpr1": GR1_ENABLE, "gpr2": NIB, "variant": "upstream"})
    code, out, _ = run_main(["decode", "-"], capsys, monkeypatch, stdin=line)
    assert code == 0 and lines(out)[0]["cc"] == 0
    argv = ["decode", "-", "--variant", "merged-2019"]
    code, out, _ = run_main(argv, capsys, monkeypatch, stdin=line)
    assert code == 0 and lines(out)[0]["cc"] is None


def test_script_unknown_variant_option_exits_2() -> None:
    """argparse refuses an unknown --variant with exit code 2 and names the choices."""
    r = run_script("decode", "-", "--variant", "v3-2018", stdin="")
    assert r.returncode == 2
    assert "--variant" in r.stderr and "upstream" in r.stderr


# --- Registers as hex strings, defaults -----------------------------------------------------
def test_registers_as_hex_strings_equal_integers(capsys, monkeypatch) -> None:
    """gpr0, gpr1, gpr2 and psw_mask may be JSON integers or strings like "0x00800000"."""
    ints = {"gpr0": GR0_AQIC, "gpr1": GR1_ENABLE, "gpr2": NIB, "psw_mask": 0x0705000180000000}
    hexes = {k: hex(v) for k, v in ints.items()}
    upper = {k: "0X" + format(v, "X") for k, v in ints.items()}
    text = "".join(json.dumps(o) + "\n" for o in (ints, hexes, upper))
    code, out, _ = run_main(["decode", "-"], capsys, monkeypatch, stdin=text)
    got = lines(out)
    assert code == 0
    assert got[0] == got[1] == got[2]
    assert got[0]["kind"] == "PROGRAM_INTERRUPT" and got[0]["pgm_code"] == 2


def test_missing_optional_keys_default_to_a_healthy_host(capsys, monkeypatch) -> None:
    """Only gpr0 is required: flags default to a healthy, configured host (AP available,
    APIE, AIV, facilities 15/65, APXA, hook registered, queue assigned, NIB pinnable, ...);
    registers default to 0 (supervisor PSW; IR clear, so a disable), hw answers to NORMAL."""
    minimal = {"gpr0": GR0_AQIC}
    full = {
        "gpr0": GR0_AQIC,
        "gpr1": 0,
        "gpr2": 0,
        "psw_mask": 0,
        "variant": "upstream",
        "hw_aqic": [0],
        "hw_tapq": [[0, False]],
        "ap_instructions_available": True,
        "eca_apie": True,
        "eca_aiv": True,
        "facility15": True,
        "facility65": True,
        "apxa": True,
        "hook_registered": True,
        "hook_module_alive": True,
        "hook_cleared_in_flight": False,
        "mdev_has_kvm": True,
        "queue_assigned": True,
        "nib_in_memslot": True,
        "pin_ok": True,
        "pv_guest": False,
        "nib_shared": True,
        "gisc_register_ok": True,
    }
    assert set(full) | {"id"} == decode_io.INPUT_KEYS
    text = json.dumps(minimal) + "\n" + json.dumps(full) + "\n"
    code, out, _ = run_main(["decode", "-"], capsys, monkeypatch, stdin=text)
    a, b = lines(out)
    assert code == 0 and a == b
    assert a == {
        "kind": "HOOK_HANDLED",
        "gr1": 0,
        "cc": 0,
        "pgm_code": None,
        "response_code": 0,
        "guest_visible_rc": 0,
        "hw_aqic_calls": 1,
        "hw_tapq_calls": 1,
        "sleep_ms": 0,
    }


def test_hw_aqic_full_status_words_and_rcs(capsys, monkeypatch) -> None:
    """hw_aqic values <= 0xff are RCs, larger ones whole 32-bit status words: 0x01000000 is
    the I bit with RC 0 (a successful enable), 0x80050000 a busy answer."""
    objs = [
        {"gpr0": GR0_AQIC, "gpr1": GR1_ENABLE, "gpr2": NIB, "hw_aqic": [0x01000000]},
        {"gpr0": GR0_AQIC, "gpr1": GR1_ENABLE, "gpr2": NIB, "hw_aqic": ["0x01000000"]},
        {
            "gpr0": GR0_AQIC,
            "hw_aqic": [0x80050000, 5, 0x00070000],
            "hw_tapq": [[5, True], [0, False]],
        },
    ]
    text = "".join(json.dumps(o) + "\n" for o in objs)
    code, out, _ = run_main(["decode", "-"], capsys, monkeypatch, stdin=text)
    a, b, c = lines(out)
    assert code == 0
    assert a == b
    assert (a["gr1"], a["response_code"], a["cc"], a["hw_aqic_calls"]) == (0x01000000, 0, 0, 1)
    assert (c["gr1"], c["response_code"], c["cc"]) == (0x00070000, 7, 3)
    assert (c["hw_aqic_calls"], c["hw_tapq_calls"], c["sleep_ms"]) == (3, 2, 60)


def test_ids_of_any_json_type_are_copied(capsys, monkeypatch) -> None:
    """The id is copied as given (string, number, null, object); lines without id get none."""
    ids = ["a", 7, None, {"vm": 3}, [1, 2]]
    text = "".join(json.dumps({"gpr0": GR0_AQIC, "id": i}) + "\n" for i in ids)
    text += json.dumps({"gpr0": GR0_AQIC}) + "\n"
    code, out, _ = run_main(["decode", "-"], capsys, monkeypatch, stdin=text)
    got = lines(out)
    assert code == 0
    assert [g["id"] for g in got[:-1]] == ids
    assert "id" not in got[-1]


# --- Bad input ------------------------------------------------------------------------------
GOOD = json.dumps({"gpr0": GR0_AQIC, "gpr1": GR1_ENABLE, "gpr2": NIB, "id": "good"})
BAD_LINES = [
    pytest.param("{not json", None, "not valid JSON", id="not-json"),
    pytest.param('["gpr0", 1]', None, "JSON object", id="not-an-object"),
    pytest.param('{"gpr0": 1, "gpr9": 2}', "gpr9", "unknown key", id="unknown-key"),
    pytest.param('{"gpr1": 1}', "gpr0", "missing", id="missing-gpr0"),
    pytest.param('{"gpr0": 18446744073709551616}', "gpr0", "2**64-1", id="gpr0-too-big"),
    pytest.param('{"gpr0": 1, "gpr2": "0x1ffffffffffffffff"}', "gpr2", "2**64-1", id="hex-too-big"),
    pytest.param('{"gpr0": -1}', "gpr0", "outside", id="negative"),
    pytest.param('{"gpr0": 1.5}', "gpr0", "expected an integer", id="float"),
    pytest.param('{"gpr0": true}', "gpr0", "expected an integer", id="bool-register"),
    pytest.param('{"gpr0": "zzz"}', "gpr0", "expected an integer", id="bad-hex"),
    pytest.param('{"gpr0": 1, "psw_mask": null}', "psw_mask", "expected", id="null-register"),
    pytest.param('{"gpr0": 1, "eca_aiv": 1}', "eca_aiv", "true or false", id="int-flag"),
    pytest.param('{"gpr0": 1, "pin_ok": "yes"}', "pin_ok", "true or false", id="str-flag"),
    pytest.param('{"gpr0": 1, "variant": "v3-2018"}', "variant", "unknown variant", id="variant"),
    pytest.param('{"gpr0": 1, "variant": 4}', "variant", "unknown variant", id="variant-type"),
    pytest.param('{"gpr0": 1, "hw_aqic": []}', "hw_aqic", "non-empty", id="aqic-empty"),
    pytest.param('{"gpr0": 1, "hw_aqic": 5}', "hw_aqic", "list", id="aqic-not-list"),
    pytest.param('{"gpr0": 1, "hw_aqic": [4294967296]}', "hw_aqic", "32-bit", id="aqic-too-big"),
    pytest.param('{"gpr0": 1, "hw_tapq": [[0]]}', "hw_tapq", "expected", id="tapq-pair"),
    pytest.param('{"gpr0": 1, "hw_tapq": [[0, 1]]}', "hw_tapq", "expected", id="tapq-int-irq"),
    pytest.param('{"gpr0": 1, "hw_tapq": [[256, false]]}', "hw_tapq", "outside", id="tapq-rc"),
]


def _check_error(stderr: str, lineno: int, key: str | None, words: str) -> None:
    assert stderr.startswith("hostsim decode: ")
    assert f":{lineno}:" in stderr, stderr
    if key is not None:
        assert f"key {key!r}" in stderr, stderr
    assert words in stderr, stderr


@pytest.mark.parametrize(("bad", "key", "words"), BAD_LINES)
def test_main_bad_input_exits_2_naming_line_and_key_after_earlier_lines(
    bad: str, key: str | None, words: str, capsys, monkeypatch
) -> None:
    """In-process: lines 1-3 are good, line 4 is bad, line 5 good: exit 2, stderr names line 4
    and the key, the three good lines are already on stdout and line 5 is not decoded."""
    text = "\n".join([GOOD, GOOD, "", bad, GOOD]) + "\n"
    code, out, err = run_main(["decode", "-"], capsys, monkeypatch, stdin=text)
    assert code == 2
    assert [o["id"] for o in lines(out)] == ["good", "good"]
    _check_error(err, 4, key, words)
    assert "<stdin>:4" in err


@pytest.mark.parametrize(("bad", "key", "words"), BAD_LINES[:6])
def test_script_bad_input_exits_2_naming_file_line_and_key(
    bad: str, key: str | None, words: str, tmp_path: Path
) -> None:
    """Subprocess: the same, from a file; the message names the file, line and key."""
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join([GOOD, GOOD, bad, GOOD]) + "\n")
    r = run_script("decode", str(src))
    assert r.returncode == 2
    assert [o["id"] for o in lines(r.stdout)] == ["good", "good"]
    _check_error(r.stderr, 3, key, words)
    assert f"{src}:3" in r.stderr


def test_main_bad_line_after_several_chunks_keeps_earlier_chunks(capsys, monkeypatch) -> None:
    """With a small CHUNK, the chunks before the bad line and the part of its own chunk before
    it are written; the rest of that chunk is not."""
    monkeypatch.setattr(decode_io, "CHUNK", 4)
    monkeypatch.setattr(decode_io, "SCALAR_BELOW", 2)
    good = [json.dumps({"gpr0": GR0_AQIC, "id": k}) for k in range(1, 11)]
    text = "\n".join([*good, '{"gpr0": 1, "eca_apie": null}', *good]) + "\n"
    code, out, err = run_main(["decode", "-"], capsys, monkeypatch, stdin=text)
    assert code == 2
    assert [o["id"] for o in lines(out)] == list(range(1, 11))
    _check_error(err, 11, "eca_apie", "true or false")


def test_script_bad_line_on_stdin_after_good_lines() -> None:
    """Subprocess on stdin: the good lines reach stdout before the process exits with 2."""
    r = run_script("decode", "-", stdin=GOOD + "\n" + '{"gpr0": 1, "oops": 0}\n')
    assert r.returncode == 2
    assert [o["id"] for o in lines(r.stdout)] == ["good"]
    _check_error(r.stderr, 2, "oops", "unknown key")


def test_script_missing_file_exits_2(tmp_path: Path) -> None:
    """An unreadable input file: exit 2 with a message naming it."""
    r = run_script("decode", str(tmp_path / "nope.jsonl"))
    assert r.returncode == 2
    assert "nope.jsonl" in r.stderr and r.stdout == ""


def test_main_requires_a_subcommand_and_a_file(capsys) -> None:
    """argparse usage errors exit with 2."""
    for argv in ([], ["decode"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    capsys.readouterr()


# --- Large input: the vectorised path equals the scalar reference ----------------------------
def _random_objects(n: int, seed: int) -> list[dict[str, Any]]:
    """Mixed register states and variants; hook-owns-fc is rare (fewer than SCALAR_BELOW lines
    per chunk), so chunks mix the vectorised and the scalar path."""
    rng = np.random.default_rng(seed)
    names = np.array(["upstream", "merged-2019", "v4-2019", "hook-owns-fc"])
    variant = names[rng.choice(4, n, p=[0.45, 0.3, 0.2475, 0.0025])]
    fc = np.where(rng.random(n) < 0.9, 3, rng.choice([0, 1, 2, 4, 5, 7, 8], n))
    gpr0 = (
        fc << 24
        | np.where(rng.random(n) < 0.03, rng.integers(1, 128, n) << 16, 0)
        | np.where(rng.random(n) < 0.05, 1 << 23, 0)
        | rng.integers(0, 80, n) << 8
        | rng.integers(0, 20, n)
    )
    ir = rng.random(n) < 0.5
    isc = rng.integers(0, 8, n)
    gpr2 = np.where(rng.random(n) < 0.05, 0, rng.integers(1, 1 << 40, n))
    problem = rng.random(n) < 0.03
    flag_p = {
        "eca_aiv": 0.02,
        "facility15": 0.05,
        "facility65": 0.02,
        "apxa": 0.3,
        "hook_registered": 0.05,
        "hook_module_alive": 0.02,
        "hook_cleared_in_flight": 0.02,
        "mdev_has_kvm": 0.02,
        "queue_assigned": 0.05,
        "nib_in_memslot": 0.02,
        "pin_ok": 0.02,
        "pv_guest": 0.2,
        "nib_shared": 0.2,
        "gisc_register_ok": 0.02,
        "eca_apie": 0.01,
        "ap_instructions_available": 0.01,
    }
    flips = {k: (rng.random(n) < p).tolist() for k, p in flag_p.items()}
    aqic = rng.choice([0, 0, 0, 5, 2, 7, 1, 3, 0x42, 0x01000000, 0x80050000], (n, 4)).tolist()
    alen = rng.integers(1, 5, n).tolist()
    tapq_rc = rng.choice([0, 0, 5, 2, 1, 3], (n, 3)).tolist()
    tapq_irq = (rng.random((n, 3)) < 0.4).tolist()
    tlen = rng.integers(1, 4, n).tolist()
    hexes = (rng.random(n) < 0.3).tolist()
    omit = (rng.random(n) < 0.5).tolist()
    out = []
    cols = [c.tolist() for c in (variant, gpr0, ir, isc, gpr2, problem)]
    for k, (var, g0, irk, iscv, g2, prob) in enumerate(zip(*cols, strict=True)):
        g1 = (1 << 47 if irk else 0) | iscv
        psw = 0x0704000180000000 | (0x0001000000000000 if prob else 0)
        o: dict[str, Any] = {"id": k, "variant": var}
        regs = {"gpr0": g0, "gpr1": g1, "gpr2": g2, "psw_mask": psw}
        o.update({r: hex(v) for r, v in regs.items()} if hexes[k] else regs)
        for name, flip in flips.items():
            if flip[k]:
                o[name] = not decode_io.FLAG_DEFAULTS[name]
            elif not omit[k]:
                o[name] = decode_io.FLAG_DEFAULTS[name]
        o["hw_aqic"] = aqic[k][: alen[k]]
        o["hw_tapq"] = [[tapq_rc[k][j], tapq_irq[k][j]] for j in range(tlen[k])]
        out.append(o)
    return out


def test_large_input_mixed_variants_vectorised_equals_scalar(tmp_path: Path, capsys, monkeypatch):
    """300,000 lines, mixed variants, several chunks: every line answered in order with its
    id; the output equals the scalar reference (decode_one) on a random sample of lines plus
    every line of the rare variant and the chunk edges. Behaviour only, never wall-clock time."""
    n = 300_000
    objs = _random_objects(n, seed=83303)
    src = tmp_path / "big.jsonl"
    src.write_text("".join(json.dumps(o) + "\n" for o in objs))
    code, out, err = run_main(["decode", str(src)], capsys, monkeypatch)
    assert (code, err) == (0, "")
    got = lines(out)
    assert len(got) == n
    assert [g["id"] for g in got] == list(range(n))
    rng = np.random.default_rng(5)
    sample = set(rng.choice(n, 50_000, replace=False).tolist())
    sample |= {k for k, o in enumerate(objs) if o["variant"] == "hook-owns-fc"}
    chunk = decode_io.CHUNK
    sample |= {e for c in range(0, n, chunk) for e in (c, c + 1, c - 1) if 0 <= e < n}
    for k in sorted(sample):
        assert got[k] == expected_for(objs[k]), objs[k]
    kinds = {g["kind"] for g in got}
    assert kinds == {"USERSPACE_EXIT", "PROGRAM_INTERRUPT", "HOOK_HANDLED", "NO_HOOK_RC01"}
