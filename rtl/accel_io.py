"""The accelerator's load and store units (rtl.isa LOAD and STORE).

LoadUnit: a gearbox from the data-in stream to buffer words. Stream words enter at the top of a
shift register (one per cycle); a buffer word is cut out as soon as `fill` bits have arrived, at
one of the few positions `fill` can take for that buffer (multiples of gcd(word_bits,
stream_width) in [word_bits, word_bits + stream_width)), so there is no general barrel shifter.
Throughput: one stream word and one buffer word per cycle; a blocked write (`grant` low: the
output stage owns the ACT write port) holds the word and the stream.
StoreUnit: reads one stream word's elements (stream_width // element_bits consecutive OUT words,
from the banked OUT buffer) per cycle, packs them (unused slots of the last word are zero),
`tlast` on the command's last word: one stream word per cycle.
"""
from math import gcd

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
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
    (or `wide_bits` with `wide`); `busy` until the last stream word has transferred. One stream
    word per cycle: each read (`rd_addr`/`rd_en`, a synchronous read of `lanes` =
    stream_width // narrow_bits consecutive words: `rd_data[lane]` one cycle later, holding
    until the next read) fetches the elements of one stream word."""

    def __init__(self, stream_width, narrow_bits, wide_bits):
        self.stream_width = stream_width
        self.narrow_bits, self.wide_bits = narrow_bits, wide_bits
        self.lanes = stream_width // narrow_bits
        super().__init__({
            "data": Out(axis_signature(stream_width)),
            "start": In(1), "addr": In(ADDR_BITS), "count": In(SIZE_BITS), "wide": In(1),
            "busy": Out(1),
            "rd_addr": Out(ADDR_BITS), "rd_en": Out(1),
            "rd_data": In(data.ArrayLayout(unsigned(wide_bits), self.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.stream_width
        left = Signal(SIZE_BITS + 1)          # elements not yet read
        addr = Signal(ADDR_BITS)
        wide = Signal()
        rd_valid = Signal()                   # rd_data holds a stream word's elements
        rd_count = Signal(range(self.lanes + 1))
        rd_last = Signal()
        out_valid = Signal()

        with m.If(self.start):
            m.d.sync += [left.eq(self.count), addr.eq(self.addr), wide.eq(self.wide)]
        per_word = Mux(wide, w // self.wide_bits, w // self.narrow_bits)
        take = Mux(left < per_word, left, per_word)

        m.d.comb += self.data.tvalid.eq(out_valid)
        move = rd_valid & (~out_valid | self.data.tready)
        issue = (left != 0) & (~rd_valid | move) & ~self.start
        m.d.comb += [self.rd_addr.eq(addr), self.rd_en.eq(issue)]
        with m.If(issue):
            m.d.sync += [addr.eq(addr + take), left.eq(left - take), rd_count.eq(take),
                         rd_last.eq(left == take)]
        m.d.sync += rd_valid.eq(issue | (rd_valid & ~move))

        # Pack the read elements (unused slots of the last word are zero).
        narrow = Cat(*[Mux(i < rd_count, self.rd_data[i][:self.narrow_bits], 0)
                       for i in range(w // self.narrow_bits)])
        wide_word = Cat(*[Mux(i < rd_count, self.rd_data[i], 0)
                          for i in range(w // self.wide_bits)])
        with m.If(move):
            m.d.sync += [self.data.tdata.eq(Mux(wide, wide_word, narrow)),
                         self.data.tlast.eq(rd_last), out_valid.eq(1)]
        with m.Elif(self.data.tready):
            m.d.sync += out_valid.eq(0)
        m.d.comb += self.busy.eq((left != 0) | rd_valid | out_valid)
        return m
