"""Dataflows other than output-stationary (gen.config DATAFLOWS). The weight-stationary array
(rtl.ws_array) passes its own regression (sim.tb_ws_array) for the int, fp and mx kinds. The dot-product array
(rtl.mac_array.DotProductArray: per column one PE reducing `rows` K-groups per beat through an
adder tree, activations broadcast, no skew) passes the array regression (sim.tb_array: random
GEMMs under random stalls, the corner tiles, malformed metadata counted) for the int, fp and mx
kinds, and drives the accelerator (same commands, golden executor and cycle model) bit-exactly."""
import numpy as np
import pytest

from nmforge.gen.config import ConfigError, parse_config
from nmforge.golden import accel as G
from nmforge.golden.gemm import sparse_gemm_int
from nmforge.golden.nm import malformed_groups
from nmforge.rtl import isa

from conftest import assert_passed
from test_accel import (code_operands, gemm_from_images, gemm_per_pattern, layer, loads,
                        runner)

INT8 = {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32, "overflow": "wrap"}
FP8 = {"kind": "fp", "act_format": "fp8_e4m3", "weight_format": "fp8_e4m3", "accumulate": "exact"}
MXFP4 = {"kind": "mx", "format": "mxfp4", "block_size": 32}


def dot_config(name, nm="2:4", rows=4, cols=3, encoding="index", pe=INT8, accelerator=None):
    table = {"name": name, "array": {"rows": rows, "cols": cols, "dataflow": "dot_product"},
             "sparsity": {"nm": nm, "encoding": encoding}, "pe": pe}
    if accelerator:
        table["accelerator"] = accelerator
    return parse_config(table, source="test")


ARRAYS = {   # name: (config keywords, regression options)
    "int-2:4": ({"nm": "2:4"}, {}),
    "int-2:8-bitmap-malformed": ({"nm": "2:8", "rows": 2, "encoding": "bitmap"},
                                 {"corners": 0, "corrupt": 6}),
    "int-1:4-malformed": ({"nm": "1:4", "rows": 4}, {"corners": 0, "corrupt": 5}),
    "fp8": ({"rows": 2, "cols": 2, "pe": FP8}, {}),
    "mxfp4": ({"rows": 4, "cols": 2, "pe": MXFP4}, {}),
    "posit8": ({"rows": 4, "cols": 2, "pe": {"kind": "posit", "format": "posit8_0"}}, {}),
    "scalable-saturate": ({"rows": 2, "cols": 2, "pe": {"kind": "scalable", "acc_width": 32,
                                                         "overflow": "saturate"}}, {}),
    "bitserial": ({"rows": 2, "cols": 2, "pe": {"kind": "bitserial", "act_width": 8,
                                                 "weight_width": 8, "acc_width": 32,
                                                 "overflow": "wrap"}}, {}),
    "mpgemm-int4": ({"rows": 2, "cols": 2, "pe": {"kind": "mpgemm", "act_format": "int8",
                                                   "weight_format": "int4", "group_size": 32,
                                                   "out_width": 8}}, {}),
    "int-dense": ({"nm": "4:4"}, {}),
    "int-16bit-saturate": ({"nm": "2:4", "rows": 2, "pe": {**INT8, "acc_width": 16,
                                                           "overflow": "saturate"}}, {}),
    "int-2:4-malformed": ({"nm": "2:4", "rows": 8, "cols": 2}, {"corners": 0, "corrupt": 8}),
}
SLOW_ARRAYS = {"int-1:4-malformed", "int-dense", "int-2:4-malformed"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_ARRAYS
                                  else c for c in ARRAYS])
def test_dot_product_array_regression(simulate, case):
    """Random GEMMs (K a multiple of rows*M) under random stalls, bit-exact; with corners: the
    overflow tile, each PE's overflow, the fp rounding/special tiles, reset mid-run and the
    bad-group count-up, each one K-group per beat padded to whole beats with zeros."""
    keywords, options = ARRAYS[case]
    config = dot_config("dot_" + case.replace("-", "_").replace(":", ""), **keywords)
    result, generated = simulate(config, "array", seed=5, gemms=4, stall=0.3, **options)
    assert_passed(result)
    p = generated.info["parameters"]
    assert (p["tile_rows"], p["beat_groups"]) == (1, config.rows)
    assert p["multipliers"] == config.rows * config.cols * config.n
    groups = config.rows
    values = generated.info["interfaces"]["weight"]["payload"]["element"]["fields"]["values"]
    assert values["layout"]["length"] == groups * config.n  # one tree of rows*N multipliers


