"""The accelerator RTL on Verilator (sim.tb_accel): command lists of GEMMs larger than the array
under random stalls on every stream, chained layers and refused commands, bit for bit against
the golden executor; the cycle model against the simulated cycles. One shared 2x2 2:4 build in
the default run; larger designs behind the slow marker."""
import json

import numpy as np
import pytest

from nmforge.gen.config import parse_config
from nmforge.gen.generate import generate
from nmforge.golden import accel as G
from nmforge.golden.cycle_model import predict
from nmforge.golden.gemm import runtime_gemm_int, sparse_gemm_int
from nmforge.golden.nm import (compress_nm, compress_runtime, malformed_groups, prune_nm,
                               random_nm_weights)
from nmforge.rtl import isa
from nmforge.rtl.isa import Buffer, Error
from nmforge.sim.accel_program import write_program
from nmforge.sim.regression import run_regression

from conftest import assert_passed

DEPTHS = {"act_depth": 128, "weight_depth": 128, "param_depth": 32, "out_depth": 256}


def accel_config(name="acc22", rows=2, cols=2, nm="2:4", encoding="index", stream_width=32,
                 runtime=False, **depths):
    return parse_config({
        "name": name, "array": {"rows": rows, "cols": cols, "dataflow": "output_stationary"},
        "sparsity": {"nm": nm, "encoding": encoding, "runtime": runtime},
        "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32,
               "overflow": "wrap"},
        "accelerator": {"stream_width": stream_width, **(depths or DEPTHS)}}, source="test")


def runner(config, work):
    """run(commands, data, stall, seed) -> (golden expectation, measured cycles) on the
    accelerator of `config`, built once in `work`; run.shape, run.predict(commands)."""
    generated = generate(config, work, "accelerator")
    section = json.loads(generated.manifest.read_text())["accelerator"]
    shape = isa.AcceleratorShape(**section["shape"])

    def run(commands, data, stall=0.3, seed=1):
        program = work / "program.json"
        expected = write_program(program, shape, commands, data)
        result_json = work / "result.json"
        result = run_regression(generated.verilog, generated.manifest, work, seed,
                                options={"program": program, "stall": stall,
                                         "result_json": result_json}, log=lambda line: None,
                                waves_on_failure=False)
        assert_passed(result)
        return expected, json.loads(result_json.read_text())
    run.shape = shape
    run.predict = lambda commands: predict(shape, commands, section["array_latency"],
                                           section["result_depth"])
    return run


@pytest.fixture(scope="module")
def design(sim_cache):
    """The shared 2x2 2:4 accelerator build."""
    return runner(accel_config(), sim_cache / "accel22")


def layer(rng, shape, m, k, n, extreme=False):
    a = rng.integers(-128, 128, (m, k))
    w = random_nm_weights(rng, k, n, shape.n, shape.m, 8)
    if extreme:
        a = rng.choice([-128, 127], size=a.shape)
        w = np.where(w != 0, rng.choice([-128, 127], size=w.shape), 0)
    values, indices = compress_nm(w, shape.n, shape.m)
    params = (rng.integers(-3000, 3000, n), rng.integers(1, 1 << 16, n), rng.integers(8, 26, n))
    return a, values, indices, params


def loads(shape, a=None, weights=None, params=None, act_addr=0, weight_addr=0, param_addr=0,
          wait=False):
    commands, data = [], []
    images = []
    if a is not None:
        images.append((Buffer.ACT, act_addr, G.act_image(a, shape)))
    if weights is not None:
        images.append((Buffer.WEIGHT, weight_addr, G.weight_image(*weights, shape)))
    if params is not None:
        images.append((Buffer.PARAM, param_addr, G.param_image(*params)))
    for buffer, addr, words in images:
        commands.append(isa.load(buffer, addr, len(words), wait=wait))
        data += G.stream_words(words, shape.word_bits(buffer), shape.stream_width)
    return commands, data


