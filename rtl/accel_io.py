"""The accelerator's load and store units (rtl.isa LOAD and STORE).

LoadUnit: a gearbox from the data-in stream to buffer words. Stream words enter at the top of a
shift register (one per cycle); a buffer word is cut out as soon as `fill` bits have arrived, at
one of the few positions `fill` can take for that buffer (multiples of gcd(word_bits,
stream_width) in [word_bits, word_bits + stream_width)), so there is no general barrel shifter.
Throughput: one stream word and one buffer word per cycle; a blocked write (`grant` low: the
output stage owns the ACT write port) holds the word and the stream.
StoreUnit: reads one OUT word per cycle, packs stream_width // element_bits elements per stream
word (unused slots of the last word are zero), `tlast` on the command's last word.
"""
from math import gcd

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axis import axis_signature
from .isa import ADDR_BITS, SIZE_BITS


class LoadUnit(wiring.Component):
    """`start` (one cycle, while not `busy`) begins a LOAD of `count` words into buffer number
    `buffer` (an index into `word_bits`) at `addr`; `busy` stays high until the last word has been
    written. Writes go out on `wr_*` with `wr_buffer` saying which buffer; `grant` low (the ACT
    port is busy this cycle) holds them."""

    def __init__(self, stream_width, word_bits):
        self.stream_width = stream_width
        self.word_bits = list(word_bits)
        self.max_bits = max(self.word_bits)
        super().__init__({
            "data": In(axis_signature(stream_width)),
            "start": In(1), "buffer": In(2), "addr": In(ADDR_BITS), "count": In(SIZE_BITS),
            "busy": Out(1),
            "wr_en": Out(1), "wr_buffer": Out(2), "wr_addr": Out(ADDR_BITS),
            "wr_data": Out(self.max_bits), "grant": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.stream_width
        length = self.max_bits + w
        shift = Signal(length)
        fill = Signal(range(length + 1))
        beats_left = Signal(SIZE_BITS + 8)
        words_left = Signal(SIZE_BITS + 1)
        buffer = Signal(2)
        addr = Signal(ADDR_BITS)

        with m.If(self.start):
            beats = Signal.like(beats_left)
            with m.Switch(self.buffer):
                for number, bits in enumerate(self.word_bits):
                    with m.Case(number):
                        m.d.comb += beats.eq((self.count * bits + w - 1) // w)
            m.d.sync += [fill.eq(0), beats_left.eq(beats), words_left.eq(self.count),
                         buffer.eq(self.buffer), addr.eq(self.addr)]
        m.d.comb += self.busy.eq(words_left != 0)

        # Cut a word when enough bits have arrived (at its position for this buffer).
        word_bits = Signal(range(self.max_bits + 1))
        word = Signal(self.max_bits)
        with m.Switch(buffer):
            for number, bits in enumerate(self.word_bits):
                with m.Case(number):
                    m.d.comb += word_bits.eq(bits)
                    step = gcd(bits, w)
                    with m.Switch(fill):
                        for f in range(bits, bits + w, step):
                            with m.Case(f):
                                m.d.comb += word.eq(shift[length - f:length - f + bits])
        ready_word = (words_left != 0) & (fill >= word_bits)
        m.d.comb += [self.wr_en.eq(ready_word), self.wr_buffer.eq(buffer),
                     self.wr_addr.eq(addr), self.wr_data.eq(word)]
        cut = ready_word & self.grant
        left = Mux(cut, fill - word_bits, fill)
        take = (beats_left != 0) & (left < word_bits) & ~self.start
        m.d.comb += self.data.tready.eq(take)
        accept = take & self.data.tvalid
        with m.If(cut):
            m.d.sync += [addr.eq(addr + 1), words_left.eq(words_left - 1)]
        with m.If(accept):
            m.d.sync += [shift.eq(Cat(shift[w:], self.data.tdata)), beats_left.eq(beats_left - 1),
                         fill.eq(left + w)]
        with m.Elif(cut):
            m.d.sync += fill.eq(left)
        return m


class StoreUnit(wiring.Component):
    """`start` begins a STORE of `count` OUT words from `addr`, elements of `narrow_bits` bits
    (or `wide_bits` with `wide`); `busy` until the last stream word has transferred. Reads go
    out on `rd_addr`/`rd_en` (a synchronous read port: `rd_data` one cycle later)."""

    def __init__(self, stream_width, narrow_bits, wide_bits):
        self.stream_width = stream_width
        self.narrow_bits, self.wide_bits = narrow_bits, wide_bits
        super().__init__({
            "data": Out(axis_signature(stream_width)),
            "start": In(1), "addr": In(ADDR_BITS), "count": In(SIZE_BITS), "wide": In(1),
            "busy": Out(1),
            "rd_addr": Out(ADDR_BITS), "rd_en": Out(1), "rd_data": In(wide_bits),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.stream_width
        left = Signal(SIZE_BITS + 1)          # elements not yet read
        addr = Signal(ADDR_BITS)
        wide = Signal()
        rd_valid = Signal()                   # rd_data holds an element read last cycle
        rd_last = Signal()
        pack = Signal(w)
        slot = Signal(range(w + 1))
        complete = Signal()                   # pack is a finished stream word
        pack_last = Signal()
        out_valid = Signal()

        with m.If(self.start):
            m.d.sync += [left.eq(self.count), addr.eq(self.addr), wide.eq(self.wide)]
        per_word = Mux(wide, w // self.wide_bits, w // self.narrow_bits)

        m.d.comb += [self.data.tvalid.eq(out_valid)]
        move = complete & (~out_valid | self.data.tready)
        consume = rd_valid & (~complete | move)
        issue = (left != 0) & (~rd_valid | consume) & ~self.start
        m.d.comb += [self.rd_addr.eq(addr), self.rd_en.eq(issue)]
        with m.If(issue):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1), rd_last.eq(left == 1)]
        m.d.sync += rd_valid.eq(issue | (rd_valid & ~consume))

        with m.If(move):
            m.d.sync += [self.data.tdata.eq(pack), self.data.tlast.eq(pack_last), out_valid.eq(1)]
        with m.Elif(self.data.tready):
            m.d.sync += out_valid.eq(0)

        # Place the element at its slot of a cleared (after a move) or growing pack.
        base_slot = Mux(move, 0, slot)
        base_pack = Mux(move, 0, pack)
        placed = Signal(w)
        narrow = [Mux(base_slot == s, self.rd_data[:self.narrow_bits], base_pack[s * self.narrow_bits:(s + 1) * self.narrow_bits])
                  for s in range(w // self.narrow_bits)]
        wide_slots = [Mux(base_slot == s, self.rd_data[:self.wide_bits], base_pack[s * self.wide_bits:(s + 1) * self.wide_bits])
                      for s in range(w // self.wide_bits)]
        m.d.comb += placed.eq(Mux(wide, Cat(*wide_slots), Cat(*narrow)))
        with m.If(consume):
            done = (base_slot + 1 == per_word) | rd_last
            m.d.sync += [pack.eq(placed), slot.eq(base_slot + 1), complete.eq(done),
                         pack_last.eq(rd_last)]
        with m.Elif(move):
            m.d.sync += [pack.eq(0), slot.eq(0), complete.eq(0)]
        m.d.comb += self.busy.eq((left != 0) | rd_valid | complete | out_valid)
        return m