def test_dot_product_saturates_per_beat(simulate, tmp_path):
    """A beat's groups are summed exactly in the tree, then saturated once: group 0 alone
    passes the 16-bit range (2 x -128 x -128 = 32768), group 1 brings it back (-32512), so the
    beat's result is 256 (per-group saturation would give 255); the golden (sim.kinds with
    beat_groups) must say the same as the RTL."""
    config = dot_config("dot_sat16", rows=2, cols=1, pe={**INT8, "acc_width": 16,
                                                        "overflow": "saturate"})
    a = np.full((1, 8), -128)
    values = np.array([[-128], [-128], [127], [127]])
    indices = np.array([[0], [1], [0], [1]])
    np.savez(tmp_path / "gemm.npz", a=a, values=values, indices=indices, c=np.array([[256]]))
    result, _ = simulate(config, "array", gemm_file=tmp_path / "gemm.npz", corners=0, stall=0)
    assert_passed(result)
    from nmforge.golden.gemm import sparse_gemm_int
    assert sparse_gemm_int(a, values, indices, 2, 4, 16, "saturate", beat_groups=2)[0][0, 0] == 256
    assert sparse_gemm_int(a, values, indices, 2, 4, 16, "saturate")[0][0, 0] == 255


def test_scalable_golden_saturates_per_beat_like_int():
    """golden.scalable with beat_groups (the dot-product scalable PE: a beat's groups summed
    exactly, then saturated once) agrees with golden.gemm's int model on INT8-mode words, where
    per-group and per-beat saturation differ (a 16-bit accumulator that group 0 alone passes)."""
    from nmforge.golden.scalable import MODE_CODES, sparse_scalable_gemm
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (6, 32))
    a[0, :8] = -128
    values = rng.integers(-128, 128, (16, 3))
    values[:4, 0] = [-128, -128, 127, 127]
    indices = np.tile([[0], [1]], (8, 3))
    modes = np.full(values.shape, MODE_CODES["int8"])
    for groups in (1, 2, 4):
        want = sparse_gemm_int(a, values, indices, 2, 4, 16, "saturate", beat_groups=groups)
        got = sparse_scalable_gemm(a & 0xFF, values & 0xFF, modes, indices, 2, 4, 16,
                                   "saturate", int16=False, beat_groups=groups)
        assert np.array_equal(got[0], want[0]) and got[1] == want[1]
    per_group = sparse_scalable_gemm(a & 0xFF, values & 0xFF, modes, indices, 2, 4, 16,
                                     "saturate", int16=False)[0]
    assert not np.array_equal(per_group, want[0])


def test_bitserial_planes_in_blocks_give_the_same_gemm():
    """golden.bitserial in blocks (a dot-product beat: one plane of `block` groups) computes the
    GEMM golden.gemm computes from the same 5-bit weights, and each array beat's plane sequence
    (every block-th beat's plane and msb) is well formed."""
    from nmforge.golden.bitserial import bitserial_gemm, malformed_columns, plane_beats
    rng = np.random.default_rng(4)
    a = rng.integers(-128, 128, (3, 32))
    values = rng.integers(-16, 16, (16, 2))
    indices = np.tile([[0], [2]], (8, 2))
    exact = sparse_gemm_int(a, values, indices, 2, 4, 32, "wrap")[0]
    for block in (1, 2, 4):
        a_beats, bits, beat_indices, planes, msb = plane_beats(a, values, indices, 2, 5, block)
        assert list(planes[:2 * block]) == [0] * block + [1] * block
        got, flagged = bitserial_gemm(a_beats, bits, beat_indices, planes, msb, 2, 4, 32,
                                      "saturate", beat_groups=block)
        assert np.array_equal(got, exact) and not flagged
        beat_planes = np.stack([planes[block - 1::block]] * 2, axis=1)
        beat_msb = np.stack([msb[block - 1::block]] * 2, axis=1)
        assert not malformed_columns(beat_planes, beat_msb, 8).any()


