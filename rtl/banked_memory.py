"""A buffer of words that writes `write_lanes` consecutive words per cycle and reads
`read_lanes` consecutive words per cycle, from any start address: BANKS = the power of two >=
both lane counts block RAMs (amaranth.lib.memory.Memory), word `a` in bank a mod BANKS at row
a // BANKS, so consecutive words sit in distinct banks.

Write: `wr_addr`, `wr_en[lane]`, `wr_data[lane]` -> word wr_addr + lane.
Read:  `rd_addr`, `rd_en` -> `rd_data[lane]` = word rd_addr + lane, one cycle later; the data
holds while the read is not enabled (as an amaranth.lib.memory read port).
Used for OUT (the drain writes a result row of C words, the store unit reads one stream word's
elements) and PARAM (the load unit writes words, the drain reads a tile's C columns).
"""
from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .isa import ADDR_BITS


class BankedMemory(wiring.Component):
    def __init__(self, width, depth, write_lanes, read_lanes):
        self.width, self.depth = width, depth
        self.write_lanes, self.read_lanes = write_lanes, read_lanes
        self.bank_bits = (max(write_lanes, read_lanes) - 1).bit_length()
        self.banks = 1 << self.bank_bits
        super().__init__({
            "wr_addr": In(ADDR_BITS), "wr_en": In(write_lanes),
            "wr_data": In(data.ArrayLayout(unsigned(width), write_lanes)),
            "rd_addr": In(ADDR_BITS), "rd_en": In(1),
            "rd_data": Out(data.ArrayLayout(unsigned(width), read_lanes)),
        })

    def _lanes_of_banks(self, m, addr, name):
        """Per bank: (lane of the access starting at `addr` it serves, its row)."""
        b_bits, banks = self.bank_bits, self.banks
        out = []
        for b in range(banks):
            lane = Signal(range(banks), name=f"{name}_lane_of_bank{b}")
            m.d.comb += lane.eq((b - addr[:b_bits]) & (banks - 1) if b_bits else 0)
            out.append((lane, (addr + lane) >> b_bits))
        return out

    def elaborate(self, platform):
        m = Module()
        b_bits, banks = self.bank_bits, self.banks
        rows = -(-self.depth // banks)
        writes = self._lanes_of_banks(m, self.wr_addr, "wr")
        reads = self._lanes_of_banks(m, self.rd_addr, "rd")
        datas = []
        for b in range(banks):
            mem = Memory(shape=unsigned(self.width), depth=rows, init=[])
            m.submodules[f"bank{b}"] = mem
            wr, rd = mem.write_port(), mem.read_port()
            lane, row = writes[b]
            lane_data = Signal(self.width, name=f"wr_data_bank{b}")
            lane_en = Signal(name=f"wr_en_bank{b}")
            with m.Switch(lane):
                for i in range(self.write_lanes):
                    with m.Case(i):
                        m.d.comb += [lane_data.eq(self.wr_data[i]), lane_en.eq(self.wr_en[i])]
            read_lane, read_row = reads[b]
            m.d.comb += [wr.addr.eq(row), wr.data.eq(lane_data), wr.en.eq(lane_en),
                         rd.addr.eq(read_row), rd.en.eq(self.rd_en)]
            datas.append(rd.data)
        # Read lane i comes from bank (start + i) mod BANKS; the start bank is registered with
        # the read (its data arrives one cycle later and holds with it).
        start = Signal(range(banks), name="read_bank")
        if b_bits:
            with m.If(self.rd_en):
                m.d.sync += start.eq(self.rd_addr[:b_bits])
        for i in range(self.read_lanes):
            m.d.comb += self.rd_data[i].eq(_pick(datas, (start + i) & (banks - 1)))
        return m


def _pick(values, index):
    """values[index] for a signal index (a mux chain)."""
    out = values[0]
    for i, v in enumerate(values[1:], start=1):
        out = Mux(index == i, v, out)
    return out
