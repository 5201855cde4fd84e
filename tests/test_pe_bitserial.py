"""The `bitserial` PE kind: config schema, the golden model in beat space (golden.bitserial: bit
planes, per-beat accumulation with golden.gemm's accumulator, equal to
golden.gemm.sparse_gemm_int whenever nothing overflows, malformed plane sequences), the MAC
unit on Amaranth's simulator (random tiles whose precision changes from tile to tile, back to
back with bubbles; wrap and saturate; malformed sequences), and the PE and arrays (2:4 and
dense) under cocotb on Verilator through the generic tb_pe / tb_array (GEMM after GEMM with a
different run-time precision, no reset), plus a wrong model that must fail.
"""
import json

import numpy as np
import pytest

from conftest import EXAMPLES, assert_passed, config_error
from test_pe_mpgemm import run_mac, tile_beats
from nmforge.gen.config import PE_KINDS, PE_KIND_SCHEMAS, load_config, parse_config
from nmforge.gen.elaborate import MAC_DESCRIBERS
from nmforge.gen.manifest import describe_interfaces
from nmforge.golden import bitserial as BS
from nmforge.golden.gemm import sparse_gemm_int
from nmforge.golden.ints import int_range
from nmforge.rtl.mac_bitserial import BitserialMac
from nmforge.sim.kinds import BitserialKind, Operands
from nmforge.sim.payload import pack
from nmforge.sim.regression import run_regression

EXAMPLE = EXAMPLES / "bitserial_nm24_2x2.toml"


def bs_table(nm="2:4", rows=2, cols=2, **pe):
    base = {"kind": "bitserial", "act_width": 8, "weight_width": 8, "acc_width": 32,
            "overflow": "wrap"}
    return {"name": "bs", "array": {"rows": rows, "cols": cols, "dataflow": "output_stationary"},
            "sparsity": {"nm": nm}, "pe": {k: v for k, v in (base | pe).items() if v is not None}}


def bs_config(name="bs", **kwargs):
    return parse_config(bs_table(**kwargs) | {"name": name}, source="test")


# --------------------------------------------------------------------------------- config


def test_config_schema_and_example():
    assert "bitserial" in PE_KINDS
    assert PE_KIND_SCHEMAS["bitserial"].keys == ("act_width", "weight_width", "acc_width",
                                                 "overflow")
    cfg = load_config(EXAMPLE)
    assert (cfg.pe_kind, cfg.act_width, cfg.weight_width, cfg.acc_width, cfg.overflow) == (
        "bitserial", 8, 8, 32, "wrap")
    assert (cfg.act_bits, cfg.weight_bits) == (8, 1)  # one bit-plane bit per weight element
    assert parse_config(cfg.to_dict()) == cfg
    one = bs_config(weight_width=1, acc_width=9)
    assert one.weight_width == 1


@pytest.mark.parametrize("pe, field, fragment, allowed", [
    (dict(weight_width=0), "pe.weight_width", "0", "1..16"),
    (dict(weight_width=17), "pe.weight_width", "17", "1..16"),
    (dict(act_width=1), "pe.act_width", "1", "2..16"),
    (dict(acc_width=15), "pe.acc_width", "15", "16..48"),
    (dict(overflow="clip"), "pe.overflow", "'clip'", "'wrap', 'saturate'"),
    (dict(group_size=16), "pe.group_size", "does not apply to pe.kind 'bitserial'", "'acc_width'"),
    (dict(acc_width=None), "pe.acc_width", "missing", "acc_width"),
])
def test_config_errors(pe, field, fragment, allowed):
    err = config_error(bs_table(**pe))
    assert err.field == field and fragment in str(err), str(err)
    if field != "pe.acc_width" or fragment != "missing":
        assert allowed in err.allowed


# ------------------------------------------------------------------------------- golden


