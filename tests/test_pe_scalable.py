"""The precision-scalable PE kind (rtl.mac_scalable.ScalableMac): golden glue checks, then the MAC
unit under cocotb on Verilator, bit-exact against golden (sim/tb_mac_scalable.py):
exhaustive INT8 / INT4 / INT2 products, mixed modes per lane and per beat, INT16 composition,
wrap and saturate with small accumulators, with and without INT16 pieces; then `pe = "scalable"`
from a config: the config schema, and the PE and the array (dense and 2:4, modes mixed per lane
and beat) against golden.scalable.sparse_scalable_gemm."""
import dataclasses
import json

import numpy as np
import pytest

from conftest import EXAMPLES, assert_passed
from nmforge.gen.config import ConfigError, load_config, parse_config
from nmforge.golden import scalable as S
from nmforge.golden.nm import decompress_nm
from nmforge.golden.dot import subword_products
from nmforge.rtl import mac_scalable as R
from nmforge.sim.tb_mac_scalable import run_bench


TEST_NAMES = {"exhaustive": "exhaustive_subword_products", "mixed": "mixed_modes_tiles",
              "int16": "int16_composition"}


def ran_tests(result):
    """Names of the cocotb tests that ran (not skipped), from the results file."""
    from xml.etree import ElementTree
    cases = ElementTree.parse(result.results_xml).getroot().iter("testcase")
    return {c.get("name") for c in cases if c.find("skipped") is None}


# ---------------------------------------------------------------------------------------------
# golden glue (no simulator)


def test_mode_codes_agree_between_rtl_and_golden():
    assert {R.MODE_INT8: "int8", R.MODE_INT4: "int4", R.MODE_INT2: "int2", R.MODE_OFF: "off",
            R.MODE_INT16_LL: "int16_ll", R.MODE_INT16_HL: "int16_hl", R.MODE_INT16_LH: "int16_lh",
            R.MODE_INT16_HH: "int16_hh"} == S.MODE_NAMES


def test_lane_values_are_subword_dot_products():
    a, w = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    for name in ("int8", "int4", "int2"):
        want = subword_products(name, a, w).sum(-1)
        np.testing.assert_array_equal(S.lane_values(S.MODE_CODES[name], a, w), want)
    np.testing.assert_array_equal(S.lane_values(S.MODE_CODES["off"], a, w), 0)
    sa, sw = np.where(a >= 128, a - 256, a), np.where(w >= 128, w - 256, w)
    np.testing.assert_array_equal(S.lane_values(4, a, w), a * w)
    np.testing.assert_array_equal(S.lane_values(5, a, w), sa * w * 256)
    np.testing.assert_array_equal(S.lane_values(6, a, w), a * sw * 256)
    np.testing.assert_array_equal(S.lane_values(7, a, w), sa * sw * 65536)
    np.testing.assert_array_equal(S.lane_values(7, a, w, int16=False), 0)


