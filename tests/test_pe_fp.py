"""The `fp` PE kind: config schema per kind, the golden model of the MAC unit's order, the FP32
adder, and the MAC unit and an array under cocotb on Verilator, bit-exact against golden.fp_mac.

MAC-level runs (block "mac", sim.tb_mac_fp): every code pair of E4M3 x E4M3 (exact mode),
E5M2 x E5M2 (fp32 mode), FP4 x FP4 (exact, with a tiny accumulator bound so long tiles poison),
FP6 E3M2 x FP6 E2M3 (exact, N = 4); bf16 corners and random pairs in both modes; random
multi-beat tiles with bubbles in every run. Array: FP8 E4M3 2:4 2x3, random stalls.
"""
import dataclasses
import json

import numpy as np
import pytest

from conftest import EXAMPLES, assert_passed, config_error
from nmforge.gen.config import (FP_ACCUMULATE_MODES, FP_FORMATS, PE_KINDS,
                                PE_KIND_SCHEMAS, ConfigError, load_config, parse_config)
from nmforge.gen.elaborate import module_name, to_verilog
from nmforge.gen.generate import Generated, generate
from nmforge.gen.manifest import build_manifest
from nmforge.golden import dot as D
from nmforge.golden import formats as F
from nmforge.golden import fp_mac as G
from nmforge.rtl.mac_fp import FpMac
from nmforge.sim.regression import run_regression

FP_EXAMPLE = EXAMPLES / "fp8e4m3_nm24_4x4.toml"
# config_hash of examples/nm24_int8_4x4.toml before PE kinds existed: int hashes are stable.
INT_DEFAULT_HASH = "17aacbac8a506e278a99af97d1a7e23ce4273d6cde8ad2352d7abae71245a73e"


def fp_config(name="f", rows=2, cols=3, nm="2:4", act="fp8_e4m3", weight="fp8_e4m3",
              accumulate="exact", **pe_extra):
    return parse_config({
        "name": name,
        "array": {"rows": rows, "cols": cols, "dataflow": "output_stationary"},
        "sparsity": {"nm": nm},
        "pe": {"kind": "fp", "act_format": act, "weight_format": weight,
               "accumulate": accumulate, **pe_extra},
    }, source="test")


def fp_table(**pe):
    base = {"kind": "fp", "act_format": "fp8_e4m3", "weight_format": "fp8_e4m3",
            "accumulate": "exact"}
    return {"name": "f", "array": {"rows": 2, "cols": 2, "dataflow": "output_stationary"},
            "sparsity": {"nm": "2:4"},
            "pe": {k: v for k, v in (base | pe).items() if v is not None}}


def int_table(**pe):
    table = fp_table()
    table["pe"] = {k: v for k, v in ({"kind": "int", "act_width": 8, "weight_width": 8,
                                      "acc_width": 32, "overflow": "wrap"} | pe).items()
                   if v is not None}
    return table


# --------------------------------------------------------------------------------- config


def test_kind_schema_table():
    assert PE_KINDS == ("int", "fp", "scalable", "mpgemm", "mx", "bitserial", "posit")
    assert set(PE_KIND_SCHEMAS) == set(PE_KINDS)
    assert PE_KIND_SCHEMAS["fp"].keys == ("act_format", "weight_format", "accumulate")
    assert PE_KIND_SCHEMAS["int"].keys == ("act_width", "weight_width", "acc_width", "overflow")
    # one list of formats everywhere: config, golden model, RTL
    from nmforge.rtl import mac_fp
    assert FP_FORMATS == G.FP_MAC_FORMATS == mac_fp.FP_FORMATS
    assert FP_ACCUMULATE_MODES == G.ACCUMULATE_MODES == mac_fp.ACCUMULATE_MODES
    for name in FP_FORMATS:
        cfg = fp_config(act=name, weight=name)
        assert cfg.act_bits == cfg.weight_bits == F.get_format(name).width


