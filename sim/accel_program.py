"""A program for the accelerator testbench (sim.tb_accel): command words, data-in words and the
golden executor's expectation, as one JSON file."""
import json

from ..golden.accel import Executor
from ..rtl.isa import encode


def expected_run(shape, commands, data_in):
    """What the golden executor says a program produces: STORE packets and the final status."""
    executor = Executor(shape)
    packets = executor.run(commands, data_in)
    st = executor.status
    return {"packets": [[int(w) for w in p] for p in packets],
            "status": {"cmd_error": int(st.cmd_error), "error_code": st.error_code.value,
                       "overflow": int(st.overflow), "meta_error": int(st.meta_error),
                       "bad_groups": st.bad_groups, "array_beats": st.array_beats}}


def write_program(path, shape, commands, data_in):
    """Write the program file tb_accel runs (NMFORGE_PROGRAM); returns the expectation."""
    expected = expected_run(shape, commands, data_in)
    with open(path, "w") as f:
        json.dump({"commands": [encode(c) for c in commands],
                   "data_in": [int(w) for w in data_in], "expected": expected}, f)
    return expected


def random_program(shape, rng, gemms=3):
    """(commands, data-in words) of `gemms` random GEMMs larger than the array (odd shapes that
    need padding, random requantization, ReLU or raw outputs, every other one chained into a
    second layer from the ACT buffer), each loaded, run and stored; sized to fit the buffers."""
    from ..golden import accel as G
    from ..golden.nm import compress_nm, random_nm_weights
    from ..rtl.isa import Buffer, gemm, load, store

    def fits(m, k, n):
        rp, cp, groups = -(-m // shape.rows), -(-n // shape.cols), k // shape.m
        return (2 * rp * groups <= shape.act_depth and cp * groups <= shape.weight_depth
                and n <= shape.param_depth and m * n <= shape.out_depth)

    commands, data = [], []

    def send(buffer, addr, words):
        commands.append(load(buffer, addr, len(words), wait=True))
        data.extend(G.stream_words(words, shape.word_bits(buffer), shape.stream_width))

    for number in range(gemms):
        while True:
            m = int(rng.integers(shape.rows, 3 * shape.rows + 2))
            k = shape.m * int(rng.integers(2, 9))
            n = int(rng.integers(shape.cols, 3 * shape.cols + 2))
            if fits(m, k, n):
                break
            if fits(shape.rows, shape.m, shape.cols):
                m, k, n = shape.rows, shape.m, shape.cols
                break
        lo, hi = -(1 << (shape.act_width - 1)), 1 << (shape.act_width - 1)
        a = rng.integers(lo, hi, (m, k))
        w = random_nm_weights(rng, k, n, shape.n, shape.m, shape.weight_width)
        values, indices = compress_nm(w, shape.n, shape.m)
        params = (rng.integers(-3000, 3000, n), rng.integers(1, 1 << 16, n),
                  rng.integers(6, 24, n))
        send(Buffer.ACT, 0, G.act_image(a, shape))
        send(Buffer.WEIGHT, 0, G.weight_image(values, indices, shape))
        send(Buffer.PARAM, 0, G.param_image(*params))
        raw = number % 3 == 2
        commands.append(gemm(0, 0, 0, 0, m, k, n, relu=number % 2 == 1, raw=raw, wait=True))
        commands.append(store(0, m * n, wide=raw, wait=True))
    return commands, data