def random_compressed(rng, rows, k, cols, n, m, precision, act_width=8):
    groups = k // m
    lo, hi = int_range(precision)
    a = rng.integers(*int_range(act_width), (rows, k), endpoint=True)
    values = rng.integers(lo, hi, (groups * n, cols), endpoint=True)
    indices = np.array([[sorted(rng.choice(m, n, replace=False)) for _ in range(cols)]
                        for _ in range(groups)]).transpose(0, 2, 1).reshape(groups * n, cols)
    return a, values, indices


def test_bit_planes_round_trip():
    for precision in range(1, 17):
        lo, hi = int_range(precision)
        w = np.arange(lo, hi + 1) if precision <= 10 else np.array([lo, -1, 0, 1, hi, lo + 1])
        planes = BS.bit_planes(w, precision)
        assert planes.shape == (precision,) + w.shape and set(np.unique(planes)) <= {0, 1}
        assert (BS.from_planes(planes) == w).all()
    assert (BS.bit_planes([-1, 0], 1) == [[1, 0]]).all()  # P = 1: the weights {-1, 0}
    with pytest.raises(ValueError, match="outside the signed 4-bit range"):
        BS.bit_planes([8], 4)
    with pytest.raises(ValueError, match="precision"):
        BS.bit_planes([0], 17)


@pytest.mark.parametrize("n, m", [(2, 4), (4, 4), (1, 8), (3, 16)])
def test_golden_equals_sparse_gemm_int_without_overflow(n, m):
    """Every precision 1..16: the per-plane, per-beat accumulation equals the integer GEMM of the
    P-bit weights (accumulated per K-group) whenever neither overflows."""
    rng = np.random.default_rng(n * 17 + m)
    for precision in range(1, 17):
        a, values, indices = random_compressed(rng, 3, m * 5, 2, n, m, precision)
        beats = BS.plane_beats(a, values, indices, n, precision)
        for acc_width in (48, 24):
            c, ovf = BS.bitserial_gemm(*beats, n, m, acc_width, "wrap")
            want, want_ovf = sparse_gemm_int(a, values, indices, n, m, acc_width, "wrap")
            if not (ovf or want_ovf):
                assert (c == want).all()
            if acc_width == 48:
                assert not ovf and (c == want).all()


def naive_beats(a, bits, indices, planes, msb, n, m, acc_width, saturate):
    """One output column at a time, beat by beat, with Python ints."""
    lo, hi = int_range(acc_width)
    rows, cols = a.shape[0], bits.shape[1]
    c = np.zeros((rows, cols), dtype=np.int64)
    overflowed = False
    for i in range(rows):
        for j in range(cols):
            acc = 0
            for b in range(len(planes)):
                v = sum(int(a[i, b * m + int(indices[b * n + l, j])]) * int(bits[b * n + l, j])
                        for l in range(n)) << int(planes[b])
                exact = acc + (-v if msb[b] else v)
                overflowed |= not lo <= exact <= hi
                if saturate:
                    acc = min(max(exact, lo), hi)
                else:
                    acc = (exact - lo) % (1 << acc_width) + lo
            c[i, j] = acc
    return c, overflowed


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_golden_per_beat_accumulation_wraps_or_saturates(overflow):
    rng = np.random.default_rng(5)
    for precision in (1, 3, 8, 16):
        a, values, indices = random_compressed(rng, 2, 24, 3, 2, 4, precision)
        beats = BS.plane_beats(a, values, indices, 2, precision)
        c, ovf = BS.bitserial_gemm(*beats, 2, 4, 14, overflow)
        want, want_ovf = naive_beats(*beats, 2, 4, 14, overflow == "saturate")
        assert (c == want).all() and ovf == want_ovf
    assert ovf  # 16-bit weights overflow 14 bits