def test_int16_schedule_is_the_int16_dot_product():
    rng = np.random.default_rng(0)
    for _ in range(300):
        k, n = int(rng.integers(1, 20)), int(rng.integers(1, 9))
        a16 = rng.integers(-32768, 32768, k)
        w16 = rng.integers(-32768, 32768, k)
        modes, a, w = S.int16_schedule(a16, w16, n)
        assert modes.shape == (4 * -(-k // n), n)
        assert S.beat_sums(modes, a, w).sum() == sum(int(x) * int(y) for x, y in zip(a16, w16))
    assert S.lane_values(7, 0x80, 0x80) == 1 << 30  # (-32768)^2 comes from the hh piece


def test_tile_policies():
    modes, a, w = [[0, 0]], [[0x80, 0x80]], [[0x80, 0x80]]  # 2 * 16384 = 32768
    assert S.scalable_tile(modes, a, w, 16, "wrap") == (-32768, True)
    assert S.scalable_tile(modes, a, w, 16, "saturate") == (32767, True)
    assert S.scalable_tile(modes, a, w, 17, "saturate") == (32768, False)
    with pytest.raises(ValueError):
        S.lane_values(8, 0, 0)
    with pytest.raises(ValueError):
        S.lane_values(0, 256, 0)


def test_packing_plan_fits_the_multiplier():
    """With the configured offsets every mode's packed operands fit 18 signed bits, and the
    remainder below the extracted dot product stays within +-2^(SUB_SHIFT-1) (module docstring)."""
    lim = 1 << (R.OPERAND_WIDTH - 1)
    nib, two = np.arange(-8, 8), np.arange(-2, 2)
    c, d = R.ScalableMac.int4_offsets
    for off in (c, d):
        x = nib[:, None] * 2 ** off + nib[None, :] * 2 ** (off + R.INT4_SPACING)
        assert -lim <= x.min() and x.max() < lim
    assert np.outer(nib, nib).max() * 2 ** (c + d) < 1 << (R.SUB_SHIFT - 1)  # a_lo * w_hi
    assert -np.outer(nib, nib).min() * 2 ** (c + d) <= 1 << (R.SUB_SHIFT - 1)
    f = np.array(np.meshgrid(*[two] * 4, indexing="ij")).reshape(4, -1)
    x = sum(f[k] * 2 ** (R.INT2_SPACING * k) for k in range(4))
    assert -lim <= x.min() and x.max() < lim
    g = np.array(np.meshgrid(*[two] * 6, indexing="ij")).reshape(6, -1)
    a0, a1, a2, w1, w2, w3 = g
    rem = a0 * w3 + (a0 * w2 + a1 * w3) * 32 + (a0 * w1 + a1 * w2 + a2 * w3) * 1024
    assert -(1 << 14) <= rem.min() and rem.max() < 1 << 14
    for offsets, shift in ((R.ScalableMac.full_offsets_int16, 8), (R.ScalableMac.full_offsets_int8, 0)):
        for off in offsets:
            assert off + shift + 9 <= R.OPERAND_WIDTH  # a 9-bit operand (INT16 high byte moved up)


# ---------------------------------------------------------------------------------------------
# RTL on Verilator: one build holds every configuration side by side (sim/tb_mac_scalable.py)

BENCH = {
    # wide accumulator: exhaustive products, INT16 results in full
    "wide": {"mac": dict(n=4, acc_width=40, overflow="wrap", int16=True),
             "tests": ["exhaustive", "mixed", "int16"]},
    # without INT16 pieces (another operand placement; codes 4..7 are OFF), 20-bit wrap
    "no16": {"mac": dict(n=2, acc_width=20, overflow="wrap", int16=False),
             "tests": ["exhaustive", "mixed"]},
    # small accumulators: saturate (odd N, no INT16) and wrap (odd N at two tree levels)
    "sat12": {"mac": dict(n=3, acc_width=12, overflow="saturate", int16=False),
              "tests": ["mixed"]},
    "wrap14": {"mac": dict(n=5, acc_width=14, overflow="wrap", int16=True),
               "tests": ["mixed", "int16"]},
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from nmforge.sim.tb_mac_scalable import build_bench
    work = tmp_path_factory.mktemp("scalable")
    verilog, manifest = build_bench(work, BENCH)
    return work, verilog, manifest


@pytest.mark.parametrize("test", list(TEST_NAMES))
def test_scalable_mac(bench, test):
    """One cocotb test on every bench instance it applies to, driven side by side."""
    work, verilog, manifest = bench
    result = run_bench(verilog, manifest, work, tests=[test], seed=7, log=lambda line: None)
    assert_passed(result)
    assert ran_tests(result) == {TEST_NAMES[test]}


def test_testbench_detects_a_wrong_model(bench):
    """Tell the testbench that `wrap14` saturates: its mixed test must fail."""
    work, verilog, manifest = bench
    info = json.loads(manifest.read_text())
    info["instances"]["wrap14"]["parameters"]["overflow"] = "saturate"
    lied = work / "lied.json"
    lied.write_text(json.dumps(info))
    result = run_bench(verilog, lied, work, tests=["mixed"], instances=["wrap14"], seed=3,
                       options={"tiles": 60}, log=lambda line: None, waves_on_failure=False)
    assert not result.passed


# ---------------------------------------------------------------------------------------------
# the kind from a config: schema, golden GEMM, PE and array regressions

EXAMPLE = EXAMPLES / "scalable_nm24_2x2.toml"


def scalable_config(**changes):
    return dataclasses.replace(load_config(EXAMPLE), **changes)


def test_config_keys_and_errors():
    cfg = load_config(EXAMPLE)
    assert (cfg.pe_kind, cfg.acc_width, cfg.overflow, cfg.act_bits, cfg.weight_bits) == (
        "scalable", 32, "wrap", 8, 11)
    table = cfg.to_dict()
    for pe, field, allowed in [({"acc_width": 24}, "pe.acc_width", "32..48"),
                               ({"act_width": 8}, "pe.act_width", "'acc_width', 'overflow'"),
                               ({"overflow": "clip"}, "pe.overflow", "'wrap', 'saturate'")]:
        with pytest.raises(ConfigError) as info:
            parse_config({**table, "pe": {**table["pe"], **pe}}, source="s.toml")
        assert info.value.field == field and allowed in str(info.value)
        assert "\n" not in str(info.value)


def test_sparse_gemm_is_the_dense_lane_sum():
    """The compressed-form golden equals the lane values of the decompressed words, summed."""
    rng = np.random.default_rng(5)
    n, m, k, cols = 2, 4, 12, 3
    a = rng.integers(0, 256, size=(2, k))
    w = rng.integers(0, 256, size=(k // m * n, cols))
    modes = rng.integers(0, 8, size=w.shape)
    indices = np.tile(np.array([[0], [2]]), (k // m, cols))
    c, _ = S.sparse_scalable_gemm(a, w, modes, indices, n, m, 48, "wrap")
    dense_w, dense_modes = (decompress_nm(x, indices, n, m) for x in (w, modes))
    kept = decompress_nm(np.ones_like(w), indices, n, m).astype(bool)
    for i in range(2):
        for j in range(cols):
            lanes = S.lane_values(dense_modes[:, j], a[i], dense_w[:, j])
            assert c[i, j] == lanes[kept[:, j]].sum()


@pytest.mark.parametrize("block, nm", [("pe", "2:4"), ("array", "2:4"),
                                       pytest.param("array", "2:2", marks=pytest.mark.slow)])
def test_scalable_pe_and_array(simulate, block, nm):
    n, m = (int(x) for x in nm.split(":"))
    config = scalable_config(name=f"sc{n}{m}", n=n, m=m)
    result, _ = simulate(config, block, seed=3, gemms=4)
    assert_passed(result)


def test_array_regression_detects_a_wrong_model(simulate):
    """Tell the array testbench the design saturates a 32-bit accumulator when it wraps; corner
    words with INT16 high pieces overflow it, so the regression must fail."""
    config = scalable_config(name="sc24lie", rows=1, cols=2)
    result, generated = simulate(config, "array", seed=2, gemms=4, stall=0)
    assert_passed(result)
    from nmforge.sim.regression import run_regression
    info = generated.info
    info["parameters"]["overflow"] = "saturate"
    info["parameters"]["acc_width"] = 20
    generated.manifest.write_text(json.dumps(info))
    lied = run_regression(generated.verilog, generated.manifest, generated.verilog.parent, 2,
                          options={"gemms": 4, "stall": 0}, log=lambda line: None, waves_on_failure=False)
    assert not lied.passed
