"""The `posit` PE kind (issue 3: posit(8,0) and posit(16,1) multiply-accumulate with exact,
quire-style accumulation): config schema and errors, the golden tile model
(golden.posit_mac: exact products, a SoftPosit-sized quire with its carry-guard bound, one
rounding), and the RTL under cocotb on Verilator, bit-exact against it:

- MAC level (sim/tb_mac_posit.py): EVERY posit(8,0) x posit(8,0) pair (65,536 single-product
  tiles back to back, 2:4 so N = 2); posit(16,1) corner x corner and random pairs; random
  multi-beat tiles (random codes with NaR, corners, cancelling pairs, wide range, long runs of
  +-maxpos^2) with bubbles for both formats; the quire bound exactly at 2^(Q-1) (Q = 32 and
  Q = 128: 128 and 32,768 maxpos^2 products).
- PE (posit16 2:4, with bubbles) and array (the example, posit8 2:4 2x2, random stalls) through
  the generic tb_pe / tb_array and sim.kinds.PositKind; a deliberately wrong golden model makes
  the array regression fail.
"""
import dataclasses
import json

import numpy as np
import pytest
import softposit as sp

from conftest import EXAMPLES, assert_passed, config_error
from nmforge.gen.config import (PE_KINDS, PE_KIND_SCHEMAS, POSIT_FORMATS, ConfigError,
                                load_config, parse_config)
from nmforge.gen.generate import generate
from nmforge.golden import dot as D
from nmforge.golden import formats as F
from nmforge.golden import posit_mac as G
from nmforge.rtl import mac_posit as R
from nmforge.sim.kinds import PositKind, kind_model
from nmforge.sim.regression import run_regression

POSIT_EXAMPLE = EXAMPLES / "posit8_nm24_2x2.toml"


def posit_table(**pe):
    base = {"kind": "posit", "format": "posit8_0"}
    return {"name": "p", "array": {"rows": 2, "cols": 2, "dataflow": "output_stationary"},
            "sparsity": {"nm": pe.pop("nm", "2:4")},
            "pe": {k: v for k, v in (base | pe).items() if v is not None}}


def posit_config(name="p", rows=2, cols=2, nm="2:4", format="posit8_0"):
    table = posit_table(nm=nm, format=format)
    table["name"], table["array"]["rows"], table["array"]["cols"] = name, rows, cols
    return parse_config(table, source="test")


# --------------------------------------------------------------------------------- config


def test_kind_schema_and_format_lists():
    assert "posit" in PE_KINDS
    assert PE_KIND_SCHEMAS["posit"].keys == ("format",)
    # one list of formats everywhere: config, golden model, RTL
    assert POSIT_FORMATS == G.POSIT_MAC_FORMATS == R.POSIT_FORMATS == ("posit8_0", "posit16_1")
    for name in POSIT_FORMATS:
        cfg = posit_config(format=name)
        assert cfg.act_bits == cfg.weight_bits == F.get_format(name).width
        assert cfg.pe_summary == f"{name} x {name} -> quire -> {name}"


def test_example_round_trip_and_hash():
    cfg = load_config(POSIT_EXAMPLE)
    assert (cfg.pe_kind, cfg.format, cfg.nm, cfg.rows, cfg.cols) == ("posit", "posit8_0", "2:4", 2, 2)
    assert cfg.to_dict()["pe"] == {"kind": "posit", "format": "posit8_0"}
    assert parse_config(cfg.to_dict()) == cfg
    assert dataclasses.replace(cfg, format="posit16_1").config_hash() != cfg.config_hash()