def test_golden_flags_malformed_plane_sequences():
    rng = np.random.default_rng(9)
    a, values, indices = random_compressed(rng, 1, 8, 1, 2, 4, 3)
    a_b, bits, idx, planes, msb = BS.plane_beats(a, values, indices, 2, 3)  # planes 0 1 2 0 1 2
    assert list(planes) == [0, 1, 2, 0, 1, 2] and list(msb) == [0, 0, 1, 0, 0, 1]

    def flagged(planes, msb, weight_width=8):
        return BS.bitserial_gemm(a_b, bits, idx, planes, msb, 2, 4, 48, "wrap", weight_width)[1]

    assert not flagged(planes, msb)
    assert flagged(planes, msb, weight_width=2)           # plane 2 >= weight_width
    assert flagged([0, 2, 2, 0, 1, 2], msb)               # plane 1 skipped
    assert flagged([1, 2, 3, 0, 1, 2], [0, 0, 1, 0, 0, 1])  # not starting at plane 0
    assert flagged(planes, [0, 0, 1, 0, 0, 0])            # tile ends without the sign plane
    assert not flagged([0, 0, 0, 1, 2, 3], [1, 1, 0, 0, 0, 1])  # P = 1, 1, then 4: fine


def test_kind_switches_precision_per_gemm():
    info = mac_info(BitserialMac(2, 8, 8, 32))
    kind = BitserialKind(info)
    rng = np.random.default_rng(1)
    seen = []
    for _ in range(12):
        ops = kind.random_gemm(rng, (2, 8, 3))
        seen.append(kind.precision)
        assert ops.a.shape == (2, 8 * kind.precision) and ops.values.shape == (4 * kind.precision, 3)
        assert set(np.unique(ops.values)) <= {0, 1}
    assert sorted(seen[:2]) == [1, 8] and len(set(seen)) > 3


# ----------------------------------------------------------------- MAC unit (Amaranth sim)


def mac_info(mac, m=4):
    return {"parameters": {"n": mac.n, "m": m}, "pe": MAC_DESCRIBERS["bitserial"](mac),
            "interfaces": describe_interfaces(mac)}


MAC_CASES = [
    # (n, m, act_width, weight_width, acc_width, overflow)
    pytest.param(2, 4, 8, 8, 32, "wrap", id="int8-8planes-2of4"),
    pytest.param(4, 4, 16, 16, 48, "saturate", id="int16-16planes-dense"),
    pytest.param(3, 8, 5, 5, 10, "saturate", id="int5-5planes-3of8-acc10-saturates"),
    pytest.param(1, 2, 8, 1, 10, "wrap", id="int8-1plane-1of2-acc10-wraps"),
]


@pytest.mark.parametrize("n, m, act_width, weight_width, acc_width, overflow", MAC_CASES)
def test_mac_random_tiles(n, m, act_width, weight_width, acc_width, overflow):
    mac = BitserialMac(n, act_width, weight_width, acc_width, overflow)
    kind = BitserialKind(mac_info(mac, m))
    rng = np.random.default_rng(acc_width)
    tiles, want = [], []
    for t in range(30):  # each tile its own precision: the run-time switch, back to back
        ops = kind.random_gemm(rng, (1, m * int(rng.integers(1, 7)), 1), extreme=t % 3 == 2)
        c, overflowed = kind.golden(ops)
        tiles.append(tile_beats(ops, n, m))
        want.append((int(c[0, 0]), overflowed))
    got, stray = run_mac(mac, tiles, seed=n)
    # overflow pulses at the accumulation that overflows (not only with the result)
    flagged = [o for _, o in want]
    assert [r for r, _, _ in got] == [v for v, _ in want]
    assert (len(stray) + sum(o for _, o, _ in got) > 0) == any(flagged)
    assert {lat for _, _, lat in got} == {mac.latency - 1}
    if acc_width < 20:
        assert any(flagged)