def test_dot_product_array_has_no_skew():
    """Latency from the last beat to the result: the PE pipeline + 2 (no R-1 + C-1 skew)."""
    from nmforge.gen.elaborate import build
    dot = build(dot_config("dotlat", rows=8, cols=8))
    os_ = build(parse_config({"name": "oslat", "array": {"rows": 8, "cols": 8,
                                                         "dataflow": "output_stationary"},
                              "sparsity": {"nm": "2:4"}, "pe": INT8}, source="test"))
    assert dot.latency == dot.pe.latency + 2
    assert os_.latency == 7 + 7 + os_.pe.latency + 1


def ws_config(name, nm="2:4", rows=4, cols=3, encoding="index", acc_width=32, overflow="wrap",
              runtime=False, pe=None):
    return parse_config({"name": name,
                         "array": {"rows": rows, "cols": cols, "dataflow": "weight_stationary"},
                         "sparsity": {"nm": nm, "encoding": encoding, "runtime": runtime},
                         "pe": pe or {**INT8, "acc_width": acc_width, "overflow": overflow}},
                        source="test")


WS_ARRAYS = {   # name: (config keywords, NMFORGE_CORRUPT)
    "int-2:4": ({"nm": "2:4", "rows": 4, "cols": 4}, 0),
    "int-2:4-16bit-saturate": ({"nm": "2:4", "acc_width": 16, "overflow": "saturate"}, 0),
    "int-2:8-bitmap-malformed": ({"nm": "2:8", "rows": 2, "encoding": "bitmap"}, 5),
    "int-2:4-malformed": ({"nm": "2:4", "rows": 4, "cols": 3}, 6),
    "int-1:4": ({"nm": "1:4", "rows": 2, "cols": 4}, 0),
    "int-runtime-4:8-malformed": ({"nm": "4:8", "rows": 2, "cols": 3, "runtime": True}, 5),
    "int-dense-20bit-saturate": ({"nm": "4:4", "rows": 3, "cols": 2, "acc_width": 20,
                                  "overflow": "saturate"}, 0),
    "fp8-2:4": ({"nm": "2:4", "rows": 4, "cols": 4, "pe": FP8}, 0),
    "bf16-fp32-2:4": ({"nm": "2:4", "rows": 3, "cols": 3, "pe": {
        **FP8, "act_format": "bf16", "weight_format": "bf16", "accumulate": "fp32"}}, 0),
    "fp8-e5m2-1:4": ({"nm": "1:4", "rows": 2, "cols": 3, "pe": {**FP8, "act_format": "fp8_e5m2",
                                                                "weight_format": "fp8_e5m2"}}, 0),
    "mxfp4-2:4": ({"nm": "2:4", "rows": 4, "cols": 2, "pe": MXFP4}, 0),
    "mpgemm-int4-2:4": ({"nm": "2:4", "rows": 4, "cols": 3, "pe": {
        "kind": "mpgemm", "act_format": "int8", "weight_format": "int4", "group_size": 32,
        "out_width": 8}}, 0),
    "bitserial-2:4-16bit-saturate": ({"nm": "2:4", "rows": 3, "cols": 2, "pe": {
        "kind": "bitserial", "act_width": 8, "weight_width": 8, "acc_width": 16,
        "overflow": "saturate"}}, 0),
    "posit8-2:4": ({"nm": "2:4", "rows": 3, "cols": 2, "pe": {"kind": "posit",
                                                              "format": "posit8_0"}}, 0),
    "scalable-2:4-saturate-malformed": ({"nm": "2:4", "rows": 3, "cols": 3, "pe": {
        "kind": "scalable", "acc_width": 32, "overflow": "saturate"}}, 2),
    "mxint8-2:4-malformed": ({"nm": "2:4", "rows": 8, "cols": 4,
                              "pe": {**MXFP4, "format": "mxint8"}}, 2),
    "fp8-2:8-bitmap-malformed": ({"nm": "2:8", "rows": 2, "cols": 3, "encoding": "bitmap",
                                  "pe": FP8}, 2),
}
SLOW_WS = {"int-1:4", "int-dense-20bit-saturate"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_WS
                                  else c for c in WS_ARRAYS])
