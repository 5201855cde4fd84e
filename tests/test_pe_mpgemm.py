"""The `mpgemm` PE kind: config schema, the golden GEMM (golden.dot.mpgemm_gemm: per-group scale
and zero point after the group's integer sums, wrapping accumulator, dyadic requantization),
the MAC unit on Amaranth's simulator (random multi-group tiles with bubbles, small accumulators
that wrap, the requantizer's corners, malformed tiles), and the PE and arrays (2:4 and dense)
under cocotb on Verilator through the generic tb_pe / tb_array, plus a wrong model that must fail.
"""
import json

import numpy as np
import pytest
from amaranth.sim import Simulator

from conftest import EXAMPLES, assert_passed, config_error
from nmforge.gen.config import (PE_KINDS, MPGEMM_ACT_FORMATS, MPGEMM_GROUP_SIZES,
                                MPGEMM_WEIGHT_FORMATS, PE_KIND_SCHEMAS, load_config,
                                parse_config)
from nmforge.gen.elaborate import MAC_DESCRIBERS
from nmforge.gen.manifest import describe_interfaces
from nmforge.golden import dot as D
from nmforge.golden.ints import wrap
from nmforge.golden.nm import decompress_nm
from nmforge.rtl import mac_mpgemm
from nmforge.rtl.mac_mpgemm import MpgemmMac
from nmforge.sim.kinds import MpgemmKind, Operands
from nmforge.sim.payload import pack
from nmforge.sim.regression import run_regression

EXAMPLE = EXAMPLES / "mpgemm_int4_nm24_2x2.toml"


def mp_table(nm="2:4", rows=2, cols=2, **pe):
    base = {"kind": "mpgemm", "act_format": "int8", "weight_format": "int4", "group_size": 16,
            "out_width": 8}
    return {"name": "mp", "array": {"rows": rows, "cols": cols, "dataflow": "output_stationary"},
            "sparsity": {"nm": nm}, "pe": {k: v for k, v in (base | pe).items() if v is not None}}


def mp_config(name="mp", **kwargs):
    return parse_config(mp_table(**kwargs) | {"name": name}, source="test")


# --------------------------------------------------------------------------------- config


def test_config_schema_and_example():
    assert "mpgemm" in PE_KINDS
    assert PE_KIND_SCHEMAS["mpgemm"].keys == ("act_format", "weight_format", "group_size",
                                              "out_width")
    # one list of formats everywhere: config, golden model, RTL
    assert set(MPGEMM_ACT_FORMATS) == set(D.MPGEMM_ACT_FORMATS) == set(mac_mpgemm.ACT_FORMATS)
    assert set(MPGEMM_WEIGHT_FORMATS) == set(D.MPGEMM_WEIGHT_FORMATS) == set(
        mac_mpgemm.WEIGHT_FORMATS)
    assert MPGEMM_GROUP_SIZES == mac_mpgemm.GROUP_SIZES
    cfg = load_config(EXAMPLE)
    assert (cfg.pe_kind, cfg.act_format, cfg.weight_format, cfg.group_size, cfg.out_width) == (
        "mpgemm", "int8", "int4", 32, 8)
    assert (cfg.act_bits, cfg.weight_bits) == (8, 4)
    assert parse_config(cfg.to_dict()) == cfg
    assert cfg.to_dict()["pe"] == {"kind": "mpgemm", "act_format": "int8", "weight_format": "int4",
                                   "group_size": 32, "out_width": 8}


@pytest.mark.parametrize("pe, field, fragment, allowed", [
    (dict(act_format="int4"), "pe.act_format", "'int4'", "'int8', 'int16'"),
    (dict(act_format="fp8_e4m3"), "pe.act_format", "'fp8_e4m3'", "'int16'"),
    (dict(weight_format="int8"), "pe.weight_format", "'int8'", "'uint2'"),
    (dict(group_size=48), "pe.group_size", "48", "16, 32, 64, 128"),
    (dict(group_size="32"), "pe.group_size", "", "128"),
    (dict(out_width=3), "pe.out_width", "3", "4..32"),
    (dict(out_width=33), "pe.out_width", "33", "4..32"),
    (dict(out_width=None), "pe.out_width", "missing", "4..32"),
    (dict(acc_width=32), "pe.acc_width", "does not apply to pe.kind 'mpgemm'", "'group_size'"),
])
def test_config_errors(pe, field, fragment, allowed):
    err = config_error(mp_table(**pe))
    assert err.field == field and fragment in str(err) and allowed in err.allowed