def test_fp_config_round_trip_and_hash():
    cfg = load_config(FP_EXAMPLE)
    assert (cfg.pe_kind, cfg.act_format, cfg.weight_format, cfg.accumulate) == (
        "fp", "fp8_e4m3", "fp8_e4m3", "exact")
    assert (cfg.nm, cfg.rows, cfg.cols) == ("2:4", 4, 4)
    assert cfg.act_width is None and cfg.acc_width is None and cfg.overflow is None
    assert cfg.to_dict()["pe"] == {"kind": "fp", "act_format": "fp8_e4m3",
                                   "weight_format": "fp8_e4m3", "accumulate": "exact"}
    assert parse_config(cfg.to_dict()) == cfg
    for change in (dict(accumulate="fp32"), dict(weight_format="fp8_e5m2")):
        assert dataclasses.replace(cfg, **change).config_hash() != cfg.config_hash()
    mixed = fp_config(act="fp6_e3m2", weight="bf16", accumulate="fp32")
    assert parse_config(mixed.to_dict()) == mixed


def test_int_config_hash_is_unchanged():
    assert load_config(EXAMPLES / "nm24_int8_4x4.toml").config_hash() == INT_DEFAULT_HASH


@pytest.mark.parametrize("pe, field, fragment, allowed", [
    (dict(act_format="fp8"), "pe.act_format", "unknown value 'fp8'", "'fp8_e4m3'"),
    (dict(weight_format="int8"), "pe.weight_format", "unknown value 'int8'", "'bf16'"),
    (dict(weight_format="e8m0"), "pe.weight_format", "unknown value", "'fp4_e2m1'"),
    (dict(act_format=8), "pe.act_format", "expected a string", "'fp6_e2m3'"),
    (dict(accumulate="fp16"), "pe.accumulate", "unknown value 'fp16'", "'exact', 'fp32'"),
    (dict(accumulate=None), "pe.accumulate", "missing", "'fp32'"),
    (dict(act_width=8), "pe.act_width", "does not apply to pe.kind 'fp'", "'act_format'"),
    (dict(overflow="wrap"), "pe.overflow", "does not apply to pe.kind 'fp'", "'accumulate'"),
    (dict(foo=1), "pe.foo", "unknown key", "'weight_format'"),
])
def test_fp_config_errors(pe, field, fragment, allowed):
    err = config_error(fp_table(**pe))
    assert err.field == field and fragment in str(err) and allowed in err.allowed


@pytest.mark.parametrize("pe, field, fragment, allowed", [
    (dict(act_format="fp8_e4m3"), "pe.act_format", "does not apply to pe.kind 'int'", "'acc_width'"),
    (dict(accumulate="exact"), "pe.accumulate", "does not apply to pe.kind 'int'", "'overflow'"),
])
def test_int_config_rejects_fp_keys(pe, field, fragment, allowed):
    err = config_error(int_table(**pe))
    assert err.field == field and fragment in str(err) and allowed in err.allowed


def test_unknown_kind_names_every_kind():
    err = config_error({**fp_table(), "pe": {"kind": "systolic"}})
    assert err.field == "pe.kind" and "unknown value 'systolic'" in str(err)
    assert err.allowed == ", ".join(repr(k) for k in PE_KINDS)


def test_config_object_checks_kind_fields():
    cfg = fp_config()
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(cfg, acc_width=32)
    assert info.value.field == "pe.acc_width"
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(cfg, act_format="posit8_0")
    assert info.value.field == "pe.act_format"