def test_gemms_larger_than_the_array_with_stalls(design):
    """Odd shapes (padding), raw and requantized outputs, ReLU, two GEMMs sharing loaded panels."""
    shape = design.shape
    rng = np.random.default_rng(11)
    m, k, n = 5, 24, 7
    a, values, indices, params = layer(rng, shape, m, k, n)
    commands, data = loads(shape, a, (values, indices), params)
    commands += [isa.gemm(0, 0, 0, 0, m, k, n, raw=True, wait=True),
                 isa.store(0, m * n, wide=True, wait=True),
                 isa.gemm(0, 0, 0, 64, m, k, n, relu=True),
                 isa.store(64, m * n, wait=True)]
    assert G.hazards(commands, shape) == []
    expected, _ = design(commands, data, stall=0.3)
    assert len(expected["packets"]) == 2 and not expected["status"]["cmd_error"]


def test_chained_layers_without_the_host(design):
    """Layer 1's requantized ReLU output stays in ACT and is layer 2's input; padding rows and
    columns (m = 5 on 2 rows, n1 = 6 on 2 columns) are written as zeros."""
    shape = design.shape
    rng = np.random.default_rng(12)
    m, k, n1, n2 = 5, 16, 8, 3
    a, v1, i1, p1 = layer(rng, shape, m, k, n1)
    _, v2, i2, p2 = layer(rng, shape, m, n1, n2)
    commands, data = loads(shape, a, (v1, i1), p1)
    more, more_data = loads(shape, None, (v2, i2), p2, weight_addr=64, param_addr=16)
    commands += more + [
        isa.gemm(0, 0, 0, 40, m, k, n1, relu=True, to_act=True, wait=True),
        isa.gemm(40, 64, 16, 0, m, n1, n2, wait=True),
        isa.store(0, m * n2, wait=True)]
    assert G.hazards(commands, shape) == []
    expected, _ = design(commands, data + more_data, stall=0.2, seed=2)
    h = G.requantize(sparse_gemm_int(a, v1, i1, shape.n, shape.m, 32, "wrap")[0], *p1, 8, 32,
                     relu=True)
    y = sparse_gemm_int(h, v2, i2, shape.n, shape.m, 32, "wrap")[0]
    want = G.requantize(y, *p2, 8, 32)
    got = G.unpack_store(expected["packets"][0], m * n2, 8, 32).reshape(m, n2)
    assert np.array_equal(got, want)  # the expectation the RTL matched is the two-layer model


def gemm_per_pattern(shape, rng, a, n, bias, commands, data):
    """Append to a run-time design's program, per pattern of its table, the random weights
    (k x n, pruned and stored compressed per that pattern at WEIGHT 16*id) and a raw GEMM of
    `a` with them, stored; returns the results golden.gemm gives (plus `bias`)."""
    (m, k), wants = a.shape, []
    for pid, pattern in enumerate(shape.patterns):
        values, indices = compress_runtime(prune_nm(rng.integers(-128, 128, (k, n)), *pattern),
                                           pattern)
        words = G.weight_image(values, indices, shape, pid)
        addr = 16 * pid
        commands += [isa.load(Buffer.WEIGHT, addr, len(words)),
                     isa.gemm(0, addr, 0, 40 * (pid % 2), m, k, n, raw=True, wait=True,
                              pattern=pid),
                     isa.store(40 * (pid % 2), m * n, wide=True, wait=True)]
        data += G.stream_words(words, shape.weight_word_bits, shape.stream_width)
        wants.append(runtime_gemm_int(a, values, indices, pattern, shape.n, 32, "wrap")[0]
                     + bias[:n])
    return wants