def test_weight_stationary_array_regression(simulate, case):
    """sim.tb_ws_array: weight tiles double-buffered under random stalls, partial sums from a
    random start over the whole accumulator range, every result beat bit-exact against the
    group-by-group running sum; malformed groups counted once per tile use. Run-time 4:8: one
    GEMM per pattern of the table (PE row r holds beat r of the K-block)."""
    keywords, corrupt = WS_ARRAYS[case]
    config = ws_config("ws_" + case.replace("-", "_").replace(":", ""), **keywords)
    result, generated = simulate(config, "array", seed=9, gemms=4, stall=0.3, corrupt=corrupt)
    assert_passed(result)
    pe = generated.info["pe"]
    base = config.rows + config.cols + pe["mac_latency"] + 2
    if config.pe_kind in ("int", "scalable", "bitserial"):
        assert generated.info["latency_cycles"] == base
    else:   # fp, mx, posit, mpgemm finish their sums after the bottom row (rtl.ws_partials)
        assert generated.info["latency_cycles"] > base
    if "overflow" in pe:   # the manifest states the partial sums' accumulator, not the MAC's
        assert (pe["acc_width"], pe["overflow"]) == (config.acc_width, config.overflow)


@pytest.mark.parametrize("table,field", [
    ({"runtime": True}, "array.dataflow"),
    ({"pe": MXFP4, "rows": 16}, "array.rows"),
    ({"pe": MXFP4, "rows": 16, "dataflow": "weight_stationary"}, "array.rows"),
    ({"pe": {"kind": "mpgemm", "act_format": "int8", "weight_format": "int4", "group_size": 16,
             "out_width": 8}, "rows": 8}, "array.rows"),
])
def test_dot_product_config_limits_are_one_line(table, field):
    pe = table.get("pe", INT8)
    spec = {"name": "x", "array": {"rows": table.get("rows", 4), "cols": 4,
                                   "dataflow": table.get("dataflow", "dot_product")},
            "sparsity": {"nm": "2:4" if not table.get("runtime") else "4:8",
                         "runtime": table.get("runtime", False)}, "pe": pe}
    if "accelerator" in table:
        spec["accelerator"] = table["accelerator"]
    with pytest.raises(ConfigError) as error:
        parse_config(spec, source="test")
    assert error.value.field == field and "\n" not in str(error.value)


DEPTHS = {"stream_width": 32, "act_depth": 512, "weight_depth": 256, "param_depth": 64,
          "out_depth": 1024}


@pytest.fixture(scope="module", params=["dot_product", "weight_stationary"])
def dot_accelerator(sim_cache, request):
    """A 4x4 2:4 accelerator of each dataflow whose beat is one row's 4 K-groups (1 x 4 tiles,
    16 K per beat): dot-product, weight-stationary."""
    config = dot_config(f"acc44_{request.param}", rows=4, cols=4, accelerator=DEPTHS)
    config = parse_config({**config.to_dict(), "array": {"rows": 4, "cols": 4,
                                                         "dataflow": request.param}},
                          source="test")
    return runner(config, sim_cache / config.name)


