"""The accelerator's command set (rtl.isa), memory images and golden executor (golden.accel)."""
import numpy as np
import pytest

from nmforge.gen.config import ConfigError, parse_config
from nmforge.golden import accel as G
from nmforge.golden.gemm import runtime_gemm_int, sparse_gemm_int
from nmforge.golden.nm import compress_nm, compress_runtime, prune_nm, random_nm_weights
from nmforge.rtl import isa
from nmforge.rtl.isa import Buffer, Error


def accel_config(rows=2, cols=3, nm="2:4", encoding="index", stream_width=32, runtime=False,
                 **depths):
    return parse_config({
        "name": "t", "array": {"rows": rows, "cols": cols, "dataflow": "output_stationary"},
        "sparsity": {"nm": nm, "encoding": encoding, "runtime": runtime},
        "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32,
               "overflow": "wrap"},
        "accelerator": {"stream_width": stream_width, **depths}}, source="test")


def shape_of(**kw):
    return isa.AcceleratorShape.from_config(accel_config(**kw))


def random_layer(rng, shape, m, k, n):
    a = rng.integers(-128, 128, (m, k))
    w = random_nm_weights(rng, k, n, shape.n, shape.m, 8)
    values, indices = compress_nm(w, shape.n, shape.m)
    bias = rng.integers(-5000, 5000, n)
    mult = rng.integers(1, 1 << 16, n)
    shift = rng.integers(0, 24, n)
    return a, values, indices, (bias, mult, shift)


def load_program(shape, a, values, indices, params, act_addr=0, weight_addr=0, param_addr=0):
    """LOAD commands and their data-in words for one layer's images."""
    images = [(Buffer.ACT, act_addr, G.act_image(a, shape)),
              (Buffer.WEIGHT, weight_addr, G.weight_image(values, indices, shape)),
              (Buffer.PARAM, param_addr, G.param_image(*params))]
    commands, data = [], []
    for buffer, addr, words in images:
        commands.append(isa.load(buffer, addr, len(words)))
        data += G.stream_words(words, shape.word_bits(buffer), shape.stream_width)
    return commands, data


def test_command_words_round_trip():
    command = isa.gemm(1, 2, 3, 4, 5, 8, 7, relu=True, to_act=True, wait=True)
    word = isa.encode(command)
    assert word < 1 << isa.COMMAND_BITS
    fields = isa.decode(word)
    assert fields["opcode"] == isa.Opcode.GEMM and fields["wait"] == 1
    assert fields["gemm"] == {"act_addr": 1, "weight_addr": 2, "param_addr": 3, "dst_addr": 4,
                              "m": 5, "k": 8, "n": 7, "relu": 1, "raw": 0, "to_act": 1,
                              "pattern": 0}
    assert isa.decode(isa.encode(isa.gemm(0, 0, 0, 0, 1, 8, 1, pattern=6)))["gemm"]["pattern"] == 6
    load = isa.decode(isa.encode(isa.load(Buffer.WEIGHT, 10, 20)))["load"]
    assert load == {"buffer": Buffer.WEIGHT.value, "addr": 10, "count": 20}


@pytest.mark.parametrize("nm,encoding", [("2:4", "index"), ("2:4", "bitmap"), ("2:2", "index"),
                                         ("1:4", "index")])
