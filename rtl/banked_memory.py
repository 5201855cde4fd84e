"""A buffer of words that writes `write_lanes` consecutive words per cycle and reads
`read_lanes` consecutive words per cycle, from any start address: BANKS = the power of two >=
both lane counts block RAMs (amaranth.lib.memory.Memory), word `a` in bank a mod BANKS at row
a // BANKS, so consecutive words sit in distinct banks.

Write: `wr_addr`, `wr_en[lane]`, `wr_data[lane]` -> word wr_addr + lane.
Read:  `rd_addr`, `rd_en` -> `rd_data[lane]` = word rd_addr + lane, one cycle later; the data
holds while the read is not enabled (as an amaranth.lib.memory read port); `registered`: two
cycles later, the banks' outputs registered before any logic (READ_LATENCY); `block_ram`: the
banks in block RAM even where they are shallow enough for Yosys to pick distributed RAM. With
`aligned_reads` the caller guarantees every read starts at a multiple of BANKS (the low address
bits are taken as zero): lane i is bank i, no rotation (8 banks of 54 bits: ~2000 LUT4 less).
Used for OUT (the drain writes a result row of C words, the store unit reads one stream word's
elements) and PARAM (the load unit writes words, the drain reads a tile's C columns).
"""
from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .isa import ADDR_BITS

# Cycles from a buffer read's address to its data in a fabric register, for the accelerator's
# units that read block RAM: the memory's synchronous read, then a register with no logic
# before it (an ECP5 DP16KD's clock-to-out alone is 5.8 ns of the 8.3 ns at 120 MHz).
READ_LATENCY = 2

# Yosys' `no_rw_check` on every buffer memory: a read of a word written in the same cycle may
# return either word. Without it Yosys emulates read-first behaviour between the two ports with a
# collision register and a multiplexer behind each block RAM (the 4x4 accelerator's critical
# path: clock-to-out, then that LUT). No hazard-free program reads a word while another unit
# writes it (golden.accel.hazards), and a chained GEMM whose ACT ranges overlap is refused.
BUFFER_ATTRS = {"no_rw_check": 1}


class BankedMemory(wiring.Component):
    def __init__(self, width, depth, write_lanes, read_lanes, aligned_reads=False,
                 registered=False, block_ram=False):
        self.width, self.depth, self.aligned_reads = width, depth, aligned_reads
        self.registered, self.block_ram = registered, block_ram
        self.write_lanes, self.read_lanes = write_lanes, read_lanes
        self.bank_bits = (max(write_lanes, read_lanes) - 1).bit_length()
        self.banks = 1 << self.bank_bits
        super().__init__({
            "wr_addr": In(ADDR_BITS), "wr_en": In(write_lanes),
            "wr_data": In(data.ArrayLayout(unsigned(width), write_lanes)),
            "rd_addr": In(ADDR_BITS), "rd_en": In(1),
            "rd_data": Out(data.ArrayLayout(unsigned(width), read_lanes)),
        })

    def _rows_of_banks(self, addr):
        """Per bank b: the row of the word an access starting at `addr` puts in it,
        addr // BANKS, plus one for the banks before the start bank (b < addr mod BANKS)."""
        b_bits = self.bank_bits
        base = addr >> b_bits
        return [base + (b < addr[:b_bits]) if b_bits else base for b in range(self.banks)]

    def elaborate(self, platform):
        m = Module()
        b_bits, banks = self.bank_bits, self.banks
        rows = -(-self.depth // banks)
        # Write lane i goes to bank (wr_addr + i) mod BANKS: the lanes, padded to BANKS, rotated
        # left by wr_addr mod BANKS (log2(BANKS) levels of 2:1 muxes, not a mux per lane and bank).
        # Padding lanes are never enabled, so their data is lane 0's: one write lane reaches
        # every bank as a plain wire, no data mux at all.
        wr_start = self.wr_addr[:b_bits]
        padding = banks - self.write_lanes
        wr_data = _rotate([self.wr_data[i] for i in range(self.write_lanes)]
                          + [self.wr_data[0]] * padding, wr_start, left=True)
        wr_en = _rotate([self.wr_en[i] for i in range(self.write_lanes)] + [0] * padding,
                        wr_start, left=True)
        rd_addr = (Cat(Const(0, b_bits), self.rd_addr[b_bits:]) if self.aligned_reads
                   else self.rd_addr)
        datas = []
        for b, (wr_row, rd_row) in enumerate(zip(self._rows_of_banks(self.wr_addr),
                                                 self._rows_of_banks(rd_addr))):
            mem = Memory(shape=unsigned(self.width), depth=rows, init=[],
                         attrs={**BUFFER_ATTRS, **({"ram_style": "block"} if self.block_ram
                                                  else {})})
            m.submodules[f"bank{b}"] = mem
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [wr.addr.eq(wr_row), wr.data.eq(wr_data[b]), wr.en.eq(wr_en[b]),
                         rd.addr.eq(rd_row), rd.en.eq(self.rd_en)]
            if self.registered:
                # reset-less: a reset would put a LUT between the block RAM and the register
                held = Signal.like(rd.data, name=f"bank{b}_data", reset_less=True)
                m.d.sync += held.eq(rd.data)
                datas.append(held)
            else:
                datas.append(rd.data)
        # Read lane i comes from bank (start + i) mod BANKS: the banks rotated right by the start
        # bank, registered with the read (its data arrives one cycle later and holds with it).
        lanes = datas
        if b_bits and not self.aligned_reads:
            start = Signal(range(banks), name="read_bank")
            with m.If(self.rd_en):
                m.d.sync += start.eq(self.rd_addr[:b_bits])
            if self.registered:
                start, issued = Signal.like(start, name="read_bank_data"), start
                m.d.sync += start.eq(issued)
            lanes = _rotate(datas, start, left=False)
        for i in range(self.read_lanes):
            m.d.comb += self.rd_data[i].eq(lanes[i])
        return m


def _rotate(values, amount, *, left):
    """`values` rotated by the signal `amount` positions: left, out[(i + amount) mod n] =
    values[i]; right, out[i] = values[(i + amount) mod n] (n a power of two; one level of 2:1
    muxes per bit of `amount`)."""
    n = len(values)
    for k in range(len(amount)):
        step = 1 << k
        moved = [values[(i - step) % n] if left else values[(i + step) % n] for i in range(n)]
        values = [Mux(amount[k], moved[i], values[i]) for i in range(n)]
    return values