@pytest.mark.parametrize("pe, field, fragment, allowed", [
    (dict(format="posit4_1"), "pe.format", "unknown value 'posit4_1'", "'posit8_0', 'posit16_1'"),
    (dict(format="posit8"), "pe.format", "unknown value 'posit8'", "'posit16_1'"),
    (dict(format="mxfp4"), "pe.format", "unknown value 'mxfp4'", "'posit8_0'"),
    (dict(format=8), "pe.format", "expected a string", "'posit8_0'"),
    (dict(act_width=8), "pe.act_width", "does not apply to pe.kind 'posit'", "'format'"),
    (dict(block_size=32), "pe.block_size", "does not apply to pe.kind 'posit'", "'format'"),
    (dict(foo=1), "pe.foo", "unknown key", "'format'"),
])
def test_posit_config_errors(pe, field, fragment, allowed):
    err = config_error(posit_table(**pe))
    assert err.field == field and fragment in str(err) and allowed in err.allowed


def test_missing_posit_format_is_one_line():
    # `format` is shared with kind "mx": gen.config gives no allowed text for a missing one
    with pytest.raises(ConfigError) as info:
        parse_config(posit_table(format=None), source="x.toml")
    assert info.value.field == "pe.format" and "missing" in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_rejects_posit4(tmp_path, capsys):
    from nmforge.cli import main
    path = tmp_path / "bad.toml"
    path.write_text(POSIT_EXAMPLE.read_text().replace('"posit8_0"', '"posit4_1"'))
    assert main(["generate", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pe.format" in err and "'posit16_1'" in err
    assert not (tmp_path / "out").exists()


def test_manifest_records_format_quire_latency(tmp_path):
    for name, q in (("posit8_0", 32), ("posit16_1", 128)):
        cfg = posit_config(name=f"m{name}", rows=1, cols=1, format=name)
        info = generate(cfg, tmp_path / name, "mac").info
        pe = info["pe"]
        assert (pe["kind"], pe["format"], pe["result_format"], pe["quire_bits"]) == (
            "posit", name, name, q)
        assert pe["quire_lsb_exp"] == G.quire_lsb_exp(name)
        assert pe["mac_latency"] == info["latency_cycles"] > 0
        width = F.get_format(name).width
        assert info["parameters"]["result_bits"] == width == info["parameters"]["act_bits"]
        array = generate(cfg, tmp_path / f"{name}_array").info
        assert array["pe"] == pe and array["latency_cycles"] > pe["mac_latency"]
        assert array["interfaces"]["result"]["payload"]["element"]["element"] == {
            "kind": "int", "width": width, "signed": False}


def test_rtl_rejects_bad_parameters():
    with pytest.raises(ValueError, match="'posit4_1' is not supported; allowed: posit8_0, posit16_1"):
        R.PositMac(2, "posit4_1")
    with pytest.raises(ValueError, match="quire_bits 20 cannot hold one beat; allowed: >= 29"):
        R.PositMac(2, "posit8_0", quire_bits=20)


# ------------------------------------------------------------------------------ golden


def softposit_quire(n, pairs):
    ctype = sp.posit8_t if n == 8 else sp.posit16_t
    clr, fdp, to_p = ((sp.q8Clr, sp.q8_fdp_add, sp.q8_to_p8) if n == 8
                      else (sp.q16Clr, sp.q16_fdp_add, sp.q16_to_p16))
    q = clr()
    for x, y in pairs:
        px, py = ctype(), ctype()
        px.v, py.v = int(x), int(y)
        q = fdp(q, px, py)
    return to_p(q).v


@pytest.mark.parametrize("name", POSIT_FORMATS)
def test_golden_tiles_equal_quire_dot_and_softposit(name):
    f = F.get_format(name)
    rng = np.random.default_rng(31)
    a = PositKind.codes(f, rng, (400, 5, 2), 0.01)
    b = PositKind.codes(f, rng, (400, 5, 2), 0.01)
    codes, flags = G.posit_mac(name, a, b)
    assert not flags.any()
    assert (codes == D.posit_dot_quire(name, a.reshape(400, 10), b.reshape(400, 10))).all()
    for t in range(0, 400, 7):  # SoftPosit's quire, pair by pair (no NaR: its quire8 mishandles it)
        if not ((a[t] == f.nar) | (b[t] == f.nar)).any():
            assert codes[t] == softposit_quire(f.width, zip(a[t].ravel(), b[t].ravel()))
    assert (codes[((a == f.nar) | (b == f.nar)).any(axis=(1, 2))] == f.nar).all()


def test_golden_quire_layout_and_bound():
    assert (G.quire_bits("posit8_0"), G.quire_lsb_exp("posit8_0")) == (32, -12)
    assert (G.quire_bits("posit16_1"), G.quire_lsb_exp("posit16_1")) == (128, -56)
    assert G.max_safe_products("posit8_0") == 127 and G.max_safe_products("posit16_1") == 32767
    maxpos, neg = 0x7F, 0x81

    def run(codes, n=1):
        a = np.array(codes).reshape(-1, n)
        return G.posit_mac("posit8_0", a, np.full(a.shape, maxpos))

    # 127 products of maxpos^2 fit (2^19 - 2^12), 128 reach 2^(Q-1): NaR and the flag
    assert [int(x) for x in run([maxpos] * 127)] == [maxpos, 0]
    assert [int(x) for x in run([maxpos] * 128)] == [0x80, 1]
    assert [int(x) for x in run([neg] * 128)] == [0x80, 1]          # -2^(Q-1): the NaR pattern
    assert [int(x) for x in run([neg] * 127)] == [neg, 0]
    # a partial sum beyond the bound poisons the tile even if the final sum fits again
    assert [int(x) for x in run([maxpos] * 128 + [neg] * 2, n=2)] == [0x80, 1]
    # the bound is checked after each beat: within a beat only the beat's sum counts
    assert [int(x) for x in run([maxpos] * 127 + [maxpos, neg], n=1)] == [0x80, 1]
    assert [int(x) for x in run([0] + [maxpos] * 127 + [maxpos, neg], n=2)] == [maxpos, 0]
    # NaR operands: NaR without the flag; NaR x 0 is NaR
    assert [int(x) for x in G.posit_mac("posit8_0", [[0x80, 0x40]], [[0, 0x40]])] == [0x80, 0]
    # a narrower quire (what a MAC built with quire_bits models)
    assert [int(x) for x in G.posit_mac("posit8_0", np.full((8, 2), maxpos),
                                        np.full((8, 2), maxpos), quire=29)] == [0x80, 1]
    with pytest.raises(ValueError, match="'posit4_1' is not a posit PE format; allowed: posit8_0, "
                                         "posit16_1"):
        G.posit_mac("posit4_1", [[[0]]], [[[0]]])
    with pytest.raises(ValueError, match="operands must have equal shapes"):
        G.posit_mac("posit8_0", [[0, 0]], [[0]])


def test_golden_rounding_never_to_zero_or_nar():
    """Sums below minpos round to +-minpos, above maxpos to +-maxpos; exact 0 is 0; ties go
    to the even code (posit16: 1 + 2^-13 is halfway between 1 and its successor)."""
    tiny, one = 0x01, 0x40
    assert int(G.posit_mac("posit8_0", [[tiny]], [[tiny]])[0]) == tiny      # minpos^2
    assert int(G.posit_mac("posit8_0", [[tiny]], [[0xFF]])[0]) == 0xFF      # -minpos^2
    assert int(G.posit_mac("posit8_0", [[0x7F, 0x7F]], [[0x7F, 0x7F]])[0]) == 0x7F
    assert int(G.posit_mac("posit8_0", [[one, one]], [[one, 0xC0]])[0]) == 0  # 1 - 1
    f = F.get_format("posit16_1")
    half_ulp = int(f.encode(2.0 ** -13))  # 1 + 2^-13: a tie between 0x4000 and 0x4001
    got = G.posit_mac("posit16_1", [[0x4000, half_ulp]], [[0x4000, 0x4000]])[0]
    assert int(got) == 0x4000


def test_kind_model_golden_uses_only_kept_pairs():
    info = {"parameters": {"pe_kind": "posit", "n": 2, "m": 4, "dense": False},
            "pe": {"format": "posit8_0", "quire_bits": 32}}
    kind = kind_model(info)
    assert isinstance(kind, PositKind) and kind.k_multiple == 4
    rng = np.random.default_rng(3)
    ops = kind.random_gemm(rng, (3, 8, 5))
    c, overflowed = kind.golden(ops)
    assert c.shape == (3, 5) and not overflowed
    # the same sums from the decompressed weights, pruned positions hold 0 (NaR activations
    # at pruned positions must not leak: fixed here to finite codes)
    a = np.where(ops.a == 0x80, 0x40, ops.a)
    c2, _ = kind.golden(dataclasses.replace(ops, a=a))
    dense = np.zeros((8, 5), dtype=np.int64)
    for g in range(2):
        for lane in range(2):
            for j in range(5):
                dense[g * 4 + ops.indices[g * 2 + lane, j], j] = ops.values[g * 2 + lane, j]
    want = [[int(D.posit_dot_quire("posit8_0", a[i], dense[:, j])) for j in range(5)]
            for i in range(3)]
    assert (c2 == np.array(want)).all()
    corners = PositKind.corner_codes(F.get_format("posit8_0"))
    assert {0, 0x80, 0x7F, 0x81, 0x01, 0xFF, 0x40, 0xC0} <= set(corners.tolist())


# ------------------------------------------------------------------------- simulations


@pytest.mark.parametrize("name, fmt, options", [
    pytest.param("p8mac", "posit8_0", {}, id="posit8-all-pairs-tiles-bound"),
    pytest.param("p16mac", "posit16_1", {"pairs": 6000}, id="posit16-corners-tiles-bound",
                 marks=pytest.mark.slow),
])
def test_mac_against_golden(sim_cache, name, fmt, options):
    config = posit_config(name=name, rows=1, cols=1, format=fmt)
    work = sim_cache / f"{name}-mac"
    generated = generate(config, work, "mac")
    result = run_regression(generated.verilog, generated.manifest, work, seed=23,
                            options={"tiles": 250, "stall": 0.3} | options, log=lambda line: None)
    assert_passed(result)
    log = result.log.read_text()
    assert ("checked all 65536 posit8_0 x posit8_0 pairs" in log) == (fmt == "posit8_0")
    assert f"Q = {G.quire_bits(fmt)}" in log and "with overflow" in log


@pytest.mark.slow
def test_pe_posit16_with_bubbles(simulate):
    config = posit_config(name="p16pe", format="posit16_1")
    result, generated = simulate(config, "pe", seed=9, tiles=40, stall=0.3)
    assert_passed(result)
    assert generated.info["pe"]["format"] == "posit16_1"


def test_example_array_under_random_stalls(simulate):
    config = load_config(POSIT_EXAMPLE)
    result, generated = simulate(config, "array", seed=13, gemms=4, stall=0.3)
    assert_passed(result)
    assert generated.info["pe"]["kind"] == "posit"


def test_regression_detects_a_wrong_posit_model(simulate):
    """The array testbench can fail for posit: tell it the quire is 12 bits narrower than it is
    (Q = 20: every partial sum of 2^7 or more overflows in the model), and it must report a
    mismatch (same build as the example's array run)."""
    config = load_config(POSIT_EXAMPLE)
    result, generated = simulate(config, "array", seed=4, gemms=2, stall=0)
    assert_passed(result)
    info = generated.info
    info["pe"]["quire_bits"] = 20
    generated.manifest.write_text(json.dumps(info))
    lied = run_regression(generated.verilog, generated.manifest, generated.verilog.parent, 4,
                          options={"gemms": 2, "stall": 0}, log=lambda line: None, waves_on_failure=False)
    assert not lied.passed