def test_cli_rejects_a_bad_fp_config(tmp_path, capsys):
    from nmforge.cli import main
    path = tmp_path / "bad.toml"
    path.write_text(FP_EXAMPLE.read_text().replace('accumulate = "exact"', 'accumulate = "kahan"'))
    assert main(["generate", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pe.accumulate" in err and "'exact', 'fp32'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_mac_block_needs_a_mac_testbench(tmp_path, capsys):
    from nmforge.cli import main
    code = main(["sim", str(EXAMPLES / "nm24_int8_4x4.toml"), "--block", "mac",
                 "-o", str(tmp_path / "out")])
    assert code == 2 and "no MAC-level testbench for pe.kind 'int'" in capsys.readouterr().err


def test_manifest_records_kind_formats_mode_latency(tmp_path):
    for accumulate in FP_ACCUMULATE_MODES:
        cfg = fp_config(name=f"m{accumulate}", rows=1, cols=1, accumulate=accumulate,
                        weight="fp8_e5m2")
        info = generate(cfg, tmp_path / accumulate, "mac").info
        pe = info["pe"]
        assert (pe["kind"], pe["act_format"], pe["weight_format"], pe["accumulate"]) == (
            "fp", "fp8_e4m3", "fp8_e5m2", accumulate)
        assert pe["mac_latency"] == info["latency_cycles"] > 0
        assert info["parameters"]["result_bits"] == 32 and info["parameters"]["act_bits"] == 8
        if accumulate == "exact":
            assert pe["acc_bits"] >= D.accumulator_bits("fp8_e4m3", "fp8_e5m2", 1 << 16)
            assert pe["max_products"] == 1 << 16
        else:
            assert pe["lanes"] >= 1
        array = generate(cfg, tmp_path / f"{accumulate}_array").info
        assert array["pe"] == pe and array["latency_cycles"] > pe["mac_latency"]
        assert array["interfaces"]["result"]["payload"]["element"]["element"] == {
            "kind": "int", "width": 32, "signed": False}


# ------------------------------------------------------------------------------ golden


@pytest.mark.parametrize("fa, fb", [("fp8_e4m3", "fp8_e4m3"), ("fp8_e5m2", "fp8_e5m2"),
                                    ("bf16", "bf16"), ("fp4_e2m1", "fp6_e2m3")])
def test_golden_fp_mac_agrees_with_dot(fa, fb):
    rng = np.random.default_rng(5)
    a = rng.integers(0, F.get_format(fa).num_codes, (200, 4, 2))
    b = rng.integers(0, F.get_format(fb).num_codes, (200, 4, 2))
    bits, _ = G.fp_mac_exact(fa, a, fb, b)
    assert (bits == G.fp32_bits(D.fp_dot_exact(fa, a.reshape(200, 8), fb, b.reshape(200, 8)))).all()
    bits, _ = G.fp_mac_fp32(fa, a[:, :, :1], fb, b[:, :, :1], lanes=1)
    assert (bits == G.fp32_bits(D.fp_dot_fp32(fa, a[:, :, 0], fb, b[:, :, 0]))).all()


def test_golden_fp_mac_order_and_flags():
    e5 = F.get_format("fp8_e5m2")
    one, big, inf, zero = (int(e5.encode(v)) for v in (1.0, 57344.0, np.inf, 0.0))
    neg = 0x80
    # the order is the hardware's: products 1, 1, 2^24 in sequence give (1 + 1) + 2^24 exactly;
    # with L = 2 slots, slot 0 gets 1 + 2^24 (a tie, rounded to even 2^24), slot 1 gets 1
    bf = F.get_format("bf16")
    h, u = int(bf.encode(2.0 ** 24)), int(bf.encode(1.0))
    tile_a = np.array([[u], [u], [h]])
    tile_b = np.array([[u], [u], [u]])
    seq, _ = G.fp_mac_fp32("bf16", tile_a, "bf16", tile_b, lanes=1)
    two, _ = G.fp_mac_fp32("bf16", tile_a, "bf16", tile_b, lanes=2)
    assert seq.view(np.float32) == np.float32(2.0 ** 24 + 2)
    assert two.view(np.float32) == np.float32(2.0 ** 24)
    lanes2, _ = G.fp_mac_fp32("bf16", np.array([[u, u, h]]), "bf16", np.array([[u, u, u]]), 1)
    assert lanes2.view(np.float32) == np.float32(2.0 ** 24 + 2)  # the tree: (1 + 1) + 2^24
    # inf * 0 is invalid (flag), inf + -inf is invalid, NaN operands propagate quietly
    for mode in FP_ACCUMULATE_MODES:
        bits, flag = G.fp_mac("fp8_e5m2", [[inf]], "fp8_e5m2", [[zero]], mode, 2)
        assert bits == G.FP32_QNAN and flag
        bits, flag = G.fp_mac("fp8_e5m2", [[inf, inf]], "fp8_e5m2", [[one, one | neg]], mode, 2)
        assert bits == G.FP32_QNAN and flag
        bits, flag = G.fp_mac("fp8_e5m2", [[0x7F]], "fp8_e5m2", [[one]], mode, 2)
        assert bits == G.FP32_QNAN and not flag
        bits, flag = G.fp_mac("fp8_e5m2", [[big, big]], "fp8_e5m2", [[big, big]], mode, 2)
        assert not flag and np.isfinite(bits.view(np.float32))
    # FP32 overflow: bf16 products beyond 2^128 (exact mode rounds the sum once)
    huge = int(bf.encode(2.0 ** 100))
    bits, flag = G.fp_mac_exact("bf16", [[huge]], "bf16", [[huge]])
    assert bits == 0x7F800000 and flag
    # the exact accumulator's bound: a partial sum beyond acc_bits poisons the tile
    bits, flag = G.fp_mac_exact("fp8_e5m2", [[big]] * 4, "fp8_e5m2", [[big]] * 4, acc_bits=40)
    assert bits == G.FP32_QNAN and flag


def test_fp32_adder_matches_numpy():
    """rtl.fp32.fp32_add on Amaranth's simulator: random, subnormal, cancelling and special
    operand pairs against numpy float32 addition (bits and the overflow/invalid flag)."""
    from amaranth import Module, Signal
    from amaranth.sim import Simulator
    from nmforge.rtl.fp32 import FP32_ADD_LATENCY, fp32_add

    rng = np.random.default_rng(3)
    count = 1500
    xs = rng.integers(0, 1 << 32, count, dtype=np.uint64).astype(np.uint32)
    ys = rng.integers(0, 1 << 32, count, dtype=np.uint64).astype(np.uint32)
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00001, 0x7F7FFFFF,
                        0x00800000, 0x00000001, 0x007FFFFF], dtype=np.uint32)
    xs[:200] = rng.choice(special, 200)
    ys[100:300] = rng.choice(special, 200)
    ys[300:600] = (xs[300:600] ^ 0x80000000) + rng.integers(-2, 3, 300).astype(np.uint32)
    xs[600:800] &= 0x807FFFFF  # subnormals
    ys[700:900] &= 0x807FFFFF
    ys[900:1200] = xs[900:1200] ^ rng.integers(0, 1 << 24, 300).astype(np.uint32)  # close exponents
    want, want_flag = G._add(xs.view(np.float32), ys.view(np.float32))
    want = G.fp32_bits(want)

    m = Module()
    x, y = Signal(32), Signal(32)
    bits, flag = fp32_add(m, x, y)
    got = []

    async def bench(ctx):
        for i in range(count + FP32_ADD_LATENCY):
            if i < count:
                ctx.set(x, int(xs[i]))
                ctx.set(y, int(ys[i]))
            await ctx.tick()
            if i + 1 >= FP32_ADD_LATENCY:
                got.append((ctx.get(bits), ctx.get(flag)))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for i, (g, f) in enumerate(got[:count]):
        assert (g, f) == (int(want[i]), int(want_flag[i])), \
            f"{xs[i]:#010x} + {ys[i]:#010x}: got {g:#010x} flag {f}, want {int(want[i]):#010x} {want_flag[i]}"