# ------------------------------------------------------------------------------- golden


def naive_gemm(a, values, indices, n, m, scales, zeros, mult, shift, group_size, out_width):
    """Straight from the definition with Python ints, on the decompressed weights: a pruned
    position (kept = False) contributes nothing; no accumulator limit. Returns (y, saturated)."""
    w = decompress_nm(values, indices, n, m)
    kept = decompress_nm(np.ones_like(values), indices, n, m).astype(bool)
    rows, k = a.shape
    y = np.zeros((rows, w.shape[1]), dtype=np.int64)
    lo, hi = -(1 << (out_width - 1)), (1 << (out_width - 1)) - 1
    saturated = False
    for i in range(rows):
        for j in range(w.shape[1]):
            acc = 0
            for q in range(k // group_size):
                acc += int(scales[q, j]) * sum(
                    (int(w[x, j]) - int(zeros[q, j])) * int(a[i, x])
                    for x in range(q * group_size, (q + 1) * group_size) if kept[x, j])
            v = acc * int(mult[j])
            if shift[j]:
                v = (v + (1 << (int(shift[j]) - 1))) // (1 << int(shift[j]))
            y[i, j] = min(max(v, lo), hi)
            saturated |= y[i, j] != v
    return y, saturated


def random_case(rng, rows, k, cols, n, m, group_size, wlo=-8, whi=7, alo=-128, ahi=127):
    groups, quant = k // m, k // group_size
    a = rng.integers(alo, ahi, (rows, k), endpoint=True)
    values = rng.integers(wlo, whi, (groups * n, cols), endpoint=True)
    indices = np.array([[sorted(rng.choice(m, n, replace=False)) for _ in range(cols)]
                        for _ in range(groups)]).transpose(0, 2, 1).reshape(groups * n, cols)
    scales = rng.integers(-(1 << 15), 1 << 15, (quant, cols))
    zeros = rng.integers(wlo, whi, (quant, cols), endpoint=True)
    return a, values, indices, scales, zeros


@pytest.mark.parametrize("n, m, group_size, wfmt, afmt", [
    (2, 4, 16, "int4", "int8"), (4, 4, 32, "uint4", "int16"), (1, 2, 16, "int2", "int8"),
    (3, 8, 16, "uint2", "int16")])
def test_golden_matches_the_definition(n, m, group_size, wfmt, afmt):
    from nmforge.golden import formats as F
    fw, fa = F.get_format(wfmt), F.get_format(afmt)
    rng = np.random.default_rng(7)
    for trial in range(6):
        a, values, indices, scales, zeros = random_case(rng, 3, group_size * (trial % 3 + 1), 2,
                                                        n, m, group_size, fw.lo, fw.hi,
                                                        fa.lo, fa.hi)
        mult = rng.integers(0, 1 << 16, 2)
        shift = rng.integers(0, 64, 2)
        shift[0] = trial * 7  # include shift 0
        y, acc, overflowed = D.mpgemm_gemm(a, values, indices, n, m, scales, zeros, mult, shift,
                                           group_size, 12, 48, wfmt, afmt)
        want, saturated = naive_gemm(a, values, indices, n, m, scales, zeros, mult, shift,
                                     group_size, 12)
        assert (y == want).all() and overflowed == saturated


def test_golden_pruned_weights_contribute_nothing():
    # one group of 16, 2:4: the zero point applies to the kept pairs only
    a = np.full((1, 16), 3)
    values = np.zeros((8, 1), dtype=np.int64)
    indices = np.tile([[0], [1]], (4, 1))
    y, acc, _ = D.mpgemm_gemm(a, values, indices, 2, 4, [[2]], [[5]], [1], [0], 16, 32, 48)
    assert acc[0, 0] == 2 * (0 - 5) * 3 * 8  # 8 kept pairs, not 16
    assert y[0, 0] == acc[0, 0]


def test_golden_requantize_rounds_half_up_and_saturates():
    # a single pair per group: acc = scale * w * a
    def one(acc_value, mult, shift, out_width=8):
        a = np.zeros((1, 16), dtype=np.int64)
        a[0, 0] = acc_value
        y, acc, ovf = D.mpgemm_gemm(a, np.array([[1]]), np.array([[0]]), 1, 16, [[1]], [[0]],
                                    [mult], [shift], 16, out_width, 48, "int4", "int16")
        assert acc[0, 0] == acc_value
        return int(y[0, 0]), ovf
    assert one(5, 1, 1) == (3, False)      # 2.5 -> 3
    assert one(-5, 1, 1) == (-2, False)    # -2.5 -> -2
    assert one(-11, 3, 2) == (-8, False)   # -8.25 -> -8
    assert one(127, 1, 0) == (127, False)
    assert one(128, 1, 0) == (127, True)   # saturates: flagged
    assert one(-32768, 1, 8) == (-128, False)
    assert one(-32768, 3, 8) == (-128, True)
    assert one(32767, 65535, 63) == (0, False)
    assert one(32767, 0, 5) == (0, False)


def test_golden_accumulator_wraps_and_flags():
    rng = np.random.default_rng(3)
    a, values, indices, scales, zeros = random_case(rng, 2, 64, 2, 2, 4, 16)
    wide, acc_wide, ovf_wide = D.mpgemm_gemm(a, values, indices, 2, 4, scales, zeros, [1, 1],
                                             [0, 0], 16, 32, 48)
    assert ovf_wide == bool((np.abs(acc_wide) >= 1 << 31).any())  # only saturation
    _, acc, ovf = D.mpgemm_gemm(a, values, indices, 2, 4, scales, zeros, [1, 1], [0, 0], 16, 32,
                                20)
    assert ovf and (acc == wrap(acc_wide, 20)).all()
    with pytest.raises(ValueError, match="group_size"):
        D.mpgemm_gemm(a[:, :48], values[:24], indices[:24], 2, 4, scales, zeros, [1, 1], [0, 0],
                      32, 8, 48)
    with pytest.raises(ValueError, match="scale"):
        D.mpgemm_gemm(a, values, indices, 2, 4, scales + (1 << 16), zeros, [1, 1], [0, 0], 16,
                      8, 48)
    with pytest.raises(ValueError, match="zero_points"):
        D.mpgemm_gemm(a, values, indices, 2, 4, scales, zeros + 16, [1, 1], [0, 0], 16, 8, 48)
    with pytest.raises(ValueError, match="shift"):
        D.mpgemm_gemm(a, values, indices, 2, 4, scales, zeros, [1, 1], [0, 64], 16, 8, 48)


# ----------------------------------------------------------------- MAC unit (Amaranth sim)


def mac_info(mac):
    """The parts of a manifest the kind model reads, for a MAC unit built in the test."""
    return {"parameters": {"n": mac.n, "m": mac.m}, "pe": MAC_DESCRIBERS["mpgemm"](mac),
            "interfaces": describe_interfaces(mac)}


def tile_beats(ops, n, m):
    """The MAC's beats of a one-row, one-column GEMM: the kept activations of each beat."""
    beats = []
    for g in range(ops.a.shape[1] // m):
        lanes = slice(g * n, (g + 1) * n)
        beats.append({"a": [int(ops.a[0, g * m + i]) for i in ops.indices[lanes, 0]],
                      "w": [int(v) for v in ops.values[lanes, 0]],
                      "side": int(ops.w_side[g, 0])})
    return beats


def run_mac(mac, tiles, bubble=0.3, seed=0, spans=False):
    """Stream tiles (lists of beats) back to back with random bubbles (junk on every input);
    returns [(result, overflow, cycles after the last beat)] per published result and the
    cycles of overflow pulses without a result (and with `spans`, each tile's (first, last)
    beat cycle, on the same clock as the pulses: a beat's pulse comes latency - 1 later)."""
    rng = np.random.default_rng(seed)
    schedule = []
    for beats in tiles:
        for i, beat in enumerate(beats):
            while rng.random() < bubble:
                schedule.append(None)
            schedule.append(beat | {"last": int(i == len(beats) - 1), "first": i == 0})
    side_width = len(mac.w_side.as_value())
    out, lasts, firsts, stray = [], [], [], []

    async def bench(ctx):
        for cycle in range(len(schedule) + mac.latency + 2):
            beat = schedule[cycle] if cycle < len(schedule) else None
            if beat is None:  # a bubble: junk everywhere, including `last`
                ctx.set(mac.a.as_value(), int(rng.integers(0, 1 << 62)))
                ctx.set(mac.w.as_value(), int(rng.integers(0, 1 << 16)))
                ctx.set(mac.w_side.as_value(), int(rng.integers(0, 1 << side_width)))
                ctx.set(mac.valid, 0)
                ctx.set(mac.last, int(rng.integers(0, 2)))
            else:
                ctx.set(mac.a, beat["a"])
                ctx.set(mac.w, beat["w"])
                ctx.set(mac.w_side.as_value(), beat["side"])
                ctx.set(mac.valid, 1)
                ctx.set(mac.last, beat["last"])
                if beat.get("first"):
                    firsts.append(cycle)
                if beat["last"]:
                    lasts.append(cycle)
            await ctx.tick()
            if ctx.get(mac.result_valid):
                out.append((ctx.get(mac.result), bool(ctx.get(mac.overflow)), cycle))
            elif ctx.get(mac.overflow):
                stray.append(cycle)

    sim = Simulator(mac)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(out) == len(lasts)
    got = [(r, o, c - l) for (r, o, c), l in zip(out, lasts)]
    return (got, stray, list(zip(firsts, lasts))) if spans else (got, stray)


MAC_CASES = [
    # (n, m, act, weight, group_size, out_width, acc_bits override)
    pytest.param(2, 4, "int8", "int4", 16, 8, None, id="int8-int4-2of4-g16"),
    pytest.param(4, 4, "int16", "uint4", 32, 16, None, id="int16-uint4-dense-g32"),
    pytest.param(1, 16, "int8", "uint2", 16, 12, None, id="int8-uint2-1of16-g16-one-beat-groups"),
    pytest.param(8, 8, "int16", "int4", 128, 32, None, id="int16-int4-dense-g128-wide"),
    pytest.param(2, 4, "int16", "int2", 16, 20, 30, id="int16-int2-acc30-wraps"),
]


@pytest.mark.parametrize("n, m, act, weight, group_size, out_width, acc_bits", MAC_CASES)
def test_mac_random_tiles(n, m, act, weight, group_size, out_width, acc_bits):
    mac = MpgemmMac(n, m, act, weight, group_size, out_width, acc_bits=acc_bits)
    kind = MpgemmKind(mac_info(mac))
    rng = np.random.default_rng(n * 100 + m)
    tiles, want = [], []
    for t in range(24):
        k = group_size * int(rng.integers(1, 5 if group_size < 128 else 3))
        ops = kind.random_gemm(rng, (1, k, 1), extreme=t % 4 == 3)
        if acc_bits is not None and t % 2:  # long tiles of full-scale values: the acc wraps
            ops = kind.random_gemm(rng, (1, group_size * 12, 1), extreme=True)
        y, overflowed = kind.golden(ops)
        tiles.append(tile_beats(ops, n, m))
        want.append((int(y[0, 0]), overflowed))
    got, stray = run_mac(mac, tiles, seed=n + m)
    assert not stray
    assert [(r, o) for r, o, _ in got] == want
    # the result is read after the clock edge that loads it: `latency` edges after the last
    # beat's input edge, i.e. latency - 1 loop iterations after its own
    assert {lat for _, _, lat in got} == {mac.latency - 1}
    if acc_bits is not None:
        assert any(o for _, o in want)


def test_mac_requantizer_corners():
    """acc = x from one pair (scale 1, zero 0, w 1), then every shift 0..63 with mult 1 and
    65535, x at powers of two, their neighbours and ties: the rounding and the saturation."""
    mac = MpgemmMac(1, 16, "int16", "int4", 16, 16)
    kind = MpgemmKind(mac_info(mac))
    tiles, want = [], []
    xs = [0, 1, -1, 3, -3, 5, -5, 32767, -32768, 1 << 14, -(1 << 14), 12345, -12345]
    for shift in range(64):
        for mult in (1, 65535, 3):
            x = xs[(shift + mult) % len(xs)]
            side = pack(kind.side, {"scale": 1, "zero": 0, "mult": mult, "shift": shift})
            ops = Operands(np.array([[x] + [0] * 15]), np.array([[1]]), np.array([[0]]), None,
                           np.array([[side]]))
            y, overflowed = kind.golden(ops)
            tiles.append(tile_beats(ops, 1, 16))
            want.append((int(y[0, 0]), overflowed))
    got, stray = run_mac(mac, tiles, bubble=0.1)
    assert [(r, o) for r, o, _ in got] == want and not stray
    assert any(o for _, o in want) and not all(o for _, o in want)


def test_mac_flags_malformed_tiles():
    """`last` inside a group and a scale or zero point that changes inside a group raise
    overflow with the result; the next well-formed tile is computed and not flagged."""
    mac = MpgemmMac(2, 4, "int8", "int4", 16, 16)  # 4 beats per group
    kind = MpgemmKind(mac_info(mac))
    rng = np.random.default_rng(11)
    good = [kind.random_gemm(rng, (1, 32, 1)) for _ in range(4)]
    tiles, want = [], []

    def add(beats, value=None, flagged=True):
        tiles.append(beats)
        want.append((value, flagged))

    beats = tile_beats(good[0], 2, 4)
    add(beats[:6])                                   # ends in the middle of group 1
    y, ovf = kind.golden(good[1])
    add(tile_beats(good[1], 2, 4), int(y[0, 0]), ovf)
    beats = tile_beats(good[2], 2, 4)
    beats[2] = beats[2] | {"side": beats[2]["side"] ^ 1}           # scale changes in group 0
    add(beats)
    beats = tile_beats(good[3], 2, 4)
    beats[5] = beats[5] | {"side": beats[5]["side"] ^ (1 << 16)}   # zero changes in group 1
    add(beats)
    y, ovf = kind.golden(good[1])
    add(tile_beats(good[1], 2, 4), int(y[0, 0]), ovf)
    add(tile_beats(good[0], 2, 4)[:1])               # one beat of a four-beat group
    got, stray = run_mac(mac, tiles, seed=5)
    assert not stray
    for (result, overflow, _), (value, flagged) in zip(got, want):
        assert overflow == flagged
        if value is not None:
            assert result == value
    # the kind's golden model flags a group whose beats disagree on the scale, too
    ops = good[2]
    side = ops.w_side.copy()
    side[1, 0] ^= 1
    assert kind.golden(Operands(ops.a, ops.values, ops.indices, None, side))[1]


# ------------------------------------------------------------------------- simulations


@pytest.mark.parametrize("nm, weight, act, group_size, out_width", [
    ("2:4", "int4", "int8", 16, 8),
    pytest.param("4:16", "uint2", "int16", 16, 16, marks=pytest.mark.slow),  # one-beat groups
    pytest.param("4:4", "int4", "int8", 16, 8, marks=pytest.mark.slow),
])
def test_pe_regression(simulate, nm, weight, act, group_size, out_width):
    config = mp_config(name=f"mppe{nm.replace(':', '')}", nm=nm, weight_format=weight,
                       act_format=act, group_size=group_size, out_width=out_width)
    result, generated = simulate(config, "pe", seed=3, tiles=30, stall=0.3)
    assert_passed(result)
    assert generated.info["pe"]["kind"] == "mpgemm"


def test_array_example_under_random_stalls(simulate):
    """The 2x2 2:4 example: random GEMMs (one quantization group per tile), random stalls."""
    result, generated = simulate(load_config(EXAMPLE), "array", seed=5, gemms=4, stall=0.3)
    assert_passed(result)


@pytest.mark.slow
def test_array_dense_multi_group_gemm(simulate):
    """A dense 2x2 array (4:4, groups of 16 = 4 beats): one 4 x 96 x 4 GEMM, six groups per
    tile, no stalls (the latency is checked too)."""
    config = mp_config(name="mpdense", nm="4:4", group_size=16, out_width=8)
    result, _ = simulate(config, "array", seed=2, shape="4x96x4", stall=0)
    assert_passed(result)


def test_regression_detects_a_wrong_mpgemm_model(simulate):
    """Tell the array testbench that the output is one bit wider than it is (a wrong output
    stage): it must report a mismatch (same build as the example's run)."""
    result, generated = simulate(load_config(EXAMPLE), "array", seed=6, gemms=2, stall=0)
    assert_passed(result)
    info = generated.info
    info["pe"]["out_width"] += 1
    generated.manifest.write_text(json.dumps(info))
    lied = run_regression(generated.verilog, generated.manifest, generated.verilog.parent, 6,
                          options={"gemms": 2, "stall": 0}, log=lambda line: None, waves_on_failure=False)
    assert not lied.passed and "differs" in lied.log.read_text()
