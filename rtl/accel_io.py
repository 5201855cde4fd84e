"""The accelerator's load and store units (rtl.isa LOAD and STORE).

LoadUnit: a gearbox from the data-in stream to buffer words. Stream words enter at the top of a
shift register (one per cycle); a buffer word is cut out as soon as `fill` bits have arrived, at
one of the few positions `fill` can take for that buffer (multiples of gcd(word_bits,
stream_width) in [word_bits, word_bits + stream_width)), so there is no general barrel shifter.
Throughput: one stream word and one buffer word per cycle; a cut word is written from a
register the cycle after, and a blocked write (`grant` low: the output stage owns the ACT write
port) holds that register, then the cutting, then the stream.
StoreUnit: reads one stream word's elements (stream_width // element_bits consecutive OUT words,
from the banked OUT buffer) per cycle, packs them (unused slots of the last word are zero),
`tlast` on the command's last word, into a FIFO that feeds the stream: one stream word per
cycle, and the stream's `tready` never reaches the buffer (reads go out while the FIFO has room
for them and the reads in flight).
"""
from math import gcd

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from .axis import axis_signature
from .banked_memory import READ_LATENCY
from .isa import ADDR_BITS, SIZE_BITS

QUEUE_DEPTH = 8   # packed data-out words (and reads in flight) of the store unit


class LoadUnit(wiring.Component):
    """`start` (one cycle, while not `busy`) begins a LOAD of `count` words into buffer number
    `buffer` (an index into `word_bits`) at `addr`; `busy` stays high until the last word has been
    written. Writes go out on `wr_*` (registers) with `wr_buffer` saying which buffer; `grant`
    low (the ACT port is busy this cycle) holds them."""

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
        words_left = Signal(SIZE_BITS + 1)
        buffer = Signal(2)
        addr = Signal(ADDR_BITS)

        # Registered flags, so that the stream's tready and the shift register's enable come
        # from a few gates on registers: fill below one word, below two words; one word or more
        # left to cut, two or more. A stream word is taken only while the bits held fall short
        # of the words left, so a LOAD takes exactly ceil(count * bits / stream_width) of them.
        below_one, below_two = Signal(), Signal()
        one_left, two_left = Signal(), Signal()
        pending = Signal()   # the write register holds a word
        with m.If(self.start):
            m.d.sync += [words_left.eq(self.count), buffer.eq(self.buffer), addr.eq(self.addr),
                         one_left.eq(self.count != 0), two_left.eq(self.count > 1)]
        m.d.comb += self.busy.eq(one_left | pending)

        # Cut a word when enough bits have arrived (at its position for this buffer) and the
        # write register is free or being written this cycle.
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
        cut = one_left & ~below_one & (~pending | self.grant)
        take = Mux(cut, two_left & below_two, one_left & below_one)
        m.d.comb += self.data.tready.eq(take)
        accept = take & self.data.tvalid

        m.d.comb += [self.wr_en.eq(pending), self.wr_buffer.eq(buffer)]
        m.d.sync += pending.eq(cut | (pending & ~self.grant))
        with m.If(cut):
            m.d.sync += [self.wr_data.eq(word), self.wr_addr.eq(addr), addr.eq(addr + 1),
                         words_left.eq(words_left - 1), one_left.eq(words_left > 1),
                         two_left.eq(words_left > 2)]
        with m.If(accept):
            m.d.sync += shift.eq(Cat(shift[w:], self.data.tdata))
        left = Mux(cut, fill - word_bits, fill)
        new_fill = Signal.like(fill)
        m.d.comb += new_fill.eq(Mux(accept, left + w, left))
        m.d.sync += [fill.eq(new_fill), below_one.eq(new_fill < word_bits),
                     below_two.eq(new_fill < 2 * word_bits)]
        with m.If(self.start):
            m.d.sync += [fill.eq(0), below_one.eq(1), below_two.eq(1)]
        return m