def test_dot_product_accelerator_runs_the_same_commands(dot_accelerator):
    """The accelerator's command set on a dot-product / weight-stationary array: a GEMM larger
    than the array (odd m, n), a requantized ReLU layer chained in ACT into a second GEMM,
    malformed metadata counted per K-group and each time it streams (per row; per block of
    rows on weight-stationary), then the same GEMM with good weights; under stalls, bit-exact
    against the golden executor, which the test checks against golden.gemm itself."""
    run = dot_accelerator
    shape = run.shape
    assert (shape.rows, shape.beat_groups, shape.k_group) == (1, 4, 16)
    rng = np.random.default_rng(21)
    m, k, n1, n2 = 5, 64, 16, 7
    a, v1, i1, p1 = layer(rng, shape, m, k, n1)
    _, v2, i2, p2 = layer(rng, shape, m, n1, n2)
    bad = i1.copy()
    bad[0, 0] = bad[1, 0]              # group 0, column 0: equal indices
    bad[6, 3], bad[7, 3] = 3, 0        # group 3, column 3: decreasing
    commands, data = loads(shape, a, (v1, i1), p1)
    more, more_data = loads(shape, None, (v2, i2), p2, weight_addr=64, param_addr=16)
    broken, broken_data = loads(shape, None, (v1, bad), None, weight_addr=128)
    commands += more + broken + [
        isa.gemm(0, 128, 0, 200, m, k, n1, raw=True, wait=True),
        isa.gemm(0, 0, 0, 100, m, k, n1, relu=True, to_act=True, wait=True),
        isa.gemm(100, 64, 16, 0, m, n1, n2, wait=True),
        isa.store(0, m * n2, wait=True),
        isa.gemm(0, 0, 0, 0, m, k, n1, raw=True, wait=True),
        isa.store(0, m * n1, wide=True, wait=True)]
    assert G.hazards(commands, shape) == []
    expected, _ = run(commands, data + more_data + broken_data, stall=0.3, seed=3)
    status = expected["status"]
    assert not status["cmd_error"] and status["meta_error"] == 1
    passes = 1 if shape.dataflow == "weight_stationary" else m   # m = 5 rows: one block
    assert status["bad_groups"] == int(malformed_groups(bad, shape.n, shape.m).sum()) * passes
    h = G.requantize(sparse_gemm_int(a, v1, i1, shape.n, shape.m, 32, "wrap")[0], *p1, 8, 32,
                     relu=True)
    want2 = G.requantize(sparse_gemm_int(h, v2, i2, shape.n, shape.m, 32, "wrap")[0], *p2, 8, 32)
    got2 = G.unpack_store(expected["packets"][0], m * n2, 8, 32).reshape(m, n2)
    assert np.array_equal(got2, want2)
    want1 = sparse_gemm_int(a, v1, i1, shape.n, shape.m, 32, "wrap")[0] + p1[0]
    got1 = G.unpack_store(expected["packets"][1], m * n1, 32, 32).reshape(m, n1)
    assert np.array_equal(got1, want1)


@pytest.mark.slow
@pytest.mark.parametrize("dataflow", ["dot_product", "weight_stationary"])
@pytest.mark.parametrize("nm, encoding", [("4:4", "index"), ("1:4", "index"), ("2:8", "bitmap")])
def test_dataflow_accelerators_dense_1_4_and_2_8_bitmap(sim_cache, dataflow, nm, encoding):
    """The other patterns inside both new dataflows' 4x4 accelerators: a 9 x 2*k_group x k_group
    GEMM, its requantized ReLU output chained in ACT into a second GEMM, under stalls and
    bit-exact against golden.gemm; on the bitmap design a GEMM whose weights have malformed
    groups, counted; the program without stalls within 5 % of the cycle model."""
    name = f"acc44_{dataflow[:3]}_{nm.replace(':', '')}_{encoding}"
    config = parse_config({"name": name, "array": {"rows": 4, "cols": 4, "dataflow": dataflow},
                           "sparsity": {"nm": nm, "encoding": encoding}, "pe": INT8,
                           "accelerator": DEPTHS}, source="test")
    run = runner(config, sim_cache / name)
    shape = run.shape
    rng = np.random.default_rng(len(name))
    m, n1, n2 = 9, shape.k_group, 5
    k = 2 * shape.k_group
    a, v1, i1, p1 = layer(rng, shape, m, k, n1)
    _, v2, i2, p2 = layer(rng, shape, m, n1, n2)
    commands, data = loads(shape, a, (v1, i1), p1)
    more, more_data = loads(shape, None, (v2, i2), p2, weight_addr=64, param_addr=n1)
    commands += more + [isa.gemm(0, 0, 0, 100, m, k, n1, relu=True, to_act=True, wait=True),
                        isa.gemm(100, 64, n1, 0, m, n1, n2, wait=True),
                        isa.store(0, m * n2, wait=True)]
    data += more_data
    bad = []
    if encoding == "bitmap":    # group 0 of column 0 names the same position twice: 1 bit set
        broken = i1.copy()
        broken[1, 0] = broken[0, 0]
        bad, bad_data = loads(shape, None, (v1, broken), None, weight_addr=128)
        commands += bad + [isa.gemm(0, 128, 0, 200, m, k, n1, raw=True, wait=True)]
        data += bad_data
    assert G.hazards(commands, shape) == []
    expected, _ = run(commands, data, stall=0.3, seed=5)
    status = expected["status"]
    assert not status["cmd_error"] and status["meta_error"] == (encoding == "bitmap")
    if encoding == "bitmap":
        passes = 1 if dataflow == "weight_stationary" else m
        assert status["bad_groups"] == passes
    h = G.requantize(sparse_gemm_int(a, v1, i1, shape.n, shape.m, 32, "wrap")[0], *p1, 8, 32,
                     relu=True)
    want = G.requantize(sparse_gemm_int(h, v2, i2, shape.n, shape.m, 32, "wrap")[0], *p2, 8, 32)
    got = G.unpack_store(expected["packets"][0], m * n2, 8, 32).reshape(m, n2)
    assert np.array_equal(got, want)
    _, measured = run(commands, data, stall=0)
    predicted = run.predict(commands)["cycles"]
    assert abs(predicted - measured["cycles"]) <= 0.05 * measured["cycles"], (predicted, measured)


