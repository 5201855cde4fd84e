"""Board testbench of the accelerator: the host driver `nmforge.fpga.host.AcceleratorLink`, unchanged,
drives the simulated board logic (`rtl.host_link.LinkedAccelerator`: UART receiver and
transmitter, host-link engine, accelerator) through its `rx`/`tx` pins, the way `sim.tb_board`
drives a bare array (its `UartBridge` and setup are reused).

GEMMs larger than the array (LOAD of A, W and PARAM, one GEMM, a STORE read back through the
UART) must equal the golden models: the raw accumulators `golden.gemm.sparse_gemm_int`, the
requantized outputs `golden.accel.requantize`. A refused command sets cmd_error / error_code,
CLEAR resets them, and the next GEMM is still exact; the accelerator's `array_beats` counter
equals the beats the GEMMs need.

Environment: as sim.tb_board (NMFORGE_MANIFEST, NMFORGE_SEED, NMFORGE_DIVISOR,
NMFORGE_TIMEOUT_CYCLES), NMFORGE_SHAPES ("MxKxN,..."; default two shapes larger than the
array), NMFORGE_RESULT_JSON (shapes and link statistics go here).
"""
import json
import os

import cocotb
import numpy as np
from cocotb.task import bridge

from ..fpga.host import AcceleratorLink
from ..golden import accel as G
from ..golden.gemm import sparse_gemm_int
from ..golden.nm import compress_nm, random_nm_weights
from ..rtl import isa
from .harness import env_int, manifest, rngs, start
from .tb_board import CLOCK_HZ, UartBridge


def _shapes(shape):
    text = os.environ.get("NMFORGE_SHAPES")
    if text:
        return [tuple(int(x) for x in s.split("x")) for s in text.split(",")]
    r, kg, c = shape.rows, shape.k_group, shape.cols   # K: whole ACT words of any dataflow
    return [(2 * r + 1, 3 * kg, 2 * c + 1), (3 * r, 4 * kg, 2 * c)]


@cocotb.test()
async def accel_host_gemm(dut):
    info = manifest()
    shape = isa.AcceleratorShape(**info["accelerator"]["shape"])
    divisor = env_int("NMFORGE_DIVISOR", 8)
    timeout_s = env_int("NMFORGE_TIMEOUT_CYCLES", 0) / CLOCK_HZ
    await start(dut)
    port = UartBridge(dut, divisor, read_timeout_cycles=200 * 10 * divisor)
    rng, _ = rngs()

    def operands(mdim, k, ndim):
        a = rng.integers(-(1 << (shape.act_width - 1)), 1 << (shape.act_width - 1), (mdim, k))
        w = random_nm_weights(rng, k, ndim, shape.n, shape.m, shape.weight_width)
        values, indices = compress_nm(w, shape.n, shape.m)
        acc, _ = sparse_gemm_int(a, values, indices, shape.n, shape.m, shape.acc_width, shape.overflow)
        return a, values, indices, acc

    def beats(mdim, k, ndim):
        return -(-mdim // shape.rows) * -(-ndim // shape.cols) * (k // shape.span())

    def host():
        link = AcceleratorLink(port, info, sleep=port.sleep, device_timeout_s=timeout_s, retries=2000)
        status = link.status()
        assert not status["busy"] and not status["cmd_error"] and status["array_beats"] == 0, status
        runs, expected_beats = [], 0
        for number, (mdim, k, ndim) in enumerate(_shapes(shape)):
            a, values, indices, acc = operands(mdim, k, ndim)
            if number % 2 == 0:   # raw accumulators
                got, want = link.gemm(a, values, indices), acc
            else:                 # output stage: bias, requantization, ReLU
                params = (rng.integers(-3000, 3000, ndim), rng.integers(1, 1 << 15, ndim),
                          rng.integers(8, 16, ndim))
                got = link.gemm(a, values, indices, params, relu=True)
                want = G.requantize(acc, *params, shape.act_width, shape.acc_width, relu=True)
            assert np.array_equal(got, want), f"GEMM {mdim}x{k}x{ndim} differs\ngot\n{got}\nwant\n{want}"
            expected_beats += beats(mdim, k, ndim)
            runs.append([mdim, k, ndim])
        status = link.status()
        assert status["array_beats"] == expected_beats, (status, expected_beats)
        assert status["cycles"] > 0 and not status["busy"] and not status["link_error"], status

        # A refused command: cmd_error and its code, nothing computed; CLEAR resets the flags and
        # counters, and the next GEMM is exact.
        link.command(isa.load(isa.Buffer.ACT, shape.act_depth, 1))
        status = link.status()
        assert status["cmd_error"] and status["error_code"] == isa.Error.ACT_RANGE, status
        link.clear()
        status = link.status()
        assert not status["cmd_error"] and status["array_beats"] == 0, status
        a, values, indices, acc = operands(shape.rows + 1, shape.k_group, shape.cols + 1)
        assert np.array_equal(link.gemm(a, values, indices), acc), "GEMM after CLEAR differs"
        return runs, link.stats

    runs, stats = await bridge(host)()
    assert port.framing_errors == 0
    dut._log.info(f"{len(runs)} GEMMs {runs} through the UART: {stats}")
    if os.environ.get("NMFORGE_RESULT_JSON"):
        with open(os.environ["NMFORGE_RESULT_JSON"], "w") as f:
            json.dump({"runs": runs, "stats": stats}, f)
