"""A buffer with one write port and one read port (reading every cycle, data one cycle after the
address), built from memories of `slice_bits(depth)` bits each side by side.

An ECP5 DP16KD holds 2048 x 9, 4096 x 4, 8192 x 2 or 16384 x 1 bits. Left to itself, Yosys builds
a deeper memory from 2048 x 9 blocks with a multiplexer per data bit behind them, fed from block
RAMs across the die (the 8x8 accelerator's 8192 x 160 WEIGHT buffer: 72 DP16KD and ~500 LUT4 of
4:1 multiplexers); sliced to the block's width at that depth every block RAM drives its own bits
(80 DP16KD, no multiplexer). Up to 2048 words the memory is one slice: nothing changes.
"""
from amaranth import Cat, Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .banked_memory import BUFFER_ATTRS

BLOCK_BITS = 16384     # data bits of one block RAM (DP16KD without its parity bits)
WIDE_DEPTH = 2048      # the deepest geometry with 9 bits per block (2048 x 9)


def slice_bits(width, depth):
    """Bits per slice: all of `width` up to WIDE_DEPTH words, else the block's width at `depth`
    words (rounded up to a power of two)."""
    if depth <= WIDE_DEPTH:
        return width
    return max(1, BLOCK_BITS // (1 << (depth - 1).bit_length()))


class SlicedMemory(wiring.Component):
    """`width` x `depth` words; write `wr_data` at `wr_addr` when `wr_en`; `rd_data` is word
    `rd_addr` of the cycle before (a write and a read of one word in one cycle read either word:
    rtl.banked_memory.BUFFER_ATTRS)."""

    def __init__(self, width, depth):
        self.width, self.depth = width, depth
        addr_bits = (depth - 1).bit_length()
        super().__init__({"wr_addr": In(addr_bits), "wr_data": In(width), "wr_en": In(1),
                          "rd_addr": In(addr_bits), "rd_data": Out(width)})

    def elaborate(self, platform):
        m = Module()
        step = slice_bits(self.width, self.depth)
        outputs = []
        for low in range(0, self.width, step):
            bits = min(step, self.width - low)
            mem = Memory(shape=unsigned(bits), depth=self.depth, init=[], attrs=BUFFER_ATTRS)
            m.submodules[f"slice{low // step}"] = mem
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data[low:low + bits]),
                         wr.en.eq(self.wr_en), rd.addr.eq(self.rd_addr)]
            outputs.append(rd.data)
        m.d.comb += self.rd_data.eq(Cat(*outputs))
        return m