@pytest.mark.parametrize("m,k,n", [(1, 128, 8), (6, 32, 8), (40, 64, 8), (129, 32, 7)])
def test_dot_product_cycle_model_within_5_percent(dot_accelerator, m, k, n):
    """No stalls: a matrix-vector product, a short-K GEMM, and (weight-stationary) a block
    of rows longer than the array's round trip, and two blocks (128 + 1 rows); every STORE
    bit-exact against the golden executor (tb_accel)."""
    run = dot_accelerator
    rng = np.random.default_rng(m * k)
    a, values, indices, params = layer(rng, run.shape, m, k, n)
    commands, data = loads(run.shape, a, (values, indices), params)
    commands += [isa.gemm(0, 0, 0, 0, m, k, n, wait=True), isa.store(0, m * n, wait=True)]
    _, measured = run(commands, data, stall=0)
    predicted = run.predict(commands)["cycles"]
    assert abs(predicted - measured["cycles"]) <= 0.05 * measured["cycles"], (predicted, measured)


def test_sweep_takes_the_dataflow_as_a_grid_axis(tmp_path):
    """`nmforge sweep`: array.dataflow x sparsity.nm expands to one valid design per point; a
    combination a dataflow does not have (run-time patterns on a dot-product array) is that
    point's one-line error, not the sweep's."""
    from nmforge.fpga.sweep_spec import load_sweep
    spec = tmp_path / "dataflows.toml"
    spec.write_text('[base]\nname = "df"\n[base.array]\nrows = 2\ncols = 2\n'
                    'dataflow = "output_stationary"\n[base.sparsity]\nnm = "2:4"\n'
                    '[base.pe]\nkind = "int"\nact_width = 8\nweight_width = 8\nacc_width = 32\n'
                    'overflow = "wrap"\n[grid]\n"array.dataflow" = ["output_stationary", '
                    '"dot_product", "weight_stationary"]\n"sparsity.nm" = ["2:4", "1:4"]\n')
    points = load_sweep(spec).points
    assert len(points) == 6 and all(p.config is not None for p in points)
    assert {p.config.dataflow for p in points} == {"output_stationary", "dot_product",
                                                   "weight_stationary"}
    assert "dataflow=weight_stationary" in {part for p in points for part in p.label.split()}
    spec.write_text(spec.read_text().replace('nm = "2:4"\n', 'nm = "4:8"\nruntime = true\n')
                    .replace('["2:4", "1:4"]', '["4:8"]'))
    points = load_sweep(spec).points
    failed = [p for p in points if p.config is None]
    assert len(points) == 3 and len(failed) == 1
    assert "array.dataflow" in failed[0].error and "\n" not in failed[0].error
    assert "dot_product" in failed[0].label


@pytest.mark.parametrize("example, dataflow", [("accel_nm24_int8_4x4", "dot_product"),
                                               ("accel_nm24_int8_4x4", "weight_stationary"),
                                               ("accel_fp8_4x4", "weight_stationary")])
