"""A buffer of words that moves `lanes` consecutive words per cycle on one side and one word per
cycle on the other: BANKS = the power of two >= lanes block RAMs (amaranth.lib.memory.Memory),
word `a` in bank a mod BANKS at row a // BANKS, so any `lanes` consecutive words sit in distinct
banks whatever the start address.

`row_side = "write"` (the OUT buffer: the drain writes a result row, the store unit reads words):
  row write  `row_addr`, `row_en` (one enable per lane), `row_data[lane]` -> word row_addr + lane;
  word read  `word_addr`, `word_en` -> `word_data` one cycle later.
`row_side = "read"` (the PARAM buffer: the load unit writes words, the drain reads a tile's
columns):
  word write `word_addr`, `word_en`, `word_data`;
  row read   `row_addr`, `row_en` (1 bit) -> `row_data[lane]` = word row_addr + lane one cycle later.
Read data holds while the read port is not enabled (as an amaranth.lib.memory read port).
"""
from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .isa import ADDR_BITS


class BankedMemory(wiring.Component):
    def __init__(self, width, depth, lanes, row_side):
        assert row_side in ("write", "read")
        self.width, self.depth, self.lanes, self.row_side = width, depth, lanes, row_side
        self.bank_bits = (lanes - 1).bit_length()
        self.banks = 1 << self.bank_bits
        row = data.ArrayLayout(unsigned(width), lanes)
        writes_rows = row_side == "write"
        super().__init__({
            "row_addr": In(ADDR_BITS), "row_en": In(lanes if writes_rows else 1),
            "row_data": (In if writes_rows else Out)(row),
            "word_addr": In(ADDR_BITS), "word_en": In(1),
            "word_data": (Out if writes_rows else In)(width),
        })

    def _bank_of(self, addr):
        return addr[:self.bank_bits] if self.bank_bits else 0

    def elaborate(self, platform):
        m = Module()
        b_bits, banks = self.bank_bits, self.banks
        rows = -(-self.depth // banks)
        mems = []
        for b in range(banks):
            mem = Memory(shape=unsigned(self.width), depth=rows, init=[])
            m.submodules[f"bank{b}"] = mem
            mems.append((mem.write_port(), mem.read_port()))

        # Row side: bank b holds lane (b - row_addr) mod BANKS of the row (if < lanes).
        lane_of = []
        for b in range(banks):
            lane = Signal(range(banks), name=f"lane_of_bank{b}")
            m.d.comb += lane.eq((b - self._bank_of(self.row_addr)) & (banks - 1) if b_bits else 0)
            lane_of.append(lane)
        row_index = [(self.row_addr + lane_of[b]) >> b_bits for b in range(banks)]
        word_index = self.word_addr >> b_bits

        if self.row_side == "write":
            for b, (wr, rd) in enumerate(mems):
                lane_data = Signal(self.width, name=f"row_data_bank{b}")
                lane_en = Signal(name=f"row_en_bank{b}")
                with m.Switch(lane_of[b]):
                    for lane in range(self.lanes):
                        with m.Case(lane):
                            m.d.comb += [lane_data.eq(self.row_data[lane]),
                                         lane_en.eq(self.row_en[lane])]
                m.d.comb += [wr.addr.eq(row_index[b]), wr.data.eq(lane_data), wr.en.eq(lane_en),
                             rd.addr.eq(word_index), rd.en.eq(self.word_en)]
            self._select(m, [rd.data for _, rd in mems], self._bank_of(self.word_addr),
                         self.word_en, lambda sel, datas: self.word_data.eq(_pick(datas, sel)))
        else:
            word_bank = self._bank_of(self.word_addr)
            for b, (wr, rd) in enumerate(mems):
                m.d.comb += [wr.addr.eq(word_index), wr.data.eq(self.word_data),
                             wr.en.eq(self.word_en & (word_bank == b)),
                             rd.addr.eq(row_index[b]), rd.en.eq(self.row_en)]
            self._select(m, [rd.data for _, rd in mems], self._bank_of(self.row_addr), self.row_en,
                         lambda sel, datas: [self.row_data[lane].eq(_pick(datas, (sel + lane) & (banks - 1)))
                                             for lane in range(self.lanes)])
        return m

    def _select(self, m, datas, bank, en, assign):
        """Route the banks' read data by the read's start bank, registered when the read is
        enabled (the data arrives one cycle later and holds with it)."""
        sel = Signal(range(self.banks), name="read_bank")
        if self.bank_bits:
            with m.If(en):
                m.d.sync += sel.eq(bank)
        m.d.comb += assign(sel, datas)


def _pick(values, index):
    """values[index] for a signal index (a mux tree)."""
    out = values[0]
    for i, v in enumerate(values[1:], start=1):
        out = Mux(index == i, v, out)
    return out
