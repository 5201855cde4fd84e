"""rtl.sliced_memory.SlicedMemory against a plain list of words, in Amaranth's simulator: writes
and reads at random addresses (a read sees the word of the cycle before; a write and a read of
one word in one cycle read either word: rtl.banked_memory.BUFFER_ATTRS), deep enough to be
sliced and not."""
import random

import pytest
from amaranth.sim import Simulator

from nmforge.rtl.sliced_memory import SlicedMemory, slice_bits


@pytest.mark.parametrize("width, depth, slices", [(10, 4096, 3), (10, 2048, 1), (5, 8192, 3)])
def test_reads_what_was_written_across_slices(width, depth, slices):
    dut = SlicedMemory(width, depth)
    assert -(-width // slice_bits(width, depth)) == slices
    rng = random.Random(depth + width)
    model = [0] * depth
    touched = [rng.randrange(depth) for _ in range(40)]

    async def bench(ctx):
        for _ in range(400):
            addr, word = rng.choice(touched), rng.getrandbits(width)
            read = rng.choice(touched)
            write = rng.random() < 0.6
            ctx.set(dut.wr_addr, addr)
            ctx.set(dut.wr_data, word)
            ctx.set(dut.wr_en, write)
            ctx.set(dut.rd_addr, read)
            allowed = {model[read], word} if write and read == addr else {model[read]}
            await ctx.tick()
            if write:
                model[addr] = word
            assert ctx.get(dut.rd_data) in allowed, (read, addr)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