def test_digits_mlp_compiles_and_runs_unchanged(tmp_path, example, dataflow):
    """The model compiler and the sim executor need nothing per dataflow: the digits MLP,
    compiled for a 4x4 2:4 example accelerator (INT8; FP8 with exact accumulation) with another
    array.dataflow, runs a few test images on Verilator bit for bit against the golden executor
    (tb_accel checks every STORE), its cycles within 5 % of the cycle model
    (tests/test_compiler.py's _sim_run)."""
    from test_compiler import MODELS, _sim_run
    text = (MODELS / f"{example}.toml").read_text()
    assert 'dataflow = "output_stationary"' in text
    name = f"mlp_{example}_{dataflow}"
    design = tmp_path / f"{name}.toml"
    design.write_text(text.replace('dataflow = "output_stationary"', f'dataflow = "{dataflow}"')
                      .replace(f'name = "{example}"', f'name = "{name}"'))
    out, sim, golden = _sim_run(tmp_path, design, 8)
    assert sim["passed"], sim["log"]
    np.testing.assert_array_equal(out, golden)


def test_weight_stationary_accelerator_runs_runtime_patterns(sim_cache):
    """A run-time 4:8 weight-stationary accelerator (2x2: K-blocks of 2 beats, ACT words of one
    row's 64 elements): one GEMM per pattern of its table with the weights of each stored
    compressed per that pattern, then a 1:8 layer chained into a 2:4 one through ACT; random
    stalls, bit-exact against the golden executor, which equals golden.gemm.runtime_gemm_int
    per pattern; cycles within 5 % of the cycle model."""
    from nmforge.golden.gemm import runtime_gemm_int
    from nmforge.golden.nm import compress_runtime, prune_nm
    from nmforge.rtl.isa import Buffer
    config = parse_config({
        "name": "acc22ws_rt48", "array": {"rows": 2, "cols": 2, "dataflow": "weight_stationary"},
        "sparsity": {"nm": "4:8", "runtime": True}, "pe": INT8,
        "accelerator": {"stream_width": 32, "act_depth": 128, "weight_depth": 256,
                        "param_depth": 64, "out_depth": 256}}, source="test")
    run = runner(config, sim_cache / config.name)
    shape = run.shape
    assert (shape.k_group, shape.span(0)) == (64, 8)
    rng = np.random.default_rng(48)
    m, k, n, hidden = 3, 64, 3, 64
    a = rng.integers(-128, 128, (m, k))
    params = (rng.integers(-500, 500, hidden), rng.integers(1, 1 << 16, hidden),
              rng.integers(6, 20, hidden))
    commands, data = loads(shape, a, None, params)
    wants = gemm_per_pattern(shape, rng, a, n, params[0], commands, data)
    p18, p24 = shape.patterns.index((1, 8)), shape.patterns.index((2, 4))
    v1, i1 = compress_runtime(prune_nm(rng.integers(-128, 128, (k, hidden)), 1, 8), (1, 8))
    v2, i2 = compress_runtime(prune_nm(rng.integers(-128, 128, (hidden, n)), 2, 4), (2, 4))
    for addr, (v, i, pid) in ((128, (v1, i1, p18)), (160, (v2, i2, p24))):
        words = G.weight_image(v, i, shape, pid)
        commands.append(isa.load(Buffer.WEIGHT, addr, len(words), wait=True))
        data += G.stream_words(words, shape.weight_word_bits, shape.stream_width)
    commands += [isa.gemm(0, 128, 0, 64, m, k, hidden, relu=True, to_act=True, wait=True,
                          pattern=p18),
                 isa.gemm(64, 160, 0, 100, m, hidden, n, wait=True, pattern=p24),
                 isa.store(100, m * n, wait=True)]
    assert G.hazards(commands, shape) == []
    expected, _ = run(commands, data, stall=0.3, seed=5)
    assert not expected["status"]["cmd_error"]
    packets = expected["packets"]
    for packet, want in zip(packets, wants):
        assert np.array_equal(G.unpack_store(packet, m * n, 32, 32).reshape(m, n), want)
    h = G.requantize(runtime_gemm_int(a, v1, i1, (1, 8), 4, 32, "wrap")[0], *params, 8, 32,
                     relu=True)
    y = G.requantize(runtime_gemm_int(h, v2, i2, (2, 4), 4, 32, "wrap")[0],
                     *(p[:n] for p in params), 8, 32)
    assert np.array_equal(G.unpack_store(packets[-1], m * n, 8, 32).reshape(m, n), y)
    _, measured = run(commands, data, stall=0)
    predicted = run.predict(commands)["cycles"]
    assert abs(predicted - measured["cycles"]) <= 0.05 * measured["cycles"], (predicted, measured)