# ------------------------------------------------------------------------- simulations


def generate_mac(config, out_dir, **mac_options) -> Generated:
    """Like generate(config, out_dir, "mac"), with FpMac options the config does not expose."""
    mac = FpMac(config.n, config.act_format, config.weight_format, config.accumulate, **mac_options)
    module = module_name(config, "mac")
    text = to_verilog(mac, module)
    info = build_manifest(config, "mac", mac, module, text)
    out_dir.mkdir(parents=True, exist_ok=True)
    verilog, manifest = out_dir / f"{module}.v", out_dir / f"{module}.manifest.json"
    verilog.write_text(text)
    manifest.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return Generated(verilog, manifest, info)


MAC_RUNS = [
    # (name, act, weight, accumulate, nm, FpMac options, testbench options)
    pytest.param("e4m3x", "fp8_e4m3", "fp8_e4m3", "exact", "2:4", {}, {}, id="e4m3-exact-all-pairs"),
    pytest.param("e5m2f", "fp8_e5m2", "fp8_e5m2", "fp32", "3:4", {}, {}, id="e5m2-fp32-all-pairs-n3"),
    pytest.param("fp4x", "fp4_e2m1", "fp4_e2m1", "exact", "2:4", {"max_products": 4}, {},
                 id="fp4-exact-all-pairs-bound"),
    pytest.param("fp6x", "fp6_e3m2", "fp6_e2m3", "exact", "4:4", {}, {}, id="fp6-mixed-exact-all-pairs-n4"),
    pytest.param("bf16x", "bf16", "bf16", "exact", "2:4", {}, {"pairs": 8000}, id="bf16-exact-corners"),
    pytest.param("bf16f", "bf16", "bf16", "fp32", "1:2", {}, {"pairs": 8000}, id="bf16-fp32-corners"),
]