def test_runtime_patterns_switch_between_gemms(sim_cache):
    """A run-time 4:8 design (2x2): one GEMM per pattern of its table, back to back with the
    weights of each stored compressed per that pattern, then a 1:8 layer chained into a 2:4
    one through ACT; random stalls, bit-exact against the golden executor, which equals
    golden.gemm.runtime_gemm_int per pattern; a bad pattern id is refused. Without stalls the
    cycle model counts the same cycles as Verilator (the windows' registered steps included)."""
    run = runner(accel_config("acc22rt48", nm="4:8", runtime=True), sim_cache / "accel22rt48")
    shape = run.shape
    rng = np.random.default_rng(48)
    m, k, n = 3, 64, 3
    a = rng.integers(-128, 128, (m, k))
    params = (rng.integers(-500, 500, 32), rng.integers(1, 1 << 16, 32), rng.integers(6, 20, 32))
    commands, data = loads(shape, a, None, params)
    wants = gemm_per_pattern(shape, rng, a, n, params[0], commands, data)
    commands.append(isa.gemm(0, 0, 0, 0, m, k, n, pattern=len(shape.patterns), wait=True))
    # chained: layer 1 (1:8, n = 32) writes ACT, layer 2 (2:4) reads it with k = 32
    p18, p24 = shape.patterns.index((1, 8)), shape.patterns.index((2, 4))
    v1, i1 = compress_runtime(prune_nm(rng.integers(-128, 128, (k, 32)), 1, 8), (1, 8))
    v2, i2 = compress_runtime(prune_nm(rng.integers(-128, 128, (32, n)), 2, 4), (2, 4))
    for addr, (v, i, pid) in ((64, (v1, i1, p18)), (96, (v2, i2, p24))):
        words = G.weight_image(v, i, shape, pid)
        commands.append(isa.load(Buffer.WEIGHT, addr, len(words), wait=True))
        data += G.stream_words(words, shape.weight_word_bits, shape.stream_width)
    commands += [isa.gemm(0, 64, 0, 64, m, k, 32, relu=True, to_act=True, wait=True, pattern=p18),
                 isa.gemm(64, 96, 0, 100, m, 32, n, wait=True, pattern=p24),
                 isa.store(100, m * n, wait=True)]
    assert G.hazards(commands, shape) == []
    expected, _ = run(commands, data, stall=0.3, seed=5)
    packets = expected["packets"]
    for packet, want in zip(packets, wants):
        assert np.array_equal(G.unpack_store(packet, m * n, 32, 32).reshape(m, n), want)
    h = G.requantize(runtime_gemm_int(a, v1, i1, (1, 8), 4, 32, "wrap")[0], *(p[:32] for p in params),
                     8, 32, relu=True)
    y = G.requantize(runtime_gemm_int(h, v2, i2, (2, 4), 4, 32, "wrap")[0], *(p[:n] for p in params),
                     8, 32)
    assert np.array_equal(G.unpack_store(packets[-1], m * n, 8, 32).reshape(m, n), y)
    assert expected["status"]["error_code"] == Error.PATTERN.value
    _, measured = run(commands, data, stall=0)
    assert run.predict(commands)["cycles"] == measured["cycles"]