@pytest.mark.parametrize("dataflow, kind, accumulate", [
    ("dot_product", "fp8", "fp32"), ("dot_product", "mxfp4", None),
    ("weight_stationary", "fp8", "exact"), ("weight_stationary", "fp8", "fp32"),
    ("weight_stationary", "mxfp4", None)])
def test_fp_accelerators(sim_cache, dataflow, kind, accumulate):
    """FP8 E4M3 (dot-product: FP32 accumulation; weight-stationary: exact) and MXFP4 on 4x4
    accelerators (a beat of 16 K; on the dot-product array one PE tree sums 8 products per
    beat, golden.fp_mac / golden.mx.mx_mac see beats of 8 pairs; the weight-stationary array
    keeps exact partial sums in its accumulator memory and rounds after the last K-block, or
    for MXFP4 closes each 32-element block every second K-block, blocks added in K order): a
    5x64x7 GEMM with NaN/inf codes among the operands (and random block scales) under random
    stalls, FP32 results bit-exact against the golden executor, and that against the
    accumulation mode's own golden model."""
    from nmforge.golden.formats import get_format
    from nmforge.golden.mx import element_format
    from nmforge.rtl.isa import Buffer
    from nmforge.sim.kinds import FpKind, MxKind
    pe = {"fp8": {**FP8, "accumulate": accumulate}, "mxfp4": MXFP4}[kind]
    config = dot_config(f"{dataflow[:3]}acc44_{kind}{accumulate or ''}", rows=4, cols=4, pe=pe,
                        accelerator=DEPTHS)
    config = parse_config({**config.to_dict(), "array": {"rows": 4, "cols": 4,
                                                         "dataflow": dataflow}}, source="test")
    run = runner(config, sim_cache / config.name)
    shape = run.shape
    rng = np.random.default_rng(17)
    m, k, n = 5, 64, 7
    codes = FpKind.codes if kind == "fp8" else MxKind.codes
    fmt = get_format("fp8_e4m3") if kind == "fp8" else element_format("mxfp4")
    a, values, indices = code_operands(codes, fmt, rng, m, k, n)
    if kind == "mxfp4":
        images = [(Buffer.ACT, G.act_image(a, shape, MxKind.random_scales(rng, (m, 2)))),
                  (Buffer.WEIGHT, G.weight_image(values, indices, shape,
                                                 scales=MxKind.random_scales(rng, (2, n))))]
    else:
        images = [(Buffer.ACT, G.act_image(a, shape)),
                  (Buffer.WEIGHT, G.weight_image(values, indices, shape))]
    # weight-stationary: the cycle model knows its settling (FP32 partial sums: 7 cycles a row)
    expected = gemm_from_images(run, images, m, k, n, seed=7,
                                cycles=dataflow == "weight_stationary")
    if kind == "fp8":   # the golden executor's result is golden.fp_mac over the PEs' beats
        from nmforge.golden.fp_mac import fp_mac
        from nmforge.golden.nm import kept_pairs
        from nmforge.sim.kinds import beats_of
        groups = 4 if dataflow == "dot_product" else 1   # a PE's beat: 4 or 1 K-groups
        acts, weights = (beats_of(x, groups) for x in kept_pairs(a, values, indices, 2, 4))
        bits, _ = fp_mac("fp8_e4m3", acts, "fp8_e4m3", weights, accumulate,
                         shape.fp_lanes or 1, shape.fp_acc_bits)
        got = G.unpack_store(expected["packets"][0], m * n, 32, 32, signed=False).reshape(m, n)
        assert np.array_equal(got, bits.astype(np.int64))