@pytest.mark.parametrize("name, act, weight, accumulate, nm, mac_options, options", MAC_RUNS)
def test_mac_against_golden(sim_cache, name, act, weight, accumulate, nm, mac_options, options):
    config = fp_config(name=name, nm=nm, act=act, weight=weight, accumulate=accumulate)
    work = sim_cache / f"{name}-mac"
    generated = generate_mac(config, work, **mac_options)
    if "max_products" in mac_options:
        assert generated.info["pe"]["acc_bits"] < 16  # small enough for random tiles to exceed
    result = run_regression(generated.verilog, generated.manifest, work, seed=21,
                            options={"tiles": 300, "stall": 0.3} | options, log=lambda line: None)
    assert_passed(result)
    log = result.log.read_text()
    exhaustive = F.get_format(act).num_codes * F.get_format(weight).num_codes <= 1 << 16
    assert ("checked all" in log) == exhaustive


def test_array_fp8_e4m3_under_random_stalls_and_each_pe_overflowing_alone(simulate):
    """Random GEMMs under stalls, after the per-PE overflow sweep: each PE alone sums beats of
    two 448 x 448 products until its exact accumulator leaves its range, and the flag rises."""
    config = fp_config(name="arrfp", rows=2, cols=3, nm="2:4", accumulate="exact")
    result, generated = simulate(config, "array", seed=13, gemms=4, stall=0.3, sweep_beats=1 << 20)
    assert_passed(result)
    assert generated.info["pe"]["kind"] == "fp"
    beats = fewest_overflowing_beats(generated.info["pe"]["acc_bits"])
    assert f"overflow of each PE alone: 6 of 6 PEs, {beats} beats each" in result.log.read_text()


def fewest_overflowing_beats(acc_bits):
    """Beats of two E4M3 max-value products (448 = 0x7E) after which golden.fp_mac_exact's
    acc_bits-bit accumulator has overflowed: the flag and a NaN, and not one beat earlier."""
    fmt = F.get_format("fp8_e4m3")
    assert fmt.decode(np.array([0x7E]))[0] == 448.0
    bound = 1 << (acc_bits - 1)
    per_beat = 2 * (448 * 448) * 2 ** 18  # in units of the accumulator's LSB, 2^-18
    beats = bound // per_beat + 1
    for count, flagged in ((beats, True), (beats - 1, False)):
        codes = np.full((1, count, 2), 0x7E)
        bits, flag = G.fp_mac_exact(fmt, codes, fmt, codes, acc_bits)
        assert bool(flag[0]) == flagged and (bits[0] == 0x7FC00000) == flagged, count
    return beats


def test_regression_detects_a_wrong_fp_model(simulate):
    """The array testbench can fail for fp: tell it the design accumulates in FP32 (in sequence)
    when it accumulates exactly, and it must report a mismatch (same build as above). The lied
    run's sim.log shows that mismatch on purpose (seed 4, GEMM 0, 4x28x6: the RTL's exact sums,
    e.g. 1178156449, one ulp from the sequential FP32 sums the lie predicts; the RTL's value is
    the exact rational sum rounded once, as golden.fp_mac_exact says)."""
    config = fp_config(name="arrfp", rows=2, cols=3, nm="2:4", accumulate="exact")
    result, generated = simulate(config, "array", seed=4, gemms=2, stall=0)
    assert_passed(result)
    info = generated.info
    info["pe"] |= {"accumulate": "fp32", "lanes": 1}
    generated.manifest.write_text(json.dumps(info))
    lied = run_regression(generated.verilog, generated.manifest, generated.verilog.parent, 4,
                          options={"gemms": 2, "stall": 0}, log=lambda line: None, waves_on_failure=False)
    assert not lied.passed