def test_malformed_metadata_is_counted_not_computed_as_valid(design):
    """Weights whose indices repeat or fall out of order in some groups: the GEMM runs, the
    accelerator raises the sticky `meta_error` and counts every bad (column, K-group) once per
    row panel that streams it (golden.nm.malformed_groups x row panels, not taken from the
    executor), and the next GEMM with good weights is bit-exact."""
    shape = design.shape
    rng = np.random.default_rng(30)
    m, k, n = 5, 16, 3
    a, values, indices, params = layer(rng, shape, m, k, n)
    bad_indices = indices.copy()
    bad_indices[0, 0] = bad_indices[1, 0]            # group 0, column 0: equal indices
    bad_indices[2:4, 2] = bad_indices[2:4, 2][::-1]  # group 1, column 2: decreasing
    bad_indices[6, 1], bad_indices[7, 1] = 3, 0      # group 3, column 1: decreasing
    bad = int(malformed_groups(bad_indices, shape.n, shape.m).sum())
    assert bad == 3
    commands, data = loads(shape, a, (values, bad_indices), params)
    good, good_data = loads(shape, None, (values, indices), None, weight_addr=64)
    commands += [isa.gemm(0, 0, 0, 100, m, k, n, raw=True, wait=True)] + good + [
        isa.gemm(0, 64, 0, 0, m, k, n, wait=True), isa.store(0, m * n, wait=True)]
    expected, _ = design(commands, data + good_data, stall=0.2, seed=4)
    status = expected["status"]
    assert status["meta_error"] == 1 and status["bad_groups"] == bad * -(-m // shape.rows)
    want = G.requantize(sparse_gemm_int(a, values, indices, shape.n, shape.m, 32, "wrap")[0],
                        *params, 8, 32)
    assert np.array_equal(G.unpack_store(expected["packets"][0], m * n, 8, 32).reshape(m, n), want)


def code_operands(codes, fmt, rng, m, k, n):
    """A 2:4 GEMM's operands as format codes (`codes`: sim.kinds FpKind.codes or MxKind.codes,
    NaN/inf at 1 %): activations (m x k), compressed values and random sorted indices."""
    a = codes(fmt, rng, (m, k), special_rate=0.01)
    values = codes(fmt, rng, (k // 2, n), special_rate=0.01)
    indices = np.array([sorted(rng.choice(4, 2, replace=False)) for _ in range(k // 4 * n)])
    return a, values, indices.reshape(k // 4, n, 2).transpose(0, 2, 1).reshape(k // 2, n)


@pytest.mark.parametrize("accumulate", ["exact", "fp32"])
def test_fp8_gemm_larger_than_the_array(sim_cache, accumulate):
    """Kind "fp", FP8 E4M3 2:4 on a 2x2 array: buffers hold the codes, the output stage passes
    the FP32 result bits through; a 5x16x7 GEMM (NaN/inf codes among the operands) under random
    stalls, bit-exact against the golden executor (golden.fp_mac per output)."""
    from nmforge.golden.formats import get_format
    from nmforge.sim.kinds import FpKind
    config = parse_config({
        "name": f"acc22fp8{accumulate}",
        "array": {"rows": 2, "cols": 2, "dataflow": "output_stationary"},
        "sparsity": {"nm": "2:4"},
        "pe": {"kind": "fp", "act_format": "fp8_e4m3", "weight_format": "fp8_e4m3",
               "accumulate": accumulate},
        "accelerator": {"stream_width": 32, **DEPTHS}}, source="test")
    run = runner(config, sim_cache / config.name)
    shape = run.shape
    fmt = get_format("fp8_e4m3")
    rng = np.random.default_rng(8)
    m, k, n = 5, 16, 7
    a, values, indices = code_operands(FpKind.codes, fmt, rng, m, k, n)
    params = (np.zeros(n, int), np.ones(n, int), np.zeros(n, int))
    commands, data = loads(shape, a, (values, indices), params)
    commands += [isa.gemm(0, 0, 0, 0, m, k, n, wait=True),
                 isa.store(0, m * n, wide=True, wait=True)]
    expected, _ = run(commands, data, stall=0.3, seed=6)
    assert len(expected["packets"]) == 1 and not expected["status"]["cmd_error"]


def test_mxfp4_gemm_larger_than_the_array(sim_cache):
    """Kind "mx", MXFP4 (blocks of 32) 2:4 on a 2x2 array: ACT words carry their rows' E8M0
    scales and WEIGHT columns theirs; a 5x64x5 GEMM under random stalls, bit-exact against the
    golden executor (golden.mx.mx_mac per output, FP32 bits passed through)."""
    from nmforge.golden.mx import element_format
    from nmforge.sim.kinds import MxKind
    config = parse_config({
        "name": "acc22mxfp4", "array": {"rows": 2, "cols": 2, "dataflow": "output_stationary"},
        "sparsity": {"nm": "2:4"}, "pe": {"kind": "mx", "format": "mxfp4", "block_size": 32},
        "accelerator": {"stream_width": 32, **DEPTHS}}, source="test")
    run = runner(config, sim_cache / config.name)
    shape = run.shape
    fmt = element_format("mxfp4")
    rng = np.random.default_rng(9)
    m, k, n = 5, 64, 5
    a, values, indices = code_operands(MxKind.codes, fmt, rng, m, k, n)
    images = [(Buffer.ACT, G.act_image(a, shape, MxKind.random_scales(rng, (m, 2)))),
              (Buffer.WEIGHT, G.weight_image(values, indices, shape,
                                             scales=MxKind.random_scales(rng, (2, n))))]
    gemm_from_images(run, images, m, k, n, seed=7)


def gemm_from_images(run, images, m, k, n, seed, cycles=False):
    """LOAD each (buffer, words) of `images` at address 0, one GEMM (m, k, n) into OUT, a wide
    STORE; run under random stalls (bit-exact against the golden executor); the expectation.
    With `cycles`, run it again without stalls: the cycle model within 5 %."""
    shape, commands, data = run.shape, [], []
    for buffer, words in images:
        commands.append(isa.load(buffer, 0, len(words)))
        data += G.stream_words(words, shape.word_bits(buffer), shape.stream_width)
    commands += [isa.gemm(0, 0, 0, 0, m, k, n, wait=True),
                 isa.store(0, m * n, wide=True, wait=True)]
    expected, _ = run(commands, data, stall=0.3, seed=seed)
    assert len(expected["packets"]) == 1 and not expected["status"]["cmd_error"]
    if cycles:
        measured = run(commands, data, stall=0)[1]["cycles"]
        predicted = run.predict(commands)["cycles"]
        assert abs(predicted - measured) <= 0.05 * measured, (predicted, measured)
    return expected


BAD = {  # command, code (depths: ACT 128, WEIGHT 128, PARAM 32, OUT 256 words)
    "opcode": (0x7, Error.BAD_OPCODE),
    "buffer": (isa.load(Buffer.OUT, 0, 1), Error.BAD_BUFFER),
    "load_empty": (isa.load(Buffer.ACT, 0, 0), Error.SHAPE),
    "load_range": (isa.load(Buffer.ACT, 120, 9), Error.ACT_RANGE),
    "gemm_zero": (isa.gemm(0, 0, 0, 0, 4, 8, 0), Error.SHAPE),
    "k_group": (isa.gemm(0, 0, 0, 0, 4, 10, 4), Error.K_GROUP),
    "act_panels": (isa.gemm(0, 0, 0, 0, 40, 32, 2), Error.ACT_RANGE),
    "weight_panels": (isa.gemm(0, 0, 0, 0, 2, 32, 40), Error.WEIGHT_RANGE),
    # 256 panels: a factor whose low 8 bits (those of depth 128 the controller multiplies) are 0
    "act_panels_wide": (isa.gemm(0, 0, 0, 0, 512, 4, 4), Error.ACT_RANGE),
    "weight_panels_wide": (isa.gemm(0, 0, 0, 0, 2, 4, 512), Error.WEIGHT_RANGE),
    "param_range": (isa.gemm(0, 0, 30, 0, 2, 8, 4), Error.PARAM_RANGE),
    "param_align": (isa.gemm(0, 0, 1, 0, 2, 8, 4), Error.PARAM_ALIGN),   # C = 2 PARAM banks
    "out_range": (isa.gemm(0, 0, 0, 250, 2, 8, 4), Error.OUT_RANGE),
    "chain_raw": (isa.gemm(0, 0, 0, 0, 2, 8, 4, raw=True, to_act=True), Error.SHAPE),
    "chain_range": (isa.gemm(0, 0, 0, 127, 4, 8, 4, to_act=True), Error.ACT_RANGE),
    "chain_onto_input": (isa.gemm(0, 0, 0, 2, 4, 8, 4, to_act=True), Error.ACT_RANGE),
    "store_range": (isa.store(200, 57), Error.OUT_RANGE),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_command_refused_then_next_is_exact(design, case):
    """The bad command sets cmd_error with its code, writes nothing (the OUT words its GEMM or
    STORE would touch are checked by the STORE below) and the next GEMM is bit-exact."""
    command, code = BAD[case]
    shape = design.shape
    assert isa.check(isa.decode(isa.encode(command)), shape) == code
    rng = np.random.default_rng(20)
    a, values, indices, params = layer(rng, shape, 4, 8, 4)
    commands, data = loads(shape, a, (values, indices), params)
    commands += [isa.gemm(0, 0, 0, 200, 4, 8, 4, wait=True), command,
                 isa.gemm(0, 0, 0, 0, 4, 8, 4, wait=True), isa.store(0, 16, wait=True),
                 isa.store(200, 16, wait=True)]
    expected, _ = design(commands, data, stall=0.2, seed=3)
    assert expected["status"]["error_code"] == code.value and expected["status"]["cmd_error"]
    assert expected["packets"][0] == expected["packets"][1]  # nothing overwritten


@pytest.mark.parametrize("m,k,n", [(8, 64, 6), (4, 8, 8)])
def test_cycle_model_within_5_percent(design, m, k, n):
    """No stalls: the simulated cycles of a load-compute-store program (long K: array-bound;
    short K: drain-bound) agree with golden.cycle_model within 5 %."""
    shape = design.shape
    rng = np.random.default_rng(m * k)
    a, values, indices, params = layer(rng, shape, m, k, n)
    commands, data = loads(shape, a, (values, indices), params)
    commands += [isa.gemm(0, 0, 0, 0, m, k, n, wait=True), isa.store(0, m * n, wait=True)]
    _, measured = design(commands, data, stall=0)
    predicted = design.predict(commands)["cycles"]
    print(f"{m}x{k}x{n}: simulated {measured['cycles']} cycles, model {predicted}")
    assert abs(predicted - measured["cycles"]) <= 0.05 * measured["cycles"], (predicted, measured)


@pytest.mark.slow
@pytest.mark.parametrize("nm,encoding", [("2:4", "index"), ("1:4", "index"), ("2:2", "index"),
                                         ("2:4", "bitmap")])
def test_4x4_accelerator_64x512x64(sim_cache, nm, encoding):
    """A 4x4 array inside the accelerator, 64-bit streams: a 64x512x64 GEMM (and a chained
    second layer) under stalls, bit-exact; the same program without stalls within 5 % of the
    cycle model."""
    config = accel_config(f"acc44_{nm.replace(':', '')}_{encoding}", 4, 4, nm, encoding, 64,
                          act_depth=8192, weight_depth=4096, param_depth=128, out_depth=4096)
    run = runner(config, sim_cache / config.name)
    shape = run.shape
    rng = np.random.default_rng(44)
    m, k, n, n2 = 64, 512, 64, 16
    a, values, indices, params = layer(rng, shape, m, k, n)
    _, v2, i2, p2 = layer(rng, shape, m, n, n2)
    commands, data = loads(shape, a, (values, indices), params)
    more, more_data = loads(shape, None, (v2, i2), p2, weight_addr=2048, param_addr=64)
    commands += more + [isa.gemm(0, 0, 0, 0, m, k, n, wait=True),
                        isa.gemm(0, 0, 0, 4096, m, k, n, relu=True, to_act=True, wait=True),
                        isa.store(0, m * n, wait=True),
                        isa.gemm(4096, 2048, 64, 0, m, n, n2, wait=True),
                        isa.store(0, m * n2, wait=True)]
    data += more_data
    assert G.hazards(commands, shape) == []
    run(commands, data, stall=0.3)
    _, measured = run(commands, data, stall=0)
    predicted = run.predict(commands)["cycles"]
    assert abs(predicted - measured["cycles"]) <= 0.05 * measured["cycles"], (predicted, measured)
