"""rtl.banked_memory.BankedMemory against a plain list of words, in Amaranth's simulator: random
multi-lane writes (random lane enables) and multi-lane reads from every start address, across
the bank boundary and the buffer's end; read data holds while the read is not enabled."""
import random

import pytest
from amaranth.sim import Simulator

from nmforge.rtl.banked_memory import BankedMemory


@pytest.mark.parametrize("write_lanes, read_lanes, aligned", [
    (4, 8, False), (1, 4, False), (3, 2, False), (1, 1, False), (1, 8, True), (1, 4, True)])
def test_lanes_read_and_write_consecutive_words_from_any_address(write_lanes, read_lanes, aligned):
    """`aligned`: the reads start at multiples of the bank count only (aligned_reads: no read
    rotation, the PARAM buffer's case)."""
    width, depth = 12, 64
    dut = BankedMemory(width, depth, write_lanes, read_lanes, aligned_reads=aligned)
    step = dut.banks if aligned else 1
    rng = random.Random(write_lanes * 10 + read_lanes)
    model = [0] * depth

    async def bench(ctx):
        for _ in range(300):
            addr = rng.randrange(depth - write_lanes + 1)
            enables = rng.getrandbits(write_lanes)
            words = [rng.getrandbits(width) for _ in range(write_lanes)]
            ctx.set(dut.wr_addr, addr)
            ctx.set(dut.wr_en, enables)
            for lane, word in enumerate(words):
                ctx.set(dut.wr_data[lane], word)
                if enables >> lane & 1:
                    model[addr + lane] = word
            await ctx.tick()
            ctx.set(dut.wr_en, 0)
            start = rng.randrange(0, depth - read_lanes + 1, step)
            ctx.set(dut.rd_addr, start)
            ctx.set(dut.rd_en, 1)
            await ctx.tick()
            ctx.set(dut.rd_en, 0)
            ctx.set(dut.rd_addr, rng.randrange(depth - read_lanes + 1))
            want = model[start:start + read_lanes]
            assert [ctx.get(dut.rd_data[i]) for i in range(read_lanes)] == want, start
            await ctx.tick()   # not enabled: the data holds
            assert [ctx.get(dut.rd_data[i]) for i in range(read_lanes)] == want, start

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
