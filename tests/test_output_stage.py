"""The int output stage (rtl/output_stage.py) against golden.accel.requantize, element by
element in Amaranth's simulator: random operands, every shift 0..63, and the corners (extreme
accumulators and biases, mult 0 / 1 / max, ties of the rounding)."""
import itertools

import numpy as np
from amaranth.sim import Simulator

from nmforge.golden.accel import requantize
from nmforge.rtl.output_stage import LATENCY, OutputStage

ACC_WIDTH, ACT_WIDTH = 32, 8


def operands():
    rng = np.random.default_rng(7)
    n = 1200
    small = rng.random(n) < 0.5
    acc = np.where(small, rng.integers(-3000, 3000, n), rng.integers(-2 ** 31, 2 ** 31, n))
    bias = np.where(small, rng.integers(-300, 300, n), rng.integers(-2 ** 31, 2 ** 31, n))
    mult, shift = rng.integers(0, 2 ** 16, n), rng.integers(0, 64, n)
    extremes = [-2 ** 31, -1, 0, 1, 2 ** 31 - 1]
    corners = np.array(list(itertools.product(extremes, [-2 ** 31, 0, 2 ** 31 - 1],
                                              [0, 1, 2 ** 16 - 1], [0, 1, 9, 10, 50, 63])))
    ties = np.array([[k * 2 ** (s - 1), 0, 1, s] for k in (-3, -1, 1, 3) for s in range(1, 12)])
    table = np.concatenate([np.stack([acc, bias, mult, shift], axis=1), corners, ties])
    return [table[:, i] for i in range(4)]


def simulate(acc, bias, mult, shift, raw, relu):
    stage = OutputStage(ACC_WIDTH, ACT_WIDTH, 16)
    got = {}

    async def bench(ctx):
        ctx.set(stage.raw, raw)
        ctx.set(stage.relu, relu)
        for i in range(len(acc) + LATENCY + 1):
            ctx.set(stage.valid, i < len(acc))
            if i < len(acc):
                for port, value in ((stage.acc, acc), (stage.bias, bias), (stage.mult, mult),
                                    (stage.shift, shift)):
                    ctx.set(port, int(value[i]))
                ctx.set(stage.tag, i)
            await ctx.tick()
            if ctx.get(stage.y_valid):
                got[ctx.get(stage.y_tag)] = ctx.get(stage.y)

    sim = Simulator(stage)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array([got[i] for i in range(len(acc))])


def test_output_stage_is_requantize_bit_for_bit():
    acc, bias, mult, shift = operands()
    for raw, relu in itertools.product((False, True), repeat=2):
        want = requantize(acc, bias, mult, shift, ACT_WIDTH, ACC_WIDTH, relu=relu, raw=raw)
        got = simulate(acc, bias, mult, shift, raw, relu)
        wrong = np.flatnonzero(got != want)
        assert not len(wrong), (f"raw={raw} relu={relu}: {len(wrong)} wrong, first: acc "
                                f"{acc[wrong[0]]} bias {bias[wrong[0]]} mult {mult[wrong[0]]} "
                                f"shift {shift[wrong[0]]}: {got[wrong[0]]} != {want[wrong[0]]}")