def test_mac_flags_malformed_plane_sequences():
    """Skipped planes, planes >= weight_width, a wrong first plane, a tile ending without the
    sign plane: the beats are accumulated as given (the golden model computes them the same
    way) and `overflow` pulses; the well-formed tiles in between are not flagged."""
    mac = BitserialMac(2, 8, 5, 32)  # plane field of 3 bits: planes 5..7 are out of range
    kind = BitserialKind(mac_info(mac))
    rng = np.random.default_rng(2)
    cases = [  # (planes, msb of each beat, malformed)
        ([0, 1, 2], [0, 0, 1], False),
        ([0, 2, 2], [0, 0, 1], True),                    # plane 1 skipped
        ([0], [1], False),                               # P = 1
        ([0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 0, 1], True),  # plane 5 >= weight_width
        ([0, 1, 2], [0, 0, 0], True),                    # ends without the sign plane
        ([0, 1, 2, 3, 4], [0, 0, 0, 0, 1], False),       # P = weight_width
        ([1, 2, 3], [0, 0, 1], True),                    # does not start at plane 0
        ([0, 1, 0, 1], [0, 1, 0, 1], False),             # two K-groups of 2 planes
    ]
    tiles, want = [], []
    for planes, msb, malformed in cases:
        beats = len(planes)
        a = rng.integers(-128, 128, (1, 4 * beats))
        bits = rng.integers(0, 2, (2 * beats, 1))
        indices = np.array([sorted(rng.choice(4, 2, replace=False)) for _ in range(beats)])
        side = np.array([[pack(kind.side, {"plane": p, "msb": s})] for p, s in zip(planes, msb)])
        ops = Operands(a, bits, indices.reshape(-1, 1), None, side)
        c, overflowed = kind.golden(ops)
        assert overflowed == malformed
        tiles.append(tile_beats(ops, 2, 4))
        want.append((int(c[0, 0]), overflowed))
    got, stray, spans = run_mac(mac, tiles, seed=3, spans=True)
    assert [r for r, _, _ in got] == [v for v, _ in want]
    # a malformed beat pulses `overflow` when it is accumulated, not only with the result
    pulses = stray + [last + mac.latency - 1 for (_, o, _), (_, last) in zip(got, spans) if o]
    lag = mac.latency - 1
    flagged = [any(first + lag <= p <= last + lag for p in pulses) for first, last in spans]
    assert flagged == [o for _, o in want]


# ------------------------------------------------------------------------- simulations


@pytest.mark.parametrize("nm, act_width, weight_width, acc_width, overflow", [
    ("2:4", 8, 8, 32, "wrap"),
    pytest.param("4:4", 6, 16, 24, "saturate", marks=pytest.mark.slow),  # dense, saturating
])
def test_pe_regression(simulate, nm, act_width, weight_width, acc_width, overflow):
    config = bs_config(name=f"bspe{nm.replace(':', '')}", nm=nm, act_width=act_width,
                       weight_width=weight_width, acc_width=acc_width, overflow=overflow)
    result, generated = simulate(config, "pe", seed=3, tiles=30, stall=0.3)
    assert_passed(result)
    assert generated.info["pe"]["kind"] == "bitserial"


def test_array_example_switches_precision_between_gemms(simulate):
    """The 2x2 2:4 example: GEMM after GEMM (P = 1 and 8 first, then random precisions) with
    no reset in between, random stalls."""
    result, _ = simulate(load_config(EXAMPLE), "array", seed=5, gemms=5, stall=0.3)
    assert_passed(result)


@pytest.mark.slow
def test_array_dense(simulate):
    config = bs_config(name="bsdense", nm="2:2", weight_width=12, acc_width=24,
                       overflow="saturate")
    result, _ = simulate(config, "array", seed=8, gemms=4, stall=0)
    assert_passed(result)


def test_regression_detects_a_wrong_bitserial_model(simulate):
    """Tell the array testbench the accumulator has 12 bits when it has 32: the golden model
    then wraps where the design does not, and the regression must report it."""
    result, generated = simulate(load_config(EXAMPLE), "array", seed=6, gemms=2, stall=0)
    assert_passed(result)
    info = generated.info
    info["pe"]["acc_width"] = 12
    generated.manifest.write_text(json.dumps(info))
    lied = run_regression(generated.verilog, generated.manifest, generated.verilog.parent, 6,
                          options={"gemms": 2, "stall": 0}, log=lambda line: None, waves_on_failure=False)
    assert not lied.passed and "differs" in lied.log.read_text()