def test_images_round_trip(nm, encoding):
    shape = shape_of(nm=nm, encoding=encoding)
    rng = np.random.default_rng(3)
    a, values, indices, _ = random_layer(rng, shape, 5, 16, 7)
    assert np.array_equal(G.act_from_image(G.act_image(a, shape), 5, 16, shape), a)
    words = G.weight_image(values, indices, shape)
    assert len(words) == 3 * 16 // shape.m and max(words) < 1 << shape.weight_word_bits
    got_values, got_positions, _ = G.weights_from_image(words, 16, 9, shape)
    assert np.array_equal(got_values[:, :7], values)
    if not shape.dense:
        assert np.array_equal(got_positions[:, :7], indices)
    stream = G.stream_words(words, shape.weight_word_bits, 32)
    assert len(stream) == -(-len(words) * shape.weight_word_bits // 32)
    assert G.words_from_stream(stream, len(words), shape.weight_word_bits, 32) == words


def test_requantize_rounds_half_up_and_saturates():
    # (acc + bias) * mult / 2^shift: 3*1/2 = 1.5 -> 2; -3/2 = -1.5 -> -1 (half up); clamp to int8
    y = G.requantize([[3, -3, 1000, -1000, 5]], [0, 0, 0, 0, -6], [1, 1, 1, 1, 1],
                     [1, 1, 0, 0, 0], act_width=8, acc_width=32)
    assert y.tolist() == [[2, -1, 127, -128, -1]]
    assert G.requantize([[-5, 5]], [0, 0], [1, 1], [0, 0], 8, 32, relu=True).tolist() == [[0, 5]]


@pytest.mark.parametrize("nm,encoding", [("2:4", "index"), ("2:4", "bitmap"), ("2:2", "index")])
def test_executor_gemm_matches_golden_gemm(nm, encoding):
    shape = shape_of(nm=nm, encoding=encoding)
    rng = np.random.default_rng(5)
    m, k, n = 5, 16, 7
    a, values, indices, params = random_layer(rng, shape, m, k, n)
    commands, data = load_program(shape, a, values, indices, params)
    commands += [isa.gemm(0, 0, 0, 0, m, k, n, raw=True, wait=True),
                 isa.store(0, m * n, wide=True, wait=True),
                 isa.gemm(0, 0, 0, 100, m, k, n, relu=True),
                 isa.store(100, m * n, wait=True)]
    executor = G.Executor(shape)
    raw_packet, packet = executor.run(commands, data)
    acc, _ = sparse_gemm_int(a, values, indices, shape.n, shape.m, 32, "wrap")
    raw = G.unpack_store(raw_packet, m * n, 32, 32).reshape(m, n)
    assert np.array_equal(raw, acc + params[0])
    y = G.unpack_store(packet, m * n, 8, 32).reshape(m, n)
    assert np.array_equal(y, G.requantize(acc, *params, 8, 32, relu=True))
    assert len(packet) == -(-m * n // 4) and not executor.status.cmd_error
    assert executor.status.array_beats == 2 * 3 * 3 * (k // shape.m)  # two GEMMs of 3x3 tiles
    assert G.hazards(commands, shape) == []


def test_chained_layers_stay_in_the_activation_buffer():
    shape = shape_of(rows=2, cols=4, act_depth=256)
    rng = np.random.default_rng(7)
    m, k, n1, n2 = 6, 16, 8, 4
    a, v1, i1, p1 = random_layer(rng, shape, m, k, n1)
    _, v2, i2, p2 = random_layer(rng, shape, m, n1, n2)
    commands, data = load_program(shape, a, v1, i1, p1)
    w2 = G.weight_image(v2, i2, shape)
    commands.append(isa.load(Buffer.WEIGHT, 64, len(w2)))
    data += G.stream_words(w2, shape.weight_word_bits, 32)
    p2_words = G.param_image(*p2)
    commands.append(isa.load(Buffer.PARAM, 32, len(p2_words)))
    data += G.stream_words(p2_words, shape.word_bits(Buffer.PARAM), 32)
    commands += [isa.gemm(0, 0, 0, 128, m, k, n1, relu=True, to_act=True, wait=True),
                 isa.gemm(128, 64, 32, 0, m, n1, n2, wait=True),
                 isa.store(0, m * n2, wait=True)]
    (packet,) = G.Executor(shape).run(commands, data)
    h, _ = sparse_gemm_int(a, v1, i1, shape.n, shape.m, 32, "wrap")
    h = G.requantize(h, *p1, 8, 32, relu=True)
    y, _ = sparse_gemm_int(h, v2, i2, shape.n, shape.m, 32, "wrap")
    want = G.requantize(y, *p2, 8, 32)
    assert np.array_equal(G.unpack_store(packet, m * n2, 8, 32).reshape(m, n2), want)


BAD_COMMANDS = {
    "opcode": (0xE, Error.BAD_OPCODE),
    "buffer": (isa.load(Buffer.OUT, 0, 1), Error.BAD_BUFFER),
    "load_empty": (isa.load(Buffer.ACT, 0, 0), Error.SHAPE),
    "load_range": (isa.load(Buffer.WEIGHT, 60, 5), Error.WEIGHT_RANGE),
    "param_range": (isa.load(Buffer.PARAM, 0, 17), Error.PARAM_RANGE),
    "store_range": (isa.store(60, 5), Error.OUT_RANGE),
    "gemm_zero": (isa.gemm(0, 0, 0, 0, 0, 8, 3), Error.SHAPE),
    "k_group": (isa.gemm(0, 0, 0, 0, 2, 6, 3), Error.K_GROUP),
    "act_panels": (isa.gemm(0, 0, 0, 0, 18, 64, 3), Error.ACT_RANGE),
    "weight_panels": (isa.gemm(0, 0, 0, 0, 2, 64, 40), Error.WEIGHT_RANGE),
    "gemm_params": (isa.gemm(0, 0, 10, 0, 2, 8, 9), Error.PARAM_RANGE),
    "gemm_out": (isa.gemm(0, 0, 0, 40, 5, 8, 6), Error.OUT_RANGE),
    "chain_raw": (isa.gemm(0, 0, 0, 0, 2, 8, 3, raw=True, to_act=True), Error.SHAPE),
    "chain_range": (isa.gemm(0, 0, 0, 63, 2, 8, 12, to_act=True), Error.ACT_RANGE),
}


@pytest.mark.parametrize("case", sorted(BAD_COMMANDS))
def test_bad_command_is_refused_with_its_code(case):
    command, code = BAD_COMMANDS[case]
    shape = shape_of(act_depth=64, weight_depth=64, param_depth=16, out_depth=64)
    fields = isa.decode(isa.encode(command))
    assert isa.check(fields, shape) == code
    executor = G.Executor(shape)
    before = {b: list(words) for b, words in executor.buffers.items()}
    executor.run([command])
    assert executor.status.cmd_error and executor.status.error_code == code
    assert executor.buffers == before


def test_param_addr_is_aligned_to_a_power_of_two_column_count():
    """C a power of two: a tile's C PARAM words are one row of the C banks, so a GEMM's param_addr
    must be a multiple of C (PARAM_ALIGN; the executor refuses it and touches nothing); with
    C = 3 any address runs."""
    four = shape_of(cols=4, param_depth=16)
    assert four.param_align == 4 and shape_of(cols=3).param_align == 1
    for addr, code in ((2, Error.PARAM_ALIGN), (4, Error.NONE), (15, Error.PARAM_RANGE)):
        assert isa.check(isa.decode(isa.encode(isa.gemm(0, 0, addr, 0, 2, 8, 2))), four) == code
    executor = G.Executor(four)
    executor.run([isa.gemm(0, 0, 2, 0, 2, 8, 2)])
    assert executor.status.error_code == Error.PARAM_ALIGN and not any(executor.buffers[Buffer.OUT])
    assert isa.check(isa.decode(isa.encode(isa.gemm(0, 0, 1, 0, 2, 8, 2))), shape_of()) == Error.NONE


def test_hazards_find_a_missing_wait():
    shape = shape_of(act_depth=64)
    gemm = isa.gemm(0, 0, 0, 0, 2, 8, 3)
    # the GEMM may start while the LOAD into its activation panel still runs
    assert (0, 1, Buffer.ACT, "RAW") in G.hazards([isa.load(Buffer.ACT, 0, 2), gemm], shape)
    assert G.hazards([isa.load(Buffer.ACT, 0, 2), {**gemm, "wait": 1}], shape) == []
    # double buffering: loading the other half while the GEMM reads this one is legal
    assert G.hazards([gemm, isa.load(Buffer.ACT, 32, 2)], shape) == []
    assert G.hazards([gemm, isa.load(Buffer.ACT, 0, 2)], shape) == [(0, 1, Buffer.ACT, "WAR")]
    # a STORE of the GEMM's output without a barrier
    assert G.hazards([gemm, isa.store(0, 6)], shape) == [(0, 1, Buffer.OUT, "RAW")]


def test_accelerator_config_errors():
    with pytest.raises(ConfigError, match="accelerator.stream_width"):
        accel_config(stream_width=48)
    with pytest.raises(ConfigError, match="accelerator.act_depth"):
        accel_config(act_depth=0)
    cfg = accel_config()
    assert parse_config(cfg.to_dict()) == cfg


def test_runtime_design_switches_patterns_per_gemm():
    """A run-time 4:8 design: every GEMM names its pattern; weights are stored compressed per
    that pattern (k/S words per column panel), ACT words hold K-groups of N*Mmax; the executor
    equals golden.gemm.runtime_gemm_int pattern by pattern, and a bad pattern id is refused."""
    shape = shape_of(rows=2, cols=2, nm="4:8", runtime=True, act_depth=256, weight_depth=256)
    assert shape.k_group == 32 and shape.patterns[0] == (4, 4) and len(shape.patterns) == 7
    rng = np.random.default_rng(8)
    m, k, n = 3, 64, 3
    a = rng.integers(-128, 128, (m, k))
    params = (rng.integers(-500, 500, n), rng.integers(1, 1 << 16, n), rng.integers(0, 24, n))
    commands, data = load_program(shape, a, np.zeros((4, n), int), np.zeros((4, n), int), params)
    commands = [c for c in commands if c["operands"]["load"]["buffer"] != Buffer.WEIGHT]
    data = (G.stream_words(G.act_image(a, shape), shape.act_word_bits, 32)
            + G.stream_words(G.param_image(*params), 64, 32))
    wants = []
    for pid, pattern in enumerate(shape.patterns):
        w = prune_nm(rng.integers(-128, 128, (k, n)), *pattern)
        values, indices = compress_runtime(w, pattern)
        words = G.weight_image(values, indices, shape, pid)
        assert len(words) == 2 * k // shape.span(pid)
        commands += [isa.load(Buffer.WEIGHT, 0, len(words), wait=True),
                     isa.gemm(0, 0, 0, 0, m, k, n, raw=True, wait=True, pattern=pid),
                     isa.store(0, m * n, wide=True, wait=True)]
        data += G.stream_words(words, shape.weight_word_bits, 32)
        wants.append(runtime_gemm_int(a, values, indices, pattern, 4, 32, "wrap")[0] + params[0])
    commands.append(isa.gemm(0, 0, 0, 0, m, k, n, pattern=len(shape.patterns)))
    executor = G.Executor(shape)
    packets = executor.run(commands, data)
    for packet, want in zip(packets, wants, strict=True):
        assert np.array_equal(G.unpack_store(packet, m * n, 32, 32).reshape(m, n), want)
    assert executor.status.error_code == Error.PATTERN and not executor.status.meta_error
    assert executor.status.array_beats == sum(4 * k // shape.span(p) for p in range(7))


def test_runtime_malformed_indices_are_counted():
    """Indices that do not increase within a group of the GEMM's pattern are counted per beat
    and column, once per row panel (as the top row's decoders see them)."""
    shape = shape_of(rows=2, cols=2, nm="4:8", runtime=True, act_depth=256, weight_depth=256)
    pid = shape.patterns.index((2, 4))
    rng = np.random.default_rng(9)
    m, k, n = 4, 32, 2
    a = rng.integers(-128, 128, (m, k))
    w = prune_nm(rng.integers(-128, 128, (k, n)), 2, 4)
    values, indices = compress_runtime(w, (2, 4))
    indices[0, 1] = indices[1, 1]   # group 0 of column 1: equal indices
    params = (np.zeros(n, int), np.ones(n, int), np.zeros(n, int))
    commands, data = load_program(shape, a, values, indices, params)
    commands.append(isa.gemm(0, 0, 0, 0, m, k, n, raw=True, wait=True, pattern=pid))
    executor = G.Executor(shape)
    executor.run(commands, data)
    assert executor.status.meta_error and executor.status.bad_groups == 2  # 2 row panels


def fp8_shape(accumulate="exact"):
    return isa.AcceleratorShape.from_config(parse_config({
        "name": "t", "array": {"rows": 2, "cols": 3, "dataflow": "output_stationary"},
        "sparsity": {"nm": "2:4"},
        "pe": {"kind": "fp", "act_format": "fp8_e4m3", "weight_format": "fp8_e4m3",
               "accumulate": accumulate},
        "accelerator": {"stream_width": 32, "act_depth": 128, "weight_depth": 128,
                        "param_depth": 32, "out_depth": 256}}, source="test"))


@pytest.mark.parametrize("accumulate", ["exact", "fp32"])
def test_fp8_executor_passes_fp32_results_through(accumulate):
    """Kind "fp" (FP8 E4M3 codes in the buffers): each OUT word is golden.fp_mac's FP32 result
    over the kept pairs of its row and column (the output stage is a pass-through); chaining
    is refused."""
    from nmforge.golden.fp_mac import fp_mac
    from nmforge.golden.nm import kept_pairs
    from nmforge.sim.kinds import FpKind
    shape = fp8_shape(accumulate)
    assert (shape.act_width, shape.acc_width, shape.kind) == (8, 32, "fp")
    rng = np.random.default_rng(6)
    m, k, n = 5, 16, 7
    fa = __import__("nmforge.golden.formats", fromlist=["get_format"]).get_format("fp8_e4m3")
    a = FpKind.codes(fa, rng, (m, k))
    values = FpKind.codes(fa, rng, (k // 2, n))
    indices = np.array([sorted(rng.choice(4, 2, replace=False)) for _ in range(k // 4 * n)])
    indices = indices.reshape(k // 4, n, 2).transpose(0, 2, 1).reshape(k // 2, n)
    params = (np.zeros(n, int), np.ones(n, int), np.zeros(n, int))
    commands, data = load_program(shape, a, values, indices, params)
    commands += [isa.gemm(0, 0, 0, 0, m, k, n, wait=True), isa.store(0, m * n, wide=True, wait=True),
                 isa.gemm(0, 0, 0, 0, m, k, n, to_act=True)]
    executor = G.Executor(shape)
    packet, = executor.run(commands, data)
    acts, weights = kept_pairs(a, values, indices, 2, 4)
    want, _ = fp_mac("fp8_e4m3", acts, "fp8_e4m3", weights, accumulate, shape.fp_lanes or 1,
                     shape.fp_acc_bits)
    got = G.unpack_store(packet, m * n, 32, 32, signed=False).reshape(m, n)
    assert np.array_equal(got, want.astype(np.int64))
    assert executor.status.error_code == Error.SHAPE


def test_mxfp4_executor_matches_the_mx_mac():
    """Kind "mx" (MXFP4, blocks of 32): ACT words carry their rows' E8M0 scales, WEIGHT
    columns theirs after the metadata; each OUT word is golden.mx.mx_mac over the output's kept
    pairs and the scales of its blocks; k not a multiple of the block is refused."""
    from nmforge.golden.mx import element_format as mx_element_format, mx_mac
    from nmforge.golden.nm import kept_pairs
    from nmforge.sim.kinds import MxKind
    shape = isa.AcceleratorShape.from_config(parse_config({
        "name": "t", "array": {"rows": 2, "cols": 3, "dataflow": "output_stationary"},
        "sparsity": {"nm": "2:4"}, "pe": {"kind": "mx", "format": "mxfp4", "block_size": 32},
        "accelerator": {"stream_width": 32, "act_depth": 128, "weight_depth": 128,
                        "param_depth": 32, "out_depth": 256}}, source="test"))
    assert (shape.act_width, shape.side_bits, shape.block_size) == (4, 8, 32)
    rng = np.random.default_rng(7)
    m, k, n = 5, 64, 7
    fmt = mx_element_format("mxfp4")
    a = MxKind.codes(fmt, rng, (m, k))
    values = MxKind.codes(fmt, rng, (k // 2, n))
    indices = np.array([sorted(rng.choice(4, 2, replace=False)) for _ in range(k // 4 * n)])
    indices = indices.reshape(k // 4, n, 2).transpose(0, 2, 1).reshape(k // 2, n)
    a_scale, w_scale = MxKind.random_scales(rng, (m, 2)), MxKind.random_scales(rng, (2, n))
    images = [(Buffer.ACT, G.act_image(a, shape, a_scale)),
              (Buffer.WEIGHT, G.weight_image(values, indices, shape, scales=w_scale))]
    commands, data = [], []
    for buffer, words in images:
        commands.append(isa.load(buffer, 0, len(words)))
        data += G.stream_words(words, shape.word_bits(buffer), 32)
    commands += [isa.gemm(0, 0, 0, 0, m, k, n, wait=True), isa.store(0, m * n, wide=True, wait=True),
                 isa.gemm(0, 0, 0, 0, m, 48, n)]
    executor = G.Executor(shape)
    packet, = executor.run(commands, data)
    acts, weights = kept_pairs(a, values, indices, 2, 4)              # (m, n, G, N)
    a_side = np.repeat(a_scale, 8, axis=1)[:, None, :]
    w_side = np.repeat(w_scale, 8, axis=0).T[None, :, :]
    a_side, w_side = np.broadcast_arrays(a_side, w_side)
    want, _ = mx_mac("mxfp4", acts, weights, a_side, w_side, 4, shape.fp_lanes)
    got = G.unpack_store(packet, m * n, 32, 32, signed=False).reshape(m, n)
    assert np.array_equal(got, want.astype(np.int64))
    assert executor.status.error_code == Error.K_GROUP