class StoreUnit(wiring.Component):
    """`start` begins a STORE of `count` OUT words from `addr`, elements of `narrow_bits` bits
    (or `wide_bits` with `wide`); `busy` until the last stream word has transferred. One stream
    word per cycle: each read (`rd_addr` of `lanes` = stream_width // narrow_bits consecutive
    words, read every cycle: `rd_data[lane]` READ_LATENCY cycles later, from registers) fetches
    the elements of one stream word."""

    def __init__(self, stream_width, narrow_bits, wide_bits):
        self.stream_width = stream_width
        self.narrow_bits, self.wide_bits = narrow_bits, wide_bits
        self.lanes = stream_width // narrow_bits
        super().__init__({
            "data": Out(axis_signature(stream_width)),
            "start": In(1), "addr": In(ADDR_BITS), "count": In(SIZE_BITS), "wide": In(1),
            "busy": Out(1),
            "rd_addr": Out(ADDR_BITS),
            "rd_data": In(data.ArrayLayout(unsigned(wide_bits), self.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.stream_width
        left = Signal(SIZE_BITS + 1)          # elements not yet read
        # left - per_word, kept in a register so the last word's test is a sign bit rather than
        # a comparator in front of the subtraction (the 4x4 accelerator's critical path)
        after = Signal(signed(SIZE_BITS + 2))
        addr = Signal(ADDR_BITS)
        wide = Signal()
        remain = Signal()                     # left != 0, from a register
        with m.If(self.start):
            m.d.sync += [left.eq(self.count), addr.eq(self.addr), wide.eq(self.wide),
                         after.eq(self.count - Mux(self.wide, w // self.wide_bits,
                                                   w // self.narrow_bits)),
                         remain.eq(self.count != 0)]
        per_word = Mux(wide, w // self.wide_bits, w // self.narrow_bits)
        last = after <= 0                     # this read takes the last elements
        take = Mux(after < 0, left, per_word)

        # Packed words wait in a FIFO; a read is issued while the FIFO has room for it and the
        # reads in flight, so the stream's tready never reaches the buffer's enables.
        m.submodules.queue = queue = fifo.SyncFIFO(width=w + 1, depth=QUEUE_DEPTH)
        inflight = Signal(READ_LATENCY)
        counts = [Signal(range(self.lanes + 1), name=f"count{i}") for i in range(READ_LATENCY)]
        lasts = Signal(READ_LATENCY)
        pending = sum(inflight[i] for i in range(READ_LATENCY))
        issue = remain & (queue.level + pending < QUEUE_DEPTH - 1)
        m.d.comb += self.rd_addr.eq(addr)   # OUT reads every cycle: no enable to fan out
        with m.If(issue):
            # (left turns negative only once all is read, and is then unused)
            m.d.sync += [addr.eq(addr + take), left.eq(after),
                         after.eq(after - per_word), remain.eq(~last)]
        m.d.sync += [inflight.eq(Cat(issue, inflight[:-1])),
                     lasts.eq(Cat(last, lasts[:-1])), counts[0].eq(take),
                     *(counts[i].eq(counts[i - 1]) for i in range(1, READ_LATENCY))]

        # The read elements packed (unused slots of the last word are zero).
        elems = [self.rd_data[i] for i in range(self.lanes)]
        count = counts[-1]
        narrow = Cat(*[Mux(i < count, elems[i][:self.narrow_bits], 0)
                       for i in range(w // self.narrow_bits)])
        wide_word = Cat(*[Mux(i < count, elems[i], 0) for i in range(w // self.wide_bits)])
        m.d.comb += [queue.w_en.eq(inflight[-1]),
                     queue.w_data.eq(Cat(Mux(wide, wide_word, narrow), lasts[-1])),
                     self.data.tdata.eq(queue.r_data[:w]), self.data.tlast.eq(queue.r_data[w]),
                     self.data.tvalid.eq(queue.r_rdy), queue.r_en.eq(self.data.tready)]
        m.d.comb += self.busy.eq(remain | inflight.any() | queue.r_rdy)
        return m
