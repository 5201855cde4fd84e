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
    second layer from the ACT buffer), each loaded, run and stored; sized to fit the buffers.
    Int kinds (run-time designs: a random pattern per GEMM); fp/mx programs are written by their
    tests (tests/test_accel.py)."""
    from ..golden import accel as G
    from ..golden.nm import compress_runtime, prune_nm
    from ..golden.ints import random_ints
    from ..rtl.isa import Buffer, gemm, load, store

    if shape.kind != "int":
        raise ValueError(f"random accelerator programs are for pe.kind 'int', not {shape.kind!r}")

    def fits(m, k, n, pid):
        rp, cp = -(-m // shape.rows), -(-n // shape.cols)
        return (2 * rp * (k // shape.k_group) <= shape.act_depth
                and cp * (k // shape.span(pid)) <= shape.weight_depth
                and n <= shape.param_depth and m * n <= shape.out_depth)

    commands, data = [], []

    def send(buffer, addr, words):
        commands.append(load(buffer, addr, len(words), wait=True))
        data.extend(G.stream_words(words, shape.word_bits(buffer), shape.stream_width))

    for number in range(gemms):
        pid = int(rng.integers(len(shape.patterns)))
        while True:
            m = int(rng.integers(shape.rows, 3 * shape.rows + 2))
            k = shape.k_group * int(rng.integers(2, 9 if not shape.runtime else 3))
            n = int(rng.integers(shape.cols, 3 * shape.cols + 2))
            if fits(m, k, n, pid):
                break
            if fits(shape.rows, shape.k_group, shape.cols, pid):
                m, k, n = shape.rows, shape.k_group, shape.cols
                break
        a = random_ints(rng, (m, k), shape.act_width)
        pattern = shape.patterns[pid]
        w = prune_nm(random_ints(rng, (k, n), shape.weight_width), *pattern)
        values, indices = compress_runtime(w, pattern)
        params = (rng.integers(-3000, 3000, n), rng.integers(1, 1 << 16, n),
                  rng.integers(6, 24, n))
        send(Buffer.ACT, 0, G.act_image(a, shape))
        send(Buffer.WEIGHT, 0, G.weight_image(values, indices, shape, pid))
        send(Buffer.PARAM, 0, G.param_image(*params))
        raw = number % 3 == 2
        commands.append(gemm(0, 0, 0, 0, m, k, n, relu=number % 2 == 1, raw=raw, wait=True,
                             pattern=pid))
        commands.append(store(0, m * n, wide=raw, wait=True))
    return commands, data
